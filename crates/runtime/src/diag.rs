//! Profiling diagnostics, not behaviour tests: `#[ignore]`d, they print tables and assert
//! nothing about speed. Run in release with a records file:
//!
//! ```text
//! TESSEL_DIAG_RECORDS=mbv2.jsonl cargo test --release -p tessel-runtime --lib diag -- --ignored --nocapture
//! ```
//!
//! `table`: every launch's record time, its median alone (`DIAG_ALONE` calls, contended ones
//! retaken), its median over 50 inferences, and its median when timed right after its
//! predecessor ran (`DIAG_NET` picks the network, default `mobilenet-v2`). `dep384`: the
//! launches of one task (`DIAG_TASK`, a substring of its name) on the module's buffers,
//! on fresh copies of them and on synthetic values (docs/runtime.md, session 16).

use super::Module;
use std::time::{Duration, Instant};
use tessel_ir::target::Target;
use tessel_workloads::networks::{self, Weights};

/// The records file of `TESSEL_DIAG_RECORDS`, if set.
fn records() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("TESSEL_DIAG_RECORDS").map(std::path::PathBuf::from);
    if p.is_none() {
        eprintln!("set TESSEL_DIAG_RECORDS to a records file");
    }
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore]
fn dep384() {
    let which = std::env::var("DIAG_TASK").unwrap_or("dep:n=1,h=14,w=14,c=384".into());
    let net = networks::lookup(
        &std::env::var("DIAG_NET").unwrap_or("mobilenet-v2".into()),
        1,
    )
    .unwrap();
    let weights = Weights::random(&net, 1);
    let Some(path) = records() else { return };
    let mut m = Module::build(&net, &weights, Some(&path), &Target::native(), 2).unwrap();
    let x = networks::random_inputs(&net, 2);
    let _ = m.run(&[&x[0]]).unwrap();
    let task = m
        .report()
        .tasks
        .iter()
        .position(|t| t.name.contains(&which))
        .unwrap();
    eprintln!("task {task}: {}", m.report().tasks[task].name);
    let n = 400;
    for (li, l) in m
        .launches
        .iter()
        .enumerate()
        .filter(|(_, l)| l.task == task)
    {
        let kernel = &m.kernels[l.kernel];
        let call = &m.calls[li];
        let time = |f: &mut dyn FnMut()| {
            let mut v = Vec::new();
            for _ in 0..5 {
                f();
            }
            for _ in 0..n {
                let t = Instant::now();
                f();
                v.push(t.elapsed().as_secs_f64() * 1e3);
            }
            median(v)
        };
        // SAFETY: as in `Module::run_into`.
        let a = time(&mut || unsafe { kernel.run_prepared(call).unwrap() });
        // Fresh copies of the arguments.
        let act = m.arena.as_slice();
        let w = m.weights.as_slice();
        let ins: Vec<Vec<f32>> = l
            .args
            .iter()
            .map(|&(src, at, len)| match src {
                super::Source::Weights => w[at..at + len].to_vec(),
                super::Source::Activations => act[at..at + len].to_vec(),
            })
            .collect();
        let mut out = vec![0.0f32; l.out.1];
        let refs: Vec<&[f32]> = ins.iter().map(|v| v.as_slice()).collect();
        let b = time(&mut || kernel.run(&refs, &mut [&mut out]).unwrap());
        let offs: Vec<String> = l
            .args
            .iter()
            .map(|&(s, at, len)| format!("{s:?}@{}+{}", at * 4 % 4096, len))
            .collect();
        let mins = ins
            .iter()
            .map(|v| {
                v.iter().fold(
                    f32::INFINITY,
                    |a, &b| if b != 0.0 { a.min(b.abs()) } else { a },
                )
            })
            .collect::<Vec<_>>();
        // Random values, fresh buffers.
        let rnd: Vec<Vec<f32>> = ins
            .iter()
            .enumerate()
            .map(|(k, v)| {
                (0..v.len())
                    .map(|i| (((i * 7919 + k * 31) % 1000) as f32 / 1000.0) - 0.5)
                    .collect()
            })
            .collect();
        let rrefs: Vec<&[f32]> = rnd.iter().map(|v| v.as_slice()).collect();
        let c = time(&mut || kernel.run(&rrefs, &mut [&mut out]).unwrap());
        eprintln!(
            "launch {li} {}: prepared {a:.4} ms, run on copies {b:.4} ms, run on synthetic {c:.4} ms; out@{} args {offs:?} min|x| {mins:?} calls {:?}",
            l.layer, l.out.0 * 4 % 4096, kernel.micro_kernel_calls()
        );
    }
}

