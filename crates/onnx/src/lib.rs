//! Tessel's ONNX frontend: reads an `.onnx` file into a network graph and its weights.
//!
//! [`import`] decodes the protobuf with `prost` (the message types are in [`proto`], written
//! from `onnx.proto`, so no `protoc` is needed), computes constant subgraphs at import
//! (`Shape`/`Gather`/`Unsqueeze`/`Concat` chains, `Constant`, initializers listed as graph
//! inputs by old opsets), folds `BatchNormalization` into the convolution before it, and maps
//! the operators to [`tessel_workloads::networks::Layer`]s. 4-D NCHW tensors are held as NHWC (the
//! layout of Tessel's convolution kernels); every layout change is listed in
//! [`Model::layout_changes`]. The result fuses into the same tasks as the built-in networks,
//! so an exported ResNet-50 has the tasks (and workload keys) of `tessel tasks resnet50`.
//!
//! Bad input is an [`OnnxError`]: a truncated or non-ONNX file, an unsupported operator
//! (named with its node and opset), an unsupported attribute value, a symbolic input shape
//! that was not given ([`ImportOptions::input_shapes`]), an opset newer than [`MAX_OPSET`].
//!
//! ```
//! use tessel_onnx::{import, ImportOptions, OnnxError};
//! // Not a model: a clear error, never a panic.
//! let err = import(b"hello, world", &ImportOptions::default()).unwrap_err();
//! assert!(matches!(err, OnnxError::Decode(_) | OnnxError::NotOnnx(_)), "{err}");
//! ```
//!
//! Importing a file: `let model = tessel_onnx::import_file("model.onnx", &Default::default())?;`
//! then `tessel_workloads::networks::extract_tasks(&model.network)` gives its tasks and
//! `model.weights` its constants.

mod error;
mod import;
mod patterns;
pub mod proto;
mod tensor;

pub use error::OnnxError;
pub use import::{import, import_file, ImportOptions, Model, Port, MAX_OPSET, MIN_OPSET};
