//! Post-training quantization to infer-core's int8 model, and the model files of both kinds.
//!
//! Weights: symmetric int8 per output unit (`scale = max|w| / 127`). Biases: i32 at
//! `input scale × weight scale`. Hidden activations: u8 at a scale calibrated on training images
//! (see [`calibrate_hidden_scale`]), reached from the i32 accumulators by a fixed-point multiplier
//! per hidden unit. See `infer_core::quant` for the arithmetic the device runs.

use anyhow::{Context, Result, anyhow};
use infer_core::format::write;
use infer_core::quant::quantize_multiplier;
use infer_core::{CLASSES, HIDDEN, INPUTS};

use crate::idx::Dataset;
use crate::mlp::Mlp;
use crate::sparse::SparseBatch;
use crate::train::network_inputs;

/// Training images the hidden activation range is calibrated on (the first ones).
pub const CALIBRATION_IMAGES: usize = 10_000;

/// Fraction of calibration activations that may clip at 255: the top 0.001 % are outliers whose
/// range would cost every other activation precision.
const CLIP_FRACTION: f64 = 1e-5;

/// The int8 network, unpacked: what the file's sections hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Weights {
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
    let mut values: Vec<f32> = Vec::with_capacity(data.len() * HIDDEN / 2);
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

/// Per-row symmetric scales and int8 values of a row-major matrix given by `weight(row, col)`.
fn quantize_rows(
    rows: usize,
    cols: usize,
    weight: impl Fn(usize, usize) -> f32,
) -> (Vec<f32>, Vec<i8>) {
    let mut scales = Vec::with_capacity(rows);
    let mut q = vec![0i8; rows * cols];
    for r in 0..rows {
        let max = (0..cols).map(|c| weight(r, c).abs()).fold(0.0f32, f32::max);
        // A dead unit (all weights zero) still needs a positive scale.
        let scale = (max / 127.0).max(f32::MIN_POSITIVE);
        for c in 0..cols {
            q[r * cols + c] = (weight(r, c) / scale).round().clamp(-127.0, 127.0) as i8;
        }
        scales.push(scale);
    }
    (scales, q)
}

/// Quantizes `net` (784-512-10), calibrating the hidden scale on `calibration`.
pub fn quantize(net: &Mlp, calibration: &Dataset) -> Result<Int8Weights> {
    quantize_with_hidden_scale(net, calibrate_hidden_scale(net, calibration))
}

/// Quantizes `net` (784-512-10) with a given hidden activation scale (quantization-aware training
/// fixes it when it starts, so that what it trains is what is exported).
pub fn quantize_with_hidden_scale(net: &Mlp, hidden_scale: f32) -> Result<Int8Weights> {
    anyhow::ensure!(
        (net.w1.ncols(), net.w1.nrows(), net.w2.ncols()) == (INPUTS, HIDDEN, CLASSES),
        "only the {INPUTS}-{HIDDEN}-{CLASSES} network can be exported"
    );
    let (w1_scale, w1) = quantize_rows(HIDDEN, INPUTS, |j, k| net.w1[(j, k)]);
    let mut b1 = Vec::with_capacity(HIDDEN);
    let (mut m1, mut s1) = (Vec::with_capacity(HIDDEN), Vec::with_capacity(HIDDEN));
    for (j, &scale) in w1_scale.iter().enumerate() {
        let acc_scale = f64::from(scale) / 255.0;
        b1.push(round_i32(f64::from(net.b1[j]) / acc_scale));
        let (m, s) = quantize_multiplier(acc_scale / f64::from(hidden_scale)).ok_or_else(|| {
            anyhow!("hidden unit {j}: requantization factor out of range (weight scale {scale}, hidden scale {hidden_scale})")
        })?;
        m1.push(m);
        s1.push(s);
    }

    let (w2_scale, w2) = quantize_rows(CLASSES, HIDDEN, |c, j| net.w2[(j, c)]);
    let b2: Vec<i32> = (0..CLASSES)
        .map(|c| {
            round_i32(f64::from(net.b2[c]) / (f64::from(hidden_scale) * f64::from(w2_scale[c])))
        })
        .collect();
    Ok(Int8Weights {
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

/// The int8 model file.
pub fn encode_int8(q: &Int8Weights) -> Result<Vec<u8>> {
    let parts = write::QuantParts {
        hidden_scale: q.hidden_scale,
        w1_scale: &q.w1_scale,
        b1: &q.b1,
        m1: &q.m1,
        s1: &q.s1,
        w2_scale: &q.w2_scale,
        b2: &q.b2,
        w1: &q.w1,
        w2: &q.w2,
    };
    let mut bytes = vec![0u8; write::MAX_INT8_LEN];
    let len = write::int8(&parts, &mut bytes).context("cannot encode the int8 model")?;
    bytes.truncate(len);
    Ok(bytes)
}

/// The f32 model file. nalgebra's column-major storage already is the file's layout: `w1`
/// (`hidden × inputs`) is input-major, `w2` (`hidden × classes`) class-major.
pub fn encode_f32(net: &Mlp) -> Result<Vec<u8>> {
    let parts = write::F32Parts {
        w1: net.w1.as_slice(),
        b1: net.b1.as_slice(),
        w2: net.w2.as_slice(),
        b2: net.b2.as_slice(),
    };
    let mut bytes = vec![0u8; write::MAX_F32_LEN];
    let len = write::f32(&parts, &mut bytes).context("cannot encode the f32 model")?;
    bytes.truncate(len);
    Ok(bytes)
}
