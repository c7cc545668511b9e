//! The forward passes: one loop over the layers, integer-only (each layer int8 or int4) written
//! once over the kernels' architectures, and f32.

use crate::format::{F32Model, FormatError, Header, MAX_CLASSES, QuantLayer, QuantModel};
use crate::kernels::{self, Arch, ArchOp, BatchArch, Groups, Kernel, KernelError, TILE_ROWS};
use crate::kernels::{GROUP, Matrix, groups_of};
use crate::{Weights, kinds};

/// Rows computed per walk of the input's groups. On a microcontroller one tile of rows, so the
/// i32 scratch is 64 bytes of stack; elsewhere up to 512, so that wide kernels keep several row
/// blocks in flight.
const ROWS_PER_PASS: usize = if cfg!(target_os = "none") {
    TILE_ROWS
} else {
    512
};

/// A hidden layer's outputs, word-aligned: the next layer's groups are words (a Cortex-M0 loads
/// a kept tile's inputs with one `ldr`).
#[repr(C, align(4))]
struct Activations<const N: usize>([u8; N]);

/// A hidden pass's requantization: multipliers, shifts and the u8 outputs.
type Requantization<'a> = (&'a [[u8; 4]], &'a [u8], &'a mut [u8]);

/// Logits, one per class.
pub type Logits<T> = heapless::Vec<T, MAX_CLASSES>;

/// What the integer network says about one input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Prediction {
    /// The class of the largest real logit (the lowest one on a tie).
    pub class: u8,
    /// The output layer's accumulators; class `c`'s real logit is `logits[c] · logit_scale(c)`.
    pub logits: Logits<i32>,
}

