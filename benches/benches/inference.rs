//! Inference latency and throughput: infer-core's int8 and int4 kernels and f32 path against
//! nalgebra and candle running the same trained weights on the same real test digits, one core
//! each.

use std::hint::black_box;
use std::time::Duration;

#[cfg(feature = "benches")]
use benches::CandleNet;
use benches::{NalgebraNet, int4_view, mnist, models, test_images, views};
use criterion::{BenchmarkId, Criterion, Throughput};
use infer_core::{F32Model, Kernel, Prediction, QuantModel};

const IMAGES: usize = 256;
const BATCHES: [usize; 4] = [1, 8, 64, 256];

fn inference(c: &mut Criterion) {
    let mnist = mnist().expect("MNIST in data/mnist");
    let models = models(&mnist).expect("a trained model");
    let (int8, f32_model) = views(&models).expect("valid models");
    let int4 = int4_view(&models).expect("a valid int4 model");
    let images = test_images(&mnist, IMAGES);
    let nalgebra = NalgebraNet::new(&models).expect("nalgebra weights");
    #[cfg(feature = "benches")]
    let candle = CandleNet::new(&models).expect("candle weights");

    // One image per call, cycling through real digits.
    let mut one = c.benchmark_group("forward");
    one.throughput(Throughput::Elements(1));
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let mut i = 0;
        one.bench_function(format!("int8/{kernel}/batch-1"), |b| {
            b.iter(|| {
                i = (i + 1) % IMAGES;
                black_box(int8.predict_with(kernel, black_box(&images[i])))
            })
        });
    }
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let mut i = 0;
        one.bench_function(format!("int4/{kernel}/batch-1"), |b| {
            b.iter(|| {
                i = (i + 1) % IMAGES;
                black_box(int4.predict_with(kernel, black_box(&images[i])))
            })
        });
    }
    let mut i = 0;
    one.bench_function("f32/infer-core/batch-1", |b| {
        b.iter(|| {
            i = (i + 1) % IMAGES;
            black_box(f32_model.logits(black_box(&images[i])))
        })
    });
    let mut i = 0;
    one.bench_function("f32/nalgebra/batch-1", |b| {
        b.iter(|| {
            i = (i + 1) % IMAGES;
            black_box(nalgebra.logits_one(black_box(&images[i])))
        })
    });
    #[cfg(feature = "benches")]
    let mut i = 0;
    #[cfg(feature = "benches")]
    one.bench_function("f32/candle/batch-1", |b| {
        b.iter(|| {
            i = (i + 1) % IMAGES;
            black_box(candle.logits(black_box(&images[i..=i])).expect("candle"))
        })
    });
    one.finish();

    // Batches: images per second.
    let mut batch = c.benchmark_group("throughput");
    for n in BATCHES {
        batch.throughput(Throughput::Elements(n as u64));
        let imgs = &images[..n];
        let mut out = vec![
            Prediction {
                class: 0,
                logits: Default::default()
            };
            n
        ];
        batch.bench_function(
            BenchmarkId::new(format!("int8/{}", Kernel::best()), format!("batch-{n}")),
            |b| b.iter(|| int8.predict_batch(black_box(imgs.as_flattened()), &mut out)),
        );
        batch.bench_function(
            BenchmarkId::new(format!("int4/{}", Kernel::best()), format!("batch-{n}")),
            |b| b.iter(|| int4.predict_batch(black_box(imgs.as_flattened()), &mut out)),
        );
        batch.bench_function(
            BenchmarkId::new("f32/infer-core", format!("batch-{n}")),
            |b| {
                b.iter(|| {
                    imgs.iter()
                        .map(|img| f32_model.predict(img))
                        .fold(0u32, |a, c| a + u32::from(c.unwrap_or(0)))
                })
            },
        );
        batch.bench_function(
            BenchmarkId::new("f32/nalgebra", format!("batch-{n}")),
            |b| b.iter(|| black_box(nalgebra.logits(black_box(imgs)))),
        );
        #[cfg(feature = "benches")]
        batch.bench_function(BenchmarkId::new("f32/candle", format!("batch-{n}")), |b| {
            b.iter(|| black_box(candle.logits(black_box(imgs)).expect("candle")))
        });
    }
    batch.finish();

    // One image through the int8 network of each shape the README compares, best kernel here.
    let mut shapes = c.benchmark_group("shape");
    shapes.throughput(Throughput::Elements(1));
    let kernel = Kernel::best();
    for hidden in benches::SHAPES {
        let file = benches::shape_model(&mnist, hidden).expect("a trained shape");
        let model = QuantModel::from_bytes(file.as_bytes()).expect("a valid model");
        let name = benches::shape_name(hidden);
        let mut i = 0;
        shapes.bench_function(format!("{name}/int8/{kernel}/batch-1"), |b| {
            b.iter(|| {
                i = (i + 1) % IMAGES;
                black_box(model.predict_with(kernel, black_box(&images[i])))
            })
        });
    }
    shapes.finish();

    // One image through 784-512-10 pruned to each density (1: dense), int8 and int4, best
    // kernel here: the pruned tiles and the blank pixels skipped in one walk.
    let mut pruned = c.benchmark_group("pruned");
    pruned.throughput(Throughput::Elements(1));
    for density in benches::DENSITIES {
        let files = benches::pruned_models(&mnist, density).expect("a pruned model");
        for (file, weights) in files.iter().zip(["int8", "int4"]) {
            let model = QuantModel::from_bytes(file.as_bytes()).expect("a valid model");
            let mut i = 0;
            let id = format!("density-{density}/{weights}/{kernel}/batch-1");
            pruned.bench_function(id, |b| {
                b.iter(|| {
                    i = (i + 1) % IMAGES;
                    black_box(model.predict_with(kernel, black_box(&images[i])))
                })
            });
        }
    }
    // The best recipe's pruned files (the ones the firmware runs), same kernel.
    for (density, weights, file) in benches::BEST_PRUNED {
        let file = benches::best_pruned_model(file).expect("a committed pruned model");
        let model = QuantModel::from_bytes(file.as_bytes()).expect("a valid model");
        let mut i = 0;
        let id = format!("best-density-{density}/{weights}/{kernel}/batch-1");
        pruned.bench_function(id, |b| {
            b.iter(|| {
                i = (i + 1) % IMAGES;
                black_box(model.predict_with(kernel, black_box(&images[i])))
            })
        });
    }
    pruned.finish();

    // Validation of a model file: CRC, sections, scales.
    let mut load = c.benchmark_group("load");
    load.bench_function("int8/from_bytes", |b| {
        b.iter(|| black_box(QuantModel::from_bytes(black_box(models.int8.as_bytes())).is_ok()))
    });
    load.bench_function("int4/from_bytes", |b| {
        b.iter(|| black_box(QuantModel::from_bytes(black_box(models.int4.as_bytes())).is_ok()))
    });
    load.bench_function("f32/from_bytes", |b| {
        b.iter(|| black_box(F32Model::from_bytes(black_box(models.f32.as_bytes())).is_ok()))
    });
    load.finish();
}

fn main() {
    // One core for every engine, so figures are per core. Set before any thread pool starts.
    // SAFETY: nothing else runs yet; no other thread reads the environment.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    inference(&mut c);
    c.final_summary();
}
