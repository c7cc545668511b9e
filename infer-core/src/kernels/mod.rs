//! The int8 matrix–vector kernels: `out[r] = Σ_k x[k] · w[r][k]`, u8 inputs × i8 weights → i32.
//!
//! One scalar reference ([`scalar`]) is always compiled; each architecture module supplies the same
//! product with explicit SIMD, and each is tested bit-exact against the reference by one shared
//! conformance suite. [`dot_rows`] is the one safe entry point.
//!
//! # Weight layout
//!
//! Rows come in blocks of 4 and inputs in groups of 4. Each 16-byte chunk holds one block × one
//! group, row after row: `chunk[4·i + t] = w[4·b + i][4·g + t]`. Chunks run over the groups of a
//! block, then over the blocks: `w[r][k]` is at [`blocked_index`]`(r, k, cols)`. Every kernel
//! streams this layout as stored:
//!
//! - Cortex-M4 DSP: one `ldm` loads a chunk's two row-pairs; `sxtb16` splits each row word into
//!   even and odd bytes for two `smlad`s against pre-paired inputs;
//! - AVX-512 VNNI / AVX-VNNI: a 64- (32-)byte load is 4 (2) chunks, and one `vpdpbusd` multiplies
//!   them with the inputs of each group repeated across its 4 rows;
//! - AVX2 and NEON: a chunk sign-extended to 16 × i16 meets the group's inputs repeated 4 times.
//!
//! So the model file stores weights this way and loading copies nothing.

pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

#[cfg(cortex_m_dsp)]
pub mod arm;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;

use core::fmt;

/// Widest layer a kernel accepts (inputs), which sizes the kernels' stack buffers.
pub const MAX_COLS: usize = crate::INPUTS;

/// Where `w[row][col]` of a `rows × cols` matrix lies in the blocked layout.
pub const fn blocked_index(row: usize, col: usize, cols: usize) -> usize {
    (row / 4) * 4 * cols + (col / 4) * 16 + (row % 4) * 4 + col % 4
}

/// Packs a `rows × cols` matrix given by `weight(row, col)` into the blocked layout in `out`.
/// Rows past `rows` up to `out.len() / cols` are zero padding.
pub fn pack_blocked(cols: usize, rows: usize, weight: impl Fn(usize, usize) -> i8, out: &mut [i8]) {
    let total_rows = out.len().checked_div(cols).unwrap_or(0);
    for r in 0..total_rows {
        for k in 0..cols {
            if let Some(slot) = out.get_mut(blocked_index(r, k, cols)) {
                *slot = if r < rows { weight(r, k) } else { 0 };
            }
        }
    }
}

/// An implementation of the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Kernel {
    /// Portable reference, always available.
    Scalar,
    /// x86-64 AVX2: `vpmovsxbw` + `vpmaddwd`.
    Avx2,
    /// x86-64 AVX-VNNI: 256-bit `vpdpbusd`.
    AvxVnni,
    /// x86-64 AVX-512 VNNI: 512-bit `vpdpbusd`.
    Avx512Vnni,
    /// Cortex-M4/M7 DSP extension: `sxtb16` + `smlad`.
    CortexMDsp,
    /// aarch64 NEON: `sxtl` + `smlal`.
    Neon,
}

impl Kernel {
    /// Every kernel, available here or not.
    pub const ALL: [Kernel; 6] = [
        Kernel::Scalar,
        Kernel::Avx2,
        Kernel::AvxVnni,
        Kernel::Avx512Vnni,
        Kernel::CortexMDsp,
        Kernel::Neon,
    ];

    /// A short name, for benchmarks and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::AvxVnni => "avx-vnni",
            Kernel::Avx512Vnni => "avx512-vnni",
            Kernel::CortexMDsp => "cortex-m-dsp",
            Kernel::Neon => "neon",
        }
    }

    /// Whether this build can run the kernel on this CPU: decided at compile time from the target
    /// features, and with feature `std` on x86-64 also by asking the running CPU.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86_64::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => x86_64::has_avx_vnni(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => x86_64::has_avx512_vnni(),
            #[cfg(cortex_m_dsp)]
            Kernel::CortexMDsp => true,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest kernel available.
    pub fn best() -> Kernel {
        [
            Kernel::Avx512Vnni,
            Kernel::AvxVnni,
            Kernel::Avx2,
            Kernel::CortexMDsp,
            Kernel::Neon,
        ]
        .into_iter()
        .find(|k| k.is_available())
        .unwrap_or(Kernel::Scalar)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`dot_rows`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KernelError {
    /// The kernel cannot run on this CPU or was not compiled in.
    Unavailable(Kernel),
    /// `x.len()` is not a multiple of 16 up to [`MAX_COLS`], `out.len()` not a multiple of 4, or
    /// `w.len() != out.len() · x.len()`.
    Shape,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Unavailable(k) => write!(f, "kernel {k} is not available on this CPU"),
            KernelError::Shape => write!(f, "matrix and vector shapes do not fit the kernel"),
        }
    }
}

