//! The forward passes: integer-only (int8 or int4 weights), written once over the kernels'
//! architectures and both weight widths, and f32.

use crate::format::{Bits, CLASSES_PADDED, F32Model, QuantModel};
use crate::kernels::TILE_ROWS;
use crate::kernels::{self, Arch, ArchOp, BatchArch, Groups, Kernel, KernelError, Matrix};
use crate::{CLASSES, HIDDEN, INPUTS};

/// Hidden rows computed per walk of the input's groups. On a microcontroller one tile of rows, so
/// the i32 scratch is 64 bytes of stack; elsewhere the whole layer, so that wide kernels keep
/// several row blocks in flight.
const ROWS_PER_PASS: usize = if cfg!(target_os = "none") {
    TILE_ROWS
} else {
    HIDDEN
};

/// What the integer network says about one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Prediction {
    /// The class of the largest real logit (the lowest one on a tie).
    pub class: u8,
    /// The output layer's accumulators; class `c`'s real logit is `logits[c] · logit_scale(c)`.
    pub logits: [i32; CLASSES],
}

/// A weight section of `B` bits as the kernels take it.
#[inline(always)]
fn matrix<B: Bits>(w: &[u8]) -> Matrix<'_> {
    if B::BITS == 4 {
        Matrix::Int4(w)
    } else {
        Matrix::Int8(bytemuck::must_cast_slice(w))
    }
}

impl<'a, B: Bits> QuantModel<'a, B> {
    /// Classifies one 28 × 28 image of raw pixels (0 = background) with the best kernel here.
    pub fn predict(&self, pixels: &[u8; INPUTS]) -> Prediction {
        // SAFETY: `best` returns an available kernel.
        unsafe { kernels::dispatch(Kernel::best(), Predict(self, pixels)) }
    }

    /// [`Self::predict`] with a chosen kernel; fails only if it is not available here.
    pub fn predict_with(
        &self,
        kernel: Kernel,
        pixels: &[u8; INPUTS],
    ) -> Result<Prediction, KernelError> {
        if !kernel.is_available() {
            return Err(KernelError::Unavailable(kernel));
        }
        // SAFETY: availability checked.
        Ok(unsafe { kernels::dispatch(kernel, Predict(self, pixels)) })
    }

    /// Classifies several images; `out` gets one prediction per image (as many as both hold).
    ///
    /// Where the best kernel has a batch form (AVX-512 VNNI, AVX-VNNI), four images share each
    /// pass over the weights, which skips a group of inputs only where all four are zero; the
    /// predictions are the same as one [`Self::predict`] per image.
    pub fn predict_batch(&self, images: &[[u8; INPUTS]], out: &mut [Prediction]) {
        let kernel = Kernel::best();
        let n = images.len().min(out.len());
        let (images, out) = (
            images.get(..n).unwrap_or(&[]),
            out.get_mut(..n).unwrap_or(&mut []),
        );
        let (fours, rest) = images.as_chunks::<4>();
        let (out_fours, out_rest) = out.as_chunks_mut::<4>();
        for (images, out) in fours.iter().zip(out_fours) {
            // SAFETY: `best` returns an available kernel.
            *out = unsafe { kernels::dispatch(kernel, PredictX4(self, images)) };
        }
        for (image, out) in rest.iter().zip(out_rest) {
            *out = self.predict(image);
        }
    }

    /// The hidden layer of one image on architecture `A`.
    ///
    /// Not inlined, and neither is [`Self::output`]: each layer's gathered list then lives in its
    /// own stack frame, one after the other (on a Cortex-M4 the first is 2.4 KB).
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses.
    #[inline(never)]
    unsafe fn hidden<A: Arch>(&self, pixels: &[u8; INPUTS], hidden: &mut [u8; HIDDEN]) {
        // Written in place (returned by value, the array was built here and copied out).
        let mut groups = Groups::new();
        if groups.gather::<A>(pixels).is_err() {
            return; // Not reached: 784 inputs are 196 whole groups.
        }
        let mut acc = [0i32; ROWS_PER_PASS];
        let excess = matrix::<B>(self.w1).excess(pixels);
        let passes = self
            .w1
            .chunks_exact(ROWS_PER_PASS * INPUTS * B::BITS / 8)
            .zip(hidden.chunks_exact_mut(ROWS_PER_PASS))
            .zip(self.b1.chunks_exact(ROWS_PER_PASS))
            .zip(self.m1.chunks_exact(ROWS_PER_PASS))
            .zip(self.s1.chunks_exact(ROWS_PER_PASS));
        for ((((w, h), b), m), s) in passes {
            set_bias(&mut acc, b);
            // SAFETY: `ROWS_PER_PASS` rows (a multiple of 16) of `INPUTS` weights each, and the
            // groups of `INPUTS` inputs; the CPU by the caller.
            unsafe {
                matrix::<B>(w).rows::<A>(&groups, excess, &mut acc);
                A::requantize(&acc, m, s, h);
            }
        }
    }

