//! The conformance suite every kernel passes: [`matvec`] and [`matvec_x4`] bit-exact with the
//! dense formula `out[r] + Σ_k x[k] · w[r][k]` (wrapping), computed here from the definition.
//!
//! It is `no_std` and allocation-free, so the same suite runs in `cargo test` (one test per
//! declared kernel) and on targets without a test harness: the firmware runs it on an emulated
//! Cortex-M4 for the DSP kernel (feature `conformance`).
//!
//! Cases, for int8 ([`matvec`], [`matvec_x4`]) and int4 weights ([`matvec4`], [`matvec4_x4`]):
//! the shapes the caller names (a network's layers: [`TUTORIAL_SHAPES`] by default) with extreme
//! weights and inputs (all 255 × the largest and smallest weights, zero inputs, zero weights),
//! then random shapes (16–64 rows, 0–[`MAX_COLS`] inputs, any length: the last group
//! zero-padded, the widest walked in several chunks) with random weights, dense or digit-like
//! sparse inputs in runs, and initial values near the i32 limits so that wrapping is exercised;
//! each also for four vectors at once, and with a weight slice that is not word-aligned; then
//! block-sparse matrices ([`matvec_sparse`]) at densities from 0 to 100 %, with empty row blocks
//! and empty groups, against the same formula with every tile not kept zero, and the same row
//! blocks as a hidden layer's (from biases to requantized bytes, as a forward pass walks them).
//! Last,
//! the kernel's requantization of a hidden layer against [`requantize`], at every shift the
//! format accepts.

use core::fmt;

use super::{Arch, ArchOp, GROUP, Groups, KernelError, Matrix, NIBBLE_OFFSET, TILE_ROWS};
use super::{Sparsity, TILE_BYTES, matvec_sparse, matvec_x4, matvec4, matvec4_x4};
use super::{dispatch, matvec};
use super::{nibble_index, tiled_index};
use crate::quant::{SHIFTS, requantize};
use crate::{Kernel, Weights, kinds};

/// The tutorial network's layers as (rows, inputs): 784 → 512 → 10 (padded to 16 rows).
pub const TUTORIAL_SHAPES: [(usize, usize); 2] = [(512, 784), (16, 512)];

/// The widest input the suite's shapes may have (more than one gathered list).
pub const MAX_COLS: usize = 1024;
/// The most rows the suite's fixed shapes may have.
pub const MAX_ROWS: usize = 1024;

/// Rows of the largest random case.
const MAX_RANDOM_ROWS: usize = 4 * TILE_ROWS;

/// Weight bytes the suite needs for `shapes` (and its random cases).
pub const fn scratch_len(shapes: &[(usize, usize)]) -> usize {
    let mut len = MAX_RANDOM_ROWS * MAX_COLS;
    let mut i = 0;
    while i < shapes.len() {
        let (rows, cols) = shapes[i];
        let n = rows * cols.div_ceil(GROUP) * GROUP;
        if n > len {
            len = n;
        }
        i += 1;
    }
    len + 64
}

/// What a passing run covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Cases checked.
    pub cases: u32,
    /// Multiply-accumulates checked.
    pub macs: u64,
}

/// The first case a kernel got wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The kernel cannot run here.
    Unavailable(Kernel),
    /// A shape the suite thought valid was refused.
    Refused {
        /// The case.
        case: &'static str,
        /// The error.
        error: KernelError,
    },
    /// A wrong sum.
    Mismatch {
        /// The case.
        case: &'static str,
        /// Its number among the random cases (0 for the fixed ones).
        number: u32,
        /// Rows × inputs.
        shape: (usize, usize),
        /// The first wrong row.
        row: usize,
        /// The kernel's value.
        got: i32,
        /// The formula's.
        expected: i32,
    },
    /// A wrong requantized byte.
    Requantization {
        /// The accumulator.
        acc: i32,
        /// Multiplier and shift.
        multiplier: i32,
        /// The shift.
        shift: u8,
        /// The kernel's byte.
        got: u8,
        /// [`requantize`]'s.
        expected: u8,
    },
    /// The scratch buffer is smaller than [`scratch_len`] of the shapes.
    ScratchTooSmall,
    /// A shape with rows not a multiple of 16, or beyond [`MAX_ROWS`] × [`MAX_COLS`].
    BadShape((usize, usize)),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Failure::Unavailable(k) => write!(f, "kernel {k} is not available here"),
            Failure::Refused { case, error } => write!(f, "{case}: refused: {error}"),
            Failure::Mismatch {
                case,
                number,
                shape,
                row,
                got,
                expected,
            } => write!(
                f,
                "{case} #{number} ({}x{}): row {row} is {got}, the formula gives {expected}",
                shape.0, shape.1
            ),
            Failure::Requantization {
                acc,
                multiplier,
                shift,
                got,
                expected,
            } => write!(
                f,
                "requantize({acc}, {multiplier}, {shift}) is {got}, the formula gives {expected}"
            ),
            Failure::ScratchTooSmall => write!(f, "scratch buffer below the shapes' scratch_len"),
            Failure::BadShape((rows, cols)) => write!(
                f,
                "shape {rows}x{cols}: rows a multiple of 16 up to {MAX_ROWS}, inputs up to {MAX_COLS}"
            ),
        }
    }
}

