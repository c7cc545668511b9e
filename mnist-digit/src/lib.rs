//! A user's own digit image turned into an MNIST input, the way MNIST's images were made: grey
//! levels, ink bright on black, cropped to the ink, scaled to fit 20 × 20 keeping the aspect ratio,
//! then placed in 28 × 28 with its centre of mass at the centre.
//!
//! What users hand in is not a clean scan: a drawing exported from a canvas keeps its ink in the
//! alpha channel (composited here onto paper the strokes contrast with), and a phone photo has
//! uneven light and tinted paper (the paper's own brightness is estimated around every pixel and
//! taken out, so only what is darker than the paper nearby counts as ink).
//!
//! This is the one code path from pixels to network input: `trainer predict` decodes an image
//! file and calls [`from_image`]; the browser page hands a canvas's RGBA pixels to [`from_rgba`],
//! which is the same computation (a canvas exported as PNG gives the same 784 pixels in both).
//! A network trained on digits of another square size (`side` × `side`, the digit in the same
//! proportion of the field) takes [`to_side`].
//! The arithmetic is IEEE f32/f64 without fused operations, so every target computes the same
//! bytes.
//!
//! ```
//! // A dark vertical bar on white paper, off centre.
//! let (w, h) = (60, 40);
//! let mut rgba = vec![255u8; w * h * 4];
//! for y in 5..35 {
//!     for x in 10..16 {
//!         rgba[(y * w + x) * 4..][..3].fill(0);
//!     }
//! }
//! let pixels = mnist_digit::from_rgba(w as u32, h as u32, rgba)?;
//! assert_eq!(pixels.len(), mnist_digit::PIXELS);
//! # Ok::<(), mnist_digit::DigitError>(())
//! ```

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, Luma, RgbaImage};

/// Side of the network's input image.
pub const SIDE: u32 = 28;
/// Pixels of the network's input image, row by row.
pub const PIXELS: usize = (SIDE * SIDE) as usize;
/// MNIST's digits fit a 20 × 20 box inside the 28 × 28 image.
const BOX: u32 = 20;
/// The largest field [`to_side`] makes (a 65,535-input network's is 255 × 255).
pub const MAX_SIDE: u32 = 255;

/// Ink fainter than this fraction of the strongest ink is background noise.
const NOISE: f32 = 0.2;
/// Largest side an image is worked at (a phone photo is scaled down first): plenty for a digit
/// that ends up 20 pixels tall, and it bounds the work.
const WORK: u32 = 512;

/// Why an image gives no digit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigitError {
    /// No pixels at all.
    #[error("the image is empty")]
    Empty,
    /// RGBA pixels whose count is not `width × height × 4`.
    #[error("{len} bytes are not the RGBA pixels of a {width} × {height} image")]
    BadLength {
        /// Bytes given.
        len: usize,
        /// Width claimed.
        width: u32,
        /// Height claimed.
        height: u32,
    },
    /// Nothing stands out from the paper.
    #[error("no digit found: the image has no ink that stands out from its background")]
    NoInk,
}

/// The network input of a decoded image (any colour type; ink in the alpha channel too).
pub fn from_image(image: &DynamicImage) -> Result<[u8; PIXELS], DigitError> {
    to_mnist(&grey(image))
}

/// The network input of `width × height` RGBA pixels, row by row, not premultiplied (what a
/// canvas's `getImageData` gives, and what a PNG the canvas exports decodes to).
pub fn from_rgba(width: u32, height: u32, rgba: Vec<u8>) -> Result<[u8; PIXELS], DigitError> {
    let len = rgba.len();
    let image = RgbaImage::from_raw(width, height, rgba)
        .filter(|_| {
            (width as usize)
                .checked_mul(height as usize)
                .and_then(|n| n.checked_mul(4))
                == Some(len)
        })
        .ok_or(DigitError::BadLength { len, width, height })?;
    from_image(&DynamicImage::ImageRgba8(image))
}

