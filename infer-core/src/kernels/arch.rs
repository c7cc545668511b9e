//! The contract beneath the architecture modules: the weight layout, the gathered list of live
//! groups, and the traits an architecture implements. The architectures import from here and
//! nothing else of the crate's kernels; the table and the public API ([`super`]) sit above.

use core::ops::Range;

/// Rows of a weight tile.
pub const TILE_ROWS: usize = 16;
/// Inputs of a group (and of a weight tile).
pub const GROUP: usize = 4;
/// Bytes of a weight tile.
pub const TILE_BYTES: usize = TILE_ROWS * GROUP;
/// Bytes of a 4-bit weight tile.
pub const TILE4_BYTES: usize = TILE_BYTES / 2;
/// What a 4-bit weight `w` (−8…7) is stored as: `w + 8`, so nibbles are never negative.
pub const NIBBLE_OFFSET: i32 = 8;
/// Live groups one gathered list holds. A vector with more is gathered and walked in chunks of
/// this many live groups, so the list's stack does not grow with the layer. On a microcontroller
/// 128 (1.5 KB of stack on a Cortex-M4): every MNIST digit (at most 99 of its 196 groups are
/// live) and any 512-wide hidden layer fit in one; elsewhere 196, every group of a 784-input
/// vector.
pub const LIST_GROUPS: usize = if cfg!(target_os = "none") { 128 } else { 196 };

/// The most row blocks an architecture's [`Arch::kept_blocks`] walks at once.
pub(crate) const KEPT_BLOCKS: usize = 8;

/// A gathered list: a chunk of groups, plus two entries an architecture may append.
pub(crate) type GroupList<G> = heapless::Vec<G, { LIST_GROUPS + 2 }>;

/// Where `w[row][col]` of a matrix with `cols` inputs lies in the [tiled layout](super). (Exact
/// for any matrix that fits in memory; wraps, rather than panics, for indices that could not.)
pub const fn tiled_index(row: usize, col: usize, cols: usize) -> usize {
    (row / TILE_ROWS)
        .wrapping_mul(TILE_ROWS)
        .wrapping_mul(cols)
        .wrapping_add((col / GROUP).wrapping_mul(TILE_BYTES))
        .wrapping_add((row % TILE_ROWS) * GROUP + col % GROUP)
}

/// Where the 4-bit `w[row][col]` of a matrix with `cols` inputs lies in the
/// [4-bit layout](super#4-bit-weights): its byte, and the shift (0 or 4) of its nibble. (Total,
/// as [`tiled_index`].)
pub const fn nibble_index(row: usize, col: usize, cols: usize) -> (usize, u32) {
    let in_block = row % TILE_ROWS;
    let byte = (row / TILE_ROWS)
        .wrapping_mul(TILE_ROWS / 2)
        .wrapping_mul(cols)
        .wrapping_add((col / GROUP).wrapping_mul(TILE4_BYTES))
        .wrapping_add((in_block % (TILE_ROWS / 2)) * GROUP + col % GROUP);
    (byte, if in_block < TILE_ROWS / 2 { 0 } else { 4 })
}

/// The live groups of one chunk of an input vector (or of several, for a batch), in the form
/// architecture entries `G` take, plus up to two entries an architecture appends (padding, a
/// sentinel).
///
/// Filled only by [`Groups::gather`], [`Groups::gather4`], [`Groups::gather_kept`] and an
/// architecture's own gather through the unsafe [`Groups::fill_with`] (whose contract is the
/// same), so every entry's offset is that of a group below `cols`.
pub(crate) struct Groups<G> {
    list: GroupList<G>,
    cols: usize,
}

/// Groups of a vector of `len` inputs (the last one zero-padded).
pub(crate) const fn groups_of(len: usize) -> usize {
    len.div_ceil(GROUP)
}

impl<G> Groups<G> {
    /// An empty list, to fill in place with [`Self::gather`] or [`Self::gather4`] (the list is
    /// 1.5 KB on a Cortex-M4: built where it stays, it is never copied).
    pub(crate) const fn new() -> Self {
        Self {
            list: heapless::Vec::new(),
            cols: 0,
        }
    }

