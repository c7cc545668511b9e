//! The `best` recipe's parts: a validation split that holds out exactly Keras's images,
//! distortions that keep a digit that digit, quantization-aware training whose forward pass is
//! infer-core's, and one seed giving one network for both recipes.

use infer_core::{QuantModel, Weights};
use mnist_digit::to_mnist;
use trainer::augment::{Augment, Fields, Grid, distort, image_rng};
use trainer::idx::Dataset;
use trainer::output::AlignedBytes;
use trainer::qat::Quantized;
use trainer::quantize::{LayerWidths, Width, encode_quant, quantize};
use trainer::sparse::SparseRows;
use trainer::train::{HeldOut, Recipe, TrainConfig, evaluate, fit};

mod common;

use common::{mnist, tutorial_net};

/// MNIST's pixels per image.
const PIXELS: usize = 784;

#[test]
fn validation_split_holds_out_exactly_the_last_fraction() {
    let data = Dataset {
        images: (0..10 * PIXELS).map(|i| (i / PIXELS) as u8).collect(),
        labels: (0..10).collect(),
        rows: 28,
        cols: 28,
    };
    let (train, val) = data.split_validation(0.25);
    // Keras: split_at = int(10 · (1 − 0.25)) = 7; the last 3 held out, order kept.
    assert_eq!(train.labels, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(val.labels, [7, 8, 9]);
    assert_eq!(val.image(0), &[7u8; PIXELS][..]);
    assert_eq!(train.images.len(), 7 * PIXELS);
    let (all, none) = data.split_validation(0.0);
    assert_eq!((all.len(), none.len()), (10, 0));
    let (train, val) = mnist().train.split_validation(0.1);
    assert_eq!((train.len(), val.len()), (54_000, 6_000));
}

#[test]
fn distorted_digits_stay_the_same_digits() {
    let mnist = mnist();
    let net = tutorial_net(&mnist.train.head(20_000), 2);
    let test = mnist.test.head(1000);
    let fields = Fields::new(64, 4.0, 5, Grid { rows: 28, cols: 28 });
    // The judge is a network that never saw a distortion, and an MLP is not shift-invariant: both
    // sets are first re-centred the way MNIST was made (and `predict` prepares a user's digit).
    let recentred = |images: Vec<Vec<u8>>| Dataset {
        images: images
            .into_iter()
            .flat_map(|im| {
                let grey = image::GrayImage::from_raw(28, 28, im).unwrap();
                to_mnist(&grey).unwrap()
            })
            .collect(),
        labels: test.labels.clone(),
        rows: 28,
        cols: 28,
    };
    let clean = recentred(
        test.images
            .chunks_exact(PIXELS)
            .map(<[u8]>::to_vec)
            .collect(),
    );
    let distorted = recentred(
        (0..test.len())
            .map(|i| {
                let mut out = vec![0; PIXELS];
                let rng = &mut image_rng(5, 1, i);
                distort(test.image(i), &Augment::BEST, &fields, rng, &mut out);
                out
            })
            .collect(),
    );
    assert_ne!(distorted.images, clean.images);
    let clean = evaluate(&net, &clean).stats.accuracy();
    let moved = evaluate(&net, &distorted).stats.accuracy();
    // Rotated, sheared, elastically bent, thicker or thinner: still read as their labels.
    assert!(
        moved > 0.85 && moved > clean - 0.08,
        "clean {clean}, distorted {moved}"
    );
}

#[test]
fn the_quantization_aware_forward_pass_is_infer_cores() {
    let mnist = mnist();
    let net = tutorial_net(&mnist.train.head(10_000), 1);
    let test = mnist.test.head(300);
    let rows = SparseRows::from_dense(PIXELS, test.images.chunks_exact(PIXELS), |p| {
        f32::from(p) / 255.0
    });
    // The training forward pass against the model file infer-core runs, for both widths.
    fn check(q: &trainer::quantize::QuantWeights, test: &Dataset, rows: &SparseRows) {
        let file = AlignedBytes::new(&encode_quant(q).unwrap());
        let model = QuantModel::from_bytes(file.as_bytes()).unwrap();
        let layers: Vec<Weights> = q.layers.iter().map(|l| l.width.weights()).collect();
        assert_eq!(model.header().weights(), &layers[..]);
        let quantized = Quantized::new(q);
        for (i, image) in test.images.as_chunks::<PIXELS>().0.iter().enumerate() {
            let (_, logits) = quantized.image(rows.row(i));
            assert_eq!(
                logits[..],
                model.predict(image).unwrap().logits[..],
                "{:?}, image {i}",
                q.width
            );
        }
    }
    let int8 = quantize(&net, &mnist.train.head(2000), Width::Int8).unwrap();
    check(&int8, &test, &rows);
    let int4 = quantize(&net, &mnist.train.head(2000), Width::Int4).unwrap();
    assert!(
        int4.layers
            .iter()
            .flat_map(|l| &l.w)
            .all(|w| (-7..=7).contains(w))
    );
    check(&int4, &test, &rows);
    let file = AlignedBytes::new(&encode_quant(&int4).unwrap());
    let header = infer_core::format::peek(file.as_bytes()).unwrap();
    assert_eq!(header.weights(), &[Weights::Int4, Weights::Int4]);
    // Per-layer widths: the big first layer in int4, the small output layer in int8.
    let mixed = LayerWidths {
        width: Width::Int4,
        output: Width::Int8,
    };
    let mixed = quantize(&net, &mnist.train.head(2000), mixed).unwrap();
    check(&mixed, &test, &rows);
    let file = AlignedBytes::new(&encode_quant(&mixed).unwrap());
    let header = infer_core::format::peek(file.as_bytes()).unwrap();
    assert_eq!(header.weights(), &[Weights::Int4, Weights::Int8]);
    assert_eq!(header.kind_name(), "int4+int8");
    assert_eq!(
        mixed.layers[0].w, int4.layers[0].w,
        "the first layer is the int4 file's"
    );
    assert_eq!(
        mixed.layers[1].w, int8.layers[1].w,
        "the last is the int8 file's"
    );

    // A deeper network (784-64-32-10, two hidden layers, each with its own calibrated scale):
    // the training forward pass is still infer-core's, integer for integer.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let deep = trainer::mlp::Mlp::glorot(PIXELS, &[64, 32], 10, &mut rng);
    for width in [Width::Int8, Width::Int4] {
        let q = quantize(&deep, &mnist.train.head(1000), width).unwrap();
        assert_eq!(q.layers.len(), 3);
        assert!(q.layers[0].act_scale.is_some() && q.layers[1].act_scale.is_some());
        check(&q, &test, &rows);
    }
}

#[test]
fn one_seed_gives_one_network_for_both_recipes() {
    let mnist = mnist();
    let data = mnist.train.head(3000);
    let (train, val) = data.split_validation(0.2);
    for recipe in [Recipe::Tutorial, Recipe::Best] {
        let config = TrainConfig {
            epochs: 3,
            qat_epochs: if recipe == Recipe::Best { 1 } else { 0 },
            ..TrainConfig::recipe(recipe)
        };
        let held_out = HeldOut {
            validation: Some(&val),
            test: None,
        };
        let run = || fit(&train, held_out, &config, |_| {}).unwrap();
        let (a, b) = (run(), run());
        assert_eq!(a.net, b.net, "{recipe:?}: weights differ between two runs");
        assert_eq!(a.epoch, b.epoch);
        assert_eq!(a.act_scales, b.act_scales);
        let c = fit(
            &train,
            held_out,
            &TrainConfig {
                seed: 43,
                ..config.clone()
            },
            |_| {},
        )
        .unwrap();
        assert_ne!(a.net, c.net, "{recipe:?}: another seed, the same weights");
    }
}

#[test]
fn a_run_shorter_than_its_quantization_aware_epochs_is_all_quantization_aware() {
    let mnist = mnist();
    let (train, val) = mnist.train.head(2000).split_validation(0.2);
    let held_out = HeldOut {
        validation: Some(&val),
        test: None,
    };
    for (epochs, qat_epochs) in [(2, 4), (2, 2), (2, 1)] {
        let config = TrainConfig {
            epochs,
            qat_epochs,
            augment: None,
            ..TrainConfig::recipe(Recipe::Best)
        };
        let fitted = fit(&train, held_out, &config, |_| {}).unwrap();
        // The last epoch is quantization-aware in each case: the export gets its hidden scale.
        if fitted.epoch == epochs {
            assert!(
                fitted.act_scales.is_some(),
                "{epochs} epochs, {qat_epochs} QAT"
            );
        }
    }
}

/// A pruned run: every hidden layer ends at the asked density in whole tiles of 16 units × 4
/// inputs (the rest exactly zero, through the quantization-aware epochs too), the best epoch is
/// one at that density, and the model files store only the kept tiles — under 70 % of the dense
/// file's bytes — and still classify.
#[test]
fn pruning_reaches_the_density_in_whole_tiles_and_the_files_shrink() {
    let mnist = mnist();
    let (train, val) = mnist.train.head(6000).split_validation(0.1);
    let held_out = HeldOut {
        validation: Some(&val),
        test: None,
    };
    let config = TrainConfig {
        epochs: 6,
        qat_epochs: 2,
        augment: None,
        hidden: vec![64, 32],
        prune: Some(trainer::prune::Pruning::new(0.4)),
        ..TrainConfig::recipe(Recipe::Best)
    };
    let fitted = fit(&train, held_out, &config, |_| {}).unwrap();
    let pruned = fitted.pruned.as_ref().unwrap();
    assert_eq!(pruned.densities.len(), 2);
    for &d in &pruned.densities {
        assert!((d - 0.4).abs() < 0.02, "{d}");
    }
    // The best epoch is at the target density: pruning ends at 65 % of 6 epochs.
    assert!(fitted.epoch >= 4, "epoch {}", fitted.epoch);
    let net = &fitted.net;
    let zero_tiles = |w: &nalgebra::DMatrix<f32>| {
        let (r, c) = w.shape();
        let mut n = 0;
        for b in 0..r.div_ceil(16) {
            for g in 0..c.div_ceil(4) {
                n += usize::from(
                    (b * 16..(b * 16 + 16).min(r))
                        .all(|j| (g * 4..(g * 4 + 4).min(c)).all(|k| w[(j, k)] == 0.0)),
                );
            }
        }
        n as f32 / (r.div_ceil(16) * c.div_ceil(4)) as f32
    };
    assert!(zero_tiles(&net.w1) >= 0.58, "{}", zero_tiles(&net.w1));
    assert!(zero_tiles(&net.middle[0].w) >= 0.58);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let dense = trainer::mlp::Mlp::glorot(PIXELS, &[64, 32], 10, &mut rng);
    let test = mnist.test.head(1000);
    for width in [Width::Int8, Width::Int4] {
        let bytes = encode_quant(&quantize(net, &train, width).unwrap()).unwrap();
        let dense_bytes = encode_quant(&quantize(&dense, &train, width).unwrap()).unwrap();
        assert!(
            bytes.len() * 10 < dense_bytes.len() * 7,
            "{width:?}: {} of {} bytes",
            bytes.len(),
            dense_bytes.len()
        );
        let file = AlignedBytes::new(&bytes);
        let model = QuantModel::from_bytes(file.as_bytes()).unwrap();
        let layers = model.layers();
        assert!(layers[0].layer().sparse && layers[1].layer().sparse);
        assert!(!layers[2].layer().sparse, "the output layer stays dense");
        let correct = (0..test.len())
            .filter(|&i| model.predict(test.image(i)).unwrap().class == test.labels[i])
            .count();
        assert!(correct > 850, "{width:?}: {correct} of 1000");
    }
}

/// `--live-cost`: counting how often a tile's pixels are live against it keeps tiles that a
/// microcontroller multiplies less often — fewer kept tiles live per test digit at the same
/// density than scoring by contribution alone.
#[test]
fn a_live_cost_keeps_tiles_that_are_live_less_often() {
    let mnist = mnist();
    let train = mnist.train.head(4000);
    let test = mnist.test.head(300);
    let live_tiles = |live_cost: f64| {
        let config = TrainConfig {
            epochs: 4,
            hidden: vec![64],
            prune: Some(trainer::prune::Pruning {
                live_cost,
                ..trainer::prune::Pruning::new(0.2)
            }),
            ..TrainConfig::default()
        };
        let net = fit(&train, HeldOut::default(), &config, |_| {})
            .unwrap()
            .net;
        let w = &net.w1;
        let kept = |b: usize, g: usize| {
            (b * 16..b * 16 + 16).any(|j| (g * 4..g * 4 + 4).any(|k| w[(j, k)] != 0.0))
        };
        let mut n = 0;
        for i in 0..test.len() {
            let x = test.image(i);
            for g in 0..196 {
                if x[g * 4..g * 4 + 4].iter().any(|&v| v != 0) {
                    n += (0..4).filter(|&b| kept(b, g)).count();
                }
            }
        }
        n as f64 / test.len() as f64
    };
    let (plain, costed) = (live_tiles(0.0), live_tiles(1.0));
    assert!(
        costed < plain * 0.96,
        "live tiles per digit: {costed} with the cost, {plain} without"
    );
}
