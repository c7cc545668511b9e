use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use infer_core::{F32Model, Int8Model, Kernel};
use trainer::idx::{Dataset, load_mnist};
use trainer::output::{AlignedBytes, ModelReport, Report, TestStats, write_atomic};
use trainer::quantize::{encode_f32, encode_int8, quantize};
use trainer::train::{TrainConfig, evaluate, fit};

/// The int8 model, as the firmware embeds it.
const INT8_FILE: &str = "mlp-int8.bin";
/// The f32 model.
const F32_FILE: &str = "mlp-f32.bin";
/// Training images the hidden activation range is calibrated on.
const CALIBRATION_IMAGES: usize = 10_000;

/// Trains the Keras-tutorial MNIST MLP (784 → 512 ReLU → 10 softmax, RMSprop) and saves it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Passes over the training set.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per gradient step.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// RMSprop learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = positive_f32)]
    learning_rate: f32,
    /// Seed of the initial weights and of every epoch's shuffle.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Folder with the four MNIST IDX files (`.gz` or raw) [default: data/mnist]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Folder for the trained model files.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/trainer-report.json")]
    report: PathBuf,
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

/// Fraction of `data` that `classify` gets right.
fn accuracy(data: &Dataset, classify: impl Fn(&[u8; 784]) -> u8) -> f64 {
    let images = data.images.as_chunks::<784>().0;
    let correct = images
        .iter()
        .zip(&data.labels)
        .filter(|(image, label)| classify(image) == **label)
        .count();
    correct as f64 / data.len().max(1) as f64
}

/// Writes a model file atomically, then loads it back from disk, as a user would, and evaluates it.
fn write_model(
    path: &Path,
    bytes: &[u8],
    evaluate: impl FnOnce(&[u8]) -> Result<f64, infer_core::FormatError>,
) -> Result<ModelReport> {
    write_atomic(path, bytes)?;
    let loaded = AlignedBytes::read(path)?;
    let test_accuracy = evaluate(loaded.as_bytes())
        .with_context(|| format!("{} does not load back", path.display()))?;
    Ok(ModelReport {
        test_accuracy,
        model_bytes: bytes.len(),
        path: path.display().to_string(),
    })
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    // Fail on an unwritable destination now, not after minutes of training.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output folder {}", args.out.display()))?;
    if let Some(dir) = args.report.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create report folder {}", dir.display()))?;
    }

    let data_dir = args.data.unwrap_or_else(default_data_dir);
    let mnist = load_mnist(&data_dir)?;
    println!(
        "loaded {} training and {} test images from {} ({:.2} s)",
        mnist.train.len(),
        mnist.test.len(),
        data_dir.display(),
        started.elapsed().as_secs_f64()
    );

    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size as usize,
        learning_rate: args.learning_rate,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let steps = mnist.train.len().div_ceil(config.batch_size);
    let fit_start = Instant::now();
    let (net, epochs) = fit(&mnist.train, &config, |e| {
        println!(
            "Epoch {}/{}: {steps} steps - {:.2}s - accuracy: {:.4} - loss: {:.4}",
            e.epoch, config.epochs, e.seconds, e.accuracy, e.loss
        );
    });
    let fit_seconds = fit_start.elapsed().as_secs_f64();

    let test = evaluate(&net, &mnist.test).stats;
    println!(
        "test accuracy: {:.4} - test loss: {:.4} (f32, {} images)",
        test.accuracy(),
        test.loss(),
        test.count
    );

    let quantized = quantize(&net, &mnist.train.head(CALIBRATION_IMAGES))?;
    let int8 = write_model(
        &args.out.join(INT8_FILE),
        &encode_int8(&quantized)?,
        |bytes| {
            let model = Int8Model::from_bytes(bytes)?;
            Ok(accuracy(&mnist.test, |image| model.predict(image).class))
        },
    )?;
    let f32 = write_model(&args.out.join(F32_FILE), &encode_f32(&net)?, |bytes| {
        let model = F32Model::from_bytes(bytes)?;
        Ok(accuracy(&mnist.test, |image| model.predict(image)))
    })?;
    println!(
        "int8 test accuracy: {:.4} (f32 {:.4}, {:+.2} pp) - {} bytes, {} kernel",
        int8.test_accuracy,
        f32.test_accuracy,
        100.0 * (int8.test_accuracy - f32.test_accuracy),
        int8.model_bytes,
        Kernel::best()
    );

    let report = Report {
        epochs,
        test: TestStats {
            loss: test.loss(),
            accuracy: test.accuracy(),
        },
        fit_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        seed: config.seed,
        data_dir: data_dir.display().to_string(),
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        int8,
        f32,
    };
    write_atomic(&args.report, &serde_json::to_vec_pretty(&report)?)?;
    println!(
        "wrote {}, {} and {} (fit {:.2} s, total {:.2} s)",
        report.int8.path,
        report.f32.path,
        args.report.display(),
        fit_seconds,
        report.total_seconds
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
