//! The training loop: shuffled mini-batches, backprop, RMSprop, optionally on freshly distorted
//! digits with a decaying learning rate; and evaluation on a dataset.

use std::time::Instant;

use nalgebra::DMatrix;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::augment::{Augment, Fields, Grid, distort, image_rng};
use crate::idx::Dataset;
use crate::mlp::{BatchStats, Mlp, RmsProp, network_inputs};
use crate::prune::{InputActivity, Masks, Pruning};
use crate::qat::Quantized;
use crate::quantize::{
    CALIBRATION_IMAGES, LayerWidths, Width, calibrate_hidden_scales, quantize_with_scales,
};
use crate::sparse::{SparseBatch, SparseRows};

/// A named set of training choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// Exactly the Keras tutorial: RMSprop at a constant 1e-3, 5 epochs, the digits as they are.
    Tutorial,
    /// The most the same network can learn: distorted digits redrawn every epoch, a cosine-decayed
    /// learning rate, 10 % of the training set held out to keep the best epoch.
    Best,
}

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Half a cosine from the rate down to `floor` times it, step by step.
    Cosine {
        /// Fraction of the rate left at the end.
        floor: f32,
    },
}

impl Schedule {
    /// The rate after `progress` (0–1) of the run.
    pub fn rate(self, base: f32, progress: f64) -> f32 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine { floor } => {
                let c = 0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos());
                base * (floor + (1.0 - floor) * c as f32)
            }
        }
    }
}

/// Everything a run is trained with. [`Default`] is the Keras tutorial's recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per gradient step; the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// RMSprop step size (at the start, for a decaying schedule).
    pub learning_rate: f32,
    /// Seeds the initial weights, every epoch's shuffle and every distortion.
    pub seed: u64,
    /// Units of each hidden layer, first to last (at least one).
    pub hidden: Vec<usize>,
    /// The learning rate over the run.
    pub schedule: Schedule,
    /// Distortions drawn afresh for every image and epoch (none: the digits as they are).
    pub augment: Option<Augment>,
    /// With a validation set, end with the weights of the epoch of lowest validation loss (Keras's
    /// `EarlyStopping(restore_best_weights=True)` without the early stop).
    pub restore_best: bool,
    /// The last epochs train through the integer arithmetic (quantization-aware fine-tuning).
    pub qat_epochs: usize,
    /// The weight widths those epochs train for, layer by layer.
    pub qat_width: LayerWidths,
    /// Prune the hidden layers in blocks down to a density, gradually (none: dense).
    pub prune: Option<Pruning>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::recipe(Recipe::Tutorial)
    }
}

impl TrainConfig {
    /// The first quantization-aware epoch (1-based): the last `qat_epochs` epochs, or all of them
    /// in a shorter run; `None` without quantization-aware training.
    pub fn first_qat_epoch(&self) -> Option<usize> {
        (self.qat_epochs > 0).then(|| (self.epochs + 1).saturating_sub(self.qat_epochs).max(1))
    }

    /// A recipe's settings.
    pub fn recipe(recipe: Recipe) -> Self {
        let tutorial = Self {
            epochs: 5,
            batch_size: 128,
            learning_rate: 1e-3,
            seed: 42,
            hidden: vec![crate::shape::HIDDEN],
            schedule: Schedule::Constant,
            augment: None,
            restore_best: false,
            qat_epochs: 0,
            qat_width: Width::Int8.into(),
            prune: None,
        };
        match recipe {
            Recipe::Tutorial => tutorial,
            Recipe::Best => Self {
                epochs: 40,
                schedule: Schedule::Cosine { floor: 0.02 },
                augment: Some(Augment::BEST),
                restore_best: true,
                qat_epochs: 4,
                ..tutorial
            },
        }
    }
}

/// Fraction of the training set a recipe holds out for validation unless told otherwise.
pub fn default_validation_split(recipe: Recipe) -> f64 {
    match recipe {
        Recipe::Tutorial => 0.0,
        Recipe::Best => 0.1,
    }
}

