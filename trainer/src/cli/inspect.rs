//! `trainer inspect`: what a model file holds.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use infer_core::Kernel;
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

pub(crate) fn inspect(args: InspectArgs) -> Result<()> {
    let file = ModelFile::read(&args.model)?;
    let bytes = file.bytes();
    let model = file.open(&args.model)?;
    let header = model.header();
    let kind = header.kind_name();
    let widths = header.widths();
    let parameters: usize = header.layers().map(|l| l.parameters()).sum();
    let shape = trainer::model_file::shape_name(widths);
    let crc = bytes
        .last_chunk::<4>()
        .map_or(0, |c| u32::from_le_bytes(*c));
    let range = |v: Vec<f32>| {
        let min = v.iter().copied().fold(f32::INFINITY, f32::min);
        let max = v.iter().copied().fold(0.0f32, f32::max);
        serde_json::json!({ "min": min, "max": max })
    };
    // Every layer's shape and weights from the header; an integer layer's scales besides.
    let mut layers: Vec<serde_json::Value> = header
        .layers()
        .map(|l| {
            serde_json::json!({
                "inputs": l.inputs,
                "outputs": l.outputs,
                "weights": l.weights.name(),
                "sparse": l.sparse,
                "tiles": l.tiles,
                "density": l.tiles as f64 / l.dense_tiles().max(1) as f64,
            })
        })
        .collect();
    if let Classifier::Quant(m) = &model {
        for (facts, l) in layers.iter_mut().zip(m.layers()) {
            facts["w_scale"] = range(l.w_scales().collect());
            facts["act_scale"] = serde_json::json!(l.act_scale());
        }
    }
    let mut facts = serde_json::json!({
        "file": args.model.display().to_string(),
        "bytes": bytes.len(),
        "format_version": infer_core::format::VERSION,
        "kind": kind,
        "status": "valid",
        "crc32": format!("{crc:#010x}"),
        "shape": widths,
        "parameters": parameters,
        "layers": layers,
    });
    if let (Classifier::Quant(_), Some(f)) = (&model, facts.as_object_mut()) {
        f.insert("kernel".into(), Kernel::best().name().into());
    }
    if args.json {
        return emit(&format!("{}\n", serde_json::to_string_pretty(&facts)?));
    }
    say!("file:     {} ({} bytes)", args.model.display(), bytes.len())?;
    say!(
        "format:   version {}, {kind} model",
        infer_core::format::VERSION
    )?;
    say!("status:   valid (CRC-32 {crc:#010x} matches; every section checked)")?;
    say!("shape:    {shape}, {parameters} parameters")?;
    let Classifier::Quant(m) = &model else {
        return say!("kind:     f32");
    };
    let span = |v: &serde_json::Value| {
        format!(
            "{:.3e} … {:.3e}",
            v["min"].as_f64().unwrap_or(0.0),
            v["max"].as_f64().unwrap_or(0.0)
        )
    };
    say!("kind:     {kind} (integer-only inference)")?;
    say!("input:    u8, scale 1/255, zero point 0")?;
    for (l, facts) in m.layers().iter().zip(&layers) {
        let s = l.layer();
        let what = if s.last { "per class" } else { "per unit" };
        let sparse = if s.sparse {
            format!(
                ", block-sparse: {} of {} tiles of 16×4 kept ({:.1} %)",
                s.tiles,
                s.dense_tiles(),
                100.0 * s.tiles as f64 / s.dense_tiles().max(1) as f64
            )
        } else {
            String::new()
        };
        say!(
            "layer {}:  {}→{}, {} weights {what}, scales {}{sparse}",
            s.index + 1,
            s.inputs,
            s.outputs,
            s.weights,
            span(&facts["w_scale"])
        )?;
        if let Some(a) = l.act_scale() {
            say!("          u8 outputs, scale {a:.4e}")?;
        }
    }
    say!("kernel:   {} on this machine", Kernel::best())
}
