//! `trainer export`: a model file as ONNX or as a C header.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use trainer::model_file::{Classifier, ModelFile};
use trainer::output::write_atomic;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// ONNX (opset 13): the f32 model as MatMul/Add/Relu, an int8 or int4 model as a QDQ graph
    /// with infer-core's exact scales; input `pixels` [N, 784] in 0–1, output `logits`.
    Onnx,
    /// A C header: the file's bytes as a 16-byte-aligned `const uint8_t` array and its length.
    C,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// A model file written by `trainer train` (validated before it is exported).
    model: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Where to write it.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// The C array's name [default: from the output file's name, e.g. mlp_int8]
    #[arg(long)]
    name: Option<String>,
}

pub(crate) fn export(args: ExportArgs) -> Result<()> {
    trainer::places::Files::new()
        .input(&args.model, "the model")?
        .output(&args.out, "-o")?
        .check()?;
    let file = ModelFile::read(&args.model)?;
    let model = file.open(&args.model)?;
    let bytes = match args.format {
        ExportFormat::Onnx => match model {
            Classifier::F32(ref m) => trainer::onnx::export_f32(m),
            Classifier::Quant(ref m) => trainer::onnx::export_quant(m)?,
        },
        ExportFormat::C => {
            let stem = args
                .out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned());
            let name = args.name.as_deref().or(stem.as_deref()).unwrap_or("");
            let name = trainer::export::c_identifier(name);
            let about = format!(
                "MNIST {} {} model, {} bytes (infer-core model format version {}), from {}.",
                trainer::model_file::shape_name(model.header().widths()),
                model.kind(),
                file.bytes().len(),
                infer_core::format::VERSION,
                args.model.display()
            );
            trainer::export::c_header(file.bytes(), &name, &about).into_bytes()
        }
    };
    write_atomic(&args.out, &bytes)?;
    say!(
        "wrote {} ({} bytes): the {} model as {}",
        args.out.display(),
        bytes.len(),
        model.kind(),
        match args.format {
            ExportFormat::Onnx => "ONNX",
            ExportFormat::C => "a C array",
        }
    )
}
