//! Nothing lost: a failed write leaves the old file, a diverging run writes no model, and an
//! unwritable destination fails before any training.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use trainer::idx::load_mnist;
use trainer::output::{write_atomic, write_atomic_with};
use trainer::train::{HeldOut, TrainConfig, TrainError, fit};

mod common;

use common::{eval_accuracy, succeeded, temp_dir};

#[test]
fn a_write_that_dies_half_way_leaves_the_old_file_intact() {
    let dir = temp_dir("atomic");
    let model = dir.join("mlp-int8.bin");
    write_atomic(&model, b"the good old model").unwrap();

    let err = write_atomic_with(&model, |file| {
        file.write_all(b"half of a new mo")?;
        Err(std::io::Error::other("power cut"))
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("power cut"), "{err:#}");
    assert_eq!(std::fs::read(&model).unwrap(), b"the good old model");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary file left behind: {leftovers:?}"
    );

    write_atomic(&model, b"a new model").unwrap();
    assert_eq!(std::fs::read(&model).unwrap(), b"a new model");
}

#[test]
fn a_write_removes_what_killed_writes_of_that_file_left() {
    let dir = temp_dir("dead-temporaries");
    let report = dir.join("report.json");
    // Above Linux's largest process number: a writer that cannot be alive. Process 1 always is.
    let dead = dir.join(".report.json.tmp-4194305");
    let alive = dir.join(".report.json.tmp-1");
    let other = dir.join(".other.json.tmp-4194305");
    let renamed = dir.join(".report.json.tmp-4194305x");
    for file in [&dead, &alive, &other, &renamed] {
        std::fs::write(file, b"half").unwrap();
    }
    write_atomic(&report, b"{}").unwrap();
    assert!(!dead.exists() && alive.exists() && other.exists() && renamed.exists());
    assert_eq!(std::fs::read(&report).unwrap(), b"{}");
}

#[test]
fn divergence_stops_training_naming_epoch_and_batch() {
    let mnist = load_mnist(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")).unwrap();
    let config = TrainConfig {
        epochs: 2,
        learning_rate: 1e30,
        ..TrainConfig::default()
    };
    match fit(&mnist.train.head(2000), HeldOut::default(), &config, |_| {}) {
        Err(TrainError::NonFinite { epoch, batch, loss }) => {
            assert!(
                epoch >= 1 && batch >= 1 && !loss.is_finite(),
                "{epoch} {batch} {loss}"
            );
        }
        other => panic!("expected divergence, got {:?}", other.map(|f| f.history)),
    }
}

fn trainer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn a_diverging_run_exits_non_zero_and_writes_no_model() {
    let out = temp_dir("diverge");
    let report = out.join("report.json");
    let run = trainer(&[
        "--epochs",
        "1",
        "--learning-rate",
        "1e30",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("diverged") && stderr.contains("epoch 1"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "something was written"
    );
}

#[test]
fn an_unwritable_destination_fails_before_training() {
    let dir = temp_dir("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let run = trainer(&["--out", file.join("models").to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("cannot create output folder"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&run.stdout).contains("Epoch"),
        "it trained first"
    );
}

#[test]
fn out_of_range_numbers_are_usage_errors_not_crashes() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "--epochs",
            &["0", "100001", "18446744073709551615", "-1", "1.5"],
        ),
        ("--batch-size", &["0", "65536", "-3", "x"]),
        ("--learning-rate", &["0", "-0.001", "NaN", "inf", "1e39"]),
        ("--validation-split", &["1", "-0.1", "NaN", "2"]),
        ("--seed", &["-1", "18446744073709551616", "0.5"]),
        (
            "--hidden",
            &[
                "0",
                "1025",
                "256,0",
                "256,,128",
                "x",
                "1,2,3,4,5,6,7,8",
                "-4",
            ],
        ),
    ];
    for (option, values) in cases {
        for value in values {
            let flag = format!("{option}={value}");
            let run = trainer(&[&flag, "--out", "/nonexistent/never-written"]);
            assert_eq!(run.status.code(), Some(2), "{flag}");
            let message = String::from_utf8_lossy(&run.stderr);
            assert!(message.contains(option), "{flag}: {message}");
        }
    }
}