    /// Fills the list with the entries `entry(g, b, offset)` gives for groups `g` (inputs `b`,
    /// weights `offset` = 64·g bytes into each row block) of `x` from group `from` on, until it
    /// holds [`LIST_GROUPS`] (the last group zero-padded when `x.len()` is not a multiple of 4:
    /// the matrix has `cols` = `x.len()` rounded up to 4). Returns the first group not looked
    /// at: [`groups_of`]`(x.len())` once every group was.
    #[inline(always)]
    fn fill(
        &mut self,
        x: &[u8],
        from: usize,
        mut entry: impl FnMut(usize, [u8; GROUP], u32) -> Option<G>,
        close: impl FnOnce(&mut GroupList<G>),
    ) -> usize {
        self.list.clear();
        let (whole, last) = split_groups(x);
        // A plain slice loop: the iterator adapters' state would stay in memory.
        let mut g = from.min(whole.len());
        for &b in whole.get(g..).unwrap_or(&[]) {
            if self.list.len() == LIST_GROUPS {
                break;
            }
            if let Some(e) = entry(g, b, (g * TILE_BYTES) as u32) {
                // Cannot fail: fewer than LIST_GROUPS entries so far, and the capacity is larger.
                let _ = self.list.push(e);
            }
            g += 1;
        }
        if let Some(b) = last
            && g == whole.len()
            && from <= g
            && self.list.len() < LIST_GROUPS
        {
            if let Some(e) = entry(g, b, (g * TILE_BYTES) as u32) {
                let _ = self.list.push(e);
            }
            g += 1;
        }
        close(&mut self.list);
        self.cols = x.len().div_ceil(GROUP) * GROUP;
        g.max(from.min(groups_of(x.len())))
    }

    /// A vector of `len` inputs chunk by chunk: `gather(self, from)` fills the list from group
    /// `from` on and returns where it stopped ([`Self::gather`], [`Self::gather4`]), and `walk`
    /// follows each fill, until every group was looked at.
    #[inline(always)]
    pub(crate) fn walk_chunks(
        &mut self,
        len: usize,
        mut gather: impl FnMut(&mut Self, usize) -> usize,
        mut walk: impl FnMut(&Self),
    ) {
        let mut from = 0;
        while from < groups_of(len) {
            from = gather(self, from);
            walk(self);
        }
    }

    /// The entries, in group order (then the appended ones).
    pub(crate) fn entries(&self) -> &[G] {
        &self.list
    }

    /// Inputs of the matrix the vector(s) meet: the vector's length rounded up to whole groups.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }
}

/// A group's 4 inputs widened to 4 × i16 in one 64-bit lane (for `vpmaddwd` and NEON's `smlal`).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn halfwords(x: [u8; 4]) -> u64 {
    let [a, b, c, d] = x.map(u64::from);
    a | b << 16 | c << 32 | d << 48
}

/// The 4 inputs of group `g` of `x` split by [`split_groups`] (zero-padded where partial, zero
/// past the end).
#[inline(always)]
pub(crate) fn group_at(
    (whole, last): (&[[u8; GROUP]], Option<[u8; GROUP]>),
    g: usize,
) -> [u8; GROUP] {
    match whole.get(g) {
        Some(&b) => b,
        None if g == whole.len() => last.unwrap_or([0; GROUP]),
        None => [0; GROUP],
    }
}

/// The sum of a group's 4 inputs (what 4-bit weights' offset multiplies).
#[inline(always)]
pub(crate) fn input_sum(b: [u8; GROUP]) -> u32 {
    // In one word (bytes 0 + 1 and 2 + 3 as halfwords, then the halves), not as a loop over the
    // bytes, which the compiler may leave rolled (20 instructions per group on a Cortex-M3).
    let v = u32::from_ne_bytes(b);
    let pairs = (v & 0x00ff_00ff) + ((v >> 8) & 0x00ff_00ff);
    (pairs + (pairs >> 16)) & 0xffff
}

