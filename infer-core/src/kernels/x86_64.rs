//! x86-64 kernels: AVX-512 VNNI and AVX-VNNI (`vpdpbusd`, u8 × i8 → i32 in one instruction) and
//! AVX2 (`vpmovsxbw` + `vpmaddwd`). Four row blocks (16 rows) share each input load.

use core::arch::x86_64::*;

use super::MAX_COLS;

/// Whether the running CPU (or, without `std`, the compile-time target) has AVX2.
pub fn has_avx2() -> bool {
    #[cfg(any(feature = "std", test))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(any(feature = "std", test)))]
    {
        cfg!(target_feature = "avx2")
    }
}

/// Whether AVX-512F and AVX-512 VNNI are there.
pub fn has_avx512_vnni() -> bool {
    #[cfg(any(feature = "std", test))]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(any(feature = "std", test)))]
    {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512vnni"
        ))
    }
}

/// Whether AVX-VNNI (the 256-bit VEX encoding) is there.
pub fn has_avx_vnni() -> bool {
    #[cfg(any(feature = "std", test))]
    {
        std::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(any(feature = "std", test)))]
    {
        cfg!(target_feature = "avxvnni")
    }
}

/// The inputs as `vpdpbusd` wants them: for every group of 4 inputs, those 4 bytes repeated for
/// the 4 rows of a chunk; 16 bytes per group. Returns the bytes used.
fn repeat_groups<'b>(x: &[u8], buf: &'b mut [u8; 4 * MAX_COLS]) -> &'b [u8] {
    for (group, out) in x.chunks_exact(4).zip(buf.chunks_exact_mut(16)) {
        for row in out.chunks_exact_mut(4) {
            row.copy_from_slice(group);
        }
    }
    buf.get(..4 * x.len()).unwrap_or(&[])
}

/// Defines a `vpdpbusd` kernel of one vector width: `$bytes`-byte loads cover `$bytes / 16` chunks
/// (groups) of a row block, against the repeated inputs of the same groups.
macro_rules! vnni_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $bytes:literal, $zero:ident, $load:ident,
     $dpbusd:ident, $fold:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The CPU must support the target features named in the attribute.
        #[target_feature(enable = $features)]
        pub unsafe fn $name(w: &[i8], x: &[u8], out: &mut [i32]) {
            let mut buf = [0u8; 4 * MAX_COLS];
            let xr = repeat_groups(x, &mut buf);
            // Only the vectors whose inputs are not all zero contribute: MNIST digits leave about
            // half of them empty, and skipping them skips their weights' memory traffic too.
            let mut live = [0u16; MAX_COLS];
            let mut n_live = 0;
            for (v, inputs) in x.chunks_exact($bytes / 4).enumerate() {
                if inputs.iter().any(|&p| p != 0) {
                    if let Some(slot) = live.get_mut(n_live) {
                        *slot = (v * $bytes) as u16;
                        n_live += 1;
                    }
                }
            }
            let live = live.get(..n_live).unwrap_or(&[]);
            let block = 4 * x.len();
            let (w4, w_rest) = w.split_at(w.len() / (4 * block) * (4 * block));
            let (out4, out_rest) = out.split_at_mut(w4.len() / x.len());
            // Four row blocks share each input load.
            for (w, out) in w4.chunks_exact(4 * block).zip(out4.chunks_exact_mut(16)) {
                let mut acc = [$zero(); 4];
                for &offset in live {
                    let offset = usize::from(offset);
                    // SAFETY: `offset` is a multiple of $bytes below `xr.len()` = `block` (it
                    // indexes a whole vector of `x`'s repeated groups), and each of the 4 row
                    // blocks in `w` is `block` bytes long: every load is in bounds. Unaligned.
                    unsafe {
                        let xv = $load(xr.as_ptr().add(offset).cast());
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let wv = $load(w.as_ptr().add(r * block + offset).cast());
                            *acc = $dpbusd(*acc, xv, wv);
                        }
                    }
                }
                for (acc, out) in acc.into_iter().zip(out.chunks_exact_mut(4)) {
                    store4(out, $fold(acc));
                }
            }
            for (w, out) in w_rest.chunks_exact(block).zip(out_rest.chunks_exact_mut(4)) {
                let mut acc = $zero();
                for &offset in live {
                    let offset = usize::from(offset);
                    // SAFETY: as above, for one row block.
                    unsafe {
                        let xv = $load(xr.as_ptr().add(offset).cast());
                        acc = $dpbusd(acc, xv, $load(w.as_ptr().add(offset).cast()));
                    }
                }
                store4(out, $fold(acc));
            }
        }
    };
}

