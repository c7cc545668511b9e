//! `trainer` / `trainer train`: fit, quantize, write the model files and the report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use trainer::idx::load_mnist;
use trainer::metrics::Confusion;
use trainer::output::{F32_FILE, REPORT_FILE, Report, write_atomic, written_files};
use trainer::output_set::{MANIFEST, OutputSet, check_writable_dir, check_writable_file, resolve};
use trainer::pipeline::{self, Run};
use trainer::plots;
use trainer::prune::Pruning;
use trainer::quantize::{LayerWidths, model_bytes_bound};
use trainer::train::{Progress, Recipe, TrainConfig, default_validation_split};

use super::{
    HiddenWidths, OutputWeights, Weights, default_data_dir, density_fraction, emit, hidden_widths,
    live_cost, positive_f32, validation_fraction,
};

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// What to train with: `tutorial` is the Keras tutorial exactly; `best` redraws every digit
    /// with random distortions each epoch, decays the learning rate, trains longer and keeps the
    /// epoch that does best on a validation split.
    #[arg(long, value_enum, default_value_t = Recipe::Tutorial)]
    recipe: Recipe,
    /// Passes over the training set, 1 to 100000 [default: 5 (tutorial), 40 (best), 80 (best with
    /// --density: a pruned network needs the longer fine-tuning)]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    epochs: Option<u32>,
    /// Units of the hidden ReLU layer, 1 to 1024 (the tutorial's 512; 96 fits a 64 KB part in
    /// int4), or of several, comma-separated, first to last (`256,128`; up to 7 layers).
    #[arg(long, default_value = "512", value_name = "N[,N…]", value_parser = hidden_widths)]
    hidden: HiddenWidths,
    /// Prune each hidden layer to this fraction D of its weights (0 < D ≤ 1: 0.1 keeps a tenth),
    /// in blocks of 16 units × 4 inputs, which the model files leave out and the kernels skip:
    /// gradually from 25 % to 65 % of the run (smallest blocks first), then fine-tuning the rest
    /// (and the recipe's quantization-aware epochs). The output layer stays dense. [default:
    /// dense]
    #[arg(long, value_name = "D", value_parser = density_fraction)]
    density: Option<f32>,
    /// With --density: how much a block's cost counts against it, 0 to 2. A microcontroller
    /// multiplies a kept block only for inputs where its 4 pixels are not all blank, so a block's
    /// score (its weights' squares times its inputs' mean square) is divided by how often it is
    /// live, to this power: 0 keeps what contributes most, 1 what contributes most per multiply
    /// (fewer multiplies, a little accuracy), above 1 starves the network.
    #[arg(long, value_name = "A", default_value_t = trainer::prune::DEFAULT_LIVE_COST,
          value_parser = live_cost, requires = "density")]
    live_cost: f64,
    /// Images per gradient step, 1 to 65535.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    batch_size: u32,
    /// RMSprop learning rate (where `best` starts its decay), a finite number above 0 [default:
    /// 0.001]
    #[arg(long, value_parser = positive_f32)]
    learning_rate: Option<f32>,
    /// Hold out the last fraction F of the training images, before shuffling, and report
    /// val_loss and val_accuracy every epoch (Keras's validation_split); 0 ≤ F < 1 [default: 0
    /// (tutorial), 0.1 (best)]
    #[arg(long, value_name = "F", value_parser = validation_fraction)]
    validation_split: Option<f64>,
    /// Seed of the initial weights, of every epoch's shuffle and of the distortions: any integer
    /// from 0 to 18446744073709551615.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Folder with the four IDX files under MNIST's names (`.gz` or raw): MNIST, or any images
    /// (the same size in both sets) with labels 0…C−1 [default: data/mnist]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Integer model files to write: int8 (mlp-int8.bin), int4 (mlp-int4.bin, half the size) or
    /// both; the `best` recipe's quantization-aware epochs train for int4 when it is written. The
    /// f32 model (mlp-f32.bin) is always written.
    #[arg(long, value_enum, default_value_t = Weights::Int8)]
    weights: Weights,
    /// The output layer's weight width in the integer files, where it should differ from the
    /// file's: `--weights int4 --output-weights int8` keeps the small last layer in 8 bits
    /// (512 × 10 weights: 2.5 KB more) and the big first layer in 4 [default: the file's]
    #[arg(long, value_enum)]
    output_weights: Option<OutputWeights>,
    /// Folder for the run's files: the model files, the report, a manifest (and the plots, if
    /// --plots names a folder inside it). It is replaced as a whole when the run succeeds, so it
    /// must be new, empty, or a folder the trainer wrote.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Where to write the JSON report [default: OUT/report.json]. Outside --out, it is written
    /// after the set is committed.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bars, one line per epoch (also the behaviour when stdout is not a terminal).
    #[arg(long, short)]
    quiet: bool,
    /// Write PNG charts into this folder: history.png (loss and accuracy per epoch, training and
    /// validation), confusion.png and misclassified.png (of the int8 model on the test set).
    /// Inside --out (e.g. out/plots), they are part of the run's set.
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

