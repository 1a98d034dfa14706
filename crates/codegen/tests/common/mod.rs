//! Helpers shared by the code generator's integration tests.

use tessel_codegen::{compile, CompileOptions, Kernel};
use tessel_ir::LoopNest;

/// Compiles `nest` with `opts` and runs it once on `inputs`: its outputs (filled with NaN
/// before the call, so a value the kernel never writes shows) and the kernel.
pub fn compile_and_run(
    nest: &LoopNest,
    opts: &CompileOptions,
    inputs: &[&[f32]],
) -> (Vec<Vec<f32>>, Kernel) {
    let kernel = compile(nest, opts).unwrap_or_else(|e| panic!("compile failed: {e}\n{nest}"));
    let mut outputs: Vec<Vec<f32>> = kernel
        .outputs()
        .iter()
        .map(|(_, n)| vec![f32::NAN; *n])
        .collect();
    let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
    kernel.run(inputs, &mut outs).expect("runs");
    (outputs, kernel)
}
