//! `trainer inspect`: what a model file holds.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use infer_core::format::Bits;
use infer_core::{INPUTS, Kernel, QuantModel};
use trainer::model_file::{Classifier, ModelFile};

use super::emit;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A model file.
    model: PathBuf,
    /// One JSON document on stdout instead of text, for scripts.
    #[arg(long)]
    json: bool,
}

/// Weights and biases of the 784-512-10 network.
const PARAMETERS: usize = INPUTS * infer_core::HIDDEN
    + infer_core::HIDDEN
    + infer_core::HIDDEN * infer_core::CLASSES
    + infer_core::CLASSES;

pub(crate) fn inspect(args: InspectArgs) -> Result<()> {
    let file = ModelFile::read(&args.model)?;
    let bytes = file.bytes();
    let kind = infer_core::format::peek_kind(bytes)
        .with_context(|| format!("{} is not a usable model file", args.model.display()))?;
    let model = file.open(&args.model)?;
    let crc = bytes
        .last_chunk::<4>()
        .map_or(0, |c| u32::from_le_bytes(*c));
    let mut facts = serde_json::json!({
        "file": args.model.display().to_string(),
        "bytes": bytes.len(),
        "format_version": infer_core::format::VERSION,
        "kind": kind.name(),
        "status": "valid",
        "crc32": format!("{crc:#010x}"),
        "shape": [INPUTS, infer_core::HIDDEN, infer_core::CLASSES],
        "parameters": PARAMETERS,
    });
    let range = |v: Vec<f32>| {
        let min = v.iter().copied().fold(f32::INFINITY, f32::min);
        let max = v.iter().copied().fold(0.0f32, f32::max);
        serde_json::json!({ "min": min, "max": max })
    };
    fn quant<B: Bits>(
        m: &QuantModel<'_, B>,
        range: impl Fn(Vec<f32>) -> serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({
            "hidden_scale": m.hidden_scale(),
            "w1_scale": range(m.w1_scales().collect()),
            "w2_scale": range(m.w2_scales().collect()),
            "kernel": Kernel::best().name(),
        })
    }
    let details = match model {
        Classifier::Int8(m) => Some(quant(&m, range)),
        Classifier::Int4(m) => Some(quant(&m, range)),
        Classifier::F32(_) => None,
    };
    if let (Some(d), Some(f)) = (&details, facts.as_object_mut()) {
        f.extend(
            d.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    if args.json {
        return emit(&format!("{}\n", serde_json::to_string_pretty(&facts)?));
    }
    say!("file:     {} ({} bytes)", args.model.display(), bytes.len())?;
    say!(
        "format:   version {}, {} model",
        infer_core::format::VERSION,
        kind.name()
    )?;
    say!("status:   valid (CRC-32 {crc:#010x} matches; every section checked)")?;
    say!(
        "shape:    {}-{}-{}, {PARAMETERS} parameters",
        INPUTS,
        infer_core::HIDDEN,
        infer_core::CLASSES
    )?;
    let Some(d) = details else {
        return say!("kind:     f32");
    };
    let width = kind.name();
    let span = |v: &serde_json::Value| {
        format!(
            "{:.3e} … {:.3e}",
            v["min"].as_f64().unwrap_or(0.0),
            v["max"].as_f64().unwrap_or(0.0)
        )
    };
    say!("kind:     {width} (integer-only inference)")?;
    say!("input:    u8 pixels, scale 1/255, zero point 0")?;
    say!(
        "hidden:   u8 activations, scale {:.4e}",
        d["hidden_scale"].as_f64().unwrap_or(0.0)
    )?;
    say!(
        "w1:       {width} per hidden unit, scales {}",
        span(&d["w1_scale"])
    )?;
    say!(
        "w2:       {width} per class, scales {}",
        span(&d["w2_scale"])
    )?;
    say!("kernel:   {} on this machine", Kernel::best())
}
