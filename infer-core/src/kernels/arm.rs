//! Cortex-M4/M7 kernel on the DSP extension, through `asm!` (LLVM does not form `smlad` from i8
//! loops, and the `__smlad` intrinsic is nightly-only).
//!
//! Inputs are paired once per call: for each group of 4, `x02 = x0 | x2 << 16` and
//! `x13 = x1 | x3 << 16`. A row's weight word `[w0 w1 w2 w3]` becomes `(w0, w2)` by `sxtb16` and
//! `(w1, w3)` by `sxtb16 …, ror #8`, and two `smlad`s add all four products. Per chunk (4 rows × 4
//! inputs): one `ldrd` of inputs, two `ldm` of weights, 8 `sxtb16`, 8 `smlad` — 19 instructions for
//! 16 multiply-accumulates, 1.25 per MAC with the loop unrolled twice.

use core::arch::asm;

use super::MAX_COLS;

/// DSP kernel; see [`super::dot_rows`]. `w` must be 4-byte aligned (the model format guarantees
/// it); `x.len()` a multiple of 8.
pub fn dot_rows_dsp(w: &[i8], x: &[u8], out: &mut [i32]) {
    let mut pairs = [0u32; MAX_COLS / 2];
    for (group, pair) in x
        .as_chunks::<4>()
        .0
        .iter()
        .zip(pairs.as_chunks_mut::<2>().0)
    {
        let word = u32::from_le_bytes(*group);
        *pair = [word & 0x00ff_00ff, (word >> 8) & 0x00ff_00ff];
    }
    let Some(pairs) = pairs.get(..x.len() / 2) else {
        return;
    };
    let block = 4 * x.len();
    if !x.len().is_multiple_of(8) || w.as_ptr().align_offset(4) != 0 || block == 0 {
        // Not the shapes this loop is unrolled for: the reference gives the same numbers.
        return super::scalar::dot_rows(w, x, out);
    }
    for (w, out) in w.chunks_exact(block).zip(out.chunks_exact_mut(4)) {
        let mut acc = [0i32; 4];
        let px = pairs.as_ptr();
        // SAFETY: the loop reads `pairs` (x.len() / 2 words, 16 bytes per two groups) and `w`
        // (4·x.len() bytes, 32 per two groups) exactly to their ends: both advance two groups per
        // iteration and the loop stops when the input pointer reaches `end`. `w` is 4-byte aligned
        // (checked above; `ldm` needs it), `pairs` is a u32 array. Only the named registers change.
        unsafe {
            let end = px.add(pairs.len());
            asm!(
                "2:",
                "ldrd {x02}, {x13}, [{px}], #8",
                "ldm {pw}!, {{r4, r5}}",
                "sxtb16 {t}, r4, ror #8",
                "sxtb16 r4, r4",
                "smlad {a0}, r4, {x02}, {a0}",
                "smlad {a0}, {t}, {x13}, {a0}",
                "sxtb16 {t}, r5, ror #8",
                "sxtb16 r5, r5",
                "smlad {a1}, r5, {x02}, {a1}",
                "smlad {a1}, {t}, {x13}, {a1}",
                "ldm {pw}!, {{r4, r5}}",
                "sxtb16 {t}, r4, ror #8",
                "sxtb16 r4, r4",
                "smlad {a2}, r4, {x02}, {a2}",
                "smlad {a2}, {t}, {x13}, {a2}",
                "sxtb16 {t}, r5, ror #8",
                "sxtb16 r5, r5",
                "smlad {a3}, r5, {x02}, {a3}",
                "smlad {a3}, {t}, {x13}, {a3}",
                "ldrd {x02}, {x13}, [{px}], #8",
                "ldm {pw}!, {{r4, r5}}",
                "sxtb16 {t}, r4, ror #8",
                "sxtb16 r4, r4",
                "smlad {a0}, r4, {x02}, {a0}",
                "smlad {a0}, {t}, {x13}, {a0}",
                "sxtb16 {t}, r5, ror #8",
                "sxtb16 r5, r5",
                "smlad {a1}, r5, {x02}, {a1}",
                "smlad {a1}, {t}, {x13}, {a1}",
                "ldm {pw}!, {{r4, r5}}",
                "sxtb16 {t}, r4, ror #8",
                "sxtb16 r4, r4",
                "smlad {a2}, r4, {x02}, {a2}",
                "smlad {a2}, {t}, {x13}, {a2}",
                "sxtb16 {t}, r5, ror #8",
                "sxtb16 r5, r5",
                "smlad {a3}, r5, {x02}, {a3}",
                "smlad {a3}, {t}, {x13}, {a3}",
                "cmp {px}, {end}",
                "bne 2b",
                px = inout(reg) px => _,
                pw = inout(reg) w.as_ptr() => _,
                end = in(reg) end,
                x02 = out(reg) _,
                x13 = out(reg) _,
                t = out(reg) _,
                a0 = inout(reg) acc[0],
                a1 = inout(reg) acc[1],
                a2 = inout(reg) acc[2],
                a3 = inout(reg) acc[3],
                out("r4") _,
                out("r5") _,
                options(nostack, readonly),
            );
        }
        out.copy_from_slice(&acc);
    }
}
