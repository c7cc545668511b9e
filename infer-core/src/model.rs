//! The forward passes: one loop over the layers, integer-only (each layer int8 or int4) written
//! once over the kernels' architectures, and f32.

use crate::format::{F32Model, MAX_CLASSES, QuantLayer, QuantModel};
use crate::kernels::{self, Arch, ArchOp, BatchArch, Groups, Kernel, KernelError, TILE_ROWS};
use crate::kernels::{Matrix, chunks};

/// Rows computed per walk of the input's groups. On a microcontroller one tile of rows, so the
/// i32 scratch is 64 bytes of stack; elsewhere up to 512, so that wide kernels keep several row
/// blocks in flight.
const ROWS_PER_PASS: usize = if cfg!(target_os = "none") {
    TILE_ROWS
} else {
    512
};

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

    /// `acc = bias + W · x` for rows `first..first + acc.len()` (whole row blocks) on `A`, `x`
    /// gathered in `groups` already when it has one chunk.
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; `x.len()` is the layer's inputs; the rows
    /// lie inside the layer's padded rows.
    #[inline(always)]
    unsafe fn rows<A: Arch>(
        &self,
        x: &[u8],
        groups: &mut Groups<A::Group>,
        first: usize,
        acc: &mut [i32],
    ) {
        set_bias(acc, self.bias.get(first..).unwrap_or(&[]));
        let m = self.matrix();
        m.take_excess(x, acc);
        let m = m.row_blocks(first, acc.len(), self.layer.padded_cols());
        let n = chunks(x.len());
        for chunk in 0..n {
            if n > 1 {
                groups.gather::<A>(x, chunk);
            }
            // SAFETY: `acc.len()` rows (whole blocks) of the layer's padded inputs, `x` of its
            // inputs; the CPU by the caller.
            unsafe { m.walk::<A>(groups, acc) };
        }
    }

    /// A hidden layer: `out = requantize(bias + W · x)`, `out` its padded rows.
    ///
    /// Not inlined: each layer's gathered list lives in its own stack frame, one after the other
    /// (on a Cortex-M4 it is 2.4 KB).
    ///
    /// # Safety
    /// As [`Self::rows`]; `out.len()` is the layer's padded rows.
    #[inline(never)]
    unsafe fn hidden<A: Arch>(&self, x: &[u8], out: &mut [u8]) {
        let mut groups = Groups::new();
        if chunks(x.len()) == 1 {
            groups.gather::<A>(x, 0);
        }
        let mut acc = [0i32; ROWS_PER_PASS];
        let passes = out
            .chunks_mut(ROWS_PER_PASS)
            .zip(self.multiplier.chunks(ROWS_PER_PASS))
            .zip(self.shift.chunks(ROWS_PER_PASS));
        for (pass, ((out, m), s)) in passes.enumerate() {
            let acc = acc.get_mut(..out.len()).unwrap_or(&mut []);
            // SAFETY: whole row blocks (`ROWS_PER_PASS` and the padded rows are multiples of 16)
            // inside the layer; the rest by the caller.
            unsafe {
                self.rows::<A>(x, &mut groups, pass * ROWS_PER_PASS, acc);
                A::requantize(acc, m, s, out);
            }
        }
    }

    /// The output layer's accumulators (its padded rows) for `x`.
    ///
    /// # Safety
    /// As [`Self::rows`].
    #[inline(never)]
    unsafe fn output<A: Arch>(&self, x: &[u8]) -> [i32; MAX_CLASSES] {
        let mut acc = [0i32; MAX_CLASSES];
        let rows = self.layer.padded_rows().min(MAX_CLASSES);
        let mut groups = Groups::new();
        if chunks(x.len()) == 1 {
            groups.gather::<A>(x, 0);
        }
        // SAFETY: the padded rows (at most MAX_CLASSES, a multiple of 16, checked at load).
        unsafe { self.rows::<A>(x, &mut groups, 0, acc.get_mut(..rows).unwrap_or(&mut [])) };
        acc
    }

    /// The prediction from the output layer's accumulators.
    fn prediction(&self, acc: &[i32]) -> Prediction {
        prediction(acc.get(..self.layer.outputs).unwrap_or(&[]), self.w_scale)
    }
}

impl<'a, const MAX_WIDTH: usize> QuantModel<'a, MAX_WIDTH> {
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