impl<'a> QuantLayer<'a> {
    fn matrix(&self) -> Matrix<'a> {
        Matrix::new(self.layer.weights, self.w)
    }

    /// One pass of a hidden layer: `out = requantize(bias − excess + W · x)` for the rows of
    /// `m` (whole row blocks), `x` gathered in `groups` already when one list holds its live
    /// groups (`whole`), else gathered here chunk by chunk.
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; `m` is `acc.len()` rows of `x.len()`
    /// inputs rounded up to 4; `bias`, `mul`, `shift` and `out` hold `acc.len()` rows.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pass<A: Arch, const KINDS: u8>(
        m: Matrix<'_>,
        (x, whole): (&[u8], bool),
        groups: &mut Groups<A::Group>,
        (bias, excess): (&[[u8; 4]], i32),
        acc: &mut [i32],
        requantization: Option<Requantization<'_>>,
    ) {
        start(acc, bias, excess);
        if whole {
            // SAFETY: the caller's guarantee.
            unsafe { m.walk::<A, KINDS>(groups, acc) };
        } else {
            groups.walk_chunks(
                x.len(),
                // SAFETY: the CPU by the caller.
                |g, from| unsafe { g.gather::<A>(x, from) },
                // SAFETY: as above.
                |g| unsafe { m.walk::<A, KINDS>(g, acc) },
            );
        }
        if let Some((mul, shift, out)) = requantization {
            // SAFETY: the CPU by the caller.
            unsafe { A::requantize(acc, mul, shift, out) };
        }
    }

    /// A hidden layer: `out = requantize(bias + W · x)`, `out` its padded rows; `groups` is the
    /// forward pass's one gathered list (1.5 KB on a Cortex-M4), which every layer refills.
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; `x.len()` is the layer's inputs;
    /// `out.len()` is the layer's padded rows.
    #[inline(never)]
    unsafe fn hidden<A: Arch, const KINDS: u8>(
        &self,
        x: &[u8],
        groups: &mut Groups<A::Group>,
        out: &mut [u8],
    ) {
        if let Some(s) = self.sparsity.filter(|_| kinds::has(KINDS, kinds::SPARSE)) {
            if !A::KEPT_BATCH {
                let requantization = (self.bias, self.multiplier, self.shift);
                // SAFETY: the layer's row blocks and their stored tiles (checked at load); the
                // rest by the caller.
                return unsafe {
                    self.matrix()
                        .hidden_sparse::<A, KINDS>(s, x, groups, requantization, out)
                };
            }
            // Passes of whole row blocks, as for a dense layer: one requantization per pass.
            const P: usize = ROWS_PER_PASS;
            let mut acc = [0i32; P];
            let mut blocks = self.matrix().row_blocks(s);
            let passes = out
                .chunks_mut(P)
                .zip(self.bias.chunks(P))
                .zip(self.multiplier.chunks(P))
                .zip(self.shift.chunks(P));
            for (((out, bias), mul), shift) in passes {
                let acc = acc.get_mut(..out.len()).unwrap_or(&mut []);
                // SAFETY: the pass's row blocks and their stored tiles (checked at load), its
                // biases; the rest by the caller.
                unsafe { Matrix::walk_blocks::<A, KINDS>(&mut blocks, x, groups, Some(bias), acc) };
                // SAFETY: the CPU by the caller.
                unsafe { A::requantize(acc, mul, shift, out) };
            }
            return;
        }
        // SAFETY: the CPU by the caller.
        let whole = unsafe { groups.gather::<A>(x, 0) } == groups_of(x.len());
        let m = self.matrix();
        let excess = m.excess(x);
        const P: usize = ROWS_PER_PASS;
        let pass_bytes = P * self.layer.padded_cols() * self.layer.weights.bits() / 8;
        let mut acc = [0i32; P];
        let passes = out
            .chunks_exact_mut(P)
            .zip(self.w.chunks_exact(pass_bytes))
            .zip(self.bias.chunks_exact(P))
            .zip(self.multiplier.chunks_exact(P))
            .zip(self.shift.chunks_exact(P));
        for ((((out, w), bias), mul), shift) in passes {
            // SAFETY: `P` rows (whole row blocks) of the layer's padded inputs; the rest by the
            // caller.
            unsafe {
                Self::pass::<A, KINDS>(
                    m.with_bytes(w),
                    (x, whole),
                    groups,
                    (bias, excess),
                    &mut acc,
                    Some((mul, shift, out)),
                )
            };
        }
        // The rows after the last whole pass: only where a pass is more than one tile (rows are
        // padded to whole tiles), so a microcontroller's build has no second call.
        let done = out.len() / P * P;
        let rest = if P > TILE_ROWS { out.len() - done } else { 0 };
        if let (Some(out), Some(w), Some(bias), Some(mul), Some(shift), Some(acc)) = (
            out.get_mut(done..),
            self.w.get(done / P * pass_bytes..),
            self.bias.get(done..),
            self.multiplier.get(done..),
            self.shift.get(done..),
            acc.get_mut(..rest),
        ) && rest > 0
        {
            // SAFETY: as above, `rest` rows (whole row blocks).
            unsafe {
                Self::pass::<A, KINDS>(
                    m.with_bytes(w),
                    (x, whole),
                    groups,
                    (bias, excess),
                    acc,
                    Some((mul, shift, out)),
                )
            };
        }
    }

    /// The output layer's prediction for `x`: every row in one pass, straight into the logits
    /// (at most [`MAX_CLASSES`] accumulators, 256 bytes of stack).
    ///
    /// # Safety
    /// As [`Self::hidden`], without `out`.
    #[inline(never)]
    unsafe fn output<A: Arch, const KINDS: u8>(
        &self,
        x: &[u8],
        groups: &mut Groups<A::Group>,
    ) -> Prediction {
        let mut acc = [0i32; MAX_CLASSES];
        // At most MAX_CLASSES, checked at load.
        let acc = acc.get_mut(..self.layer.padded_rows()).unwrap_or(&mut []);
        let m = self.matrix();
        if let Some(s) = self.sparsity.filter(|_| kinds::has(KINDS, kinds::SPARSE)) {
            // SAFETY: the layer's row blocks and stored tiles (checked at load), its biases; the
            // rest by the caller.
            unsafe { m.walk_sparse::<A, KINDS>(s, x, groups, Some(self.bias), acc) };
            return prediction(acc.get(..self.layer.outputs).unwrap_or(&[]), self.w_scale);
        }
        // SAFETY: the CPU by the caller.
        let whole = unsafe { groups.gather::<A>(x, 0) } == groups_of(x.len());
        let excess = m.excess(x);
        if A::TILE_PASSES {
            // A tile per pass, into an array (see `Arch::TILE_PASSES`).
            let tile_bytes = m.tile_bytes() * self.layer.padded_cols() / GROUP;
            let passes = acc
                .chunks_exact_mut(TILE_ROWS)
                .zip(self.w.chunks_exact(tile_bytes))
                .zip(self.bias.chunks_exact(TILE_ROWS));
            for ((out, w), bias) in passes {
                let mut tile = [0i32; TILE_ROWS];
                // SAFETY: one row block of the layer's padded rows, `w` its weights; the rest by
                // the caller.
                unsafe {
                    Self::pass::<A, KINDS>(
                        m.with_bytes(w),
                        (x, whole),
                        groups,
                        (bias, excess),
                        &mut tile,
                        None,
                    )
                };
                out.copy_from_slice(&tile);
            }
        } else {
            // Only up to the last quarter tile holding a class where the walk can stop there.
            let rows = if A::QUARTER_ROWS && self.layer.weights == Weights::Int8 {
                self.layer.outputs.next_multiple_of(4)
            } else {
                acc.len()
            };
            let acc = acc.get_mut(..rows).unwrap_or(&mut []);
            // SAFETY: the layer's padded rows (or, as above, its quarter tiles up to the last
            // class) and its weights; the rest by the caller.
            unsafe {
                Self::pass::<A, KINDS>(m, (x, whole), groups, (self.bias, excess), acc, None)
            };
        }
        prediction(acc.get(..self.layer.outputs).unwrap_or(&[]), self.w_scale)
    }
}

