//! The integer arithmetic of the int8 network.
//!
//! Real values are `scale × q`. Inputs are the raw pixels (`scale = 1/255`, zero point 0), weights
//! are symmetric int8 per output channel (`scale_w[j] = max|w[j]| / 127`), biases are i32 at scale
//! `scale_in × scale_w[j]`, so a layer's accumulator `acc[j] = b[j] + Σ x·w` is exact in i32
//! (|Σ| ≤ 784 · 255 · 127 < 2³¹).
//!
//! The hidden layer goes back to u8 at the calibrated activation scale `scale_h` by
//! [`requantize`]: `q = clamp(round(acc · M), 0, 255)` with `M = scale_in · scale_w[j] / scale_h`
//! held as a fixed-point `multiplier · 2^-shift`. The clamp at 0 is the ReLU. No float is used on
//! this path, so FPU-less cores run it unchanged.

/// The requantization shifts the model format accepts: a factor `multiplier · 2^-shift` below
/// 1/4 with a 31-bit multiplier. (A hidden scale less than four accumulator steps would be
/// meaningless, and the range lets every core compute the rounding with 32-bit operations.)
pub const SHIFTS: core::ops::RangeInclusive<u8> = 33..=62;

/// `clamp(round_half_up(acc · multiplier / 2^shift), 0, 255)`, in integers only.
///
/// Valid for `multiplier > 0` and `shift` in [`SHIFTS`], what the model format accepts (another
/// shift gives some byte, never a panic). Computed as `((hi >> (shift − 33)) + 1) >> 1` with
/// `hi = (acc · multiplier) >> 32`, which is the same integer (`2^(shift−1)` is a multiple of
/// `2^32`, and nested floor divisions by powers of two compose): on a Cortex-M4 that is `smmul`,
/// `sub`, `asr`, `add` and `usat`.
#[inline]
pub fn requantize(acc: i32, multiplier: i32, shift: u8) -> u8 {
    let hi = ((i64::from(acc) * i64::from(multiplier)) >> 32) as i32;
    // |hi| < 2^31 · 2^31 / 2^32 = 2^30, so the increment cannot overflow.
    from_upper_word(hi, shift)
}

/// The byte of a product whose upper word is `hi` (|hi| < 2^30), at `shift`: the common end of
/// [`requantize`] and [`requantize_halves`].
#[inline(always)]
fn from_upper_word(hi: i32, shift: u8) -> u8 {
    let scaled = hi.wrapping_shr(u32::from(shift).wrapping_sub(33)) + 1;
    (scaled >> 1).clamp(0, 255) as u8
}

/// [`requantize`] with 32-bit multiplies only, for cores without a 32 × 32 → 64 one (a Cortex-M0's
/// `muls` keeps the low word: the i64 product is a library call there, 39 instructions a unit).
/// The same integer for every input: `acc ≤ 0` gives 0 (the ReLU) whenever `multiplier > 0`,
/// and a positive product's upper word is summed exactly from the four 16 × 16 partial products.
#[inline(always)]
pub fn requantize_halves(acc: i32, multiplier: i32, shift: u8) -> u8 {
    if multiplier <= 0 {
        return requantize(acc, multiplier, shift);
    }
    if acc <= 0 {
        return 0;
    }
    let (a, m) = (acc as u32, multiplier as u32);
    let (a_hi, a_lo, m_hi, m_lo) = (a >> 16, a & 0xffff, m >> 16, m & 0xffff);
    let (lo_hi, hi_lo) = (opaque(a_lo * m_hi), a_hi * m_lo);
    // Three terms below 2^16 each: no overflow.
    let carry = ((a_lo * m_lo) >> 16) + (lo_hi & 0xffff) + (hi_lo & 0xffff);
    // Both factors below 2^31: the upper word below 2^30, a valid positive i32.
    let hi = (a_hi * m_hi + (lo_hi >> 16) + (hi_lo >> 16) + (carry >> 16)) as i32;
    from_upper_word(hi, shift)
}

/// `x`, which the optimizer cannot see through: on Arm it would fold [`requantize_halves`]'s
/// partial products back into the 64-bit multiply they avoid (a library call on a Cortex-M0).
#[inline(always)]
fn opaque(x: u32) -> u32 {
    #[cfg(target_arch = "arm")]
    {
        let mut x = x;
        // SAFETY: an empty block: `x` is left as it is.
        unsafe {
            core::arch::asm!("/* {0} */", inout(reg) x, options(pure, nomem, nostack, preserves_flags))
        };
        x
    }
    #[cfg(not(target_arch = "arm"))]
    x
}