    /// One input through the layers on `A`, two activation buffers ping-ponging.
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; `input.len()` is the model's inputs.
    #[inline(always)]
    unsafe fn forward<A: Arch>(&self, input: &[u8]) -> Prediction {
        let (mut a, mut b) = ([0u8; MAX_WIDTH], [0u8; MAX_WIDTH]);
        let (mut src, mut dst) = (&mut a, &mut b);
        let mut x_len = input.len();
        let Some((last, hidden)) = self.layers.split_last() else {
            return prediction(&[], &[]);
        };
        for (i, layer) in hidden.iter().enumerate() {
            let rows = layer.layer.padded_rows();
            let out = dst.get_mut(..rows).unwrap_or(&mut []);
            let x = if i == 0 {
                input
            } else {
                src.get(..x_len).unwrap_or(&[])
            };
            // SAFETY: `x` has the layer's inputs (the model's, or the previous layer's outputs),
            // `out` its padded rows (at most MAX_WIDTH, checked at load); the CPU by the caller.
            unsafe { layer.hidden::<A>(x, out) };
            x_len = layer.layer.outputs;
            core::mem::swap(&mut src, &mut dst);
        }
        let x = if hidden.is_empty() {
            input
        } else {
            src.get(..x_len).unwrap_or(&[])
        };
        // SAFETY: as above.
        let acc = unsafe { last.output::<A>(x) };
        last.prediction(&acc)
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
                set_bias(acc, layer.bias);
                m.take_excess(x, acc);
            }
            for chunk in 0..chunks(x_len) {
                groups.gather4::<A>(xs, chunk);
                let outs = accs.each_mut().map(|o| &mut **o);
                // SAFETY: the layer's padded rows for each input, of its inputs; the CPU by the
                // caller.
                unsafe { m.walk_x4::<A>(&groups, outs) };
            }
            if i + 1 == n {
                return logits.map(|l| layer.prediction(&l));
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
struct Predict<'m, 'a, const W: usize>(&'m QuantModel<'a, W>, &'m [u8]);

impl<const W: usize> ArchOp for Predict<'_, '_, W> {
    type Output = Prediction;
    unsafe fn run<A: Arch>(self) -> Prediction {
        // SAFETY: the CPU by `dispatch`'s caller, the input's length by `Predict`'s maker.
        unsafe { self.0.forward::<A>(self.1) }
    }
}

/// Four inputs through the integer network: in one pass where the architecture has a batch form.
struct PredictX4<'m, 'a, const W: usize>(&'m QuantModel<'a, W>, [&'m [u8]; 4]);

impl<const W: usize> ArchOp for PredictX4<'_, '_, W> {
    type Output = [Prediction; 4];
    unsafe fn run<A: Arch>(self) -> [Prediction; 4] {
        let PredictX4(model, inputs) = self;
        // SAFETY: as `Predict`.
        inputs.map(|x| unsafe { model.forward::<A>(x) })
    }
    unsafe fn run_batch<A: BatchArch>(self) -> [Prediction; 4] {
        let PredictX4(model, inputs) = self;
        // SAFETY: as above.
        unsafe { model.forward_x4::<A>(inputs) }
    }
}

/// `acc[j] = bias[j]`: the accumulators start from the biases (little-endian i32, read in place).
#[inline(always)]
fn set_bias(acc: &mut [i32], bias: &[[u8; 4]]) {
    for (a, b) in acc.iter_mut().zip(bias) {
        *a = i32::from_le_bytes(*b);
    }
}

/// The prediction from the output layer's accumulators (biases included): the class whose real
/// logit `acc[c] · input scale · w_scale[c]` is largest, the lowest class on a tie. Each class
/// has its own weight scale, so raw accumulators are not comparable; they are compared at their
/// scales exactly, in integers (no float on the integer path). (The input scale is common to all
/// classes.)
#[inline(never)]
fn prediction(acc: &[i32], w_scale: &[[u8; 4]]) -> Prediction {
    let logits: Logits<i32> = acc.iter().copied().collect();
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
    Prediction {
        class: best as u8,
        logits,
    }
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
                for (&x, row) in src.get(..x_len).unwrap_or(&[]).iter().zip(rows) {
                    if x != 0.0 {
                        add(x, row);
                    }
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
