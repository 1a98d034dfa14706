//! The tables of `tessel experiment`: search results and robustness, as text and Markdown.

use crate::operator::Robustness;
use crate::runs::WorkloadSummary;
use tessel_measure::MeasureOptions;

pub(crate) fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

pub(crate) fn pct(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// A header row.
pub(crate) fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

pub(crate) fn reach(x: Option<f64>) -> String {
    x.map_or("not reached".to_string(), |v| format!("{v:.2}"))
}

pub(crate) fn quartiles(median: Option<f64>, q1: Option<f64>, q3: Option<f64>) -> String {
    format!("{} [{},{}]", opt(median, 2), opt(q1, 2), opt(q3, 2))
}

/// The search table of one workload: a header and one row per config.
pub(crate) fn search_rows(s: &WorkloadSummary) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "config",
        "policies",
        "GFLOP/s med [q1,q3]",
        "final ×base (search)",
        "time-to-reach (accounted)",
        "time-to-reach (wall)",
        "trials-to-reach",
        "reached",
        "policy % wall",
        "evol % accounted",
        "mut valid",
        "mut improved",
    ])];
    for c in &s.configs {
        rows.push(vec![
            c.config.name().to_string(),
            format!("{}+{}", c.sketch_policy, c.mutation_policy),
            quartiles(c.best_gflops_median, c.best_gflops_q1, c.best_gflops_q3),
            opt(c.final_ratio, 3),
            reach(c.time_to_reach_ratio),
            reach(c.time_to_reach_ratio_wall),
            reach(c.trials_to_reach_ratio),
            format!("{}/{}", c.reached, c.compared),
            format!("{:.2}%", 100.0 * c.policy_share),
            format!("{:.1}%", 100.0 * c.evolution_share),
            pct(c.mutation_validity),
            pct(c.mutation_improved),
        ]);
    }
    rows
}

/// The robustness table of one workload: re-measured finals, cache hits, both clocks.
pub(crate) fn robustness_rows(s: &WorkloadSummary) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "config",
        "re-measured GFLOP/s med [q1,q3]",
        "final ×base (re-measured)",
        "final ×base (search)",
        "signed-rank p (n)",
        "re-measure spread",
        "time-to-reach (re-measured)",
        "trials-to-reach (re-measured)",
        "reached (re-measured)",
        "cache hits",
        "accounted s (med)",
        "wall s (med)",
        "policy % accounted",
    ])];
    for c in &s.configs {
        rows.push(vec![
            c.config.name().to_string(),
            quartiles(
                c.remeasured_gflops_median,
                c.remeasured_gflops_q1,
                c.remeasured_gflops_q3,
            ),
            opt(c.final_ratio_remeasured, 3),
            opt(c.final_ratio, 3),
            c.signed_rank
                .as_ref()
                .map_or("-".to_string(), |t| format!("{:.3} ({})", t.p_value, t.n)),
            pct(c.remeasure_spread_median),
            reach(c.time_to_reach_ratio_remeasured),
            reach(c.trials_to_reach_ratio_remeasured),
            format!("{}/{}", c.reached_remeasured, c.compared_remeasured),
            format!(
                "{}/{} ({})",
                c.cache_hits,
                c.trials,
                pct((c.trials > 0).then(|| c.cache_hits as f64 / c.trials as f64))
            ),
            opt(c.accounted_seconds_median, 1),
            opt(c.wall_seconds_median, 1),
            format!("{:.2}%", 100.0 * c.policy_share_accounted),
        ]);
    }
    rows
}

/// One paragraph on how this workload's comparison was made robust.
pub(crate) fn robustness_text(r: &Robustness, options: &MeasureOptions) -> String {
    let cache = if r.cache {
        format!(
            "one measurement cache shared by all {} trials of the runs ({} distinct programs \
             measured, {} trials answered from the cache, each charged the time its first \
             measurement cost)",
            r.trials, r.distinct_programs, r.cache_hits
        )
    } else {
        "no shared cache (every run measured everything itself)".to_string()
    };
    let again = if r.remeasure_rounds > 0 {
        format!(
            "the {} distinct final bests re-measured side by side in {} interleaved rounds \
             (each round: every program once, order rotated; each measurement the median of \
             {} repeats of ≥ {} ms), final = median of the rounds ({:.1} s)",
            r.remeasured_programs,
            r.remeasure_rounds,
            options.timing.repeat,
            options.timing.min_repeat_ms,
            r.remeasure_seconds
        )
    } else {
        "no re-measurement (final ratios are the search's own)".to_string()
    };
    let trail = if r.trail_rounds > 0 {
        format!(
            "; the {} distinct programs the runs held as best after some round re-measured \
             the same way in {} rounds ({:.1} s), for time-to-reach (re-measured)",
            r.trail_programs, r.trail_rounds, r.trail_seconds
        )
    } else {
        String::new()
    };
    let confirm = if r.confirm_extra > 0 {
        format!(
            "a first reading within 1 % of its run's best measured {} more times, the \
             program getting the median of all its repeats ({} programs); ",
            r.confirm_extra, r.confirmed
        )
    } else {
        String::new()
    };
    format!(
        "Robustness: the configs of a seed tuned in lockstep (one round of each in turn, so \
         a drift of the host's speed meets all of them at the same point of their searches; \
         each run's times count its own rounds only); {confirm}{cache}; {again}{trail}.\n"
    )
}

pub(crate) fn text_table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|k| {
            rows.iter()
                .map(|r| r.get(k).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn markdown_table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (k, r) in rows.iter().enumerate() {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
        if k == 0 {
            out.push_str(&format!("|{}\n", "---|".repeat(r.len())));
        }
    }
    out
}
