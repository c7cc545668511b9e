//! The walk for cores without SIMD (Cortex-M0/M0+, M3): plain 32-bit integer arithmetic, so it
//! compiles to Thumb-1 as well as anything else, and runs (and is tested) everywhere.
//!
//! 4-bit weights: two products per 32-bit multiply. A live group's inputs are paired once, when
//! gathered, as `x20 = x2 | x0 << 16` and `x31 = x3 | x1 << 16`. A weight word of a 4-bit tile
//! holds rows `i` and `i + 8`; masked with `0x000F000F` (after a shift of 0 or 4) it is
//! `p = n0 | n2 << 16`, and (after 8 or 12) `q = n1 | n3 << 16`. Then
//! `p · x20 = n0·x2 + (n0·x0 + n2·x2) · 2^16 (mod 2^32)`, and with `q · x31` the upper halfword of
//! the sum is the row's four products exactly: the lower terms stay below 2 · 15 · 255 < 2^16 and
//! never carry, the upper ones below 4 · 15 · 255 < 2^16. Four entries' sums still fit (below
//! 2^16 each part), so the shift that extracts the row is paid once per four groups.
//!
//! On Armv6-M (Cortex-M0/M0+: Thumb-1, eight low registers) the walk is `asm!`, two rows per pass
//! over the entries and a row block's eight passes in one call: per entry one `ldm` (the pair products' inputs and the offset), one `ldr` of
//! the weight word, and per nibble pair `lsrs`, `ands`, `muls` and `adds` into one of two sums
//! (r6, r7: saved and restored around the loop, being LLVM's), whose upper halfwords are
//! extracted into high-register accumulators once per four entries: 21 instructions per entry
//! and 8 multiply-accumulates (the last 0–3 entries 25). Its kept tiles are gathered in assembly
//! too (7.5 instructions per kept tile, 7 more per live one), a 4-bit row block's entries holding
//! their tiles' addresses, so that its walk (the eight passes written out) loads each word with
//! an immediate offset: 17 instructions per entry. A sparse 4-bit layer goes row block by row
//! block in one step ([`Arch::kept_layer_out`]): biases copied by words (the model format aligns
//! them), the gather, the walk, and the requantization in assembly too, by 16-bit halves
//! ([`requantize_rows`]: the Cortex-M0 has no long multiply), 31 instructions a positive row. The
//! same arithmetic in Rust is the walk off Arm (and where LLVM, out of low registers on Thumb-1,
//! would spill).
//!
//! On Armv7-M (Cortex-M3, and M4/M7 where the `swar` kernel is chosen) the walk is Thumb-2
//! `asm!`, which has the registers to keep four entries' products in two 32-bit sums (see above:
//! they cannot carry) and shifted operands: per entry one `ldm`, an `add` of the offset, one
//! `ldr`, and per nibble pair an `and` (with the word shifted in the same instruction) and an
//! `mla` — 11 instructions per entry and 2 rows, plus the extraction of each row once per four
//! entries. Its list is padded with zero entries to a multiple of four and ends with a sentinel
//! (zero inputs at `offset = u32::MAX`, impossible for a tile).
//!
//! int8 weights: on Armv7-M a Thumb-2 `asm!` walk of a quarter tile (4 rows) over the entries,
//! its 4 accumulators in registers: per entry one `ldm`, a test for the end (a padding or the
//! sentinel entry: all four inputs zero, which a live group never is), the offset's `add`, four
//! instructions to take the inputs out of their pairs, and per weight an `ldrsb` and an `mla`:
//! 40 instructions per entry and 16 multiply-accumulates. Elsewhere the reference's walk.

use super::arch::{Arch, Groups, TILE_ROWS};
#[cfg(target_arch = "arm")]
use super::arch::{GROUP, LIST_GROUPS, gather_kept_then_rows, walk_kept};
#[cfg(thumb1_only)]
use super::arch::{
    KeptLayer, NIBBLE_OFFSET, TILE4_BYTES, kept_block_out, kept_layer_out_by_blocks, u16_of,
};
use super::scalar;

/// Pair multiplies on general-purpose registers.
pub(crate) struct Swar;

/// A live group: its inputs paired for the multiply and its offset (8-bit tiles), in the order
/// one Thumb-1 `ldm` loads them.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Paired {
    x20: u32,
    x31: u32,
    offset: u32,
}

/// Pads the list of the Thumb-2 walks to a multiple of four entries: zero inputs, so it adds
/// nothing.
#[cfg(all(target_arch = "arm", not(thumb1_only)))]
const PADDING: Paired = Paired {
    x20: 0,
    x31: 0,
    offset: 0,
};

/// Ends the list of the Thumb-2 walks: no tile is at offset `u32::MAX`, and its inputs are zero
/// (so the int8 walk stops at it as at a padding entry).
#[cfg(all(target_arch = "arm", not(thumb1_only)))]
const SENTINEL: Paired = Paired {
    x20: 0,
    x31: 0,
    offset: u32::MAX,
};

/// The live entries of a list: without the Thumb-2 walk's sentinel and the zero entries padding
/// up to it (at most three), found from the end.
fn live(entries: &[Paired]) -> &[Paired] {
    let mut live = entries;
    if let Some((last, rest)) = live.split_last()
        && last.offset == u32::MAX
    {
        live = rest;
        while let Some((last, rest)) = live.split_last()
            && last.x20 == 0
            && last.x31 == 0
            && last.offset == 0
        {
            live = rest;
        }
    }
    live
}

impl Paired {
    /// The group as the reference takes it.
    fn plain(self) -> scalar::Group {
        let x = [self.x20 >> 16, self.x31 >> 16, self.x20, self.x31].map(|v| v as u8);
        scalar::Group::new(self.offset, x)
    }
}

/// `0x000F000F`: a row's nibbles 0 and 2 (or 1 and 3) of a weight word, as halfwords.
const PAIR_MASK: u32 = 0x000f_000f;

impl Arch for Swar {
    type Group = Paired;