/// One epoch's figures, as Keras prints them: running means over the epoch's batches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean training cross-entropy.
    pub loss: f64,
    /// Training accuracy, 0–1.
    pub accuracy: f64,
    /// Wall time of the epoch (training steps only).
    pub seconds: f64,
    /// The learning rate at the epoch's last step.
    pub learning_rate: f32,
    /// Loss on the validation set after the epoch, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Accuracy on the validation set after the epoch, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Loss on the test set after the epoch, only where asked for (`--plot-test`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Accuracy on the test set after the epoch, only where asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
}

/// Why training stopped early.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    /// The loss became NaN or infinite: the run diverged (a learning rate too high, usually).
    #[error(
        "the loss became {loss} at epoch {epoch}, batch {batch}: training diverged (try a lower --learning-rate)"
    )]
    NonFinite {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch.
        batch: usize,
        /// The batch's summed loss.
        loss: f64,
    },
    /// Quantization-aware training could not quantize the network (a requantization factor out
    /// of the range the int8 format holds).
    #[error("quantization-aware training: {0}")]
    Quantization(String),
}

/// What [`fit`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// A gradient step is done.
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// Steps done in this epoch.
        done: usize,
        /// Steps per epoch.
        steps: usize,
        /// Running loss and accuracy of this epoch so far.
        running: BatchStats,
    },
    /// An epoch is done.
    Epoch(EpochStats),
}

/// Sets held out from training, evaluated after every epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeldOut<'a> {
    /// Keras's validation data: monitored, and where `restore_best` picks the epoch.
    pub validation: Option<&'a Dataset>,
    /// The test set, per epoch only for a user who asks to see it (not used to choose anything).
    pub test: Option<&'a Dataset>,
}

/// The trained network and its history.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The weights: of the last epoch, or of the best one under `restore_best`.
    pub net: Mlp,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The 1-based epoch whose weights `net` holds.
    pub epoch: usize,
    /// The hidden layers' activation scales `net` was fine-tuned with, if that epoch was
    /// quantization-aware: the export must use it.
    pub act_scales: Option<Vec<f32>>,
    /// What pruning did, in a pruned run.
    pub pruned: Option<Pruned>,
}

/// A pruned run's snapshots: the network as pruning started, and after it and the fine-tuning
/// (before any quantization-aware epoch), with the densities reached.
#[derive(Debug, Clone)]
pub struct Pruned {
    /// The weights when pruning started (dense).
    pub before: Mlp,
    /// The weights after the last float epoch.
    pub after: Mlp,
    /// Each hidden layer's density of kept blocks, first to last.
    pub densities: Vec<f32>,
}

