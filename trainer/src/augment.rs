//! On-the-fly augmentation of digits for the `best` recipe: each training image is redrawn every
//! epoch with a small random affine transform (rotation, scale, shear, shift), an elastic
//! distortion (Simard, Steinkraus & Platt, 2003) and now and then a thicker or thinner stroke, so
//! the network sees the pens, slants and sizes of handwriting unlike MNIST's.
//!
//! Every image's draw is seeded by (run seed, epoch, image), so a run is the same whatever the
//! thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// An image's size: `cols` pixels per row, `rows` rows (MNIST's: 28 × 28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

impl Grid {
    /// Pixels.
    pub fn pixels(self) -> usize {
        self.rows * self.cols
    }
}

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
    /// `count × 2 × pixels` displacements (x then y), each field at most 1 pixel in size.
    fields: Vec<f32>,
    grid: Grid,
}

impl Fields {
    /// `count` fields over `grid` of uniform noise smoothed by a Gaussian of `sigma` pixels.
    pub fn new(count: usize, sigma: f32, seed: u64, grid: Grid) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xE1A5_71C0);
        let radius = (3.0 * sigma).ceil() as isize;
        let kernel: Vec<f32> = (-radius..=radius)
            .map(|d| (-((d * d) as f32) / (2.0 * sigma * sigma)).exp())
            .collect();
        let pixels = grid.pixels();
        let mut fields = Vec::with_capacity(count * 2 * pixels);
        for _ in 0..2 * count {
            let noise: Vec<f32> = (0..pixels).map(|_| rng.random_range(-1.0..1.0)).collect();
            let rows = blur(&noise, &kernel, radius, grid, false);
            let smooth = blur(&rows, &kernel, radius, grid, true);
            let max = smooth.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
            fields.extend(smooth.iter().map(|v| v / max));
        }
        Self { fields, grid }
    }

    fn count(&self) -> usize {
        self.fields.len() / (2 * self.grid.pixels()).max(1)
    }

    fn field(&self, i: usize) -> (&[f32], &[f32]) {
        let n = self.grid.pixels();
        let f = &self.fields[2 * n * i..][..2 * n];
        f.split_at(n)
    }
}

/// A 1-D Gaussian blur along rows, or along columns (`down`), zero outside the image.
fn blur(image: &[f32], kernel: &[f32], radius: isize, grid: Grid, down: bool) -> Vec<f32> {
    let mut out = vec![0.0; grid.pixels()];
    let (step, len) = if down {
        (grid.cols, grid.rows)
    } else {
        (1, grid.cols)
    };
    for (i, o) in out.iter_mut().enumerate() {
        let (pos, base) = if down {
            (i / grid.cols, i % grid.cols)
        } else {
            (i % grid.cols, i - i % grid.cols)
        };
        for (t, &k) in kernel.iter().enumerate() {
            let p = pos as isize + t as isize - radius;
            if (0..len as isize).contains(&p) {
                *o += k * image[base + p as usize * step];
            }
        }
    }
    out
}

/// A distorted copy of `image` (of the fields' grid) into `out`, drawn by `rng`.
pub fn distort(image: &[u8], aug: &Augment, fields: &Fields, rng: &mut impl Rng, out: &mut [u8]) {
    let grid = fields.grid;
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

    let (cx, cy) = (
        (grid.cols as f32 - 1.0) / 2.0,
        (grid.rows as f32 - 1.0) / 2.0,
    );
    for (i, o) in out.iter_mut().enumerate().take(grid.pixels()) {
        let (x, y) = (
            (i % grid.cols) as f32 - cx - tx,
            (i / grid.cols) as f32 - cy - ty,
        );
        let sx = inverse[0][0] * x + inverse[0][1] * y + cx + strength * fx[i];
        let sy = inverse[1][0] * x + inverse[1][1] * y + cy + strength * fy[i];
        *o = bilinear(image, grid, sx, sy);
    }
    let stroke: f64 = rng.random();
    if stroke < aug.stroke {
        morph(out, grid, u8::max);
    } else if stroke < 2.0 * aug.stroke {
        morph(out, grid, u8::min);
    }
}

