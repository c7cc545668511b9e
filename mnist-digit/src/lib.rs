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

    // Fit 20 × 20, keeping the aspect ratio.
    let (cw, ch) = crop.dimensions();
    let scale = BOX as f32 / cw.max(ch) as f32;
    let (sw, sh) = (
        ((cw as f32 * scale).round() as u32).clamp(1, BOX),
        ((ch as f32 * scale).round() as u32).clamp(1, BOX),
    );
    let digit = imageops::resize(&crop, sw, sh, FilterType::Triangle);

    // Centre of mass to the centre of the 28 × 28 field.
    let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in digit.enumerate_pixels() {
        let m = f64::from(p.0[0]);
        mass += m;
        mx += m * f64::from(x);
        my += m * f64::from(y);
    }
    let centre = |m: f64, size: u32| -> i64 {
        let offset = (f64::from(SIDE) / 2.0 - m / mass.max(1.0) - 0.5).round() as i64;
        offset.clamp(0, i64::from(SIDE - size))
    };
    let (ox, oy) = (centre(mx, sw), centre(my, sh));
    let mut field = GrayImage::new(SIDE, SIDE);
    imageops::overlay(&mut field, &digit, ox, oy);

    let mut out = [0u8; PIXELS];
    out.copy_from_slice(field.as_raw());
    Ok(out)
}

/// Ink strength per pixel, 0–255, with the paper's own level taken out: the paper around each
/// pixel is the brightest level (the darkest, for light ink) within a window wider than half a
/// stroke, smoothed; ink is how much darker (lighter) than that paper the pixel is. Uneven light,
/// a shadow or a tinted sheet then leave the paper at zero ink. (A difference, not a ratio: in a
/// dark corner a ratio would make sensor noise look like ink.)
fn ink_map(image: &GrayImage, light_background: bool) -> Vec<f32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let pixels: Vec<f32> = image.pixels().map(|p| f32::from(p.0[0])).collect();
    // Wider than half a pen stroke at the sizes people photograph digits, narrow enough that a
    // light gradient barely moves within it.
    let radius = (w.max(h) / 20).max(4);
    let pick = if light_background { f32::max } else { f32::min };
    let mean = |line: &[f32], i: usize, r: usize| {
        let window = &line[i.saturating_sub(r)..(i + r + 1).min(line.len())];
        window.iter().sum::<f32>() / window.len() as f32
    };
    // Noise first smoothed away (the extreme of noisy pixels would overstate the paper), then
    // the paper's level around each pixel, then smoothed.
    let mut paper = pixels.clone();
    for horizontal in [true, false] {
        paper = pass(&paper, w, h, horizontal, |line, i| mean(line, i, 1));
    }
    for horizontal in [true, false] {
        paper = pass(&paper, w, h, horizontal, |line, i| {
            let window = &line[i.saturating_sub(radius)..(i + radius + 1).min(line.len())];
            window.iter().copied().reduce(pick).unwrap_or(0.0)
        });
    }
    for horizontal in [true, false] {
        paper = pass(&paper, w, h, horizontal, |line, i| mean(line, i, radius));
    }
    pixels
        .iter()
        .zip(&paper)
        .map(|(&p, &b)| {
            if light_background {
                (b - p).max(0.0)
            } else {
                (p - b).max(0.0)
            }
        })
        .collect()
}

/// `f(line, i)` for every pixel, over the rows (`horizontal`) or the columns of a `w × h` image.
fn pass(
    values: &[f32],
    w: usize,
    h: usize,
    horizontal: bool,
    f: impl Fn(&[f32], usize) -> f32,
) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    let (lines, len) = if horizontal { (h, w) } else { (w, h) };
    let mut line = vec![0.0; len];
    for l in 0..lines {
        let at = |i: usize| if horizontal { l * w + i } else { i * w + l };
        for (i, v) in line.iter_mut().enumerate() {
            *v = values[at(i)];
        }
        for i in 0..len {
            out[at(i)] = f(&line, i);
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
    fn a_blank_image_is_an_error() {
        let blank = GrayImage::from_pixel(50, 50, Luma([200]));
        assert!(to_mnist(&blank).is_err());
    }
}
