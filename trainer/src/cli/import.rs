//! `trainer import`: a dense ReLU MLP from ONNX (784 inputs, 10 classes, any hidden widths), quantized, written and evaluated.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use trainer::idx::load_mnist;
use trainer::output_set::OutputSet;
use trainer::pipeline::{write_f32, write_quant};
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
}

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
    let net = trainer::onnx::import(&bytes)
        .with_context(|| format!("{} is not a usable 784-H-10 model", args.model.display()))?;
    let need = 2 * model_bytes_bound(&net.widths());
    let out = OutputSet::begin(&args.out, need)?;
    let mnist = load_mnist(&data_dir)?;
    let scales = calibrate_hidden_scales(&net, &mnist.train.head(CALIBRATION_IMAGES));
    let quantized = quantize_with_scales(&net, &scales, Width::Int8)?;
    let f32 = write_f32(&out, &net, &mnist.test)?;
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
