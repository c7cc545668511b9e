//! The steps every command that makes model files shares: write a file, read it back from disk
//! as a user would, and evaluate it on the test set.

use std::path::Path;

use anyhow::{Context, Result};
use infer_core::format::Bits;
use infer_core::{F32Model, INPUTS, Int4Model, Int8Model, QuantModel};

use crate::idx::Dataset;
use crate::metrics::Confusion;
use crate::mlp::Mlp;
use crate::output::{AlignedBytes, ModelReport, write_atomic};
use crate::quantize::{QuantWeights, Width, encode_f32, encode_quant};

/// What `classify` says about every image of `data`.
pub fn predictions(data: &Dataset, classify: impl Fn(&[u8; INPUTS]) -> u8) -> Vec<u8> {
    data.images
        .as_chunks::<INPUTS>()
        .0
        .iter()
        .map(classify)
        .collect()
}

/// What an integer model says about every test image.
pub fn classify_test<B: Bits>(model: &QuantModel<'_, B>, test: &Dataset) -> Vec<u8> {
    predictions(test, |image| model.predict(image).class)
}

/// Writes a model file atomically, then loads it back from disk, as a user would, and classifies
/// the test set with it; returns the report entry and the predictions.
pub fn write_model(
    path: &Path,
    bytes: &[u8],
    test: &Dataset,
    classify_all: impl FnOnce(&[u8]) -> Result<Vec<u8>, infer_core::FormatError>,
) -> Result<(ModelReport, Vec<u8>)> {
    write_atomic(path, bytes)?;
    let loaded = AlignedBytes::read(path)?;
    let predictions = classify_all(loaded.as_bytes())
        .with_context(|| format!("{} does not load back", path.display()))?;
    let report = ModelReport {
        test_accuracy: Confusion::new(&test.labels, &predictions).accuracy(),
        model_bytes: bytes.len(),
        path: path.display().to_string(),
    };
    Ok((report, predictions))
}

/// The f32 model file of `net`, written to `path`, read back and evaluated on `test`.
pub fn write_f32(path: &Path, net: &Mlp, test: &Dataset) -> Result<ModelReport> {
    let (report, _) = write_model(path, &encode_f32(net)?, test, |bytes| {
        let model = F32Model::from_bytes(bytes)?;
        Ok(predictions(test, |image| model.predict(image)))
    })?;
    Ok(report)
}

/// The integer model file of `q` (int8 or int4), written to `path`, read back and evaluated on
/// `test`; with the predictions it made.
pub fn write_quant(
    path: &Path,
    q: &QuantWeights,
    test: &Dataset,
) -> Result<(ModelReport, Vec<u8>)> {
    write_model(path, &encode_quant(q)?, test, |bytes| match q.width {
        Width::Int8 => Int8Model::from_bytes(bytes).map(|m| classify_test(&m, test)),
        Width::Int4 => Int4Model::from_bytes(bytes).map(|m| classify_test(&m, test)),
    })
}