    fn group(offset: u32, x: [u8; 4]) -> Paired {
        let [x0, x1, x2, x3] = x.map(u32::from);
        Paired {
            x20: x2 | x0 << 16,
            x31: x3 | x1 << 16,
            offset,
        }
    }

    /// Pads the list to a multiple of four entries and ends it with [`SENTINEL`] (room: at most
    /// [`super::arch::LIST_GROUPS`] entries, a multiple of four, and two more).
    #[cfg(all(target_arch = "arm", not(thumb1_only)))]
    fn close(list: &mut super::arch::GroupList<Paired>) {
        while !list.len().is_multiple_of(4) {
            let _ = list.push(PADDING);
        }
        let _ = list.push(SENTINEL);
    }

    /// The kept tiles live in `x` gathered in assembly ([`gather_kept`]), then walked as a dense
    /// list. Thumb-1 loads the kept list by halfwords and `x` by words, so there it needs them
    /// aligned (as a model file's `kept` is, and the forward pass's buffers), and the portable
    /// gather serves otherwise.
    #[cfg(target_arch = "arm")]
    unsafe fn kept_rows<const NIBBLES: bool>(
        w: &[u8],
        kept: &[[u8; 2]],
        x: &[u8],
        groups: &mut Groups<Paired>,
        out: &mut [i32],
    ) -> u32 {
        let aligned = cfg!(not(thumb1_only))
            || (kept.as_ptr().align_offset(2) == 0 && x.as_ptr().align_offset(4) == 0);
        if !aligned || !x.len().is_multiple_of(GROUP) || kept.len() > LIST_GROUPS {
            // SAFETY: the caller's guarantee.
            return unsafe { gather_kept_then_rows::<Self, NIBBLES>(w, kept, x, groups, out) };
        }
        let mut sum = 0u32;
        // On Thumb-1 a 4-bit row block's entries hold their tiles' addresses, and its walk reads
        // them without a base and takes the offset off itself (`block_rows4_at`).
        #[cfg(thumb1_only)]
        if let (true, Ok(out)) = (
            NIBBLES && w.as_ptr().align_offset(4) == 0,
            <&mut [i32; TILE_ROWS]>::try_from(&mut *out),
        ) {
            // SAFETY: as below, each entry's tile one of `w`'s 32-byte tiles (a tile per kept
            // group, the caller's guarantee), word-aligned (checked).
            unsafe { kept_block4_at(w.as_ptr(), kept, x, groups, out) };
            return 0;
        }
        // SAFETY: every group of `kept` is below `x.len() / 4` (the `Arch::kept_rows` contract,
        // `x.len()` a multiple of 4), so each word the gather loads is inside `x` (and aligned
        // where Thumb-1 needs it, checked above); it writes at most `kept.len()` ≤ LIST_GROUPS
        // entries.
        unsafe {
            groups.fill_with(kept.len() * GROUP, |list| {
                gather_kept::<NIBBLES>(list, kept, x, &mut sum)
            })
        };
        // Thumb-2's padding and sentinel, as after any gather (room: LIST_GROUPS is a multiple
        // of 4, and the list holds two more).
        groups.close::<Self>();
        // SAFETY: the caller's guarantee; `groups` gathered from `w`'s tiles.
        unsafe { walk_kept::<Self, NIBBLES>(w, groups, out) };
        sum
    }

    /// The live groups of a word-aligned `x` gathered in Thumb-1 assembly ([`gather_live`]); the
    /// portable gather for any other.
    #[cfg(thumb1_only)]
    unsafe fn gather(groups: &mut Groups<Paired>, x: &[u8], from: usize) -> usize {
        // SAFETY: `gather_live` writes at most LIST_GROUPS entries of the (word-aligned) groups
        // it is given.
        unsafe {
            groups.gather_whole::<Self>(x, from, true, |list, words, offset| {
                gather_live(list, words, offset)
            })
        }
    }

    /// [`crate::quant::requantize_halves`]: the same integers with 32-bit multiplies, where the
    /// core has no long multiply (everywhere but Armv7-M, whose `smull` the i64 product is); an
    /// accumulator ≤ 0 is the ReLU's 0 without a multiply or a load of its multiplier. On Thumb-1,
    /// [`requantize_rows`] where the multipliers are word-aligned (a model file's are); four byte
    /// loads each otherwise.
    #[cfg(not(all(target_arch = "arm", not(thumb1_only))))]
    unsafe fn requantize(acc: &[i32], multiplier: &[[u8; 4]], shift: &[u8], out: &mut [u8]) {
        // In Thumb-1 assembly where the multipliers are word-aligned (as the model format
        // aligns them).
        #[cfg(thumb1_only)]
        if multiplier.as_ptr().align_offset(4) == 0 {
            let n = acc
                .len()
                .min(multiplier.len())
                .min(shift.len())
                .min(out.len());
            // SAFETY: `n` rows of each, the multipliers word-aligned (checked).
            return unsafe {
                requantize_rows(
                    acc.as_ptr(),
                    multiplier.as_ptr().cast(),
                    shift.as_ptr(),
                    out.get_mut(..n).unwrap_or(&mut []),
                )
            };
        }
        for (o, ((&a, m), &s)) in out.iter_mut().zip(acc.iter().zip(multiplier).zip(shift)) {
            *o = if a <= 0 {
                0
            } else {
                crate::quant::requantize_halves(a, i32::from_le_bytes(*m), s)
            };
        }
    }

