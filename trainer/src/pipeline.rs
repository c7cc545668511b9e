//! The pipeline from loaded data to evaluated model files — fit, evaluate, quantize, write, read
//! back as a user would, evaluate again — as one function, [`run`], which `trainer train` and the
//! benchmarks both call; and its steps that `trainer import` shares.

use std::path::Path;

use anyhow::{Context, Result};
use infer_core::{F32Model, QuantModel};

use crate::idx::{Dataset, Mnist};
use crate::mlp::Mlp;
use crate::output::{
    AlignedBytes, F32_FILE, INT4_FILE, INT8_FILE, ModelReport, PruningReport, TestStats,
    write_atomic,
};
use crate::output_set::OutputSet;
use crate::quantize::{
    CALIBRATION_IMAGES, LayerWidths, QuantWeights, Width, calibrate_hidden_scales, encode_f32,
    encode_quant, quantize_with_scales,
};
use crate::train::{EpochStats, HeldOut, Progress, TrainConfig, evaluate, fit};

/// A run that ends below this training accuracy did not learn (chance is 10 %)…
pub const FAILED_ACCURACY: f64 = 0.5;
/// …nor one whose training loss ends above this (chance is ln 10 ≈ 2.3).
pub const FAILED_LOSS: f64 = 10.0;

/// What a run does besides fitting.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// The fit's settings.
    pub config: TrainConfig,
    /// The last fraction of the training images held out for validation.
    pub validation_split: f64,
    /// The integer model files to write (the f32 one always is).
    pub widths: &'a [Width],
    /// The output layer's width in them, where it differs from the file's (`--output-weights`).
    pub output_width: Option<Width>,
    /// Their folder, committed by the caller once everything else of the run is in it.
    pub out: &'a OutputSet,
    /// Evaluate the test set after every epoch too (for the plots only).
    pub test_every_epoch: bool,
    /// Write the files even when the run did not learn and files are there already.
    pub force: bool,
}

/// What a run made.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// The f32 network on the test set.
    pub test: TestStats,
    /// Wall time of the epochs.
    pub fit_seconds: f64,
    /// The f32 file.
    pub f32: ModelReport,
    /// The int8 file, if written.
    pub int8: Option<ModelReport>,
    /// The int4 file, if written.
    pub int4: Option<ModelReport>,
    /// The first integer file's predictions on the test set (none without integer files).
    pub integer_predictions: Vec<u8>,
    /// That file as the plots name it ([`crate::model_file::describe`]).
    pub integer_model: String,
    /// What pruning did, in a pruned run.
    pub pruning: Option<PruningReport>,
}

/// The network's widths for `mnist` and the hidden layers `hidden`: the images' pixels, the
/// hidden widths, the classes (the labels 0…C−1, checked by the reader). Fails, saying why, for
/// fewer than 2 classes or more than a model file holds.
pub fn layers(mnist: &Mnist, hidden: &[usize]) -> Result<Vec<usize>> {
    let classes = mnist.train.classes().max(mnist.test.classes());
    anyhow::ensure!(
        classes >= 2,
        "the training labels are all 0: a classifier needs at least 2 classes"
    );
    anyhow::ensure!(
        classes <= infer_core::format::MAX_CLASSES,
        "the labels run 0 to {}: a model has at most {} classes",
        classes - 1,
        infer_core::format::MAX_CLASSES
    );
    let mut widths = vec![mnist.train.pixels()];
    widths.extend(hidden);
    widths.push(classes);
    Ok(widths)
}