/// A small deterministic generator (SplitMix64): the same cases on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), near enough.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Inputs like a digit's (runs of zeros and of ink) or dense, by `style`.
fn fill_inputs(rng: &mut Rng, x: &mut [u8], style: usize) {
    let mut k = 0;
    while k < x.len() {
        let run = 1 + rng.below(24);
        let ink = match style {
            0 => true,               // dense
            1 => rng.below(4) == 0,  // a digit's sparsity: about 3/4 zero
            _ => rng.below(16) == 0, // nearly empty
        };
        for v in x.iter_mut().skip(k).take(run) {
            *v = if ink { rng.byte() } else { 0 };
        }
        k += run;
    }
}

/// The initial accumulator values: random, with the i32 limits now and then.
fn fill_init(rng: &mut Rng, out: &mut [i32]) {
    for o in out.iter_mut() {
        *o = match rng.below(8) {
            0 => i32::MAX - rng.below(1000) as i32,
            1 => i32::MIN + rng.below(1000) as i32,
            _ => rng.next() as i32,
        };
    }
}

/// A weight width: its products and its weights read straight from the definition.
trait Width {
    /// What a weight slice holds.
    type W: Copy + bytemuck::AnyBitPattern + bytemuck::NoUninit;
    /// Bits per weight.
    const BITS: usize;
    /// The name of its cases.
    const NAME: &'static str;
    /// Its kind of weights.
    const WEIGHTS: Weights;
    /// Weight bytes whose every weight is the largest, the smallest, and zero.
    const EXTREMES: [(Self::W, i32); 3];
    fn matvec(kernel: Kernel, w: &[Self::W], x: &[u8], out: &mut [i32]) -> Result<(), KernelError>;
    fn matvec_x4(
        kernel: Kernel,
        w: &[Self::W],
        xs: [&[u8]; 4],
        outs: [&mut [i32]; 4],
    ) -> Result<(), KernelError>;
    /// `w[row][k]` of a matrix with `cols` inputs, read by index.
    fn weight(w: &[Self::W], row: usize, k: usize, cols: usize) -> i32;
}

/// int8 weights.
struct Int8;

impl Width for Int8 {
    type W = i8;
    const BITS: usize = 8;
    const NAME: &'static str = "int8";
    const WEIGHTS: Weights = Weights::Int8;
    const EXTREMES: [(i8, i32); 3] = [(127, 127), (-128, -128), (0, 0)];
    fn matvec(kernel: Kernel, w: &[i8], x: &[u8], out: &mut [i32]) -> Result<(), KernelError> {
        matvec(kernel, w, x, out)
    }
    fn matvec_x4(
        kernel: Kernel,
        w: &[i8],
        xs: [&[u8]; 4],
        outs: [&mut [i32]; 4],
    ) -> Result<(), KernelError> {
        matvec_x4(kernel, w, xs, outs)
    }
    fn weight(w: &[i8], row: usize, k: usize, cols: usize) -> i32 {
        w.get(tiled_index(row, k, cols))
            .copied()
            .map_or(0, i32::from)
    }
}

/// int4 weights, two per byte.
struct Int4;

