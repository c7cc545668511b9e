//! `predict`'s reading of digits as users hand them in, measured on real MNIST test digits
//! rendered the ways users' images come: upscaled with bilinear filtering (thick, soft strokes
//! that fill the frame, as a marker or a finger draws), on uneven light, on tinted paper, through
//! JPEG, and as a canvas export whose ink is only in the alpha channel. Each rendering must score
//! within 1 point of the same model on the same digits' raw 28 × 28 pixels.

use std::io::Cursor;
use std::path::Path;

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, Rgb, RgbImage, Rgba, RgbaImage};
use infer_core::QuantModel;
use rayon::prelude::*;
use trainer::output::AlignedBytes;

mod common;

/// Test digits rendered per case.
const DIGITS: usize = 600;

/// A digit's 28 × 28 as dark ink (`255 − v`) on white, upscaled to `side` with bilinear filtering.
fn upscaled(pixels: &[u8], side: u32) -> GrayImage {
    let ink = GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([255 - pixels[(y * 28 + x) as usize]])
    });
    imageops::resize(&ink, side, side, FilterType::Triangle)
}

/// The ways a digit is handed in, by name.
fn renderings(pixels: &[u8]) -> Vec<(&'static str, DynamicImage)> {
    let mut out = vec![(
        "raw 28 × 28, white ink on black",
        DynamicImage::ImageLuma8(GrayImage::from_raw(28, 28, pixels.to_vec()).expect("784 pixels")),
    )];
    for side in [96, 160, 300] {
        out.push((
            match side {
                96 => "96 px, bilinear",
                160 => "160 px, bilinear",
                _ => "300 px, bilinear",
            },
            DynamicImage::ImageLuma8(upscaled(pixels, side)),
        ));
    }
    // The digit filling the frame (a marker, a close-up): cropped to its ink, then enlarged.
    let (mut x0, mut y0, mut x1, mut y1) = (28, 28, 0, 0);
    for (i, &v) in pixels.iter().enumerate() {
        let (x, y) = (i as u32 % 28, i as u32 / 28);
        if v > 0 {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if x1 >= x0 && y1 >= y0 {
        let ink = upscaled(pixels, 28);
        let crop = imageops::crop_imm(&ink, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
        let (w, h) = crop.dimensions();
        let s = 200.0 / w.max(h) as f32;
        let filled = imageops::resize(
            &crop,
            (w as f32 * s) as u32,
            (h as f32 * s) as u32,
            FilterType::Triangle,
        );
        out.push((
            "200 px, filling the frame",
            DynamicImage::ImageLuma8(filled),
        ));
    }
    let big = upscaled(pixels, 160);
    // Light falling off from one corner to the other: paper from 250 down to 110.
    let uneven = GrayImage::from_fn(160, 160, |x, y| {
        let light = 1.0 - 0.56 * (x + y) as f32 / 318.0;
        image::Luma([(f32::from(big.get_pixel(x, y).0[0]) * light).round() as u8])
    });
    out.push(("160 px, uneven light", DynamicImage::ImageLuma8(uneven)));
    // Cream paper, blue-black ink.
    let tinted = RgbImage::from_fn(160, 160, |x, y| {
        let t = f32::from(big.get_pixel(x, y).0[0]) / 255.0;
        let mix = |ink: f32, paper: f32| (ink + (paper - ink) * t).round() as u8;
        Rgb([mix(30.0, 236.0), mix(34.0, 222.0), mix(70.0, 180.0)])
    });
    out.push((
        "160 px, tinted paper",
        DynamicImage::ImageRgb8(tinted.clone()),
    ));
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(tinted)
        .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .expect("JPEG encoding");
    out.push((
        "160 px, tinted paper, JPEG",
        image::load_from_memory(&jpeg).expect("JPEG decoding"),
    ));
    // A canvas export: black strokes on a transparent canvas, the ink only in alpha.
    let thick = upscaled(pixels, 300);
    let alpha = RgbaImage::from_fn(300, 300, |x, y| {
        Rgba([0, 0, 0, 255 - thick.get_pixel(x, y).0[0]])
    });
    out.push(("300 px, ink only in alpha", DynamicImage::ImageRgba8(alpha)));
    out
}

#[test]
fn renderings_score_within_a_point_of_the_raw_digits() {
    let mnist = common::mnist();
    let bytes = AlignedBytes::read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-example/model/mlp-int8.bin"),
    )
    .unwrap();
    let model = QuantModel::from_bytes(bytes.as_bytes()).unwrap();
    let n = DIGITS.min(mnist.test.len());
    // Per digit, per rendering: right or not.
    let right: Vec<Vec<(&'static str, bool)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let label = mnist.test.labels[i];
            renderings(mnist.test.image(i))
                .into_iter()
                .map(|(name, image)| {
                    let ok = mnist_digit::from_image(&image)
                        .ok()
                        .and_then(|p| model.predict(&p).ok())
                        .is_some_and(|p| p.class == label);
                    (name, ok)
                })
                .collect()
        })
        .collect();
    let raw_right = (0..n)
        .filter(|&i| model.predict(mnist.test.image(i)).unwrap().class == mnist.test.labels[i])
        .count();
    let raw = 100.0 * raw_right as f64 / n as f64;
    eprintln!("{n} MNIST test digits; the model on their raw pixels: {raw:.2} %");
    let mut short = Vec::new();
    for (k, (name, _)) in right[0].iter().enumerate() {
        let score = 100.0 * right.iter().filter(|r| r[k].1).count() as f64 / n as f64;
        eprintln!("  {name:<32} {score:6.2} %");
        if score < raw - 1.0 {
            short.push(format!("{name}: {score:.2} % against {raw:.2} % raw"));
        }
    }
    assert!(short.is_empty(), "more than a point short: {short:?}");
}
