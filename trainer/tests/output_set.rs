//! The output folder commits as one, tested on the real binary: SIGKILL at many points of the
//! write phase, concurrent runs, and destinations that collide or cannot be written, all caught
//! before training.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trainer::output_set::{Manifest, OutputSet};

mod common;

use common::{succeeded, temp_dir};

/// A small MNIST (the first `train` and `test` digits of the real one) in `dir`, as raw IDX
/// files: a run on it takes a fraction of a second, most of it writing.
fn tiny_mnist(dir: &Path, train: usize, test: usize) {
    let mnist = common::mnist();
    std::fs::create_dir_all(dir).unwrap();
    for (set, n, images, labels) in [
        (
            &mnist.train,
            train,
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
        ),
        (
            &mnist.test,
            test,
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
    ] {
        let count = (n as u32).to_be_bytes();
        let mut bytes = [
            &[0, 0, 8, 3][..],
            &count,
            &28u32.to_be_bytes(),
            &28u32.to_be_bytes(),
        ]
        .concat();
        bytes.extend_from_slice(&set.images[..n * 784]);
        std::fs::write(dir.join(images), bytes).unwrap();
        let bytes = [&[0, 0, 8, 1][..], &count, &set.labels[..n]].concat();
        std::fs::write(dir.join(labels), bytes).unwrap();
    }
}

fn trainer(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// A run's arguments on the tiny data, writing int8, int4, f32, plots and report into `out`.
fn run_args(data: &Path, out: &Path, seed: u64) -> Vec<String> {
    let plots = out.join("plots");
    [
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
        "--epochs",
        "1",
        "--weights",
        "both",
        "--force",
        "-q",
        "--seed",
        &seed.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Spawns a run and returns it once it has printed the f32 test accuracy: the write phase
/// (model files written and read back, quantized files, plots, report, commit) follows; and the
/// rest of its output, line by line.
fn start_writing(
    args: &[String],
) -> (
    std::process::Child,
    Instant,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = trainer(&[])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let status = child.wait();
            panic!("the run ended before writing: {status:?}");
        };
        if line.starts_with("test accuracy:") {
            // The rest is read by a thread, so the run never blocks on its output.
            let (send, receive) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let _ = send.send(line);
                }
            });
            return (child, Instant::now(), receive);
        }
    }
}

#[test]
fn a_kill_anywhere_in_the_write_phase_leaves_one_runs_complete_set() {
    let dir = temp_dir("kill");
    let (data, out) = (dir.join("data"), dir.join("out"));
    tiny_mnist(&data, 512, 200);

    // The old set, and how long a write phase lasts (the shortest of three runs): until the run
    // says what it wrote, after the commit.
    let mut phase = Duration::MAX;
    for seed in [1, 2, 3] {
        let (mut child, writing, rest) = start_writing(&run_args(&data, &out, seed));
        let said = rest.iter().find(|l| l.starts_with("wrote ")).unwrap();
        phase = phase.min(writing.elapsed());
        assert!(child.wait().unwrap().success(), "{said}");
    }
    let mut current = Manifest::read(&out).unwrap();
    current.check(&out).unwrap();

    // Kill points spread over the phase, and packed around its end, where the commit is.
    const KILLS: u32 = 40;
    let (mut kept_old, mut got_new) = (0, 0);
    for k in 0..KILLS {
        let at = if k % 2 == 0 {
            phase * k / KILLS
        } else {
            phase.mul_f64(0.8 + 0.3 * f64::from(k) / f64::from(KILLS))
        };
        let (mut child, writing, _) = start_writing(&run_args(&data, &out, 10 + u64::from(k)));
        std::thread::sleep(at.saturating_sub(writing.elapsed()));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // Whatever the moment: --out is one run's complete set, every file as its run wrote it.
        let seen = Manifest::read(&out).unwrap_or_else(|e| panic!("kill {k} at {at:?}: {e:#}"));
        seen.check(&out)
            .unwrap_or_else(|e| panic!("kill {k} at {at:?}: {e:#}"));
        let expected = [
            "manifest.json",
            "mlp-f32.bin",
            "mlp-int4.bin",
            "mlp-int8.bin",
        ];
        assert_eq!(
            names(&out),
            [&expected[..], &["plots", "report.json"]].concat()
        );
        if seen == current {
            kept_old += 1;
        } else {
            got_new += 1;
            current = seen;
        }
    }
    eprintln!(
        "{KILLS} kills over a {phase:?} write phase: {kept_old} kept the old set, {got_new} left the new one"
    );
    assert!(kept_old > 0, "no kill landed before a commit");

    // The next run cleans up what the killed ones left: the folder and its set, nothing else.
    succeeded(
        &trainer(&[])
            .args(run_args(&data, &out, 99))
            .output()
            .unwrap(),
    );
    assert_eq!(names(&dir), ["data", "out"]);
    let last = Manifest::read(&out).unwrap();
    last.check(&out).unwrap();
    assert_ne!(last, current);
}

