//! `trainer` / `trainer train`: fit, quantize, write the model files and the report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use infer_core::Kernel;
use trainer::idx::load_mnist;
use trainer::metrics::Confusion;
use trainer::output::{Report, TestStats, write_atomic};
use trainer::pipeline::{write_f32, write_quant};
use trainer::plots;
use trainer::quantize::{
    CALIBRATION_IMAGES, Width, calibrate_hidden_scale, quantize_with_hidden_scale,
};
use trainer::train::{
    HeldOut, Progress, Recipe, TrainConfig, default_validation_split, evaluate, fit,
};

use super::{F32_FILE, INT4_FILE, INT8_FILE, default_data_dir, positive_f32, validation_fraction};

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
pub(crate) struct TrainArgs {
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

pub(crate) fn train(args: TrainArgs) -> Result<()> {
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
    let f32 = write_f32(&args.out.join(F32_FILE), &net, &mnist.test)?;
    let (mut int8, mut int4, mut integer_predictions) = (None, None, Vec::new());
    for &width in args.weights.widths() {
        let quantized = quantize_with_hidden_scale(&net, hidden_scale, width)?;
        let (file, slot) = match width {
            Width::Int8 => (INT8_FILE, &mut int8),
            Width::Int4 => (INT4_FILE, &mut int4),
        };
        let (written, predicted) = write_quant(&args.out.join(file), &quantized, &mnist.test)?;
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
