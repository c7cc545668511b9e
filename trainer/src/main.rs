use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use infer_core::format::Bits;
use infer_core::{F32Model, INPUTS, Int4Model, Int8Model, Kernel, QuantModel};
use trainer::idx::{Dataset, load_mnist};
use trainer::metrics::Confusion;
use trainer::model_file::{Classifier, ModelFile};
use trainer::output::{AlignedBytes, ModelReport, Report, TestStats, write_atomic};
use trainer::plots;
use trainer::quantize::{
    CALIBRATION_IMAGES, Width, calibrate_hidden_scale, encode_f32, encode_quant,
    quantize_with_hidden_scale,
};
use trainer::train::{
    HeldOut, Progress, Recipe, TrainConfig, default_validation_split, evaluate, fit,
};

/// The int8 model, as the firmware embeds it.
const INT8_FILE: &str = "mlp-int8.bin";
/// The int4 model, as the firmware embeds it for 256 KB parts.
const INT4_FILE: &str = "mlp-int4.bin";
/// The f32 model.
const F32_FILE: &str = "mlp-f32.bin";

const EXAMPLES: &str = "\
Examples:
  trainer                                  train with the Keras tutorial's recipe (same as `trainer train`)
  trainer --recipe best                    the most accurate model the network holds (about a minute)
  trainer train --epochs 10 --seed 7       train longer, with another seed
  trainer --validation-split 0.1           hold out the last 10 % of the training set, as Keras does
  trainer --recipe best --weights both     also write the int4 model (half the flash), trained for it
  trainer train --plots plots/             and draw the history, confusion matrix, misclassified digits
  trainer eval out/mlp-int8.bin            accuracy, confusion matrix, precision and recall on the test set
  trainer predict out/mlp-int8.bin my-7.png   classify your own handwriting
  trainer inspect out/mlp-int8.bin         what a model file holds
  trainer export out/mlp-int8.bin --format onnx -o mlp-int8.onnx   for Netron, ONNX Runtime
  trainer export out/mlp-int8.bin --format c -o mlp_int8.h   the model as a C array
  trainer import keras-mnist.onnx          a model trained elsewhere, quantized and evaluated";

/// Trains the Keras-tutorial MNIST network (784 → 512 ReLU → 10 softmax), quantizes it to int8
/// for microcontrollers, and checks models on test digits or your own images.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train, quantize, write both model files and the report (the default).
    #[command(after_help = "Example:\n  trainer train --epochs 5 --batch-size 128 --out out/")]
    Train(TrainArgs),
    /// Accuracy of an int8, int4 or f32 model file on a test set, with the confusion matrix.
    #[command(after_help = "Example:\n  trainer eval out/mlp-int8.bin --data data/mnist")]
    Eval(EvalArgs),
    /// Classify your own digit images (PNG, JPEG, PGM; any size; dark ink on light or the reverse;
    /// photos with uneven light; ink in the alpha channel). Each image gets its own answer or its
    /// own error; the status is 1 if any failed.
    #[command(
        after_help = "Example:\n  trainer predict out/mlp-int8.bin photo-of-a-7.jpg scan.png --json"
    )]
    Predict(PredictArgs),
    /// Show a model file's format version, shape, quantization parameters, sizes and CRC status.
    #[command(after_help = "Example:\n  trainer inspect out/mlp-int8.bin")]
    Inspect(InspectArgs),
    /// Write a model file in another form: ONNX (for Netron, ONNX Runtime, other toolchains), or
    /// a C header with its bytes (for a C, Zephyr or Arduino project that links infer-core).
    #[command(
        after_help = "Examples:\n  trainer export out/mlp-int8.bin --format onnx -o mlp-int8.onnx\n  trainer export out/mlp-int8.bin --format c -o mlp_int8.h"
    )]
    Export(ExportArgs),
    /// Bring a 784-512-10 MLP trained elsewhere (ONNX from Keras or PyTorch): quantized with the
    /// same calibration, written as int8 and f32 model files, evaluated.
    #[command(after_help = "Example:\n  trainer import keras-mnist.onnx --out out/")]
    Import(ImportArgs),
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// ONNX (opset 13): the f32 model as MatMul/Add/Relu, an int8 or int4 model as a QDQ graph
    /// with infer-core's exact scales; input `pixels` [N, 784] in 0–1, output `logits`.
    Onnx,
    /// A C header: the file's bytes as a 16-byte-aligned `const uint8_t` array and its length.
    C,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// A model file written by `trainer train` (validated before it is exported).
    model: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Where to write it.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// The C array's name [default: from the output file's name, e.g. mlp_int8]
    #[arg(long)]
    name: Option<String>,
}

