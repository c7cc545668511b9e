//! The multilayer perceptron (one or more hidden ReLU layers), its gradients and the RMSprop
//! optimizer, on nalgebra matrices.
//!
//! Activations are stored one image per column (`features × batch`), so a layer is `W · X` with
//! `W` as `outputs × inputs`: column `k` of `W` holds the weights that input `k` feeds forward,
//! contiguous in memory. The input layer is a sparse product ([`SparseBatch`]); the hidden
//! layers after it ([`Mlp::middle`]) are nalgebra GEMMs; the output layer takes a dot product per
//! class.

use nalgebra::{DMatrix, DVector};
use rand::Rng;
use rayon::prelude::*;

use crate::idx::Dataset;
use crate::kernels::{axpy_sum, dot, rmsprop};
use crate::sparse::{SparseBatch, SparseRows};

/// The images of a dataset as network inputs: pixels scaled to 0–1, as Keras's `x / 255`, with
/// only the non-zero ones kept.
pub fn network_inputs(data: &Dataset) -> SparseRows {
    SparseRows::from_dense_parallel(data.pixels(), &data.images, |p| f32::from(p) / 255.0)
}

/// A dense hidden layer after the first: `outputs × inputs` weights and the biases.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// `outputs × inputs`.
    pub w: DMatrix<f32>,
    /// `outputs`.
    pub b: DVector<f32>,
}

/// Weights and biases of `inputs → hidden (ReLU) → … → classes (softmax)`: the first hidden
/// layer (`w1`, `b1`), the hidden layers after it (`middle`, none for the tutorial's network) and
/// the output layer (`w2`, `b2`).
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// `hidden × inputs`.
    pub w1: DMatrix<f32>,
    /// `hidden`.
    pub b1: DVector<f32>,
    /// The hidden layers after the first, in order.
    pub middle: Vec<Dense>,
    /// `last hidden × classes`: column `c` holds the weights into class `c`, contiguous.
    pub w2: DMatrix<f32>,
    /// `classes`.
    pub b2: DVector<f32>,
}

/// Gradients of the mean loss of a batch, shaped like the [`Mlp`] they belong to.
pub type Gradients = Mlp;

/// What one batch contributed to the running loss and accuracy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// Sum over the batch of the cross-entropy, in nats.
    pub loss_sum: f64,
    /// Images whose arg-max class was the label.
    pub correct: usize,
    /// Images in the batch.
    pub count: usize,
}

impl BatchStats {
    /// Adds another batch's figures.
    pub fn add(&mut self, other: BatchStats) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.count += other.count;
    }

    /// Mean cross-entropy.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }

    /// Fraction classified correctly.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }
}

impl Mlp {
    /// Keras's defaults: Glorot-uniform weights, zero biases; `hidden` lists the hidden layers'
    /// widths (at least one).
    pub fn glorot(inputs: usize, hidden: &[usize], classes: usize, rng: &mut impl Rng) -> Self {
        let mut uniform = |rows: usize, cols: usize| {
            let limit = (6.0 / (rows + cols) as f32).sqrt();
            DMatrix::from_fn(rows, cols, |_, _| rng.random_range(-limit..limit))
        };
        let first = hidden.first().copied().unwrap_or(1);
        let w1 = uniform(first, inputs);
        let middle = hidden
            .windows(2)
            .map(|io| Dense {
                w: uniform(io[1], io[0]),
                b: DVector::zeros(io[1]),
            })
            .collect();
        let last = hidden.last().copied().unwrap_or(first);
        let w2 = uniform(last, classes);
        Self {
            w1,
            b1: DVector::zeros(first),
            middle,
            w2,
            b2: DVector::zeros(classes),
        }
    }

