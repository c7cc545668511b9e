//! What several test files start from: the shipped MNIST, and a network trained briefly with the
//! tutorial recipe.
#![allow(dead_code)] // Each test file uses its part.

use std::path::Path;

use trainer::idx::{Dataset, Mnist, load_mnist};
use trainer::mlp::Mlp;
use trainer::train::{HeldOut, TrainConfig, fit};

/// The MNIST copy in `data/mnist`.
pub fn mnist() -> Mnist {
    load_mnist(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")).unwrap()
}

/// The tutorial recipe's network after `epochs` epochs on `train`.
pub fn tutorial_net(train: &Dataset, epochs: usize) -> Mlp {
    let config = TrainConfig {
        epochs,
        ..TrainConfig::default()
    };
    fit(train, HeldOut::default(), &config, |_| {}).unwrap().net
}

/// The `accuracy: …` figure of `trainer eval`'s output.
pub fn eval_accuracy(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("accuracy: "))
        .unwrap_or_else(|| panic!("no accuracy line in {stdout}"))
        .parse()
        .unwrap()
}

/// Checks that a finished command succeeded (showing its stderr if not).
pub fn succeeded(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh, empty folder for one test: `name` and this process make it unique.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trainer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
