//! Criterion benches of the search space: sketch generation, init sampling and mutation.
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use tessel_sketch::{
    generate_sketches, sample_initial, sample_population, HardwareParams, MutationRegistry,
};

const WORKLOADS: &[&str] = &["gmm-3", "c2d-3", "convlayer-2", "nrm-1", "tbg-1"];

fn benches(c: &mut Criterion) {
    let hw = HardwareParams::with_cores(4);
    for name in WORKLOADS {
        let dag = Arc::new(tessel_workloads::lookup(name).expect("workload").dag);
        c.bench_function(&format!("generate_sketches/{name}"), |b| {
            b.iter(|| generate_sketches(black_box(&dag), &hw).expect("sketches"))
        });
        let sketches = generate_sketches(&dag, &hw).expect("sketches");
        let mut rng = tessel_ir::rng::seeded(1);
        let mut k = 0;
        c.bench_function(&format!("sample_initial/{name}"), |b| {
            b.iter(|| {
                k += 1;
                sample_initial(&sketches[k % sketches.len()], &hw, &mut rng)
            })
        });
        let pop = sample_population(&sketches, 32, &hw, &mut rng);
        let tile = MutationRegistry::cpu().rules[0];
        c.bench_function(&format!("mutate_tile_size/{name}"), |b| {
            b.iter(|| {
                k += 1;
                tile.apply(&pop[k % pop.len()], &hw, &mut rng)
            })
        });
    }
}

criterion_group! {
    name = sketch;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = benches
}
criterion_main!(sketch);