/// Which integer model files a run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Weights {
    /// mlp-int8.bin.
    Int8,
    /// mlp-int4.bin: half the bytes, for 256 KB parts.
    Int4,
    /// Both.
    Both,
}

impl Weights {
    fn widths(self) -> &'static [Width] {
        match self {
            Weights::Int8 => &[Width::Int8],
            Weights::Int4 => &[Width::Int4],
            Weights::Both => &[Width::Int8, Width::Int4],
        }
    }

    /// What quantization-aware epochs train for: the coarsest width written.
    fn qat_width(self) -> Width {
        match self {
            Weights::Int8 => Width::Int8,
            Weights::Int4 | Weights::Both => Width::Int4,
        }
    }
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// What to train with: `tutorial` is the Keras tutorial exactly; `best` redraws every digit
    /// with random distortions each epoch, decays the learning rate, trains longer and keeps the
    /// epoch that does best on a validation split.
    #[arg(long, value_enum, default_value_t = Recipe::Tutorial)]
    recipe: Recipe,
    /// Passes over the training set, 1 to 100000 [default: 5 (tutorial), 40 (best)]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    epochs: Option<u32>,
    /// Images per gradient step.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    batch_size: u32,
    /// RMSprop learning rate (where `best` starts its decay) [default: 0.001]
    #[arg(long, value_parser = positive_f32)]
    learning_rate: Option<f32>,
    /// Hold out the last fraction F of the training images, before shuffling, and report
    /// val_loss and val_accuracy every epoch (Keras's validation_split) [default: 0 (tutorial),
    /// 0.1 (best)]
    #[arg(long, value_name = "F", value_parser = validation_fraction)]
    validation_split: Option<f64>,
    /// Seed of the initial weights, of every epoch's shuffle and of the distortions.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Folder with the four MNIST IDX files (`.gz` or raw) [default: data/mnist]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Integer model files to write: int8 (mlp-int8.bin), int4 (mlp-int4.bin, half the size) or
    /// both; the `best` recipe's quantization-aware epochs train for int4 when it is written. The
    /// f32 model (mlp-f32.bin) is always written.
    #[arg(long, value_enum, default_value_t = Weights::Int8)]
    weights: Weights,
    /// Folder for the trained model files.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/trainer-report.json")]
    report: PathBuf,
    /// No progress bars, one line per epoch (also the behaviour when stdout is not a terminal).
    #[arg(long, short)]
    quiet: bool,
    /// Write PNG charts into this folder: history.png (loss and accuracy per epoch, training and
    /// validation), confusion.png and misclassified.png (of the int8 model on the test set).
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// With --plots: also evaluate the test set after every epoch and draw it. (Choose settings
    /// on the validation curves, not on these.)
    #[arg(long, requires = "plots")]
    plot_test: bool,
    /// Write the model files even when the run failed to learn (training accuracy below 50 %, or
    /// a loss beyond 10): by default such a run does not replace model files already in --out.
    #[arg(long)]
    force: bool,
}

/// A run that ends below this training accuracy did not learn (chance is 10 %)…
const FAILED_ACCURACY: f64 = 0.5;
/// …nor one whose training loss ends above this (chance is ln 10 ≈ 2.3).
const FAILED_LOSS: f64 = 10.0;

