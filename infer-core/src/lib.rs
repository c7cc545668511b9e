//! # infer-core
//!
//! Inference of dense ReLU networks — any chain of layers, the Keras-tutorial MNIST network
//! (784 → 512 ReLU → 10 softmax) the first of them — on anything from a Cortex-M0 to an AVX-512
//! server: `#![no_std]`, no allocator, no panics, and the same answer bit for bit on every CPU
//! for the integer models.
//!
//! - [`format`]: the model file (its shape and each layer's weight kind are data), validated once
//!   by [`QuantModel::from_bytes`] / [`F32Model::from_bytes`] and then read in place (zero-copy:
//!   a `&'static [u8]` in flash works);
//! - [`quant`]: the integer arithmetic of the int8 and int4 networks;
//! - [`kernels`]: the int8 and int4 matrix–vector products over the non-zero inputs only — one
//!   algorithm, with a scalar reference and AVX2, AVX-VNNI, AVX-512 VNNI, Cortex-M DSP, NEON and
//!   WebAssembly SIMD128
//!   inner steps, all bit-exact with the reference — and over a pruned layer's kept tiles only
//!   ([`kernels::Sparsity`]: a layer stored block-sparse skips what is pruned and what is blank
//!   in the same walk);
//! - the forward passes, one loop over the layers: [`QuantModel::predict`] (each layer int8 or
//!   int4) and [`F32Model::logits`]. Their two activation buffers live on the stack, bounded by
//!   the model type's `MAX_WIDTH` ([`format::DEFAULT_MAX_WIDTH`] unless the caller picks one:
//!   the firmware derives it from the model it embeds); a wider model is refused at load.
//!
//! ## Example
//!
//! A model file embedded in the program, aligned as the zero-copy view needs:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn core::error::Error>> {
//! use infer_core::{QuantModel, include_model};
//!
//! // The file `cargo run -p trainer` writes to out/mlp-int8.bin (here the firmware's copy).
//! let model = QuantModel::from_bytes(include_model!("../../firmware-example/model/mlp-int8.bin"))?;
//! let digit = [0u8; 784]; // 28 × 28 raw pixels, 0 = background, row by row
//! let prediction = model.predict(&digit)?;
//! assert!(prediction.class < 10);
//! let probabilities = model.probabilities(&prediction);
//! assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
//! # Ok(()) }
//! ```
//!
//! A file read at run time works the same from any 4-byte-aligned buffer (64-byte aligned is
//! fastest: each weight tile is then one cache line).
//!
//! ## The int8 arithmetic
//!
//! Input: the raw u8 pixels (scale 1/255, zero point 0), so a device feeds sensor bytes directly.
//! Weights: int8, symmetric (zero point 0, range ±127), one scale per output unit. Biases: i32 at
//! scale `input scale × weight scale`. The hidden layer's i32 accumulators are requantized to u8
//! at a scale calibrated on training data by a fixed-point multiplier and shift, with the ReLU
//! folded into the clamp at 0 ([`quant::requantize`]); the output layer's i32 accumulators give
//! the class by comparing them at their classes' scales, exactly, in integers. No float is used
//! up to the class; [`QuantModel::probabilities`] adds an
//! optional f32 softmax (via `libm`).
//!
//! A layer may hold 4-bit weights instead (−8…7, the trainer uses ±7), half the flash: the same
//! biases, requantization and class comparison. A deeper network repeats the hidden layer's
//! arithmetic, each hidden layer with its own activation scale.
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
//! - `conformance`: [`kernels::conformance`], the suite every kernel passes, for running it where
//!   `cargo test` cannot (the firmware runs it on an emulated Cortex-M4).
//!
//! The weight kinds a build runs are not features but [`QuantModel`]'s `KINDS` parameter (a set of
//! [`kinds`], all by default): a firmware names its model's own, and the walks of the others stay
//! out of its flash.
//!
//! Without `std`, kernel selection is decided at compile time: build with
//! `-C target-feature=+avx512vnni` (or `target-cpu=native`) to get VNNI in a `no_std` x86 build.
//!
//! ## Panics
//!
//! None reachable from the public API: the crate denies `unwrap`, `expect`, `panic!` and
//! indexing outside tests, every length is checked once, by `from_bytes` or
//! [`kernels::matvec`], with an error, and the architecture modules are private.
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
mod weights;

pub use format::{F32Model, FormatError, QuantModel};
pub use kernels::{Kernel, KernelError};
pub use model::{Answer, AnyModel, Logits, Prediction};
pub use weights::{Weights, kinds};

/// Embeds a model file like `include_bytes!`, but 64-byte aligned: [`QuantModel::from_bytes`] and
/// [`F32Model::from_bytes`] need the weight sections word-aligned (a plain `include_bytes!` has
/// alignment 1 and may give [`FormatError::Misaligned`]), and the kernels are fastest with each
/// weight tile in one cache line. Yields a
/// `&'static [u8]`; the path is relative to the file that invokes it.
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        #[repr(C, align(64))]
        struct Aligned<T: ?Sized>(T);
        static ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!($path));
        &ALIGNED.0
    }};
}

/// The README's Rust snippets, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeSnippets;
