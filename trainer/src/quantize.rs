//! Post-training quantization to infer-core's integer models (int8 or int4 weights), and the model
//! files of every kind.
//!
//! Weights: symmetric per output unit, int8 (`scale = max|w| / 127`) or int4 (`max|w| / 7`, the
//! values −7…7). Biases: i32 at
//! `input scale × weight scale`. Hidden activations: u8 at a scale calibrated on training images
//! (see [`calibrate_hidden_scales`], one scale per hidden layer), reached from the i32 accumulators by a fixed-point multiplier
//! per hidden unit. See `infer_core::quant` for the arithmetic the device runs.

use anyhow::{Context, Result, anyhow};
use infer_core::format::write;
use infer_core::quant::quantize_multiplier;
use rayon::prelude::*;
use serde::Serialize;

use crate::idx::Dataset;
use crate::mlp::{Mlp, network_inputs};
use crate::sparse::SparseBatch;

/// Training images the hidden activation range is calibrated on (the first ones).
pub const CALIBRATION_IMAGES: usize = 10_000;

/// Fraction of calibration activations that may clip at 255: the top 0.001 % are outliers whose
/// range would cost every other activation precision.
const CLIP_FRACTION: f64 = 1e-5;

/// The weight width of an integer model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Width {
    /// int8 weights, −127…127.
    Int8,
    /// int4 weights, −7…7: half the bytes.
    Int4,
}

impl Width {
    /// The largest weight magnitude.
    pub fn levels(self) -> f32 {
        match self {
            Width::Int8 => 127.0,
            Width::Int4 => 7.0,
        }
    }

    /// The layer weight kind it writes.
    pub fn weights(self) -> infer_core::Weights {
        match self {
            Width::Int8 => infer_core::Weights::Int8,
            Width::Int4 => infer_core::Weights::Int4,
        }
    }

    /// "int8" or "int4".
    pub fn name(self) -> &'static str {
        match self {
            Width::Int8 => "int8",
            Width::Int4 => "int4",
        }
    }
}

/// The weight width of every layer of an integer file: `width`, except the output layer's,
/// `output` (an int4 file may keep its small last layer in int8). A `Width` is the same for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerWidths {
    /// The hidden layers' width, which names the file (`mlp-int4.bin`).
    pub width: Width,
    /// The output layer's.
    pub output: Width,
}

impl From<Width> for LayerWidths {
    fn from(width: Width) -> Self {
        LayerWidths {
            width,
            output: width,
        }
    }
}

impl LayerWidths {
    /// `width` for every layer, but `output` (where given) for the last.
    pub fn with_output(width: Width, output: Option<Width>) -> Self {
        LayerWidths {
            width,
            output: output.unwrap_or(width),
        }
    }

    /// The file's kind as infer-core names it (`Header::kind_name`): "int8", "int4", or
    /// "int4+int8" for a file of both.
    pub fn kind(self) -> &'static str {
        if self.width == self.output {
            self.width.name()
        } else {
            "int4+int8"
        }
    }

    /// "int4", or "int4 with an int8 output layer".
    pub fn describe(self) -> String {
        if self.width == self.output {
            self.width.name().into()
        } else {
            format!(
                "{} with an {} output layer",
                self.width.name(),
                self.output.name()
            )
        }
    }
}

/// One integer layer, unpacked: what its sections hold.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantLayer {
    /// Its weights' width.
    pub width: Width,
    /// Inputs.
    pub inputs: usize,
    /// Outputs (units, or classes for the last layer).
    pub outputs: usize,
    /// Real value of one step of the u8 outputs (hidden layers; `None` for the output layer).
    pub act_scale: Option<f32>,
    /// Per output.
    pub w_scale: Vec<f32>,
    /// Per output, at scale `input scale · w_scale`.
    pub bias: Vec<i32>,
    /// Requantization multiplier per output (hidden layers).
    pub multiplier: Vec<i32>,
    /// Requantization shift per output (hidden layers).
    pub shift: Vec<u8>,
    /// `outputs × inputs`, row-major (infer-core's writer lays it out for the kernels).
    pub w: Vec<i8>,
}

/// The integer network, unpacked: what the file's sections hold, layer by layer.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantWeights {
    /// The hidden layers' width, which names the file (each layer has its own: `QuantLayer::width`).
    pub width: Width,
    /// The layers, first to last.
    pub layers: Vec<QuantLayer>,
}

/// For each hidden layer, the activation value that `1 − CLIP_FRACTION` of its activations on
/// `data` stay below (divided by 255: the real value of one u8 step).
pub fn calibrate_hidden_scales(net: &Mlp, data: &Dataset) -> Vec<f32> {
    const CHUNK: usize = 1000;
    let inputs = network_inputs(data);
    let all: Vec<usize> = (0..data.len()).collect();
    let widths = net.widths();
    let hidden = &widths[1..widths.len() - 1];
    let mut values: Vec<Vec<f32>> = hidden
        .iter()
        .map(|&h| Vec::with_capacity(data.len() * h / 2))
        .collect();
    for chunk in all.chunks(CHUNK) {
        let acts = net.activations(&SparseBatch::new(inputs.gather(chunk)));
        for (v, h) in values.iter_mut().zip(&acts) {
            v.extend(h.iter().copied().filter(|&v| v > 0.0));
        }
    }
    values.into_iter().map(percentile_scale).collect()
}