#[derive(Debug, Args)]
struct EvalArgs {
    /// An int8, int4 or f32 model file written by `trainer train`.
    model: PathBuf,
    /// Folder with the test set's IDX files [default: data/mnist]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also write every test image's ten logits (real units, f32 little-endian, image after
    /// image) to FILE: for comparing with another runtime.
    #[arg(long, value_name = "FILE")]
    logits: Option<PathBuf>,
    /// Draw confusion.png and misclassified.png (the test digits it gets wrong) into DIR.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// An ONNX file of a 784-512-10 MLP (Gemm or MatMul+Add, Relu, optional Softmax), as
    /// tf2onnx exports the Keras tutorial's model or torch.onnx.export a PyTorch one.
    model: PathBuf,
    /// Folder for the model files (mlp-int8.bin, mlp-f32.bin).
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Folder with the MNIST IDX files: training images calibrate the int8 model, test images
    /// evaluate both [default: data/mnist]
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PredictArgs {
    /// An int8, int4 or f32 model file written by `trainer train`.
    model: PathBuf,
    /// Images of single digits.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// One JSON document on stdout instead of text, for scripts: per image `digit`,
    /// `probabilities` and, when the answer is unsure, `warning`; or `error`.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// A model file.
    model: PathBuf,
    /// One JSON document on stdout instead of text, for scripts.
    #[arg(long)]
    json: bool,
}

/// Every line the CLI prints goes through [`emit`]: `say!("…", args)?`.
macro_rules! say {
    ($($arg:tt)*) => {
        emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to stdout; a reader that closed the pipe early (`| head`) ends the output, not the
/// program with a panic (the work goes on: a training run still writes its models).
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn validation_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be at least 0 and below 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn positive_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `data/mnist` below the current folder, else the copy shipped in this repository.
fn default_data_dir() -> PathBuf {
    let here = PathBuf::from("data/mnist");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

/// What `classify` says about every image of `data`.
fn predictions(data: &Dataset, classify: impl Fn(&[u8; INPUTS]) -> u8) -> Vec<u8> {
    data.images
        .as_chunks::<INPUTS>()
        .0
        .iter()
        .map(classify)
        .collect()
}

/// What an integer model says about every test image.
fn classify_test<B: Bits>(model: &QuantModel<'_, B>, test: &Dataset) -> Vec<u8> {
    predictions(test, |image| model.predict(image).class)
}

/// Writes a model file atomically, then loads it back from disk, as a user would, and classifies
/// the test set with it; returns the report entry and the predictions.
fn write_model(
    path: &Path,
    bytes: &[u8],
    test: &Dataset,
    classify_all: impl FnOnce(&[u8]) -> Result<Vec<u8>, infer_core::FormatError>,
) -> Result<(ModelReport, Vec<u8>)> {
    write_atomic(path, bytes)?;
    let loaded = AlignedBytes::read(path)?;
    let predictions = classify_all(loaded.as_bytes())
        .with_context(|| format!("{} does not load back", path.display()))?;
    let report = ModelReport {
        test_accuracy: Confusion::new(&test.labels, &predictions).accuracy(),
        model_bytes: bytes.len(),
        path: path.display().to_string(),
    };
    Ok((report, predictions))
}

/// Keras-like progress: a bar per epoch on a terminal, one line per epoch in any case.
struct EpochDisplay {
    bar: Option<ProgressBar>,
    epochs: usize,
    interactive: bool,
}

impl EpochDisplay {
    fn new(epochs: usize, quiet: bool) -> Self {
        Self {
            bar: None,
            epochs,
            interactive: !quiet && std::io::stdout().is_terminal(),
        }
    }

    fn update(&mut self, progress: Progress) {
        match progress {
            Progress::Batch {
                epoch,
                done,
                steps,
                running,
            } if self.interactive => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(steps as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "Epoch {prefix} {bar:30} {pos}/{len} - ETA {eta} - {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_prefix(format!("{epoch}/{}", self.epochs));
                    bar
                });
                bar.set_position(done as u64);
                bar.set_message(format!(
                    "accuracy: {:.4} - loss: {:.4}",
                    running.accuracy(),
                    running.loss()
                ));
            }
            Progress::Batch { .. } => {}
            Progress::Epoch(e) => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let mut held_out = String::new();
                if let (Some(a), Some(l)) = (e.val_accuracy, e.val_loss) {
                    held_out += &format!(" - val_accuracy: {a:.4} - val_loss: {l:.4}");
                }
                if let (Some(a), Some(l)) = (e.test_accuracy, e.test_loss) {
                    held_out += &format!(" - test_accuracy: {a:.4} - test_loss: {l:.4}");
                }
                // Progress is best effort: a failure to show it must not stop the training.
                let _ = say!(
                    "Epoch {}/{}: {:.2}s - accuracy: {:.4} - loss: {:.4}{held_out}",
                    e.epoch,
                    self.epochs,
                    e.seconds,
                    e.accuracy,
                    e.loss
                );
            }
        }
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let started = Instant::now();
    // Fail on an unwritable destination now, not after minutes of training.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output folder {}", args.out.display()))?;
    let probe = args.out.join(".write-test");
    write_atomic(&probe, b"")
        .and_then(|()| Ok(std::fs::remove_file(&probe)?))
        .with_context(|| format!("cannot write in output folder {}", args.out.display()))?;
    if let Some(dir) = args.report.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create report folder {}", dir.display()))?;
    }

    let data_dir = args.data.unwrap_or_else(default_data_dir);
    let mnist = load_mnist(&data_dir)?;
    say!(
        "loaded {} training and {} test images from {} ({:.2} s)",
        mnist.train.len(),
        mnist.test.len(),
        data_dir.display(),
        started.elapsed().as_secs_f64()
    )?;

    let recipe = TrainConfig::recipe(args.recipe);
    let config = TrainConfig {
        epochs: args.epochs.map_or(recipe.epochs, |e| e as usize),
        batch_size: args.batch_size as usize,
        learning_rate: args.learning_rate.unwrap_or(recipe.learning_rate),
        seed: args.seed,
        qat_width: args.weights.qat_width(),
        ..recipe
    };
    let validation_split = args
        .validation_split
        .unwrap_or_else(|| default_validation_split(args.recipe));
    let (train_set, validation_set) = mnist.train.split_validation(validation_split);
    anyhow::ensure!(
        !train_set.is_empty(),
        "--validation-split {validation_split} leaves no training images"
    );
    if !validation_set.is_empty() {
        say!(
            "training on {} images, validating on the last {} ({} recipe)",
            train_set.len(),
            validation_set.len(),
            format!("{:?}", args.recipe).to_lowercase()
        )?;
    }
    let fit_start = Instant::now();
    let mut display = EpochDisplay::new(config.epochs, args.quiet);
    let held_out = HeldOut {
        validation: (!validation_set.is_empty()).then_some(&validation_set),
        test: args.plot_test.then_some(&mnist.test),
    };
    let fitted = fit(&train_set, held_out, &config, |p| display.update(p))?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    let (net, epochs) = (fitted.net, fitted.history);
    if fitted.epoch != config.epochs {
        say!(
            "kept the weights of epoch {} (lowest val_loss)",
            fitted.epoch
        )?;
    }

    // A run that did not learn says so loudly, and does not replace a model it is worse than.
    if let Some(last) = epochs
        .last()
        .filter(|e| e.accuracy < FAILED_ACCURACY || e.loss.is_nan() || e.loss > FAILED_LOSS)
    {
        eprintln!(
            "warning: this run did not learn: training accuracy {:.4}, loss {:.4} in its last \
             epoch (a learning rate too high? --learning-rate is {})",
            last.accuracy, last.loss, config.learning_rate
        );
        let existing: Vec<String> = [INT8_FILE, INT4_FILE, F32_FILE]
            .iter()
            .map(|f| args.out.join(f))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() && !args.force {
            anyhow::bail!(
                "not replacing {} with this run's models: pass --force to write them anyway",
                existing.join(", ")
            );
        }
    }

    let test = evaluate(&net, &mnist.test).stats;
    say!(
        "test accuracy: {:.4} - test loss: {:.4} (f32, {} images)",
        test.accuracy(),
        test.loss(),
        test.count
    )?;

    // After quantization-aware training, the hidden scale it trained with; else calibrated now.
    let hidden_scale = match fitted.hidden_scale {
        Some(scale) => scale,
        None => calibrate_hidden_scale(&net, &mnist.train.head(CALIBRATION_IMAGES)),
    };
    let (f32, _) = write_model(
        &args.out.join(F32_FILE),
        &encode_f32(&net)?,
        &mnist.test,
        |bytes| {
            let model = F32Model::from_bytes(bytes)?;
            Ok(predictions(&mnist.test, |image| model.predict(image)))
        },
    )?;
    let (mut int8, mut int4, mut integer_predictions) = (None, None, Vec::new());
    for &width in args.weights.widths() {
        let quantized = quantize_with_hidden_scale(&net, hidden_scale, width)?;
        let (file, slot) = match width {
            Width::Int8 => (INT8_FILE, &mut int8),
            Width::Int4 => (INT4_FILE, &mut int4),
        };
        let (written, predicted) = write_model(
            &args.out.join(file),
            &encode_quant(&quantized)?,
            &mnist.test,
            |bytes| match width {
                Width::Int8 => Int8Model::from_bytes(bytes).map(|m| classify_test(&m, &mnist.test)),
                Width::Int4 => Int4Model::from_bytes(bytes).map(|m| classify_test(&m, &mnist.test)),
            },
        )?;
        say!(
            "{} test accuracy: {:.4} (f32 {:.4}, {:+.2} pp) - {} bytes, {} kernel",
            width.name(),
            written.test_accuracy,
            f32.test_accuracy,
            100.0 * (written.test_accuracy - f32.test_accuracy),
            written.model_bytes,
            Kernel::best()
        )?;
        if integer_predictions.is_empty() {
            integer_predictions = predicted;
        }
        *slot = Some(written);
    }

    if let Some(dir) = &args.plots {
        // The (first) integer model's predictions, made when its file was read back.
        let test = &mnist.test;
        let misses = plots::misses(&test.images, &test.labels, &integer_predictions);
        let confusion = Confusion::new(&test.labels, &integer_predictions);
        for path in plots::write_all(dir, Some(&epochs), &confusion, &misses)? {
            say!("plotted {}", path.display())?;
        }
    }

    let report = Report {
        epochs,
        test: TestStats {
            loss: test.loss(),
            accuracy: test.accuracy(),
        },
        fit_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        seed: config.seed,
        recipe: args.recipe,
        validation_split,
        best_epoch: fitted.epoch,
        data_dir: data_dir.display().to_string(),
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        weights: args.weights.widths().to_vec(),
        int8,
        int4,
        f32,
    };
    write_atomic(&args.report, &serde_json::to_vec_pretty(&report)?)?;
    let written: Vec<&str> = [&report.int8, &report.int4]
        .into_iter()
        .flatten()
        .chain([&report.f32])
        .map(|m| m.path.as_str())
        .collect();
    say!(
        "wrote {} and {} (fit {:.2} s, total {:.2} s)",
        written.join(", "),
        args.report.display(),
        fit_seconds,
        report.total_seconds
    )?;
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let file = ModelFile::read(&args.model)?;
    let model = file.open(&args.model)?;
    let data_dir = args.data.unwrap_or_else(default_data_dir);
    let test = trainer::idx::load_test(&data_dir)?;
    let predictions: Vec<u8> = test
        .images
        .as_chunks::<INPUTS>()
        .0
        .iter()
        .map(|image| model.classify(image))
        .collect();
    if let Some(path) = &args.logits {
        let bytes: Vec<u8> = test
            .images
            .as_chunks::<INPUTS>()
            .0
            .iter()
            .flat_map(|image| model.logits(image))
            .flat_map(f32::to_le_bytes)
            .collect();
        write_atomic(path, &bytes)?;
    }
    let confusion = Confusion::new(&test.labels, &predictions);
    if let Some(dir) = &args.plots {
        let misses = plots::misses(&test.images, &test.labels, &predictions);
        for path in plots::write_all(dir, None, &confusion, &misses)? {
            say!("plotted {}", path.display())?;
        }
    }
    emit(&format!(
        "{} ({} model, {} bytes) on {} test images from {}\naccuracy: {:.4}\n\n{confusion}",
        args.model.display(),
        model.kind(),
        file.bytes().len(),
        test.len(),
        data_dir.display(),
        confusion.accuracy()
    ))
}

/// A prediction is flagged as unsure below this top probability…
const LOW_TOP: f32 = 0.6;
/// …or below this lead over the runner-up.
const LOW_MARGIN: f32 = 0.2;

fn predict(args: PredictArgs) -> Result<ExitCode> {
    let file = ModelFile::read(&args.model)?;
    let model = file.open(&args.model)?;
    let mut results = Vec::with_capacity(args.images.len());
    let mut failed = 0;
    // Every image gets its own answer or its own error; one bad file does not stop the others.
    for path in &args.images {
        let mut entry = serde_json::json!({ "image": path.display().to_string() });
        match trainer::digit::read(path) {
            Ok(image) => {
                let (digit, probabilities) = model.probabilities(&image);
                let mut sorted = probabilities;
                sorted.sort_by(|a, b| b.total_cmp(a));
                let (top, next) = (sorted[0], sorted[1]);
                let warning = (top < LOW_TOP || top - next < LOW_MARGIN).then(|| {
                    format!(
                        "low confidence: top probability {top:.2}, {:.2} ahead of the next",
                        top - next
                    )
                });
                if !args.json {
                    let listed: Vec<String> = probabilities
                        .iter()
                        .enumerate()
                        .map(|(d, p)| format!("{d}: {p:.3}"))
                        .collect();
                    let note = warning
                        .as_ref()
                        .map_or(String::new(), |w| format!("  ({w})"));
                    emit(&format!(
                        "{}: {digit}   ({}){note}\n",
                        path.display(),
                        listed.join("  ")
                    ))?;
                }
                entry["digit"] = digit.into();
                entry["probabilities"] = serde_json::json!(probabilities);
                if let Some(w) = warning {
                    entry["warning"] = w.into();
                }
            }
            Err(e) => {
                failed += 1;
                if !args.json {
                    eprintln!("error: {e:#}");
                }
                entry["error"] = format!("{e:#}").into();
            }
        }
        results.push(entry);
    }
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&results)?))?;
    }
    // Status 1 if any image could not be read (each one's error is in the output).
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Weights and biases of the 784-512-10 network.
const PARAMETERS: usize = INPUTS * infer_core::HIDDEN
    + infer_core::HIDDEN
    + infer_core::HIDDEN * infer_core::CLASSES
    + infer_core::CLASSES;