impl<'a, const MAX_WIDTH: usize, const KINDS: u8> QuantModel<'a, MAX_WIDTH, KINDS> {
    /// Classifies one input of raw bytes (for an image, its pixels row by row, 0 = background)
    /// with the best kernel here; an input of the wrong length is an error.
    pub fn predict(&self, input: &[u8]) -> Result<Prediction, KernelError> {
        self.predict_with(Kernel::best(), input)
    }

    /// [`Self::predict`] with a chosen kernel; fails if it is not available here.
    pub fn predict_with(&self, kernel: Kernel, input: &[u8]) -> Result<Prediction, KernelError> {
        self.check_input(input)?;
        if !kernel.is_available() {
            return Err(KernelError::Unavailable(kernel));
        }
        // SAFETY: availability checked; the input's length too.
        Ok(unsafe { kernels::dispatch(kernel, Predict(self, input)) })
    }

    fn check_input(&self, input: &[u8]) -> Result<(), KernelError> {
        if input.len() == self.inputs() {
            Ok(())
        } else {
            Err(KernelError::InputLength {
                expected: self.inputs(),
                got: input.len(),
            })
        }
    }

    /// Classifies several inputs, `inputs` holding them one after another; `out` gets one
    /// prediction per input (as many as both hold). An `inputs` that is not a whole number of
    /// inputs is an error.
    ///
    /// Where the best kernel has a batch form (AVX-512 VNNI, AVX-VNNI), four inputs share each
    /// pass over the weights, which skips a group of inputs only where all four are zero; the
    /// predictions are the same as one [`Self::predict`] per input.
    pub fn predict_batch(&self, inputs: &[u8], out: &mut [Prediction]) -> Result<(), KernelError> {
        let width = self.inputs();
        if !inputs.len().is_multiple_of(width) {
            return Err(KernelError::InputLength {
                expected: width,
                got: inputs.len() % width,
            });
        }
        let kernel = Kernel::best();
        let mut images = inputs.chunks_exact(width);
        let mut out = out.iter_mut();
        while let (Some(a), Some(b), Some(c), Some(d)) =
            (images.next(), images.next(), images.next(), images.next())
        {
            // SAFETY: `best` returns an available kernel; each input has the model's width.
            let four = unsafe { kernels::dispatch(kernel, PredictX4(self, [a, b, c, d])) };
            for p in four {
                match out.next() {
                    Some(o) => *o = p,
                    None => return Ok(()),
                }
            }
        }
        // The last one to three inputs (`chunks_exact` dropped none: the length is whole).
        let done = inputs.len() / width / 4 * 4;
        for (image, o) in inputs
            .get(done * width..)
            .unwrap_or(&[])
            .chunks_exact(width)
            .zip(out)
        {
            *o = self.predict_with(kernel, image)?;
        }
        Ok(())
    }

