//! `tessel dataset --workloads W... --per-workload N --records FILE`: a training set for the
//! cost model, measured on this machine. For every workload, half of its programs come from
//! a short search and half are random samples of its sketches (so the set holds both the
//! programs a search visits and the breadth of the space), all appended to one records
//! file that `tessel cost-model train` reads. The search starts cold: the set must not
//! depend on a pre-trained model.

use super::search_options::SearchOptions;
use crate::error::DriverError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tessel_search::tuner::Measurer;
use tessel_workloads as workloads;

/// Arguments of `tessel dataset`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Registry names or `OP:key=value,...` specs, separated by spaces or commas
    /// (`gmm-1,dep:n=1,h=56,w=56,c=144,kernel=3,stride=1,pad=1,gmm-2`: a piece with `=` and
    /// no `:` continues the spec before it).
    #[arg(long, num_args = 1.., required = true)]
    pub workloads: Vec<String>,
    /// Programs measured per workload (half searched, half random).
    #[arg(long, default_value_t = 128, value_parser = super::numbers::positive, allow_negative_numbers = true)]
    pub per_workload: usize,
    /// The records file to append to.
    #[arg(long)]
    pub records: PathBuf,
    /// Search settings (seed, threads, target, isolation, ...).
    #[command(flatten)]
    pub search: SearchOptions,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), DriverError> {
    let resolved: Vec<workloads::Workload> = workload_list(&args.workloads)
        .iter()
        .map(|spec| workloads::lookup(spec))
        .collect::<Result<_, _>>()?;
    let searched = args.per_workload.div_ceil(2);
    let random = args.per_workload - searched;
    if args.search.pretrained.is_some() {
        return Err(DriverError::Usage(
            "a dataset's searches start cold: --pretrained would bias the training set".into(),
        ));
    }
    let search = &args.search;
    let job = search.job(searched)?;
    let start = Instant::now();
    for (i, w) in resolved.iter().enumerate() {
        let t = Instant::now();
        let problem = job
            .problem(Arc::new(w.dag.clone()))
            .map_err(DriverError::failed)?;
        let mut measurer = job
            .measurer(w, Some(&args.records))
            .map_err(DriverError::failed)?;
        let result = job.tune(&problem, &mut measurer);
        let samples = job.sample(&problem, random, job.seed().wrapping_add(1));
        let measured = measurer.measure(&samples);
        if let Some(e) = measurer.write_error.as_ref() {
            return Err(DriverError::Failed(format!(
                "cannot append to {}: {e}",
                args.records.display()
            )));
        }
        let valid = measured.iter().filter(|m| m.seconds.is_some()).count();
        println!(
            "[{}/{}] {:<16} {} searched ({} valid), {} random ({} valid) in {:.1} s",
            i + 1,
            resolved.len(),
            w.name,
            result.trials,
            result.valid,
            samples.len(),
            valid,
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "wrote {} in {:.1} s; train with `tessel cost-model train --records {}`",
        args.records.display(),
        start.elapsed().as_secs_f64(),
        args.records.display()
    );
    Ok(())
}

/// The workloads of `--workloads`: each value split at commas, where a piece holding `=`
/// but no `:` is a key of the spec before it, not a workload of its own (registry names
/// never hold `=`).
fn workload_list(values: &[String]) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for value in values {
        let mut in_spec = false;
        for piece in value.split(',').filter(|p| !p.is_empty()) {
            let continues = in_spec && piece.contains('=') && !piece.contains(':');
            match list.last_mut() {
                Some(spec) if continues => {
                    spec.push(',');
                    spec.push_str(piece);
                }
                _ => {
                    in_spec = piece.contains(':');
                    list.push(piece.to_string());
                }
            }
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::workload_list;

    #[test]
    fn specs_keep_their_commas_and_names_split_at_them() {
        let values = [
            "gmm-1,dep:n=1,h=56,w=56,c=144,kernel=3,stride=1,pad=1,gmm-2".to_string(),
            "c2d-4".to_string(),
            "gmm:b=1,n=8,m=8,k=8".to_string(),
        ];
        assert_eq!(
            workload_list(&values),
            [
                "gmm-1",
                "dep:n=1,h=56,w=56,c=144,kernel=3,stride=1,pad=1",
                "gmm-2",
                "c2d-4",
                "gmm:b=1,n=8,m=8,k=8"
            ]
        );
    }
}