impl Width for Int4 {
    type W = u8;
    const BITS: usize = 4;
    const NAME: &'static str = "int4";
    const WEIGHTS: Weights = Weights::Int4;
    const EXTREMES: [(u8, i32); 3] = [(0xff, 7), (0x00, -8), (0x88, 0)];
    fn matvec(kernel: Kernel, w: &[u8], x: &[u8], out: &mut [i32]) -> Result<(), KernelError> {
        matvec4(kernel, w, x, out)
    }
    fn matvec_x4(
        kernel: Kernel,
        w: &[u8],
        xs: [&[u8]; 4],
        outs: [&mut [i32]; 4],
    ) -> Result<(), KernelError> {
        matvec4_x4(kernel, w, xs, outs)
    }
    fn weight(w: &[u8], row: usize, k: usize, cols: usize) -> i32 {
        let (byte, shift) = nibble_index(row, k, cols);
        w.get(byte)
            .map_or(0, |b| i32::from((b >> shift) & 0x0f) - NIBBLE_OFFSET)
    }
}

/// Compares a kernel's rows with `init[r] + Σ_k x[k] · w[r][k]`, straight from the definition.
fn compare<V: Width>(
    case: &'static str,
    number: u32,
    w: &[V::W],
    x: &[u8],
    init: &[i32],
    got: &[i32],
) -> Result<(), Failure> {
    let cols = x.len().div_ceil(GROUP) * GROUP;
    compare_with(case, number, |r, k| V::weight(w, r, k, cols), x, init, got)
}

/// [`compare`] with the weights `weight(r, k)` gives.
fn compare_with(
    case: &'static str,
    number: u32,
    weight: impl Fn(usize, usize) -> i32,
    x: &[u8],
    init: &[i32],
    got: &[i32],
) -> Result<(), Failure> {
    for (row, (&g, &i)) in got.iter().zip(init).enumerate() {
        let mut expected = i;
        for (k, &xk) in x.iter().enumerate() {
            expected = expected.wrapping_add(i32::from(xk) * weight(row, k));
        }
        if g != expected {
            return Err(Failure::Mismatch {
                case,
                number,
                shape: (got.len(), x.len()),
                row,
                got: g,
                expected,
            });
        }
    }
    Ok(())
}