impl core::error::Error for KernelError {}

/// `out[r] = Σ_k x[k] · w[r][k]` (wrapping i32) with `w` in the [blocked layout](self), computed
/// by `kernel`.
pub fn dot_rows(kernel: Kernel, w: &[i8], x: &[u8], out: &mut [i32]) -> Result<(), KernelError> {
    let cols = x.len();
    if !cols.is_multiple_of(16)
        || cols > MAX_COLS
        || !out.len().is_multiple_of(4)
        || Some(w.len()) != out.len().checked_mul(cols)
    {
        return Err(KernelError::Shape);
    }
    if !kernel.is_available() {
        return Err(KernelError::Unavailable(kernel));
    }
    dot_rows_unchecked(kernel, w, x, out);
    Ok(())
}

/// [`dot_rows`] for callers that checked the shapes and the kernel's availability. Memory-safe
/// whatever the arguments (every kernel walks exact chunks); wrong shapes only give wrong numbers.
#[inline]
pub(crate) fn dot_rows_unchecked(kernel: Kernel, w: &[i8], x: &[u8], out: &mut [i32]) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers only pass kernels for which `is_available` returned true.
        Kernel::Avx512Vnni => unsafe { x86_64::dot_rows_avx512_vnni(w, x, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::AvxVnni => unsafe { x86_64::dot_rows_avx_vnni(w, x, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { x86_64::dot_rows_avx2(w, x, out) },
        #[cfg(cortex_m_dsp)]
        Kernel::CortexMDsp => arm::dot_rows_dsp(w, x, out),
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => aarch64::dot_rows_neon(w, x, out),
        _ => scalar::dot_rows(w, x, out),
    }
}

/// [`dot_rows`] for four images of the same width at once, where a kernel has a batch form
/// (AVX-512 VNNI); otherwise one image after another. Same results as four single calls.
#[inline]
pub(crate) fn dot_rows_x4_unchecked(
    kernel: Kernel,
    w: &[i8],
    xs: [&[u8]; 4],
    outs: [&mut [i32]; 4],
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers only pass kernels for which `is_available` returned true.
        Kernel::Avx512Vnni => unsafe { x86_64::dot_rows_x4_avx512_vnni(w, xs, outs) },
        _ => {
            for (x, out) in xs.into_iter().zip(outs) {
                dot_rows_unchecked(kernel, w, x, out);
            }
        }
    }
}

/// `out[j] = requantize(acc[j] + bias[j], multiplier[j], shift[j])` for a layer: bias and
/// multiplier as little-endian i32 (the model file's sections, read in place).
///
/// Integer arithmetic only, so every compilation of this loop gives the same bytes; with
/// `kernel` = AVX-512 VNNI it is compiled for AVX-512, which vectorizes the 64-bit products and
/// per-unit shifts.
#[inline]
pub(crate) fn requantize_rows(
    kernel: Kernel,
    acc: &[i32],
    bias: &[[u8; 4]],
    multiplier: &[[u8; 4]],
    shift: &[u8],
    out: &mut [u8],
) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 VNNI availability implies AVX-512F; callers pass available kernels.
        Kernel::Avx512Vnni => unsafe {
            x86_64::requantize_rows_avx512(acc, bias, multiplier, shift, out)
        },
        _ => requantize_rows_portable(acc, bias, multiplier, shift, out),
    }
}

/// The loop of [`requantize_rows`], for every target.
#[inline(always)]
pub(crate) fn requantize_rows_portable(
    acc: &[i32],
    bias: &[[u8; 4]],
    multiplier: &[[u8; 4]],
    shift: &[u8],
    out: &mut [u8],
) {
    let terms = acc.iter().zip(bias).zip(multiplier).zip(shift);
    for (o, (((&a, b), m), &s)) in out.iter_mut().zip(terms) {
        let a = a.wrapping_add(i32::from_le_bytes(*b));
        *o = crate::quant::requantize(a, i32::from_le_bytes(*m), s);
    }
}

