//! The forward passes: integer-only int8, and f32.

use crate::format::{F32Model, Int8Model};
use crate::kernels::{self, Kernel, KernelError};
use crate::{CLASSES, HIDDEN, INPUTS};

/// Hidden rows computed per kernel call. On a microcontroller this bounds the i32 scratch on the
/// stack to 512 bytes; elsewhere one call covers the layer, so the input is prepared once.
const ROWS_PER_PASS: usize = if cfg!(target_os = "none") {
    128
} else {
    HIDDEN
};

/// What the int8 network says about one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Prediction {
    /// The arg-max class (the lowest one on a tie).
    pub class: u8,
    /// The output layer's accumulators; class `c`'s real logit is `logits[c] · logit_scale(c)`.
    pub logits: [i32; CLASSES],
}

impl<'a> Int8Model<'a> {
    /// Classifies one 28 × 28 image of raw pixels (0 = background) with the best kernel here.
    pub fn predict(&self, pixels: &[u8; INPUTS]) -> Prediction {
        self.predict_on(Kernel::best(), pixels)
    }

    /// [`Self::predict`] with a chosen kernel; fails only if it is not available here.
    pub fn predict_with(
        &self,
        kernel: Kernel,
        pixels: &[u8; INPUTS],
    ) -> Result<Prediction, KernelError> {
        if kernel.is_available() {
            Ok(self.predict_on(kernel, pixels))
        } else {
            Err(KernelError::Unavailable(kernel))
        }
    }

    /// Classifies several images; `out` gets one prediction per image (as many as both hold).
    ///
    /// Where the kernel has a batch form (AVX-512 VNNI), four images share each pass over the
    /// weights; the predictions are the same as one [`Self::predict`] per image.
    pub fn predict_batch(&self, images: &[[u8; INPUTS]], out: &mut [Prediction]) {
        let kernel = Kernel::best();
        let n = images.len().min(out.len());
        let mut images = images.get(..n).unwrap_or(&[]);
        let mut out = out.get_mut(..n).unwrap_or(&mut []);
        if kernel == Kernel::Avx512Vnni {
            let (groups, rest) = images.as_chunks::<4>();
            let (out_groups, out_rest) = out.as_chunks_mut::<4>();
            for (group, o) in groups.iter().zip(out_groups) {
                *o = self.predict_x4_on(kernel, group);
            }
            (images, out) = (rest, out_rest);
        }
        for (image, out) in images.iter().zip(out) {
            *out = self.predict_on(kernel, image);
        }
    }

    fn predict_x4_on(&self, kernel: Kernel, images: &[[u8; INPUTS]; 4]) -> [Prediction; 4] {
        let mut acc = [[0i32; HIDDEN]; 4];
        let [a0, a1, a2, a3] = &mut acc;
        let xs = [
            &images[0][..],
            &images[1][..],
            &images[2][..],
            &images[3][..],
        ];
        kernels::dot_rows_x4_unchecked(kernel, self.w1, xs, [a0, a1, a2, a3]);
        let mut hidden = [[0u8; HIDDEN]; 4];
        for (h, acc) in hidden.iter_mut().zip(&acc) {
            kernels::requantize_rows(kernel, acc, self.b1, self.m1, self.s1, h);
        }
        let mut logits = [[0i32; crate::format::CLASSES_PADDED]; 4];
        let [l0, l1, l2, l3] = &mut logits;
        let xs = [
            &hidden[0][..],
            &hidden[1][..],
            &hidden[2][..],
            &hidden[3][..],
        ];
        kernels::dot_rows_x4_unchecked(kernel, self.w2, xs, [l0, l1, l2, l3]);
        logits.map(|acc| self.output(&acc))
    }

    fn hidden_on(&self, kernel: Kernel, pixels: &[u8; INPUTS]) -> [u8; HIDDEN] {
        let mut hidden = [0u8; HIDDEN];
        let mut acc = [0i32; ROWS_PER_PASS];
        let passes = self
            .w1
            .chunks_exact(ROWS_PER_PASS * INPUTS)
            .zip(hidden.chunks_exact_mut(ROWS_PER_PASS))
            .zip(self.b1.chunks_exact(ROWS_PER_PASS))
            .zip(self.m1.chunks_exact(ROWS_PER_PASS))
            .zip(self.s1.chunks_exact(ROWS_PER_PASS));
        for ((((w, h), b), m), s) in passes {
            kernels::dot_rows_unchecked(kernel, w, pixels, &mut acc);
            kernels::requantize_rows(kernel, &acc, b, m, s, h);
        }
        hidden
    }

    fn predict_on(&self, kernel: Kernel, pixels: &[u8; INPUTS]) -> Prediction {
        let hidden = self.hidden_on(kernel, pixels);
        let mut acc = [0i32; crate::format::CLASSES_PADDED];
        kernels::dot_rows_unchecked(kernel, self.w2, &hidden, &mut acc);
        self.output(&acc)
    }

    /// The output layer's biases and arg-max over its accumulators.
    fn output(&self, acc: &[i32; crate::format::CLASSES_PADDED]) -> Prediction {
        let mut logits = [0i32; CLASSES];
        for ((l, &a), b) in logits.iter_mut().zip(acc).zip(self.b2.iter()) {
            *l = a.wrapping_add(i32::from_le_bytes(*b));
        }
        Prediction {
            class: arg_max(&logits),
            logits,
        }
    }

    /// The real-valued scale of class `c`'s logit accumulator (0 for `c` ≥ 10).
    pub fn logit_scale(&self, class: usize) -> f32 {
        self.w2_scales()
            .nth(class)
            .map_or(0.0, |s| s * self.hidden_scale)
    }

    /// Softmax probabilities of a prediction, in f32 (the only float on the int8 path, optional).
    pub fn probabilities(&self, prediction: &Prediction) -> [f32; CLASSES] {
        let mut z = [0.0f32; CLASSES];
        for ((z, &l), s) in z.iter_mut().zip(&prediction.logits).zip(self.w2_scales()) {
            *z = l as f32 * s * self.hidden_scale;
        }
        softmax(z)
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
