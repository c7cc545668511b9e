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
use infer_core::{CLASSES, HIDDEN, INPUTS};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// `len` values: `pattern` repeated (the type's default if empty), then `overrides` placed.
#[derive(Debug, Arbitrary)]
struct Fill<T> {
    pattern: Vec<T>,
    overrides: Vec<(u32, T)>,
}

impl<T: Copy + Default> Fill<T> {
    fn expand(&self, len: usize) -> Vec<T> {
        let mut v: Vec<T> = (0..len)
            .map(|i| match self.pattern.len() {
                0 => T::default(),
                n => self.pattern[i % n],
            })
            .collect();
        for &(i, value) in &self.overrides {
            if let Some(slot) = v.get_mut(i as usize % len) {
                *slot = value;
            }
        }
        v
    }
}

#[derive(Debug, Arbitrary)]
struct Quant {
    int4: bool,
    hidden_scale: f32,
    w1_scale: Fill<f32>,
    b1: Fill<i32>,
    m1: Fill<i32>,
    s1: Fill<u8>,
    w2_scale: Fill<f32>,
    b2: Fill<i32>,
    w1: Fill<i8>,
    w2: Fill<i8>,
}

#[derive(Debug, Arbitrary)]
struct Float {
    w1: Fill<f32>,
    b1: Fill<f32>,
    w2: Fill<f32>,
    b2: Fill<f32>,
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
    let image: [u8; INPUTS] = input.image.expand(INPUTS).try_into().unwrap();
    let images = [image, [0; INPUTS], [255; INPUTS]];
    // 64-byte aligned, as the trainer and the firmware hold a model.
    let mut words = vec![[0u64; 8]; write::MAX_F32_LEN.div_ceil(64) + 1];
    let buf = bytemuck::cast_slice_mut::<[u64; 8], u8>(&mut words);
    // One spare line, so the file can be moved off its alignment.
    let buf = &mut buf[..write::MAX_F32_LEN.div_ceil(64) * 64];
    match &input.parts {
        Parts::Quant(q) => {
            let (w1_scale, b1, m1, s1) = (
                q.w1_scale.expand(HIDDEN),
                q.b1.expand(HIDDEN),
                q.m1.expand(HIDDEN),
                q.s1.expand(HIDDEN),
            );
            let (w2_scale, b2) = (q.w2_scale.expand(CLASSES), q.b2.expand(CLASSES));
            let (w1, w2) = (q.w1.expand(HIDDEN * INPUTS), q.w2.expand(CLASSES * HIDDEN));
            let parts = write::QuantParts {
                hidden_scale: q.hidden_scale,
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
            let (w1, b1) = (f.w1.expand(INPUTS * HIDDEN), f.b1.expand(HIDDEN));
            let (w2, b2) = (f.w2.expand(CLASSES * HIDDEN), f.b2.expand(CLASSES));
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
