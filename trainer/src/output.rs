//! What a training run leaves behind: the weights and the JSON report, each written atomically.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::train::EpochStats;

/// The int8 model's file name, as the firmware embeds it.
pub const INT8_FILE: &str = "mlp-int8.bin";
/// The int4 model's file name, as the firmware embeds it for 256 KB parts.
pub const INT4_FILE: &str = "mlp-int4.bin";
/// The f32 model's file name.
pub const F32_FILE: &str = "mlp-f32.bin";
/// The largest model file read: 256 MiB, several times the largest network the trainer fits (7
/// hidden layers of 1024 units in f32 is 28 MB).
pub const MAX_MODEL_BYTES: u64 = 256 << 20;

/// A regular file of at most `cap` bytes (`what` names its kind in the error), with the file's
/// name in every error: the one careful read the commands share (see [`crate::idx::file`]).
pub fn read_capped(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>> {
    crate::idx::file::read_regular(path, cap, what)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// The report's file name in a run's folder.
pub const REPORT_FILE: &str = "report.json";

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never half
/// of one: a temporary file in the same folder, flushed to disk, then renamed over `path`.
///
/// A symbolic link is followed: the file it points to is replaced, the link stays. What is not a
/// file at all — `/dev/stdout`, a pipe, a device — is written to directly (renaming over it would
/// replace it with a file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// [`write_atomic`] with the writing done by `write` (which tests use to fail half-way, as a crash
/// would).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let resolved;
    let path = match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            // A reader that closed its pipe early has all it wanted (as `| head` does).
            return match write(&mut file) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.with_context(|| format!("cannot write {}", path.display())),
            };
        }
        Ok(_) if path.is_symlink() => {
            resolved = std::fs::canonicalize(path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            resolved.as_path()
        }
        _ => path,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("not a file path")?;
    remove_dead_temporaries(dir, &format!(".{}.tmp-", name.to_string_lossy()));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let attempt = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    attempt()
        .inspect_err(|_| {
            // Best effort: the write error is what the user needs to see.
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Removes the files named `{prefix}PID` or `{prefix}PID-…` in `dir` whose process no longer
/// runs: what a write killed half-way leaves (`.NAME.tmp-PID`, a probe). Where processes cannot be
/// looked up, nothing is removed.
pub(crate) fn remove_dead_temporaries(dir: &Path, prefix: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let pid = file
            .to_str()
            .and_then(|f| f.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let dead = |&pid: &u32| pid != std::process::id() && !proc.join(pid.to_string()).exists();
        if pid.filter(dead).is_some() {
            // Best effort: the write itself is what matters.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `bytes` copied into 64-byte-aligned memory: infer-core's zero-copy views need the weight
/// sections word-aligned (a plain `Vec<u8>` only promises alignment 1), and its kernels are
/// fastest with each 64-byte weight tile in one cache line.
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    lines: Vec<CacheLine>,
    len: usize,
}

/// 64 bytes at a 64-byte boundary.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct CacheLine([u8; 64]);

// SAFETY: `CacheLine` is 64 bytes of `u8` with alignment 64: no padding, every bit pattern valid.
unsafe impl bytemuck::Zeroable for CacheLine {}
// SAFETY: as above; `Copy` and `'static`.
unsafe impl bytemuck::Pod for CacheLine {}

impl AlignedBytes {
    /// Copies `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut lines = vec![CacheLine([0; 64]); bytes.len().div_ceil(64)];
        bytemuck::cast_slice_mut::<CacheLine, u8>(&mut lines)[..bytes.len()].copy_from_slice(bytes);
        Self {
            lines,
            len: bytes.len(),
        }
    }

    /// Reads a whole model file: a regular file of at most [`MAX_MODEL_BYTES`].
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = read_capped(path, MAX_MODEL_BYTES, "a model file")?;
        Ok(Self::new(&bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<CacheLine, u8>(&self.lines)[..self.len]
    }
}

/// A model file written by the run.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// Test accuracy of the model as loaded and run by infer-core, 0–1.
    pub test_accuracy: f64,
    /// File size.
    pub model_bytes: usize,
    /// Where it was written.
    pub path: String,
}

/// The paths of a run's model files, integer ones first, as its summary line lists them.
pub fn written_files(integer: [&Option<ModelReport>; 2], f32: &ModelReport) -> String {
    integer
        .into_iter()
        .flatten()
        .chain([f32])
        .map(|m| m.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
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
    /// The seed of the initial weights, the shuffles and the distortions.
    pub seed: u64,
    /// The recipe trained with.
    pub recipe: crate::train::Recipe,
    /// Fraction of the training set held out for validation (the last images).
    pub validation_split: f64,
    /// The epoch whose weights were kept (the last one, or the lowest val_loss under `best`).
    pub best_epoch: usize,
    /// Where the data came from.
    pub data_dir: String,
    /// Images per step.
    pub batch_size: usize,
    /// RMSprop step size.
    pub learning_rate: f32,
    /// The integer model widths written (`--weights`).
    pub weights: Vec<crate::quantize::Width>,
    /// Their output layer's width, where it differs from the file's (`--output-weights`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_weights: Option<crate::quantize::Width>,
    /// The network's widths: inputs, each hidden layer (`--hidden`), classes.
    pub layers: Vec<usize>,
    /// The int8 model file, evaluated through infer-core (absent with `--weights int4`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8: Option<ModelReport>,
    /// The int4 model file, evaluated through infer-core (with `--weights int4` or `both`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int4: Option<ModelReport>,
    /// The f32 model file, evaluated through infer-core.
    pub f32: ModelReport,
    /// What pruning did (`--density`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruning: Option<PruningReport>,
}

/// The JSON report of `trainer import`: where the model came from and what it became. Keys are
/// stable, as [`Report`]'s.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The ONNX file as given.
    pub source: String,
    /// Its SHA-256, hex.
    pub source_sha256: String,
    /// Its size.
    pub source_bytes: usize,
    /// The graph's dense layers' widths: inputs, each hidden layer, classes.
    pub layers: Vec<usize>,
    /// Input scaling folded into the first layer (nodes of the graph, `--input-mean`/`--input-std`).
    pub input_scaling: Vec<String>,
    /// Where the calibration and test images came from.
    pub data_dir: String,
    /// The integer model widths written (`--weights`).
    pub weights: Vec<crate::quantize::Width>,
    /// Their output layer's width, where it differs from the file's (`--output-weights`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_weights: Option<crate::quantize::Width>,
    /// The int8 model file, evaluated through infer-core (absent with `--weights int4`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8: Option<ModelReport>,
    /// The int4 model file (with `--weights int4` or `both`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int4: Option<ModelReport>,
    /// The f32 model file, evaluated through infer-core.
    pub f32: ModelReport,
    /// What `--out` held before, replaced by this set.
    pub replaced: Vec<String>,
    /// Wall time of the whole import.
    pub total_seconds: f64,
}

/// A pruned run: the densities reached and the test accuracy at each stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruningReport {
    /// The density asked for (`--density`): the fraction of each hidden layer's blocks of 16
    /// units × 4 inputs kept.
    pub density: f32,
    /// How much a block's live fraction counted against it (`--live-cost`).
    pub live_cost: f64,
    /// The density each hidden layer reached, first to last (the output layer stays dense).
    pub layers: Vec<f32>,
    /// Test accuracy of the f32 network when pruning started.
    pub accuracy_before_pruning: f64,
    /// Test accuracy of the f32 network after pruning and fine-tuning (before the
    /// quantization-aware epochs).
    pub accuracy_after_pruning: f64,
    /// Test accuracy of each integer model file written (after the quantization-aware epochs,
    /// if the recipe has them), by width.
    pub accuracy_after_qat: std::collections::BTreeMap<String, f64>,
}
