//! Model *parts* written by infer-core's own writer, then loaded: the mutations land behind a
//! right header and CRC, on the values validation is there for (scales, requantization
//! multipliers and shifts, biases, weights at their extremes). Optionally a few bytes of the
//! written file are then patched (with the CRC re-sealed or not) or the file is cut short, and
//! the bytes are offered to every model kind, aligned and not. Whatever loads must predict the
//! same on every kernel, in batches and one by one, and never answer NaN or infinity, for the
//! all-ink and all-blank images as well as the generated one.
#![no_main]

use fuzz::check_loads;
use infer_core::format::{FormatError, checksum, write};
use infer_core::quant::SHIFTS;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// A generated value: mostly one the format accepts (`Fit`, mapped into its valid range, so that
/// whole models load and reach the forward pass), sometimes any bit pattern (`Any`, at the edges
/// validation guards).
trait Gene: Copy {
    type Value: Copy;
    fn value(self) -> Self::Value;
}

/// A positive scale: 2^−40 … 2^40, the range the format accepts.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Scale {
    Fit(u16),
    Any(f32),
}
impl Gene for Scale {
    type Value = f32;
    fn value(self) -> f32 {
        match self {
            Scale::Fit(v) => (f32::from(v % 8001) / 100.0 - 40.0).exp2(),
            Scale::Any(x) => x,
        }
    }
}

/// A requantization multiplier: positive.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Multiplier {
    Fit(u32),
    Any(i32),
}
impl Gene for Multiplier {
    type Value = i32;
    fn value(self) -> i32 {
        match self {
            Multiplier::Fit(v) => (v % i32::MAX as u32) as i32 + 1,
            Multiplier::Any(x) => x,
        }
    }
}

/// A requantization shift: one of `SHIFTS`.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Shift {
    Fit(u8),
    Any(u8),
}
impl Gene for Shift {
    type Value = u8;
    fn value(self) -> u8 {
        let (lo, hi) = (*SHIFTS.start(), *SHIFTS.end());
        match self {
            Shift::Fit(v) => lo + v % (hi - lo + 1),
            Shift::Any(x) => x,
        }
    }
}

/// A weight: −8…7 fits both widths.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Weight {
    Fit(u8),
    Any(i8),
}
impl Gene for Weight {
    type Value = i8;
    fn value(self) -> i8 {
        match self {
            Weight::Fit(v) => (v % 16) as i8 - 8,
            Weight::Any(x) => x,
        }
    }
}

/// An f32 weight or bias: a trained network's size (±8), or any bit pattern.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Real {
    Fit(i16),
    Any(f32),
}
impl Gene for Real {
    type Value = f32;
    fn value(self) -> f32 {
        match self {
            Real::Fit(v) => f32::from(v) / 4096.0,
            Real::Any(x) => x,
        }
    }
}

impl Gene for i32 {
    type Value = i32;
    fn value(self) -> i32 {
        self
    }
}

impl Gene for u8 {
    type Value = u8;
    fn value(self) -> u8 {
        self
    }
}

/// `len` values: `pattern` repeated (`fallback` if empty), then `overrides` placed.
#[derive(Debug, Arbitrary)]
struct Fill<G> {
    pattern: Vec<G>,
    overrides: Vec<(u32, G)>,
}

impl<G: Gene> Fill<G> {
    fn expand(&self, len: usize, fallback: G::Value) -> Vec<G::Value> {
        if len == 0 {
            return Vec::new();
        }
        let mut v: Vec<G::Value> = (0..len)
            .map(|i| match self.pattern.len() {
                0 => fallback,
                n => self.pattern[i % n].value(),
            })
            .collect();
        for &(i, gene) in &self.overrides {
            if let Some(slot) = v.get_mut(i as usize % len) {
                *slot = gene.value();
            }
        }
        v
    }
}

/// One integer layer: its width and its parts.
#[derive(Debug, Arbitrary)]
struct QuantLayer {
    int4: bool,
    /// Block-sparse, its tiles (16 rows × 4 inputs) kept by this seed (its low 4 bits the
    /// density in 1/16ths): some zeroed, the layer written sparse.
    sparse: Option<u64>,
    outputs: u16,
    act_scale: Scale,
    w_scale: Fill<Scale>,
    bias: Fill<i32>,
    multiplier: Fill<Multiplier>,
    shift: Fill<Shift>,
    w: Fill<Weight>,
}

#[derive(Debug, Arbitrary)]
struct FloatLayer {
    outputs: u16,
    w: Fill<Real>,
    bias: Fill<Real>,
}

/// A chain of 1–4 layers (the format allows 8) after its input width: widths 1–1100 (past one
/// gathered list), the classes up to 70 (past the forward pass's bound, which must be refused).
#[derive(Debug, Arbitrary)]
enum Parts {
    Quant(u16, Vec<QuantLayer>),
    Float(u16, Vec<FloatLayer>),
}

/// The widths of a chain: `inputs`, then each layer's outputs.
fn widths(inputs: u16, outputs: impl ExactSizeIterator<Item = u16>) -> Vec<usize> {
    let n = outputs.len();
    let mut w = vec![1 + usize::from(inputs) % 1100];
    for (i, o) in outputs.enumerate() {
        w.push(1 + usize::from(o) % if i + 1 == n { 70 } else { 1100 });
    }
    w
}

