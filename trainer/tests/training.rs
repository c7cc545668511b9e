//! Backprop, the optimizer and the training loop, checked against arithmetic done another way.

use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trainer::idx::Dataset;
use trainer::mlp::{Mlp, RmsProp};
use trainer::sparse::{SparseBatch, SparseRows};
use trainer::train::{HeldOut, Progress, TrainConfig, evaluate, fit};

fn tiny_batch() -> (SparseBatch, Vec<u8>) {
    // 3 images of 5 inputs, some exactly zero as in MNIST.
    let images: [[f32; 5]; 3] = [
        [0.9, 0.0, 0.3, 0.0, 1.0],
        [0.0, 0.5, 0.0, 0.7, 0.2],
        [0.4, 0.4, 0.0, 0.0, 0.0],
    ];
    let rows = SparseRows::from_dense(5, images.iter().map(|i| &i[..]), |v| v);
    (SparseBatch::new(rows), vec![2, 0, 1])
}

fn mean_loss(net: &Mlp, x: &SparseBatch, labels: &[u8]) -> f64 {
    let mut scratch = net.zeros_like();
    net.backprop(x, labels, &mut scratch).loss()
}

/// Every parameter's gradient against a central finite difference of the mean loss; returns how
/// many were checked.
fn check_gradients(net: &Mlp, grads: &Mlp, x: &SparseBatch, labels: &[u8]) -> usize {
    let eps = 1e-3f32;
    let mut checked = 0;
    for t in 0..net.tensors().len() {
        for i in 0..net.tensors()[t].len() {
            let mut plus = net.clone();
            plus.tensors_mut()[t][i] += eps;
            let mut minus = net.clone();
            minus.tensors_mut()[t][i] -= eps;
            let numeric = (mean_loss(&plus, x, labels) - mean_loss(&minus, x, labels))
                / (2.0 * f64::from(eps));
            let analytic = f64::from(grads.tensors()[t][i]);
            assert!(
                (numeric - analytic).abs() < 2e-3 * (1.0 + numeric.abs()),
                "tensor {t} element {i}: numeric {numeric}, backprop {analytic}"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn backprop_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // 6 hidden units: not a multiple of any vector width, so the scalar tails run too.
    let mut net = Mlp::glorot(5, &[6], 3, &mut rng);
    net.b1 = DVector::from_fn(6, |i, _| 0.05 * i as f32 + 0.1);
    net.b2 = DVector::from_vec(vec![0.1, -0.2, 0.05]);
    let (x, labels) = tiny_batch();
    let mut grads = net.zeros_like();
    net.backprop(&x, &labels, &mut grads);

    let checked = check_gradients(&net, &grads, &x, &labels);
    assert_eq!(checked, 5 * 6 + 6 + 6 * 3 + 3);
}

/// The same check through two more hidden layers (5 → 6 → 4 → 7 → 3): the middle layers'
/// gradients and the gradients they pass down.
#[test]
fn backprop_through_middle_layers_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut net = Mlp::glorot(5, &[6, 4, 7], 3, &mut rng);
    net.b1 = DVector::from_fn(6, |i, _| 0.05 * i as f32 + 0.1);
    for (m, d) in net.middle.iter_mut().enumerate() {
        d.b = DVector::from_fn(d.b.len(), |i, _| 0.03 * (i + m) as f32 + 0.05);
    }
    assert_eq!(net.widths(), [5, 6, 4, 7, 3]);
    let (x, labels) = tiny_batch();
    let mut grads = net.zeros_like();
    net.backprop(&x, &labels, &mut grads);
    assert_eq!(net.tensors().len(), 8);
    let checked = check_gradients(&net, &grads, &x, &labels);
    assert_eq!(checked, 5 * 6 + 6 + 6 * 4 + 4 + 4 * 7 + 7 + 7 * 3 + 3);
}

#[test]
fn rmsprop_steps_match_hand_computed_values() {
    let one = |v: f32| DMatrix::from_element(1, 1, v);
    let mut net = Mlp {
        w1: one(1.0),
        b1: DVector::from_element(1, -2.0),
        middle: vec![],
        w2: one(0.0),
        b2: DVector::from_element(1, 0.5),
    };
    let mut optimizer = RmsProp::new(1e-3, &net);
    let grads = |g: f32| Mlp {
        w1: one(g),
        b1: DVector::from_element(1, 0.0),
        middle: vec![],
        w2: one(-g),
        b2: DVector::from_element(1, 2.0 * g),
    };

    // v = 0.1·0.25 = 0.025; w = 1 − 1e-3·0.5 / (√0.025 + 1e-7)
    optimizer.step(&mut net, &grads(0.5));
    assert_close(net.w1[0], 1.0 - 0.0005 / (0.025f64.sqrt() + 1e-7));
    assert_close(net.b1[0], -2.0); // zero gradient: no move
    assert_close(net.w2[0], 0.0005 / (0.025f64.sqrt() + 1e-7));
    // v = 0.1·1 = 0.1; step = 1e-3·1 / √0.1
    assert_close(net.b2[0], 0.5 - 0.001 / (0.1f64.sqrt() + 1e-7));

    // Second step, gradient −1: v = 0.9·0.025 + 0.1·1 = 0.1225, √v = 0.35.
    let before = f64::from(net.w1[0]);
    optimizer.step(&mut net, &grads(-1.0));
    assert_close(net.w1[0], before + 0.001 / (0.35 + 1e-7));
}

fn assert_close(actual: f32, expected: f64) {
    assert!(
        (f64::from(actual) - expected).abs() < 1e-6,
        "{actual} != {expected}"
    );
}

mod common;

use common::mnist;

fn small_config(seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: 1,
        seed,
        ..TrainConfig::default()
    }
}

#[test]
fn the_same_seed_gives_identical_weights() {
    let data: Dataset = mnist().train.head(3000);
    let run = |config: &TrainConfig| fit(&data, HeldOut::default(), config, |_| {}).unwrap();
    let (a, b) = (run(&small_config(3)), run(&small_config(3)));
    assert_eq!(
        a.net, b.net,
        "weights differ between two runs with one seed"
    );
    assert_eq!(a.history[0].loss, b.history[0].loss);
    let c = run(&small_config(4));
    assert_ne!(a.net, c.net, "another seed should give other weights");
}

#[test]
fn a_short_run_on_real_digits_learns() {
    let mnist = mnist();
    let config = TrainConfig {
        epochs: 2,
        ..TrainConfig::default()
    };
    let mut epochs = Vec::new();
    let mut steps = 0;
    let held_out = mnist.test.head(2000);
    let fitted = fit(
        &mnist.train.head(20_000),
        HeldOut {
            validation: Some(&held_out),
            test: None,
        },
        &config,
        |p| match p {
            Progress::Epoch(e) => epochs.push(e),
            Progress::Batch {
                done,
                steps: per_epoch,
                ..
            } => {
                assert!(done <= per_epoch);
                steps += 1;
            }
        },
    )
    .unwrap();
    let net = fitted.net;
    assert_eq!(steps, 2 * 20_000usize.div_ceil(128));
    assert_eq!(epochs.len(), 2);
    assert!(epochs[1].loss < epochs[0].loss, "{epochs:?}");
    // The per-epoch figures on the validation set are those of the final network.
    assert_eq!(
        epochs[1].val_accuracy,
        Some(evaluate(&net, &held_out).stats.accuracy())
    );
    let held_out = evaluate(&net, &held_out);
    assert_eq!(held_out.predictions.len(), 2000);
    assert!(
        held_out.stats.accuracy() > 0.90,
        "accuracy on held-out test images {}",
        held_out.stats.accuracy()
    );
}
