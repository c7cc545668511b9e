//! # infer-core
//!
//! Inference for the Keras-tutorial MNIST network (784 → 512 ReLU → 10 softmax) on anything from
//! a Cortex-M0 to an AVX-512 server: `#![no_std]`, no allocator, no panics, and the same answer
//! bit for bit on every CPU for the int8 model.
//!
//! - [`format`]: the model file, validated once by [`Int8Model::from_bytes`] /
//!   [`F32Model::from_bytes`] and then read in place (zero-copy: a `&'static [u8]` in flash works);
//! - [`quant`]: the integer arithmetic of the int8 network;
//! - [`kernels`]: the int8 matrix–vector product — a scalar reference, AVX2, AVX-VNNI,
//!   AVX-512 VNNI, Cortex-M DSP and NEON, all bit-exact with the reference;
//! - the forward passes, [`Int8Model::predict`] and [`F32Model::logits`].
//!
//! ## Example
//!
//! ```
//! # fn main() -> Result<(), infer_core::format::FormatError> {
//! use infer_core::Int8Model;
//! # use infer_core::{format::{write, CLASSES_PADDED}, HIDDEN, INPUTS};
//! # let (w1, w2) = (vec![1i8; HIDDEN * INPUTS], vec![1i8; CLASSES_PADDED * HIDDEN]);
//! # let parts = write::Int8Parts { hidden_scale: 0.1, w1_scale: &[0.01; HIDDEN], b1: &[0; HIDDEN],
//! #     m1: &[1 << 30; HIDDEN], s1: &[40; HIDDEN], w2_scale: &[0.01; CLASSES_PADDED],
//! #     b2: &[0; CLASSES_PADDED], w1: &w1, w2: &w2 };
//! # let mut model_file = vec![0u8; write::MAX_INT8_LEN];
//! # let len = write::int8(&parts, &mut model_file)?;
//! # model_file.truncate(len);
//! // `model_file` is the `mlp-int8.bin` that `cargo run -p trainer` writes (or `include_bytes!`).
//! let model = Int8Model::from_bytes(&model_file)?;
//! let digit = [0u8; 784]; // 28 × 28 raw pixels, 0 = background, row by row
//! let prediction = model.predict(&digit);
//! assert!(prediction.class < 10);
//! let probabilities = model.probabilities(&prediction);
//! assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
//! # Ok(()) }
//! ```
//!
//! ## The int8 arithmetic
//!
//! Input: the raw u8 pixels (scale 1/255, zero point 0), so a device feeds sensor bytes directly.
//! Weights: int8, symmetric (zero point 0, range ±127), one scale per output unit. Biases: i32 at
//! scale `input scale × weight scale`. The hidden layer's i32 accumulators are requantized to u8
//! at a scale calibrated on training data by a fixed-point multiplier and shift, with the ReLU
//! folded into the clamp at 0 ([`quant::requantize`]); the output layer's i32 accumulators give
//! the class by arg-max. No float is used up to the class; [`Int8Model::probabilities`] adds an
//! optional f32 softmax (via `libm`).
//!
//! ## f32 tolerance
//!
//! [`F32Model::logits`] sums in the same order as the trainer's forward pass but without fused
//! multiply-adds; logits agree with the trainer's to within 1e-4 relative, and predictions agree
//! except where two logits are that close.
//!
//! ## Features
//!
//! - `std`: runtime CPU detection (the best x86 kernel of the running machine is used, not only
//!   the compile-time target's) and `std::error::Error` through `core::error::Error`.
//! - `defmt`: `defmt::Format` for the public types.
//!
//! Without `std`, kernel selection is decided at compile time: build with
//! `-C target-feature=+avx512vnni` (or `target-cpu=native`) to get VNNI in a `no_std` x86 build.
//!
//! ## Panics
//!
//! None reachable from the public API: the crate denies `unwrap`, `expect`, `panic!` and
//! indexing outside tests, and every length is checked once, by `from_bytes`, with an error.
//!
//! ## MSRV
//!
//! Rust 1.89 (AVX-512 intrinsics).
#![no_std]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod format;
pub mod kernels;
mod model;
pub mod quant;

pub use format::{F32Model, FormatError, Int8Model};
pub use kernels::Kernel;
pub use model::Prediction;

/// Pixels per image (28 × 28), the network's input width.
pub const INPUTS: usize = 784;
/// Hidden ReLU units.
pub const HIDDEN: usize = 512;
/// Output classes (digits 0–9).
pub const CLASSES: usize = 10;