    /// On Thumb-1, a 4-bit layer whose sections are aligned (as the model format aligns them)
    /// goes row block by row block with no slices: the biases copied by words, the kept tiles
    /// live in `x` gathered with their addresses ([`gather_kept_at`]), walked
    /// ([`block_rows4_at`]) and requantized ([`requantize_rows`]). Anything else, and a row block
    /// of more than [`LIST_GROUPS`] kept tiles, takes the default.
    #[cfg(thumb1_only)]
    unsafe fn kept_layer_out<const NIBBLES: bool>(
        layer: KeptLayer<'_>,
        x: &[u8],
        groups: &mut Groups<Paired>,
        out: &mut [u8],
    ) {
        let aligned = layer.tiles.as_ptr().align_offset(4) == 0
            && layer.kept.as_ptr().align_offset(2) == 0
            && x.as_ptr().align_offset(4) == 0
            && layer.bias.as_ptr().align_offset(4) == 0
            && layer.multiplier.as_ptr().align_offset(4) == 0;
        if !NIBBLES
            || !aligned
            || !layer.fits(TILE4_BYTES, out.len())
            || !x.len().is_multiple_of(GROUP)
        {
            // SAFETY: the caller's guarantee.
            return unsafe { kept_layer_out_by_blocks::<Self, NIBBLES>(layer, x, groups, out) };
        }
        let (mut kept, mut w) = (layer.kept.as_ptr(), layer.tiles.as_ptr());
        let bias = layer.bias.as_ptr().cast::<[i32; TILE_ROWS]>();
        let mul = layer.multiplier.as_ptr().cast::<i32>();
        for (b, count) in layer.counts.iter().enumerate() {
            let n = u16_of(count);
            // SAFETY: `layer` is checked against `x` (the caller's guarantee): the counts add up
            // to `kept.len()`, so the row block's `n` groups are the next ones of `kept`
            // (halfword-aligned, checked), each one of `x`'s (word-aligned, whole groups:
            // checked), and its `n` tiles the next ones of `tiles` (a tile per kept group,
            // checked), word-aligned (checked, and tiles are whole words); its 16 rows are among
            // those of the biases and multipliers (word-aligned, checked), shifts and outputs
            // (checked).
            unsafe {
                let block = core::slice::from_raw_parts(kept, n);
                let rows = b * TILE_ROWS;
                if n <= LIST_GROUPS {
                    let mut acc = bias.add(b).read();
                    kept_block4_at(w, block, x, groups, &mut acc);
                    let out =
                        core::slice::from_raw_parts_mut(out.as_mut_ptr().add(rows), TILE_ROWS);
                    requantize_rows(
                        acc.as_ptr(),
                        mul.add(rows),
                        layer.shift.as_ptr().add(rows),
                        out,
                    );
                } else {
                    let tiles = core::slice::from_raw_parts(w, n * TILE4_BYTES);
                    let rows = (
                        &*bias.add(b).cast(),
                        &*layer.multiplier.as_ptr().add(rows).cast(),
                        &*layer.shift.as_ptr().add(rows).cast(),
                        &mut *out.as_mut_ptr().add(rows).cast(),
                    );
                    kept_block_out::<Self, NIBBLES>(tiles, block, x, groups, rows);
                }
                kept = kept.add(n);
                w = w.add(n * TILE4_BYTES);
            }
        }
    }

    unsafe fn rows(w: &[i8], groups: &Groups<Paired>, out: &mut [i32]) {
        #[cfg(all(target_arch = "arm", not(thumb1_only)))]
        if groups
            .entries()
            .last()
            .is_some_and(|e| e.offset == u32::MAX)
        {
            let block = TILE_ROWS * groups.cols();
            if block == 0 {
                return;
            }
            for (w, out) in w.chunks_exact(block).zip(out.chunks_exact_mut(TILE_ROWS)) {
                for (q, acc) in out.chunks_exact_mut(4).enumerate() {
                    // SAFETY: the list is closed (its last entry the sentinel); every entry's
                    // tile is inside the row block `w` (the `Arch::rows` contract), and the
                    // quarter's 16 bytes inside the tile.
                    unsafe { quarter8(w.as_ptr().wrapping_add(16 * q), groups.entries(), acc) };
                }
            }
            return;
        }
        let entries = live(groups.entries()).iter().map(|e| e.plain());
        scalar::rows_of(w, groups.cols(), entries, out);
    }

    unsafe fn rows4(w: &[u8], groups: &Groups<Paired>, out: &mut [i32]) {
        // Whole words, one load each (the model format aligns its sections); `matvec4` with a
        // misaligned slice takes the reference's walk.
        let Ok(words) = bytemuck::try_cast_slice::<u8, u32>(w) else {
            let entries = live(groups.entries()).iter().map(|e| e.plain());
            return scalar::rows4_of(w, groups.cols(), entries, out);
        };
        let block = TILE_ROWS / 8 * groups.cols();
        if block == 0 {
            return;
        }
        let entries = groups.entries();
        for (w, out) in words
            .chunks_exact(block)
            .zip(out.as_chunks_mut::<TILE_ROWS>().0)
        {
            block_rows4(w, entries, out);
        }
    }
}

/// `out += W · x` for one row block of 4-bit tiles (`w`, as words) over the entries, rows `i`
/// (low nibbles) and `i + 8` (high nibbles) at a time ([`walk`]).
#[cfg(not(thumb1_only))]
#[inline(always)]
fn block_rows4(w: &[u32], entries: &[Paired], out: &mut [i32; TILE_ROWS]) {
    let (low, high) = out.split_at_mut(TILE_ROWS / 2);
    for (i, (lo, hi)) in low.iter_mut().zip(high).enumerate() {
        let [sum_lo, sum_hi] = walk(w, i, entries);
        *lo = lo.wrapping_add(sum_lo as i32);
        *hi = hi.wrapping_add(sum_hi as i32);
    }
}

/// Rows `i` (low nibbles) and `i + 8` (high nibbles) of one row block of 4-bit tiles (`w`, as
/// words), summed over the entries: the walk off Arm.
#[cfg(not(target_arch = "arm"))]
#[inline(always)]
fn walk(w: &[u32], i: usize, entries: &[Paired]) -> [u32; 2] {
    portable_walk(w, i, entries)
}

