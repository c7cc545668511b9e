//! Gradual magnitude pruning in blocks the kernels skip: a hidden layer's weights are cut in
//! tiles of 16 units × 4 inputs (the kernels' tile, so a pruned tile is never stored nor
//! multiplied), and the tiles that contribute least are zeroed, more and more of them along a
//! cubic schedule (Zhu & Gupta 2017, "To prune, or not to prune"), until only the target density
//! is left; training goes on with the survivors, and the zeroed tiles stay zero to the end. The
//! output layer stays dense.
//!
//! A tile's score is its weights' squares times its inputs' mean square ([`InputActivity`], the
//! first layer's from the training batches, so a tile of pixels that are always blank scores
//! nothing however large its untrained weights), divided by how often its group of pixels is
//! live: a microcontroller multiplies a kept tile only when its pixels are not all blank, so
//! what a tile costs is how often it is live, and the score is what it contributes per multiply
//! (the mean square given that it is live), to the power `--live-cost` ([`DEFAULT_LIVE_COST`]).

use nalgebra::DMatrix;
use serde::Serialize;

use crate::mlp::Mlp;

/// Units of a pruned block (the kernels' tile rows).
pub const BLOCK_ROWS: usize = 16;
/// Inputs of a pruned block (the kernels' group).
pub const BLOCK_COLS: usize = 4;

/// When and how far to prune.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pruning {
    /// Fraction of each hidden layer's blocks kept at the end (0 < density ≤ 1).
    pub density: f32,
    /// Fraction of the run's steps done when pruning starts.
    pub start: f64,
    /// Fraction of the run's steps done when the target density is reached (fine-tuning after).
    pub end: f64,
    /// How much a tile's live fraction counts against it ([`InputActivity::weights`]).
    pub live_cost: f64,
}

impl Pruning {
    /// The schedule of a run: pruning from 25 % to 65 % of the steps, so that the network first
    /// learns densely and then fine-tunes what is left (and, with a quantization-aware recipe,
    /// ends on those epochs).
    pub fn new(density: f32) -> Self {
        Self {
            density,
            start: 0.25,
            end: 0.65,
            live_cost: DEFAULT_LIVE_COST,
        }
    }

    /// The density to hold after `progress` (0–1) of the run: 1 before the start, the target
    /// after the end, and between them `d + (1 − d)(1 − t)^3` of the time `t` into the window.
    pub fn density_at(&self, progress: f64) -> f32 {
        let span = (self.end - self.start).max(1e-9);
        let t = ((progress - self.start) / span).clamp(0.0, 1.0);
        let d = f64::from(self.density);
        (d + (1.0 - d) * (1.0 - t).powi(3)) as f32
    }

    /// Whether `progress` is past the window (the target density holds).
    pub fn is_done(&self, progress: f64) -> bool {
        progress >= self.end
    }
}

/// How much a tile's live fraction counts against it by default (`--live-cost`): its score is
/// divided by the fraction of inputs in which its group is live, to this power. Measured on the
/// best recipe, 784-512-10 int8 at density 0.2, seed 42: 0 (contribution alone) 99.09 % with 758
/// kept tiles live per digit, 0.5 99.11 % with 698, 1 99.06 % with 576 (seed 7: 98.92 %), 2
/// 95.94 % (the network keeps too few of the usual pixels).
pub const DEFAULT_LIVE_COST: f64 = 0.5;

/// What the first layer's inputs did over the training batches: each input's sum of squares, and
/// for each group of 4 the number of rows in which it was live.
#[derive(Debug, Clone, Default)]
pub struct InputActivity {
    squares: Vec<f64>,
    live: Vec<f64>,
    rows: f64,
}

impl InputActivity {
    /// Nothing seen yet, for `inputs` inputs.
    pub fn new(inputs: usize) -> Self {
        Self {
            squares: vec![0.0; inputs],
            live: vec![0.0; inputs.div_ceil(BLOCK_COLS)],
            rows: 0.0,
        }
    }

    /// Adds one input row, given as its non-zero inputs `(index, value)` in increasing index.
    pub fn add_row(&mut self, row: impl Iterator<Item = (usize, f32)>) {
        let mut last = usize::MAX;
        for (k, v) in row {
            if let Some(s) = self.squares.get_mut(k) {
                *s += f64::from(v * v);
            }
            let g = k / BLOCK_COLS;
            if v != 0.0 && g != last {
                last = g;
                if let Some(l) = self.live.get_mut(g) {
                    *l += 1.0;
                }
            }
        }
        self.rows += 1.0;
    }