/// The scale at which `1 − CLIP_FRACTION` of the positive `values` fit in 255 steps.
fn percentile_scale(mut values: Vec<f32>) -> f32 {
    if values.is_empty() {
        return 1.0 / 255.0;
    }
    let rank = ((values.len() as f64) * (1.0 - CLIP_FRACTION)) as usize;
    let rank = rank.min(values.len() - 1);
    let (_, &mut threshold, _) = values.select_nth_unstable_by(rank, f32::total_cmp);
    threshold.max(f32::MIN_POSITIVE) / 255.0
}

/// Per-row symmetric scales and integer values (±`width.levels()`) of a row-major matrix given by
/// `weight(row, col)`.
///
/// int8 rows use their largest magnitude as the range. int4 has only 15 values, where one outlier
/// weight would cost all the others their precision: its range is clipped where the row's squared
/// rounding error is least (tried from the whole range down to half of it).
fn quantize_rows(
    rows: usize,
    cols: usize,
    width: Width,
    weight: impl Fn(usize, usize) -> f32 + Sync,
) -> (Vec<f32>, Vec<i8>) {
    let levels = width.levels();
    let clips: &[f32] = match width {
        Width::Int8 => &[1.0],
        Width::Int4 => &[1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5],
    };
    let round = |w: f32, scale: f32| (w / scale).round().clamp(-levels, levels);
    let quantized: Vec<(f32, Vec<i8>, bool)> = (0..rows)
        .into_par_iter()
        .map(|r| {
            let row: Vec<f32> = (0..cols).map(|c| weight(r, c)).collect();
            let max = row.iter().map(|w| w.abs()).fold(0.0f32, f32::max);
            // A dead unit (all weights zero) still needs a positive scale (replaced below).
            let candidates = clips
                .iter()
                .map(|clip| (max * clip / levels).max(f32::MIN_POSITIVE));
            // Each candidate's squared rounding error, in one vectorizable pass (rounding to
            // nearest by the 1.5 · 2^23 trick: the values are far below 2^22).
            let error = |scale: f32| -> f32 {
                let inv = 1.0 / scale;
                let nearest = |x: f32| (x + 12_582_912.0) - 12_582_912.0;
                row.iter()
                    .map(|&w| (w - nearest(w * inv).clamp(-levels, levels) * scale).powi(2))
                    .sum()
            };
            let scale = if clips.len() == 1 {
                candidates.clone().next().unwrap_or(f32::MIN_POSITIVE)
            } else {
                candidates
                    .map(|scale| (error(scale), scale))
                    .fold((f32::INFINITY, f32::MIN_POSITIVE), |best, c| {
                        if c.0 < best.0 { c } else { best }
                    })
                    .1
            };
            (
                scale,
                row.iter().map(|&w| round(w, scale) as i8).collect(),
                max == 0.0,
            )
        })
        .collect();
    // A dead unit's weights are all zero whatever its scale, which then only sets its bias's
    // step and its requantization factor: the layer's largest live scale keeps both in range
    // (a unit pruned away entirely is one; 1/levels if every unit is).
    let live_max = quantized
        .iter()
        .filter(|(_, _, dead)| !dead)
        .map(|(s, _, _)| *s)
        .reduce(f32::max)
        .unwrap_or(1.0 / levels);
    let scales = quantized
        .iter()
        .map(|&(s, _, dead)| if dead { live_max } else { s })
        .collect();
    let q = quantized.into_iter().flat_map(|(_, q, _)| q).collect();
    (scales, q)
}

/// Quantizes `net` to `widths`, calibrating the hidden scales on `calibration`.
pub fn quantize(
    net: &Mlp,
    calibration: &Dataset,
    widths: impl Into<LayerWidths>,
) -> Result<QuantWeights> {
    quantize_with_scales(net, &calibrate_hidden_scales(net, calibration), widths)
}