    /// The output layer's accumulators for one image's hidden activations on `A`.
    ///
    /// # Safety
    /// As [`Self::hidden`].
    #[inline(never)]
    unsafe fn output<A: Arch>(&self, hidden: &[u8; HIDDEN]) -> [i32; CLASSES_PADDED] {
        let mut acc = [0i32; CLASSES_PADDED];
        set_bias(&mut acc, self.b2);
        let mut groups = Groups::new();
        if groups.gather::<A>(hidden).is_ok() {
            let w2 = matrix::<B>(self.w2);
            // SAFETY: `CLASSES_PADDED` rows of `HIDDEN` weights, groups of `HIDDEN` inputs.
            unsafe { w2.rows::<A>(&groups, w2.excess(hidden), &mut acc) };
        }
        acc
    }

    /// Four images on `A`'s batch form.
    ///
    /// # Safety
    /// As [`Self::hidden`].
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    unsafe fn predict_x4<A: BatchArch>(&self, images: &[[u8; INPUTS]; 4]) -> [Prediction; 4] {
        let mut acc = [[0i32; HIDDEN]; 4];
        let mut hidden = [[0u8; HIDDEN]; 4];
        for acc in &mut acc {
            set_bias(acc, self.b1);
        }
        let mut groups = Groups::new();
        if groups
            .gather4::<A>(images.each_ref().map(|x| &x[..]))
            .is_ok()
        {
            let w1 = matrix::<B>(self.w1);
            let excess = images.each_ref().map(|x| w1.excess(x));
            let acc = acc.each_mut().map(|a| &mut a[..]);
            // SAFETY: `HIDDEN` rows of `INPUTS` weights for each image; the CPU by the caller.
            unsafe { w1.rows_x4::<A>(&groups, excess, acc) };
        }
        for (h, acc) in hidden.iter_mut().zip(&acc) {
            // SAFETY: the CPU by the caller.
            unsafe { A::requantize(acc, self.m1, self.s1, h) };
        }
        let mut logits = [[0i32; CLASSES_PADDED]; 4];
        for l in &mut logits {
            set_bias(l, self.b2);
        }
        if groups
            .gather4::<A>(hidden.each_ref().map(|h| &h[..]))
            .is_ok()
        {
            let w2 = matrix::<B>(self.w2);
            let excess = hidden.each_ref().map(|h| w2.excess(h));
            let logits = logits.each_mut().map(|l| &mut l[..]);
            // SAFETY: `CLASSES_PADDED` rows of `HIDDEN` weights for each image.
            unsafe { w2.rows_x4::<A>(&groups, excess, logits) };
        }
        logits.map(|acc| prediction(&acc, self.w2_scale))
    }

    /// The real-valued scale of class `c`'s logit accumulator (0 for `c` ≥ 10).
    pub fn logit_scale(&self, class: usize) -> f32 {
        self.w2_scales()
            .nth(class)
            .map_or(0.0, |s| s * self.hidden_scale)
    }

    /// Softmax probabilities of a prediction, in f32 (the only float on the integer path,
    /// optional).
    pub fn probabilities(&self, prediction: &Prediction) -> [f32; CLASSES] {
        let mut z = [0.0f32; CLASSES];
        for ((z, &l), s) in z.iter_mut().zip(&prediction.logits).zip(self.w2_scales()) {
            *z = l as f32 * s * self.hidden_scale;
        }
        softmax(z)
    }
}

