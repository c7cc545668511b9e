//! What the benchmarks share: a real trained model in both formats, real test digits, and the
//! peers (nalgebra, and candle with feature `benches`) loaded with the same weights.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use infer_core::{F32Model, QuantModel};
use nalgebra::{DMatrix, DVector};
use trainer::idx::{Mnist, load_mnist};
use trainer::output::{AlignedBytes, F32_FILE, INT4_FILE, INT8_FILE};
use trainer::output_set::OutputSet;
use trainer::pipeline::{self, Run};
use trainer::quantize::Width;
use trainer::shape::HIDDEN;

/// MNIST's pixels per image: the benchmarks run the tutorial's network on MNIST.
pub const INPUTS: usize = 784;
/// MNIST's classes.
pub const CLASSES: usize = 10;
use trainer::train::TrainConfig;

/// The repository root.
pub fn repo() -> PathBuf {
    let benches = Path::new(env!("CARGO_MANIFEST_DIR"));
    benches.parent().unwrap_or(benches).to_path_buf()
}

/// The shipped MNIST.
pub fn mnist() -> Result<Mnist> {
    Ok(load_mnist(&repo().join("data/mnist"))?)
}

/// The model files of one trained network.
pub struct Models {
    /// The int8 file.
    pub int8: AlignedBytes,
    /// The int4 file.
    pub int4: AlignedBytes,
    /// The f32 file.
    pub f32: AlignedBytes,
}

/// The models `cargo run -p trainer -- --weights both` left in `out/`; without them, the
/// trainer's pipeline runs here for one epoch of its recipe (a real, if shorter, training) so
/// that the benchmarks still use trained weights.
pub fn models(mnist: &Mnist) -> Result<Models> {
    let out = repo().join("out");
    let [int8, int4, f32] = [INT8_FILE, INT4_FILE, F32_FILE].map(|f| out.join(f));
    if int8.is_file() && int4.is_file() && f32.is_file() {
        eprintln!("benches: using the trained models in {}", out.display());
        return Ok(Models {
            int8: AlignedBytes::read(&int8)?,
            int4: AlignedBytes::read(&int4)?,
            f32: AlignedBytes::read(&f32)?,
        });
    }
    eprintln!(
        "benches: no int8, int4 and f32 models in {} (`cargo run -p trainer -- --weights both`); \
         training one epoch first",
        out.display()
    );
    // The trainer's own pipeline, into a folder of its own.
    let dir = repo().join("target/benches-models");
    let config = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    train_into(mnist, &dir, config, &[Width::Int8, Width::Int4])?;
    Ok(Models {
        int8: AlignedBytes::read(&dir.join(INT8_FILE))?,
        int4: AlignedBytes::read(&dir.join(INT4_FILE))?,
        f32: AlignedBytes::read(&dir.join(F32_FILE))?,
    })
}

/// A run of the trainer's pipeline with `config`, its set (the f32 file and the `widths`' integer
/// files) committed into `dir`.
fn train_into(mnist: &Mnist, dir: &Path, config: TrainConfig, widths: &[Width]) -> Result<()> {
    let set = OutputSet::begin(dir, 0)?;
    let run = Run {
        config,
        validation_split: 0.0,
        widths,
        output_width: None,
        out: &set,
        test_every_epoch: false,
        force: true,
    };
    pipeline::run(
        mnist,
        &run,
        |_| {},
        |line| eprintln!("benches: {line}"),
        |w| eprintln!("benches: warning: {w}"),
    )?;
    set.commit()?;
    Ok(())
}

/// The shapes the README's table compares, as `--hidden` takes them.
pub const SHAPES: [&[usize]; 5] = [&[512], &[256], &[128], &[64], &[256, 128]];

/// `784-256-128-10` for hidden layers `[256, 128]`.
pub fn shape_name(hidden: &[usize]) -> String {
    let widths: Vec<String> = hidden.iter().map(ToString::to_string).collect();
    format!("784-{}-10", widths.join("-"))
}