/// [`walk`] in plain Rust (entries without padding or sentinel).
#[cfg(not(thumb1_only))]
#[inline(always)]
fn portable_walk(w: &[u32], i: usize, entries: &[Paired]) -> [u32; 2] {
    let mut sums = [0u32; 2];
    for four in entries.chunks(4) {
        // Below 2^16 in each halfword for up to four entries (see the module docs).
        let mut parts = [0u32; 2];
        for e in four {
            let Some(&word) = w.get((e.offset / 8) as usize + i) else {
                continue;
            };
            let pair = |shift: u32| {
                let p = (word >> shift) & PAIR_MASK;
                let q = (word >> (shift + 8)) & PAIR_MASK;
                p.wrapping_mul(e.x20).wrapping_add(q.wrapping_mul(e.x31))
            };
            parts[0] = parts[0].wrapping_add(pair(0));
            parts[1] = parts[1].wrapping_add(pair(4));
        }
        for (sum, part) in sums.iter_mut().zip(parts) {
            *sum = sum.wrapping_add(part >> 16);
        }
    }
    sums
}

/// [`walk`] in Thumb-2 assembly (see the module docs): the list is padded to a multiple of four
/// entries and ends with [`SENTINEL`] ([`Swar::close`]).
#[cfg(all(target_arch = "arm", not(thumb1_only)))]
#[inline(never)]
fn walk(w: &[u32], i: usize, entries: &[Paired]) -> [u32; 2] {
    let (mut lo, mut hi) = (0u32, 0u32);
    if entries.last().is_none_or(|e| e.offset != u32::MAX) {
        // Not closed by `Swar::close`: the portable sums.
        return portable_walk(w, i, live(entries));
    }
    // Every entry's word is inside `w` (the `Arch::rows4` contract; padding entries have offset
    // 0), and `i < 8`.
    let base = w.as_ptr().wrapping_add(i);
    // SAFETY: reads the entries (three words each, `repr(C)`) up to the sentinel, which ends the
    // list after a multiple of four, and one word of `w` at `base + offset / 8` words for each
    // (inside `w`, above). Only the named registers change; memory is only read.
    unsafe {
        core::arch::asm!(
            "ldm {list}!, {{r0, r1, r2}}",
            "cmn r2, #1",
            "beq 3f",
            "2:",
            "mov.w {plo}, #0",
            "mov.w {phi}, #0",
            ".rept 4",
            "add.w r2, {base}, r2, lsr #1",
            "ldr r2, [r2]",
            "and.w r3, {mask}, r2",
            "mla {plo}, r3, r0, {plo}",
            "and.w r3, {mask}, r2, lsr #8",
            "mla {plo}, r3, r1, {plo}",
            "and.w r3, {mask}, r2, lsr #4",
            "mla {phi}, r3, r0, {phi}",
            "and.w r3, {mask}, r2, lsr #12",
            "mla {phi}, r3, r1, {phi}",
            "ldm {list}!, {{r0, r1, r2}}",
            ".endr",
            "add.w {lo}, {lo}, {plo}, lsr #16",
            "add.w {hi}, {hi}, {phi}, lsr #16",
            "cmn r2, #1",
            "bne 2b",
            "3:",
            list = inout(reg) entries.as_ptr() => _,
            base = in(reg) base,
            mask = in(reg) PAIR_MASK,
            lo = inout(reg) lo,
            hi = inout(reg) hi,
            plo = out(reg) _,
            phi = out(reg) _,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            options(nostack, readonly),
        );
    }
    [lo, hi]
}

/// [`Swar::group`] in assembly, for [`gather_kept_asm`]: the word `r3` paired into `r0` (`x20`)
/// and `r1` (`x31`).
#[cfg(all(target_arch = "arm", not(thumb1_only)))]
macro_rules! pair {
    () => {
        "and r0, {mask}, r3, ror #16\nand r1, {mask}, r3, ror #24"
    };
}

/// Writes at `list` the entries of `kept`'s groups that are live in `x`, the offset of each its
/// tile's (64 bytes per position in `kept`), and returns how many; with `SUM`, adds their inputs
/// to `sum` (as halfword sums of the paired inputs, folded at the end). 5 instructions per kept
/// tile, 4 more per live one (6 with `SUM`).
///
/// # Safety
/// Every group of `kept` is below `x.len() / 4`; `list` has room for `kept.len()` entries.
#[cfg(all(target_arch = "arm", not(thumb1_only)))]
#[inline(always)]
unsafe fn gather_kept<const SUM: bool>(
    list: *mut Paired,
    kept: &[[u8; 2]],
    x: &[u8],
    sum: &mut u32,
) -> usize {
    let end = kept.as_ptr_range().end;
    let mut at = list;
    if kept.is_empty() {
        return 0;
    }
    // SAFETY: the loop reads `kept` to its end, and at each group's position in `x` one word,
    // inside `x` (the caller's guarantee; `ldr` may be unaligned on Armv7-M), and stores one
    // entry per live group at `list`, which has room for them. Only the named registers change.
    unsafe {
        if SUM {
            let mut halves = 0u32;
            gather_kept_asm!(
                pair!(), "add {sum}, {sum}, r0\nadd {sum}, {sum}, r1", (0, 5), kept.as_ptr(), end,
                x.as_ptr(), at;
                mask = in(reg) 0x00ff_00ffu32,
                sum = inout(reg) halves,
            );
            // Each halfword is a sum over at most LIST_GROUPS groups of two inputs: below 2^16.
            *sum += (halves & 0xffff) + (halves >> 16);
        } else {
            gather_kept_asm!(
                pair!(), "", (0, 5), kept.as_ptr(), end, x.as_ptr(), at;
                mask = in(reg) 0x00ff_00ffu32,
            );
        }
        at.offset_from_unsigned(list)
    }
}

