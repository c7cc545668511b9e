//! aarch64 NEON walk: each quarter tile (4 rows × 4 inputs) is sign-extended to i16 and
//! multiplied with the group's inputs, widened once when gathered, by `smlal`: one i32×4
//! accumulator per row, summed across lanes at the end of the block. 4-bit tiles: the nibbles,
//! masked and shifted to bytes, meet the group's bytes in `vmull_u8` (u8 × u8 → u16, no sign to
//! extend) and `vpadalq_u16` adds the product pairs into u32 lanes.

use core::arch::aarch64::*;

use super::arch::{Arch, Groups, TILE_ROWS};

/// NEON, part of every aarch64 CPU.
pub(crate) struct Neon;

/// A live group: its offset and its inputs as 4 × i16 (one 64-bit lane), and as bytes.
#[derive(Clone, Copy)]
pub(crate) struct Halfwords {
    offset: u32,
    bytes: u32,
    x: u64,
}

impl Arch for Neon {
    type Group = Halfwords;

    fn group(offset: u32, x: [u8; 4]) -> Halfwords {
        Halfwords {
            offset,
            bytes: u32::from_le_bytes(x),
            x: super::arch::halfwords(x),
        }
    }

    #[target_feature(enable = "neon")]
    unsafe fn rows4(w: &[u8], groups: &Groups<Halfwords>, out: &mut [i32]) {
        let block = TILE_ROWS / 2 * groups.cols();
        let base = w.as_ptr();
        for (b, out) in out.as_chunks_mut::<TILE_ROWS>().0.iter_mut().enumerate() {
            // Lane pairs of row `i` (of the low or high nibbles) in `acc[i / 2]`.
            let mut acc = [vdupq_n_u32(0); TILE_ROWS / 2];
            for e in groups.entries() {
                let x = vreinterpretq_u8_u32(vdupq_n_u32(e.bytes));
                let tile = b * block + e.offset as usize / 2;
                for h in 0..2 {
                    // SAFETY: the tile's 32 bytes are inside `w` (`Arch::rows4` contract).
                    let v = unsafe { vld1q_u8(base.add(tile + 16 * h)) };
                    // Rows 4h..4h + 4 (low nibbles) and 8 + 4h.. (high nibbles).
                    for (n, nibbles) in [vandq_u8(v, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(v)]
                        .into_iter()
                        .enumerate()
                    {
                        let pair = 4 * n + 2 * h;
                        let lo = vmull_u8(vget_low_u8(nibbles), vget_low_u8(x));
                        let hi = vmull_high_u8(nibbles, x);
                        if let Some([a, b]) = acc.get_mut(pair..pair + 2) {
                            *a = vpadalq_u16(*a, lo);
                            *b = vpadalq_u16(*b, hi);
                        }
                    }
                }
            }
            // acc[k] holds rows 2k', 2k' + 1 as lane pairs, in the order low 0–7, high 8–15.
            for (out, acc) in out
                .as_chunks_mut::<4>()
                .0
                .iter_mut()
                .zip(acc.as_chunks::<2>().0)
            {
                let rows = vreinterpretq_s32_u32(vpaddq_u32(acc[0], acc[1]));
                // SAFETY: `out` is 4 i32s.
                let init = unsafe { vld1q_s32(out.as_ptr()) };
                // SAFETY: as above.
                unsafe { vst1q_s32(out.as_mut_ptr(), vaddq_s32(init, rows)) };
            }
        }
    }

    #[target_feature(enable = "neon")]
    unsafe fn rows(w: &[i8], groups: &Groups<Halfwords>, out: &mut [i32]) {
        let block = TILE_ROWS * groups.cols();
        let base = w.as_ptr();
        for (b, out) in out.as_chunks_mut::<TILE_ROWS>().0.iter_mut().enumerate() {
            let mut acc = [vdupq_n_s32(0); TILE_ROWS];
            for e in groups.entries() {
                let x = vcreate_s16(e.x);
                let tile = b * block + e.offset as usize;
                for (q, acc) in acc.as_chunks_mut::<4>().0.iter_mut().enumerate() {
                    // SAFETY: the tile's 64 bytes are inside `w` (`Arch::rows` contract); a
                    // quarter is 16 of them. NEON is baseline on aarch64.
                    let w8 = unsafe { vld1q_s8(base.add(tile + 16 * q)) };
                    let (lo, hi) = (vmovl_s8(vget_low_s8(w8)), vmovl_high_s8(w8));
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(lo), x);
                    acc[1] = vmlal_s16(acc[1], vget_high_s16(lo), x);
                    acc[2] = vmlal_s16(acc[2], vget_low_s16(hi), x);
                    acc[3] = vmlal_s16(acc[3], vget_high_s16(hi), x);
                }
            }
            for (out, acc) in out
                .as_chunks_mut::<4>()
                .0
                .iter_mut()
                .zip(acc.as_chunks::<4>().0)
            {
                let rows = vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3]));
                // SAFETY: `out` is 4 i32s.
                let init = unsafe { vld1q_s32(out.as_ptr()) };
                // SAFETY: as above.
                unsafe { vst1q_s32(out.as_mut_ptr(), vaddq_s32(init, rows)) };
            }
        }
    }
}