/// The conformance suite every kernel runs: bit-exact with [`scalar`] on random and extreme
/// inputs. Kernels this CPU lacks are reported as skipped, never passed silently.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Random cases per property; the interpreter (miri) runs a few of the same, narrower.
    const CASES: u32 = if cfg!(miri) { 3 } else { 64 };
    const MAX_GROUPS: usize = if cfg!(miri) { 4 } else { MAX_COLS / 16 };

    /// Checks `kernel` against the scalar reference on one case; `None` if it cannot run here.
    pub fn check(kernel: Kernel, w: &[i8], x: &[u8]) -> Option<()> {
        let rows = w.len() / x.len();
        let mut expected = [0i32; 1024];
        let mut got = [0i32; 1024];
        let (expected, got) = (&mut expected[..rows], &mut got[..rows]);
        scalar::dot_rows(w, x, expected);
        match dot_rows(kernel, w, x, got) {
            Err(KernelError::Unavailable(_)) => return None,
            other => other.unwrap(),
        }
        assert_eq!(got, expected, "{kernel} differs from scalar");
        Some(())
    }

    /// Also the naive formula straight from the row-major definition.
    fn naive(w: &[i8], x: &[u8], rows: usize) -> [i32; 1024] {
        let mut out = [0i32; 1024];
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            for (k, &xk) in x.iter().enumerate() {
                *o += i32::from(xk) * i32::from(w[blocked_index(r, k, x.len())]);
            }
        }
        out
    }

    /// Random shapes; inputs dense, or mostly zero in runs as in a digit (which kernels may skip).
    fn shapes() -> impl Strategy<Value = (Vec<i8>, Vec<u8>)> {
        (1usize..=12, 1usize..=MAX_GROUPS, any::<bool>()).prop_flat_map(
            |(blocks, groups, sparse)| {
                let (rows, cols) = (4 * blocks, 16 * groups);
                let pixel = if sparse {
                    prop_oneof![3 => Just(0u8), 1 => any::<u8>()].boxed()
                } else {
                    any::<u8>().boxed()
                };
                let runs =
                    proptest::collection::vec((pixel, 1usize..=20), cols).prop_map(move |runs| {
                        runs.into_iter()
                            .flat_map(|(v, n)| std::iter::repeat_n(v, n))
                            .take(cols)
                            .collect::<Vec<u8>>()
                    });
                (proptest::collection::vec(any::<i8>(), rows * cols), runs)
            },
        )
    }

    fn extremes() -> impl Iterator<Item = (&'static str, i8, u8)> {
        [
            ("all-255 input, +127 weights", 127, 255),
            ("all-255 input, -128 weights", -128, 255),
            ("all-255 input, -127 weights", -127, 255),
            ("zero input", 127, 0),
            ("zero weights", 0, 255),
        ]
        .into_iter()
    }

    /// Runs the whole suite for one kernel; returns false if the kernel was skipped.
    pub fn suite(kernel: Kernel) -> bool {
        if !kernel.is_available() {
            std::println!("conformance: {kernel} SKIPPED (not available on this CPU)");
            return false;
        }
        // The network's own shapes, at the extremes.
        for (name, wv, xv) in extremes() {
            for (rows, cols) in [
                (crate::HIDDEN, crate::INPUTS),
                (crate::format::CLASSES_PADDED, crate::HIDDEN),
            ] {
                let w = std::vec![wv; rows * cols];
                let x = std::vec![xv; cols];
                check(kernel, &w, &x).unwrap();
                let mut out = std::vec![0; rows];
                dot_rows(kernel, &w, &x, &mut out).unwrap();
                let expected = i32::from(wv) * i32::from(xv) * cols as i32;
                assert!(out.iter().all(|&o| o == expected), "{kernel}, {name}");
            }
        }
        // Random matrices of every legal shape class (natively: proptest's value generation is
        // far too slow for the interpreter, which checks the deterministic cases above).
        if cfg!(miri) {
            std::println!("conformance: {kernel} passed (extremes only under miri)");
            return true;
        }
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(CASES)
        });
        runner
            .run(&shapes(), |(w, x)| {
                check(kernel, &w, &x).unwrap();
                let rows = w.len() / x.len();
                let mut got = std::vec![0; rows];
                dot_rows(kernel, &w, &x, &mut got).unwrap();
                prop_assert_eq!(&got[..], &naive(&w, &x, rows)[..rows]);
                Ok(())
            })
            .unwrap();
        std::println!("conformance: {kernel} passed");
        true
    }

    #[test]
    fn scalar() {
        assert!(suite(Kernel::Scalar));
    }

    #[test]
    fn avx2() {
        suite(Kernel::Avx2);
    }

    #[test]
    fn avx_vnni() {
        suite(Kernel::AvxVnni);
    }

    #[test]
    fn avx512_vnni() {
        suite(Kernel::Avx512Vnni);
    }

    #[test]
    fn cortex_m_dsp() {
        suite(Kernel::CortexMDsp);
    }

    #[test]
    fn neon() {
        suite(Kernel::Neon);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "proptest's value generation is too slow under the interpreter"
    )]
    fn four_image_batches_equal_single_images() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(CASES)
        });
        let case = shapes().prop_flat_map(|(w, x)| {
            let cols = x.len();
            let more = proptest::collection::vec(
                proptest::collection::vec(prop_oneof![2 => Just(0u8), 1 => any::<u8>()], cols),
                3,
            );
            (Just(w), Just(x), more)
        });
        runner
            .run(&case, |(w, x0, more)| {
                let rows = w.len() / x0.len();
                let xs = [&x0[..], &more[0][..], &more[1][..], &more[2][..]];
                for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                    let mut outs = [[0i32; 48]; 4];
                    let [o0, o1, o2, o3] = &mut outs;
                    dot_rows_x4_unchecked(
                        kernel,
                        &w,
                        xs,
                        [
                            &mut o0[..rows],
                            &mut o1[..rows],
                            &mut o2[..rows],
                            &mut o3[..rows],
                        ],
                    );
                    for (x, out) in xs.iter().zip(&outs) {
                        let mut expected = [0i32; 48];
                        scalar::dot_rows(&w, x, &mut expected[..rows]);
                        prop_assert_eq!(&out[..rows], &expected[..rows], "{}", kernel);
                    }
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn requantization_is_identical_on_every_kernel() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(CASES)
        });
        let row = (any::<i32>(), any::<i32>(), 1i32..i32::MAX, 1u8..=62);
        runner
            .run(
                &proptest::collection::vec(row, 0..if cfg!(miri) { 20 } else { 600 }),
                |rows| {
                    let acc: Vec<i32> = rows.iter().map(|r| r.0).collect();
                    let bias: Vec<[u8; 4]> = rows.iter().map(|r| r.1.to_le_bytes()).collect();
                    let mult: Vec<[u8; 4]> = rows.iter().map(|r| r.2.to_le_bytes()).collect();
                    let shift: Vec<u8> = rows.iter().map(|r| r.3).collect();
                    let mut expected = std::vec![0u8; rows.len()];
                    requantize_rows_portable(&acc, &bias, &mult, &shift, &mut expected);
                    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                        let mut got = std::vec![0u8; rows.len()];
                        requantize_rows(kernel, &acc, &bias, &mult, &shift, &mut got);
                        prop_assert_eq!(&got, &expected, "{}", kernel);
                    }
                    Ok(())
                },
            )
            .unwrap();
    }

    /// Small enough for the interpreter: CI runs this one under miri.
    #[test]
    fn small_products_match_the_formula() {
        for (rows, cols) in [(4, 16), (8, 32)] {
            let w: Vec<i8> = (0..rows * cols)
                .map(|i| (i * 37 % 256) as u8 as i8)
                .collect();
            let x: Vec<u8> = (0..cols)
                .map(|i| if i % 3 == 0 { 0 } else { (i * 11 % 256) as u8 })
                .collect();
            let expected = naive(&w, &x, rows);
            for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let mut out = std::vec![0; rows];
                dot_rows(kernel, &w, &x, &mut out).unwrap();
                assert_eq!(&out[..], &expected[..rows], "{kernel}");
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        let w = [0i8; 64];
        let mut out = [0i32; 4];
        assert_eq!(
            dot_rows(Kernel::Scalar, &w, &[0; 15], &mut out),
            Err(KernelError::Shape)
        );
        assert_eq!(
            dot_rows(Kernel::Scalar, &w[..63], &[0; 16], &mut out),
            Err(KernelError::Shape)
        );
        assert_eq!(
            dot_rows(Kernel::Scalar, &w, &[0; 16], &mut out[..3]),
            Err(KernelError::Shape)
        );
        assert_eq!(dot_rows(Kernel::Scalar, &w, &[0; 16], &mut out), Ok(()));
    }

    #[test]
    fn blocked_index_is_a_bijection() {
        let (rows, cols) = (12, 32);
        let mut seen = [false; 12 * 32];
        for r in 0..rows {
            for k in 0..cols {
                let i = blocked_index(r, k, cols);
                assert!(!seen[i]);
                seen[i] = true;
            }
        }
    }
}
