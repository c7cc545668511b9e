//! The subcommands, one module each; `main` parses the command line and dispatches here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use trainer::quantize::Width;

/// Every line the CLI prints goes through [`emit`]: `say!("…", args)?`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) mod demo;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod predict;
pub(crate) mod train;

pub(crate) const EXAMPLES: &str = "\
Examples:
  trainer                                  train with the Keras tutorial's recipe (same as `trainer train`)
  trainer --recipe best                    the most accurate model the network holds (about a minute)
  trainer train --epochs 10 --seed 7       train longer, with another seed
  trainer --validation-split 0.1           hold out the last 10 % of the training set, as Keras does
  trainer --recipe best --weights both     also write the int4 model (half the flash), trained for it
  trainer train --plots out/plots          and draw the history, confusion matrix, misclassified digits
  trainer eval out/mlp-int8.bin            accuracy, confusion matrix, precision and recall on the test set
  trainer predict out/mlp-int8.bin my-7.png   classify your own handwriting
  trainer inspect out/mlp-int8.bin         what a model file holds
  trainer export out/mlp-int8.bin --format onnx -o mlp-int8.onnx   for Netron, ONNX Runtime
  trainer export out/mlp-int8.bin --format c -o mlp_int8.h   the model as a C array
  trainer import keras-mnist.onnx          a model trained elsewhere, quantized and evaluated
  trainer demo                             draw digits in your browser, the model running in the page";

/// Trains the Keras-tutorial MNIST network (784 → 512 ReLU → 10 softmax), quantizes it to int8
/// for microcontrollers, and checks models on test digits or your own images.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true, after_help = EXAMPLES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) train: train::TrainArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Train, quantize, write both model files and the report (the default).
    #[command(after_help = "Example:\n  trainer train --epochs 5 --batch-size 128 --out out/")]
    Train(train::TrainArgs),
    /// Accuracy of an int8, int4 or f32 model file on a test set, with the confusion matrix.
    #[command(after_help = "Example:\n  trainer eval out/mlp-int8.bin --data data/mnist")]
    Eval(eval::EvalArgs),
    /// Classify your own digit images (PNG, JPEG, PGM; any size; dark ink on light or the reverse;
    /// photos with uneven light; ink in the alpha channel). Each image gets its own answer or its
    /// own error; the status is 1 if any failed.
    #[command(
        after_help = "Example:\n  trainer predict out/mlp-int8.bin photo-of-a-7.jpg scan.png --json"
    )]
    Predict(predict::PredictArgs),
    /// Show a model file's format version, shape, quantization parameters, sizes and CRC status.
    #[command(after_help = "Example:\n  trainer inspect out/mlp-int8.bin")]
    Inspect(inspect::InspectArgs),
    /// Write a model file in another form: ONNX (for Netron, ONNX Runtime, other toolchains), or
    /// a C header with its bytes (for a C, Zephyr or Arduino project that links infer-core).
    #[command(
        after_help = "Examples:\n  trainer export out/mlp-int8.bin --format onnx -o mlp-int8.onnx\n  trainer export out/mlp-int8.bin --format c -o mlp_int8.h"
    )]
    Export(export::ExportArgs),
    /// Bring an MLP trained elsewhere (ONNX from Keras or PyTorch; any widths that fit --data,
    /// MNIST's 784 inputs and 10 classes by default): quantized with the same calibration,
    /// written as f32 and the --weights integer model files with a report, evaluated.
    #[command(after_help = "Example:\n  trainer import keras-mnist.onnx --out out/")]
    Import(import::ImportArgs),
    /// Serve the browser page on 127.0.0.1: draw a digit, the model answers in the page
    /// (WebAssembly), bit for bit as `predict` does. Or write the page's static files.
    #[command(
        after_help = "Examples:\n  trainer demo\n  trainer demo out/mlp-int4.bin --port 8080\n  trainer demo --write site/"
    )]
    Demo(demo::DemoArgs),
}

/// Which integer model files a run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Weights {
    /// mlp-int8.bin.
    Int8,
    /// mlp-int4.bin: half the bytes, for 256 KB parts.
    Int4,
    /// Both.
    Both,
}

impl Weights {
    pub(crate) fn widths(self) -> &'static [Width] {
        match self {
            Weights::Int8 => &[Width::Int8],
            Weights::Int4 => &[Width::Int4],
            Weights::Both => &[Width::Int8, Width::Int4],
        }
    }

    /// What quantization-aware epochs train for: the coarsest width written.
    pub(crate) fn qat_width(self) -> Width {
        match self {
            Weights::Int8 => Width::Int8,
            Weights::Int4 | Weights::Both => Width::Int4,
        }
    }
}

/// `--output-weights`: the output layer's weight width in the integer files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputWeights {
    /// int8: in an int4 file, the small last layer (512 × 10 weights) keeps 8 bits.
    Int8,
    /// int4.
    Int4,
}

impl OutputWeights {
    pub(crate) fn width(self) -> Width {
        match self {
            OutputWeights::Int8 => Width::Int8,
            OutputWeights::Int4 => Width::Int4,
        }
    }
}

/// Writes to stdout; a reader that closed the pipe early (`| head`) ends the output, not the
/// program with a panic (the work goes on: a training run still writes its models).
pub(crate) fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

pub(crate) fn validation_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be at least 0 and below 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `--density`: a fraction above 0, at most 1.
pub(crate) fn density_fraction(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        Ok(_) => Err("must be above 0 and at most 1 (the fraction of weights kept)".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `--live-cost`: a finite number from 0 to 2.
pub(crate) fn live_cost(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=2.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be from 0 to 2 (0: by contribution alone; 1: per multiply)".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The hidden layers' widths, as `--hidden` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HiddenWidths(pub(crate) Vec<usize>);

/// `--hidden`: one width, or a comma-separated list (`256,128`), each 1–1024, 1 to 7 layers.
pub(crate) fn hidden_widths(s: &str) -> Result<HiddenWidths, String> {
    let max_hidden = infer_core::format::MAX_LAYERS - 1;
    let widths = s
        .split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(v) if (1..=1024).contains(&v) => Ok(v),
            Ok(v) => Err(format!("{v}: a hidden layer has 1 to 1024 units")),
            Err(e) => Err(format!("{w:?}: {e}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if widths.len() > max_hidden {
        return Err(format!(
            "{} hidden layers: at most {max_hidden}",
            widths.len()
        ));
    }
    Ok(HiddenWidths(widths))
}

pub(crate) fn positive_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `data/mnist` below the current folder, else the copy shipped in this repository.
pub(crate) fn default_data_dir() -> PathBuf {
    let here = PathBuf::from("data/mnist");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}
