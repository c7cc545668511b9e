//! The reference walk: plain Rust over the live groups and the tiled layout, no SIMD. Every other
//! kernel must give exactly its results (and it gives those of the dense formula).

use super::arch::{Arch, GROUP, Groups, TILE_BYTES, TILE_ROWS, TILE4_BYTES};

/// Portable, always available.
pub(crate) struct Scalar;

/// A live group: its offset in a row block and its 4 inputs.
#[derive(Clone, Copy)]
pub(crate) struct Group {
    offset: u32,
    x: [u8; 4],
}

impl Group {
    /// The group at byte `offset` of each row block (8-bit tiles), with inputs `x`.
    pub(super) fn new(offset: u32, x: [u8; 4]) -> Self {
        Self { offset, x }
    }
}

impl Arch for Scalar {
    type Group = Group;

    fn group(offset: u32, x: [u8; 4]) -> Group {
        Group::new(offset, x)
    }

    unsafe fn rows(w: &[i8], groups: &Groups<Group>, out: &mut [i32]) {
        rows_of(w, groups.cols(), groups.entries().iter().copied(), out);
    }

    unsafe fn rows4(w: &[u8], groups: &Groups<Group>, out: &mut [i32]) {
        rows4_of(w, groups.cols(), groups.entries().iter().copied(), out);
    }
}

/// [`Arch::rows`] in safe code over `entries` of a vector of `cols` inputs: a bad shape only
/// gives wrong numbers.
pub(super) fn rows_of(
    w: &[i8],
    cols: usize,
    entries: impl Iterator<Item = Group> + Clone,
    out: &mut [i32],
) {
    let block = TILE_ROWS * cols;
    if block == 0 {
        return;
    }
    for (w, out) in w.chunks_exact(block).zip(out.chunks_exact_mut(TILE_ROWS)) {
        for g in entries.clone() {
            let start = g.offset as usize;
            let Some(tile) = w.get(start..start + TILE_BYTES) else {
                continue;
            };
            add_tile(out, tile, g.x);
        }
    }
}

/// `acc[i] += Σ_t x[t] · tile[4·i + t]` for the rows of one tile (wrapping).
#[inline(always)]
pub(super) fn add_tile(acc: &mut [i32], tile: &[i8], x: [u8; 4]) {
    for (acc, row) in acc.iter_mut().zip(tile.chunks_exact(GROUP)) {
        for (&w, &x) in row.iter().zip(&x) {
            *acc = acc.wrapping_add(i32::from(x) * i32::from(w));
        }
    }
}

/// [`Arch::rows4`] in safe code over `entries` of a vector of `cols` inputs.
pub(super) fn rows4_of(
    w: &[u8],
    cols: usize,
    entries: impl Iterator<Item = Group> + Clone,
    out: &mut [i32],
) {
    let block = TILE_ROWS / 2 * cols;
    if block == 0 {
        return;
    }
    for (w, out) in w.chunks_exact(block).zip(out.chunks_exact_mut(TILE_ROWS)) {
        for g in entries.clone() {
            let start = g.offset as usize / 2;
            let Some(tile) = w.get(start..start + TILE4_BYTES) else {
                continue;
            };
            add_tile4(out, tile, g.x);
        }
    }
}

/// `acc[i] += Σ_t x[t] · nibble` for the 16 rows of one 4-bit tile: row `i` in the low nibbles
/// of bytes `4·i..4·i + 4`, row `i + 8` in their high nibbles (wrapping).
#[inline(always)]
pub(super) fn add_tile4(acc: &mut [i32], tile: &[u8], x: [u8; 4]) {
    let (low, high) = acc.split_at_mut(acc.len().min(TILE_ROWS / 2));
    for ((lo, hi), row) in low.iter_mut().zip(high).zip(tile.chunks_exact(GROUP)) {
        for (&w, &x) in row.iter().zip(&x) {
            *lo = lo.wrapping_add(i32::from(x) * i32::from(w & 0x0f));
            *hi = hi.wrapping_add(i32::from(x) * i32::from(w >> 4));
        }
    }
}