    /// One input through the layers on `A`: the first hidden layer into one activation buffer;
    /// a second one only for deeper networks ([`Self::deep`]).
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; `input.len()` is the model's inputs.
    #[inline(always)]
    unsafe fn forward<A: Arch>(&self, input: &[u8]) -> Prediction {
        let Some((last, hidden)) = self.layers.split_last() else {
            return prediction(&[], &[]);
        };
        // One gathered list for every layer, built where it stays (it is never copied).
        let mut groups = Groups::new();
        let Some((first, deeper)) = hidden.split_first() else {
            // SAFETY: the input has the layer's inputs; the CPU by the caller.
            return unsafe { last.output::<A, KINDS>(input, &mut groups) };
        };
        let mut a = Activations([0; MAX_WIDTH]);
        let a = &mut a.0;
        let out = a.get_mut(..first.layer.padded_rows()).unwrap_or(&mut []);
        // SAFETY: `input` has the layer's inputs, `out` its padded rows (at most MAX_WIDTH,
        // checked at load); the CPU by the caller.
        unsafe { first.hidden::<A, KINDS>(input, &mut groups, out) };
        let outputs = first.layer.outputs;
        if deeper.is_empty() {
            // SAFETY: as above, the previous layer's outputs being this one's inputs.
            unsafe { last.output::<A, KINDS>(a.get(..outputs).unwrap_or(&[]), &mut groups) }
        } else {
            // SAFETY: as above.
            unsafe { Self::deep::<A>(deeper, last, a, outputs, &mut groups) }
        }
    }