/// Runs the suite for `kernel` at the fixed `shapes` (rows, inputs) and `random_cases` random
/// ones. `scratch` holds the weights (at least [`scratch_len`]`(shapes)` bytes); `progress` hears
/// each part's name as it starts.
pub fn run(
    kernel: Kernel,
    scratch: &mut [i8],
    shapes: &[(usize, usize)],
    random_cases: u32,
    mut progress: impl FnMut(&'static str),
) -> Result<Summary, Failure> {
    if !kernel.is_available() {
        return Err(Failure::Unavailable(kernel));
    }
    if let Some(&bad) = shapes
        .iter()
        .find(|(r, c)| !r.is_multiple_of(TILE_ROWS) || *r > MAX_ROWS || *c > MAX_COLS)
    {
        return Err(Failure::BadShape(bad));
    }
    if scratch.len() < scratch_len(shapes) {
        return Err(Failure::ScratchTooSmall);
    }
    let mut summary = Summary { cases: 0, macs: 0 };

    progress("int8: extremes at the given shapes");
    let bytes: &mut [u8] =
        bytemuck::try_cast_slice_mut(scratch).map_err(|_| Failure::ScratchTooSmall)?;
    let mut rng = Rng(0x5EED);
    extremes::<Int8>(kernel, bytes, shapes, &mut rng, &mut summary)?;
    progress("int8: random shapes, one vector and four, aligned and not");
    random::<Int8>(kernel, bytes, &mut rng, random_cases, &mut summary)?;
    progress("int8: block-sparse, densities 0-100 %");
    sparse::<Int8>(kernel, bytes, &mut rng, random_cases, &mut summary)?;
    progress("int4: extremes at the given shapes");
    extremes::<Int4>(kernel, bytes, shapes, &mut rng, &mut summary)?;
    progress("int4: random shapes, one vector and four, aligned and not");
    random::<Int4>(kernel, bytes, &mut rng, random_cases, &mut summary)?;
    progress("int4: block-sparse, densities 0-100 %");
    sparse::<Int4>(kernel, bytes, &mut rng, random_cases, &mut summary)?;

    progress("requantization of hidden layers");
    for round in 0..random_cases.max(4) {
        let mut acc = [0i32; REQUANTIZED];
        fill_init(&mut rng, &mut acc);
        let mut multiplier = [[0u8; 4]; REQUANTIZED];
        let mut shift = [0u8; REQUANTIZED];
        for (j, (m, s)) in multiplier.iter_mut().zip(&mut shift).enumerate() {
            (*m, *s) = quantization(&mut rng, j, round);
        }
        // Accumulators a digit's layer produces, where rounding boundaries matter most.
        for a in acc.iter_mut().skip(round as usize % 2).step_by(2) {
            *a >>= 8 + rng.below(16);
        }
        // SAFETY: `run` returned early for an unavailable kernel.
        let got = unsafe { dispatch(kernel, Requantize(&acc, &multiplier, &shift)) };
        for (((&a, m), &s), &g) in acc.iter().zip(&multiplier).zip(&shift).zip(&got) {
            let m = i32::from_le_bytes(*m);
            let expected = requantize(a, m, s);
            if g != expected {
                return Err(Failure::Requantization {
                    acc: a,
                    multiplier: m,
                    shift: s,
                    got: g,
                    expected,
                });
            }
        }
        summary.cases += 1;
    }
    Ok(summary)
}

/// `refused(case)(error)`: a valid shape refused.
fn refused(case: &'static str) -> impl Fn(KernelError) -> Failure {
    move |error| Failure::Refused { case, error }
}

/// The given shapes with every weight the largest, the smallest or zero, against all-255 and
/// all-zero inputs: checked against the closed form too.
fn extremes<V: Width>(
    kernel: Kernel,
    scratch: &mut [u8],
    shapes: &[(usize, usize)],
    rng: &mut Rng,
    summary: &mut Summary,
) -> Result<(), Failure> {
    let mut init = [0i32; MAX_ROWS];
    let mut got = [0i32; MAX_ROWS];
    fill_init(rng, &mut init);
    for (fill, weight) in V::EXTREMES {
        for input in [255u8, 0] {
            for &(rows, cols) in shapes {
                let padded = cols.div_ceil(GROUP) * GROUP;
                let case = if input == 0 {
                    "zero inputs"
                } else {
                    "all-255 inputs, extreme weights"
                };
                let (Some(w), Some(out), Some(init)) = (
                    scratch.get_mut(..rows * padded * V::BITS / 8),
                    got.get_mut(..rows),
                    init.get(..rows),
                ) else {
                    return Err(Failure::ScratchTooSmall);
                };
                let w: &mut [V::W] =
                    bytemuck::try_cast_slice_mut(w).map_err(|_| Failure::ScratchTooSmall)?;
                w.fill(fill);
                let x = [input; MAX_COLS];
                let x = x.get(..cols).unwrap_or(&[]);
                out.copy_from_slice(init);
                V::matvec(kernel, w, x, out).map_err(refused(case))?;
                // The padding columns meet zeros.
                let sum = weight
                    .wrapping_mul(i32::from(input))
                    .wrapping_mul(cols as i32);
                for (row, (&g, &i)) in out.iter().zip(init).enumerate() {
                    if g != i.wrapping_add(sum) {
                        return Err(Failure::Mismatch {
                            case,
                            number: 0,
                            shape: (rows, cols),
                            row,
                            got: g,
                            expected: i.wrapping_add(sum),
                        });
                    }
                }
                summary.cases += 1;
                summary.macs += (rows * cols) as u64;
            }
        }
    }
    Ok(())
}

/// Random shapes, weights, inputs and initial values, for one vector and four, with the weights
/// word-aligned on even cases and one byte off on odd ones.
fn random<V: Width>(
    kernel: Kernel,
    scratch: &mut [u8],
    rng: &mut Rng,
    cases: u32,
    summary: &mut Summary,
) -> Result<(), Failure> {
    for number in 0..cases {
        let rows = TILE_ROWS * (1 + rng.below(MAX_RANDOM_ROWS / TILE_ROWS));
        // Every length from none to the widest (whole groups more often), the widest and the
        // tutorial's 784 (exactly one gathered list) more often.
        let cols = match rng.below(8) {
            0 => MAX_COLS,
            1 => 784,
            2 | 3 => rng.below(MAX_COLS + 1),
            _ => 4 * rng.below(MAX_COLS / 4 + 1),
        };
        let padded = cols.div_ceil(GROUP) * GROUP;
        let skew = (number % 2) as usize;
        let Some(w) = scratch.get_mut(skew..skew + rows * padded * V::BITS / 8) else {
            return Err(Failure::ScratchTooSmall);
        };
        for v in w.iter_mut() {
            *v = rng.byte();
        }
        let w: &[V::W] = bytemuck::try_cast_slice(w).map_err(|_| Failure::ScratchTooSmall)?;
        let mut xs = [[0u8; MAX_COLS]; 4];
        for (i, x) in xs.iter_mut().enumerate() {
            fill_inputs(rng, x, (number as usize + i) % 3);
        }
        let xs = xs.each_ref().map(|x| x.get(..cols).unwrap_or(&[]));
        let mut inits = [[0i32; MAX_RANDOM_ROWS]; 4];
        for init in &mut inits {
            fill_init(rng, init);
        }
        let inits = inits.each_ref().map(|i| i.get(..rows).unwrap_or(&[]));

        let mut one = [0i32; MAX_RANDOM_ROWS];
        let one = one.get_mut(..rows).unwrap_or(&mut []);
        one.copy_from_slice(inits[0]);
        V::matvec(kernel, w, xs[0], one).map_err(refused(V::NAME))?;
        compare::<V>(V::NAME, number, w, xs[0], inits[0], one)?;
        // A walk that can stop at a quarter tile ([`Arch::QUARTER_ROWS`]), as the output layer's
        // does: the last row block's first 4, 8 or 12 rows.
        let part = rows - 4 * (1 + rng.below(3));
        let w8 = bytemuck::try_cast_slice::<V::W, i8>(w).ok();
        if let Some(w8) = w8.filter(|_| V::WEIGHTS == Weights::Int8) {
            // SAFETY: `run` returned early for an unavailable kernel.
            let got = unsafe { dispatch(kernel, QuarterRows(w8, xs[0], inits[0], part)) };
            if let Some(got) = got {
                let (init, got) = (inits[0].get(..part), got.get(..part));
                let (init, got) = (init.unwrap_or(&[]), got.unwrap_or(&[]));
                compare::<V>("rows up to a quarter tile", number, w, xs[0], init, got)?;
                summary.cases += 1;
            }
        }

        let mut four = [[0i32; MAX_RANDOM_ROWS]; 4];
        for (f, i) in four.iter_mut().zip(&inits) {
            if let Some(f) = f.get_mut(..rows) {
                f.copy_from_slice(i);
            }
        }
        let outs = four
            .each_mut()
            .map(|f| f.get_mut(..rows).unwrap_or(&mut []));
        V::matvec_x4(kernel, w, xs, outs).map_err(refused("batch of 4"))?;
        for ((f, x), init) in four.iter().zip(xs).zip(inits) {
            compare::<V>(
                "batch of 4",
                number,
                w,
                x,
                init,
                f.get(..rows).unwrap_or(&[]),
            )?;
        }
        summary.cases += 5;
        summary.macs += 5 * (rows * padded) as u64;
    }
    Ok(())
}

/// Bytes starting word-aligned.
#[repr(C, align(4))]
struct Aligned<const N: usize>([u8; N]);

/// Random block-sparse matrices ([`matvec_sparse`]): each tile kept with a density drawn per
/// case from 0 to 100 % (now and then a whole row block or a whole group empty), random kept
/// tiles, inputs and initial values, against the dense formula with every other tile zero.
fn sparse<V: Width>(
    kernel: Kernel,
    scratch: &mut [u8],
    rng: &mut Rng,
    cases: u32,
    summary: &mut Summary,
) -> Result<(), Failure> {
    const MAX_BLOCKS: usize = MAX_RANDOM_ROWS / TILE_ROWS;
    const MAX_TILES: usize = MAX_BLOCKS * MAX_COLS / GROUP;
    for number in 0..cases {
        let blocks_n = 1 + rng.below(MAX_BLOCKS);
        let rows = TILE_ROWS * blocks_n;
        let cols = match rng.below(4) {
            0 => MAX_COLS,
            1 => 784,
            _ => rng.below(MAX_COLS + 1),
        };
        let groups = cols.div_ceil(GROUP);
        let density = rng.below(17);
        let (empty_block, empty_group) = (rng.below(2 * blocks_n), rng.below(2 * groups.max(1)));
        // Kept lists and inputs at every alignment: a kernel may load them by halfwords and words
        // where they are aligned, and must not assume it.
        let (kept_at, x_at) = match number % 4 {
            3 => (1, 1 + number as usize / 4 % 3),
            _ => (0, 0),
        };
        let mut blocks = [[0u8; 2]; MAX_BLOCKS];
        let mut kept_bytes = Aligned([0u8; 2 * MAX_TILES + 2]);
        let kept_bytes = kept_bytes
            .0
            .get_mut(kept_at..kept_at + 2 * MAX_TILES)
            .unwrap_or(&mut []);
        let kept: &mut [[u8; 2]] = bytemuck::cast_slice_mut(kept_bytes);
        let mut tiles = 0;
        for (b, count) in blocks.iter_mut().enumerate().take(blocks_n) {
            let mut n = 0u16;
            for g in 0..groups {
                if rng.below(16) < density && b != empty_block && g != empty_group {
                    if let Some(k) = kept.get_mut(tiles) {
                        *k = (g as u16).to_le_bytes();
                    }
                    tiles += 1;
                    n += 1;
                }
            }
            *count = n.to_le_bytes();
        }
        let (blocks, kept) = (
            blocks.get(..blocks_n).unwrap_or(&[]),
            kept.get(..tiles).unwrap_or(&[]),
        );
        let s = Sparsity::new(blocks, kept, cols).map_err(|_| Failure::ScratchTooSmall)?;
        let Some(w) = scratch.get_mut(..tiles * TILE_BYTES * V::BITS / 8) else {
            return Err(Failure::ScratchTooSmall);
        };
        for v in w.iter_mut() {
            *v = rng.byte();
        }
        let mut x = Aligned([0u8; MAX_COLS + 4]);
        let x = x.0.get_mut(x_at..x_at + MAX_COLS).unwrap_or(&mut []);
        fill_inputs(rng, x, number as usize % 3);
        let x = x.get(..cols).unwrap_or(&[]);
        let mut init = [0i32; MAX_RANDOM_ROWS];
        fill_init(rng, &mut init);
        let init = init.get(..rows).unwrap_or(&[]);
        let mut got = [0i32; MAX_RANDOM_ROWS];
        let got = got.get_mut(..rows).unwrap_or(&mut []);
        got.copy_from_slice(init);
        let case = "block-sparse";
        matvec_sparse(kernel, V::WEIGHTS, w, s, x, got).map_err(refused(case))?;
        hidden_layer(
            kernel,
            Matrix::new(V::WEIGHTS, w),
            s,
            x,
            (init, got),
            (rng, number),
        )?;
        let w: &[V::W] = bytemuck::try_cast_slice(w).map_err(|_| Failure::ScratchTooSmall)?;
        let weight = |r: usize, k: usize| {
            // The stored tiles as one row block of `tiles` tiles; zero where not kept.
            s.tile_of(r, k).map_or(0, |t| {
                V::weight(w, r % TILE_ROWS, t * GROUP + k % GROUP, tiles * GROUP)
            })
        };
        compare_with(case, number, weight, x, init, got)?;
        summary.cases += 1;
        summary.macs += (rows * cols) as u64;
    }
    Ok(())
}

/// The rows of a [`sparse`] case as a hidden layer's: from biases (`init` scaled down to where
/// requantization is not saturated) to requantized bytes, as a forward pass walks them, against
/// [`requantize`] of the sums `got − init` (the matrix product, checked already) plus the bias.
fn hidden_layer(
    kernel: Kernel,
    m: Matrix<'_>,
    s: Sparsity<'_>,
    x: &[u8],
    (init, got): (&[i32], &[i32]),
    (rng, number): (&mut Rng, u32),
) -> Result<(), Failure> {
    let mut bias = [[0u8; 4]; MAX_RANDOM_ROWS];
    let mut multiplier = [[0u8; 4]; MAX_RANDOM_ROWS];
    let mut shift = [0u8; MAX_RANDOM_ROWS];
    let mut expected = [0u8; MAX_RANDOM_ROWS];
    let rows = bias.iter_mut().zip(&mut multiplier).zip(&mut shift);
    for (r, (((b, m), s), e)) in rows.zip(&mut expected).enumerate().take(got.len()) {
        let (i, g) = (init.get(r).copied(), got.get(r).copied());
        let (i, g) = (i.unwrap_or(0), g.unwrap_or(0));
        let b32 = i >> (8 + rng.below(16));
        (*m, *s) = quantization(rng, r, number);
        *b = b32.to_le_bytes();
        *e = requantize(
            g.wrapping_sub(i).wrapping_add(b32),
            i32::from_le_bytes(*m),
            *s,
        );
    }
    let n = got.len();
    let (Some(bias), Some(multiplier), Some(shift)) =
        (bias.get(..n), multiplier.get(..n), shift.get(..n))
    else {
        return Err(Failure::ScratchTooSmall);
    };
    // SAFETY: `matvec_sparse` checked the shape and the kernel's availability.
    let out = unsafe { dispatch(kernel, SparseHidden(m, s, x, (bias, multiplier, shift))) };
    for (row, (&g, &e)) in out.iter().zip(&expected).enumerate().take(n) {
        if g != e {
            return Err(Failure::Mismatch {
                case: "block-sparse hidden layer",
                number,
                shape: (n, x.len()),
                row,
                got: i32::from(g),
                expected: i32::from(e),
            });
        }
    }
    Ok(())
}

/// A block-sparse hidden layer's requantized rows, walked as a forward pass walks them.
struct SparseHidden<'a>(
    Matrix<'a>,
    Sparsity<'a>,
    &'a [u8],
    (&'a [[u8; 4]], &'a [[u8; 4]], &'a [u8]),
);

impl ArchOp for SparseHidden<'_> {
    type Output = [u8; MAX_RANDOM_ROWS];
    unsafe fn run<A: Arch>(self) -> [u8; MAX_RANDOM_ROWS] {
        let SparseHidden(m, s, x, requantization) = self;
        let mut groups = Groups::new();
        let mut out = [0u8; MAX_RANDOM_ROWS];
        let rows = requantization.0.len();
        let out_rows = out.get_mut(..rows).unwrap_or(&mut []);
        // SAFETY: the shape checked by the caller, the CPU by `dispatch`'s caller.
        unsafe {
            m.hidden_sparse::<A, { kinds::ALL }>(s, x, &mut groups, requantization, out_rows)
        };
        out
    }
}

