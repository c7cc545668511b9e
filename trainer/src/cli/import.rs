//! `trainer import`: a dense ReLU MLP from ONNX (784 inputs, 10 classes, any hidden widths), quantized, written and evaluated.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use trainer::idx::load_mnist;
use trainer::output_set::OutputSet;
use trainer::pipeline::{keep_existing_models, write_f32, write_quant};
use trainer::quantize::model_bytes_bound;
use trainer::quantize::{CALIBRATION_IMAGES, Width, calibrate_hidden_scales, quantize_with_scales};

use super::default_data_dir;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// An ONNX file of an MLP from 784 inputs to 10 classes (784-512-10, 784-128-10, …: Gemm or
    /// MatMul+Add, Relu, optional Softmax), as tf2onnx exports the Keras tutorial's model or
    /// torch.onnx.export a PyTorch one.
    model: PathBuf,
    /// Folder for the model files (mlp-int8.bin, mlp-f32.bin), replaced as a whole when both
    /// are written.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Folder with the MNIST IDX files: training images calibrate the int8 model, test images
    /// evaluate both [default: data/mnist]
    #[arg(long)]
    data: Option<PathBuf>,
    /// The mean the model's inputs were normalized with outside the graph, `(x − mean) / std`
    /// on pixels in 0–1 (PyTorch's `Normalize((0.1307,), (0.3081,))`: 0.1307); folded into the
    /// first layer. Needs --input-std.
    #[arg(long, requires = "input_std", allow_negative_numbers = true)]
    input_mean: Option<f32>,
    /// The standard deviation of that normalization (0.3081 for PyTorch's MNIST examples).
    #[arg(long, requires = "input_mean")]
    input_std: Option<f32>,
    /// Write the model files even if the imported model scores below 50 % on the test set
    /// (which replaces the set in --out).
    #[arg(long)]
    force: bool,
}

/// Below this f32 test accuracy an imported model is taken for one whose inputs are scaled
/// otherwise than the pixels in 0–1 it is given.
const FAILED_ACCURACY: f64 = 0.5;

pub(crate) fn import(args: ImportArgs) -> Result<()> {
    let data_dir = args.data.clone().unwrap_or_else(default_data_dir);
    trainer::places::Files::new()
        .input(&args.model, "the ONNX file")?
        .input(&data_dir, "the data folder")?
        .output(&args.out, "--out")?
        .check()?;
    let bytes = trainer::output::read_capped(
        &args.model,
        trainer::output::MAX_MODEL_BYTES,
        "an ONNX file",
    )?;
    let mut scaling = trainer::onnx::InputScaling {
        outside: args.input_mean.zip(args.input_std),
        folded: Vec::new(),
    };
    let net = trainer::onnx::import_scaled(&bytes, &mut scaling)
        .with_context(|| format!("{} is not a usable 784-H-10 model", args.model.display()))?;
    for step in &scaling.folded {
        say!("input scaling folded into the first layer: {step}")?;
    }
    let need = 2 * model_bytes_bound(&net.widths());
    let out = OutputSet::begin(&args.out, need)?;
    let mnist = load_mnist(&data_dir)?;
    let scales = calibrate_hidden_scales(&net, &mnist.train.head(CALIBRATION_IMAGES));
    let quantized = quantize_with_scales(&net, &scales, Width::Int8)?;
    let f32 = write_f32(&out, &net, &mnist.test)?;
    if f32.test_accuracy < FAILED_ACCURACY {
        eprintln!(
            "warning: the imported model scores {:.4} on the test set: its inputs are probably \
             scaled otherwise than pixels in 0–1 (was it trained on normalized inputs? give \
             --input-mean and --input-std; on 0–255? a Rescaling or Div node in the graph is \
             folded, a scaling done outside it is not)",
            f32.test_accuracy
        );
        keep_existing_models(&out, args.force, "the imported model", "it")?;
    }
    let (int8, _) = write_quant(&out, &quantized, &mnist.test)?;
    out.commit()?;
    say!(
        "imported {}: f32 test accuracy {:.4}, int8 {:.4} ({:+.2} pp) - wrote {} and {}",
        args.model.display(),
        f32.test_accuracy,
        int8.test_accuracy,
        100.0 * (int8.test_accuracy - f32.test_accuracy),
        f32.path,
        int8.path
    )
}
