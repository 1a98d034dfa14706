//! The errors of the ONNX importer.

use tessel_ir::IrError;

/// Why a model could not be imported. Every variant names what is wrong and where (the
/// node, its operator and opset, the attribute, the input).
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a protobuf `ModelProto` (a truncated file or another format).
    #[error(
        "not a readable ONNX model (truncated file or not ONNX): protobuf decoding failed: {0}"
    )]
    Decode(String),
    /// The bytes decode, but not to an ONNX model (no IR version or no graph).
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    /// The model uses an operator set newer than the importer knows.
    #[error(
        "the model uses opset {version} of domain `{domain}`; this importer knows opsets up to {max}"
    )]
    OpsetTooNew {
        /// The domain (`ai.onnx` for the default one).
        domain: String,
        /// The model's opset version.
        version: i64,
        /// The newest opset the importer knows.
        max: i64,
    },
    /// An operator the importer has no mapping for.
    #[error("unsupported operator `{op}` (node `{node}`, opset {opset}){detail}")]
    UnsupportedOperator {
        /// The operator, with its domain when not the default one.
        op: String,
        /// The node's name.
        node: String,
        /// The opset of the node's domain.
        opset: i64,
        /// What about it is unsupported, when more can be said (starts with `: `).
        detail: String,
    },
    /// An attribute value (or constant input playing that role) the importer cannot map.
    #[error("node `{node}` ({op}): unsupported {attr} = {value}: {reason}")]
    UnsupportedAttribute {
        /// The node's name.
        node: String,
        /// Its operator.
        op: String,
        /// The attribute.
        attr: String,
        /// Its value, as written in the model.
        value: String,
        /// What the importer supports instead.
        reason: String,
    },
    /// A graph input has a symbolic or unknown dimension and no shape was given for it.
    #[error(
        "input `{input}` has a dynamic shape {shape}; give it with `--input {input}:{example}`"
    )]
    DynamicShape {
        /// The input's name.
        input: String,
        /// Its shape as the model states it (`[batch, 3, 224, 224]`).
        shape: String,
        /// An example override (`1x3x224x224`).
        example: String,
    },
    /// Any other problem of the model, at a node.
    #[error("node `{node}` ({op}): {reason}")]
    Invalid {
        /// The node's name.
        node: String,
        /// Its operator.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// A problem of the model as a whole (its inputs and outputs, a shape override).
    #[error("{0}")]
    Model(String),
    /// The network graph rejected a layer.
    #[error(transparent)]
    Ir(#[from] IrError),
}