#[test]
#[ignore]
fn table() {
    let netname = std::env::var("DIAG_NET").unwrap_or("mobilenet-v2".into());
    let net = networks::lookup(&netname, 1).unwrap();
    let weights = Weights::random(&net, 1);
    let Some(path) = records() else { return };
    let mut m = Module::build(&net, &weights, Some(&path), &Target::native(), 2).unwrap();
    let x = networks::random_inputs(&net, 2);
    let mut out: Vec<Vec<f32>> = m.outputs().iter().map(|o| vec![0.0; o.len]).collect();
    for _ in 0..5 {
        let mut refs: Vec<&mut [f32]> = out.iter_mut().map(|o| o.as_mut_slice()).collect();
        m.run_into(&[&x[0]], &mut refs).unwrap();
    }
    let runs = 50;
    let mut totals = Vec::new();
    m.set_profiling(true);
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); m.launches.len()];
    for _ in 0..runs {
        m.reset_profile();
        let mut refs: Vec<&mut [f32]> = out.iter_mut().map(|o| o.as_mut_slice()).collect();
        let t = Instant::now();
        m.run_into(&[&x[0]], &mut refs).unwrap();
        totals.push(t.elapsed().as_secs_f64() * 1e3);
        for (k, p) in m.profile().0.iter().enumerate() {
            per[k].push(p.total.as_secs_f64() * 1e3);
        }
    }
    m.set_profiling(false);
    let (prof, _) = m.profile();
    let reps: usize = std::env::var("DIAG_ALONE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut refs: Vec<&mut [f32]> = out.iter_mut().map(|o| o.as_mut_slice()).collect();
    let timings = m.profile_alone_timings(&[&x[0]], &mut refs, reps).unwrap();
    let alone: Vec<Duration> = timings.iter().map(|t| t.median).collect();
    // Each launch timed right after its predecessor ran (untimed): the predecessor's output
    // in the state it leaves it.
    let mut after_prev = vec![0.0; m.launches.len()];
    #[allow(clippy::needless_range_loop)]
    for k in 1..m.launches.len() {
        let mut v = Vec::new();
        for _ in 0..30 {
            // SAFETY: as in `Module::run_into` (the module is borrowed whole).
            unsafe {
                m.kernels[m.launches[k - 1].kernel]
                    .run_prepared(&m.calls[k - 1])
                    .unwrap()
            };
            let t = Instant::now();
            // SAFETY: as above.
            unsafe {
                m.kernels[m.launches[k].kernel]
                    .run_prepared(&m.calls[k])
                    .unwrap()
            };
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        after_prev[k] = median(v);
    }
    let mut sprev = 0.0;
    let mut srec = 0.0;
    let mut salone = 0.0;
    let mut snet = 0.0;
    for (k, p) in prof.iter().enumerate() {
        let t = &m.report().tasks[p.task];
        let r = t.record_seconds().unwrap_or(f64::NAN) * 1e3;
        let a = alone[k].as_secs_f64() * 1e3;
        let n = median(per[k].clone());
        srec += r;
        sprev += after_prev[k];
        salone += a;
        snet += n;
        eprintln!("{k:3} {:?} {:>14} rec {r:.4} alone {a:.4} ({:.2}x) net {n:.4} ({:.2}x) after-prev {:.4} {}", (timings[k].timed, timings[k].contended), p.layer, a / r, n / r, after_prev[k], t.name);
    }
    eprintln!("sum after-prev {sprev:.3} rec {srec:.3} alone {salone:.3} net {snet:.3} median total {:.3}", median(totals));
}