    /// Inputs, each hidden layer's width, classes.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.w1.ncols(), self.w1.nrows()];
        w.extend(self.middle.iter().map(|d| d.w.nrows()));
        w.push(self.w2.ncols());
        w
    }

    /// A zero network of the same shape (the optimizer's state, a gradient buffer).
    pub fn zeros_like(&self) -> Self {
        Self {
            w1: DMatrix::zeros(self.w1.nrows(), self.w1.ncols()),
            b1: DVector::zeros(self.b1.len()),
            middle: self
                .middle
                .iter()
                .map(|d| Dense {
                    w: DMatrix::zeros(d.w.nrows(), d.w.ncols()),
                    b: DVector::zeros(d.b.len()),
                })
                .collect(),
            w2: DMatrix::zeros(self.w2.nrows(), self.w2.ncols()),
            b2: DVector::zeros(self.b2.len()),
        }
    }

    /// The parameter tensors as flat slices, in a fixed order: `w1`, `b1`, each middle layer's
    /// weights and biases, `w2`, `b2`.
    pub fn tensors(&self) -> Vec<&[f32]> {
        let mut t = vec![self.w1.as_slice(), self.b1.as_slice()];
        for d in &self.middle {
            t.extend([d.w.as_slice(), d.b.as_slice()]);
        }
        t.extend([self.w2.as_slice(), self.b2.as_slice()]);
        t
    }

    /// [`Self::tensors`], mutably.
    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        let mut t = vec![self.w1.as_mut_slice(), self.b1.as_mut_slice()];
        for d in &mut self.middle {
            t.extend([d.w.as_mut_slice(), d.b.as_mut_slice()]);
        }
        t.extend([self.w2.as_mut_slice(), self.b2.as_mut_slice()]);
        t
    }

    /// Every hidden layer's activations (after ReLU) for a batch, one column per image, first
    /// to last.
    pub fn activations(&self, x: &SparseBatch) -> Vec<DMatrix<f32>> {
        debug_assert_eq!(x.inputs(), self.w1.ncols());
        let mut h = DMatrix::zeros(self.w1.nrows(), x.len());
        x.times_weights(self.w1.as_slice(), self.b1.as_slice(), h.as_mut_slice());
        h.apply(|v| *v = v.max(0.0));
        let mut all = Vec::with_capacity(1 + self.middle.len());
        all.push(h);
        for d in &self.middle {
            let Some(input) = all.last() else { break };
            let mut z = &d.w * input;
            for mut column in z.column_iter_mut() {
                column += &d.b;
                column.apply(|v| *v = v.max(0.0));
            }
            all.push(z);
        }
        all
    }

    /// The last hidden layer's activations (after ReLU) for a batch, one column per image.
    pub fn hidden(&self, x: &SparseBatch) -> DMatrix<f32> {
        let mut all = self.activations(x);
        all.pop().unwrap_or_else(|| DMatrix::zeros(0, x.len()))
    }

    /// Output logits (before softmax) from hidden activations.
    pub fn logits(&self, h: &DMatrix<f32>) -> DMatrix<f32> {
        let classes = self.w2.ncols();
        let mut z = DMatrix::zeros(classes, h.ncols());
        z.as_mut_slice()
            .par_chunks_mut(classes)
            .zip(h.as_slice().par_chunks(h.nrows()))
            .for_each(|(z, h)| {
                for ((z, w), b) in z.iter_mut().zip(self.w2.column_iter()).zip(&self.b2) {
                    *z = b + dot(w.as_slice(), h);
                }
            });
        z
    }

    /// Logits of a batch, one column per image.
    pub fn forward(&self, x: &SparseBatch) -> DMatrix<f32> {
        self.logits(&self.hidden(x))
    }

    /// Loss and accuracy of a batch, and the gradients of its mean cross-entropy into `grads`.
    ///
    /// `labels` holds one class per image of `x`.
    pub fn backprop(&self, x: &SparseBatch, labels: &[u8], grads: &mut Gradients) -> BatchStats {
        let acts = self.activations(x);
        let Some(h) = acts.last() else {
            return BatchStats::default();
        };
        let logits = self.logits(h);
        let middle: Vec<&DMatrix<f32>> = self.middle.iter().map(|d| &d.w).collect();
        Self::backward(&middle, &self.w2, x, &acts, logits, labels, grads)
    }

    /// The gradients of a batch's mean cross-entropy given its forward pass: every hidden
    /// layer's activations `acts` and the `logits`, one column per image, and the weights the
    /// backward pass reads: the middle layers' (`middle`) and the output layer's (`w2`, `hidden ×
    /// classes`). Where an activation is zero, no gradient passes (the ReLU).
    ///
    /// [`Self::backprop`] passes its own forward pass; quantization-aware training passes the
    /// integer one and the rounded weights, so the gradients reach the float weights straight
    /// through the rounding.
    pub fn backward(
        middle: &[&DMatrix<f32>],
        w2: &DMatrix<f32>,
        x: &SparseBatch,
        acts: &[DMatrix<f32>],
        logits: DMatrix<f32>,
        labels: &[u8],
        grads: &mut Gradients,
    ) -> BatchStats {
        let Some(h) = acts.last() else {
            return BatchStats::default();
        };
        let batch = x.len();
        debug_assert_eq!(labels.len(), batch);
        // The logits become dL/dz in place: (softmax − one-hot) / batch.
        let mut dz = logits;
        let stats = softmax_cross_entropy(&mut dz, labels);

        let (hidden, classes) = (h.nrows(), dz.nrows());
        let (h_columns, dz_columns) = (h.as_slice(), dz.as_slice());
        // dW2[:, c] = Σ_i dz[c, i] · h[:, i]
        grads
            .w2
            .as_mut_slice()
            .par_chunks_mut(hidden)
            .enumerate()
            .for_each(|(c, out)| {
                out.fill(0.0);
                let terms = (0..batch).map(|i| {
                    (
                        dz_columns[i * classes + c],
                        &h_columns[i * hidden..][..hidden],
                    )
                });
                axpy_sum(out, terms);
            });
        row_sums(&dz, &mut grads.b2);

        // dh[:, i] = Σ_c dz[c, i] · W2[:, c], zero where the ReLU was inactive.
        let mut dh = DMatrix::zeros(hidden, batch);
        dh.as_mut_slice()
            .par_chunks_mut(hidden)
            .zip(h_columns.par_chunks(hidden))
            .zip(dz_columns.par_chunks(classes))
            .for_each(|((out, h), dz)| {
                let terms = dz.iter().copied().zip(w2.as_slice().chunks_exact(hidden));
                axpy_sum(out, terms);
                // A select, not a branch: half the units are inactive, at random, so a branch
                // mispredicts on every other one (it took an eighth of the run).
                for (d, &a) in out.iter_mut().zip(h) {
                    *d = if a > 0.0 { *d } else { 0.0 };
                }
            });
        // Back through the middle layers: dW = dh · inputᵀ, d(input) = Wᵀ · dh where the input
        // was active.
        for (m, w) in middle.iter().enumerate().rev() {
            let (Some(input), Some(g)) = (acts.get(m), grads.middle.get_mut(m)) else {
                break;
            };
            g.w.gemm(1.0, &dh, &input.transpose(), 0.0);
            row_sums(&dh, &mut g.b);
            let mut below = w.tr_mul(&dh);
            below.zip_apply(input, |d, a| *d = if a > 0.0 { *d } else { 0.0 });
            dh = below;
        }
        let first = grads.w1.nrows();
        x.outer_gradient(dh.as_slice(), first, grads.w1.as_mut_slice());
        row_sums(&dh, &mut grads.b1);
        stats
    }
}

