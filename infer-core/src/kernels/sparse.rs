//! Block-sparse matrices: only some tiles of each row block are stored, and a product multiplies
//! only the stored tiles whose group of inputs is live.
//!
//! The walk is described in the [kernels docs](super#block-sparse-matrices).

use core::ops::Range;

use super::arch::{
    Arch, GROUP, Groups, KEPT_BLOCKS, KeptLayer, LIST_GROUPS, TILE_BYTES, TILE_ROWS, set_biases,
    take_offset, u16_of,
};
use super::{KernelError, Matrix};
use crate::{Weights, kinds};

/// Which tiles of a block-sparse matrix are stored: for each row block, how many, and their
/// groups. Checked at construction ([`Sparsity::new`]), so a walk cannot leave the input or the
/// weights whatever the bytes said.
#[derive(Debug, Clone, Copy)]
pub struct Sparsity<'a> {
    /// Per row block, its kept tiles (u16, little-endian).
    blocks: &'a [[u8; 2]],
    /// Per kept tile, its group (u16, little-endian), row block after row block.
    kept: &'a [[u8; 2]],
    /// Groups of the matrix's inputs.
    groups: usize,
}

/// Why a [`Sparsity`] was refused: the first row block whose list is wrong (the number of row
/// blocks when the counts do not add up to the kept list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadBlock(pub usize);

impl<'a> Sparsity<'a> {
    /// The sparsity of a matrix of `blocks.len()` row blocks and `cols` inputs (rounded up to 4):
    /// `blocks[b]` tiles kept in row block `b`, whose groups are the next ones of `kept`, strictly
    /// increasing and below `cols / 4`; the counts add up to `kept.len()`.
    pub fn new(blocks: &'a [[u8; 2]], kept: &'a [[u8; 2]], cols: usize) -> Result<Self, BadBlock> {
        let groups = cols.div_ceil(GROUP);
        let mut pos = 0usize;
        for (b, count) in blocks.iter().enumerate() {
            let end = pos + u16_of(count);
            let list = kept.get(pos..end).ok_or(BadBlock(b))?;
            let mut next = 0;
            for g in list.iter().map(u16_of) {
                if g < next || g >= groups {
                    return Err(BadBlock(b));
                }
                next = g + 1;
            }
            pos = end;
        }
        if pos != kept.len() {
            return Err(BadBlock(blocks.len()));
        }
        Ok(Self {
            blocks,
            kept,
            groups,
        })
    }

    /// Row blocks (of 16 rows).
    pub fn row_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Tiles stored.
    pub fn tiles(&self) -> usize {
        self.kept.len()
    }

    /// Tiles a dense matrix of the same shape would store.
    pub fn dense_tiles(&self) -> usize {
        self.blocks.len() * self.groups
    }

    /// Each row block's kept groups (u16 little-endian) and the range of its tiles among the
    /// stored ones.
    pub(crate) fn blocks(self) -> impl Iterator<Item = (&'a [[u8; 2]], Range<usize>)> {
        let kept = self.kept;
        self.blocks.iter().scan(0usize, move |pos, count| {
            let range = *pos..*pos + u16_of(count);
            *pos = range.end;
            Some((kept.get(range.clone()).unwrap_or(&[]), range))
        })
    }

    /// The stored tile holding `w[row][col]`, if it is kept.
    pub fn tile_of(&self, row: usize, col: usize) -> Option<usize> {
        let (list, range) = self.blocks().nth(row / TILE_ROWS)?;
        let g = col / GROUP;
        let i = list.binary_search_by(|k| u16_of(k).cmp(&g)).ok()?;
        Some(range.start + i)
    }
}

impl<'a> Matrix<'a> {
    /// Bytes of one of its tiles (16 rows × 4 inputs): 64 for int8, 32 for int4.
    pub(crate) fn tile_bytes(self) -> usize {
        TILE_BYTES * self.weights.bits() / 8
    }

