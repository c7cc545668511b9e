//! `trainer` / `trainer train`: fit, quantize, write the model files and the report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use trainer::idx::load_mnist;
use trainer::metrics::Confusion;
use trainer::output::{Report, write_atomic};
use trainer::pipeline::{self, Run};
use trainer::plots;
use trainer::quantize::Width;
use trainer::train::{Progress, Recipe, TrainConfig, default_validation_split};

use super::{default_data_dir, emit, positive_f32, validation_fraction};

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
    let mut display = EpochDisplay::new(config.epochs, args.quiet);
    let run = Run {
        config: config.clone(),
        validation_split,
        widths: args.weights.widths(),
        out: &args.out,
        test_every_epoch: args.plot_test,
        force: args.force,
    };
    let outcome = pipeline::run(
        &mnist,
        &run,
        |p| display.update(p),
        // Progress lines are best effort: a failure to show one must not stop the run.
        |line| {
            let _ = emit(&format!("{line}\n"));
        },
        |warning| eprintln!("warning: {warning}"),
    )?;

    if let Some(dir) = &args.plots {
        // The (first) integer model's predictions, made when its file was read back.
        let test = &mnist.test;
        let predicted = &outcome.integer_predictions;
        let misses = plots::misses(&test.images, &test.labels, predicted);
        let confusion = Confusion::new(&test.labels, predicted);
        for path in plots::write_all(dir, Some(&outcome.history), &confusion, &misses)? {
            say!("plotted {}", path.display())?;
        }
    }

    let fit_seconds = outcome.fit_seconds;
    let report = Report {
        epochs: outcome.history,
        test: outcome.test,
        fit_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        seed: config.seed,
        recipe: args.recipe,
        validation_split,
        best_epoch: outcome.best_epoch,
        data_dir: data_dir.display().to_string(),
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        weights: args.weights.widths().to_vec(),
        int8: outcome.int8,
        int4: outcome.int4,
        f32: outcome.f32,
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
