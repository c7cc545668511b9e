//! Host-side training of the Keras-tutorial MNIST MLP (784 → 512 ReLU → 10 softmax) with nalgebra.
//!
//! - [`idx`] (the `mnist-idx` crate, which the firmware's build script shares) reads MNIST-style
//!   IDX datasets (gzip or raw) and rejects bad files with clear errors;
//! - [`kernels`] holds the vectorized inner loops;
//! - [`sparse`] multiplies the mostly-zero images with the first layer;
//! - [`mlp`] holds the network, its backprop and RMSprop;
//! - [`train`] runs the epochs (two recipes) and evaluates; [`augment`] distorts digits for the
//!   `best` recipe;
//! - [`quantize`] turns the trained network into infer-core's int8 and f32 model files; [`qat`]
//!   fine-tunes it through the int8 arithmetic;
//! - [`output`] writes them and the JSON report, atomically, and [`output_set`] commits all of a
//!   run's files into its output folder as one; [`pipeline`] holds the steps every
//!   command that makes model files shares (write, read back, evaluate);
//! - [`plots`] draws the history, the confusion matrix and the misclassified digits;
//! - [`model_file`], [`metrics`] and [`digit`] serve `eval`, `inspect` and `predict`: loading a
//!   model of any kind, the confusion matrix, and MNIST-style preprocessing of a user's image;
//!   [`export`] writes a model file as a C header, [`onnx`] models as ONNX and reads them back.

pub mod augment;
pub mod digit;
pub mod export;
pub mod kernels;
pub mod metrics;
pub mod mlp;
pub mod model_file;
pub mod onnx;
pub mod output;
pub mod output_set;
pub mod pipeline;
pub mod places;
pub mod plots;
pub mod prune;
pub mod qat;
pub mod quantize;
pub mod sparse;
pub mod train;

pub use mnist_idx as idx;

/// The tutorial network's hidden width, the default (infer-core runs any chain of layers; the
/// trainer fits the `--hidden` layers between the data's inputs and classes).
pub mod shape {
    /// Hidden units of the tutorial's network (the default `--hidden`); the inputs and classes
    /// come from the data (MNIST's: 784 and 10).
    pub const HIDDEN: usize = 512;
}