/// For a [`Arch::kept_rows`] step that reads the stored tiles by position: the bytes of a tile
/// (8-bit, or 4-bit with `NIBBLES`), if `w` holds `kept.len()` of them and `out` a row block.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) fn kept_tile_bytes<const NIBBLES: bool>(
    w: &[u8],
    kept: &[[u8; 2]],
    out: &[i32],
) -> Option<usize> {
    let tile = if NIBBLES { TILE4_BYTES } else { TILE_BYTES };
    (w.len() >= kept.len() * tile && out.len() >= TILE_ROWS).then_some(tile)
}

/// `x` as whole groups, and its last partial group zero-padded (if its length is not a multiple
/// of 4).
#[inline(always)]
pub(crate) fn split_groups(x: &[u8]) -> (&[[u8; GROUP]], Option<[u8; GROUP]>) {
    let (whole, tail) = x.as_chunks::<GROUP>();
    let last = (!tail.is_empty()).then(|| {
        let mut b = [0u8; GROUP];
        for (b, &t) in b.iter_mut().zip(tail) {
            *b = t;
        }
        b
    });
    (whole, last)
}

/// What an architecture supplies: the form of one live group, and the walk over a list of them.
pub(crate) trait Arch {
    /// One live group, with its offset, as the inner step reads it.
    type Group: Copy;

    /// Whether the output layer is walked a tile of rows at a time, each into an array of its
    /// own: the walk's row count is then a constant the compiler propagates into it (on a
    /// microcontroller, for walks in Rust: 3 % fewer instructions per inference on a Cortex-M3).
    /// An assembly walk gains nothing, and its output layer takes less flash in one pass.
    const TILE_PASSES: bool = cfg!(target_os = "none");

    /// Whether [`Self::rows`] walks quarter tiles (4 rows) and may stop at the last one holding a
    /// real row: the output layer's 8-bit walk is then only as long as its classes rounded up to
    /// 4 (a 10-class layer's 6 padding rows would be a quarter of its work).
    const QUARTER_ROWS: bool = false;

    /// The entry of a group at byte `offset` of each row block, with inputs `x` (not all zero).
    fn group(offset: u32, x: [u8; 4]) -> Self::Group;

    /// Appends what the walk needs after the live groups (at most two entries). None by default.
    #[inline(always)]
    fn close(_list: &mut GroupList<Self::Group>) {}

    /// [`Groups::gather`]: the live groups of `x` from group `from` on, until the list is full
    /// (then closed); returns the first group not looked at. By default in portable code.
    ///
    /// # Safety
    /// The running CPU has the instructions this architecture uses.
    #[inline(always)]
    unsafe fn gather(groups: &mut Groups<Self::Group>, x: &[u8], from: usize) -> usize
    where
        Self: Sized,
    {
        groups.gather_portable::<Self>(x, from)
    }

    /// `out[r] += Σ` over the groups' inputs and the weights of row `r`, for the `out.len() / 16`
    /// row blocks of `w` (wrapping i32).
    ///
    /// # Safety
    /// - the running CPU has the instructions this architecture uses (its kernel is available);
    /// - `out.len()` is a multiple of [`TILE_ROWS`] (of 4 with [`Self::QUARTER_ROWS`]: the rows
    ///   after it in its last row block are not walked), and `w` is its row blocks, `w.len() ==
    ///   ⌈out.len() / 16⌉ · 16 · groups.cols()`.
    ///
    /// (That every entry's offset lies inside a row block follows from how [`Groups`] is filled.)
    unsafe fn rows(w: &[i8], groups: &Groups<Self::Group>, out: &mut [i32]);

    /// [`Self::rows`] for [4-bit weights](super#4-bit-weights), without their offset: `out[r] +=
    /// Σ` over the groups' inputs times the stored nibbles (0…15) of row `r` (wrapping i32).
    ///
    /// # Safety
    /// As [`Self::rows`], with `2 · w.len() == out.len() · groups.cols()`.
    unsafe fn rows4(w: &[u8], groups: &Groups<Self::Group>, out: &mut [i32]);