/// `acc[r] += Σ_t x[t] · w[4·r + t]` over the entries, for the 4 rows of a quarter tile whose
/// first byte in the row block's first tile is `base` (see the module docs), until the first
/// entry whose inputs are all zero (a padding entry or the sentinel).
///
/// # Safety
/// `entries` ends with an entry of zero inputs; `base + offset .. + 16` is readable for every
/// entry before it; `acc` holds 4 rows.
#[cfg(all(target_arch = "arm", not(thumb1_only)))]
#[inline(never)]
unsafe fn quarter8(base: *const i8, entries: &[Paired], acc: &mut [i32]) {
    let [mut a0, mut a1, mut a2, mut a3] = [0, 1, 2, 3].map(|r| acc.get(r).copied().unwrap_or(0));
    // SAFETY: reads the entries (three words each, `repr(C)`) up to one of zero inputs (the
    // caller's guarantee) and 16 bytes at `base + offset` for each before it (inside the
    // weights, by the caller). Only the named registers change; memory is only read.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldm {list}!, {{r0, r1, r2}}",
            "orrs r5, r0, r1",
            "beq 3f",
            "add r2, r2, {base}",
            "lsrs r3, r0, #16",
            "uxth r0, r0",
            "lsrs r4, r1, #16",
            "uxth r1, r1",
            "ldrsb r5, [r2, #0]",
            "mla {a0}, r5, r3, {a0}",
            "ldrsb r5, [r2, #1]",
            "mla {a0}, r5, r4, {a0}",
            "ldrsb r5, [r2, #2]",
            "mla {a0}, r5, r0, {a0}",
            "ldrsb r5, [r2, #3]",
            "mla {a0}, r5, r1, {a0}",
            "ldrsb r5, [r2, #4]",
            "mla {a1}, r5, r3, {a1}",
            "ldrsb r5, [r2, #5]",
            "mla {a1}, r5, r4, {a1}",
            "ldrsb r5, [r2, #6]",
            "mla {a1}, r5, r0, {a1}",
            "ldrsb r5, [r2, #7]",
            "mla {a1}, r5, r1, {a1}",
            "ldrsb r5, [r2, #8]",
            "mla {a2}, r5, r3, {a2}",
            "ldrsb r5, [r2, #9]",
            "mla {a2}, r5, r4, {a2}",
            "ldrsb r5, [r2, #10]",
            "mla {a2}, r5, r0, {a2}",
            "ldrsb r5, [r2, #11]",
            "mla {a2}, r5, r1, {a2}",
            "ldrsb r5, [r2, #12]",
            "mla {a3}, r5, r3, {a3}",
            "ldrsb r5, [r2, #13]",
            "mla {a3}, r5, r4, {a3}",
            "ldrsb r5, [r2, #14]",
            "mla {a3}, r5, r0, {a3}",
            "ldrsb r5, [r2, #15]",
            "mla {a3}, r5, r1, {a3}",
            "b 2b",
            "3:",
            list = inout(reg) entries.as_ptr() => _,
            base = in(reg) base,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            out("r0") _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            options(nostack, readonly),
        );
    }
    for (o, a) in acc.iter_mut().zip([a0, a1, a2, a3]) {
        *o = a;
    }
}

/// [`Swar::group`] in Thumb-1 assembly, for [`gather_live`] and [`gather_kept`]: the word in r4
/// paired into r5 (`x20`: after `rev`, `x2` is byte 1 and `x0` byte 3) and r6 (`x31`), with r3
/// the mask `0x00FF00FF`.
#[cfg(thumb1_only)]
macro_rules! pair_thumb1 {
    () => {
        "rev r6, r4\nlsrs r5, r6, #8\nands r5, r3\nands r6, r3"
    };
}

/// [`Swar::gather`] in Thumb-1 assembly: the entries of the groups in `words` that are not zero
/// written at `list`, the first one's tile at byte `offset` of a row block, until [`LIST_GROUPS`]
/// are written; returns where it stopped writing and the first group it did not look at. Paired
/// as in [`gather_kept`]: 6 instructions per blank group, 12 per live one.
///
/// # Safety
/// `words` is word-aligned and not empty; `list` has room for [`LIST_GROUPS`] entries.
#[cfg(thumb1_only)]
#[inline(always)]
unsafe fn gather_live(
    list: *mut Paired,
    words: core::ops::Range<*const [u8; GROUP]>,
    offset: u32,
) -> (*mut Paired, *const [u8; GROUP]) {
    let (mut at, mut read) = (list, words.start);
    // SAFETY: the loop reads `words` (aligned, by the caller) to their end or until `list` is
    // full, one word each, and stores one entry (`x20`, `x31`, offset: r5, r6, r7) per non-zero
    // word, at most LIST_GROUPS (the caller's room). Only the named registers change (r6 and r7
    // are restored).
    unsafe {
        core::arch::asm!(
            "push {{r6, r7}}",
            "mov r9, r1",
            "mov r10, r5",
            "mov r7, r4",
            "2:",
            "ldm r0!, {{r4}}",
            "cmp r4, #0",
            "beq 4f",
            pair_thumb1!(),
            "stm r2!, {{r5, r6, r7}}",
            "cmp r2, r10",
            "beq 3f",
            "4:",
            "adds r7, #64",
            "cmp r0, r9",
            "bne 2b",
            "3:",
            "pop {{r6, r7}}",
            inout("r0") read,
            in("r1") words.end,
            inout("r2") at,
            in("r3") 0x00ff_00ffu32,
            inout("r4") offset => _,
            inout("r5") list.add(LIST_GROUPS) => _,
            out("r9") _,
            out("r10") _,
        );
    }
    (at, read)
}

/// One kept tile of [`gather_kept_at`]: its group at byte `$off` of the list at r0, its word of
/// `x` (r1) loaded and, if not zero, paired and stored as an entry with its tile (r7; with
/// `{sum}`, its inputs added to r8); then r7 steps to the next tile (`$skip`: the label past the
/// store).
#[cfg(thumb1_only)]
macro_rules! thumb1_kept_at {
    ($off:literal, $skip:literal) => {
        concat!(
            "ldrh r4, [r0, #",
            $off,
            "]\n",
            "lsls r4, r4, #2\n",
            "ldr r4, [r1, r4]\n",
            "cmp r4, #0\n",
            "beq ",
            $skip,
            "f\n",
            pair_thumb1!(),
            "\n",
            ".if {sum}\n",
            "add r8, r5\n",
            "add r8, r6\n",
            ".endif\n",
            "stm r2!, {{r5, r6, r7}}\n",
            $skip,
            ":\n",
            "adds r7, #{step}\n",
        )
    };
}

