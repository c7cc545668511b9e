//! `trainer predict`: classify a user's own digit images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use trainer::model_file::ModelFile;

use super::emit;

#[derive(Debug, Args)]
pub(crate) struct PredictArgs {
    /// An int8, int4 or f32 model file written by `trainer train`.
    model: PathBuf,
    /// Images of single digits.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// One JSON document on stdout instead of text, for scripts: per image `digit`,
    /// `probabilities` and, when the answer is unsure, `warning`; or `error`.
    #[arg(long)]
    json: bool,
}

/// A prediction is flagged as unsure below this top probability…
const LOW_TOP: f32 = 0.6;
/// …or below this lead over the runner-up.
const LOW_MARGIN: f32 = 0.2;

pub(crate) fn predict(args: PredictArgs) -> Result<ExitCode> {
    let file = ModelFile::read(&args.model)?;
    let model = file.open(&args.model)?;
    // An image model's inputs are a square's pixels: 784 = 28 × 28 for MNIST's.
    let side = model.inputs().isqrt();
    let Some(side) = u32::try_from(side)
        .ok()
        .filter(|&s| s <= mnist_digit::MAX_SIDE && side * side == model.inputs())
    else {
        anyhow::bail!(
            "{} takes {} inputs, not the pixels of a square image: predict reads images the way \
             MNIST's digits were made, side × side (784 = 28 × 28); `eval` takes any IDX data the \
             model fits",
            args.model.display(),
            model.inputs(),
        );
    };
    let mut results = Vec::with_capacity(args.images.len());
    let mut failed = 0;
    // Every image gets its own answer or its own error; one bad file does not stop the others.
    for path in &args.images {
        let mut entry = serde_json::json!({ "image": path.display().to_string() });
        match trainer::digit::read(path, side) {
            Ok(image) => {
                let (digit, probabilities) = model.probabilities(&image)?;
                let probabilities = probabilities.to_vec();
                let mut sorted = probabilities.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let at = |i: usize| sorted.get(i).copied().unwrap_or(0.0);
                let (top, next) = (at(0), at(1));
                let warning = (top < LOW_TOP || top - next < LOW_MARGIN).then(|| {
                    format!(
                        "low confidence: top probability {top:.2}, {:.2} ahead of the next",
                        top - next
                    )
                });
                if !args.json {
                    let listed: Vec<String> = probabilities
                        .iter()
                        .enumerate()
                        .map(|(d, p)| format!("{d}: {p:.3}"))
                        .collect();
                    let note = warning
                        .as_ref()
                        .map_or(String::new(), |w| format!("  ({w})"));
                    emit(&format!(
                        "{}: {digit}   ({}){note}\n",
                        path.display(),
                        listed.join("  ")
                    ))?;
                }
                entry["digit"] = digit.into();
                entry["probabilities"] = serde_json::json!(probabilities);
                if let Some(w) = warning {
                    entry["warning"] = w.into();
                }
            }
            Err(e) => {
                failed += 1;
                if !args.json {
                    eprintln!("error: {e:#}");
                }
                entry["error"] = format!("{e:#}").into();
            }
        }
        results.push(entry);
    }
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&results)?))?;
    }
    // Status 1 if any image could not be read (each one's error is in the output).
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