    /// `out += W · x` for one row block of a [block-sparse](super::Sparsity) matrix: `w` its
    /// stored tiles in the order of `kept` (at most [`LIST_GROUPS`]: their groups), 8-bit, or
    /// 4-bit without their offset with `NIBBLES`; `out` its 16 rows. Returns, with `NIBBLES`, the
    /// sum of the kept groups' inputs whose offset the caller still takes off (0 where the step
    /// took it off itself), else 0.
    ///
    /// By default the kept groups that are live in `x` are gathered into `groups` (a branch per
    /// kept tile) and walked by [`Self::rows`] / [`Self::rows4`]; an architecture whose tile step
    /// is one instruction multiplies every kept tile instead, without a branch.
    ///
    /// # Safety
    /// The running CPU has the instructions this architecture uses; `out.len()` is 16, `w`
    /// holds `kept.len()` tiles, and every group of `kept` is one of `x`'s (below its length
    /// rounded up to 4, over 4: what a [`Sparsity`](super::Sparsity) checked against `x` holds).
    #[inline(always)]
    unsafe fn kept_rows<const NIBBLES: bool>(
        w: &[u8],
        kept: &[[u8; 2]],
        x: &[u8],
        groups: &mut Groups<Self::Group>,
        out: &mut [i32],
    ) -> u32
    where
        Self: Sized,
    {
        // SAFETY: the caller's guarantee.
        unsafe { gather_kept_then_rows::<Self, NIBBLES>(w, kept, x, groups, out) }
    }

    /// Whether block-sparse layers are walked [`KEPT_BLOCKS`] row blocks at a time, by
    /// [`Self::kept_blocks`]; by default one at a time, by [`Self::kept_rows`].
    const KEPT_BATCH: bool = false;

    /// [`Self::kept_rows`] for consecutive row blocks (at most [`KEPT_BLOCKS`]): `blocks[i]` is
    /// row block `i`'s kept groups (at most [`LIST_GROUPS`]) and stored tiles, `out` their 16
    /// rows each: `out = bias + W · x` (`out += W · x` without `bias`), the 4-bit weights'
    /// offset taken off (`NIBBLES`). By default one [`Self::kept_rows`] per row block
    /// ([`kept_blocks_by_rows`]).
    ///
    /// # Safety
    /// As [`Self::kept_rows`] for each row block; `out.len()` is 16 per row block, and so is
    /// `bias.len()`.
    #[inline(always)]
    unsafe fn kept_blocks<const NIBBLES: bool>(
        blocks: &[(&[[u8; 2]], &[u8])],
        x: &[u8],
        groups: &mut Groups<Self::Group>,
        bias: Option<&[[u8; 4]]>,
        out: &mut [i32],
    ) where
        Self: Sized,
    {
        // SAFETY: the caller's guarantee.
        unsafe { kept_blocks_by_rows::<Self, NIBBLES>(blocks, x, groups, bias, out) }
    }

    /// A block-sparse hidden layer, to its outputs: `out = requantize(bias + W · x)` (the 4-bit
    /// offset taken off with `NIBBLES`), `out` 16 rows per row block of `layer`. By default row
    /// block by row block ([`kept_layer_out_by_blocks`]): the biases, [`Self::kept_rows`], then
    /// [`Self::requantize`] on its 16 accumulators.
    ///
    /// # Safety
    /// The running CPU has the instructions this architecture uses; `layer` is checked against
    /// `x` ([`KeptLayer`]); `out.len()` is 16 per row block.
    #[inline(always)]
    unsafe fn kept_layer_out<const NIBBLES: bool>(
        layer: KeptLayer<'_>,
        x: &[u8],
        groups: &mut Groups<Self::Group>,
        out: &mut [u8],
    ) where
        Self: Sized,
    {
        // SAFETY: the caller's guarantee.
        unsafe { kept_layer_out_by_blocks::<Self, NIBBLES>(layer, x, groups, out) };
    }

    /// `out[j] = requantize(acc[j], multiplier[j], shift[j])`, the same integers on every
    /// architecture for multipliers > 0 and shifts in [`crate::quant::SHIFTS`] (what a validated
    /// model holds).
    ///
    /// # Safety
    /// The running CPU has the instructions this architecture uses.
    #[inline(always)]
    unsafe fn requantize(acc: &[i32], multiplier: &[[u8; 4]], shift: &[u8], out: &mut [u8]) {
        requantize_portable(acc, multiplier, shift, out);
    }
}

