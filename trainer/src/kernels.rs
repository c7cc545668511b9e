//! Vector kernels of the training loop, compiled for AVX-512 or AVX2 behind runtime detection,
//! with a portable fallback. Each output element is summed in the order the terms are given, so
//! results are deterministic on a machine; fused and separate multiply-adds round differently, so
//! they may differ in the last bit between machines.

/// Defines `fn $name` that runs `$body` (an `#[inline(always)]` fn) compiled for AVX-512 or AVX2
/// when the CPU has them. Rust never fuses `a * b + c` on its own, so all versions round alike.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:ident;) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// `out += Σ a · x` over the terms, with the widest vector unit this CPU has.
///
/// The sum runs over the terms in the order given, for each element, whatever the vector width:
/// only the rounding of fused against separate multiply-adds differs between CPUs.
pub fn axpy_sum<'a, I>(out: &mut [f32], terms: I)
where
    I: Iterator<Item = (f32, &'a [f32])> + Clone,
{
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { axpy_sum_avx512(out, terms) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { axpy_sum_avx2(out, terms) };
        }
    }
    axpy_sum_blocked::<32, _>(out, terms);
}

multiversion! {
    /// `Σ a_i · b_i`, with sixteen partial sums in a fixed order.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 = dot_body;
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (a_whole, a_tail) = a.split_at(a.len() / LANES * LANES);
    for (a, b) in a_whole.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *acc += a * b;
        }
    }
    let tail: f32 = a_tail
        .iter()
        .zip(&b[a_whole.len()..])
        .map(|(a, b)| a * b)
        .sum();
    acc.iter().sum::<f32>() + tail
}

multiversion! {
    /// Keras's RMSprop update of one tensor: `v ← ρ·v + (1−ρ)·g²`, `w ← w − lr·g / (√v + ε)`.
    pub fn rmsprop(w: &mut [f32], v: &mut [f32], g: &[f32], lr: f32, rho: f32, eps: f32) = rmsprop_body;
}

#[inline(always)]
fn rmsprop_body(w: &mut [f32], v: &mut [f32], g: &[f32], lr: f32, rho: f32, eps: f32) {
    for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
        *v = rho * *v + (1.0 - rho) * g * g;
        *w -= lr * g / (v.sqrt() + eps);
    }
}

/// Sums `BLOCK` outputs at a time over all the terms before storing them, so the loop is bound by
/// the loads of `x`, not by storing and reloading `out` for every term. The portable path.
#[inline(always)]
fn axpy_sum_blocked<'a, const BLOCK: usize, I>(out: &mut [f32], terms: I)
where
    I: Iterator<Item = (f32, &'a [f32])> + Clone,
{
    let whole = out.len() / BLOCK * BLOCK;
    let (blocks, tail) = out.split_at_mut(whole);
    for (b, block) in blocks.chunks_exact_mut(BLOCK).enumerate() {
        let start = b * BLOCK;
        let mut acc = [0.0f32; BLOCK];
        acc.copy_from_slice(block);
        for (a, x) in terms.clone() {
            let x = &x[start..start + BLOCK];
            for (acc, &x) in acc.iter_mut().zip(x) {
                *acc += a * x;
            }
        }
        block.copy_from_slice(&acc);
    }
    axpy_sum_tail::<false>(tail, whole, terms);
}

#[inline(always)]
fn axpy_sum_tail<'a, const FUSED: bool>(
    tail: &mut [f32],
    start: usize,
    terms: impl Iterator<Item = (f32, &'a [f32])>,
) {
    for (a, x) in terms {
        for (o, &x) in tail.iter_mut().zip(&x[start..]) {
            *o = if FUSED { a.mul_add(x, *o) } else { *o + a * x };
        }
    }
}

/// Eight vector accumulators kept in registers across all terms, then stored once.
macro_rules! x86_axpy_sum {
    ($name:ident, $features:literal, $vec:ty, $lanes:literal, $regs:literal, $load:ident,
     $store:ident, $broadcast:ident, $fma:ident) => {
        /// [`axpy_sum`] with `$regs` accumulators of this vector width.
        ///
        /// # Safety
        /// The CPU must support the enabled target features.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<'a, I>(out: &mut [f32], terms: I)
        where
            I: Iterator<Item = (f32, &'a [f32])> + Clone,
        {
            use std::arch::x86_64::*;
            const BLOCK: usize = $regs * $lanes;
            let whole = out.len() / BLOCK * BLOCK;
            let (blocks, tail) = out.split_at_mut(whole);
            for (b, block) in blocks.chunks_exact_mut(BLOCK).enumerate() {
                let start = b * BLOCK;
                let p = block.as_mut_ptr();
                // SAFETY: `block` holds exactly BLOCK = $regs vectors of floats; unaligned loads.
                let mut acc: [$vec; $regs] =
                    std::array::from_fn(|v| unsafe { $load(p.add(v * $lanes)) });
                for (a, x) in terms.clone() {
                    let x = &x[start..start + BLOCK];
                    let a = $broadcast(a);
                    for (v, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: `x` was sliced to BLOCK floats just above.
                        *acc = $fma(a, unsafe { $load(x.as_ptr().add(v * $lanes)) }, *acc);
                    }
                }
                for (v, acc) in acc.into_iter().enumerate() {
                    // SAFETY: in bounds of `block` as for the loads.
                    unsafe { $store(p.add(v * $lanes), acc) };
                }
            }
            axpy_sum_tail::<true>(tail, whole, terms);
        }
    };
}

x86_axpy_sum!(
    axpy_sum_avx512,
    "avx512f,fma",
    __m512,
    16,
    16,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps
);
x86_axpy_sum!(
    axpy_sum_avx2,
    "avx2,fma",
    __m256,
    8,
    8,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps
);