/// What happens to the written file before it is loaded.
#[derive(Debug, Arbitrary)]
struct Damage {
    patches: Vec<(u32, u8)>,
    reseal: bool,
    cut: Option<u32>,
    misalign: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    parts: Parts,
    image: Fill<u8>,
    damage: Option<Damage>,
}

/// `w` (`rows × k`, row-major) with the tiles a seed drops zeroed.
fn pruned(mut w: Vec<i8>, k: usize, seed: Option<u64>) -> Vec<i8> {
    let Some(seed) = seed else { return w };
    let density = seed & 15;
    for (i, v) in w.iter_mut().enumerate() {
        let tile = (i / k / 16) as u64 * 1_000_003 + (i % k / 4) as u64;
        let h = (tile ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60;
        if h >= density {
            *v = 0;
        }
    }
    w
}

fuzz_target!(|input: Input| {
    let generated = |n: usize| input.image.expand(n, 0);
    let images: [&dyn Fn(usize) -> Vec<u8>; 3] = [&generated, &|n| vec![0; n], &|n| vec![255; n]];
    let written = match &input.parts {
        Parts::Quant(inputs, layers) => {
            let layers = &layers[..layers.len().min(4)];
            if layers.is_empty() {
                return;
            }
            let w = widths(*inputs, layers.iter().map(|l| l.outputs));
            // The fallbacks load: zeros with unit scales and a mid-range requantization.
            let values: Vec<_> = layers
                .iter()
                .zip(w.windows(2))
                .enumerate()
                .map(|(i, (l, io))| {
                    let (k, r) = (io[0], io[1]);
                    let hidden = if i + 1 == layers.len() { 0 } else { r };
                    (
                        l.w_scale.expand(r, 1.0),
                        l.bias.expand(r, 0),
                        l.multiplier.expand(hidden, 1 << 30),
                        l.shift.expand(hidden, 40),
                        pruned(l.w.expand(r * k, 0), k, l.sparse),
                    )
                })
                .collect();
            let parts: Vec<_> = layers
                .iter()
                .zip(w.windows(2))
                .zip(&values)
                .map(|((l, io), v)| write::QuantLayerParts {
                    weights: if l.int4 {
                        infer_core::Weights::Int4
                    } else {
                        infer_core::Weights::Int8
                    },
                    inputs: io[0],
                    outputs: io[1],
                    act_scale: l.act_scale.value(),
                    w_scale: &v.0,
                    bias: &v.1,
                    multiplier: &v.2,
                    shift: &v.3,
                    w: &v.4,
                    sparse: l.sparse.is_some(),
                })
                .collect();
            encoded(write::quant_len(&parts), |buf| write::quant(&parts, buf))
        }
        Parts::Float(inputs, layers) => {
            let layers = &layers[..layers.len().min(4)];
            if layers.is_empty() {
                return;
            }
            let w = widths(*inputs, layers.iter().map(|l| l.outputs));
            let values: Vec<_> = layers
                .iter()
                .zip(w.windows(2))
                .map(|(l, io)| (l.w.expand(io[0] * io[1], 0.0), l.bias.expand(io[1], 0.0)))
                .collect();
            let parts: Vec<_> = w
                .windows(2)
                .zip(&values)
                .map(|(io, v)| write::F32LayerParts {
                    inputs: io[0],
                    outputs: io[1],
                    bias: &v.1,
                    w: &v.0,
                })
                .collect();
            encoded(write::f32_len(&parts), |buf| write::f32(&parts, buf))
        }
    };
    if let Some((mut words, n)) = written {
        load_all(&mut words, n, input.damage.as_ref(), &images);
    }
});

/// The file the writer makes (`len` bytes, or the error it gives) in 64-byte-aligned memory, as
/// the trainer and the firmware hold a model, with one spare line so the file can be moved off
/// its alignment; with the bytes written.
fn encoded(
    len: Result<usize, FormatError>,
    write: impl FnOnce(&mut [u8]) -> Result<usize, FormatError>,
) -> Option<(Vec<[u64; 8]>, usize)> {
    let len = len.ok()?;
    let mut words = vec![[0u64; 8]; len.div_ceil(64) + 1];
    let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    let n = write(buf.get_mut(..len)?).ok()?;
    Some((words, n))
}

/// The `n` written bytes in `words`, damaged as asked, given to every model kind.
fn load_all(
    words: &mut [[u64; 8]],
    n: usize,
    damage: Option<&Damage>,
    images: &[&dyn Fn(usize) -> Vec<u8>],
) {
    let buf = bytemuck::cast_slice_mut::<[u64; 8], u8>(words);
    let mut n = n;
    let mut start = 0;
    if let Some(d) = damage {
        for &(at, byte) in &d.patches {
            buf[at as usize % n] ^= byte;
        }
        if d.reseal && n >= 4 {
            let crc = checksum(&buf[..n - 4]);
            buf[n - 4..n].copy_from_slice(&crc.to_le_bytes());
        }
        if let Some(cut) = d.cut {
            n = cut as usize % (n + 1);
        }
        if d.misalign && n + 1 < buf.len() {
            buf.copy_within(..n, 1);
            start = 1;
        }
    }
    check_loads(&buf[start..start + n], images);
}