/// A block-sparse hidden layer, as [`Arch::kept_layer_out`] walks it: per row block its count of
/// kept tiles (`counts`, u16 little-endian), whose groups are the next ones of `kept` (strictly
/// increasing, each one of the input's), and whose tiles are the next ones of `tiles` (64 bytes
/// each, or 32 for 4-bit weights); `bias`, `multiplier` and `shift` hold 16 rows per row block.
/// What a [`super::Sparsity`] checked at construction, with the layer's stored weights and
/// requantization.
#[derive(Clone, Copy)]
pub(crate) struct KeptLayer<'a> {
    pub tiles: &'a [u8],
    pub counts: &'a [[u8; 2]],
    pub kept: &'a [[u8; 2]],
    pub bias: &'a [[u8; 4]],
    pub multiplier: &'a [[u8; 4]],
    pub shift: &'a [u8],
}

impl KeptLayer<'_> {
    /// Whether the layer's lengths are what a walk by pointers needs, into `out` rows: a tile
    /// of `tile` bytes per kept group, and 16 biases, multipliers, shifts and outputs per row
    /// block.
    #[cfg_attr(
        not(any(cortex_m_dsp, thumb1_only, target_arch = "x86_64")),
        allow(dead_code)
    )]
    #[inline(always)]
    pub(crate) fn fits(self, tile: usize, out: usize) -> bool {
        let rows = self.counts.len() * TILE_ROWS;
        let short = [
            self.bias.len(),
            self.multiplier.len(),
            self.shift.len(),
            out,
        ]
        .iter()
        .any(|&n| n < rows);
        !short && self.kept.len().checked_mul(tile) == Some(self.tiles.len())
    }
}

/// `out[j] = bias[j]` (little-endian i32s), as many as both hold.
#[inline(always)]
pub(crate) fn set_biases(out: &mut [i32], bias: &[[u8; 4]]) {
    for (o, b) in out.iter_mut().zip(bias) {
        *o = i32::from_le_bytes(*b);
    }
}

/// Takes the 4-bit weights' offset off a row block's sums: `sum` is the inputs' sum.
#[inline(always)]
pub(crate) fn take_offset(out: &mut [i32], sum: u32) {
    if sum == 0 {
        return;
    }
    let excess = (sum as i32).wrapping_mul(NIBBLE_OFFSET);
    for o in out {
        *o = o.wrapping_sub(excess);
    }
}

/// [`Arch::kept_blocks`]'s default: `out = bias` (with `bias`), then one [`Arch::kept_rows`] per
/// row block, its 4-bit offset taken off.
///
/// # Safety
/// As [`Arch::kept_blocks`].
#[inline(always)]
pub(crate) unsafe fn kept_blocks_by_rows<A: Arch, const NIBBLES: bool>(
    blocks: &[(&[[u8; 2]], &[u8])],
    x: &[u8],
    groups: &mut Groups<A::Group>,
    bias: Option<&[[u8; 4]]>,
    out: &mut [i32],
) {
    if let Some(bias) = bias {
        set_biases(out, bias);
    }
    for (&(kept, w), out) in blocks.iter().zip(out.chunks_exact_mut(TILE_ROWS)) {
        // SAFETY: the caller's guarantee.
        let sum = unsafe { A::kept_rows::<NIBBLES>(w, kept, x, groups, out) };
        if NIBBLES {
            take_offset(out, sum);
        }
    }
}

/// [`Arch::kept_layer_out`]'s default: per row block, [`kept_block_out`].
///
/// # Safety
/// As [`Arch::kept_layer_out`].
#[inline(always)]
pub(crate) unsafe fn kept_layer_out_by_blocks<A: Arch, const NIBBLES: bool>(
    layer: KeptLayer<'_>,
    x: &[u8],
    groups: &mut Groups<A::Group>,
    out: &mut [u8],
) {
    let tile = if NIBBLES { TILE4_BYTES } else { TILE_BYTES };
    let (mut kept, mut tiles) = (layer.kept, layer.tiles);
    let rows = out.as_chunks_mut::<TILE_ROWS>().0.iter_mut();
    let rows = rows
        .zip(layer.bias.as_chunks::<TILE_ROWS>().0)
        .zip(layer.multiplier.as_chunks::<TILE_ROWS>().0)
        .zip(layer.shift.as_chunks::<TILE_ROWS>().0);
    for (count, (((out, bias), multiplier), shift)) in layer.counts.iter().zip(rows) {
        let n = u16_of(count);
        let (block, rest) = kept.split_at_checked(n).unwrap_or((kept, &[]));
        kept = rest;
        let (w, rest) = tiles.split_at_checked(n * tile).unwrap_or((tiles, &[]));
        tiles = rest;
        let rows = (bias, multiplier, shift, out);
        // SAFETY: one row block's kept groups and tiles; the rest by the caller.
        unsafe { kept_block_out::<A, NIBBLES>(w, block, x, groups, rows) };
    }
}