/// A recipe's epochs, doubled for a pruned `best` run (measured: 784-512-10 at density 0.15, int8,
/// seed 42, 98.70 % after 40 epochs and 98.97 % after 80).
fn default_epochs(recipe: Recipe, density: Option<f32>) -> usize {
    let epochs = TrainConfig::recipe(recipe).epochs;
    match (recipe, density) {
        (Recipe::Best, Some(d)) if d < 1.0 => 2 * epochs,
        _ => epochs,
    }
}

/// Keras-like progress: a bar per epoch on a terminal, one line per epoch in any case.
struct EpochDisplay {
    bar: Option<ProgressBar>,
    epochs: usize,
    interactive: bool,
    /// From which epoch training is quantization-aware, and at which width.
    qat: Option<(usize, String)>,
}

impl EpochDisplay {
    fn new(epochs: usize, quiet: bool, qat: Option<(usize, String)>) -> Self {
        Self {
            bar: None,
            epochs,
            qat,
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
                            "Epoch {prefix} {bar:30} {pos}/{len}{eta_once_known} - {msg}",
                        )
                        .map(|style| {
                            // Blank until a few batches and half a second have gone by: before
                            // that the rate (and so any ETA) is noise.
                            style.with_key(
                                "eta_once_known",
                                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                                    if s.pos() >= 5 && s.elapsed().as_secs_f64() >= 0.5 {
                                        let _ = write!(
                                            w,
                                            " - ETA {}",
                                            indicatif::HumanDuration(s.eta())
                                        );
                                    }
                                },
                            )
                        })
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
                if let Some((_, width)) = self.qat.as_ref().filter(|(first, _)| e.epoch >= *first) {
                    held_out += &format!(" - quantization-aware ({width})");
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
    // Every destination is checked now, not after minutes of training.
    let data_dir = args.data.clone().unwrap_or_else(default_data_dir);
    let places = Places::plan(&args, &data_dir)?;

    let mnist = load_mnist(&data_dir)?;
    let layers = pipeline::layers(&mnist, &args.hidden.0)?;
    let out = OutputSet::begin(&args.out, places.set_bytes(&layers))?;
    let shape = if (mnist.train.rows, mnist.train.cols) == (28, 28) {
        String::new()
    } else {
        format!(
            " of {}×{} pixels, {} classes",
            mnist.train.rows,
            mnist.train.cols,
            layers.last().unwrap_or(&0)
        )
    };
    say!(
        "loaded {} training and {} test images{shape} from {} ({:.2} s)",
        mnist.train.len(),
        mnist.test.len(),
        data_dir.display(),
        started.elapsed().as_secs_f64()
    )?;

    let recipe = TrainConfig::recipe(args.recipe);
    let config = TrainConfig {
        epochs: args
            .epochs
            .map_or(default_epochs(args.recipe, args.density), |e| e as usize),
        batch_size: args.batch_size as usize,
        learning_rate: args.learning_rate.unwrap_or(recipe.learning_rate),
        seed: args.seed,
        hidden: args.hidden.0.clone(),
        qat_width: LayerWidths::with_output(
            args.weights.qat_width(),
            args.output_weights.map(OutputWeights::width),
        ),
        prune: args.density.filter(|&d| d < 1.0).map(|d| Pruning {
            live_cost: args.live_cost,
            ..Pruning::new(d)
        }),
        ..recipe
    };
    let validation_split = args
        .validation_split
        .unwrap_or_else(|| default_validation_split(args.recipe));
    let qat = config
        .first_qat_epoch()
        .map(|first| (first, config.qat_width.describe()));
    let mut display = EpochDisplay::new(config.epochs, args.quiet, qat);
    let run = Run {
        config: config.clone(),
        validation_split,
        widths: args.weights.widths(),
        output_width: args.output_weights.map(OutputWeights::width),
        out: &out,
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

    // The (first) integer model's predictions, made when its file was read back.
    let test = &mnist.test;
    let classes = layers.last().copied().unwrap_or(0);
    let predicted = &outcome.integer_predictions;
    let draw = |dir: &Path| {
        let misses = plots::misses(test, predicted);
        let confusion = Confusion::new(classes, &test.labels, predicted);
        let history = plots::History {
            epochs: &outcome.history,
            kept: outcome.best_epoch,
            first_qat: config.first_qat_epoch(),
        };
        plots::write_all(
            dir,
            &outcome.integer_model,
            Some(history),
            &confusion,
            &misses,
        )
    };
    let mut plotted = Vec::new();
    if let Some(Place::InSet(dir)) = &places.plots {
        for path in draw(&out.stage(dir)?)? {
            plotted.push(out.final_path(&dir.join(path.file_name().unwrap_or_default())));
        }
    }

    let fit_seconds = outcome.fit_seconds;
    let report = Report {
        epochs: outcome.history.clone(),
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
        output_weights: args.output_weights.map(OutputWeights::width),
        layers,
        int8: outcome.int8,
        int4: outcome.int4,
        f32: outcome.f32,
        pruning: outcome.pruning,
    };
    let json = serde_json::to_vec_pretty(&report)?;
    let report_path = match &places.report {
        Place::InSet(file) => {
            write_atomic(&out.stage(file)?, &json)?;
            out.final_path(file)
        }
        Place::Outside(path) => path.clone(),
    };
    out.commit()?;
    // What lives outside --out follows the committed set.
    if let Some(Place::Outside(dir)) = &places.plots {
        plotted = draw(dir)?;
    }
    if let Place::Outside(path) = &places.report {
        write_atomic(path, &json)?;
    }
    for path in plotted {
        say!("plotted {}", path.display())?;
    }
    say!(
        "wrote {} and {} (fit {:.2} s, total {:.2} s)",
        written_files([&report.int8, &report.int4], &report.f32),
        report_path.display(),
        fit_seconds,
        report.total_seconds
    )?;
    Ok(())
}

/// Where a file or folder of the run goes.
#[derive(Debug)]
enum Place {
    /// Into the run's set: relative to --out.
    InSet(PathBuf),
    /// Elsewhere, after the set is committed.
    Outside(PathBuf),
}

/// Every destination of a run, checked before it trains.
#[derive(Debug)]
struct Places {
    report: Place,
    plots: Option<Place>,
    /// About what the set's report and plots take on disk.
    set_bytes: u64,
    /// Model files the run writes.
    model_files: u64,
}

/// What the plots take, with room to spare (measured: about 0.2 MB for the three).
const PLOTS_BYTES: u64 = 4 << 20;
/// The report's size: a fixed part and each epoch's entry, with room to spare.
const fn report_bytes(epochs: u64) -> u64 {
    (16 << 10) + epochs * 512
}

impl Places {
    /// Sorts the report and the plots into the set or outside it, and checks that no two files
    /// of the run are one, that none lands in the data folder, that what goes outside can be
    /// written, and that there is room.
    fn plan(args: &TrainArgs, data_dir: &Path) -> Result<Self> {
        let out = resolve(&args.out)?;
        // Each destination with its resolved path.
        let place = |path: &Path, what: &str| -> Result<(Place, PathBuf)> {
            let resolved = resolve(path)?;
            let place = match resolved.strip_prefix(&out) {
                Ok(rel) if rel.as_os_str().is_empty() => {
                    bail!("{what} {} is the --out folder itself", path.display())
                }
                Ok(rel) => Place::InSet(rel.to_path_buf()),
                Err(_) => Place::Outside(path.to_path_buf()),
            };
            Ok((place, resolved))
        };
        let (report, report_path) = place(
            &args
                .report
                .clone()
                .unwrap_or_else(|| args.out.join(REPORT_FILE)),
            "--report",
        )?;
        let plots = match &args.plots {
            Some(dir) => Some(place(dir, "--plots")?),
            None => None,
        };

        // Every file the run writes: no two may be one, none may be in the data folder.
        let mut files = trainer::places::Files::new().input(data_dir, "the data folder")?;
        for f in args
            .weights
            .widths()
            .iter()
            .map(|&w| pipeline::quant_file(w))
            .chain([F32_FILE, MANIFEST])
        {
            files = files.output(&out.join(f), format!("--out's {f}"))?;
        }
        files = files.output(&report_path, "--report")?;
        if let Some((_, dir)) = &plots {
            for name in plots::FILES {
                files = files.output(&dir.join(name), format!("--plots' {name}"))?;
            }
        }
        files.check()?;
        let plots = plots.map(|(place, _)| place);

        let epochs = u64::from(args.epochs.unwrap_or(100));
        // The model files' part depends on the data's shape: added once it is loaded.
        let mut set_bytes = 0;
        match &report {
            Place::InSet(_) => set_bytes += report_bytes(epochs),
            Place::Outside(path) => check_writable_file(path, report_bytes(epochs))?,
        }
        match &plots {
            Some(Place::InSet(_)) => set_bytes += PLOTS_BYTES,
            Some(Place::Outside(dir)) => check_writable_dir(dir, PLOTS_BYTES)?,
            None => {}
        }
        Ok(Self {
            report,
            plots,
            set_bytes,
            model_files: 1 + args.weights.widths().len() as u64,
        })
    }

    /// The bytes the set needs for a network of `widths`.
    fn set_bytes(&self, widths: &[usize]) -> u64 {
        self.set_bytes + self.model_files * model_bytes_bound(widths)
    }
}