/// One image through the integer network on the dispatched architecture.
struct Predict<'m, 'a, B: Bits>(&'m QuantModel<'a, B>, &'m [u8; INPUTS]);

impl<B: Bits> ArchOp for Predict<'_, '_, B> {
    type Output = Prediction;
    unsafe fn run<A: Arch>(self) -> Prediction {
        let Predict(model, pixels) = self;
        // SAFETY: the CPU by `dispatch`'s caller.
        let mut hidden = [0u8; HIDDEN];
        let acc = unsafe {
            model.hidden::<A>(pixels, &mut hidden);
            model.output::<A>(&hidden)
        };
        prediction(&acc, model.w2_scale)
    }
}

/// Four images through the integer network: in one pass where the architecture has a batch form.
struct PredictX4<'m, 'a, B: Bits>(&'m QuantModel<'a, B>, &'m [[u8; INPUTS]; 4]);

impl<B: Bits> ArchOp for PredictX4<'_, '_, B> {
    type Output = [Prediction; 4];
    unsafe fn run<A: Arch>(self) -> [Prediction; 4] {
        let PredictX4(model, images) = self;
        // SAFETY: the CPU by `dispatch`'s caller.
        images
            .each_ref()
            .map(|x| unsafe { Predict(model, x).run::<A>() })
    }
    unsafe fn run_batch<A: BatchArch>(self) -> [Prediction; 4] {
        let PredictX4(model, images) = self;
        // SAFETY: as above.
        unsafe { model.predict_x4::<A>(images) }
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
/// logit `acc[c] · hidden_scale · w2_scale[c]` is largest, the lowest class on a tie. Each class
/// has its own weight scale, so raw accumulators are not comparable; they are compared at their
/// scales exactly, in integers (no float on the int8 path).
#[inline(never)]
fn prediction(acc: &[i32; CLASSES_PADDED], w2_scale: &[[u8; 4]; CLASSES_PADDED]) -> Prediction {
    let mut logits = [0i32; CLASSES];
    for (l, &a) in logits.iter_mut().zip(acc) {
        *l = a;
    }
    let mut best = 0;
    for c in 1..CLASSES {
        let real = |c: usize| {
            let (mantissa, exponent) = w2_scale.get(c).map_or((0, 0), |s| split_f32(*s));
            let acc = logits.get(c).copied().unwrap_or(0);
            (i64::from(acc) * i64::from(mantissa), exponent)
        };
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

fn softmax(mut z: [f32; CLASSES]) -> [f32; CLASSES] {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in &mut z {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    for v in &mut z {
        *v /= sum;
    }
    z
}

impl F32Model<'_> {
    /// Logits (before softmax) of one image of raw pixels, scaled by 1/255 as in training.
    ///
    /// The hidden layer adds one weight row per non-zero pixel (about a fifth of them in MNIST),
    /// in pixel order; results match the trainer's forward pass to float rounding (see the
    /// crate docs for the tolerance).
    pub fn logits(&self, pixels: &[u8; INPUTS]) -> [f32; CLASSES] {
        let mut hidden = *self.b1;
        for (&p, row) in pixels.iter().zip(self.w1.chunks_exact(HIDDEN)) {
            if p != 0 {
                let x = f32::from(p) / 255.0;
                for (h, &w) in hidden.iter_mut().zip(row) {
                    *h += x * w;
                }
            }
        }
        for h in &mut hidden {
            *h = h.max(0.0);
        }
        let mut logits = *self.b2;
        for (l, row) in logits.iter_mut().zip(self.w2.chunks_exact(HIDDEN)) {
            // Eight partial sums: vectorizes without reordering per call.
            let mut partial = [0.0f32; 8];
            for (h, w) in hidden.chunks_exact(8).zip(row.chunks_exact(8)) {
                for ((p, &h), &w) in partial.iter_mut().zip(h).zip(w) {
                    *p += h * w;
                }
            }
            *l += partial.iter().sum::<f32>();
        }
        logits
    }

    /// The arg-max class of one image.
    pub fn predict(&self, pixels: &[u8; INPUTS]) -> u8 {
        arg_max(&self.logits(pixels))
    }

    /// Softmax probabilities of one image.
    pub fn probabilities(&self, pixels: &[u8; INPUTS]) -> [f32; CLASSES] {
        softmax(self.logits(pixels))
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
        let mut scales = [scale(1.0); CLASSES_PADDED];
        scales[3] = scale(0.5);
        scales[7] = scale(4.0);
        let mut acc = [0i32; CLASSES_PADDED];
        acc[3] = 100; // real 50
        acc[7] = 20; // real 80: the largest, though its accumulator is not
        acc[9] = 80; // real 80: a tie with 7, which is lower
        acc[12] = 1_000_000; // a padding row: never a class
        let p = prediction(&acc, &scales);
        assert_eq!(p.class, 7);
        assert_eq!(p.logits[..], acc[..CLASSES]);
        assert_eq!(prediction(&[0; CLASSES_PADDED], &scales).class, 0);
    }
}
