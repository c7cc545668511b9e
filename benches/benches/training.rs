//! One step of the trainer on real digits: batch 128 — gather, forward, backward, RMSprop.

use std::hint::black_box;
use std::time::Duration;

use benches::mnist;
use criterion::{Criterion, Throughput};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use trainer::mlp::network_inputs;
use trainer::mlp::{Mlp, RmsProp};
use trainer::sparse::SparseBatch;

fn training(c: &mut Criterion) {
    let mnist = mnist().expect("MNIST in data/mnist");
    let inputs = network_inputs(&mnist.train);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut net = Mlp::glorot(784, &[512], 10, &mut rng);
    let mut optimizer = RmsProp::new(1e-3, &net);
    let mut grads = net.zeros_like();
    let mut order: Vec<usize> = (0..mnist.train.len()).collect();
    order.shuffle(&mut rng);
    let batches: Vec<&[usize]> = order.chunks(128).take(64).collect();

    let mut group = c.benchmark_group("train");
    group.throughput(Throughput::Elements(128));
    let mut step = 0;
    group.bench_function("step/batch-128", |b| {
        b.iter(|| {
            step = (step + 1) % batches.len();
            let indices = batches[step];
            let x = SparseBatch::new(inputs.gather(indices));
            let labels: Vec<u8> = indices.iter().map(|&i| mnist.train.labels[i]).collect();
            let stats = net.backprop(&x, &labels, &mut grads);
            optimizer.step(&mut net, &grads);
            black_box(stats)
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    training(&mut c);
    c.final_summary();
}