#[test]
fn a_reader_that_stops_early_ends_the_output_not_the_program() {
    use std::io::{BufRead, BufReader};
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-example/model/mlp-int8.bin");
    let out = temp_dir("pipe");
    for args in [
        vec!["inspect", model.to_str().unwrap()],
        vec![
            "--epochs",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            "--report",
        ],
    ] {
        let mut args = args;
        let report = out.join("report.json");
        if args.last() == Some(&"--report") {
            args.push(report.to_str().unwrap());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -1`: read one line, then close the pipe.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!first.is_empty());
    }
    // The training run went on to write its models.
    assert!(out.join("mlp-int8.bin").is_file());
}

#[test]
fn a_missing_file_is_said_once() {
    for args in [
        vec!["inspect", "/nonexistent/model.bin"],
        vec![
            "export",
            "/nonexistent/model.bin",
            "--format",
            "c",
            "-o",
            "/tmp/x.h",
        ],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "error: cannot read /nonexistent/model.bin: No such file or directory (os error 2)",
            "{args:?}"
        );
    }
}

#[test]
fn a_full_standard_output_is_named_in_the_error() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-example/model/mlp-int8.bin");
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full on this system
    };
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["inspect", model.to_str().unwrap()])
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write to standard output: No space left on device"),
        "{stderr}"
    );
}

#[test]
fn an_int4_file_can_keep_its_output_layer_in_int8() {
    let out = temp_dir("output-weights");
    let o = out.to_str().unwrap();
    // The best recipe's quantization-aware epochs train for the file's layer widths.
    let run = trainer(&[
        "--recipe",
        "best",
        "--epochs",
        "2",
        "--weights",
        "int4",
        "--output-weights",
        "int8",
        "--out",
        o,
        "-q",
    ]);
    succeeded(&run);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("quantization-aware (int4 with an int8 output layer)")
            && stdout.contains("int4 with an int8 output layer test accuracy"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["output_weights"], "int8", "{json}");
    let int4 = out.join("mlp-int4.bin");
    let inspect = trainer(&["inspect", int4.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("int4+int8 model")
            && text.contains("784→512, int4 weights")
            && text.contains("512→10, int8 weights"),
        "{text}"
    );
    let eval = trainer(&["eval", int4.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        (eval_accuracy(&text) - json["int4"]["test_accuracy"].as_f64().unwrap()).abs() < 1e-9,
        "{text}"
    );
}

#[test]
fn weights_choose_the_integer_files_and_every_command_reads_them() {
    let out = temp_dir("weights");
    let report = out.join("report.json");
    let (out_s, report_s) = (out.to_str().unwrap(), report.to_str().unwrap());
    let run = trainer(&[
        "--epochs",
        "1",
        "--weights",
        "int4",
        "--out",
        out_s,
        "--report",
        report_s,
        "-q",
    ]);
    succeeded(&run);
    let int4 = out.join("mlp-int4.bin");
    assert!(int4.is_file() && !out.join("mlp-int8.bin").exists());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(json.get("int8").is_none());
    let entry = &json["int4"];
    assert!(entry["test_accuracy"].as_f64().unwrap() > 0.9, "{json}");
    assert_eq!(
        entry["model_bytes"].as_u64().unwrap(),
        std::fs::metadata(&int4).unwrap().len()
    );
    assert_eq!(entry["path"].as_str().unwrap(), int4.to_str().unwrap());
    assert_eq!(json["weights"], serde_json::json!(["int4"]));

    // eval, inspect and predict take it like any other model file.
    let eval = trainer(&["eval", int4.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success() && text.contains("int4 model"),
        "{text}"
    );
    assert!((eval_accuracy(&text) - entry["test_accuracy"].as_f64().unwrap()).abs() < 1e-9);
    let inspect = trainer(&["inspect", int4.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("int4 model") && text.contains("layer 1:  784→512, int4 weights per unit"),
        "{text}"
    );

    // `both` writes both, each its own kind.
    let run = trainer(&[
        "--epochs",
        "1",
        "--weights",
        "both",
        "--out",
        out_s,
        "--report",
        report_s,
        "-q",
    ]);
    assert!(run.status.success());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(json["int8"]["model_bytes"].as_u64().unwrap() > 2 * 200_000);
    assert!(json["int4"]["model_bytes"].as_u64().unwrap() < 215_040);
}

#[test]
fn a_run_that_did_not_learn_warns_and_keeps_the_models_it_would_replace() {
    let out = temp_dir("did-not-learn");
    let model = out.join("mlp-int8.bin");
    std::fs::write(&model, b"the previous model").unwrap();
    let report = out.join("report.json");
    let args = [
        "--epochs",
        "1",
        "--learning-rate",
        "50",
        "-q",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    let run = trainer(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not learn") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&model).unwrap(), b"the previous model");
    // With --force the run's models are written, the warning still given.
    let run = trainer(&[&args[..], &["--force"]].concat());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stderr.contains("did not learn"),
        "{stderr}"
    );
    assert_ne!(std::fs::read(&model).unwrap(), b"the previous model");
}

#[test]
fn inspect_json_and_eval_plots_describe_an_existing_model() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware-example/model/mlp-int4.bin");
    let run = trainer(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(run.status.success());
    let facts: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(facts["kind"], "int4");
    assert_eq!(facts["parameters"], 784 * 512 + 512 + 512 * 10 + 10);
    assert_eq!(
        facts["bytes"].as_u64().unwrap(),
        std::fs::metadata(&model).unwrap().len()
    );
    assert_eq!(facts["shape"], serde_json::json!([784, 512, 10]));
    assert!(facts["layers"][0]["act_scale"].as_f64().unwrap() > 0.0);
    assert_eq!(facts["layers"][1]["act_scale"], serde_json::Value::Null);

    let plots = temp_dir("eval-plots");
    let run = trainer(&[
        "eval",
        model.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]);
    succeeded(&run);
    for chart in ["confusion.png", "misclassified.png"] {
        let png = std::fs::read(plots.join(chart)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{chart}");
    }
    assert!(
        !plots.join("history.png").exists(),
        "no history without a training run"
    );
}

#[test]
fn a_link_stays_a_link_and_a_non_file_is_written_not_replaced() {
    let dir = temp_dir("links");
    let target = dir.join("real.json");
    std::fs::write(&target, b"old").unwrap();
    let link = dir.join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write_atomic(&link, b"new").unwrap();
    assert!(link.is_symlink(), "the link was replaced by a file");
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    // A FIFO: written through (its reader gets the bytes), still a FIFO afterwards. The read end
    // is opened first, without blocking (O_NONBLOCK), so a regression fails instead of hanging.
    let fifo = dir.join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(0o4000) // O_NONBLOCK on Linux
            .open(&fifo)
            .unwrap()
    };
    write_atomic(&fifo, b"through the pipe").unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut reader, &mut got);
    assert_eq!(got, b"through the pipe");
    assert!(!std::fs::metadata(&fifo).unwrap().is_file());
}

/// `--hidden 32,16`: a network with two hidden layers, trained, written, and read by every
/// command as any other model.
#[test]
fn two_hidden_layers_train_and_every_command_reads_them() {
    let out = temp_dir("two-hidden");
    let out_s = out.to_str().unwrap();
    let run = trainer(&[
        "--epochs",
        "1",
        "--hidden",
        "32,16",
        "--weights",
        "both",
        "--out",
        out_s,
        "-q",
    ]);
    succeeded(&run);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["layers"], serde_json::json!([784, 32, 16, 10]));
    for (file, kind) in [
        ("mlp-int8.bin", "int8"),
        ("mlp-int4.bin", "int4"),
        ("mlp-f32.bin", "f32"),
    ] {
        let model = out.join(file);
        let reported = json[kind]["test_accuracy"].as_f64().unwrap();
        assert!(reported > 0.85, "{kind}: {reported}");
        let eval = trainer(&["eval", model.to_str().unwrap()]);
        succeeded(&eval);
        let text = String::from_utf8_lossy(&eval.stdout);
        assert!((eval_accuracy(&text) - reported).abs() < 1e-9, "{text}");
        let inspect = trainer(&["inspect", model.to_str().unwrap(), "--json"]);
        succeeded(&inspect);
        let facts: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(facts["shape"], serde_json::json!([784, 32, 16, 10]));
        assert_eq!(
            facts["parameters"],
            784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
        );
        let digit =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/handwritten-3.pgm");
        let predict = trainer(&["predict", model.to_str().unwrap(), digit.to_str().unwrap()]);
        succeeded(&predict);
    }
}
