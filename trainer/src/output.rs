//! What a training run leaves behind: the weights and the JSON report, each written atomically.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::mlp::Mlp;
use crate::train::EpochStats;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never half
/// of one: a temporary file in the same folder, flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("not a file path")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            // Best effort: the write error is what the user needs to see.
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The trained f32 parameters as saved by the trainer (postcard), Keras's layout:
/// `w1[input * hidden + j]` is the weight from input pixel `input` to hidden unit `j`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SavedWeights {
    /// Input width (784).
    pub inputs: u32,
    /// Hidden width.
    pub hidden: u32,
    /// Classes (10).
    pub classes: u32,
    /// `inputs × hidden`, row-major.
    pub w1: Vec<f32>,
    /// `hidden`.
    pub b1: Vec<f32>,
    /// `hidden × classes`, row-major.
    pub w2: Vec<f32>,
    /// `classes`.
    pub b2: Vec<f32>,
}

impl From<&Mlp> for SavedWeights {
    fn from(net: &Mlp) -> Self {
        // nalgebra is column-major and `w1` is `hidden × inputs`: its storage is already
        // `inputs × hidden` row-major.
        Self {
            inputs: net.w1.ncols() as u32,
            hidden: net.w1.nrows() as u32,
            classes: net.w2.ncols() as u32,
            w1: net.w1.as_slice().to_vec(),
            b1: net.b1.as_slice().to_vec(),
            w2: net.w2.transpose().as_slice().to_vec(),
            b2: net.b2.as_slice().to_vec(),
        }
    }
}

/// Test-set figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TestStats {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction correct, 0–1.
    pub accuracy: f64,
}

/// The JSON report of one run. Keys are stable; later features add keys, never rename them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One entry per epoch.
    pub epochs: Vec<EpochStats>,
    /// Test-set loss and accuracy of the f32 network.
    pub test: TestStats,
    /// Wall time of the training epochs.
    pub fit_seconds: f64,
    /// Wall time of the whole run: loading, training, evaluation and writing.
    pub total_seconds: f64,
    /// The seed of the initial weights and the shuffles.
    pub seed: u64,
    /// Where the data came from.
    pub data_dir: String,
    /// Images per step.
    pub batch_size: usize,
    /// RMSprop step size.
    pub learning_rate: f32,
    /// The saved f32 weights.
    pub weights_path: String,
}