    /// Each row block of a block-sparse matrix (its bytes `s`'s stored tiles): the block's kept
    /// groups and the matrix of its own tiles.
    pub(crate) fn row_blocks(
        self,
        s: Sparsity<'a>,
    ) -> impl Iterator<Item = (&'a [[u8; 2]], Matrix<'a>)> + use<'a> {
        let tile = self.tile_bytes();
        let lists = s.blocks.iter().map(u16_of);
        lists.scan((s.kept, self.bytes), move |(kept, w), n| {
            let (list, rest) = kept.split_at_checked(n).unwrap_or((kept, &[]));
            *kept = rest;
            let (tiles, rest) = w.split_at_checked(n * tile).unwrap_or((w, &[]));
            *w = rest;
            Some((list, self.with_bytes(tiles)))
        })
    }

    /// `out += W · x` on `A` for one row block of a block-sparse matrix: `kept` its groups, the
    /// matrix's bytes its stored tiles in that order, `out` its 16 rows.
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; `out.len()` is 16, the bytes are
    /// `kept.len()` tiles of the matrix's weights, and every group of `kept` is one of `x`'s.
    /// (Not inlined on a microcontroller: one copy serves every layer, where flash is scarce.)
    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) unsafe fn walk_block<A: Arch, const KINDS: u8>(
        self,
        kept: &[[u8; 2]],
        x: &[u8],
        groups: &mut Groups<A::Group>,
        out: &mut [i32],
    ) {
        let tile = self.tile_bytes();
        let mut rest = self.bytes;
        for list in kept.chunks(LIST_GROUPS) {
            let (w, next) = rest
                .split_at_checked(list.len() * tile)
                .unwrap_or((rest, &[]));
            rest = next;
            // SAFETY: `w` is `list.len()` tiles (the caller's guarantee); the rest by the caller.
            if kinds::has(KINDS, kinds::INT4) && self.weights == Weights::Int4 {
                let sum = unsafe { A::kept_rows::<true>(w, list, x, groups, out) };
                take_offset(out, sum);
            } else if kinds::has(KINDS, kinds::INT8) && self.weights == Weights::Int8 {
                // SAFETY: as above.
                unsafe { A::kept_rows::<false>(w, list, x, groups, out) };
            }
        }
    }

    /// `out = requantize(bias + W · x)` for a block-sparse hidden layer ([`Arch::kept_layer_out`]):
    /// `bias`, `multiplier`, `shift` and `out` hold 16 rows per row block of `s` (rows past the
    /// shortest are left alone).
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; the matrix is `s`'s tiles, checked against
    /// `x` (as [`Self::check_sparse`] or the model's validation do).
    #[inline(always)]
    pub(crate) unsafe fn hidden_sparse<A: Arch, const KINDS: u8>(
        self,
        s: Sparsity<'_>,
        x: &[u8],
        groups: &mut Groups<A::Group>,
        (bias, multiplier, shift): (&[[u8; 4]], &[[u8; 4]], &[u8]),
        out: &mut [u8],
    ) {
        let rows = [bias.len(), multiplier.len(), shift.len(), out.len()];
        let blocks = s
            .blocks
            .len()
            .min(rows.iter().min().map_or(0, |r| r / TILE_ROWS));
        let counts = s.blocks.get(..blocks).unwrap_or(&[]);
        let layer = KeptLayer {
            tiles: self.bytes,
            counts,
            kept: s.kept,
            bias,
            multiplier,
            shift,
        };
        let out = out.get_mut(..blocks * TILE_ROWS).unwrap_or(&mut []);
        if kinds::has(KINDS, kinds::INT4) && self.weights == Weights::Int4 {
            // SAFETY: the caller's guarantee; `out` 16 rows per row block of `counts`.
            unsafe { A::kept_layer_out::<true>(layer, x, groups, out) };
        } else if kinds::has(KINDS, kinds::INT8) && self.weights == Weights::Int8 {
            // SAFETY: as above.
            unsafe { A::kept_layer_out::<false>(layer, x, groups, out) };
        }
    }

    /// `out = bias + W · x` (`out += W · x` without `bias`) over every row block of a
    /// block-sparse matrix (see [`Self::walk_blocks`]).
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; `out.len()` is 16 per row block of `s`
    /// (and so is `bias.len()`) and the bytes are `s.tiles()` tiles; `x` has the inputs `s` was
    /// made for.
    pub(crate) unsafe fn walk_sparse<A: Arch, const KINDS: u8>(
        self,
        s: Sparsity<'_>,
        x: &[u8],
        groups: &mut Groups<A::Group>,
        bias: Option<&[[u8; 4]]>,
        out: &mut [i32],
    ) {
        // SAFETY: the caller's guarantee.
        unsafe { Self::walk_blocks::<A, KINDS>(&mut self.row_blocks(s), x, groups, bias, out) };
    }

    /// `out = bias + W · x` (`out += W · x` without `bias`) for the next `out.len() / 16` row
    /// blocks of a block-sparse matrix's [`Self::row_blocks`]: one [`Self::walk_block`] each,
    /// or, where the architecture walks several row blocks at once ([`Arch::KEPT_BATCH`]),
    /// [`Arch::kept_blocks`] on up to [`KEPT_BLOCKS`] of them at a time (each with at most
    /// [`LIST_GROUPS`] kept tiles; a row block with more is walked alone).
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses; `blocks` are row blocks of a matrix
    /// checked against `x` (as [`Self::check_sparse`] or the model's validation do), with at
    /// least `out.len() / 16` left; `bias`, if any, has `out.len()` values.
    #[inline(always)]
    pub(crate) unsafe fn walk_blocks<'b, A: Arch, const KINDS: u8>(
        blocks: &mut impl Iterator<Item = (&'b [[u8; 2]], Matrix<'b>)>,
        x: &[u8],
        groups: &mut Groups<A::Group>,
        bias: Option<&[[u8; 4]]>,
        out: &mut [i32],
    ) {
        if !A::KEPT_BATCH {
            // SAFETY: the caller's guarantee.
            return unsafe { Self::walk_each::<A, KINDS>(blocks, x, groups, bias, out) };
        }
        let rows = TILE_ROWS * KEPT_BLOCKS;
        for (i, out) in out.chunks_mut(rows).enumerate() {
            let bias = bias.map(|b| b.get(i * rows..i * rows + out.len()).unwrap_or(&[]));
            let mut batch: [(&[[u8; 2]], &[u8]); KEPT_BLOCKS] = [(&[], &[]); KEPT_BLOCKS];
            let mut n = 0;
            let mut weights = None;
            let next = blocks.by_ref().take(out.len() / TILE_ROWS);
            for (slot, (kept, m)) in batch.iter_mut().zip(next) {
                *slot = (kept, m.bytes);
                weights = Some(m.weights);
                n += 1;
            }
            let batch = batch.get(..n).unwrap_or(&[]);
            let Some(weights) = weights else { return };
            let m = Matrix::new(weights, &[]);
            if batch.iter().any(|(kept, _)| kept.len() > LIST_GROUPS) {
                let batch = batch.iter().map(|&(kept, w)| (kept, m.with_bytes(w)));
                // SAFETY: the batch's row blocks, of a matrix checked against `x`; the rest by
                // the caller.
                unsafe { Self::walk_each::<A, KINDS>(batch, x, groups, bias, out) };
            } else if kinds::has(KINDS, kinds::INT4) && weights == Weights::Int4 {
                // SAFETY: each row block's kept groups (at most LIST_GROUPS) and stored tiles,
                // of a matrix checked against `x`; the CPU by the caller.
                unsafe { A::kept_blocks::<true>(batch, x, groups, bias, out) };
            } else if kinds::has(KINDS, kinds::INT8) && weights == Weights::Int8 {
                // SAFETY: as above.
                unsafe { A::kept_blocks::<false>(batch, x, groups, bias, out) };
            }
        }
    }

    /// [`Self::walk_blocks`] one row block at a time: `out = bias` (with `bias`), then one
    /// [`Self::walk_block`] per row block.
    ///
    /// # Safety
    /// As [`Self::walk_blocks`].
    #[inline(always)]
    unsafe fn walk_each<'b, A: Arch, const KINDS: u8>(
        blocks: impl Iterator<Item = (&'b [[u8; 2]], Matrix<'b>)>,
        x: &[u8],
        groups: &mut Groups<A::Group>,
        bias: Option<&[[u8; 4]]>,
        out: &mut [i32],
    ) {
        if let Some(bias) = bias {
            set_biases(out, bias);
        }
        for (out, (kept, m)) in out.chunks_exact_mut(TILE_ROWS).zip(blocks) {
            // SAFETY: one row block and its stored tiles; the rest by the caller.
            unsafe { m.walk_block::<A, KINDS>(kept, x, groups, out) };
        }
    }

    /// Whether the matrix is `s`'s tiles for `out.len()` rows of `len` inputs.
    pub(crate) fn check_sparse(
        self,
        s: &Sparsity<'_>,
        len: usize,
        rows: usize,
    ) -> Result<(), KernelError> {
        if rows == s.row_blocks() * TILE_ROWS
            && len.div_ceil(GROUP) == s.groups
            && s.tiles().checked_mul(self.tile_bytes()) == Some(self.bytes.len())
        {
            Ok(())
        } else {
            Err(KernelError::Shape)
        }
    }
}
