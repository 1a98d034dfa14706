//! The rfactor rule's condition: Ansor's `NeedsRfactor`, refined so that a stage whose
//! spatial loops already give ample parallel work (more points than its reduction and than
//! `num_cores * 16`) is not rfactored. ResNet-50's 3×3 max-pool (9 points over 56×56×64
//! outputs, padding computed inside the reduction) used to get rfactor sketches whose
//! programs ran into the 10 s timeout; reductions over a small spatial extent keep them.

use std::sync::Arc;
use tessel_ir::Step;
use tessel_sketch::{generate_sketches, HardwareParams, Isa};

fn rfactor_sketches(spec: &str, cores: i64) -> usize {
    let w = tessel_workloads::lookup(spec).expect("known workload");
    let hw = HardwareParams {
        isa: Isa::Generic,
        ..HardwareParams::with_cores(cores)
    };
    generate_sketches(&Arc::new(w.dag), &hw)
        .expect("sketches")
        .iter()
        .filter(|s| {
            s.state
                .steps()
                .iter()
                .any(|st| matches!(st, Step::Rfactor { .. }))
        })
        .count()
}

#[test]
fn a_small_window_over_a_large_output_is_not_rfactored() {
    for cores in [2, 4, 16] {
        assert_eq!(
            rfactor_sketches(
                "maxpool:n=1,h=112,w=112,c=64,kernel=3,stride=2,pad=1",
                cores
            ),
            0,
            "{cores} cores"
        );
        assert_eq!(rfactor_sketches("avgpool:n=1,h=7,w=7,c=2048", cores), 0);
    }
}

#[test]
fn a_large_reduction_over_a_small_output_is_still_rfactored() {
    // Layer norm over 256×256 points per row, one row: Ansor's case for rfactor.
    assert!(rfactor_sketches("nrm-1", 2) > 0);
    // Global pooling of a small map with few channels: reduction ≥ spatial.
    assert!(rfactor_sketches("avgpool:n=1,h=32,w=32,c=8", 2) > 0);
}