fn inspect(args: InspectArgs) -> Result<()> {
    let file = ModelFile::read(&args.model)?;
    let bytes = file.bytes();
    let kind = infer_core::format::peek_kind(bytes)
        .with_context(|| format!("{} is not a usable model file", args.model.display()))?;
    let model = file.open(&args.model)?;
    let crc = bytes
        .last_chunk::<4>()
        .map_or(0, |c| u32::from_le_bytes(*c));
    let mut facts = serde_json::json!({
        "file": args.model.display().to_string(),
        "bytes": bytes.len(),
        "format_version": infer_core::format::VERSION,
        "kind": kind.name(),
        "status": "valid",
        "crc32": format!("{crc:#010x}"),
        "shape": [INPUTS, infer_core::HIDDEN, infer_core::CLASSES],
        "parameters": PARAMETERS,
    });
    let range = |v: Vec<f32>| {
        let min = v.iter().copied().fold(f32::INFINITY, f32::min);
        let max = v.iter().copied().fold(0.0f32, f32::max);
        serde_json::json!({ "min": min, "max": max })
    };
    fn quant<B: Bits>(
        m: &QuantModel<'_, B>,
        range: impl Fn(Vec<f32>) -> serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({
            "hidden_scale": m.hidden_scale(),
            "w1_scale": range(m.w1_scales().collect()),
            "w2_scale": range(m.w2_scales().collect()),
            "kernel": Kernel::best().name(),
        })
    }
    let details = match model {
        Classifier::Int8(m) => Some(quant(&m, range)),
        Classifier::Int4(m) => Some(quant(&m, range)),
        Classifier::F32(_) => None,
    };
    if let (Some(d), Some(f)) = (&details, facts.as_object_mut()) {
        f.extend(
            d.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    if args.json {
        return emit(&format!("{}\n", serde_json::to_string_pretty(&facts)?));
    }
    say!("file:     {} ({} bytes)", args.model.display(), bytes.len())?;
    say!(
        "format:   version {}, {} model",
        infer_core::format::VERSION,
        kind.name()
    )?;
    say!("status:   valid (CRC-32 {crc:#010x} matches; every section checked)")?;
    say!(
        "shape:    {}-{}-{}, {PARAMETERS} parameters",
        INPUTS,
        infer_core::HIDDEN,
        infer_core::CLASSES
    )?;
    let Some(d) = details else {
        return say!("kind:     f32");
    };
    let width = kind.name();
    let span = |v: &serde_json::Value| {
        format!(
            "{:.3e} … {:.3e}",
            v["min"].as_f64().unwrap_or(0.0),
            v["max"].as_f64().unwrap_or(0.0)
        )
    };
    say!("kind:     {width} (integer-only inference)")?;
    say!("input:    u8 pixels, scale 1/255, zero point 0")?;
    say!(
        "hidden:   u8 activations, scale {:.4e}",
        d["hidden_scale"].as_f64().unwrap_or(0.0)
    )?;
    say!(
        "w1:       {width} per hidden unit, scales {}",
        span(&d["w1_scale"])
    )?;
    say!(
        "w2:       {width} per class, scales {}",
        span(&d["w2_scale"])
    )?;
    say!("kernel:   {} on this machine", Kernel::best())
}

fn export(args: ExportArgs) -> Result<()> {
    let file = ModelFile::read(&args.model)?;
    let model = file.open(&args.model)?;
    let bytes = match args.format {
        ExportFormat::Onnx => match model {
            Classifier::F32(m) => trainer::onnx::export_f32(&m),
            Classifier::Int8(m) => trainer::onnx::export_quant(&m)?,
            Classifier::Int4(m) => trainer::onnx::export_quant(&m)?,
        },
        ExportFormat::C => {
            let stem = args
                .out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned());
            let name = args.name.as_deref().or(stem.as_deref()).unwrap_or("");
            let name = trainer::export::c_identifier(name);
            let about = format!(
                "MNIST 784-512-10 {} model, {} bytes (infer-core model format version {}), from {}.",
                model.kind(),
                file.bytes().len(),
                infer_core::format::VERSION,
                args.model.display()
            );
            trainer::export::c_header(file.bytes(), &name, &about).into_bytes()
        }
    };
    write_atomic(&args.out, &bytes)?;
    say!(
        "wrote {} ({} bytes): the {} model as {}",
        args.out.display(),
        bytes.len(),
        model.kind(),
        match args.format {
            ExportFormat::Onnx => "ONNX",
            ExportFormat::C => "a C array",
        }
    )
}

fn import(args: ImportArgs) -> Result<()> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let net = trainer::onnx::import(&bytes)
        .with_context(|| format!("{} is not a usable 784-512-10 model", args.model.display()))?;
    let data_dir = args.data.unwrap_or_else(default_data_dir);
    let mnist = load_mnist(&data_dir)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output folder {}", args.out.display()))?;
    let scale = calibrate_hidden_scale(&net, &mnist.train.head(CALIBRATION_IMAGES));
    let quantized = quantize_with_hidden_scale(&net, scale, Width::Int8)?;
    let (f32, _) = write_model(
        &args.out.join(F32_FILE),
        &encode_f32(&net)?,
        &mnist.test,
        |b| {
            let model = F32Model::from_bytes(b)?;
            Ok(predictions(&mnist.test, |image| model.predict(image)))
        },
    )?;
    let (int8, _) = write_model(
        &args.out.join(INT8_FILE),
        &encode_quant(&quantized)?,
        &mnist.test,
        |b| Int8Model::from_bytes(b).map(|m| classify_test(&m, &mnist.test)),
    )?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => train(cli.train),
        Some(Command::Train(args)) => train(args),
        Some(Command::Eval(args)) => eval(args),
        Some(Command::Predict(args)) => match predict(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Some(Command::Inspect(args)) => inspect(args),
        Some(Command::Export(args)) => export(args),
        Some(Command::Import(args)) => import(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
