//! A model file from disk, integer or f32 (told apart by its header), as one classifier.

use std::path::Path;

use anyhow::{Context, Result};
use infer_core::format::FormatError;

use crate::output::AlignedBytes;

/// A model file's bytes, in aligned memory; validated by [`ModelFile::classifier`].
#[derive(Debug, Clone)]
pub struct ModelFile {
    bytes: AlignedBytes,
}

/// A validated model of either kind (infer-core's).
pub use infer_core::AnyModel as Classifier;

/// A network's shape as people write it: its widths joined by hyphens (`784-512-10`).
pub fn shape_name(widths: &[usize]) -> String {
    widths
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("-")
}

/// What a chart or a summary calls a model file: `mlp-int8.bin (int8, 784-512-10)`.
pub fn describe(file: &Path, kind: &str, widths: &[usize]) -> String {
    let name = file.file_name().unwrap_or(file.as_os_str());
    format!(
        "{} ({kind}, {})",
        name.to_string_lossy(),
        shape_name(widths)
    )
}

impl ModelFile {
    /// Reads a file.
    pub fn read(path: &Path) -> Result<Self> {
        Ok(Self {
            bytes: AlignedBytes::read(path)?,
        })
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_bytes()
    }

    /// Validates the file as whichever kind it says it is.
    pub fn classifier(&self) -> Result<Classifier<'_>, FormatError> {
        Classifier::from_bytes(self.bytes())
    }

    /// [`Self::classifier`] with the file named in the error (and, for what looks like an ONNX
    /// file, the command that reads one).
    pub fn open(&self, path: &Path) -> Result<Classifier<'_>> {
        self.classifier().with_context(|| {
            let onnx = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
                || looks_like_onnx(self.bytes());
            let hint = if onnx {
                format!(
                    " (it looks like an ONNX model: `trainer import {}` converts one)",
                    path.display()
                )
            } else {
                String::new()
            };
            format!("{} is not a usable model file{hint}", path.display())
        })
    }
}

/// Whether `bytes` start as an ONNX `ModelProto` does: field 1 (`ir_version`, a varint, tag
/// 0x08) and not this format's magic.
fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x08) && bytes.get(1).is_some_and(|&v| (3..=20).contains(&v))
}
