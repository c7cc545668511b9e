//! A user's own digit image turned into an MNIST input, the way MNIST's images were made: grey
//! levels, ink bright on black, cropped to the ink, scaled to fit 20 × 20 keeping the aspect ratio,
//! then placed in 28 × 28 with its centre of mass at the centre.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::imageops::{self, FilterType};
use image::{GrayImage, Luma};
use infer_core::INPUTS;

/// MNIST's digits fit a 20 × 20 box inside the 28 × 28 image.
const BOX: u32 = 20;
const SIDE: u32 = 28;
/// Ink fainter than this fraction of the strongest ink is background noise.
const NOISE: f32 = 0.2;

/// Reads a PNG, JPEG or PGM/PPM file (any size, dark ink on light or the reverse).
pub fn read(path: &Path) -> Result<[u8; INPUTS]> {
    let image = image::open(path)
        .with_context(|| format!("{}: not a readable PNG, JPEG or PGM image", path.display()))?;
    to_mnist(&image.to_luma8()).with_context(|| format!("{}", path.display()))
}

/// The MNIST-style 28 × 28 input of a grey image, row by row.
pub fn to_mnist(image: &GrayImage) -> Result<[u8; INPUTS]> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        bail!("the image is empty");
    }
    // Ink is what differs from the background; the border tells which the background is.
    let border: Vec<f32> = image
        .enumerate_pixels()
        .filter(|(x, y, _)| *x == 0 || *y == 0 || *x == w - 1 || *y == h - 1)
        .map(|(_, _, p)| f32::from(p.0[0]))
        .collect();
    let background = median(border);
    let light_background = background > 127.0;
    let ink = |p: u8| {
        let v = f32::from(p);
        let v = if light_background {
            background - v
        } else {
            v - background
        };
        v.max(0.0)
    };
    let strongest = image.pixels().map(|p| ink(p.0[0])).fold(0.0f32, f32::max);
    if strongest < 16.0 {
        bail!("no digit found: the image has no ink that stands out from its background");
    }
    let level = |p: u8| {
        let v = ink(p) / strongest;
        if v < NOISE { 0.0 } else { v * 255.0 }
    };
    let mut ink_image = GrayImage::new(w, h);
    for (x, y, p) in image.enumerate_pixels() {
        ink_image.put_pixel(x, y, Luma([level(p.0[0]) as u8]));
    }

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

    let mut out = [0u8; INPUTS];
    out.copy_from_slice(field.as_raw());
    Ok(out)
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

    fn centre_of_mass(img: &[u8; INPUTS]) -> (f64, f64) {
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