/// One row block of a block-sparse hidden layer to its outputs: `out = requantize(bias + W ·
/// x)`, its biases, multipliers, shifts and outputs in `rows`: [`Arch::kept_rows`] on at most
/// [`LIST_GROUPS`] kept tiles at a time, the 4-bit offset taken off, then
/// [`Arch::requantize`].
///
/// # Safety
/// As [`Arch::kept_rows`], but for any number of kept tiles.
#[inline(always)]
pub(crate) unsafe fn kept_block_out<A: Arch, const NIBBLES: bool>(
    w: &[u8],
    kept: &[[u8; 2]],
    x: &[u8],
    groups: &mut Groups<A::Group>,
    (bias, multiplier, shift, out): BlockRows<'_>,
) {
    let tile = if NIBBLES { TILE4_BYTES } else { TILE_BYTES };
    let mut acc = [0i32; TILE_ROWS];
    set_biases(&mut acc, bias);
    for (kept, w) in kept.chunks(LIST_GROUPS).zip(w.chunks(LIST_GROUPS * tile)) {
        // SAFETY: at most LIST_GROUPS kept tiles, `w` theirs; the rest by the caller.
        let sum = unsafe { A::kept_rows::<NIBBLES>(w, kept, x, groups, &mut acc) };
        if NIBBLES {
            take_offset(&mut acc, sum);
        }
    }
    // SAFETY: the CPU by the caller.
    unsafe { A::requantize(&acc, multiplier, shift, out) };
}

/// One row block's 16 biases, multipliers, shifts and outputs.
pub(crate) type BlockRows<'a> = (
    &'a [[u8; 4]; TILE_ROWS],
    &'a [[u8; 4]; TILE_ROWS],
    &'a [u8; TILE_ROWS],
    &'a mut [u8; TILE_ROWS],
);

/// [`Arch::kept_rows`]'s default: the kept groups live in `x` gathered into `groups` by
/// [`Groups::gather_kept`], then walked by [`Arch::rows`] / [`Arch::rows4`].
///
/// # Safety
/// As [`Arch::kept_rows`].
#[inline(always)]
pub(crate) unsafe fn gather_kept_then_rows<A: Arch, const NIBBLES: bool>(
    w: &[u8],
    kept: &[[u8; 2]],
    x: &[u8],
    groups: &mut Groups<A::Group>,
    out: &mut [i32],
) -> u32 {
    let sum = groups.gather_kept::<A, NIBBLES>(x, kept);
    // SAFETY: the list's offsets are positions in `kept`, whose tiles `w` holds; the rest by the
    // caller.
    unsafe { walk_kept::<A, NIBBLES>(w, groups, out) };
    sum
}

/// The walk of a row block's gathered kept tiles: [`Arch::rows`], or [`Arch::rows4`] with
/// `NIBBLES`.
///
/// # Safety
/// As [`Arch::rows`] / [`Arch::rows4`], `groups` gathered from the tiles `w` holds.
#[inline(always)]
pub(crate) unsafe fn walk_kept<A: Arch, const NIBBLES: bool>(
    w: &[u8],
    groups: &Groups<A::Group>,
    out: &mut [i32],
) {
    // SAFETY: the caller's guarantee.
    unsafe {
        if NIBBLES {
            A::rows4(w, groups, out);
        } else {
            A::rows(bytemuck::must_cast_slice(w), groups, out);
        }
    }
}