/// The int8 file of the tutorial recipe (seed 42, as `cargo run -p trainer -- --hidden …`) for
/// a network with these hidden layers: trained here by the trainer's pipeline the first time,
/// then kept in `target/benches-shapes/`.
pub fn shape_model(mnist: &Mnist, hidden: &[usize]) -> Result<AlignedBytes> {
    let dir = repo()
        .join("target/benches-shapes")
        .join(shape_name(hidden));
    let file = dir.join(INT8_FILE);
    if !cached(&[&file]) {
        eprintln!(
            "benches: training the tutorial recipe's {} network",
            dir.display()
        );
        let config = TrainConfig {
            hidden: hidden.to_vec(),
            ..TrainConfig::default()
        };
        train_into(mnist, &dir, config, &[Width::Int8])?;
    }
    AlignedBytes::read(&file)
}

/// Whether every one of `files` is an integer model this build reads (a cache left by an older
/// format is trained again, not an error).
fn cached(files: &[&Path]) -> bool {
    files.iter().all(|f| {
        AlignedBytes::read(f).is_ok_and(|bytes| QuantModel::from_bytes(bytes.as_bytes()).is_ok())
    })
}

/// The best recipe's pruned files the firmware runs (`--recipe best --density D`, the issue's
/// ≥ 99 % int8 and ≥ 98.8 % int4 models), as (density, width, file in `firmware-example/model/`).
pub const BEST_PRUNED: [(f32, &str, &str); 3] = [
    (0.2, "int8", "mlp-pruned20-int8.bin"),
    (0.15, "int8", "mlp-pruned15-int8.bin"),
    (0.15, "int4", "mlp-pruned15-int4.bin"),
];

/// The committed file of [`BEST_PRUNED`] named `file`.
pub fn best_pruned_model(file: &str) -> Result<AlignedBytes> {
    AlignedBytes::read(&repo().join("firmware-example/model").join(file))
}

/// The densities the pruning benchmarks compare (1 is the dense network).
pub const DENSITIES: [f32; 5] = [1.0, 0.25, 0.15, 0.1, 0.06];

/// The int8 and int4 files of the tutorial recipe (seed 42) for 784-512-10 pruned to `density`
/// (`cargo run -p trainer -- --density D --weights both`): trained here the first time, then
/// kept in `target/benches-pruned/`.
pub fn pruned_models(mnist: &Mnist, density: f32) -> Result<[AlignedBytes; 2]> {
    let dir = repo()
        .join("target/benches-pruned")
        .join(format!("density-{density}"));
    let files = [INT8_FILE, INT4_FILE].map(|f| dir.join(f));
    if !cached(&[&files[0], &files[1]]) {
        eprintln!("benches: training the tutorial recipe pruned to {density}");
        let config = TrainConfig {
            prune: (density < 1.0).then(|| trainer::prune::Pruning::new(density)),
            ..TrainConfig::default()
        };
        train_into(mnist, &dir, config, &[Width::Int8, Width::Int4])?;
    }
    let [int8, int4] = files;
    Ok([AlignedBytes::read(&int8)?, AlignedBytes::read(&int4)?])
}

/// Loads the int8 and f32 views (validation once).
pub fn views(models: &Models) -> Result<(QuantModel<'_>, F32Model<'_>)> {
    Ok((
        QuantModel::from_bytes(models.int8.as_bytes()).context("int8 model")?,
        F32Model::from_bytes(models.f32.as_bytes()).context("f32 model")?,
    ))
}

/// Loads the int4 view.
pub fn int4_view(models: &Models) -> Result<QuantModel<'_>> {
    QuantModel::from_bytes(models.int4.as_bytes()).context("int4 model")
}

/// The first `n` test digits.
pub fn test_images(mnist: &Mnist, n: usize) -> Vec<[u8; INPUTS]> {
    mnist
        .test
        .images
        .as_chunks::<INPUTS>()
        .0
        .iter()
        .take(n)
        .copied()
        .collect()
}

/// The same f32 network as nalgebra matrices: the obvious way to run it.
pub struct NalgebraNet {
    w1: DMatrix<f32>,
    b1: DVector<f32>,
    w2: DMatrix<f32>,
    b2: DVector<f32>,
}