    /// Each input's factor in a tile's score: its share of the inputs' total mean square,
    /// divided by its group's live fraction to the power `live_cost` (a group never live has no
    /// mean square: 0).
    pub fn weights(&self, live_cost: f64) -> Vec<f32> {
        let total: f64 = self.squares.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let rows = self.rows.max(1.0);
        self.squares
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let live = self.live.get(k / BLOCK_COLS).copied().unwrap_or(0.0);
                let fraction = (live / rows).max(1.0 / rows);
                (s / total / fraction.powf(live_cost)) as f32
            })
            .collect()
    }
}

/// The blocks of every hidden layer (the first one's `w1`, then each of `middle`): which are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Masks {
    layers: Vec<Mask>,
}

/// One `outputs × inputs` layer's blocks, block-row-major.
#[derive(Debug, Clone, PartialEq)]
struct Mask {
    outputs: usize,
    inputs: usize,
    kept: Vec<bool>,
    /// The density it holds now.
    density: f32,
}

impl Mask {
    fn new(w: &DMatrix<f32>) -> Self {
        let (outputs, inputs) = w.shape();
        let blocks = outputs.div_ceil(BLOCK_ROWS) * inputs.div_ceil(BLOCK_COLS);
        Self {
            outputs,
            inputs,
            kept: vec![true; blocks],
            density: 1.0,
        }
    }

    fn groups(&self) -> usize {
        self.inputs.div_ceil(BLOCK_COLS)
    }

    /// Each block's score: `Σ w² · a` over its weights, `a` the mean square of their input
    /// (1 for every input where it is not known).
    fn scores(&self, w: &DMatrix<f32>, activity: Option<&[f32]>) -> Vec<f32> {
        let groups = self.groups();
        let mut scores = vec![0.0f32; self.kept.len()];
        // Column-major: column k is input k's weights into every unit.
        for (k, column) in w.column_iter().enumerate() {
            let a = activity.and_then(|a| a.get(k)).copied().unwrap_or(1.0);
            let block = &mut scores[k / BLOCK_COLS..];
            for (j, &v) in column.iter().enumerate() {
                block[j / BLOCK_ROWS * groups] += v * v * a;
            }
        }
        scores
    }

    /// Keeps the `density` fraction of blocks of largest score (fewer only: a pruned block stays
    /// pruned), then zeroes the others in `w`.
    fn prune(&mut self, w: &mut DMatrix<f32>, density: f32, activity: Option<&[f32]>) {
        let keep = ((f64::from(density) * self.kept.len() as f64).round() as usize).max(1);
        if keep < self.kept.iter().filter(|&&k| k).count() {
            let norms = self.scores(w, activity);
            let mut order: Vec<usize> = (0..norms.len()).filter(|&b| self.kept[b]).collect();
            // Largest first; ties (pruned blocks are all zero) by position, so runs repeat.
            order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]).then(a.cmp(&b)));
            for &b in &order[keep..] {
                self.kept[b] = false;
            }
        }
        self.density = self.kept.iter().filter(|&&k| k).count() as f32 / self.kept.len() as f32;
        self.apply(w);
    }

    /// Zeroes the weights of the pruned blocks.
    fn apply(&self, w: &mut DMatrix<f32>) {
        if self.density >= 1.0 {
            return;
        }
        let groups = self.groups();
        for (k, mut column) in w.column_iter_mut().enumerate() {
            for (j, v) in column.iter_mut().enumerate() {
                if !self.kept[j / BLOCK_ROWS * groups + k / BLOCK_COLS] {
                    *v = 0.0;
                }
            }
        }
    }
}

/// The hidden layers' weight matrices of `net`, first to last.
fn hidden_weights(net: &mut Mlp) -> impl Iterator<Item = &mut DMatrix<f32>> {
    std::iter::once(&mut net.w1).chain(net.middle.iter_mut().map(|d| &mut d.w))
}

impl Masks {
    /// Every block of `net`'s hidden layers kept.
    pub fn new(net: &Mlp) -> Self {
        let layers = std::iter::once(&net.w1)
            .chain(net.middle.iter().map(|d| &d.w))
            .map(Mask::new)
            .collect();
        Self { layers }
    }

    /// Prunes every hidden layer of `net` down to `density` (never back up), scoring the first
    /// layer's blocks with its inputs' mean squares `activity` if given.
    pub fn prune(&mut self, net: &mut Mlp, density: f32, activity: Option<&[f32]>) {
        for (i, (mask, w)) in self.layers.iter_mut().zip(hidden_weights(net)).enumerate() {
            mask.prune(w, density, activity.filter(|_| i == 0));
        }
    }

    /// Zeroes the pruned blocks of `net` again (after an optimizer step moved them).
    pub fn apply(&self, net: &mut Mlp) {
        for (mask, w) in self.layers.iter().zip(hidden_weights(net)) {
            mask.apply(w);
        }
    }