vnni_kernel!(
    /// AVX-512 VNNI kernel (512-bit `vpdpbusd`); see [`super::dot_rows`].
    dot_rows_avx512_vnni,
    "avx512f,avx512vnni",
    64,
    _mm512_setzero_si512,
    _mm512_loadu_si512,
    _mm512_dpbusd_epi32,
    fold512
);

vnni_kernel!(
    /// AVX-VNNI kernel (256-bit VEX `vpdpbusd`); see [`super::dot_rows`].
    dot_rows_avx_vnni,
    "avx2,avxvnni",
    32,
    _mm256_setzero_si256,
    _mm256_loadu_si256,
    _mm256_dpbusd_avx_epi32,
    fold256
);

/// AVX2 kernel; see [`super::dot_rows`].
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn dot_rows_avx2(w: &[i8], x: &[u8], out: &mut [i32]) {
    // Each group's 4 inputs as i16, repeated for the 4 rows of a chunk: 16 × i16 per group.
    let mut buf = [0i16; 4 * MAX_COLS];
    for (group, out) in x.chunks_exact(4).zip(buf.chunks_exact_mut(16)) {
        for row in out.chunks_exact_mut(4) {
            for (o, &v) in row.iter_mut().zip(group) {
                *o = i16::from(v);
            }
        }
    }
    let xr = buf.get(..4 * x.len()).unwrap_or(&[]);
    let block = 4 * x.len();
    for (w, out) in w.chunks_exact(block).zip(out.chunks_exact_mut(4)) {
        // Two accumulators over alternate groups hide the add latency.
        let mut acc = [_mm256_setzero_si256(); 2];
        for (xv, c) in xr.chunks_exact(32).zip(w.chunks_exact(32)) {
            let (xv0, xv1) = xv.split_at(16);
            let (c0, c1) = c.split_at(16);
            for ((acc, xv), c) in acc.iter_mut().zip([xv0, xv1]).zip([c0, c1]) {
                // SAFETY: `xv` is 16 × i16 = 32 bytes and `c` 16 bytes; unaligned loads.
                unsafe {
                    let w16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(c.as_ptr().cast()));
                    let x16 = _mm256_loadu_si256(xv.as_ptr().cast());
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(w16, x16));
                }
            }
        }
        // Lanes are (row, half): add the halves of each row.
        let sum = _mm256_add_epi32(acc[0], acc[1]);
        let pairs = _mm256_hadd_epi32(sum, sum);
        let rows = _mm_unpacklo_epi64(
            _mm256_castsi256_si128(pairs),
            _mm256_extracti128_si256::<1>(pairs),
        );
        store4(out, rows);
    }
}

/// Sums the lanes of each row: lane `4·g + r` holds group `g`'s part of row `r`.
#[inline]
#[target_feature(enable = "avx512f")]
fn fold512(acc: __m512i) -> __m128i {
    let half = _mm256_add_epi32(
        _mm512_castsi512_si256(acc),
        _mm512_extracti64x4_epi64::<1>(acc),
    );
    fold256(half)
}

#[inline]
#[target_feature(enable = "avx2")]
fn fold256(acc: __m256i) -> __m128i {
    _mm_add_epi32(
        _mm256_castsi256_si128(acc),
        _mm256_extracti128_si256::<1>(acc),
    )
}