/// Fits a network on `mnist`'s training set and writes, reads back and evaluates its model files.
/// `progress` hears every step and epoch of the fit, `say` every line a user should see. A run
/// that does not learn (training accuracy below [`FAILED_ACCURACY`] or loss above
/// [`FAILED_LOSS`]) is reported through `warn`, and fails rather than replace model files
/// already in `run.out` unless `run.force`. The files are staged in `run.out`: they appear in its
/// folder when the caller commits it.
pub fn run(
    mnist: &Mnist,
    run: &Run<'_>,
    progress: impl FnMut(Progress),
    mut say: impl FnMut(String),
    mut warn: impl FnMut(String),
) -> Result<Outcome> {
    let config = &run.config;
    let (train_set, validation_set) = mnist.train.split_validation(run.validation_split);
    anyhow::ensure!(
        !train_set.is_empty(),
        "--validation-split {} leaves no training images",
        run.validation_split
    );
    if !validation_set.is_empty() {
        say(format!(
            "training on {} images, validating on the last {}",
            train_set.len(),
            validation_set.len()
        ));
    }
    let fit_start = std::time::Instant::now();
    let held_out = HeldOut {
        validation: (!validation_set.is_empty()).then_some(&validation_set),
        test: run.test_every_epoch.then_some(&mnist.test),
    };
    let fitted = fit(&train_set, held_out, config, progress)?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    let (net, history) = (fitted.net, fitted.history);
    let pruned = fitted.pruned;
    if fitted.epoch != config.epochs {
        say(format!(
            "kept the weights of epoch {} (lowest val_loss)",
            fitted.epoch
        ));
    }

    // A run that did not learn says so loudly, and does not replace a model it is worse than.
    if let Some(last) = history
        .last()
        .filter(|e| e.accuracy < FAILED_ACCURACY || e.loss.is_nan() || e.loss > FAILED_LOSS)
    {
        warn(format!(
            "this run did not learn: training accuracy {:.4}, loss {:.4} in its last epoch (a \
             learning rate too high? --learning-rate is {})",
            last.accuracy, last.loss, config.learning_rate
        ));
        keep_existing_models(run.out, run.force, "this run's models", "them")?;
    }

    let tested = evaluate(&net, &mnist.test).stats;
    say(format!(
        "test accuracy: {:.4} - test loss: {:.4} (f32, {} images)",
        tested.accuracy(),
        tested.loss(),
        tested.count
    ));

    // After quantization-aware training, the hidden scale it trained with; else calibrated now.
    let act_scales = match &fitted.act_scales {
        Some(scales) => scales.clone(),
        None => calibrate_hidden_scales(&net, &mnist.train.head(CALIBRATION_IMAGES)),
    };
    let f32 = write_f32(run.out, &net, &mnist.test)?;
    let IntegerFiles {
        int8,
        int4,
        predictions: integer_predictions,
        first: integer_model,
    } = write_integer_files(
        run.out,
        (&net, &act_scales),
        (run.widths, run.output_width),
        &mnist.test,
        &f32,
        "the trained network",
        &mut say,
    )?;
    let pruning = match (pruned, config.prune) {
        (Some(p), Some(asked)) => {
            let accuracy = |net: &Mlp| evaluate(net, &mnist.test).stats.accuracy();
            let after_qat = [(Width::Int8, &int8), (Width::Int4, &int4)]
                .into_iter()
                .filter_map(|(w, r)| Some((w.name().to_string(), r.as_ref()?.test_accuracy)))
                .collect();
            let report = PruningReport {
                density: asked.density,
                live_cost: asked.live_cost,
                layers: p.densities,
                accuracy_before_pruning: accuracy(&p.before),
                accuracy_after_pruning: accuracy(&p.after),
                accuracy_after_qat: after_qat,
            };
            let layers: Vec<String> = report
                .layers
                .iter()
                .map(|d| format!("{:.1} %", 100.0 * d))
                .collect();
            say(format!(
                "pruned to {} of the hidden blocks: test accuracy {:.4} before pruning, {:.4} \
                 after (f32)",
                layers.join(", "),
                report.accuracy_before_pruning,
                report.accuracy_after_pruning
            ));
            Some(report)
        }
        _ => None,
    };
    Ok(Outcome {
        pruning,
        history,
        best_epoch: fitted.epoch,
        test: TestStats {
            loss: tested.loss(),
            accuracy: tested.accuracy(),
        },
        fit_seconds,
        f32,
        int8,
        int4,
        integer_predictions,
        integer_model,
    })
}

/// What `classify` says about every image of `data` (an error for the first it refuses, such as
/// an image of another size than the model takes).
pub fn predictions<E>(
    data: &Dataset,
    classify: impl Fn(&[u8]) -> Result<u8, E>,
) -> Result<Vec<u8>, E> {
    let pixels = data.images.len() / data.len().max(1);
    data.images
        .chunks_exact(pixels.max(1))
        .map(classify)
        .collect()
}

/// What an integer model says about every test image.
pub fn classify_test(
    model: &QuantModel<'_>,
    test: &Dataset,
) -> Result<Vec<u8>, infer_core::KernelError> {
    predictions(test, |image| model.predict(image).map(|p| p.class))
}

/// The model file name of an integer width.
pub fn quant_file(width: Width) -> &'static str {
    match width {
        Width::Int8 => INT8_FILE,
        Width::Int4 => INT4_FILE,
    }
}

