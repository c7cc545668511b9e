//! `trainer predict` on digits drawn here like handwriting (thick pen strokes, dark ink on white
//! paper, off centre, at photo sizes), never MNIST rows; and as users hand them in: ink only in the
//! alpha channel, photos of tinted paper under uneven light, a batch with an unreadable file.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use trainer::idx::load_mnist;
use trainer::output::write_atomic;
use trainer::quantize::{Width, encode_quant, quantize};
use trainer::train::{HeldOut, TrainConfig, fit};

mod common;

/// Pen strokes of each digit in a 100 × 140 box (y down).
fn strokes(digit: u8) -> Vec<Vec<(f32, f32)>> {
    let arc = |cx: f32, cy: f32, rx: f32, ry: f32, from: f32, to: f32| -> Vec<(f32, f32)> {
        (0..=24)
            .map(|i| {
                let t = (from + (to - from) * i as f32 / 24.0).to_radians();
                (cx + rx * t.cos(), cy + ry * t.sin())
            })
            .collect()
    };
    match digit {
        0 => vec![arc(50.0, 70.0, 36.0, 62.0, 0.0, 360.0)],
        1 => vec![vec![(35.0, 28.0), (58.0, 8.0), (58.0, 132.0)]],
        2 => {
            let mut s = arc(50.0, 42.0, 34.0, 32.0, 190.0, 380.0);
            s.extend([(18.0, 130.0), (88.0, 130.0)]);
            vec![s]
        }
        3 => vec![
            arc(48.0, 38.0, 32.0, 30.0, 200.0, 450.0),
            arc(48.0, 100.0, 36.0, 32.0, 270.0, 520.0),
        ],
        4 => vec![
            vec![(62.0, 8.0), (12.0, 92.0), (90.0, 92.0)],
            vec![(66.0, 40.0), (66.0, 134.0)],
        ],
        5 => {
            let mut s = vec![(82.0, 10.0), (28.0, 10.0), (24.0, 62.0)];
            s.extend(arc(50.0, 92.0, 36.0, 38.0, 220.0, 500.0));
            vec![s]
        }
        6 => {
            let mut s = arc(92.0, 84.0, 62.0, 76.0, 240.0, 180.0);
            s.extend(arc(52.0, 98.0, 32.0, 34.0, 180.0, 540.0));
            vec![s]
        }
        7 => vec![vec![(12.0, 12.0), (88.0, 12.0), (40.0, 134.0)]],
        8 => vec![
            arc(50.0, 36.0, 28.0, 30.0, 0.0, 360.0),
            arc(50.0, 100.0, 34.0, 36.0, 0.0, 360.0),
        ],
        9 => {
            let mut s = arc(48.0, 42.0, 32.0, 34.0, 0.0, 360.0);
            s.extend([(80.0, 42.0), (72.0, 134.0)]);
            vec![s]
        }
        _ => unreachable!(),
    }
}

/// A photo-sized grey image of the digit: ink 40 on paper 235, pen radius 9, off centre.
fn draw(digit: u8) -> GrayImage {
    let strokes = strokes(digit);
    let (ox, oy) = (60.0, 40.0);
    GrayImage::from_fn(320, 240, |x, y| {
        let (px, py) = (x as f32 - ox, y as f32 - oy);
        let near = strokes.iter().any(|s| {
            s.windows(2)
                .any(|seg| distance((px, py), seg[0], seg[1]) <= 9.0)
        });
        Luma([if near { 40 } else { 235 }])
    })
}

fn distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    };
    let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

fn trained_model(dir: &Path) -> PathBuf {
    let mnist = load_mnist(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")).unwrap();
    let config = TrainConfig {
        epochs: 2,
        ..TrainConfig::default()
    };
    let net = fit(&mnist.train, HeldOut::default(), &config, |_| {})
        .unwrap()
        .net;
    let path = dir.join("mlp-int8.bin");
    write_atomic(
        &path,
        &encode_quant(&quantize(&net, &mnist.train.head(5000), Width::Int8).unwrap()).unwrap(),
    )
    .unwrap();
    path
}

#[test]
fn drawn_handwriting_is_read_correctly_in_the_large_majority() {
    let dir = common::temp_dir("predict");
    let model = trained_model(&dir);
    let mut images = Vec::new();
    for digit in 0..10u8 {
        let png = dir.join(format!("digit-{digit}.png"));
        draw(digit).save(&png).unwrap();
        images.push(png);
    }
    // A JPEG too, white ink on black (a scan inverted, or a chalkboard).
    let mut seven = draw(7);
    image::imageops::invert(&mut seven);
    let jpeg = dir.join("chalk-7.jpg");
    seven.save(&jpeg).unwrap();
    images.push(jpeg);

    let run = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("predict")
        .arg(&model)
        .args(&images)
        .arg("--json")
        .output()
        .unwrap();
    common::succeeded(&run);
    let results: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let digits: Vec<u64> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let p = r["probabilities"].as_array().unwrap();
            let sum: f64 = p.iter().map(|v| v.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-3);
            r["digit"].as_u64().unwrap()
        })
        .collect();
    let correct = digits[..10]
        .iter()
        .enumerate()
        .filter(|(d, p)| *d as u64 == **p)
        .count();
    eprintln!("drawn digits 0-9 read as {:?}", &digits[..10]);
    assert!(
        correct >= 8,
        "only {correct}/10 drawn digits read correctly: {digits:?}"
    );
    assert_eq!(digits[10], 7, "the inverted JPEG seven");
}

