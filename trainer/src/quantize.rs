//! Post-training quantization to infer-core's integer models (int8 or int4 weights), and the model
//! files of every kind.
//!
//! Weights: symmetric per output unit, int8 (`scale = max|w| / 127`) or int4 (`max|w| / 7`, the
//! values −7…7). Biases: i32 at
//! `input scale × weight scale`. Hidden activations: u8 at a scale calibrated on training images
//! (see [`calibrate_hidden_scale`]), reached from the i32 accumulators by a fixed-point multiplier
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

/// The integer network, unpacked: what the file's sections hold.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantWeights {
    /// The weights' width.
    pub width: Width,
    /// Real value of one step of the u8 hidden activations.
    pub hidden_scale: f32,
    /// Per hidden unit.
    pub w1_scale: Vec<f32>,
    /// Per hidden unit, at scale `w1_scale / 255`.
    pub b1: Vec<i32>,
    /// Requantization multiplier per hidden unit.
    pub m1: Vec<i32>,
    /// Requantization shift per hidden unit.
    pub s1: Vec<u8>,
    /// Per class.
    pub w2_scale: Vec<f32>,
    /// Per class, at scale `hidden_scale · w2_scale`.
    pub b2: Vec<i32>,
    /// `HIDDEN × INPUTS`, row-major (infer-core's writer lays it out for the kernels).
    pub w1: Vec<i8>,
    /// `CLASSES × HIDDEN`, row-major.
    pub w2: Vec<i8>,
}

/// The hidden activation value that `1 − CLIP_FRACTION` of the activations on `data` stay below.
pub fn calibrate_hidden_scale(net: &Mlp, data: &Dataset) -> f32 {
    const CHUNK: usize = 1000;
    let inputs = network_inputs(data);
    let all: Vec<usize> = (0..data.len()).collect();
    let mut values: Vec<f32> = Vec::with_capacity(data.len() * net.w1.nrows() / 2);
    for chunk in all.chunks(CHUNK) {
        let h = net.hidden(&SparseBatch::new(inputs.gather(chunk)));
        values.extend(h.iter().copied().filter(|&v| v > 0.0));
    }
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
    let quantized: Vec<(f32, Vec<i8>)> = (0..rows)
        .into_par_iter()
        .map(|r| {
            let row: Vec<f32> = (0..cols).map(|c| weight(r, c)).collect();
            let max = row.iter().map(|w| w.abs()).fold(0.0f32, f32::max);
            // A dead unit (all weights zero) still needs a positive scale.
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
            (scale, row.iter().map(|&w| round(w, scale) as i8).collect())
        })
        .collect();
    let scales = quantized.iter().map(|(s, _)| *s).collect();
    let q = quantized.into_iter().flat_map(|(_, q)| q).collect();
    (scales, q)
}

/// Quantizes `net` to `width`, calibrating the hidden scale on `calibration`.
pub fn quantize(net: &Mlp, calibration: &Dataset, width: Width) -> Result<QuantWeights> {
    quantize_with_hidden_scale(net, calibrate_hidden_scale(net, calibration), width)
}

/// Quantizes `net` to `width` with a given hidden activation scale
/// (quantization-aware training fixes it when it starts, so that what it trains is what is
/// exported).
pub fn quantize_with_hidden_scale(
    net: &Mlp,
    hidden_scale: f32,
    width: Width,
) -> Result<QuantWeights> {
    let (inputs, hidden, classes) = (net.w1.ncols(), net.w1.nrows(), net.w2.ncols());
    let (w1_scale, w1) = quantize_rows(hidden, inputs, width, |j, k| net.w1[(j, k)]);
    let mut b1 = Vec::with_capacity(hidden);
    let (mut m1, mut s1) = (Vec::with_capacity(hidden), Vec::with_capacity(hidden));
    for (j, &scale) in w1_scale.iter().enumerate() {
        let acc_scale = f64::from(scale) / 255.0;
        b1.push(round_i32(f64::from(net.b1[j]) / acc_scale));
        let (m, s) = quantize_multiplier(acc_scale / f64::from(hidden_scale)).ok_or_else(|| {
            anyhow!("hidden unit {j}: requantization factor out of range (weight scale {scale}, hidden scale {hidden_scale})")
        })?;
        m1.push(m);
        s1.push(s);
    }

    let (w2_scale, w2) = quantize_rows(classes, hidden, width, |c, j| net.w2[(j, c)]);
    let b2: Vec<i32> = (0..classes)
        .map(|c| {
            round_i32(f64::from(net.b2[c]) / (f64::from(hidden_scale) * f64::from(w2_scale[c])))
        })
        .collect();
    Ok(QuantWeights {
        width,
        hidden_scale,
        w1_scale,
        b1,
        m1,
        s1,
        w2_scale,
        b2,
        w1,
        w2,
    })
}

fn round_i32(v: f64) -> i32 {
    v.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

/// An upper bound of the bytes of any model file (f32 or integer) of an `inputs`-`hidden`-`classes`
/// network: for checking free space before training.
pub fn model_bytes_bound(inputs: usize, hidden: usize, classes: usize) -> u64 {
    let padded = |n: usize| n.div_ceil(16) * 16;
    let params =
        padded(hidden) * (inputs.div_ceil(4) * 4 + 1) + padded(classes) * (padded(hidden) + 1);
    (4 * params + 16 * padded(hidden) + 4096) as u64
}

/// The int8 or int4 model file, by `q`'s width.
pub fn encode_quant(q: &QuantWeights) -> Result<Vec<u8>> {
    let weights = q.width.weights();
    let (hidden, inputs, classes) = (q.b1.len(), q.w1.len() / q.b1.len().max(1), q.b2.len());
    let parts = [
        write::QuantLayerParts {
            weights,
            inputs,
            outputs: hidden,
            act_scale: q.hidden_scale,
            w_scale: &q.w1_scale,
            bias: &q.b1,
            multiplier: &q.m1,
            shift: &q.s1,
            w: &q.w1,
        },
        write::QuantLayerParts {
            weights,
            inputs: hidden,
            outputs: classes,
            act_scale: 0.0,
            w_scale: &q.w2_scale,
            bias: &q.b2,
            multiplier: &[],
            shift: &[],
            w: &q.w2,
        },
    ];
    let encode = || -> Result<Vec<u8>, infer_core::FormatError> {
        let mut bytes = vec![0u8; write::quant_len(&parts)?];
        write::quant(&parts, &mut bytes)?;
        Ok(bytes)
    };
    encode().with_context(|| format!("cannot encode the {} model", q.width.name()))
}

/// The f32 model file. nalgebra's column-major storage of `w1` (`hidden × inputs`) already is
/// the file's input-major layout; `w2` (`hidden × classes`) is too.
pub fn encode_f32(net: &Mlp) -> Result<Vec<u8>> {
    let (inputs, hidden, classes) = (net.w1.ncols(), net.w1.nrows(), net.w2.ncols());
    let w2: Vec<f32> = net.w2.transpose().as_slice().to_vec();
    let parts = [
        write::F32LayerParts {
            inputs,
            outputs: hidden,
            bias: net.b1.as_slice(),
            w: net.w1.as_slice(),
        },
        write::F32LayerParts {
            inputs: hidden,
            outputs: classes,
            bias: net.b2.as_slice(),
            w: &w2,
        },
    ];
    let encode = || -> Result<Vec<u8>, infer_core::FormatError> {
        let mut bytes = vec![0u8; write::f32_len(&parts)?];
        write::f32(&parts, &mut bytes)?;
        Ok(bytes)
    };
    encode().context("cannot encode the f32 model")
}