/// [`Swar::kept_rows`]'s gather in Thumb-1 assembly: the entries of `kept`'s groups that are live
/// in `x` written at `list`, each with where its tile is: `start + STEP · i` for the `i`-th
/// position in `kept` (an 8-bit tile's offset in its row block with 0 and 64; a 4-bit tile's
/// address with the block's and 32); returns how many, and with `SUM` adds their inputs to `sum`. A word's inputs are paired by
/// `rev` (`x3 x2 x1 x0` from the top), a shift and two masks. Two kept tiles a turn: 7.5
/// instructions per kept tile, 5 more per live one (7 with `SUM`, which keeps halfword sums in
/// r8 and folds them at the end).
///
/// # Safety
/// `kept` is halfword-aligned, `x` word-aligned, and every group of `kept` is below
/// `x.len() / 4`; `list` has room for `kept.len()` entries.
#[cfg(thumb1_only)]
#[inline(always)]
unsafe fn gather_kept_at<const SUM: bool, const STEP: u32>(
    list: *mut Paired,
    kept: &[[u8; 2]],
    x: &[u8],
    start: u32,
    sum: &mut u32,
) -> usize {
    if kept.is_empty() {
        return 0;
    }
    let mut at = list;
    // Each halfword of `halves` is a sum over at most LIST_GROUPS groups of two inputs: below
    // 2^16.
    let halves: u32;
    // SAFETY: the loop reads `kept` to its end (halfwords, aligned by the caller), and at each
    // group's position in `x` one aligned word inside `x` (the caller's guarantee), and stores
    // one entry (`x20`, `x31`, offset: r5, r6, r7) per live group at `list`, which has room.
    // Only the named registers change (r6 and r7 are restored).
    unsafe {
        core::arch::asm!(
            // r6 and r7 are LLVM's (base and frame pointer): saved, used, restored.
            "push {{r6, r7}}",
            "mov r9, r4",
            "movs r7, #0",
            "mov r8, r7",
            "mov r7, r5",
            // Two kept tiles a turn; an odd count starts at the second of a pair (bit 1 of the
            // list's length in bytes, shifted into the sign).
            "subs r4, r4, r0",
            "lsls r4, r4, #30",
            "bpl 2f",
            "subs r0, #2",
            "b 3f",
            "2:",
            thumb1_kept_at!("0", "4"),
            "3:",
            thumb1_kept_at!("2", "5"),
            "adds r0, #4",
            "cmp r0, r9",
            "bne 2b",
            "mov r4, r8",
            "pop {{r6, r7}}",
            sum = const SUM as u32,
            step = const STEP,
            inout("r0") kept.as_ptr() => _,
            in("r1") x.as_ptr(),
            inout("r2") at,
            in("r3") 0x00ff_00ffu32,
            inout("r4") kept.as_ptr_range().end => halves,
            inout("r5") start => _,
            out("r8") _,
            out("r9") _,
        );
        if SUM {
            *sum += (halves & 0xffff) + (halves >> 16);
        }
        at.offset_from_unsigned(list)
    }
}

/// The four products of one entry of the Thumb-1 walks: the weight word `r2`'s nibble pairs
/// (mask `r3`) times the paired inputs `r0`, `r1`, into the sums `r6` (rows `i`) and `r7` (`i +
/// 8`).
#[cfg(thumb1_only)]
macro_rules! thumb1_products {
    () => {
        concat!(
            "lsrs r4, r2, #8\n",
            "ands r4, r3\n",
            "muls r4, r1, r4\n",
            "adds r6, r6, r4\n",
            "lsrs r4, r2, #4\n",
            "ands r4, r3\n",
            "muls r4, r0, r4\n",
            "adds r7, r7, r4\n",
            "lsrs r4, r2, #12\n",
            "ands r4, r3\n",
            "muls r4, r1, r4\n",
            "adds r7, r7, r4\n",
            "ands r2, r3\n",
            "muls r2, r0, r2\n",
            "adds r6, r6, r2\n",
        )
    };
}

/// [`gather_kept_at`] with each entry's tile offset in its 8-bit row block (64 bytes per position
/// in `kept`), as [`Swar::rows`] and [`Swar::rows4`] take it.
///
/// # Safety
/// As [`gather_kept_at`].
#[cfg(thumb1_only)]
#[inline(always)]
unsafe fn gather_kept<const SUM: bool>(
    list: *mut Paired,
    kept: &[[u8; 2]],
    x: &[u8],
    sum: &mut u32,
) -> usize {
    // SAFETY: the caller's guarantee.
    unsafe { gather_kept_at::<SUM, 64>(list, kept, x, 0, sum) }
}

/// `out += W · x` for one 4-bit row block of kept tiles, on Thumb-1: the kept groups live in `x`
/// gathered with their tiles' addresses ([`gather_kept_at`], from `w`, 32 bytes a tile), then
/// walked by [`block_rows4_at`], which takes the 4-bit offset off itself.
///
/// # Safety
/// `kept` is halfword-aligned and holds at most [`LIST_GROUPS`] groups, each below `x.len() / 4`;
/// `x` is word-aligned; `w` holds a word-aligned 32-byte tile per kept group.
#[cfg(thumb1_only)]
#[inline(always)]
unsafe fn kept_block4_at(
    w: *const u8,
    kept: &[[u8; 2]],
    x: &[u8],
    groups: &mut Groups<Paired>,
    out: &mut [i32; TILE_ROWS],
) {
    let mut sum = 0;
    let list = groups.room();
    // SAFETY: the caller's guarantee; the list has room for LIST_GROUPS entries, of which the
    // gather writes the first `live`.
    unsafe {
        let live = gather_kept_at::<true, 32>(list, kept, x, w.addr() as u32, &mut sum);
        let excess = (sum as i32).wrapping_mul(NIBBLE_OFFSET);
        block_rows4_at(core::slice::from_raw_parts(list, live), excess, out);
    }
}

