//! On-the-fly augmentation of digits for the `best` recipe: each training image is redrawn every
//! epoch with a small random affine transform (rotation, scale, shear, shift), an elastic
//! distortion (Simard, Steinkraus & Platt, 2003) and now and then a thicker or thinner stroke, so
//! the network sees the pens, slants and sizes of handwriting unlike MNIST's.
//!
//! Every image's draw is seeded by (run seed, epoch, image), so a run is the same whatever the
//! thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::idx::PIXELS;

/// Side of an MNIST image.
const SIDE: usize = 28;

/// How strongly digits are distorted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Largest rotation either way, degrees.
    pub rotation_degrees: f32,
    /// Largest relative change of size either way (0.1: 90 %–110 %).
    pub scale: f32,
    /// Largest horizontal shear either way (x += shear · y).
    pub shear: f32,
    /// Largest shift either way, pixels.
    pub shift: f32,
    /// Largest elastic displacement, pixels (0: none).
    pub elastic: f32,
    /// Chance of a thicker stroke, and again of a thinner one.
    pub stroke: f64,
}

impl Augment {
    /// The distortions the `best` recipe trains with.
    pub const BEST: Augment = Augment {
        rotation_degrees: 12.0,
        scale: 0.12,
        shear: 0.2,
        shift: 2.5,
        elastic: 2.0,
        stroke: 0.1,
    };
}

/// Smooth random displacement fields, made once per run and drawn from for every image (making a
/// fresh one per image would cost more than the training step).
#[derive(Debug, Clone)]
pub struct Fields {
    /// `count × 2 × PIXELS` displacements (x then y), each field at most 1 pixel in size.
    fields: Vec<f32>,
}

impl Fields {
    /// `count` fields of uniform noise smoothed by a Gaussian of `sigma` pixels.
    pub fn new(count: usize, sigma: f32, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xE1A5_71C0);
        let radius = (3.0 * sigma).ceil() as isize;
        let kernel: Vec<f32> = (-radius..=radius)
            .map(|d| (-((d * d) as f32) / (2.0 * sigma * sigma)).exp())
            .collect();
        let mut fields = Vec::with_capacity(count * 2 * PIXELS);
        for _ in 0..2 * count {
            let noise: Vec<f32> = (0..PIXELS).map(|_| rng.random_range(-1.0..1.0)).collect();
            let smooth = blur(&blur(&noise, &kernel, radius, 1), &kernel, radius, SIDE);
            let max = smooth.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
            fields.extend(smooth.iter().map(|v| v / max));
        }
        Self { fields }
    }

    fn count(&self) -> usize {
        self.fields.len() / (2 * PIXELS)
    }

    fn field(&self, i: usize) -> (&[f32], &[f32]) {
        let f = &self.fields[2 * PIXELS * i..][..2 * PIXELS];
        f.split_at(PIXELS)
    }
}

/// A 1-D Gaussian blur along rows (`step` 1) or columns (`step` 28), zero outside the image.
fn blur(image: &[f32], kernel: &[f32], radius: isize, step: usize) -> Vec<f32> {
    let mut out = vec![0.0; PIXELS];
    for (i, o) in out.iter_mut().enumerate() {
        let (pos, base) = if step == 1 {
            (i % SIDE, i - i % SIDE)
        } else {
            (i / SIDE, i % SIDE)
        };
        for (t, &k) in kernel.iter().enumerate() {
            let p = pos as isize + t as isize - radius;
            if (0..SIDE as isize).contains(&p) {
                *o += k * image[base + p as usize * step];
            }
        }
    }
    out
}

/// A fresh distorted copy of `image`, drawn by `rng`.
pub fn distort(image: &[u8], aug: &Augment, fields: &Fields, rng: &mut impl Rng) -> [u8; PIXELS] {
    let angle = rng.random_range(-1.0..=1.0) * aug.rotation_degrees.to_radians();
    let scale = 1.0 + rng.random_range(-1.0..=1.0) * aug.scale;
    let shear = rng.random_range(-1.0..=1.0) * aug.shear;
    let (tx, ty) = (
        rng.random_range(-1.0..=1.0) * aug.shift,
        rng.random_range(-1.0..=1.0) * aug.shift,
    );
    // Output → source: the inverse of (rotate · shear · scale), about the image's centre.
    let (sin, cos) = angle.sin_cos();
    let forward = [
        [cos * scale, (cos * shear - sin) * scale],
        [sin * scale, (sin * shear + cos) * scale],
    ];
    let det = forward[0][0] * forward[1][1] - forward[0][1] * forward[1][0];
    let inverse = [
        [forward[1][1] / det, -forward[0][1] / det],
        [-forward[1][0] / det, forward[0][0] / det],
    ];
    let strength = rng.random_range(0.0..=aug.elastic);
    let (fx, fy) = fields.field(rng.random_range(0..fields.count().max(1)));

    let centre = (SIDE as f32 - 1.0) / 2.0;
    let mut out = [0u8; PIXELS];
    for (i, o) in out.iter_mut().enumerate() {
        let (x, y) = (
            (i % SIDE) as f32 - centre - tx,
            (i / SIDE) as f32 - centre - ty,
        );
        let sx = inverse[0][0] * x + inverse[0][1] * y + centre + strength * fx[i];
        let sy = inverse[1][0] * x + inverse[1][1] * y + centre + strength * fy[i];
        *o = bilinear(image, sx, sy);
    }
    let stroke: f64 = rng.random();
    if stroke < aug.stroke {
        out = morph(&out, u8::max);
    } else if stroke < 2.0 * aug.stroke {
        out = morph(&out, u8::min);
    }
    out
}

