//! Data that is not MNIST: the network's inputs and classes come from the IDX files. Images of
//! 12 × 16 pixels in 3 classes (each a bar in its own place) train, quantize, evaluate, inspect,
//! export and import back as a 192-16-3 network; the best recipe's distortions run on the
//! non-square grid; and labels that are not 0…C−1 are refused before any work.

use std::path::Path;
use std::process::Command;

mod common;

const ROWS: usize = 12;
const COLS: usize = 16;
const HANDWRITTEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/handwritten-3.pgm");

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

/// `n` images: class `c` is a bright horizontal bar in rows 4c…4c+3, at a random offset and
/// brightness, over faint noise.
fn images(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = (i % 3) as u8;
        let start = (next() % 6) as usize;
        let level = 150 + (next() % 100) as u8;
        for r in 0..ROWS {
            for c in 0..COLS {
                let bar = r / 4 == usize::from(class) && (start..start + 10).contains(&c);
                pixels.push(if bar { level } else { (next() % 40) as u8 });
            }
        }
        labels.push(class);
    }
    (pixels, labels)
}

fn write_set(dir: &Path, train_labels: Option<&[u8]>) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, n, seed) in [("train", 600, 1), ("t10k", 150, 2)] {
        let (pixels, mut labels) = images(n, seed);
        if let (Some(l), "train") = (train_labels, name) {
            labels
                .iter_mut()
                .zip(l.iter().cycle())
                .for_each(|(a, b)| *a = *b);
        }
        write_idx(dir, name, [ROWS, COLS], &pixels, &labels);
    }
}

/// One set (`train` or `t10k`) under MNIST's file names: `labels.len()` images of `rows × cols`.
fn write_idx(dir: &Path, name: &str, [rows, cols]: [usize; 2], pixels: &[u8], labels: &[u8]) {
    let n = labels.len() as u32;
    std::fs::write(
        dir.join(format!("{name}-images-idx3-ubyte")),
        idx(0x803, &[n, rows as u32, cols as u32], pixels),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}-labels-idx1-ubyte")),
        idx(0x801, &[n], labels),
    )
    .unwrap();
}

fn trainer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn twelve_by_sixteen_images_in_three_classes_make_a_192_16_3_network() {
    let dir = common::temp_dir("other-data");
    let data = dir.join("data");
    write_set(&data, None);
    let (d, out) = (data.to_str().unwrap(), dir.join("out"));
    let o = out.to_str().unwrap();
    let run = trainer(&[
        "--data",
        d,
        "--hidden",
        "16",
        "--epochs",
        "3",
        "--weights",
        "both",
        "--out",
        o,
    ]);
    common::succeeded(&run);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("of 12×16 pixels, 3 classes"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["layers"], serde_json::json!([192, 16, 3]));
    for kind in ["f32", "int8", "int4"] {
        let accuracy = report[kind]["test_accuracy"].as_f64().unwrap();
        assert!(accuracy > 0.95, "{kind}: {accuracy}");
    }

    // Every command follows the file's shape.
    let model = out.join("mlp-int8.bin");
    let m = model.to_str().unwrap();
    let eval = trainer(&["eval", m, "--data", d]);
    common::succeeded(&eval);
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        text.contains("rows: true class") && text.contains("on 150 test images"),
        "{text}"
    );
    assert!(
        (common::eval_accuracy(&text) - report["int8"]["test_accuracy"].as_f64().unwrap()).abs()
            < 1e-9,
        "{text}"
    );
    let inspect = trainer(&["inspect", m, "--json"]);
    common::succeeded(&inspect);
    let facts: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(facts["shape"], serde_json::json!([192, 16, 3]), "{facts}");
    let predict = trainer(&["predict", m, HANDWRITTEN]);
    assert_eq!(predict.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&predict.stderr);
    assert!(
        stderr.contains("takes 192 inputs, not the pixels of a square image"),
        "{stderr}"
    );

    // Out as ONNX, and in again on the same data.
    let onnx = dir.join("m.onnx");
    let f32_model = out.join("mlp-f32.bin");
    common::succeeded(&trainer(&[
        "export",
        f32_model.to_str().unwrap(),
        "--format",
        "onnx",
        "-o",
        onnx.to_str().unwrap(),
    ]));
    let back = dir.join("imported");
    let import = trainer(&[
        "import",
        onnx.to_str().unwrap(),
        "--data",
        d,
        "--out",
        back.to_str().unwrap(),
    ]);
    common::succeeded(&import);
    assert_eq!(
        std::fs::read(back.join("mlp-f32.bin")).unwrap(),
        std::fs::read(&f32_model).unwrap()
    );
    // On data of another shape, import says so.
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let wrong = trainer(&[
        "import",
        onnx.to_str().unwrap(),
        "--data",
        mnist.to_str().unwrap(),
        "--out",
        dir.join("wrong").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("takes 192 inputs to 3 classes") && stderr.contains("(28×28)"),
        "{stderr}"
    );

    // The best recipe's distortions on a 12 × 16 grid.
    let best = dir.join("best");
    common::succeeded(&trainer(&[
        "--data",
        d,
        "--recipe",
        "best",
        "--hidden",
        "16",
        "--epochs",
        "2",
        "--out",
        best.to_str().unwrap(),
    ]));
}