/// One entry of [`block_rows4_at`]: as [`thumb1_entry`], its weight word at `r4` plus `$off`
/// (the pass's word of the tile whose address the entry holds).
#[cfg(thumb1_only)]
macro_rules! thumb1_entry_at {
    ($off:literal) => {
        concat!(
            "ldm r5!, {{r0, r1, r4}}\n",
            "ldr r2, [r4, #",
            $off,
            "]\n",
            thumb1_products!(),
        )
    };
}

/// One pass of [`block_rows4_at`] (written out, not `.irp`: LLVM sizes inline assembly by its
/// lines when it places literal pools): rows `$off / 4` and `$off / 4 + 8` of `out` (its bytes
/// `$off` and `$hi`, less the excess in `r9`), from word `$off / 4` of each entry's tile; the
/// entries four at a time, their sums shifted once, then the last 0–3, shifted alone.
#[cfg(thumb1_only)]
macro_rules! thumb1_pass_at {
    ($off:literal, $hi:literal) => {
        concat!(
            "ldr r5, [sp, #4]\n",
            "movs r4, #0\n",
            "mov r8, r4\n",
            "mov r11, r4\n",
            "cmp r5, r10\n",
            "beq 3f\n",
            "2:\n",
            "movs r6, #0\n",
            "movs r7, #0\n",
            thumb1_entry_at!($off),
            thumb1_entry_at!($off),
            thumb1_entry_at!($off),
            thumb1_entry_at!($off),
            "lsrs r6, r6, #16\n",
            "add r8, r6\n",
            "lsrs r7, r7, #16\n",
            "add r11, r7\n",
            "cmp r5, r10\n",
            "bne 2b\n",
            "3:\n",
            "cmp r5, r12\n",
            "beq 5f\n",
            "4:\n",
            "movs r6, #0\n",
            "movs r7, #0\n",
            thumb1_entry_at!($off),
            "lsrs r6, r6, #16\n",
            "add r8, r6\n",
            "lsrs r7, r7, #16\n",
            "add r11, r7\n",
            "cmp r5, r12\n",
            "bne 4b\n",
            "5:\n",
            "ldr r4, [sp, #0]\n",
            "ldr r0, [r4, #",
            $off,
            "]\n",
            "add r0, r8\n",
            "add r0, r9\n",
            "str r0, [r4, #",
            $off,
            "]\n",
            "ldr r0, [r4, #",
            $hi,
            "]\n",
            "add r0, r11\n",
            "add r0, r9\n",
            "str r0, [r4, #",
            $hi,
            "]\n",
        )
    };
}

/// [`block_rows4`] for a list whose entries hold their 4-bit tiles' addresses (a row block's
/// kept tiles, [`gather_kept_at`]): the eight passes written out, each loading its word of a
/// tile with an immediate offset, 17 instructions per entry instead of 19; `excess` (the 4-bit
/// offset) is taken off each row as it is added to `out`.
///
/// # Safety
/// Every entry's 32 bytes at its address are readable and word-aligned.
#[cfg(thumb1_only)]
#[inline(never)]
unsafe fn block_rows4_at(entries: &[Paired], excess: i32, out: &mut [i32; TILE_ROWS]) {
    if entries.is_empty() {
        return;
    }
    let quads = entries.as_ptr().wrapping_add(entries.len() / 4 * 4);
    let end = entries.as_ptr_range().end;
    // SAFETY: for each of 8 passes, reads the entries (three words each, `repr(C)`) up to `end`,
    // and one word of each entry's tile (the caller's guarantee); reads and writes `out`'s 16
    // rows. Only the named registers change (r4 to r7, LLVM's, are saved and restored); the
    // stack holds them and, below them, nothing else.
    unsafe {
        core::arch::asm!(
            // sp: out, entries, r6, r7 (LLVM's).
            "push {{r4, r5, r6, r7}}",
            "mov r10, r1",
            "mov r12, r2",
            "mov r9, r0",
            thumb1_pass_at!("0", "32"),
            thumb1_pass_at!("4", "36"),
            thumb1_pass_at!("8", "40"),
            thumb1_pass_at!("12", "44"),
            thumb1_pass_at!("16", "48"),
            thumb1_pass_at!("20", "52"),
            thumb1_pass_at!("24", "56"),
            thumb1_pass_at!("28", "60"),
            "pop {{r4, r5, r6, r7}}",
            inout("r4") out.as_mut_ptr() => _,
            inout("r5") entries.as_ptr() => _,
            inout("r1") quads => _,
            inout("r2") end => _,
            in("r3") PAIR_MASK,
            inout("r0") excess.wrapping_neg() => _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
        );
    }
}

/// One entry of the Thumb-1 walk: its weight word (at `r9` + half the offset) times its paired
/// inputs, the four products summed into `r6` (rows `i`) and `r7` (`i + 8`) without their
/// shift (see the module docs: four entries' sums cannot carry).
#[cfg(thumb1_only)]
macro_rules! thumb1_entry {
    () => {
        concat!(
            "ldm r5!, {{r0, r1, r4}}\n",
            "lsrs r4, r4, #1\n",
            "add r4, r9\n",
            "ldr r2, [r4]\n",
            thumb1_products!(),
        )
    };
}