/// Trains a fresh network on `data`, calling `progress` after every step and every epoch, and
/// evaluating the held-out sets after every epoch.
pub fn fit(
    data: &Dataset,
    held_out: HeldOut<'_>,
    config: &TrainConfig,
    mut progress: impl FnMut(Progress),
) -> Result<Fitted, TrainError> {
    let source = match config.augment {
        // Every epoch sees the same inputs: converted once.
        None => Batches::Fixed(network_inputs(data)),
        Some(augment) => {
            let grid = Grid {
                rows: data.rows,
                cols: data.cols,
            };
            Batches::Distorted(augment, Fields::new(256, 4.0, config.seed, grid))
        }
    };
    let validation = held_out
        .validation
        .map(|v| (network_inputs(v), v.labels.as_slice()));
    let test = held_out
        .test
        .map(|t| (network_inputs(t), t.labels.as_slice()));
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    // The data's classes (a validation split may hold the only images of the last ones).
    let classes = [Some(data), held_out.validation, held_out.test]
        .into_iter()
        .flatten()
        .map(Dataset::classes)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut net = Mlp::glorot(data.pixels(), &config.hidden, classes, &mut rng);
    let mut optimizer = RmsProp::new(config.learning_rate, &net);
    let mut grads = net.zeros_like();
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut labels = Vec::with_capacity(config.batch_size);
    // Grows with the epochs run, not the epochs asked for.
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Mlp, Option<Vec<f32>>)> = None;
    let first_qat_epoch = config.first_qat_epoch().unwrap_or(usize::MAX);
    let mut act_scales: Option<Vec<f32>> = None;
    let steps = data.len().div_ceil(config.batch_size.max(1));
    let total_steps = (steps * config.epochs).max(1) as f64;
    let mut masks = config.prune.map(|_| Masks::new(&net));
    // What the inputs did over the batches seen (sums of squares, live groups), for scoring the
    // first layer's blocks.
    let mut activity = InputActivity::new(if masks.is_some() { data.pixels() } else { 0 });
    let (mut before, mut after) = (None, None);

    for epoch in 1..=config.epochs {
        let start = Instant::now();
        if let (Some(_), Some(masks)) = (config.prune, &masks)
            && config.qat_epochs > 0
            && epoch == first_qat_epoch
        {
            after = Some((net.clone(), masks.densities()));
        }
        if config.qat_epochs > 0 && epoch == first_qat_epoch {
            // Fixed from here on, so the last epochs train exactly what is exported.
            act_scales = Some(calibrate_hidden_scales(
                &net,
                &data.head(CALIBRATION_IMAGES),
            ));
        }
        order.shuffle(&mut rng);
        let mut stats = BatchStats::default();
        for (batch, indices) in order.chunks(config.batch_size.max(1)).enumerate() {
            let x = match &source {
                Batches::Fixed(inputs) => SparseBatch::new(inputs.gather(indices)),
                Batches::Distorted(augment, fields) => {
                    distorted_batch(data, indices, augment, fields, config.seed, epoch)
                }
            };
            labels.clear();
            labels.extend(indices.iter().map(|&i| data.labels[i]));
            if config.prune.is_some() {
                for r in 0..x.len() {
                    activity.add_row(x.rows().row(r));
                }
            }
            let batch_stats = match &act_scales {
                None => net.backprop(&x, &labels, &mut grads),
                Some(scales) => {
                    let q = quantize_with_scales(&net, scales, config.qat_width)
                        .map_err(|e| TrainError::Quantization(format!("{e:#}")))?;
                    Quantized::new(&q).backprop(&x, &labels, &mut grads)
                }
            };
            if !batch_stats.loss_sum.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch,
                    batch: batch + 1,
                    loss: batch_stats.loss_sum,
                });
            }
            stats.add(batch_stats);
            let done = ((epoch - 1) * steps + batch) as f64;
            optimizer.learning_rate = config
                .schedule
                .rate(config.learning_rate, done / total_steps);
            optimizer.step(&mut net, &grads);
            if let (Some(p), Some(masks)) = (config.prune, &mut masks) {
                let progress = (done + 1.0) / total_steps;
                if before.is_none() && progress >= p.start {
                    before = Some(net.clone());
                }
                let weights = activity.weights(p.live_cost);
                masks.prune(&mut net, p.density_at(progress), Some(&weights));
            }
            progress(Progress::Batch {
                epoch,
                done: batch + 1,
                steps,
                running: stats,
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        // During quantization-aware epochs the held-out figures are the integer network's.
        let q = match &act_scales {
            Some(scales) => Some(
                quantize_with_scales(&net, scales, config.qat_width)
                    .map_err(|e| TrainError::Quantization(format!("{e:#}")))?,
            ),
            None => None,
        };
        let quantized = q.as_ref().map(Quantized::new);
        let on = |set: &Option<(SparseRows, &[u8])>| {
            set.as_ref().map(|(inputs, labels)| match &quantized {
                Some(q) => evaluate_with(inputs, labels, |rows| q.forward(&rows).1).stats,
                None => evaluate_inputs(&net, inputs, labels).stats,
            })
        };
        let (val, tested) = (on(&validation), on(&test));
        let epoch_stats = EpochStats {
            epoch,
            loss: stats.loss(),
            accuracy: stats.accuracy(),
            seconds,
            learning_rate: optimizer.learning_rate,
            val_loss: val.map(|s| s.loss()),
            val_accuracy: val.map(|s| s.accuracy()),
            test_loss: tested.map(|s| s.loss()),
            test_accuracy: tested.map(|s| s.accuracy()),
        };
        // Candidates for the best epoch: of a pruned run, only epochs at the target density; of a
        // run with quantization-aware epochs, only those, whose validation figures are the
        // integer model's (a float epoch's f32 loss is not what its file would score).
        let pruned_enough = config
            .prune
            .is_none_or(|p| p.is_done((epoch * steps) as f64 / total_steps));
        if let (true, Some(v)) = (config.restore_best, val)
            && pruned_enough
            && (config.qat_epochs == 0 || act_scales.is_some())
            && best.as_ref().is_none_or(|(loss, ..)| v.loss() < *loss)
        {
            best = Some((v.loss(), epoch, net.clone(), act_scales.clone()));
        }
        progress(Progress::Epoch(epoch_stats));
        history.push(epoch_stats);
    }
    let (net, epoch, act_scales) = match best {
        Some((_, epoch, best_net, scales)) => (best_net, epoch, scales),
        None => (net, config.epochs, act_scales),
    };
    let pruned = masks.map(|masks| {
        let (after, densities) = after.unwrap_or_else(|| (net.clone(), masks.densities()));
        Pruned {
            before: before.unwrap_or_else(|| after.clone()),
            after,
            densities,
        }
    });
    Ok(Fitted {
        net,
        history,
        epoch,
        act_scales,
        pruned,
    })
}

