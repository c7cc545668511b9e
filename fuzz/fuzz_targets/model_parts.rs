//! Model *parts* written by infer-core's own writer, then loaded: the mutations land behind a
//! right header and CRC, on the values validation is there for (scales, requantization
//! multipliers and shifts, biases, weights at their extremes). Optionally a few bytes of the
//! written file are then patched (with the CRC re-sealed or not) or the file is cut short, and
//! the bytes are offered to every model kind, aligned and not. Whatever loads must predict the
//! same on every kernel, in batches and one by one, and never answer NaN or infinity, for the
//! all-ink and all-blank images as well as the generated one.
#![no_main]

use fuzz::check_loads;
use infer_core::format::{checksum, write};
use infer_core::quant::SHIFTS;
use infer_core::{CLASSES, HIDDEN, INPUTS};
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

#[derive(Debug, Arbitrary)]
struct Quant {
    int4: bool,
    hidden_scale: Scale,
    w1_scale: Fill<Scale>,
    b1: Fill<i32>,
    m1: Fill<Multiplier>,
    s1: Fill<Shift>,
    w2_scale: Fill<Scale>,
    b2: Fill<i32>,
    w1: Fill<Weight>,
    w2: Fill<Weight>,
}

#[derive(Debug, Arbitrary)]
struct Float {
    w1: Fill<Real>,
    b1: Fill<Real>,
    w2: Fill<Real>,
    b2: Fill<Real>,
}

#[derive(Debug, Arbitrary)]
enum Parts {
    Quant(Quant),
    Float(Float),
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

fuzz_target!(|input: Input| {
    let image: [u8; INPUTS] = input.image.expand(INPUTS, 0).try_into().unwrap();
    let images = [image, [0; INPUTS], [255; INPUTS]];
    // 64-byte aligned, as the trainer and the firmware hold a model.
    let mut words = vec![[0u64; 8]; write::MAX_F32_LEN.div_ceil(64) + 1];
    let buf = bytemuck::cast_slice_mut::<[u64; 8], u8>(&mut words);
    // One spare line, so the file can be moved off its alignment.
    let buf = &mut buf[..write::MAX_F32_LEN.div_ceil(64) * 64];
    match &input.parts {
        Parts::Quant(q) => {
            // The fallbacks load: a model of zeros with unit scales and a mid-range requantization.
            let (w1_scale, b1, m1, s1) = (
                q.w1_scale.expand(HIDDEN, 1.0),
                q.b1.expand(HIDDEN, 0),
                q.m1.expand(HIDDEN, 1 << 30),
                q.s1.expand(HIDDEN, 40),
            );
            let (w2_scale, b2) = (q.w2_scale.expand(CLASSES, 1.0), q.b2.expand(CLASSES, 0));
            let (w1, w2) = (
                q.w1.expand(HIDDEN * INPUTS, 0),
                q.w2.expand(CLASSES * HIDDEN, 0),
            );
            let parts = write::QuantParts {
                hidden_scale: q.hidden_scale.value(),
                w1_scale: &w1_scale,
                b1: &b1,
                m1: &m1,
                s1: &s1,
                w2_scale: &w2_scale,
                b2: &b2,
                w1: &w1,
                w2: &w2,
            };
            let written = if q.int4 {
                write::int4(&parts, buf)
            } else {
                write::int8(&parts, buf)
            };
            let Ok(n) = written else { return };
            load_all(&mut words, n, input.damage.as_ref(), &images);
        }
        Parts::Float(f) => {
            let (w1, b1) = (f.w1.expand(INPUTS * HIDDEN, 0.0), f.b1.expand(HIDDEN, 0.0));
            let (w2, b2) = (
                f.w2.expand(CLASSES * HIDDEN, 0.0),
                f.b2.expand(CLASSES, 0.0),
            );
            let parts = write::F32Parts {
                w1: &w1,
                b1: &b1,
                w2: &w2,
                b2: &b2,
            };
            let Ok(n) = write::f32(&parts, buf) else {
                return;
            };
            load_all(&mut words, n, input.damage.as_ref(), &images);
        }
    }
});

/// The `n` written bytes in `words`, damaged as asked, given to every model kind.
fn load_all(words: &mut [[u64; 8]], n: usize, damage: Option<&Damage>, images: &[[u8; INPUTS]]) {
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