impl NalgebraNet {
    /// From an f32 model file's weights (`w1` input-major, `w2` class-major).
    pub fn new(model: &Models) -> Result<Self> {
        let parts = f32_parts(model)?;
        Ok(Self {
            // Input-major storage is a column-major `hidden × inputs` matrix.
            w1: DMatrix::from_column_slice(HIDDEN, INPUTS, &parts.0),
            b1: DVector::from_column_slice(&parts.1),
            // Class-major storage is a column-major `hidden × classes` matrix; keep its transpose.
            w2: DMatrix::from_column_slice(HIDDEN, CLASSES, &parts.2).transpose(),
            b2: DVector::from_column_slice(&parts.3),
        })
    }

    /// Logits of a batch of images (one column each), by matrix–matrix products.
    pub fn logits(&self, images: &[[u8; INPUTS]]) -> DMatrix<f32> {
        let x = DMatrix::from_fn(INPUTS, images.len(), |k, i| f32::from(images[i][k]) / 255.0);
        let mut h = &self.w1 * x;
        for mut column in h.column_iter_mut() {
            column += &self.b1;
            column.apply(|v| *v = v.max(0.0));
        }
        let mut z = &self.w2 * h;
        for mut column in z.column_iter_mut() {
            column += &self.b2;
        }
        z
    }

    /// Logits of one image, by matrix–vector products.
    pub fn logits_one(&self, image: &[u8; INPUTS]) -> DVector<f32> {
        let x = DVector::from_fn(INPUTS, |k, _| f32::from(image[k]) / 255.0);
        let h = (&self.w1 * x + &self.b1).map(|v| v.max(0.0));
        &self.w2 * h + &self.b2
    }
}

/// The same f32 network in candle, the Rust ML framework (feature `benches`).
#[cfg(feature = "benches")]
pub struct CandleNet {
    w1: candle_core::Tensor,
    b1: candle_core::Tensor,
    w2: candle_core::Tensor,
    b2: candle_core::Tensor,
}

#[cfg(feature = "benches")]
impl CandleNet {
    /// From an f32 model file's weights, on the CPU.
    pub fn new(model: &Models) -> Result<Self> {
        use candle_core::{Device, Tensor};
        let (w1, b1, w2, b2) = f32_parts(model)?;
        let cpu = Device::Cpu;
        Ok(Self {
            w1: Tensor::from_vec(w1, (INPUTS, HIDDEN), &cpu)?,
            b1: Tensor::from_vec(b1, HIDDEN, &cpu)?,
            // Class-major (10 × 512); the product wants 512 × 10.
            w2: Tensor::from_vec(w2, (CLASSES, HIDDEN), &cpu)?
                .t()?
                .contiguous()?,
            b2: Tensor::from_vec(b2, CLASSES, &cpu)?,
        })
    }

    /// Logits of a batch of images, `batch × 10`.
    pub fn logits(&self, images: &[[u8; INPUTS]]) -> Result<candle_core::Tensor> {
        let x: Vec<f32> = images
            .iter()
            .flatten()
            .map(|&p| f32::from(p) / 255.0)
            .collect();
        let x =
            candle_core::Tensor::from_vec(x, (images.len(), INPUTS), &candle_core::Device::Cpu)?;
        let h = x.matmul(&self.w1)?.broadcast_add(&self.b1)?.relu()?;
        Ok(h.matmul(&self.w2)?.broadcast_add(&self.b2)?)
    }
}

type F32Parts = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

/// The four f32 arrays of a model, read through infer-core's validated view.
fn f32_parts(model: &Models) -> Result<F32Parts> {
    let view = F32Model::from_bytes(model.f32.as_bytes())?;
    let [first, second] = view.layers() else {
        anyhow::bail!("the benchmarks' peers take a network with one hidden layer");
    };
    let (hidden, classes) = (first.layer().outputs, second.layer().outputs);
    // infer-core's layers are input-major; the peers take the output layer class-major.
    let w2: Vec<f32> = second.weights().collect();
    let w2 = (0..hidden * classes)
        .map(|i| w2[(i % hidden) * classes + i / hidden])
        .collect();
    Ok((
        first.weights().collect(),
        first.biases().collect(),
        w2,
        second.biases().collect(),
    ))
}