fn row_sums(m: &DMatrix<f32>, out: &mut DVector<f32>) {
    out.fill(0.0);
    for column in m.column_iter() {
        *out += column;
    }
}

/// Replaces each column of logits by `(softmax − one-hot(label)) / batch` and returns the summed
/// cross-entropy and the number of arg-max hits.
pub fn softmax_cross_entropy(logits: &mut DMatrix<f32>, labels: &[u8]) -> BatchStats {
    let batch = logits.ncols();
    let scale = 1.0 / batch as f32;
    let mut stats = BatchStats {
        count: batch,
        ..BatchStats::default()
    };
    for (mut z, &label) in logits.column_iter_mut().zip(labels) {
        let label = usize::from(label);
        let (arg_max, max) = z.argmax();
        stats.correct += usize::from(arg_max == label);
        let sum: f32 = z.iter().map(|v| (v - max).exp()).sum();
        let log_sum = max + sum.ln();
        stats.loss_sum += f64::from(log_sum - z[label]);
        z.apply(|v| *v = (*v - log_sum).exp() * scale);
        z[label] -= scale;
    }
    stats
}

/// Keras's RMSprop without momentum, not centered:
/// `v ← ρ·v + (1−ρ)·g²`, `w ← w − lr·g / (√v + ε)`.
#[derive(Debug, Clone)]
pub struct RmsProp {
    /// Step size.
    pub learning_rate: f32,
    /// Decay of the running mean square.
    pub rho: f32,
    /// Added to the root mean square.
    pub epsilon: f32,
    mean_square: Mlp,
}

impl RmsProp {
    /// Keras's defaults: ρ = 0.9, ε = 1e-7.
    pub fn new(learning_rate: f32, like: &Mlp) -> Self {
        Self {
            learning_rate,
            rho: 0.9,
            epsilon: 1e-7,
            mean_square: like.zeros_like(),
        }
    }

    /// Applies one update to `params` from `grads`.
    pub fn step(&mut self, params: &mut Mlp, grads: &Gradients) {
        let (lr, rho, eps) = (self.learning_rate, self.rho, self.epsilon);
        for ((w, v), g) in params
            .tensors_mut()
            .into_iter()
            .zip(self.mean_square.tensors_mut())
            .zip(grads.tensors())
        {
            const CHUNK: usize = 16 * 1024;
            w.par_chunks_mut(CHUNK)
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|((w, v), g)| rmsprop(w, v, g, lr, rho, eps));
        }
    }
}