/// The image at a fractional position, zero outside.
fn bilinear(image: &[u8], grid: Grid, x: f32, y: f32) -> u8 {
    let (x0, y0) = (x.floor(), y.floor());
    let (ax, ay) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= grid.cols as f32 || yi >= grid.rows as f32 {
            0.0
        } else {
            f32::from(image[yi as usize * grid.cols + xi as usize])
        }
    };
    let v = (1.0 - ay) * ((1.0 - ax) * at(x0, y0) + ax * at(x0 + 1.0, y0))
        + ay * ((1.0 - ax) * at(x0, y0 + 1.0) + ax * at(x0 + 1.0, y0 + 1.0));
    v.round().clamp(0.0, 255.0) as u8
}

/// Grey-level dilation (`u8::max`: thicker strokes) or erosion (`u8::min`: thinner) with a
/// 3-pixel cross, blended half-way so that strokes change by about half a pixel, in place.
fn morph(image: &mut [u8], grid: Grid, pick: fn(u8, u8) -> u8) {
    let src = image.to_vec();
    let cols = grid.cols;
    for (i, o) in image.iter_mut().enumerate() {
        let (x, y) = (i % cols, i / cols);
        let mut v = src[i];
        if x > 0 {
            v = pick(v, src[i - 1]);
        }
        if x + 1 < cols {
            v = pick(v, src[i + 1]);
        }
        if y > 0 {
            v = pick(v, src[i - cols]);
        }
        if y + 1 < grid.rows {
            v = pick(v, src[i + cols]);
        }
        *o = ((u16::from(v) + u16::from(src[i])) / 2) as u8;
    }
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

    const MNIST: Grid = Grid { rows: 28, cols: 28 };

    fn square(grid: Grid) -> Vec<u8> {
        let mut image = vec![0u8; grid.pixels()];
        for y in 10..18 {
            for x in 6..14 {
                image[y * grid.cols + x] = 200;
            }
        }
        image
    }

    fn drawn(image: &[u8], aug: &Augment, fields: &Fields, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let mut out = vec![0; image.len()];
        distort(image, aug, fields, rng, &mut out);
        out
    }

    #[test]
    fn no_distortion_is_the_identity_on_any_grid() {
        let none = Augment {
            rotation_degrees: 0.0,
            scale: 0.0,
            shear: 0.0,
            shift: 0.0,
            elastic: 0.0,
            stroke: 0.0,
        };
        for grid in [MNIST, Grid { rows: 20, cols: 16 }] {
            let fields = Fields::new(2, 4.0, 1, grid);
            let image = square(grid);
            let out = drawn(&image, &none, &fields, &mut image_rng(1, 0, 0));
            assert_eq!(out, image, "{grid:?}");
        }
    }

    #[test]
    fn draws_are_seeded_per_image_and_epoch() {
        let fields = Fields::new(4, 4.0, 1, MNIST);
        let image = square(MNIST);
        let a = drawn(&image, &Augment::BEST, &fields, &mut image_rng(7, 3, 11));
        let b = drawn(&image, &Augment::BEST, &fields, &mut image_rng(7, 3, 11));
        let c = drawn(&image, &Augment::BEST, &fields, &mut image_rng(7, 4, 11));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Ink is moved, not created from nothing or lost wholesale.
        let ink = |im: &[u8]| im.iter().map(|&v| u32::from(v)).sum::<u32>();
        let (before, after) = (ink(&image), ink(&a));
        assert!(
            after > before / 2 && after < before * 2,
            "{before} → {after}"
        );
    }

    #[test]
    fn fields_are_smooth_and_bounded() {
        let fields = Fields::new(3, 4.0, 9, MNIST);
        for i in 0..3 {
            let (fx, fy) = fields.field(i);
            for f in [fx, fy] {
                assert!(f.iter().all(|v| v.abs() <= 1.0 + 1e-6));
                // Neighbours along a row differ little: a smooth field, not noise.
                let step = f
                    .chunks_exact(MNIST.cols)
                    .flat_map(|row| row.windows(2).map(|w| (w[1] - w[0]).abs()))
                    .fold(0.0f32, f32::max);
                assert!(step < 0.5, "{step}");
            }
        }
    }
}