/// The fixed-point form `(multiplier, shift)` of a real factor `0 < m < 1/4`, with the multiplier
/// normalized to `[2³⁰, 2³¹)` for 31 bits of precision. `None` if `m` is out of that range or so
/// small that the shift would exceed 62.
pub fn quantize_multiplier(m: f64) -> Option<(i32, u8)> {
    if !(m.is_finite() && m > 0.0 && m < 0.25) {
        return None;
    }
    let mut shift = 31u8;
    let mut scaled = m * f64::from(1u32 << 31);
    while scaled < f64::from(1u32 << 30) {
        scaled *= 2.0;
        shift += 1;
        if shift > *SHIFTS.end() {
            return None;
        }
    }
    let mut multiplier = libm::round(scaled) as i64;
    if multiplier == 1i64 << 31 {
        // Rounded up to the next power of two.
        multiplier >>= 1;
        shift -= 1;
    }
    SHIFTS
        .contains(&shift)
        .then_some((multiplier as i32, shift))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, in 64-bit arithmetic.
    fn by_definition(acc: i32, m: i32, s: u8) -> u8 {
        let product = i64::from(acc) * i64::from(m);
        ((product + (1i64 << (s - 1))) >> s).clamp(0, 255) as u8
    }

    #[test]
    fn requantize_rounds_half_up_and_clamps() {
        // multiplier/2^shift = 1/8
        let (m, s) = (1 << 30, 33);
        assert_eq!(requantize(20, m, s), 3); // 2.5 → 3
        assert_eq!(requantize(19, m, s), 2); // 2.375
        assert_eq!(requantize(-20, m, s), 0); // ReLU
        assert_eq!(requantize(2100, m, s), 255); // saturates
        assert_eq!(requantize(i32::MAX, i32::MAX, 33), 255);
        assert_eq!(requantize(i32::MIN, i32::MAX, 33), 0);
        assert_eq!(requantize(i32::MAX, 3 << 29, 62), 1); // ≈ 0.75
        assert_eq!(requantize(i32::MAX, 1 << 30, 62), 0); // just below 0.5
    }

    #[test]
    fn requantize_is_the_definition_at_every_shift() {
        let accs = [
            i32::MIN,
            i32::MIN + 1,
            -1_000_000,
            -1,
            0,
            1,
            2,
            3,
            1_000_003,
            i32::MAX - 1,
            i32::MAX,
        ];
        let mults = [1, 2, 1 << 30, (1 << 30) + 12345, i32::MAX];
        for s in SHIFTS {
            for &m in &mults {
                for &acc in &accs {
                    assert_eq!(
                        requantize(acc, m, s),
                        by_definition(acc, m, s),
                        "{acc} {m} {s}"
                    );
                }
                // Every rounding boundary near the values the network produces.
                for acc in (-3000..3000).step_by(if cfg!(miri) { 499 } else { 1 }) {
                    let acc = acc << (s.saturating_sub(40) / 2);
                    assert_eq!(
                        requantize(acc, m, s),
                        by_definition(acc, m, s),
                        "{acc} {m} {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn requantize_halves_is_requantize() {
        let accs = [
            i32::MIN,
            -70_000,
            -1,
            0,
            1,
            2,
            65_535,
            65_536,
            1_000_003,
            i32::MAX,
        ];
        let mults = [
            i32::MIN,
            -5,
            0,
            1,
            0xffff,
            0x1_0000,
            1 << 30,
            (1 << 30) + 12345,
            i32::MAX,
        ];
        let mut state = 0x9e37_79b9u32;
        let mut random = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as i32
        };
        let same = |acc, m, s| {
            assert_eq!(
                requantize_halves(acc, m, s),
                requantize(acc, m, s),
                "{acc} {m} {s}"
            )
        };
        for s in [0, 1, 32, 33, 40, 50, 62, 63, 255] {
            for &m in &mults {
                for &acc in &accs {
                    same(acc, m, s);
                }
            }
            for _ in 0..if cfg!(miri) { 100 } else { 20_000 } {
                let (acc, m) = (random(), random() & i32::MAX | 1 << 30);
                same(acc, m, s);
                same(acc >> (random() as u32 % 31), m, s);
            }
        }
    }

    #[test]
    fn multiplier_represents_the_factor() {
        for m in [0.2499, 0.125, 0.1, 1e-3, 1.234e-5, 3e-9] {
            let (q, s) = quantize_multiplier(m).unwrap();
            assert!((1 << 30..=i32::MAX).contains(&q), "{m}: {q}");
            let back = f64::from(q) / 2f64.powi(i32::from(s));
            assert!((back - m).abs() <= m * 1e-9, "{m} → {q}·2^-{s} = {back}");
        }
        assert_eq!(quantize_multiplier(0.0), None);
        assert_eq!(quantize_multiplier(1.0), None);
        assert_eq!(quantize_multiplier(0.25), None);
        assert_eq!(quantize_multiplier(f64::NAN), None);
        assert_eq!(quantize_multiplier(1e-12), None);
    }

    #[test]
    fn requantize_matches_float_rounding() {
        let (m, s) = quantize_multiplier(0.0123).unwrap();
        for acc in (-5000..40_000).step_by(if cfg!(miri) { 997 } else { 7 }) {
            let expected = (f64::from(acc) * 0.0123 + 0.5).floor().clamp(0.0, 255.0) as u8;
            let got = requantize(acc, m, s);
            assert!(got.abs_diff(expected) <= 1, "{acc}: {got} vs {expected}");
        }
    }
}
