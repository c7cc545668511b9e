//! A model file from disk, integer or f32 (told apart by its header), as one classifier.

use std::path::Path;

use anyhow::{Context, Result};
use infer_core::format::{FormatError, Header, peek};
use infer_core::{F32Model, QuantModel};

use crate::output::AlignedBytes;

/// A model file's bytes, in aligned memory; validated by [`ModelFile::classifier`].
#[derive(Debug, Clone)]
pub struct ModelFile {
    bytes: AlignedBytes,
}

/// A validated model of either kind.
#[derive(Debug, Clone)]
// The integer layers' views are larger than the f32 ones; a model is made once per command.
#[allow(clippy::large_enum_variant)]
pub enum Classifier<'a> {
    /// The integer-only network (each layer int8 or int4).
    Quant(QuantModel<'a>),
    /// The float network.
    F32(F32Model<'a>),
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
        if peek(self.bytes())?.is_f32() {
            F32Model::from_bytes(self.bytes()).map(Classifier::F32)
        } else {
            QuantModel::from_bytes(self.bytes()).map(Classifier::Quant)
        }
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

impl Classifier<'_> {
    /// The file's header: shape and weight kinds.
    pub fn header(&self) -> &Header {
        match self {
            Classifier::Quant(m) => m.header(),
            Classifier::F32(m) => m.header(),
        }
    }

    /// "int8", "int4", "int4+int8" or "f32".
    pub fn kind(&self) -> &'static str {
        self.header().kind_name()
    }

    /// Inputs the model takes.
    pub fn inputs(&self) -> usize {
        self.header().inputs()
    }

    /// Classes it tells apart.
    pub fn classes(&self) -> usize {
        self.header().classes()
    }

    /// The class of one input (of [`Self::inputs`] bytes).
    pub fn classify(&self, input: &[u8]) -> Result<u8> {
        Ok(match self {
            Classifier::Quant(m) => m.predict(input)?.class,
            Classifier::F32(m) => m.predict(input)?,
        })
    }

    /// The logits in real units (for an integer model, each class's accumulator at its scale).
    pub fn logits(&self, input: &[u8]) -> Result<Vec<f32>> {
        Ok(match self {
            Classifier::Quant(m) => {
                let p = m.predict(input)?;
                (0..p.logits.len())
                    .map(|c| p.logits[c] as f32 * m.logit_scale(c))
                    .collect()
            }
            Classifier::F32(m) => m.logits(input)?.to_vec(),
        })
    }

    /// The class and the probabilities.
    pub fn probabilities(&self, input: &[u8]) -> Result<(u8, Vec<f32>)> {
        Ok(match self {
            Classifier::Quant(m) => {
                let p = m.predict(input)?;
                (p.class, m.probabilities(&p).to_vec())
            }
            Classifier::F32(m) => (m.predict(input)?, m.probabilities(input)?.to_vec()),
        })
    }
}
