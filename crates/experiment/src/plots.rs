//! The plots of `tessel experiment`: best-so-far GFLOP/s (median over seeds) per config,
//! vs accounted time and vs trials, as SVG.

use crate::runs::{median_curve, Config, RunTrace, WorkloadSummary};
use crate::{file_name, ExperimentError};
use plotters::prelude::*;
use std::path::Path;

/// The vertical axis of the operator plots.
const GFLOPS: &str = "best GFLOP/s so far (median over seeds)";

/// Colour of a config in the plots.
fn colour(c: Config) -> RGBColor {
    match c {
        Config::Baseline => BLACK,
        Config::Rl => RGBColor(31, 119, 180),
        Config::Ml => RGBColor(44, 160, 44),
        Config::Both => RGBColor(214, 39, 40),
    }
}

/// Median best-so-far GFLOP/s over the seeds at each trial count of the rounds.
fn trials_curve(runs: &[&RunTrace], flop: f64) -> Vec<(f64, f64)> {
    let mut counts: Vec<usize> = runs
        .iter()
        .flat_map(|r| r.rounds.iter().map(|p| p.trials))
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .into_iter()
        .map(|n| {
            let at: Vec<f64> = runs
                .iter()
                .map(|r| {
                    r.rounds
                        .iter()
                        .take_while(|p| p.trials <= n)
                        .last()
                        .and_then(|p| p.best_seconds)
                        .map_or(0.0, |s| flop / s / 1e9)
                })
                .collect();
            (n as f64, crate::runs::median(&at).unwrap_or(0.0))
        })
        .collect()
}

/// Draws one curve per config into an SVG file (`y_desc` labels the vertical axis).
pub(crate) fn plot(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[(Config, Vec<(f64, f64)>)],
) -> Result<(), ExperimentError> {
    let fail = |e: &dyn std::fmt::Display| ExperimentError::Plot {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let x_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let y_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.05;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| fail(&e))?;
    for (config, curve) in curves {
        let col = colour(*config);
        chart
            .draw_series(LineSeries::new(curve.iter().copied(), col.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(format!(
                "{} ({}+{})",
                config.name(),
                config.sketch_policy(),
                config.mutation_policy()
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// Writes both plots of a workload; returns their file names.
pub(crate) fn plots(
    out: &Path,
    s: &WorkloadSummary,
    runs: &[RunTrace],
    configs: &[Config],
) -> Result<Vec<String>, ExperimentError> {
    let by_config = |c: Config| runs.iter().filter(|r| r.config == c).collect::<Vec<_>>();
    let t_max = runs.iter().map(|r| r.accounted_seconds).fold(0.0, f64::max);
    let time: Vec<(Config, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|&c| (c, median_curve(&by_config(c), s.flop, t_max, 200)))
        .collect();
    let trials: Vec<(Config, Vec<(f64, f64)>)> = configs
        .iter()
        .map(|&c| (c, trials_curve(&by_config(c), s.flop)))
        .collect();
    let stem = file_name(&s.workload);
    let names = vec![format!("{stem}.time.svg"), format!("{stem}.trials.svg")];
    plot(
        &out.join(&names[0]),
        &format!("{}: best so far vs accounted time", s.workload),
        "accounted time (s): measurement as charged, cache hits at their first cost",
        GFLOPS,
        &time,
    )?;
    plot(
        &out.join(&names[1]),
        &format!("{}: best so far vs trials", s.workload),
        "trials",
        GFLOPS,
        &trials,
    )?;
    Ok(names)
}
