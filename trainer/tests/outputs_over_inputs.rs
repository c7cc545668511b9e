//! No command writes over what it reads: a model, the data folder, an ONNX file, under any
//! spelling (`./`, a symbolic link, a hard link); and no output is a device or a FIFO. Each is
//! refused before any work, the input left as it was.

use std::path::Path;
use std::process::Command;

mod common;

fn trainer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn outputs_over_inputs_and_devices_are_refused_before_any_work() {
    let dir = common::temp_dir("outputs-over-inputs");
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-example/model/mlp-int8.bin");
    let model = dir.join("m.bin");
    std::fs::copy(&committed, &model).unwrap();
    let original = std::fs::read(&model).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let link = dir.join("link.bin");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let hard = dir.join("hard.bin");
    std::fs::hard_link(&model, &hard).unwrap();
    let m = model.to_str().unwrap();
    let dotted = format!("{}/./m.bin", dir.display());
    let d = data.to_str().unwrap();
    let test_images = data.join("t10k-images-idx3-ubyte.gz");
    let run_out = dir.join("o");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["export", m, "--format", "c", "-o", m], "is the model"),
        (
            vec!["export", m, "--format", "onnx", "-o", &dotted],
            "is the model",
        ),
        (
            vec![
                "export",
                m,
                "--format",
                "onnx",
                "-o",
                link.to_str().unwrap(),
            ],
            "is the model",
        ),
        (
            vec!["export", m, "--format", "c", "-o", hard.to_str().unwrap()],
            "is the model",
        ),
        (
            vec!["export", m, "--format", "c", "-o", "/dev/full"],
            "not a regular file or folder",
        ),
        (vec!["eval", m, "--data", d, "--logits", m], "is the model"),
        (
            vec![
                "eval",
                m,
                "--data",
                d,
                "--logits",
                test_images.to_str().unwrap(),
            ],
            "is inside the data folder",
        ),
        (
            vec!["eval", m, "--data", d, "--plots", dir.to_str().unwrap()],
            "holds the model",
        ),
        (
            vec!["demo", m, "--write", dir.to_str().unwrap()],
            "holds the model",
        ),
        (
            vec!["import", m, "--data", d, "--out", dir.to_str().unwrap()],
            "holds the ONNX file",
        ),
        (
            vec![
                "--data",
                d,
                "--epochs",
                "1",
                "--out",
                run_out.to_str().unwrap(),
                "--report",
                "/dev/full",
            ],
            "not a regular file or folder",
        ),
        // A folder where a file is written is named as such, not blamed on what it holds.
        (
            vec!["--data", d, "--epochs", "1", "--report", "/"],
            "--report / is a folder: name a file",
        ),
        (
            vec!["export", m, "--format", "c", "-o", dir.to_str().unwrap()],
            "is a folder: name a file",
        ),
        (
            vec!["eval", m, "--data", d, "--plots", m],
            "is a file: name a folder",
        ),
    ];
    for (args, expected) in cases {
        let run = trainer(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&run.stdout).contains("Epoch"),
            "{args:?} trained"
        );
        assert_eq!(
            std::fs::read(&model).unwrap(),
            original,
            "{args:?} changed the model"
        );
    }
    assert!(!run_out.exists());
}