// Only x86-64 has batch forms so far.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
/// An architecture whose walk serves four input vectors at once: each weight load is used four
/// times, and a group is skipped only where it is zero in all four.
pub(crate) trait BatchArch: Arch {
    /// One group live in at least one of four vectors.
    type Group4: Copy;

    /// The entry of a group at byte `offset`, with each vector's inputs.
    fn group4(offset: u32, xs: [[u8; 4]; 4]) -> Self::Group4;

    /// [`Arch::rows`] for four vectors: `outs[i] += W · xs[i]`.
    ///
    /// # Safety
    /// As [`Arch::rows`], for each of `outs`.
    unsafe fn rows_x4(w: &[i8], groups: &Groups<Self::Group4>, outs: [&mut [i32]; 4]);

    /// [`Arch::rows4`] for four vectors.
    ///
    /// # Safety
    /// As [`Arch::rows4`], for each of `outs`.
    unsafe fn rows4_x4(w: &[u8], groups: &Groups<Self::Group4>, outs: [&mut [i32]; 4]);
}

impl<G> Groups<G> {
    /// Replaces the list with the live groups of `x` for architecture `A`, from group `from` on
    /// until it is full; returns the first group not looked at ([`groups_of`]`(x.len())` when
    /// the list has every live group from `from` on). (Called once per layer and chunk: one
    /// copy on a microcontroller, where flash is scarce.)
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses.
    #[cfg_attr(target_os = "none", inline(never))]
    #[cfg_attr(not(target_os = "none"), inline(always))]
    pub(crate) unsafe fn gather<A: Arch<Group = G>>(&mut self, x: &[u8], from: usize) -> usize {
        // SAFETY: the caller's guarantee.
        unsafe { A::gather(self, x, from) }
    }

    /// [`Self::gather`] in portable code: [`Arch::gather`]'s default.
    #[inline(always)]
    pub(crate) fn gather_portable<A: Arch<Group = G>>(&mut self, x: &[u8], from: usize) -> usize {
        self.fill(
            x,
            from,
            |_, b, offset| (u32::from_ne_bytes(b) != 0).then(|| A::group(offset, b)),
            A::close,
        )
    }

    /// Replaces the list with the groups live in any of the four `xs` (all of one length) for
    /// architecture `A`, from group `from` on, as [`Self::gather`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn gather4<A: BatchArch<Group4 = G>>(
        &mut self,
        xs: [&[u8]; 4],
        from: usize,
    ) -> usize {
        let split = xs.map(split_groups);
        self.fill(
            xs[0],
            from,
            |g, _, offset| {
                let bytes = split.map(|(whole, last)| {
                    whole
                        .get(g)
                        .copied()
                        .or(if g == whole.len() { last } else { None })
                        .unwrap_or([0; 4])
                });
                bytes
                    .iter()
                    .any(|b| u32::from_ne_bytes(*b) != 0)
                    .then(|| A::group4(offset, bytes))
            },
            |_| {},
        )
    }
}

impl<G> Groups<G> {
    /// Replaces the list with the groups of `kept` (at most [`LIST_GROUPS`], u16 little-endian,
    /// below `x.len()` rounded up to 4 over 4) that are live in `x`, each with the offset of its
    /// position in `kept`: the gathered list of a row block's stored tiles. Returns the sum of
    /// their inputs with `SUM` (for the 4-bit weights' offset), else 0.
    #[inline(always)]
    pub(crate) fn gather_kept<A: Arch<Group = G>, const SUM: bool>(
        &mut self,
        x: &[u8],
        kept: &[[u8; 2]],
    ) -> u32 {
        self.list.clear();
        let mut sum = 0u32;
        let mut offset = 0u32;
        let split = split_groups(x);
        for k in kept {
            let b = group_at(split, u16_of(k));
            if u32::from_ne_bytes(b) != 0 {
                // Cannot fail: at most LIST_GROUPS groups, and the capacity is larger.
                let _ = self.list.push(A::group(offset, b));
                if SUM {
                    sum += input_sum(b);
                }
            }
            offset += TILE_BYTES as u32;
        }
        A::close(&mut self.list);
        self.cols = kept.len() * GROUP;
        sum
    }
}

