//! The workload registry and the spec syntax: names resolve, FLOPs match WORKLOADS.md,
//! `--batch` overrides, and every class of bad spec is an error naming the bad part.

use tessel_ir::{eval, IrError};

fn err_text(spec: &str) -> String {
    match tessel_workloads::lookup(spec) {
        Ok(w) => panic!("`{spec}` should be rejected, got {}", w.spec()),
        Err(e @ IrError::BadSpec { .. }) => e.to_string(),
        Err(e) => panic!("`{spec}`: expected BadSpec, got {e:?}"),
    }
}

#[test]
fn every_registry_name_resolves() {
    let reg = tessel_workloads::registry();
    let names = tessel_workloads::registry_names();
    assert_eq!(reg.len(), names.len());
    // 10 ops x 4 shapes, 2 subgraphs x 4 shapes, 23 ResNet-50 convolutions.
    assert_eq!(reg.len(), 40 + 8 + 23);
    for (w, name) in reg.iter().zip(&names) {
        assert_eq!(&w.name, name);
        let again = tessel_workloads::lookup(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again.dag, w.dag, "{name}");
        // The canonical spec is itself a valid spec for the same DAG.
        let from_spec =
            tessel_workloads::lookup(&w.spec()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_spec.dag, w.dag, "{name}");
        assert_eq!(from_spec.name, w.spec());
        assert!(w.flop() > 0, "{name}");
    }
    for prefix in [
        "c1d",
        "c2d",
        "c3d",
        "gmm",
        "grp",
        "dil",
        "dep",
        "t2d",
        "cap",
        "nrm",
        "convlayer",
        "tbg",
    ] {
        for k in 1..=4 {
            let name = format!("{prefix}-{k}");
            assert!(names.contains(&name), "missing {name}");
        }
    }
    assert!(names.contains(&"resnet50-conv-23".to_string()));
}

#[test]
fn flops_match_the_benchmark_tables() {
    let flop = |s: &str| tessel_workloads::lookup(s).unwrap().flop();
    assert_eq!(flop("gmm-3"), 2 * 512 * 512 * 512);
    assert_eq!(flop("gmm:b=1,n=512,m=512,k=512"), 2 * 512 * 512 * 512);
    // WORKLOADS.md §6.1: MFLOP = 2*K*OH*OW*C*R*S.
    assert_eq!(flop("resnet50-conv-1"), 2 * 64 * 112 * 112 * 3 * 7 * 7);
    assert_eq!(
        (flop("resnet50-conv-1") as f64 / 1e6 * 10.0).round() / 10.0,
        236.0
    );
    let table = [
        236.0, 25.7, 231.2, 102.8, 102.8, 205.5, 231.2, 102.8, 205.5, 102.8, 231.2, 205.5, 231.2,
        102.8, 205.5, 102.8, 231.2, 205.5, 231.2, 102.8, 205.5, 102.8, 231.2,
    ];
    for (k, mflop) in table.iter().enumerate() {
        let got = flop(&format!("resnet50-conv-{}", k + 1)) as f64 / 1e6;
        assert!(
            (got - mflop).abs() < 0.06,
            "resnet50-conv-{}: {got} MFLOP, table {mflop}",
            k + 1
        );
    }
    // Grouped: CI/groups per output channel; NRM: one multiply and one add per element.
    assert_eq!(flop("grp-2"), 2 * 56 * 56 * 64 * 16);
    assert_eq!(flop("nrm-4"), 2 * 4096 * 1024);
    // ConvLayer: the conv plus bias, bn mul, bn add, relu per output element.
    assert_eq!(
        flop("convlayer-4"),
        2 * 7 * 7 * 512 * 512 * 9 + 4 * 7 * 7 * 512
    );
    assert_eq!(flop("tbg-1"), 2 * 12 * 128 * 128 * 64);
}