#[test]
fn labels_that_are_not_zero_to_c_minus_one_are_refused_before_training() {
    let dir = common::temp_dir("other-labels");
    for (labels, expected) in [
        (&[0u8, 2][..], "labels run 0 to 2, but none is 1"),
        (&[0u8][..], "is none of the training set's classes 0–0"),
        (&[0u8, 70][..], "labels run 0 to 70, but none is"),
    ] {
        let data = dir.join(format!(
            "data-{}",
            labels.len() * 100 + usize::from(labels[labels.len() - 1])
        ));
        write_set(&data, Some(labels));
        let run = trainer(&[
            "--data",
            data.to_str().unwrap(),
            "--out",
            dir.join("o").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{labels:?}: {stderr}");
        assert!(stderr.contains(expected), "{labels:?}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&run.stdout).contains("Epoch"),
            "{labels:?}"
        );
    }
}

/// MNIST's digits at 14 × 14 (each 2 × 2 block averaged) train a 196-input network, and `predict`
/// reads a user's image at that size: MNIST's preparation at 14 × 14, the answer the model gives
/// on exactly those pixels.
#[test]
fn a_model_of_fourteen_by_fourteen_digits_predicts_an_image_at_its_size() {
    let mnist = common::mnist();
    let dir = common::temp_dir("fourteen");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (name, set, n) in [("train", &mnist.train, 6000), ("t10k", &mnist.test, 500)] {
        let mut pixels = Vec::with_capacity(n * 196);
        for i in 0..n {
            let image = set.image(i);
            for r in 0..14 {
                for c in 0..14 {
                    let at =
                        |dr: usize, dc: usize| u32::from(image[(2 * r + dr) * 28 + 2 * c + dc]);
                    pixels.push(((at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1) + 2) / 4) as u8);
                }
            }
        }
        write_idx(&data, name, [14, 14], &pixels, &set.labels[..n]);
    }
    let out = dir.join("out");
    let run = trainer(&[
        "--data",
        data.to_str().unwrap(),
        "--hidden",
        "64",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    common::succeeded(&run);
    let model = out.join("mlp-int8.bin");
    let predict = trainer(&["predict", model.to_str().unwrap(), HANDWRITTEN, "--json"]);
    common::succeeded(&predict);
    let answer: serde_json::Value = serde_json::from_slice(&predict.stdout).unwrap();
    let digit = &answer[0]["digit"];

    let pixels = trainer::digit::read(std::path::Path::new(HANDWRITTEN), 14).unwrap();
    assert_eq!(pixels.len(), 196);
    let bytes = trainer::output::AlignedBytes::new(&std::fs::read(&model).unwrap());
    let expected = infer_core::AnyModel::from_bytes(bytes.as_bytes())
        .unwrap()
        .classify(&pixels)
        .unwrap();
    assert_eq!(digit, &serde_json::json!(expected), "{answer}");
}