/// The first `n` rows (a multiple of 4) of `init + W · x`, for an architecture that walks
/// quarter tiles ([`Arch::QUARTER_ROWS`]); `None` for the others.
struct QuarterRows<'a>(&'a [i8], &'a [u8], &'a [i32], usize);

impl ArchOp for QuarterRows<'_> {
    type Output = Option<[i32; MAX_RANDOM_ROWS]>;
    unsafe fn run<A: Arch>(self) -> Option<[i32; MAX_RANDOM_ROWS]> {
        let QuarterRows(w, x, init, n) = self;
        if !A::QUARTER_ROWS {
            return None;
        }
        let mut out = [0i32; MAX_RANDOM_ROWS];
        let acc = out.get_mut(..n)?;
        acc.copy_from_slice(init.get(..n)?);
        let mut groups = Groups::new();
        groups.walk_chunks(
            x.len(),
            // SAFETY: the CPU by `dispatch`'s caller.
            |g, from| unsafe { g.gather::<A>(x, from) },
            // SAFETY: `w` is whole row blocks of `x.len()` inputs (rounded up to 4), `n` rows of
            // its last one cut off; the CPU as above.
            |g| unsafe { A::rows(w, g, acc) },
        );
        Some(out)
    }
}

/// A multiplier and shift a validated model may hold, for unit `j` of round `round`: the
/// largest and smallest multipliers now and then, every shift of [`SHIFTS`] in turn.
fn quantization(rng: &mut Rng, j: usize, round: u32) -> ([u8; 4], u8) {
    let m = match j % 4 {
        0 => i32::MAX,
        1 => 1,
        _ => (1 << 30) + rng.below(1 << 30) as i32,
    };
    let span = usize::from(SHIFTS.end() - SHIFTS.start()) + 1;
    (
        m.to_le_bytes(),
        SHIFTS.start() + ((j + round as usize) % span) as u8,
    )
}