/// Where a training batch comes from.
enum Batches {
    /// The images as they are, converted to network inputs once.
    Fixed(SparseRows),
    /// The images distorted afresh for every epoch.
    Distorted(Augment, Fields),
}

/// The images at `indices`, each freshly distorted for this epoch, as network inputs.
fn distorted_batch(
    data: &Dataset,
    indices: &[usize],
    augment: &Augment,
    fields: &Fields,
    seed: u64,
    epoch: usize,
) -> SparseBatch {
    let pixels = data.pixels();
    let mut dense = vec![0u8; indices.len() * pixels];
    dense
        .par_chunks_mut(pixels)
        .zip(indices.par_iter())
        .for_each(|(out, &i)| {
            let mut rng = image_rng(seed, epoch, i);
            distort(data.image(i), augment, fields, &mut rng, out);
        });
    SparseBatch::new(SparseRows::from_dense(
        pixels,
        dense.chunks_exact(pixels),
        |p| f32::from(p) / 255.0,
    ))
}

/// Loss, accuracy and every image's predicted class.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy and accuracy.
    pub stats: BatchStats,
    /// Arg-max class per image.
    pub predictions: Vec<u8>,
}

/// Evaluates `net` on every image of `data`.
pub fn evaluate(net: &Mlp, data: &Dataset) -> Evaluation {
    evaluate_inputs(net, &network_inputs(data), &data.labels)
}

/// [`evaluate`] on images already made network inputs (so a set evaluated every epoch is
/// converted once).
fn evaluate_inputs(net: &Mlp, inputs: &SparseRows, labels: &[u8]) -> Evaluation {
    evaluate_with(inputs, labels, |rows| net.forward(&SparseBatch::new(rows)))
}

/// Loss, accuracy and predictions of the network whose logits `forward` gives, one column per
/// image of the rows it is handed (the float network, or the int8 one during quantization-aware
/// training).
fn evaluate_with(
    inputs: &SparseRows,
    labels: &[u8],
    forward: impl Fn(SparseRows) -> DMatrix<f32>,
) -> Evaluation {
    const CHUNK: usize = 1000;
    let mut stats = BatchStats::default();
    let mut predictions = Vec::with_capacity(labels.len());
    let all: Vec<usize> = (0..labels.len()).collect();
    for chunk in all.chunks(CHUNK) {
        let mut logits = forward(inputs.gather(chunk));
        predictions.extend(logits.column_iter().map(|z| z.argmax().0 as u8));
        let chunk_labels: Vec<u8> = chunk.iter().map(|&i| labels[i]).collect();
        stats.add(crate::mlp::softmax_cross_entropy(
            &mut logits,
            &chunk_labels,
        ));
    }
    Evaluation { stats, predictions }
}