#[test]
fn concurrent_runs_into_one_folder_do_not_interleave_and_into_two_both_succeed() {
    let dir = temp_dir("concurrent");
    let data = dir.join("data");
    tiny_mnist(&data, 256, 100);
    let out = dir.join("out");

    // A run holding the folder: a second one stops before training, naming it.
    let held = OutputSet::begin(&out, 0).unwrap();
    let run = trainer(&[])
        .args(run_args(&data, &out, 1))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another run (process {}) is writing to {}",
            std::process::id(),
            out.display()
        )),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&run.stdout).contains("Epoch"));
    drop(held);

    // Runs started together into neighbouring folders (one parent) all succeed.
    let children: Vec<_> = (0..4)
        .map(|i| {
            trainer(&[])
                .args(run_args(&data, &dir.join(format!("out{i}")), i))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        succeeded(&child.wait_with_output().unwrap());
    }
    for i in 0..4 {
        let out = dir.join(format!("out{i}"));
        Manifest::read(&out).unwrap().check(&out).unwrap();
    }
    assert_eq!(names(&dir), ["data", "out0", "out1", "out2", "out3"]);
}

#[test]
fn destinations_that_collide_or_cannot_be_written_fail_before_training() {
    let dir = temp_dir("preflight");
    let data = dir.join("data");
    tiny_mnist(&data, 256, 100);
    let out = dir.join("out");
    let base = run_args(&data, &out, 1);
    let model = out.join("mlp-int8.bin");
    let plots = out.join("plots");
    let plot = plots.join("confusion.png");
    let foreign = dir.join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let into_foreign = run_args(&data, &foreign, 1);
    let training_images = data.join("train-images-idx3-ubyte");
    let cases: [(&[String], Vec<&str>, &str); 7] = [
        (
            &base,
            vec!["--report", model.to_str().unwrap()],
            "are one file",
        ),
        (
            &base,
            vec!["--report", plot.to_str().unwrap()],
            "are one file",
        ),
        (
            &base,
            vec!["--report", plots.to_str().unwrap()],
            "a folder of the other",
        ),
        (
            &base,
            vec!["--report", "/proc/trainer-report.json"],
            "cannot write in /proc",
        ),
        (
            &base,
            vec!["--report", foreign.to_str().unwrap()],
            "is a folder",
        ),
        (&into_foreign, vec![], "did not write (notes.txt)"),
        (
            &base,
            vec!["--report", training_images.to_str().unwrap()],
            "is inside the data folder",
        ),
    ];
    for (args, extra, expected) in cases {
        let run = trainer(&[]).args(args).args(&extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&run.stdout).contains("Epoch"),
            "{extra:?} trained"
        );
        assert!(!out.exists(), "{extra:?} wrote {out:?}");
    }
    assert_eq!(std::fs::read(foreign.join("notes.txt")).unwrap(), b"mine");
    assert!(
        trainer::idx::load_mnist(&data).is_ok(),
        "the data was overwritten"
    );
    assert_eq!(names(&dir), ["data", "foreign"]);
}
