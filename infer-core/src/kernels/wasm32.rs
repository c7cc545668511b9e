//! WebAssembly SIMD128 walk: each quarter tile (4 rows × 4 inputs, 16 bytes) is widened to two
//! i16x8 vectors (rows `4q`, `4q + 1` and `4q + 2`, `4q + 3`) and meets the group's 4 inputs,
//! widened once when gathered and repeated in both halves, in `i32x4.dot_i16x8_s`: each lane is a
//! row's sum of two products, exact (u8 × i8 and u8 × nibble fit an i16 product pair in i32).
//! At the end of a row block the lane pairs are added into rows. 4-bit tiles: the nibbles, masked
//! and shifted to bytes, are widened without sign and meet the same inputs.
//!
//! Why `dot_i16x8_s` on widened inputs rather than relaxed SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add_s`:
//! the relaxed instruction treats the second operand as signed or unsigned at the engine's
//! choice unless its top bit is clear, so it is bit-exact only for 7-bit inputs, while pixels
//! and ReLU activations take all 8 bits; and relaxed SIMD is not in every browser. The widened
//! product is exact everywhere SIMD128 runs (every current browser, Node, wasmtime).

use core::arch::wasm32::*;

use super::arch::{Arch, Groups, TILE_ROWS};

/// SIMD128, compiled in with `-C target-feature=+simd128` (WebAssembly has no run-time detection:
/// a module with SIMD either validates on the engine or does not load at all).
pub(crate) struct Simd128;

/// A live group: its offset and its 4 inputs as i16, twice (`[x0, x1, x2, x3, x0, x1, x2, x3]`).
#[derive(Clone, Copy)]
pub(crate) struct Halfwords {
    offset: u32,
    x: v128,
}

/// `acc[2q + h] += ` the dot product of the two rows `4q + 2h`, `4q + 2h + 1` of `quarter` (16
/// weights, already widened to two i16x8 by `widen`) with the group's inputs.
#[inline(always)]
fn quarter(acc: &mut [v128; 8], q: usize, (lo, hi): (v128, v128), x: v128) {
    if let Some([a, b]) = acc.get_mut(2 * q..2 * q + 2) {
        *a = i32x4_add(*a, i32x4_dot_i16x8(lo, x));
        *b = i32x4_add(*b, i32x4_dot_i16x8(hi, x));
    }
}

/// `out[..16] +=` the rows of the lane pairs in `acc` (`acc[j]`: rows `2j`, `2j + 1`, two
/// partial sums each).
#[inline(always)]
fn add_rows(acc: &[v128; 8], out: &mut [i32]) {
    for (out, pair) in out
        .as_chunks_mut::<4>()
        .0
        .iter_mut()
        .zip(acc.as_chunks::<2>().0)
    {
        let rows = i32x4_add(
            i32x4_shuffle::<0, 2, 4, 6>(pair[0], pair[1]),
            i32x4_shuffle::<1, 3, 5, 7>(pair[0], pair[1]),
        );
        let sums = i32x4_add(i32x4(out[0], out[1], out[2], out[3]), rows);
        *out = [
            i32x4_extract_lane::<0>(sums),
            i32x4_extract_lane::<1>(sums),
            i32x4_extract_lane::<2>(sums),
            i32x4_extract_lane::<3>(sums),
        ];
    }
}

/// 16 bytes at `p`.
///
/// # Safety
/// `p..p + 16` is inside one allocation (no alignment needed).
#[inline(always)]
unsafe fn load(p: *const u8) -> v128 {
    // SAFETY: the caller's guarantee; `v128_load` takes unaligned addresses.
    unsafe { v128_load(p.cast()) }
}

impl Arch for Simd128 {
    type Group = Halfwords;

    fn group(offset: u32, x: [u8; 4]) -> Halfwords {
        let [a, b, c, d] = x.map(i16::from);
        Halfwords {
            offset,
            x: i16x8(a, b, c, d, a, b, c, d),
        }
    }

    unsafe fn rows(w: &[i8], groups: &Groups<Halfwords>, out: &mut [i32]) {
        let block = TILE_ROWS * groups.cols();
        let base = w.as_ptr().cast::<u8>();
        for (b, out) in out.as_chunks_mut::<TILE_ROWS>().0.iter_mut().enumerate() {
            let mut acc = [i32x4_splat(0); 8];
            for e in groups.entries() {
                let tile = b * block + e.offset as usize;
                for q in 0..4 {
                    // SAFETY: the tile's 64 bytes are inside `w` (`Arch::rows` contract); a
                    // quarter is 16 of them.
                    let v = unsafe { load(base.add(tile + 16 * q)) };
                    quarter(
                        &mut acc,
                        q,
                        (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v)),
                        e.x,
                    );
                }
            }
            add_rows(&acc, out);
        }
    }

    unsafe fn rows4(w: &[u8], groups: &Groups<Halfwords>, out: &mut [i32]) {
        let block = TILE_ROWS / 2 * groups.cols();
        let base = w.as_ptr();
        let mask = u8x16_splat(0x0f);
        for (b, out) in out.as_chunks_mut::<TILE_ROWS>().0.iter_mut().enumerate() {
            let mut acc = [i32x4_splat(0); 8];
            for e in groups.entries() {
                let tile = b * block + e.offset as usize / 2;
                for h in 0..2 {
                    // SAFETY: the tile's 32 bytes are inside `w` (`Arch::rows4` contract).
                    let v = unsafe { load(base.add(tile + 16 * h)) };
                    // Half `h` holds rows 4h..4h + 4 in its low nibbles, 8 + 4h.. in its high.
                    for (q, nibbles) in [(h, v128_and(v, mask)), (2 + h, u8x16_shr(v, 4))] {
                        let widened = (
                            u16x8_extend_low_u8x16(nibbles),
                            u16x8_extend_high_u8x16(nibbles),
                        );
                        quarter(&mut acc, q, widened, e.x);
                    }
                }
            }
            add_rows(&acc, out);
        }
    }
}