/// [`block_rows4`] in Thumb-1 assembly (see the module docs), one call per row block: for each
/// `i` of 0–7, the entries four at a time, their sums shifted once, then the last 0–3, whose sums
/// are shifted alone; rows `i` and `i + 8` then added to `out`, and the walk starts over one word
/// further into the tiles.
#[cfg(thumb1_only)]
#[inline(never)]
fn block_rows4(w: &[u32], entries: &[Paired], out: &mut [i32; TILE_ROWS]) {
    if entries.is_empty() || w.len() < TILE_ROWS / 2 {
        return;
    }
    // Every entry's word is inside `w`: offsets come from `Groups::gather` over the vector the
    // tiles were shaped for (the `Arch::rows4` contract), and each of its 8 words is read.
    let base = w.as_ptr();
    let quads = entries.as_ptr().wrapping_add(entries.len() / 4 * 4);
    let end = entries.as_ptr_range().end;
    // SAFETY: for each of 8 passes, reads the entries (three words each, `repr(C)`) up to `end`,
    // and one word of `w` at `base + i + offset / 8` words for each (inside `w`, above); reads
    // and writes `out`'s 16 rows. Only the named registers change (r4 to r7, LLVM's, are saved
    // and restored); the stack holds them and, below them, nothing else.
    unsafe {
        core::arch::asm!(
            // sp: out, entries, r6, r7 (LLVM's).
            "push {{r4, r5, r6, r7}}",
            // High registers hold what the loops only add to or compare with.
            "mov r9, r0",
            "mov r10, r1",
            "mov r12, r2",
            "adds r0, #32",
            "mov lr, r0",
            "1:",
            "movs r4, #0",
            "mov r8, r4",
            "mov r11, r4",
            "cmp r5, r10",
            "beq 3f",
            "2:",
            "movs r6, #0",
            "movs r7, #0",
            thumb1_entry!(),
            thumb1_entry!(),
            thumb1_entry!(),
            thumb1_entry!(),
            "lsrs r6, r6, #16",
            "add r8, r6",
            "lsrs r7, r7, #16",
            "add r11, r7",
            "cmp r5, r10",
            "bne 2b",
            "3:",
            "cmp r5, r12",
            "beq 5f",
            "4:",
            "movs r6, #0",
            "movs r7, #0",
            thumb1_entry!(),
            "lsrs r6, r6, #16",
            "add r8, r6",
            "lsrs r7, r7, #16",
            "add r11, r7",
            "cmp r5, r12",
            "bne 4b",
            "5:",
            // Rows i and i + 8 of `out`; then the next word, from the first entry.
            "ldr r4, [sp, #0]",
            "ldr r0, [r4, #0]",
            "add r0, r8",
            "str r0, [r4, #0]",
            "ldr r0, [r4, #32]",
            "add r0, r11",
            "str r0, [r4, #32]",
            "adds r4, #4",
            "str r4, [sp, #0]",
            "ldr r5, [sp, #4]",
            "movs r0, #4",
            "add r9, r0",
            "cmp r9, lr",
            // (Beyond a conditional branch's reach.)
            "beq 6f",
            "b 1b",
            "6:",
            "pop {{r4, r5, r6, r7}}",
            inout("r4") out.as_mut_ptr() => _,
            inout("r5") entries.as_ptr() => _,
            inout("r0") base => _,
            inout("r1") quads => _,
            inout("r2") end => _,
            in("r3") PAIR_MASK,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("lr") _,
        );
    }
}

/// [`crate::quant::requantize_halves`] in Thumb-1 assembly, for `out.len()` rows of `acc`,
/// `multiplier` (word-aligned) and `shift`: a row ≤ 0 is the ReLU's 0 (8 instructions); a positive
/// one's upper word is `ah·mh + ((ah·ml + al·mh + (al·ml >> 16)) >> 16)` from its halves (`a`, `m`
/// both below 2^31, so the inner sum stays below 2^32 − 2^17 and never carries: the nested floors
/// give the product's upper word exactly), then shifted and rounded as
/// [`crate::quant::requantize`] does: 31 instructions.
///
/// # Safety
/// `acc`, `multiplier` and `shift` hold `out.len()` rows each; `multiplier` is word-aligned.
#[cfg(thumb1_only)]
#[inline(never)]
unsafe fn requantize_rows(
    acc: *const i32,
    multiplier: *const i32,
    shift: *const u8,
    out: &mut [u8],
) {
    if out.is_empty() {
        return;
    }
    let end = out.as_mut_ptr_range().end;
    // After `ldm` has moved past a row's accumulator, its multiplier is `mul_at` bytes on; a
    // row's shift is `shift_at` bytes from its output.
    let mul_at = (multiplier.addr() as u32).wrapping_sub(acc.addr() as u32 + 4);
    let shift_at = (shift.addr() as u32).wrapping_sub(out.as_ptr().addr() as u32);
    // SAFETY: reads `out.len()` rows of `acc`, `multiplier` (words, aligned: the caller's
    // guarantee) and `shift`, and writes `out`. Only the named registers change (r6 and r7,
    // LLVM's, are saved and restored).
    unsafe {
        core::arch::asm!(
            "push {{r6, r7}}",
            "mov r9, r4",
            "2:",
            "ldm r0!, {{r4}}",
            "movs r5, #0",
            "cmp r4, #0",
            "ble 3f",
            "ldr r5, [r0, r1]",
            // al, ml, ah, mh; ah kept in r12 (`muls` overwrites its destination).
            "uxth r6, r4",
            "uxth r7, r5",
            "lsrs r4, r4, #16",
            "lsrs r5, r5, #16",
            "mov r12, r4",
            "muls r4, r7, r4",
            "muls r7, r6, r7",
            "lsrs r7, r7, #16",
            "adds r4, r4, r7",
            "muls r6, r5, r6",
            "adds r4, r4, r6",
            "lsrs r4, r4, #16",
            "mov r6, r12",
            "muls r5, r6, r5",
            "adds r5, r5, r4",
            // ((hi >> (shift - 33)) + 1) >> 1, at most 255 (hi ≥ 0 here).
            "ldrb r6, [r3, r2]",
            "subs r6, #33",
            "lsrs r5, r6",
            "adds r5, #1",
            "lsrs r5, r5, #1",
            "cmp r5, #255",
            "bls 3f",
            "movs r5, #255",
            "3:",
            "strb r5, [r3]",
            "adds r3, #1",
            "cmp r3, r9",
            "bne 2b",
            "pop {{r6, r7}}",
            inout("r0") acc => _,
            in("r1") mul_at,
            in("r2") shift_at,
            inout("r3") out.as_mut_ptr() => _,
            inout("r4") end => _,
            out("r5") _,
            out("r9") _,
            out("r12") _,
        );
    }
}