    /// The hidden layers after the first (their input, `outputs` values, in `a`), then the output
    /// layer, two buffers ping-ponging. Not inlined: the second buffer is on the stack only for
    /// networks with more than one hidden layer.
    ///
    /// # Safety
    /// As [`Self::forward`].
    #[inline(never)]
    unsafe fn deep<A: Arch>(
        hidden: &[QuantLayer<'_>],
        last: &QuantLayer<'_>,
        a: &mut [u8; MAX_WIDTH],
        outputs: usize,
        groups: &mut Groups<A::Group>,
    ) -> Prediction {
        let mut b = Activations([0; MAX_WIDTH]);
        let (mut src, mut dst) = (a, &mut b.0);
        let mut x_len = outputs;
        for layer in hidden {
            let out = dst.get_mut(..layer.layer.padded_rows()).unwrap_or(&mut []);
            // SAFETY: `src` holds the layer's inputs, `out` is its padded rows (at most
            // MAX_WIDTH, checked at load); the CPU by the caller.
            unsafe { layer.hidden::<A, KINDS>(src.get(..x_len).unwrap_or(&[]), groups, out) };
            x_len = layer.layer.outputs;
            core::mem::swap(&mut src, &mut dst);
        }
        // SAFETY: as above.
        unsafe { last.output::<A, KINDS>(src.get(..x_len).unwrap_or(&[]), groups) }
    }

    /// Four inputs through the layers on `A`'s batch form.
    ///
    /// # Safety
    /// As [`Self::forward`], for each input.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    unsafe fn forward_x4<A: BatchArch>(&self, inputs: [&[u8]; 4]) -> [Prediction; 4] {
        let (mut a, mut b) = ([[0u8; MAX_WIDTH]; 4], [[0u8; MAX_WIDTH]; 4]);
        let (mut src, mut dst) = (&mut a, &mut b);
        let mut x_len = inputs[0].len();
        let n = self.layers.len();
        let mut groups = Groups::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let xs = if i == 0 {
                inputs
            } else {
                src.each_ref().map(|s| s.get(..x_len).unwrap_or(&[]))
            };
            let rows = layer.layer.padded_rows();
            let mut acc = [[0i32; MAX_WIDTH]; 4];
            let mut logits = [[0i32; MAX_CLASSES]; 4];
            let accs: [&mut [i32]; 4] = if i + 1 == n {
                logits
                    .each_mut()
                    .map(|l| l.get_mut(..rows).unwrap_or(&mut []))
            } else {
                acc.each_mut().map(|a| a.get_mut(..rows).unwrap_or(&mut []))
            };
            let m = layer.matrix();
            let mut accs = accs;
            for (acc, x) in accs.iter_mut().zip(xs) {
                start(acc, layer.bias, m.excess(x));
            }
            groups.walk_chunks(
                x_len,
                |g, from| g.gather4::<A>(xs, from),
                |g| {
                    let outs = accs.each_mut().map(|o| &mut **o);
                    // SAFETY: the layer's padded rows for each input, of its inputs; the CPU by
                    // the caller.
                    unsafe { m.walk_x4::<A, KINDS>(g, outs) };
                },
            );
            if i + 1 == n {
                return logits.map(|l| {
                    let real = l.get(..layer.layer.outputs).unwrap_or(&[]);
                    prediction(real, layer.w_scale)
                });
            }
            for (out, acc) in dst.iter_mut().zip(&accs) {
                let out = out.get_mut(..rows).unwrap_or(&mut []);
                // SAFETY: the CPU by the caller.
                unsafe { A::requantize(acc, layer.multiplier, layer.shift, out) };
            }
            x_len = layer.layer.outputs;
            core::mem::swap(&mut src, &mut dst);
        }
        [(); 4].map(|_| prediction(&[], &[]))
    }

    /// The real-valued scale of class `c`'s logit accumulator (0 outside the classes).
    pub fn logit_scale(&self, class: usize) -> f32 {
        self.layers.last().map_or(0.0, |l| {
            l.w_scales().nth(class).map_or(0.0, |s| s * l.in_scale)
        })
    }

    /// Softmax probabilities of a prediction, in f32 (the only float on the integer path,
    /// optional).
    pub fn probabilities(&self, prediction: &Prediction) -> Logits<f32> {
        let z = prediction
            .logits
            .iter()
            .enumerate()
            .map(|(c, &l)| l as f32 * self.logit_scale(c))
            .collect();
        softmax(z)
    }
}

