//! Quantization-aware fine-tuning: during the last epochs of the `best` recipe, a training step's
//! forward pass is the integer model's (int8 or int4 weights), integer for integer as infer-core
//! computes it (weights quantized as they will be exported, hidden activations requantized by
//! [`infer_core::quant::requantize`] at a hidden scale fixed when fine-tuning starts); the
//! backward pass runs on the same rounded output weights in float, and its gradients update the
//! float weights straight through the rounding. So the integer model keeps the float model's
//! accuracy. (infer-core's int4 kernels multiply offset nibbles and take the offset off once; the
//! sums are the same integers as these.)

use nalgebra::DMatrix;
use rayon::prelude::*;

use infer_core::quant::requantize;

use crate::mlp::{BatchStats, Mlp};
use crate::quantize::QuantWeights;
use crate::sparse::{SparseBatch, SparseRows};

/// The integer network ready for training steps: its integers, `w1` also input-major.
#[derive(Debug, Clone)]
pub struct Quantized<'q> {
    q: &'q QuantWeights,
    /// `w1` input-major (`w1t[k·hidden + j]`), so each input adds one contiguous column.
    w1t: Vec<i8>,
    hidden: usize,
    classes: usize,
}

impl<'q> Quantized<'q> {
    /// Prepares `q` for forward passes.
    pub fn new(q: &'q QuantWeights) -> Self {
        let (hidden, classes) = (q.b1.len(), q.b2.len());
        let inputs = q.w1.len() / hidden.max(1);
        let mut w1t = vec![0i8; hidden * inputs];
        for (j, row) in q.w1.chunks_exact(inputs.max(1)).enumerate() {
            for (k, &w) in row.iter().enumerate() {
                w1t[k * hidden + j] = w;
            }
        }
        Self {
            q,
            w1t,
            hidden,
            classes,
        }
    }

    /// The rounded output weights as float values (`q · scale`), `hidden × classes` as the
    /// trainer's `w2`: what the backward pass multiplies by.
    fn rounded_w2(&self) -> DMatrix<f32> {
        let (q, hidden) = (self.q, self.hidden);
        DMatrix::from_fn(hidden, self.classes, |j, c| {
            f32::from(q.w2[c * hidden + j]) * q.w2_scale[c]
        })
    }

    /// One image through the integer network: the u8 hidden activations and the output layer's
    /// accumulators, exactly infer-core's `Prediction::logits`. `pixels` are (index, value/255).
    pub fn image(&self, pixels: impl Iterator<Item = (usize, f32)>) -> (Vec<u8>, Vec<i32>) {
        let (q, n) = (self.q, self.hidden);
        let mut acc = q.b1.clone();
        for (k, v) in pixels {
            // The network input is p / 255 of an integer pixel p: recovered exactly.
            let p = (v * 255.0).round() as i32;
            for (a, &w) in acc.iter_mut().zip(&self.w1t[k * n..][..n]) {
                *a = a.wrapping_add(p * i32::from(w));
            }
        }
        let hidden: Vec<u8> = (0..n)
            .map(|j| requantize(acc[j], q.m1[j], q.s1[j]))
            .collect();
        let logits = (0..self.classes)
            .map(|c| {
                let row = &q.w2[c * n..][..n];
                hidden.iter().zip(row).fold(q.b2[c], |a, (&h, &w)| {
                    a.wrapping_add(i32::from(h) * i32::from(w))
                })
            })
            .collect();
        (hidden, logits)
    }

    /// A batch through the integer network: hidden activations and logits in real units
    /// (`h · hidden_scale`, `logit · hidden_scale · w2_scale`), one column per image.
    pub fn forward(&self, rows: &SparseRows) -> (DMatrix<f32>, DMatrix<f32>) {
        let q = self.q;
        let n = rows.len();
        let mut h = DMatrix::zeros(self.hidden, n);
        let mut z = DMatrix::zeros(self.classes, n);
        h.as_mut_slice()
            .par_chunks_mut(self.hidden.max(1))
            .zip(z.as_mut_slice().par_chunks_mut(self.classes.max(1)))
            .enumerate()
            .for_each(|(i, (h, z))| {
                let (hidden, logits) = self.image(rows.row(i));
                for (out, &v) in h.iter_mut().zip(&hidden) {
                    *out = f32::from(v) * q.hidden_scale;
                }
                for (c, (out, &l)) in z.iter_mut().zip(&logits).enumerate() {
                    *out = l as f32 * q.hidden_scale * q.w2_scale[c];
                }
            });
        (h, z)
    }

    /// One training step's loss and gradients (into `grads`), the forward pass the integer one.
    pub fn backprop(&self, x: &SparseBatch, labels: &[u8], grads: &mut Mlp) -> BatchStats {
        let (h, logits) = self.forward(x.rows());
        Mlp::backward(&self.rounded_w2(), x, &h, logits, labels, grads)
    }
}