/// Stages a model file in `out`, then loads it back from disk, as a user would, and classifies
/// the test set with it; returns the report entry (with the path the file will have once `out`
/// is committed) and the predictions.
pub fn write_model(
    out: &OutputSet,
    file: &str,
    bytes: &[u8],
    test: &Dataset,
    classify_all: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
) -> Result<(ModelReport, Vec<u8>)> {
    let staged = out.stage(file.as_ref())?;
    write_atomic(&staged, bytes)?;
    let loaded = AlignedBytes::read(&staged)?;
    let predictions = classify_all(loaded.as_bytes())
        .with_context(|| format!("{} does not load back", staged.display()))?;
    let report = ModelReport {
        test_accuracy: crate::metrics::accuracy(&test.labels, &predictions),
        model_bytes: bytes.len(),
        path: out.final_path(file.as_ref()).display().to_string(),
    };
    Ok((report, predictions))
}

/// The integer model files of one network, as [`write_integer_files`] wrote them.
#[derive(Debug, Clone)]
pub struct IntegerFiles {
    /// The int8 file, if asked for.
    pub int8: Option<ModelReport>,
    /// The int4 file, if asked for.
    pub int4: Option<ModelReport>,
    /// The first file's predictions on the test set, as read back.
    pub predictions: Vec<u8>,
    /// That file as the plots name it ([`crate::model_file::describe`]).
    pub first: String,
}

/// Quantizes `net` (with its hidden activation scales) to each of `widths` (the output layer
/// at `output` where given), writes each file into `out`, reads it back and evaluates it on
/// `test`, and tells `say` its accuracy against the f32 file's. `source` names the network in a
/// quantization error (training's, or the imported file).
pub fn write_integer_files(
    out: &OutputSet,
    (net, act_scales): (&Mlp, &[f32]),
    (widths, output): (&[Width], Option<Width>),
    test: &Dataset,
    f32: &ModelReport,
    source: &str,
    say: &mut impl FnMut(String),
) -> Result<IntegerFiles> {
    let mut files = IntegerFiles {
        int8: None,
        int4: None,
        predictions: Vec::new(),
        first: String::new(),
    };
    for &width in widths {
        let layers = LayerWidths::with_output(width, output);
        let quantized = quantize_with_scales(net, act_scales, layers)
            .with_context(|| format!("{source} cannot be quantized to {}", layers.describe()))?;
        let (written, predicted) = write_quant(out, &quantized, test)?;
        say(format!(
            "{} test accuracy: {:.4} (f32 {:.4}, {:+.2} pp) - {} bytes, {} kernel",
            layers.describe(),
            written.test_accuracy,
            f32.test_accuracy,
            100.0 * (written.test_accuracy - f32.test_accuracy),
            written.model_bytes,
            infer_core::Kernel::best()
        ));
        if files.predictions.is_empty() {
            files.predictions = predicted;
            files.first = crate::model_file::describe(
                Path::new(quant_file(width)),
                layers.kind(),
                &net.widths(),
            );
        }
        *match width {
            Width::Int8 => &mut files.int8,
            Width::Int4 => &mut files.int4,
        } = Some(written);
    }
    Ok(files)
}

/// The f32 model file of `net`, staged in `out`, read back and evaluated on `test`.
pub fn write_f32(out: &OutputSet, net: &Mlp, test: &Dataset) -> Result<ModelReport> {
    let (report, _) = write_model(out, F32_FILE, &encode_f32(net)?, test, |bytes| {
        let model = F32Model::from_bytes(bytes)?;
        Ok(predictions(test, |image| model.predict(image))?)
    })?;
    Ok(report)
}

/// The integer model file of `q` (int8 or int4), staged in `out`, read back and evaluated on
/// `test`; with the predictions it made.
pub fn write_quant(
    out: &OutputSet,
    q: &QuantWeights,
    test: &Dataset,
) -> Result<(ModelReport, Vec<u8>)> {
    write_model(out, quant_file(q.width), &encode_quant(q)?, test, |bytes| {
        Ok(classify_test(&QuantModel::from_bytes(bytes)?, test)?)
    })
}

/// Unless `force`, refuses to let `what` (a run that did not learn, an import that scores like
/// a model fed the wrong inputs) replace the model files `out` already holds, naming them.
/// `them` is how the message refers to `what`.
pub fn keep_existing_models(out: &OutputSet, force: bool, what: &str, them: &str) -> Result<()> {
    let existing: Vec<String> = [INT8_FILE, INT4_FILE, F32_FILE]
        .iter()
        .map(|f| out.resolved().join(f))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        anyhow::bail!(
            "not replacing {} with {what}: pass --force to write {them} anyway",
            existing.join(", ")
        );
    }
    Ok(())
}