/// Units of the requantization cases.
const REQUANTIZED: usize = 512;

/// A kernel's requantization of one hidden layer.
struct Requantize<'a>(&'a [i32], &'a [[u8; 4]], &'a [u8]);

impl ArchOp for Requantize<'_> {
    type Output = [u8; REQUANTIZED];
    unsafe fn run<A: Arch>(self) -> [u8; REQUANTIZED] {
        let mut out = [0u8; REQUANTIZED];
        // SAFETY: the CPU by `dispatch`'s caller.
        unsafe { A::requantize(self.0, self.1, self.2, &mut out) };
        out
    }
}

/// The test every declared kernel gets: the suite, failing (not skipping) a kernel that this
/// machine should run — listed by name in `INFER_CORE_EXPECT_KERNELS` (comma-separated) — but
/// cannot.
#[cfg(test)]
pub(crate) fn test_kernel(kernel: Kernel) {
    let expected = std::env::var("INFER_CORE_EXPECT_KERNELS").unwrap_or_default();
    let expected = expected.split(',').any(|name| name.trim() == kernel.name());
    if !kernel.is_available() {
        assert!(
            !expected,
            "kernel {kernel} is listed in INFER_CORE_EXPECT_KERNELS but not available here"
        );
        std::println!("conformance: {kernel} SKIPPED (not available on this CPU)");
        return;
    }
    let mut scratch = std::vec![0i8; scratch_len(&TUTORIAL_SHAPES)];
    let cases = if cfg!(miri) { 2 } else { 300 };
    match run(kernel, &mut scratch, &TUTORIAL_SHAPES, cases, |_| {}) {
        Ok(summary) => std::println!(
            "conformance: {kernel} passed {} cases ({} multiply-accumulates)",
            summary.cases,
            summary.macs
        ),
        Err(failure) => panic!("conformance: {kernel}: {failure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// The suite catches a wrong kernel: a formula off by one in one row is a mismatch.
    #[test]
    fn a_wrong_sum_is_reported() {
        let w = [1i8; 16 * 4];
        let x = [1u8, 2, 3, 4];
        let init = [0i32; 16];
        let mut got = [10i32; 16];
        assert_eq!(compare::<Int8>("t", 0, &w, &x, &init, &got), Ok(()));
        got[5] = 11;
        assert!(matches!(
            compare::<Int8>("t", 0, &w, &x, &init, &got),
            Err(Failure::Mismatch {
                row: 5,
                got: 11,
                expected: 10,
                ..
            })
        ));
    }

    #[test]
    fn unavailable_kernels_and_small_scratch_are_errors() {
        let mut small = [0i8; 16];
        assert_eq!(
            run(Kernel::Scalar, &mut small, &TUTORIAL_SHAPES, 1, |_| {}),
            Err(Failure::ScratchTooSmall)
        );
        assert_eq!(
            run(Kernel::Scalar, &mut small, &[(10, 4)], 1, |_| {}),
            Err(Failure::BadShape((10, 4)))
        );
        for k in Kernel::ALL.into_iter().filter(|k| !k.is_available()) {
            assert_eq!(
                run(k, &mut small, &TUTORIAL_SHAPES, 1, |_| {}),
                Err(Failure::Unavailable(k))
            );
        }
    }

    /// Small enough for the interpreter: CI runs this one under miri.
    #[test]
    fn small_products_match_the_formula() {
        for (rows, cols) in [(16usize, 16usize), (32, 8), (16, 0), (16, 7)] {
            let w: Vec<i8> = (0..rows * cols.div_ceil(4) * 4)
                .map(|i| (i * 37 % 256) as u8 as i8)
                .collect();
            let x: Vec<u8> = (0..cols)
                .map(|i| if i % 3 == 0 { 0 } else { (i * 11 % 256) as u8 })
                .collect();
            let init: Vec<i32> = (0..rows as i32).map(|r| r * 1000 - 7).collect();
            for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let mut out = init.clone();
                matvec(kernel, &w, &x, &mut out).unwrap();
                compare::<Int8>("small", 0, &w, &x, &init, &out).unwrap();
            }
        }
    }
}
