//! ONNX in and out for dense ReLU networks (any widths: MNIST's 784 inputs and 10 classes, or
//! another dataset's).
//!
//! - [`export_f32`], [`export_quant`]: the f32 model as `MatMul → Add → Relu → … → MatMul → Add`
//!   (output `logits`); an integer model (int8, or int4 whose −8…7 values an int8 tensor holds
//!   exactly) as the same graph with QuantizeLinear/DequantizeLinear pairs carrying infer-core's
//!   exact scales and zero points: the input quantized at 1/255 (the raw pixels), per-channel
//!   symmetric weights (stored as uint8 `w + 128` with zero point 128, which ONNX Runtime
//!   multiplies exactly on every x86 CPU), the hidden activations requantized at the model's
//!   hidden scales. The input is `pixels`, `[N, 784]` floats in 0–1 (the raw pixel / 255, as Keras
//!   takes them). Opset 13.
//! - [`import`]: a graph read as a graph — the data flow followed from its input to its output,
//!   every node accounted for — that is a chain of dense layers (`Gemm`, any `transB`, as
//!   `torch.onnx.export` writes it, or `MatMul` + `Add`, as tf2onnx writes Keras's `Dense`) with
//!   a `Relu` between each two, optional `Flatten`/`Reshape` at the input and `Softmax` at the
//!   output, `Identity` anywhere; anything else is refused naming the node.
//!
//! The protobuf messages ([`schema`]) are the subset of `onnx.proto` (proto2) these need, field
//! numbers as there.

mod export;
mod import;
pub mod schema;

pub use export::{export_f32, export_quant};
pub use import::{InputScaling, import, import_scaled};
pub use schema::*;