/// Quantizes `net` to `width` with given hidden activation scales, one per hidden layer
/// (quantization-aware training fixes them when it starts, so that what it trains is what is
/// exported).
pub fn quantize_with_scales(
    net: &Mlp,
    act_scales: &[f32],
    layer_widths: impl Into<LayerWidths>,
) -> Result<QuantWeights> {
    let layer_widths = layer_widths.into();
    let widths = net.widths();
    let n = widths.len() - 1;
    anyhow::ensure!(
        act_scales.len() == n - 1,
        "{} activation scales for {} hidden layers",
        act_scales.len(),
        n - 1
    );
    let mut layers = Vec::with_capacity(n);
    for l in 0..n {
        let (inputs, outputs) = (widths[l], widths[l + 1]);
        let width = if l + 1 == n {
            layer_widths.output
        } else {
            layer_widths.width
        };
        let (w_scale, w) = match l {
            0 => quantize_rows(outputs, inputs, width, |j, k| net.w1[(j, k)]),
            _ if l + 1 == n => quantize_rows(outputs, inputs, width, |c, j| net.w2[(j, c)]),
            _ => {
                let d = &net.middle[l - 1];
                quantize_rows(outputs, inputs, width, |j, k| d.w[(j, k)])
            }
        };
        let bias_f32 = match l {
            0 => &net.b1,
            _ if l + 1 == n => &net.b2,
            _ => &net.middle[l - 1].b,
        };
        // The accumulator's real step per output: the first layer's inputs are pixels / 255.
        let acc_scale = |j: usize| match l {
            0 => f64::from(w_scale[j]) / 255.0,
            _ => f64::from(act_scales[l - 1]) * f64::from(w_scale[j]),
        };
        let bias = (0..outputs)
            .map(|j| round_i32(f64::from(bias_f32[j]) / acc_scale(j)))
            .collect();
        let act_scale = act_scales.get(l).copied().filter(|_| l + 1 < n);
        let (mut multiplier, mut shift) = (Vec::new(), Vec::new());
        if let Some(act) = act_scale {
            for (j, scale) in w_scale.iter().enumerate() {
                let (m, s) =
                    quantize_multiplier(acc_scale(j) / f64::from(act)).ok_or_else(|| {
                        anyhow!(
                            "layer {}, unit {j}: requantization factor out of range (weight scale \
                         {scale}, activation scale {act})",
                            l + 1
                        )
                    })?;
                multiplier.push(m);
                shift.push(s);
            }
        }
        layers.push(QuantLayer {
            width,
            inputs,
            outputs,
            act_scale,
            w_scale,
            bias,
            multiplier,
            shift,
            w,
        });
    }
    Ok(QuantWeights {
        width: layer_widths.width,
        layers,
    })
}

fn round_i32(v: f64) -> i32 {
    v.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

/// An upper bound of the bytes of any model file (f32 or integer) of a network of these widths
/// (inputs, hidden layers, classes): for checking free space before training.
pub fn model_bytes_bound(widths: &[usize]) -> u64 {
    let padded = |n: usize| n.div_ceil(16) * 16;
    let per_layer: usize = widths
        .windows(2)
        .map(|io| 4 * padded(io[1]) * (io[0].div_ceil(4) * 4 + 1) + 16 * padded(io[1]) + 256)
        .sum();
    (per_layer + 4096) as u64
}

/// Whether a layer is written block-sparse: when at least a quarter of its weight tiles (16 rows
/// × 4 inputs) are all zero, as in a pruned layer; a trained dense layer has none.
fn stores_sparse(p: &write::QuantLayerParts<'_>) -> bool {
    let dense = p.outputs.div_ceil(16) * p.inputs.div_ceil(4);
    4 * write::kept_tiles(p) <= 3 * dense
}

/// The integer model file, each layer at its width; pruned layers block-sparse.
pub fn encode_quant(q: &QuantWeights) -> Result<Vec<u8>> {
    let parts: Vec<write::QuantLayerParts<'_>> = q
        .layers
        .iter()
        .map(|l| write::QuantLayerParts {
            weights: l.width.weights(),
            inputs: l.inputs,
            outputs: l.outputs,
            act_scale: l.act_scale.unwrap_or(0.0),
            w_scale: &l.w_scale,
            bias: &l.bias,
            multiplier: &l.multiplier,
            shift: &l.shift,
            w: &l.w,
            sparse: false,
        })
        .map(|p| write::QuantLayerParts {
            sparse: stores_sparse(&p),
            ..p
        })
        .collect();
    let encode = || -> Result<Vec<u8>, infer_core::FormatError> {
        let mut bytes = vec![0u8; write::quant_len(&parts)?];
        write::quant(&parts, &mut bytes)?;
        Ok(bytes)
    };
    encode().with_context(|| format!("cannot encode the {} model", q.width.name()))
}

/// The f32 model file: every layer input-major, as the file stores it (nalgebra's column-major
/// `outputs × inputs` matrices already are; `w2`, `hidden × classes`, is transposed).
pub fn encode_f32(net: &Mlp) -> Result<Vec<u8>> {
    let widths = net.widths();
    let mut weights: Vec<Vec<f32>> = vec![net.w1.as_slice().to_vec()];
    let mut biases: Vec<&[f32]> = vec![net.b1.as_slice()];
    for d in &net.middle {
        weights.push(d.w.as_slice().to_vec());
        biases.push(d.b.as_slice());
    }
    weights.push(net.w2.transpose().as_slice().to_vec());
    biases.push(net.b2.as_slice());
    let parts: Vec<write::F32LayerParts<'_>> = widths
        .windows(2)
        .zip(weights.iter().zip(&biases))
        .map(|(io, (w, b))| write::F32LayerParts {
            inputs: io[0],
            outputs: io[1],
            bias: b,
            w,
        })
        .collect();
    let encode = || -> Result<Vec<u8>, infer_core::FormatError> {
        let mut bytes = vec![0u8; write::f32_len(&parts)?];
        write::f32(&parts, &mut bytes)?;
        Ok(bytes)
    };
    encode().context("cannot encode the f32 model")
}