    /// The density each hidden layer holds, first to last.
    pub fn densities(&self) -> Vec<f32> {
        self.layers.iter().map(|m| m.density).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_schedule_runs_from_dense_to_the_target_cubically() {
        let p = Pruning::new(0.1);
        assert_eq!(p.density_at(0.0), 1.0);
        assert_eq!(p.density_at(0.25), 1.0);
        assert!((p.density_at(0.65) - 0.1).abs() < 1e-6);
        assert!((p.density_at(1.0) - 0.1).abs() < 1e-6);
        // Half-way: d + (1 − d)/8.
        assert!((p.density_at(0.45) - (0.1 + 0.9 / 8.0)).abs() < 1e-6);
        let mut last = 1.0;
        for i in 0..=100 {
            let d = p.density_at(f64::from(i) / 100.0);
            assert!(d <= last);
            last = d;
        }
    }

    #[test]
    fn pruning_keeps_the_largest_blocks_and_they_stay_zero() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut net = Mlp::glorot(30, &[40, 20], 10, &mut rng);
        // One block of the first layer made the largest: units 16–31, inputs 8–11.
        for j in 16..32 {
            for k in 8..12 {
                net.w1[(j, k)] = 5.0;
            }
        }
        let mut masks = Masks::new(&net);
        masks.prune(&mut net, 0.1, None);
        let d = masks.densities();
        // 3 × 8 blocks in the first layer, 2 × 10 in the second: 10 % rounds to 2.
        assert_eq!(d, vec![2.0 / 24.0, 2.0 / 20.0]);
        assert_eq!(net.w1[(20, 9)], 5.0);
        let zero_blocks = |w: &DMatrix<f32>| {
            let (r, c) = w.shape();
            let mut n = 0;
            for b in 0..r.div_ceil(16) {
                for g in 0..c.div_ceil(4) {
                    let all_zero = (b * 16..(b * 16 + 16).min(r))
                        .all(|j| (g * 4..(g * 4 + 4).min(c)).all(|k| w[(j, k)] == 0.0));
                    n += usize::from(all_zero);
                }
            }
            n
        };
        assert_eq!(zero_blocks(&net.w1), 22);
        assert_eq!(zero_blocks(&net.middle[0].w), 18);
        // The output layer is left alone.
        assert!(net.w2.iter().all(|&v| v != 0.0));
        // A step moves the pruned weights; apply zeroes them again; a later prune to a higher
        // density brings nothing back.
        net.w1.fill(1.0);
        masks.apply(&mut net);
        assert_eq!(zero_blocks(&net.w1), 22);
        masks.prune(&mut net, 0.5, None);
        assert_eq!(zero_blocks(&net.w1), 22);
    }

    #[test]
    fn a_group_that_is_rarely_live_pays_less_for_the_same_mean_square() {
        // Inputs 0–3 are 0.1 in every row; inputs 4–7 are 1.0 in one row of a hundred: the
        // same mean square (0.01), but the second group costs a multiply a hundredth as often.
        let mut activity = InputActivity::new(8);
        for r in 0..100 {
            let rare = if r == 0 { 1.0 } else { 0.0 };
            let row = (0..4).map(|k| (k, 0.1)).chain((4..8).map(|k| (k, rare)));
            activity.add_row(row.filter(|&(_, v)| v != 0.0));
        }
        for cost in [0.0, 0.5, 1.0] {
            let w = activity.weights(cost);
            assert!((w[0] - w[3]).abs() < 1e-6 && (w[4] - w[7]).abs() < 1e-6);
            let expected = 100f32.powf(cost as f32);
            assert!(
                (w[4] / w[0] - expected).abs() < expected * 1e-3,
                "{cost}: {w:?}"
            );
        }
        // A group never live weighs nothing.
        let mut blank = InputActivity::new(8);
        blank.add_row((0..4).map(|k| (k, 1.0)));
        assert_eq!(blank.weights(1.0)[4..], [0.0; 4]);
    }

    #[test]
    fn blocks_of_inputs_that_are_never_active_go_first() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut net = Mlp::glorot(8, &[16], 10, &mut rng);
        // Inputs 0–3 carry the largest weights but are always zero.
        for j in 0..16 {
            for k in 0..4 {
                net.w1[(j, k)] = 9.0;
            }
        }
        let mut masks = Masks::new(&net);
        masks.prune(
            &mut net,
            0.5,
            Some(&[0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5]),
        );
        assert!((0..16).all(|j| net.w1[(j, 0)] == 0.0 && net.w1[(j, 4)] != 0.0));
    }
}
