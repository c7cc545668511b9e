//! The training loop: shuffled mini-batches, backprop, RMSprop; and evaluation on a dataset.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::idx::{Dataset, PIXELS};
use crate::mlp::{BatchStats, Mlp, RmsProp};
use crate::sparse::{SparseBatch, SparseRows};

/// The recipe. [`Default`] is the Keras tutorial's.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per gradient step; the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// RMSprop step size.
    pub learning_rate: f32,
    /// Seeds the initial weights and every epoch's shuffle.
    pub seed: u64,
    /// Hidden units.
    pub hidden: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 128,
            learning_rate: 1e-3,
            seed: 42,
            hidden: infer_core::HIDDEN,
        }
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
    /// Loss on the validation set after the epoch, if one was given.
    pub test_loss: Option<f64>,
    /// Accuracy on the validation set after the epoch, if one was given.
    pub test_accuracy: Option<f64>,
}

/// The images of a dataset as network inputs: pixels scaled to 0–1, as Keras's `x / 255`, with
/// only the non-zero ones kept.
pub fn network_inputs(data: &Dataset) -> SparseRows {
    SparseRows::from_dense_parallel(PIXELS, &data.images, |p| f32::from(p) / 255.0)
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

/// Trains a fresh network on `data`, calling `progress` after every step and every epoch, and
/// evaluating on `validation` (if given) after every epoch, as Keras's `validation_data`.
pub fn fit(
    data: &Dataset,
    validation: Option<&Dataset>,
    config: &TrainConfig,
    mut progress: impl FnMut(Progress),
) -> Result<(Mlp, Vec<EpochStats>), TrainError> {
    let inputs = network_inputs(data);
    let validation_inputs = validation.map(|v| (network_inputs(v), v.labels.as_slice()));
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut net = Mlp::glorot(PIXELS, config.hidden, infer_core::CLASSES, &mut rng);
    let mut optimizer = RmsProp::new(config.learning_rate, &net);
    let mut grads = net.zeros_like();
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut labels = Vec::with_capacity(config.batch_size);
    let mut history = Vec::with_capacity(config.epochs);
    let steps = data.len().div_ceil(config.batch_size.max(1));

    for epoch in 1..=config.epochs {
        let start = Instant::now();
        order.shuffle(&mut rng);
        let mut stats = BatchStats::default();
        for (batch, indices) in order.chunks(config.batch_size.max(1)).enumerate() {
            let x = SparseBatch::new(inputs.gather(indices));
            labels.clear();
            labels.extend(indices.iter().map(|&i| data.labels[i]));
            let batch_stats = net.backprop(&x, &labels, &mut grads);
            if !batch_stats.loss_sum.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch,
                    batch: batch + 1,
                    loss: batch_stats.loss_sum,
                });
            }
            stats.add(batch_stats);
            optimizer.step(&mut net, &grads);
            progress(Progress::Batch {
                epoch,
                done: batch + 1,
                steps,
                running: stats,
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        let held_out = validation_inputs
            .as_ref()
            .map(|(inputs, labels)| evaluate_inputs(&net, inputs, labels).stats);
        let epoch_stats = EpochStats {
            epoch,
            loss: stats.loss(),
            accuracy: stats.accuracy(),
            seconds,
            test_loss: held_out.map(|s| s.loss()),
            test_accuracy: held_out.map(|s| s.accuracy()),
        };
        progress(Progress::Epoch(epoch_stats));
        history.push(epoch_stats);
    }
    Ok((net, history))
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
    const CHUNK: usize = 1000;
    let mut stats = BatchStats::default();
    let mut predictions = Vec::with_capacity(labels.len());
    let all: Vec<usize> = (0..labels.len()).collect();
    for chunk in all.chunks(CHUNK) {
        let mut logits = net.forward(&SparseBatch::new(inputs.gather(chunk)));
        predictions.extend(logits.column_iter().map(|z| z.argmax().0 as u8));
        let chunk_labels: Vec<u8> = chunk.iter().map(|&i| labels[i]).collect();
        stats.add(crate::mlp::softmax_cross_entropy(
            &mut logits,
            &chunk_labels,
        ));
    }
    Evaluation { stats, predictions }
}