/// An image's grey levels. Transparency is composited onto paper that contrasts with the opaque
/// strokes — white under dark ones, black under light ones — so a drawing whose ink is only in
/// the alpha channel (a browser canvas, a transparent layer) shows its ink.
pub fn grey(image: &DynamicImage) -> GrayImage {
    if !image.color().has_alpha() {
        return image.to_luma8();
    }
    let la = image.to_luma_alpha8();
    let (sum, opaque) = la
        .pixels()
        .filter(|p| p.0[1] >= 128)
        .fold((0u64, 0u64), |(s, n), p| (s + u64::from(p.0[0]), n + 1));
    let paper = if opaque == 0 || sum / opaque < 128 {
        255.0
    } else {
        0.0
    };
    GrayImage::from_fn(la.width(), la.height(), |x, y| {
        let [luma, alpha] = la.get_pixel(x, y).0;
        let a = f32::from(alpha) / 255.0;
        Luma([(f32::from(luma) * a + paper * (1.0 - a)).round() as u8])
    })
}

/// The MNIST-style 28 × 28 input of a grey image, row by row.
pub fn to_mnist(image: &GrayImage) -> Result<[u8; PIXELS], DigitError> {
    let field = to_side(image, SIDE)?;
    let mut out = [0u8; PIXELS];
    out.copy_from_slice(&field);
    Ok(out)
}

