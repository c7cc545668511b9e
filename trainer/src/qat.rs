//! Quantization-aware fine-tuning: during the last epochs of the `best` recipe, a training step's
//! forward pass is the integer model's (int8 or int4 weights), integer for integer as infer-core
//! computes it (weights quantized as they will be exported, hidden activations requantized by
//! [`infer_core::quant::requantize`] at activation scales fixed when fine-tuning starts); the
//! backward pass runs on the same rounded weights in float, and its gradients update the float
//! weights straight through the rounding. So the integer model keeps the float model's accuracy.
//! (infer-core's int4 kernels multiply offset nibbles and take the offset off once; the sums are
//! the same integers as these.)

use nalgebra::DMatrix;
use rayon::prelude::*;

use infer_core::quant::requantize;

use crate::mlp::{BatchStats, Mlp};
use crate::quantize::{QuantLayer, QuantWeights};
use crate::sparse::{SparseBatch, SparseRows};

/// The integer network ready for training steps: its integers, the first layer's also
/// input-major.
#[derive(Debug, Clone)]
pub struct Quantized<'q> {
    q: &'q QuantWeights,
    /// The first layer's weights input-major (`w1t[k·hidden + j]`), so each input adds one
    /// contiguous column.
    w1t: Vec<i8>,
}

/// `acc_j = bias_j + Σ_k x_k · w[j][k]` of a dense integer layer (wrapping, as the kernels).
fn dense(layer: &QuantLayer, x: &[u8]) -> Vec<i32> {
    (0..layer.outputs)
        .map(|j| {
            let row = &layer.w[j * layer.inputs..][..layer.inputs];
            x.iter().zip(row).fold(layer.bias[j], |a, (&h, &w)| {
                a.wrapping_add(i32::from(h) * i32::from(w))
            })
        })
        .collect()
}

impl<'q> Quantized<'q> {
    /// Prepares `q` for forward passes.
    pub fn new(q: &'q QuantWeights) -> Self {
        let mut w1t = Vec::new();
        if let Some(first) = q.layers.first() {
            let (hidden, inputs) = (first.outputs, first.inputs);
            w1t = vec![0i8; hidden * inputs];
            for (j, row) in first.w.chunks_exact(inputs.max(1)).enumerate() {
                for (k, &w) in row.iter().enumerate() {
                    w1t[k * hidden + j] = w;
                }
            }
        }
        Self { q, w1t }
    }

    /// A layer's rounded weights as float values (`q · scale`), `outputs × inputs`.
    fn rounded(layer: &QuantLayer) -> DMatrix<f32> {
        DMatrix::from_fn(layer.outputs, layer.inputs, |j, k| {
            f32::from(layer.w[j * layer.inputs + k]) * layer.w_scale[j]
        })
    }

    /// The rounded output weights as float values, `hidden × classes` as the trainer's `w2`:
    /// what the backward pass multiplies by.
    fn rounded_w2(&self) -> DMatrix<f32> {
        let Some(last) = self.q.layers.last() else {
            return DMatrix::zeros(0, 0);
        };
        let hidden = last.inputs;
        DMatrix::from_fn(hidden, last.outputs, |j, c| {
            f32::from(last.w[c * hidden + j]) * last.w_scale[c]
        })
    }

    /// One image through the integer network: every hidden layer's u8 activations and the
    /// output layer's accumulators, exactly infer-core's `Prediction::logits`. `pixels` are
    /// (index, value/255).
    pub fn image(&self, pixels: impl Iterator<Item = (usize, f32)>) -> (Vec<Vec<u8>>, Vec<i32>) {
        let layers = &self.q.layers;
        let Some((first, rest)) = layers.split_first() else {
            return (Vec::new(), Vec::new());
        };
        let n = first.outputs;
        let mut acc = first.bias.clone();
        for (k, v) in pixels {
            // The network input is p / 255 of an integer pixel p: recovered exactly.
            let p = (v * 255.0).round() as i32;
            for (a, &w) in acc.iter_mut().zip(&self.w1t[k * n..][..n]) {
                *a = a.wrapping_add(p * i32::from(w));
            }
        }
        let mut hidden = Vec::with_capacity(layers.len());
        for layer in rest {
            let h: Vec<u8> = (0..acc.len())
                .map(|j| {
                    let previous = &layers[hidden.len()];
                    requantize(acc[j], previous.multiplier[j], previous.shift[j])
                })
                .collect();
            acc = dense(layer, &h);
            hidden.push(h);
        }
        (hidden, acc)
    }

    /// A batch through the integer network: every hidden layer's activations and the logits in
    /// real units (`h · act_scale`, `logit · input scale · w_scale`), one column per image.
    pub fn forward(&self, rows: &SparseRows) -> (Vec<DMatrix<f32>>, DMatrix<f32>) {
        let layers = &self.q.layers;
        let n = rows.len();
        let Some(last) = layers.last() else {
            return (Vec::new(), DMatrix::zeros(0, n));
        };
        let hidden_layers = &layers[..layers.len() - 1];
        let per_image: Vec<(Vec<Vec<u8>>, Vec<i32>)> = (0..n)
            .into_par_iter()
            .map(|i| self.image(rows.row(i)))
            .collect();
        let acts = hidden_layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let scale = layer.act_scale.unwrap_or(0.0);
                DMatrix::from_fn(layer.outputs, n, |j, i| {
                    f32::from(per_image[i].0[l][j]) * scale
                })
            })
            .collect();
        let in_scale = hidden_layers
            .last()
            .and_then(|l| l.act_scale)
            .unwrap_or(1.0 / 255.0);
        let z = DMatrix::from_fn(last.outputs, n, |c, i| {
            per_image[i].1[c] as f32 * in_scale * last.w_scale[c]
        });
        (acts, z)
    }

    /// One training step's loss and gradients (into `grads`), the forward pass the integer one.
    pub fn backprop(&self, x: &SparseBatch, labels: &[u8], grads: &mut Mlp) -> BatchStats {
        let (acts, logits) = self.forward(x.rows());
        let layers = &self.q.layers;
        let middle: Vec<DMatrix<f32>> = layers
            .get(1..layers.len().saturating_sub(1))
            .unwrap_or(&[])
            .iter()
            .map(Self::rounded)
            .collect();
        let middle: Vec<&DMatrix<f32>> = middle.iter().collect();
        Mlp::backward(&middle, &self.rounded_w2(), x, &acts, logits, labels, grads)
    }
}