#[inline]
#[target_feature(enable = "avx2")]
fn store4(out: &mut [i32], v: __m128i) {
    let mut lanes = [0i32; 4];
    // SAFETY: `lanes` is 16 bytes; unaligned store.
    unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), v) };
    out.copy_from_slice(&lanes);
}

/// The portable requantization loop (`requantize_rows_portable`) compiled for AVX-512:
/// integer-only, so the results are identical.
///
/// # Safety
/// The CPU must support AVX-512F, DQ, VL and BW.
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
pub(crate) unsafe fn requantize_rows_avx512(
    acc: &[i32],
    bias: &[[u8; 4]],
    multiplier: &[[u8; 4]],
    shift: &[u8],
    out: &mut [u8],
) {
    super::requantize_rows_portable(acc, bias, multiplier, shift, out);
}

/// [`dot_rows_avx512_vnni`] for four images at once: each weight vector is loaded once and used
/// four times, so batches are bound by `vpdpbusd` throughput rather than by the L2 bandwidth that
/// bounds a single image. `xs` all have the same length; `outs[i]` gets image `i`'s rows.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn dot_rows_x4_avx512_vnni(w: &[i8], xs: [&[u8]; 4], outs: [&mut [i32]; 4]) {
    let cols = xs[0].len();
    let mut bufs = [[0u8; 4 * MAX_COLS]; 4];
    let mut xr: [&[u8]; 4] = [&[]; 4];
    for ((buf, x), xr) in bufs.iter_mut().zip(xs).zip(xr.iter_mut()) {
        *xr = repeat_groups(x.get(..cols).unwrap_or(x), buf);
    }
    if xr.iter().any(|x| x.len() != 4 * cols) {
        return;
    }
    // The vectors where any of the four images has a non-zero input.
    let mut live = [0u16; MAX_COLS];
    let mut n_live = 0;
    for v in 0..cols / 16 {
        let any = xs.iter().any(|x| {
            x.get(16 * v..16 * v + 16)
                .is_some_and(|c| c.iter().any(|&p| p != 0))
        });
        if any && let Some(slot) = live.get_mut(n_live) {
            *slot = (v * 64) as u16;
            n_live += 1;
        }
    }
    let live = live.get(..n_live).unwrap_or(&[]);
    let block = 4 * cols;
    let rows = outs
        .iter()
        .map(|o| o.len())
        .min()
        .unwrap_or(0)
        .min(w.len() / cols.max(1));
    let mut outs = outs;
    let mut start = 0;
    while start + 4 <= rows {
        // 4 row blocks when there are, else one: 16 or 4 accumulators.
        let blocks = if start + 16 <= rows { 4 } else { 1 };
        let base = start / 4 * block;
        let mut acc = [[_mm512_setzero_si512(); 4]; 4];
        for &offset in live {
            let offset = usize::from(offset);
            // SAFETY: `offset` + 64 ≤ `block` = each `xr[i].len()`; the weight loads stay inside
            // rows `start..start + 4·blocks` ≤ `rows` ≤ `w.len() / cols`. Unaligned loads.
            unsafe {
                let x = xr.map(|x| _mm512_loadu_si512(x.as_ptr().add(offset).cast()));
                for (r, acc) in acc.iter_mut().enumerate().take(blocks) {
                    let wv = _mm512_loadu_si512(w.as_ptr().add(base + r * block + offset).cast());
                    for (acc, &x) in acc.iter_mut().zip(&x) {
                        *acc = _mm512_dpbusd_epi32(*acc, x, wv);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate().take(blocks) {
            for (out, &acc) in outs.iter_mut().zip(acc) {
                if let Some(out) = out.get_mut(start + 4 * r..start + 4 * r + 4) {
                    store4(out, fold512(acc));
                }
            }
        }
        start += 4 * blocks;
    }
}