/// The input of a grey image for a network of `side` × `side` pixels, row by row: MNIST's
/// preparation at that size (the ink fitted to a box of `side` · 20 / 28 pixels, rounded, its
/// centre of mass at the field's centre). `side` is clamped to 1…[`MAX_SIDE`].
pub fn to_side(image: &GrayImage, side: u32) -> Result<Vec<u8>, DigitError> {
    let side = side.clamp(1, MAX_SIDE);
    let boxed = ((side * BOX + SIDE / 2) / SIDE).max(1);
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(DigitError::Empty);
    }
    let scaled;
    let image = if w.max(h) > WORK {
        let s = WORK as f32 / w.max(h) as f32;
        let size = |v: u32| ((v as f32 * s).round() as u32).max(1);
        scaled = imageops::resize(image, size(w), size(h), FilterType::Triangle);
        &scaled
    } else {
        image
    };
    let (w, h) = image.dimensions();
    // Ink is what differs from the background; the border tells which the background is.
    let border: Vec<f32> = image
        .enumerate_pixels()
        .filter(|(x, y, _)| *x == 0 || *y == 0 || *x == w - 1 || *y == h - 1)
        .map(|(_, _, p)| f32::from(p.0[0]))
        .collect();
    let light_background = median(border) > 127.0;
    let ink = ink_map(image, light_background);
    let strongest = ink.iter().copied().fold(0.0f32, f32::max);
    if strongest < 16.0 {
        return Err(DigitError::NoInk);
    }
    let level = |v: f32| {
        let v = v / strongest;
        if v < NOISE { 0.0 } else { v * 255.0 }
    };
    let ink_image = GrayImage::from_fn(w, h, |x, y| Luma([level(ink[(y * w + x) as usize]) as u8]));

    // Crop to the ink.
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in ink_image.enumerate_pixels() {
        if p.0[0] > 0 {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let crop = imageops::crop_imm(&ink_image, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();

    // Fit 20 × 20 (of 28 × 28), keeping the aspect ratio.
    let (cw, ch) = crop.dimensions();
    let scale = boxed as f32 / cw.max(ch) as f32;
    let (sw, sh) = (
        ((cw as f32 * scale).round() as u32).clamp(1, boxed),
        ((ch as f32 * scale).round() as u32).clamp(1, boxed),
    );
    let digit = imageops::resize(&crop, sw, sh, FilterType::Triangle);

    // Centre of mass to the centre of the field.
    let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in digit.enumerate_pixels() {
        let m = f64::from(p.0[0]);
        mass += m;
        mx += m * f64::from(x);
        my += m * f64::from(y);
    }
    let centre = |m: f64, size: u32| -> i64 {
        let offset = (f64::from(side) / 2.0 - m / mass.max(1.0) - 0.5).round() as i64;
        offset.clamp(0, i64::from(side - size))
    };
    let (ox, oy) = (centre(mx, sw), centre(my, sh));
    let mut field = GrayImage::new(side, side);
    imageops::overlay(&mut field, &digit, ox, oy);
    Ok(field.into_raw())
}

/// Ink strength per pixel, 0–255, with the paper's own level taken out: the paper around each
/// pixel is the brightest level (the darkest, for light ink) within a window wider than half a
/// stroke, smoothed; ink is how much darker (lighter) than that paper the pixel is. Uneven light,
/// a shadow or a tinted sheet then leave the paper at zero ink. (A difference, not a ratio: in a
/// dark corner a ratio would make sensor noise look like ink.)
fn ink_map(image: &GrayImage, light_background: bool) -> Vec<f32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let pixels: Vec<f32> = image.pixels().map(|p| f32::from(p.0[0])).collect();
    let pick = if light_background { f32::max } else { f32::min };
    // Noise first smoothed away (the extreme of noisy pixels would overstate the paper).
    let mut smooth = pixels.clone();
    for horizontal in [true, false] {
        smooth = pass(&smooth, w, h, horizontal, |line, out| means(line, 1, out));
    }
    // The window: wider than the widest stroke (a window narrower than a stroke finds no paper
    // inside it and hollows the stroke out), at least a twentieth of the image (thin pens at
    // photo sizes), at most an eighth (so that uneven light is still followed). The strokes are
    // measured on the ink the widest window finds, which hollows nothing out.
    let side = w.max(h);
    let least = (side / 20).max(4);
    let most = (side / 8).max(least);
    let rough = ink(
        &pixels,
        &paper_level(&smooth, w, h, most, pick),
        light_background,
    );
    let radius = stroke_half_width(&rough, w, h)
        .map_or(least, |half| (half + half / 2 + 2).clamp(least, most));
    ink(
        &pixels,
        &paper_level(&smooth, w, h, radius, pick),
        light_background,
    )
}

/// How much darker (lighter, for light ink) than the paper each pixel is.
fn ink(pixels: &[f32], paper: &[f32], light_background: bool) -> Vec<f32> {
    pixels
        .iter()
        .zip(paper)
        .map(|(&p, &b)| {
            if light_background {
                (b - p).max(0.0)
            } else {
                (p - b).max(0.0)
            }
        })
        .collect()
}

/// The paper's level around each pixel of the smoothed image `values`: the brightest level
/// (`pick`: the darkest, for light ink) within `radius`, smoothed over `radius`.
fn paper_level(
    values: &[f32],
    w: usize,
    h: usize,
    radius: usize,
    pick: fn(f32, f32) -> f32,
) -> Vec<f32> {
    let mut paper = values.to_vec();
    for horizontal in [true, false] {
        paper = pass(&paper, w, h, horizontal, |line, out| {
            extremes(line, radius, pick, out)
        });
    }
    for horizontal in [true, false] {
        paper = pass(&paper, w, h, horizontal, |line, out| {
            means(line, radius, out)
        });
    }
    paper
}

/// `out[i]` = the mean of `line` within `r` of `i` (from running sums: the work does not grow
/// with `r`).
fn means(line: &[f32], r: usize, out: &mut [f32]) {
    let mut sums = Vec::with_capacity(line.len() + 1);
    let mut sum = 0.0f64;
    sums.push(sum);
    for &v in line {
        sum += f64::from(v);
        sums.push(sum);
    }
    for (i, o) in out.iter_mut().enumerate() {
        let (lo, hi) = (i.saturating_sub(r), (i + r + 1).min(line.len()));
        *o = ((sums[hi] - sums[lo]) / (hi - lo) as f64) as f32;
    }
}

/// `out[i]` = `pick` (max or min) of `line` within `r` of `i`, by van Herk and Gil–Werman: over
/// blocks of `2r + 1` values, the running extreme from each block's start and from its end; a
/// window meets at most two blocks, so two lookups give it (the work does not grow with `r`).
fn extremes(line: &[f32], r: usize, pick: fn(f32, f32) -> f32, out: &mut [f32]) {
    let (n, k) = (line.len(), 2 * r + 1);
    let (mut from_start, mut to_end) = (line.to_vec(), line.to_vec());
    for i in 1..n {
        if i % k != 0 {
            from_start[i] = pick(from_start[i - 1], line[i]);
        }
    }
    for i in (0..n.saturating_sub(1)).rev() {
        if (i + 1) % k != 0 {
            to_end[i] = pick(to_end[i + 1], line[i]);
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        let (lo, hi) = (i.saturating_sub(r), (i + r).min(n - 1));
        // Within one block, the window starts the block or ends the line.
        *o = if lo / k != hi / k {
            pick(to_end[lo], from_start[hi])
        } else if lo % k == 0 {
            from_start[hi]
        } else {
            to_end[lo]
        };
    }
}

/// Half the width of the widest strokes of an ink map, in pixels: the ink separated from the
/// paper by one level (Otsu's), then each ink pixel's distance to the nearest paper pixel (a
/// two-pass chamfer transform, 3-4 weights); the 95th percentile of those distances, so a few
/// blots do not count. `None` without ink.
fn stroke_half_width(ink: &[f32], w: usize, h: usize) -> Option<usize> {
    let mut histogram = [0u64; 256];
    for &v in ink {
        histogram[v.clamp(0.0, 255.0) as usize] += 1;
    }
    let level = otsu(&histogram);
    // Distances ×3 (orthogonal step 3, diagonal 4).
    const FAR: u32 = u32::MAX / 2;
    let mut d: Vec<u32> = ink
        .iter()
        .map(|&v| if v >= level { FAR } else { 0 })
        .collect();
    let at = |x: usize, y: usize| y * w + x;
    for y in 0..h {
        for x in 0..w {
            let mut best = d[at(x, y)];
            if best == 0 {
                continue;
            }
            if x > 0 {
                best = best.min(d[at(x - 1, y)] + 3);
            }
            if y > 0 {
                best = best.min(d[at(x, y - 1)] + 3);
                if x > 0 {
                    best = best.min(d[at(x - 1, y - 1)] + 4);
                }
                if x + 1 < w {
                    best = best.min(d[at(x + 1, y - 1)] + 4);
                }
            }
            d[at(x, y)] = best;
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let mut best = d[at(x, y)];
            if best == 0 {
                continue;
            }
            if x + 1 < w {
                best = best.min(d[at(x + 1, y)] + 3);
            }
            if y + 1 < h {
                best = best.min(d[at(x, y + 1)] + 3);
                if x + 1 < w {
                    best = best.min(d[at(x + 1, y + 1)] + 4);
                }
                if x > 0 {
                    best = best.min(d[at(x - 1, y + 1)] + 4);
                }
            }
            d[at(x, y)] = best;
        }
    }
    // Ink touching no paper at all (the whole image one level) says nothing about strokes.
    let mut inside: Vec<u32> = d.into_iter().filter(|&v| v > 0 && v < FAR).collect();
    if inside.is_empty() {
        return None;
    }
    let k = (inside.len() * 95 / 100).min(inside.len() - 1);
    let (_, &mut p95, _) = inside.select_nth_unstable(k);
    Some((p95 as usize).div_ceil(3))
}

/// Otsu's level of a histogram: the value that best separates two classes (the largest
/// between-class variance); values below it are one class.
fn otsu(histogram: &[u64; 256]) -> f32 {
    let total: u64 = histogram.iter().sum();
    let sum: f64 = histogram
        .iter()
        .enumerate()
        .map(|(v, &n)| v as f64 * n as f64)
        .sum();
    let (mut below, mut below_sum, mut best, mut level) = (0u64, 0f64, -1f64, 128usize);
    for (v, &n) in histogram.iter().enumerate() {
        below += n;
        below_sum += v as f64 * n as f64;
        let above = total - below;
        if below == 0 || above == 0 {
            continue;
        }
        let (m0, m1) = (below_sum / below as f64, (sum - below_sum) / above as f64);
        let between = below as f64 * above as f64 * (m0 - m1) * (m0 - m1);
        if between > best {
            (best, level) = (between, v + 1);
        }
    }
    level as f32
}

/// `f(line, out)` for every row (`horizontal`) or column of a `w × h` image: `out` the line's
/// results.
fn pass(
    values: &[f32],
    w: usize,
    h: usize,
    horizontal: bool,
    f: impl Fn(&[f32], &mut [f32]),
) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    let (lines, len) = if horizontal { (h, w) } else { (w, h) };
    let (mut line, mut result) = (vec![0.0; len], vec![0.0; len]);
    for l in 0..lines {
        let at = |i: usize| if horizontal { l * w + i } else { i * w + l };
        for (i, v) in line.iter_mut().enumerate() {
            *v = values[at(i)];
        }
        f(&line, &mut result);
        for (i, &v) in result.iter().enumerate() {
            out[at(i)] = v;
        }
    }
    out
}

fn median(mut values: Vec<f32>) -> f32 {
    values.sort_by(f32::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thick dark bar on white, off centre in a large canvas.
    fn bar(invert: bool) -> GrayImage {
        let (bg, fg) = if invert { (0, 255) } else { (255, 20) };
        GrayImage::from_fn(300, 200, |x, y| {
            if (40..60).contains(&x) && (30..150).contains(&y) {
                Luma([fg])
            } else {
                Luma([bg])
            }
        })
    }

    fn centre_of_mass(img: &[u8; PIXELS]) -> (f64, f64) {
        let (mut m, mut x, mut y) = (0.0, 0.0, 0.0);
        for (i, &p) in img.iter().enumerate() {
            let p = f64::from(p);
            m += p;
            x += p * (i % 28) as f64;
            y += p * (i / 28) as f64;
        }
        (x / m, y / m)
    }

    #[test]
    fn other_sides_keep_mnist_proportions() {
        for (side, tall) in [(14usize, 10usize), (16, 11), (8, 6), (28, 20)] {
            let img = to_side(&bar(false), side as u32).unwrap();
            assert_eq!(img.len(), side * side);
            let rows = (0..side)
                .filter(|r| img[r * side..(r + 1) * side].iter().any(|&p| p > 0))
                .count();
            assert_eq!(rows, tall, "side {side}");
            let (m, y) = img.iter().enumerate().fold((0.0, 0.0), |(m, y), (i, &p)| {
                (m + f64::from(p), y + f64::from(p) * (i / side) as f64)
            });
            assert!(
                (y / m - side as f64 / 2.0).abs() < 1.0,
                "side {side}: {}",
                y / m
            );
        }
        assert_eq!(
            to_side(&bar(false), 28).unwrap(),
            to_mnist(&bar(false)).unwrap()
        );
    }

    #[test]
    fn crops_scales_and_centres_like_mnist() {
        let img = to_mnist(&bar(false)).unwrap();
        let rows: Vec<usize> = (0..28)
            .filter(|r| img[r * 28..r * 28 + 28].iter().any(|&p| p > 0))
            .collect();
        assert_eq!(rows.len(), 20, "the tall side fills 20 rows: {rows:?}");
        let (cx, cy) = centre_of_mass(&img);
        assert!(
            (cx - 13.5).abs() <= 1.0 && (cy - 13.5).abs() <= 1.0,
            "{cx} {cy}"
        );
        assert_eq!(img.iter().copied().max(), Some(255));
    }

    #[test]
    fn light_and_dark_backgrounds_give_the_same_digit() {
        let a = to_mnist(&bar(false)).unwrap();
        let b = to_mnist(&bar(true)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn window_filters_are_their_definitions() {
        let mut seed = 7u32;
        for n in [1usize, 2, 3, 7, 30, 61] {
            let line: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as f32
                })
                .collect();
            for r in [0usize, 1, 2, 5, 40] {
                let mut out = vec![0.0; n];
                for pick in [f32::max, f32::min] {
                    extremes(&line, r, pick, &mut out);
                    for (i, &o) in out.iter().enumerate() {
                        let window = &line[i.saturating_sub(r)..(i + r + 1).min(n)];
                        assert_eq!(
                            o,
                            window.iter().copied().reduce(pick).unwrap(),
                            "{n} {r} {i}"
                        );
                    }
                }
                means(&line, r, &mut out);
                for (i, &o) in out.iter().enumerate() {
                    let window = &line[i.saturating_sub(r)..(i + r + 1).min(n)];
                    let mean = window.iter().sum::<f32>() / window.len() as f32;
                    assert!(
                        (o - mean).abs() <= 1e-4 * mean.abs().max(1.0),
                        "{n} {r} {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_blank_image_is_an_error() {
        let blank = GrayImage::from_pixel(50, 50, Luma([200]));
        assert!(to_mnist(&blank).is_err());
    }
}