#[test]
fn batch_overrides_the_batch_key() {
    let w = tessel_workloads::lookup_with_batch("c2d-1", 16).unwrap();
    assert_eq!(w.name, "c2d-1");
    assert_eq!(w.param("n"), Some(16));
    assert_eq!(
        w.flop(),
        16 * tessel_workloads::lookup("c2d-1").unwrap().flop()
    );
    assert_eq!(
        w.spec(),
        "c2d:n=16,h=224,w=224,ci=3,co=64,kernel=7,stride=2,pad=3"
    );
    let g = tessel_workloads::lookup_with_batch("gmm:b=1,n=8,m=8,k=8", 4).unwrap();
    assert_eq!(g.param("b"), Some(4));
    assert_eq!(g.dag.op(g.dag.inputs()[0]).shape, vec![4, 8, 8]);
    // The batch key may be left out of a spec when --batch gives it.
    let t = tessel_workloads::lookup_with_batch("tbg:seq=8,heads=2,dim=4", 3).unwrap();
    assert_eq!(t.spec(), "tbg:b=3,seq=8,heads=2,dim=4");
    let all = tessel_workloads::registry_with_batch(Some(16)).unwrap();
    for w in &all {
        let info = tessel_workloads::op_infos()
            .iter()
            .find(|o| o.name == w.op)
            .unwrap();
        let key = info.batch_key.unwrap();
        assert_eq!(w.param(key), Some(16), "{}", w.name);
    }
    let nrm = all.iter().find(|w| w.name == "nrm-4").unwrap();
    assert_eq!((nrm.param("b"), nrm.param("n")), (Some(16), Some(1024)));
    // Ops without a batch dimension refuse it.
    let e = tessel_workloads::lookup_with_batch("softmax:m=4,n=4", 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--batch 2") && e.contains("no batch"), "{e}");
    let e = tessel_workloads::lookup_with_batch("gmm-1", 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--batch 0") && e.contains("not positive"), "{e}");
}

#[test]
fn optional_keys_and_defaults() {
    let grp =
        tessel_workloads::lookup("grp:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1").unwrap();
    assert_eq!(grp.param("groups"), Some(4));
    assert_eq!(
        grp.spec(),
        "grp:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1"
    );
    let dil =
        tessel_workloads::lookup("dil:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=2").unwrap();
    assert_eq!(dil.param("dilation"), Some(2));
    let c2d = tessel_workloads::lookup(
        "C2D: n=1, h=8, w=8, ci=8, co=8, kernel=3, stride=1, pad=1, groups=2",
    )
    .unwrap();
    assert_eq!(
        c2d.spec(),
        "c2d:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=1,groups=2"
    );
    assert_eq!(c2d.name, c2d.spec());
    // Every extra op resolves and evaluates.
    for spec in [
        "matmul:n=4,m=5,k=6",
        "dense:n=2,in=8,out=4",
        "softmax:m=3,n=7",
        "maxpool:n=1,h=8,w=8,c=2,kernel=3,stride=2,pad=1",
        "maxpool-nchw:n=1,h=5,w=5,c=2,pad=1",
        "avgpool:n=1,h=4,w=4,c=3",
        "avgpool-nchw:n=1,h=4,w=4,c=3",
        "c2d-nchw:n=1,h=8,w=8,ci=4,co=4,kernel=3,stride=1,pad=1",
        "c1d:n=1,l=9,ci=4,co=4,kernel=3,stride=1,pad=1",
        "c3d:n=1,d=3,h=4,w=4,ci=2,co=2,kernel=3,stride=1,pad=1",
        "dep:n=1,h=6,w=6,c=4,kernel=3,stride=1,pad=1",
        "t2d:n=1,h=3,w=3,ci=2,co=2,kernel=3,stride=2,pad=1",
        "cap:n=1,h=4,w=4,ci=2,co=2,kernel=3,stride=1,pad=1",
        "nrm:b=2,m=3,n=4",
        "convlayer:n=1,h=6,w=6,ci=2,co=3,kernel=3,stride=1,pad=1",
        "tbg:b=1,seq=4,heads=2,dim=3",
    ] {
        let w = tessel_workloads::lookup(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        let out = eval::evaluate(&w.dag, &eval::random_inputs(&w.dag, 7)).unwrap();
        assert!(out[0].iter().all(|v| v.is_finite()), "{spec}");
    }
}

#[test]
fn bad_specs_name_the_bad_part() {
    // Unknown op: named, and the known ops are listed.
    let e = err_text("conv9d:n=1");
    assert!(
        e.contains("conv9d") && e.contains("c2d") && e.contains("gmm"),
        "{e}"
    );
    // Unknown name.
    let e = err_text("c2d-99");
    assert!(e.contains("c2d-99"), "{e}");
    // An op name without keys.
    let e = err_text("gmm");
    assert!(e.contains("b=...") && e.contains("k=..."), "{e}");
    // Unknown key.
    let e = err_text("gmm:b=1,n=8,m=8,k=8,q=3");
    assert!(e.contains("`q=3`") && e.contains("unknown key `q`"), "{e}");
    // Missing key.
    let e = err_text("gmm:b=1,n=8,m=8");
    assert!(e.contains("missing key `k`"), "{e}");
    // Non-integer value.
    let e = err_text("gmm:b=1,n=eight,m=8,k=8");
    assert!(
        e.contains("`n=eight`") && e.contains("not an integer"),
        "{e}"
    );
    // Non-positive value (pad may be 0, not negative).
    let e = err_text("gmm:b=1,n=0,m=8,k=8");
    assert!(e.contains("`n=0`") && e.contains("not positive"), "{e}");
    let e = err_text("c2d:n=1,h=8,w=8,ci=8,co=8,kernel=3,stride=1,pad=-1");
    assert!(e.contains("`pad=-1`") && e.contains("negative"), "{e}");
    // Too large.
    let e = err_text("gmm:b=1,n=99999999999,m=8,k=8");
    assert!(
        e.contains("n=99999999999") && e.contains("too large"),
        "{e}"
    );
    let e = err_text("gmm:b=1000000,n=1000000,m=1000000,k=1000000");
    assert!(e.contains("too large"), "{e}");
    // Duplicate key.
    let e = err_text("gmm:b=1,n=8,n=9,m=8,k=8");
    assert!(
        e.contains("`n=9`") && e.contains("duplicate key `n`"),
        "{e}"
    );
    // Not key=value.
    let e = err_text("gmm:b=1,n,m=8,k=8");
    assert!(e.contains("`n`") && e.contains("key=value"), "{e}");
    // Invalid combinations.
    let e = err_text("c2d:n=1,h=8,w=8,ci=6,co=8,kernel=3,stride=1,pad=1,groups=4");
    assert!(e.contains("groups=4") && e.contains("divide"), "{e}");
    let e = err_text("c2d:n=1,h=2,w=2,ci=4,co=4,kernel=7,stride=1,pad=0");
    assert!(
        e.contains("output size") && e.contains("not positive"),
        "{e}"
    );
    let e = err_text("t2d:n=1,h=4,w=4,ci=4,co=4,kernel=3,stride=2,pad=3");
    assert!(e.contains("padding 3"), "{e}");
    let e = err_text("maxpool:n=1,h=2,w=2,c=1,kernel=5,stride=1,pad=0");
    assert!(e.contains("window 5"), "{e}");
}

#[test]
fn evaluator_rejects_wrong_inputs() {
    let w = tessel_workloads::lookup("matmul:n=2,m=3,k=4").unwrap();
    let e = eval::evaluate(&w.dag, &[vec![0.0; 8]])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expected 2 input buffers") && e.contains("A, B"),
        "{e}"
    );
    let e = eval::evaluate(&w.dag, &[vec![0.0; 8], vec![0.0; 11]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("input B") && e.contains("11"), "{e}");
    // random_inputs is deterministic, in [-1, 1), and depends on the seed.
    let a = eval::random_inputs(&w.dag, 5);
    assert_eq!(a, eval::random_inputs(&w.dag, 5));
    assert_ne!(a, eval::random_inputs(&w.dag, 6));
    assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![8, 12]);
    assert!(a.iter().flatten().all(|v| (-1.0..1.0).contains(v)));
}

#[test]
fn evaluator_handles_real_sizes() {
    // 256^3 matmul (16.7M multiply-adds): well under a second in release builds; the
    // bound here is loose because the test machine is shared.
    let w = tessel_workloads::lookup("matmul:n=256,m=256,k=256").unwrap();
    let inputs = eval::random_inputs(&w.dag, 3);
    let start = std::time::Instant::now();
    let out = eval::evaluate(&w.dag, &inputs).unwrap();
    let took = start.elapsed();
    assert!(took.as_secs_f64() < 5.0, "256^3 matmul took {took:?}");
    let (a, b) = (&inputs[0], &inputs[1]);
    for &(i, j) in &[(0usize, 0usize), (17, 200), (255, 255)] {
        let want: f32 = (0..256).fold(0.0, |acc, k| acc + a[i * 256 + k] * b[k * 256 + j]);
        assert_eq!(out[0][i * 256 + j], want, "C[{i}, {j}]");
    }
}
