//! `trainer import`: a dense ReLU MLP from ONNX (any widths; the data's images and classes), quantized, written and evaluated.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use trainer::idx::load_mnist;
use trainer::output::{ImportReport, REPORT_FILE, write_atomic, written_files};
use trainer::output_set::OutputSet;
use trainer::pipeline::{keep_existing_models, write_f32, write_integer_files};
use trainer::quantize::model_bytes_bound;
use trainer::quantize::{CALIBRATION_IMAGES, calibrate_hidden_scales};

use super::{OutputWeights, Weights, default_data_dir};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// An ONNX file of an MLP (784-512-10, 784-128-10, …, or any widths that match --data's
    /// images and classes: Gemm or MatMul+Add, Relu, optional Softmax), as tf2onnx exports the
    /// Keras tutorial's model or torch.onnx.export a PyTorch one.
    model: PathBuf,
    /// Folder for the model files (mlp-f32.bin and those of --weights), report.json and a
    /// manifest; replaced as a whole when all are written (the summary names what it replaced).
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Integer model files to write: int8 (mlp-int8.bin), int4 (mlp-int4.bin, half the size) or
    /// both, each quantized with the same calibration. The f32 model is always written.
    #[arg(long, value_enum, default_value_t = Weights::Int8)]
    weights: Weights,
    /// The output layer's weight width in the integer files, where it should differ from the
    /// file's (as `trainer --output-weights`) [default: the file's]
    #[arg(long, value_enum)]
    output_weights: Option<OutputWeights>,
    /// Folder with the IDX files (MNIST's names; the model's inputs and classes must fit them):
    /// training images calibrate the integer models, test images evaluate every file
    /// [default: data/mnist]
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

/// Room for the report: a few names and figures.
const REPORT_BYTES: u64 = 64 * 1024;

pub(crate) fn import(args: ImportArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let data_dir = args.data.clone().unwrap_or_else(default_data_dir);
    trainer::places::Files::new()
        .input(&args.model, "the ONNX file")?
        .input(&data_dir, "the data folder")?
        .output_folder(&args.out, "--out")?
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
        .with_context(|| format!("{} is not a usable dense ReLU model", args.model.display()))?;
    for step in &scaling.folded {
        say!("input scaling folded into the first layer: {step}")?;
    }
    let widths = args.weights.widths();
    let need = (1 + widths.len() as u64) * model_bytes_bound(&net.widths()) + REPORT_BYTES;
    let out = OutputSet::begin(&args.out, need)?;
    let mnist = load_mnist(&data_dir)?;
    let layers = net.widths();
    let (inputs, classes) = (layers[0], layers[layers.len() - 1]);
    anyhow::ensure!(
        inputs == mnist.train.pixels() && classes >= mnist.train.classes(),
        "{} takes {inputs} inputs to {classes} classes; the data in {} is images of {} pixels \
         ({}×{}) in {} classes",
        args.model.display(),
        data_dir.display(),
        mnist.train.pixels(),
        mnist.train.rows,
        mnist.train.cols,
        mnist.train.classes()
    );
    let scales = calibrate_hidden_scales(&net, &mnist.train.head(CALIBRATION_IMAGES));
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
    let source = args.model.display().to_string();
    // Lines to stdout: the first failure to write one (a full stdout) ends the import.
    let mut shown = Ok(());
    let files = write_integer_files(
        &out,
        (&net, &scales),
        (widths, args.output_weights.map(OutputWeights::width)),
        &mnist.test,
        &f32,
        &source,
        &mut |line| {
            if shown.is_ok() {
                shown = say!("{line}");
            }
        },
    )?;
    shown?;
    let report = ImportReport {
        source,
        source_sha256: trainer::idx::sha256_hex(&bytes),
        source_bytes: bytes.len(),
        layers: net.widths(),
        input_scaling: scaling.folded.iter().map(ToString::to_string).collect(),
        data_dir: data_dir.display().to_string(),
        weights: widths.to_vec(),
        output_weights: args.output_weights.map(OutputWeights::width),
        int8: files.int8,
        int4: files.int4,
        f32,
        replaced: out.previous().to_vec(),
        total_seconds: started.elapsed().as_secs_f64(),
    };
    let report_path = Path::new(REPORT_FILE);
    write_atomic(
        &out.stage(report_path)?,
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let report_path = out.final_path(report_path);
    let replaced = if report.replaced.is_empty() {
        String::new()
    } else {
        format!(
            ", replacing {}'s previous {}",
            out.shown().display(),
            report.replaced.join(", ")
        )
    };
    out.commit()?;
    say!(
        "imported {} ({}): wrote {} and {}{replaced}",
        args.model.display(),
        trainer::model_file::shape_name(&report.layers),
        written_files([&report.int8, &report.int4], &report.f32),
        report_path.display(),
    )
}