/// The image at a fractional position, zero outside.
fn bilinear(image: &[u8], x: f32, y: f32) -> u8 {
    let (x0, y0) = (x.floor(), y.floor());
    let (ax, ay) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= SIDE as f32 || yi >= SIDE as f32 {
            0.0
        } else {
            f32::from(image[yi as usize * SIDE + xi as usize])
        }
    };
    let v = (1.0 - ay) * ((1.0 - ax) * at(x0, y0) + ax * at(x0 + 1.0, y0))
        + ay * ((1.0 - ax) * at(x0, y0 + 1.0) + ax * at(x0 + 1.0, y0 + 1.0));
    v.round().clamp(0.0, 255.0) as u8
}

/// Grey-level dilation (`u8::max`: thicker strokes) or erosion (`u8::min`: thinner) with a
/// 3-pixel cross, blended half-way so that strokes change by about half a pixel.
fn morph(image: &[u8; PIXELS], pick: fn(u8, u8) -> u8) -> [u8; PIXELS] {
    let mut out = *image;
    for (i, o) in out.iter_mut().enumerate() {
        let (x, y) = (i % SIDE, i / SIDE);
        let mut v = image[i];
        if x > 0 {
            v = pick(v, image[i - 1]);
        }
        if x + 1 < SIDE {
            v = pick(v, image[i + 1]);
        }
        if y > 0 {
            v = pick(v, image[i - SIDE]);
        }
        if y + 1 < SIDE {
            v = pick(v, image[i + SIDE]);
        }
        *o = ((u16::from(v) + u16::from(image[i])) / 2) as u8;
    }
    out
}

/// The generator of one image's draw in one epoch.
pub fn image_rng(seed: u64, epoch: usize, image: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((epoch as u64) << 32) | image as u64);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> [u8; PIXELS] {
        let mut image = [0u8; PIXELS];
        for y in 10..18 {
            for x in 10..18 {
                image[y * SIDE + x] = 200;
            }
        }
        image
    }

    #[test]
    fn no_distortion_is_the_identity() {
        let none = Augment {
            rotation_degrees: 0.0,
            scale: 0.0,
            shear: 0.0,
            shift: 0.0,
            elastic: 0.0,
            stroke: 0.0,
        };
        let fields = Fields::new(2, 4.0, 1);
        let image = square();
        let out = distort(&image, &none, &fields, &mut image_rng(1, 0, 0));
        assert_eq!(out, image);
    }

    #[test]
    fn draws_are_seeded_per_image_and_epoch() {
        let fields = Fields::new(4, 4.0, 1);
        let image = square();
        let a = distort(&image, &Augment::BEST, &fields, &mut image_rng(7, 3, 11));
        let b = distort(&image, &Augment::BEST, &fields, &mut image_rng(7, 3, 11));
        let c = distort(&image, &Augment::BEST, &fields, &mut image_rng(7, 4, 11));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Ink is moved, not created from nothing or lost wholesale.
        let ink = |im: &[u8; PIXELS]| im.iter().map(|&v| u32::from(v)).sum::<u32>();
        let (before, after) = (ink(&image), ink(&a));
        assert!(
            after > before / 2 && after < before * 2,
            "{before} → {after}"
        );
    }

    #[test]
    fn fields_are_smooth_and_bounded() {
        let fields = Fields::new(3, 4.0, 9);
        for i in 0..3 {
            let (fx, fy) = fields.field(i);
            for f in [fx, fy] {
                assert!(f.iter().all(|v| v.abs() <= 1.0 + 1e-6));
                // Neighbours along a row differ little: a smooth field, not noise.
                let step = f
                    .chunks_exact(SIDE)
                    .flat_map(|row| row.windows(2).map(|w| (w[1] - w[0]).abs()))
                    .fold(0.0f32, f32::max);
                assert!(step < 0.5, "{step}");
            }
        }
    }
}
