//! The reference kernel: plain Rust over the blocked layout, no SIMD. Every other kernel must give
//! exactly its results.

/// `out[r] = Σ_k x[k] · w[r][k]`, wrapping i32; see [`super::dot_rows`].
pub fn dot_rows(w: &[i8], x: &[u8], out: &mut [i32]) {
    let cols = x.len();
    for (block, out) in w.chunks_exact(4 * cols).zip(out.chunks_exact_mut(4)) {
        let mut acc = [0i32; 4];
        for (chunk, group) in block.chunks_exact(16).zip(x.chunks_exact(4)) {
            for (acc, row) in acc.iter_mut().zip(chunk.chunks_exact(4)) {
                for (&w, &x) in row.iter().zip(group) {
                    *acc = acc.wrapping_add(i32::from(x) * i32::from(w));
                }
            }
        }
        out.copy_from_slice(&acc);
    }
}
