//! `trainer eval`: a model file's accuracy on the test set, its confusion matrix, plots, logits.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use trainer::metrics::Confusion;
use trainer::model_file::ModelFile;
use trainer::output::write_atomic;
use trainer::{pipeline, plots};

use super::{default_data_dir, emit};

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// An int8, int4 or f32 model file written by `trainer train`.
    model: PathBuf,
    /// Folder with the test set's IDX files [default: data/mnist]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Also write every test image's ten logits (real units, f32 little-endian, image after
    /// image) to FILE: for comparing with another runtime.
    #[arg(long, value_name = "FILE")]
    logits: Option<PathBuf>,
    /// Draw confusion.png and misclassified.png (the test digits it gets wrong) into DIR.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
}

pub(crate) fn eval(args: EvalArgs) -> Result<()> {
    let data_dir = args.data.clone().unwrap_or_else(default_data_dir);
    let mut files = trainer::places::Files::new()
        .input(&args.model, "the model")?
        .input(&data_dir, "the data folder")?;
    if let Some(path) = &args.logits {
        files = files.output(path, "--logits")?;
    }
    if let Some(dir) = &args.plots {
        files = files.output_folder(dir, "--plots")?;
    }
    files.check()?;
    let file = ModelFile::read(&args.model)?;
    let model = file.open(&args.model)?;
    let test = trainer::idx::load_test(&data_dir)?;
    let width = model.inputs();
    let fits = |e: anyhow::Error| {
        e.context(format!(
            "{} takes {width} inputs; the images in {} have {}",
            args.model.display(),
            data_dir.display(),
            test.images.len() / test.len().max(1)
        ))
    };
    let predictions: Vec<u8> =
        pipeline::predictions(&test, |image| Ok(model.classify(image)?)).map_err(fits)?;
    if let Some(path) = &args.logits {
        let mut bytes = Vec::with_capacity(test.len() * model.classes() * 4);
        for image in test.images.chunks_exact(width) {
            bytes.extend(model.logits(image)?.iter().flat_map(|v| v.to_le_bytes()));
        }
        write_atomic(path, &bytes)?;
    }
    let confusion = Confusion::new(model.classes(), &test.labels, &predictions);
    if let Some(dir) = &args.plots {
        let misses = plots::misses(&test, &predictions);
        let name =
            trainer::model_file::describe(&args.model, model.kind(), model.header().widths());
        for path in plots::write_all(dir, &name, None, &confusion, &misses)? {
            say!("plotted {}", path.display())?;
        }
    }
    emit(&format!(
        "{} ({} model, {} bytes) on {} test images from {}\naccuracy: {:.4}\n\n{confusion}",
        args.model.display(),
        model.kind(),
        file.bytes().len(),
        test.len(),
        data_dir.display(),
        confusion.accuracy()
    ))
}
