//! aarch64 NEON kernel: each 16-byte chunk is sign-extended to two i16 vectors and multiplied
//! with the group's inputs by `smlal`/`smlal2`, one i32×4 accumulator per row.

use core::arch::aarch64::*;

/// NEON kernel; see [`super::dot_rows`]. NEON is part of every aarch64 CPU.
pub fn dot_rows_neon(w: &[i8], x: &[u8], out: &mut [i32]) {
    let block = 4 * x.len();
    for (w, out) in w.chunks_exact(block).zip(out.chunks_exact_mut(4)) {
        // SAFETY: NEON is baseline on aarch64; every load reads exactly the slice it is given.
        unsafe {
            let mut acc = [vdupq_n_s32(0); 4];
            for (c, group) in w.chunks_exact(16).zip(x.as_chunks::<4>().0) {
                let [a, b, c2, d] = *group;
                let g = [a, b, c2, d, a, b, c2, d];
                let x16 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(g.as_ptr())));
                let w8 = vld1q_s8(c.as_ptr());
                let lo = vmovl_s8(vget_low_s8(w8));
                let hi = vmovl_high_s8(w8);
                acc[0] = vmlal_s16(acc[0], vget_low_s16(lo), vget_low_s16(x16));
                acc[1] = vmlal_high_s16(acc[1], lo, x16);
                acc[2] = vmlal_s16(acc[2], vget_low_s16(hi), vget_low_s16(x16));
                acc[3] = vmlal_high_s16(acc[3], hi, x16);
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o = vaddvq_s32(a);
            }
        }
    }
}
