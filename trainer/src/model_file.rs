//! A model file from disk, int8, int4 or f32 (told apart by its kind byte), as one classifier.

use std::path::Path;

use anyhow::{Context, Result};
use infer_core::format::{FormatError, ModelKind, peek_kind};
use infer_core::{CLASSES, F32Model, INPUTS, Int4Model, Int8Model};

use crate::output::AlignedBytes;

/// A model file's bytes, in aligned memory; validated by [`ModelFile::classifier`].
#[derive(Debug, Clone)]
pub struct ModelFile {
    bytes: AlignedBytes,
}

/// A validated model of either kind.
#[derive(Debug, Clone, Copy)]
pub enum Classifier<'a> {
    /// The integer-only network, int8 weights.
    Int8(Int8Model<'a>),
    /// The integer-only network, int4 weights.
    Int4(Int4Model<'a>),
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
        match peek_kind(self.bytes())? {
            ModelKind::F32 => F32Model::from_bytes(self.bytes()).map(Classifier::F32),
            ModelKind::Int4 => Int4Model::from_bytes(self.bytes()).map(Classifier::Int4),
            // `ModelKind` may grow: an int8 reader reports any other kind itself.
            _ => Int8Model::from_bytes(self.bytes()).map(Classifier::Int8),
        }
    }

    /// [`Self::classifier`] with the file named in the error.
    pub fn open(&self, path: &Path) -> Result<Classifier<'_>> {
        self.classifier()
            .with_context(|| format!("{} is not a usable model file", path.display()))
    }
}

impl Classifier<'_> {
    /// "int8", "int4" or "f32".
    pub fn kind(&self) -> &'static str {
        match self {
            Classifier::Int8(_) => "int8",
            Classifier::Int4(_) => "int4",
            Classifier::F32(_) => "f32",
        }
    }

    /// The digit.
    pub fn classify(&self, image: &[u8; INPUTS]) -> u8 {
        match self {
            Classifier::Int8(m) => m.predict(image).class,
            Classifier::Int4(m) => m.predict(image).class,
            Classifier::F32(m) => m.predict(image),
        }
    }

    /// The ten logits in real units (for an integer model, each class's accumulator at its
    /// scale).
    pub fn logits(&self, image: &[u8; INPUTS]) -> [f32; CLASSES] {
        fn real<B: infer_core::format::Bits>(
            m: &infer_core::QuantModel<'_, B>,
            image: &[u8; INPUTS],
        ) -> [f32; CLASSES] {
            let p = m.predict(image);
            std::array::from_fn(|c| p.logits[c] as f32 * m.logit_scale(c))
        }
        match self {
            Classifier::Int8(m) => real(m, image),
            Classifier::Int4(m) => real(m, image),
            Classifier::F32(m) => m.logits(image),
        }
    }

    /// The digit and the ten probabilities.
    pub fn probabilities(&self, image: &[u8; INPUTS]) -> (u8, [f32; CLASSES]) {
        match self {
            Classifier::Int8(m) => {
                let p = m.predict(image);
                (p.class, m.probabilities(&p))
            }
            Classifier::Int4(m) => {
                let p = m.predict(image);
                (p.class, m.probabilities(&p))
            }
            Classifier::F32(m) => (m.predict(image), m.probabilities(image)),
        }
    }
}