impl<G> Groups<G> {
    /// [`Arch::gather`] by an architecture's own loop over whole groups: `live(list, words,
    /// offset)` writes at `list` the entries of the live groups in `words` (not empty; the first
    /// one's tile at byte `offset` of a row block), at most [`LIST_GROUPS`] and then up to two of
    /// its own, and returns where it stopped writing and the first group it did not look at. The
    /// portable gather serves where `x` is not whole groups, or not word-aligned and `aligned`
    /// asks for it.
    ///
    /// # Safety
    /// `live` keeps that contract.
    #[cfg_attr(not(cortex_m_dsp), allow(dead_code))]
    #[inline(always)]
    pub(crate) unsafe fn gather_whole<A: Arch<Group = G>>(
        &mut self,
        x: &[u8],
        from: usize,
        aligned: bool,
        live: impl FnOnce(*mut G, Range<*const [u8; GROUP]>, u32) -> (*mut G, *const [u8; GROUP]),
    ) -> usize {
        let (words, tail) = x.as_chunks::<GROUP>();
        let rest = words.get(from..).filter(|rest| {
            !rest.is_empty() && tail.is_empty() && (!aligned || x.as_ptr().align_offset(4) == 0)
        });
        let Some(rest) = rest else {
            return self.gather_portable::<A>(x, from);
        };
        let mut next = from;
        // SAFETY: `live` writes at most LIST_GROUPS + 2 entries (the caller's guarantee), each
        // offset that of a group of `x` (whole groups only), below its length, and stops inside
        // `rest`.
        unsafe {
            self.fill_with(x.len(), |list| {
                let range = rest.as_ptr_range();
                let (at, read) = live(list, range.clone(), (from * TILE_BYTES) as u32);
                next = from + read.offset_from_unsigned(range.start);
                at.offset_from_unsigned(list)
            })
        };
        next
    }

    /// Replaces the list with the entries `write` puts at the pointer it is given (room for
    /// [`LIST_GROUPS`] + 2), for a matrix of `cols` inputs: an architecture's own gather.
    ///
    /// # Safety
    /// `write` initializes the first `n` entries at the pointer, `n` ≤ [`LIST_GROUPS`] + 2, and
    /// returns `n`; each entry's offset is that of a group below `cols`.
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "arm")),
        allow(dead_code)
    )]
    #[inline(always)]
    pub(crate) unsafe fn fill_with(&mut self, cols: usize, write: impl FnOnce(*mut G) -> usize) {
        self.list.clear();
        let n = write(self.list.as_mut_ptr()).min(self.list.capacity());
        // SAFETY: `write` initialized the first `n` entries (the caller's guarantee), within the
        // capacity.
        unsafe { self.list.set_len(n) };
        self.cols = cols;
    }

    /// The list's room, emptied: at least [`LIST_GROUPS`] + 2 entries, for an architecture that
    /// writes and walks a list itself, without its length (nothing else reads what it writes).
    #[cfg_attr(not(any(cortex_m_dsp, thumb1_only)), allow(dead_code))]
    pub(crate) fn room(&mut self) -> *mut G {
        self.list.clear();
        self.list.as_mut_ptr()
    }

    /// Ends the list as `A` ends the ones it gathers ([`Arch::close`]): after
    /// [`Self::fill_with`], for an architecture whose own gather leaves that to it.
    #[cfg_attr(any(not(target_arch = "arm"), thumb1_only), allow(dead_code))]
    pub(crate) fn close<A: Arch<Group = G>>(&mut self) {
        A::close(&mut self.list);
    }
}

/// A little-endian u16 (a sparse matrix's counts and groups) as an index.
#[inline(always)]
pub(crate) fn u16_of(b: &[u8; 2]) -> usize {
    usize::from(u16::from_le_bytes(*b))
}

/// The requantization loop every architecture compiles (see [`crate::quant::requantize`]).
#[inline(always)]
pub(crate) fn requantize_portable(
    acc: &[i32],
    multiplier: &[[u8; 4]],
    shift: &[u8],
    out: &mut [u8],
) {
    for (o, ((&a, m), &s)) in out.iter_mut().zip(acc.iter().zip(multiplier).zip(shift)) {
        *o = crate::quant::requantize(a, i32::from_le_bytes(*m), s);
    }
}