#[test]
fn unreadable_images_fail_with_the_file_named() {
    let dir = common::temp_dir("predict-bad");
    let not_an_image = dir.join("notes.png");
    std::fs::write(&not_an_image, b"not a picture").unwrap();
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-example/model/mlp-int8.bin");
    let run = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("predict")
        .arg(&model)
        .arg(&not_an_image)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("notes.png") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// The model trained once for the tests of this file that need one.
fn shared_model() -> &'static Path {
    static MODEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = common::temp_dir("predict-model");
        trained_model(&dir)
    })
}

/// `trainer predict MODEL IMAGES --json`: the status and the parsed results.
fn predict_json(images: &[PathBuf]) -> (Option<i32>, Vec<serde_json::Value>) {
    let run = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("predict")
        .arg(shared_model())
        .args(images)
        .arg("--json")
        .output()
        .unwrap();
    let results: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stderr)));
    (run.status.code(), results.as_array().unwrap().clone())
}

/// How many of the images of digits 0–9 (in that order) were read as themselves.
fn correct(results: &[serde_json::Value]) -> usize {
    let read: Vec<_> = results.iter().map(|r| r["digit"].as_u64()).collect();
    eprintln!("digits 0-9 read as {read:?}");
    results
        .iter()
        .enumerate()
        .filter(|(d, r)| r["digit"].as_u64() == Some(*d as u64))
        .count()
}

#[test]
fn ink_only_in_the_alpha_channel_is_read() {
    let dir = common::temp_dir("predict-alpha");
    // A browser canvas's export: black (or white) everywhere, the strokes opaque, the rest clear.
    let mut images = Vec::new();
    for digit in 0..10u8 {
        let drawn = draw(digit);
        let colour = if digit % 2 == 0 { 0 } else { 255 };
        let canvas = RgbaImage::from_fn(drawn.width(), drawn.height(), |x, y| {
            let ink = drawn.get_pixel(x, y).0[0] < 128;
            Rgba([colour, colour, colour, if ink { 255 } else { 0 }])
        });
        let png = dir.join(format!("canvas-{digit}.png"));
        canvas.save(&png).unwrap();
        images.push(png);
    }
    let (status, results) = predict_json(&images);
    assert_eq!(status, Some(0));
    let read = correct(&results);
    assert!(read >= 8, "{read}/10 canvas digits read: {results:?}");
}

#[test]
fn a_photo_under_uneven_light_on_tinted_paper_is_read() {
    let dir = common::temp_dir("predict-photo");
    let mut images = Vec::new();
    for digit in 0..10u8 {
        let drawn = draw(digit);
        let (w, h) = drawn.dimensions();
        // Light falls from 100 % at the top left to 30 % at the bottom right, on cream paper,
        // with a little sensor noise; the ink reflects a quarter of what the paper does.
        let photo = RgbImage::from_fn(w, h, |x, y| {
            let light = 1.0 - 0.7 * (x as f32 / w as f32 + y as f32 / h as f32) / 2.0;
            let ink = drawn.get_pixel(x, y).0[0] < 128;
            let reflect = if ink { 0.25 } else { 1.0 };
            let noise = ((x * 7919 + y * 104_729) % 13) as f32 - 6.0;
            let channel = |paper: f32| (paper * light * reflect + noise).clamp(0.0, 255.0) as u8;
            Rgb([channel(245.0), channel(235.0), channel(200.0)])
        });
        let jpeg = dir.join(format!("photo-{digit}.jpg"));
        photo.save(&jpeg).unwrap();
        images.push(jpeg);
    }
    let (status, results) = predict_json(&images);
    assert_eq!(status, Some(0));
    let read = correct(&results);
    assert!(read >= 8, "{read}/10 photographed digits read: {results:?}");
}

#[test]
fn each_image_gets_its_own_answer_or_error_and_the_status_tells() {
    let dir = common::temp_dir("predict-mixed");
    let (two, bad, blank, seven) = (
        dir.join("2.png"),
        dir.join("bad.png"),
        dir.join("blank.png"),
        dir.join("7.png"),
    );
    draw(2).save(&two).unwrap();
    std::fs::write(&bad, b"not a picture").unwrap();
    GrayImage::from_pixel(60, 60, Luma([230]))
        .save(&blank)
        .unwrap();
    draw(7).save(&seven).unwrap();
    let (status, results) = predict_json(&[two, bad, blank, seven]);
    assert_eq!(status, Some(1), "a failed image makes the status 1");
    assert_eq!(results.len(), 4);
    assert!(results[0]["digit"].is_u64() && results[3]["digit"].is_u64());
    for (i, needle) in [(1, "bad.png"), (2, "no digit found")] {
        let error = results[i]["error"].as_str().unwrap();
        assert!(error.contains(needle), "{error}");
        assert!(results[i].get("digit").is_none());
    }
    // A warning exactly where the answer is unsure.
    for r in results.iter().filter(|r| r["probabilities"].is_array()) {
        let mut p: Vec<f64> = r["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        p.sort_by(|a, b| b.total_cmp(a));
        let unsure = p[0] < 0.6 || p[0] - p[1] < 0.2;
        assert_eq!(r.get("warning").is_some(), unsure, "{r}");
    }
}