/// One input through the integer network on the dispatched architecture.
struct Predict<'m, 'a, const W: usize, const K: u8>(&'m QuantModel<'a, W, K>, &'m [u8]);

impl<const W: usize, const K: u8> ArchOp for Predict<'_, '_, W, K> {
    type Output = Prediction;
    unsafe fn run<A: Arch>(self) -> Prediction {
        // SAFETY: the CPU by `dispatch`'s caller, the input's length by `Predict`'s maker.
        unsafe { self.0.forward::<A>(self.1) }
    }
}

/// Four inputs through the integer network: in one pass where the architecture has a batch form.
struct PredictX4<'m, 'a, const W: usize, const K: u8>(&'m QuantModel<'a, W, K>, [&'m [u8]; 4]);

impl<const W: usize, const K: u8> ArchOp for PredictX4<'_, '_, W, K> {
    type Output = [Prediction; 4];
    unsafe fn run<A: Arch>(self) -> [Prediction; 4] {
        let PredictX4(model, inputs) = self;
        // SAFETY: as `Predict`.
        inputs.map(|x| unsafe { model.forward::<A>(x) })
    }
    unsafe fn run_batch<A: BatchArch>(self) -> [Prediction; 4] {
        let PredictX4(model, inputs) = self;
        if model.header.is_sparse() {
            // Block-sparse layers have no four-vector walk: one input after another.
            // SAFETY: as `Predict`.
            return inputs.map(|x| unsafe { model.forward::<A>(x) });
        }
        // SAFETY: as above.
        unsafe { model.forward_x4::<A>(inputs) }
    }
}

/// `acc[j] = bias[j] − excess`: where the accumulators start (little-endian i32 biases, read in
/// place). Without an excess (int8 weights), a plain copy.
#[inline(always)]
fn start(acc: &mut [i32], bias: &[[u8; 4]], excess: i32) {
    if excess == 0 {
        kernels::set_biases(acc, bias);
    } else {
        for (a, b) in acc.iter_mut().zip(bias) {
            *a = i32::from_le_bytes(*b).wrapping_sub(excess);
        }
    }
}

/// The prediction from the output layer's accumulators (biases included): the class whose real
/// logit `acc[c] · input scale · w_scale[c]` is largest, the lowest class on a tie. Each class
/// has its own weight scale, so raw accumulators are not comparable; they are compared at their
/// scales exactly, in integers (no float on the integer path). (The input scale is common to all
/// classes.)
fn prediction(logits: &[i32], w_scale: &[[u8; 4]]) -> Prediction {
    Prediction {
        class: class_of(logits, w_scale),
        // Cannot fail: the output layer has at most MAX_CLASSES rows (checked at load).
        logits: Logits::from_slice(logits).unwrap_or_default(),
    }
}

/// The class of the largest real logit (see [`prediction`]).
#[inline(never)]
fn class_of(logits: &[i32], w_scale: &[[u8; 4]]) -> u8 {
    let real = |c: usize| {
        let (mantissa, exponent) = w_scale.get(c).map_or((0, 0), |s| split_f32(*s));
        let acc = logits.get(c).copied().unwrap_or(0);
        (i64::from(acc) * i64::from(mantissa), exponent)
    };
    let mut best = 0;
    for c in 1..logits.len() {
        if exceeds(real(c), real(best)) {
            best = c;
        }
    }
    best as u8
}

/// A positive finite f32's bits (little-endian) as `mantissa · 2^(exponent − 150)`.
fn split_f32(bytes: [u8; 4]) -> (u32, u32) {
    let bits = u32::from_le_bytes(bytes);
    let (exponent, fraction) = ((bits >> 23) & 0xff, bits & 0x7f_ffff);
    if exponent == 0 {
        (fraction, 1) // subnormal
    } else {
        (fraction | 0x80_0000, exponent)
    }
}

/// Whether `x · 2^e > y · 2^f`, exactly (|x|, |y| < 2^63).
fn exceeds((x, e): (i64, u32), (y, f): (i64, u32)) -> bool {
    if x == 0 || y == 0 || (x > 0) != (y > 0) {
        // A zero or differing signs: the signs decide.
        return x > y;
    }
    // `m · 2^s` against `n`, for magnitudes: at or past 2^64 it is the larger.
    let compare = |m: u64, s: u32, n: u64| {
        if s >= m.leading_zeros() {
            core::cmp::Ordering::Greater
        } else {
            (m << s).cmp(&n)
        }
    };
    let (mx, my) = (x.unsigned_abs(), y.unsigned_abs());
    let order = if e >= f {
        compare(mx, e - f, my)
    } else {
        compare(my, f - e, mx).reverse()
    };
    // Same sign: a larger magnitude is larger for positives, smaller for negatives.
    if x > 0 {
        order == core::cmp::Ordering::Greater
    } else {
        order == core::cmp::Ordering::Less
    }
}

/// Index of the largest value, the first on a tie.
fn arg_max<T: PartialOrd + Copy>(values: &[T]) -> u8 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if values.get(best).is_some_and(|b| v > b) {
            best = i;
        }
    }
    best as u8
}

fn softmax(mut z: Logits<f32>) -> Logits<f32> {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
    z
}

impl<const MAX_WIDTH: usize> F32Model<'_, MAX_WIDTH> {
    /// Logits (before softmax) of one input of raw bytes, scaled by 1/255 as in training; an
    /// input of the wrong length is an error.
    ///
    /// Each layer adds one weight row per non-zero input (about a fifth of an MNIST digit's
    /// pixels, and many of a ReLU layer's outputs), in input order; results match the trainer's
    /// forward pass to float rounding (see the crate docs for the tolerance).
    pub fn logits(&self, input: &[u8]) -> Result<Logits<f32>, KernelError> {
        if input.len() != self.inputs() {
            return Err(KernelError::InputLength {
                expected: self.inputs(),
                got: input.len(),
            });
        }
        let (mut a, mut b) = ([0f32; MAX_WIDTH], [0f32; MAX_WIDTH]);
        let mut logits = [0f32; MAX_CLASSES];
        let (mut src, mut dst) = (&mut a, &mut b);
        let mut x_len = input.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let l = layer.layer;
            let out = if l.last {
                logits.get_mut(..l.outputs).unwrap_or(&mut [])
            } else {
                dst.get_mut(..l.outputs).unwrap_or(&mut [])
            };
            for (o, b) in out.iter_mut().zip(layer.biases()) {
                *o = b;
            }
            let rows = layer.w.chunks_exact(l.outputs.max(1));
            let mut add = |x: f32, row: &[[u8; 4]]| {
                for (o, w) in out.iter_mut().zip(row) {
                    *o += x * f32::from_le_bytes(*w);
                }
            };
            if i == 0 {
                for (&p, row) in input.iter().zip(rows) {
                    if p != 0 {
                        add(f32::from(p) / 255.0, row);
                    }
                }
            } else {
                // No test for zero here: a ReLU layer's zeros fall at random, and the mispredicted
                // branches would cost more than the products they skip.
                for (&x, row) in src.get(..x_len).unwrap_or(&[]).iter().zip(rows) {
                    add(x, row);
                }
            }
            if !l.last {
                for o in out.iter_mut() {
                    *o = o.max(0.0);
                }
                x_len = l.outputs;
                core::mem::swap(&mut src, &mut dst);
            }
        }
        Ok(logits.iter().copied().take(self.classes()).collect())
    }

    /// The arg-max class of one input.
    pub fn predict(&self, input: &[u8]) -> Result<u8, KernelError> {
        self.logits(input).map(|l| arg_max(&l))
    }

    /// Softmax probabilities of one input.
    pub fn probabilities(&self, input: &[u8]) -> Result<Logits<f32>, KernelError> {
        self.logits(input).map(softmax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x · 2^e` for the reference, where it fits (exponent differences up to 60).
    fn wide(x: i64, e: u32, lowest: u32) -> i128 {
        i128::from(x) << (e - lowest)
    }

    #[test]
    fn exceeds_compares_scaled_values_exactly() {
        let values = [
            0i64,
            1,
            -1,
            2,
            -3,
            1 << 40,
            -(1 << 40),
            (1 << 54) - 1,
            -((1 << 54) - 1),
            123_456_789,
        ];
        let exponents = [1u32, 2, 9, 30, 61];
        for &x in &values {
            for &y in &values {
                for &e in &exponents {
                    for &f in &exponents {
                        let lowest = e.min(f);
                        let expected = wide(x, e, lowest) > wide(y, f, lowest);
                        assert_eq!(exceeds((x, e), (y, f)), expected, "{x}·2^{e} > {y}·2^{f}");
                    }
                }
            }
        }
        // Far apart exponents: the larger scale wins unless its value is zero or of the other sign.
        assert!(exceeds((1, 250), ((1 << 54) - 1, 1)));
        assert!(!exceeds((-1, 250), (-((1 << 54) - 1), 1)));
        assert!(!exceeds((0, 250), (1, 1)));
    }

    #[test]
    fn the_class_is_the_largest_real_logit_lowest_on_a_tie() {
        let scale = |v: f32| v.to_le_bytes();
        let mut scales = [scale(1.0); 16];
        scales[3] = scale(0.5);
        scales[7] = scale(4.0);
        let mut acc = [0i32; 16];
        acc[3] = 100; // real 50
        acc[7] = 20; // real 80: the largest, though its accumulator is not
        acc[9] = 80; // real 80: a tie with 7, which is lower
        acc[12] = 1_000_000; // a padding row: never a class
        let p = prediction(&acc[..10], &scales);
        assert_eq!(p.class, 7);
        assert_eq!(p.logits[..], acc[..10]);
        assert_eq!(prediction(&[0; 10], &scales).class, 0);
    }
}

/// A validated model of either kind, told apart by its header: what a tool that takes any model
/// file holds (the CLI's `eval` and `predict`, the browser page). (Its methods are `#[inline]`, so
/// a program that does not use it, such as a firmware, compiles none of it.)
#[derive(Debug, Clone)]
// The integer layers' views are larger than the f32 ones; a model is made once per file.
#[allow(clippy::large_enum_variant)]
pub enum AnyModel<'a> {
    /// The integer-only network (each layer int8 or int4).
    Quant(QuantModel<'a>),
    /// The float network.
    F32(F32Model<'a>),
}

impl<'a> AnyModel<'a> {
    /// Validates `bytes` as whichever kind their header says (as [`QuantModel::from_bytes`] or
    /// [`F32Model::from_bytes`]).
    #[inline]
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        if crate::format::peek(bytes)?.is_f32() {
            F32Model::from_bytes(bytes).map(AnyModel::F32)
        } else {
            QuantModel::from_bytes(bytes).map(AnyModel::Quant)
        }
    }

    /// The file's header: shape and weight kinds.
    #[inline]
    pub fn header(&self) -> &Header {
        match self {
            AnyModel::Quant(m) => m.header(),
            AnyModel::F32(m) => m.header(),
        }
    }

    /// "int8", "int4", "int4+int8", "f32"… ([`Header::kind_name`]).
    #[inline]
    pub fn kind(&self) -> &'static str {
        self.header().kind_name()
    }

    /// Inputs the model takes.
    #[inline]
    pub fn inputs(&self) -> usize {
        self.header().inputs()
    }

    /// Classes it tells apart.
    #[inline]
    pub fn classes(&self) -> usize {
        self.header().classes()
    }

    /// The class of one input (of [`Self::inputs`] bytes).
    #[inline]
    pub fn classify(&self, input: &[u8]) -> Result<u8, KernelError> {
        Ok(match self {
            AnyModel::Quant(m) => m.predict(input)?.class,
            AnyModel::F32(m) => m.predict(input)?,
        })
    }

    /// The logits in real units (for an integer model, each class's accumulator at its scale).
    #[inline]
    pub fn logits(&self, input: &[u8]) -> Result<Logits<f32>, KernelError> {
        self.answer(input).map(|a| a.logits)
    }

    /// The class and the probabilities (the softmax of the logits).
    #[inline]
    pub fn probabilities(&self, input: &[u8]) -> Result<(u8, Logits<f32>), KernelError> {
        self.answer(input).map(|a| (a.class, a.probabilities))
    }

    /// Everything one pass says about an input: its class, the logits in real units and their
    /// softmax.
    #[inline]
    pub fn answer(&self, input: &[u8]) -> Result<Answer, KernelError> {
        Ok(match self {
            AnyModel::Quant(m) => {
                let p = m.predict(input)?;
                let logits: Logits<f32> = p
                    .logits
                    .iter()
                    .enumerate()
                    .map(|(c, &l)| l as f32 * m.logit_scale(c))
                    .collect();
                Answer {
                    class: p.class,
                    probabilities: softmax(logits.clone()),
                    logits,
                }
            }
            AnyModel::F32(m) => {
                let logits = m.logits(input)?;
                Answer {
                    class: arg_max(&logits),
                    probabilities: softmax(logits.clone()),
                    logits,
                }
            }
        })
    }
}

/// What [`AnyModel::answer`] says about one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The class of the largest logit (the lowest one on a tie): [`AnyModel::classify`]'s.
    pub class: u8,
    /// The logits in real units, one per class.
    pub logits: Logits<f32>,
    /// Their softmax.
    pub probabilities: Logits<f32>,
}
