//! Cortex-M4/M7/M33 walk on the DSP extension, through `asm!` (LLVM does not form `smlad` from
//! i8 loops, and the `__smlad` intrinsic is nightly-only).
//!
//! A live group's inputs are paired once, when gathered: `x02 = x0 | x2 << 16` and
//! `x13 = x1 | x3 << 16`, stored with the group's offset as three words that one `ldm` loads. For
//! each block of 4 rows (a quarter tile), the walk adds the group's offset to the block's base,
//! loads the 4 rows' weight words with two `ldrd`s, splits each word `[w0 w1 w2 w3]` into
//! `(w0, w2)` and `(w1, w3)` by `sxtb16` (and `ror #8`), and two `smlad`s add a row's four
//! products: 21 instructions per group and 4 rows (16 multiply-accumulates), unrolled twice.
//! The list ends with a sentinel entry (`x02 = u32::MAX`, impossible for paired bytes); the loop
//! tests for it once per two groups, entered at its second group when the count is odd.
//!
//! 4-bit tiles are walked two words at a time, rows `2p`, `2p + 1` (low nibbles) and `2p + 8`,
//! `2p + 9` (high nibbles): `and` with `0x000F000F` of the word, shifted by 0, 8, 4 or 12 in the
//! same instruction, gives a row's `(n0, n2)` or `(n1, n3)` for `smlad`: 19 instructions per
//! group and 4 rows, the tile's address coming from the same list (half the 8-bit offset).
//!
//! Requantization has its own loop too: `smmul`, `sub`, `asr`, `add` and `usat` (whose shift
//! does the final halving) per hidden unit. A block-sparse hidden layer is one step
//! (`kept_layer_out`): each row block gathered with its tiles' addresses in the entries (the walk
//! then loads `[r2, #offset]` without a base: 19 instructions per entry and 4 rows, 18 for 4
//! bits), walked from its biases, each quarter's four sums requantized in registers as they leave
//! the walk (8 instructions a row). The dense walk stops at the output layer's last quarter tile
//! holding a class (`QUARTER_ROWS`).

use core::arch::asm;
use core::ops::Range;

use super::arch::{
    Arch, GROUP, GroupList, Groups, KeptLayer, LIST_GROUPS, NIBBLE_OFFSET, TILE_BYTES, TILE_ROWS,
    TILE4_BYTES, gather_kept_then_rows, kept_block_out, kept_layer_out_by_blocks, u16_of,
    walk_kept,
};
use super::scalar;

/// One hidden unit of [`Dsp`]'s requantization. (Written out, not `.rept`: LLVM sizes inline
/// assembly by its lines when it places literal pools.)
macro_rules! requantize_step {
    () => {
        concat!(
            "ldr {a}, [{pa}], #4\n",
            "ldr {m}, [{pm}], #4\n",
            "ldrb {s}, [{ps}], #1\n",
            "smmul {a}, {a}, {m}\n",
            "sub {s}, {s}, #33\n",
            "asr {a}, {a}, {s}\n",
            "add {a}, {a}, #1\n",
            "usat {a}, #8, {a}, asr #1\n",
            "strb {a}, [{po}], #1\n",
        )
    };
}

/// The DSP extension: `sxtb16` + `smlad`.
pub(crate) struct Dsp;

/// Paired inputs and the offset, in the order one `ldm` loads them.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Paired {
    x02: u32,
    x13: u32,
    offset: u32,
}

/// Ends the list: no paired input has all bits of its upper halfword set.
const SENTINEL: Paired = Paired {
    x02: u32::MAX,
    x13: 0,
    offset: 0,
};

impl Arch for Dsp {
    type Group = Paired;
    const TILE_PASSES: bool = false;
    const QUARTER_ROWS: bool = true;

    fn group(offset: u32, x: [u8; 4]) -> Paired {
        let word = u32::from_le_bytes(x);
        Paired {
            x02: word & 0x00ff_00ff,
            x13: (word >> 8) & 0x00ff_00ff,
            offset,
        }
    }

    fn close(list: &mut GroupList<Paired>) {
        // The list has room: at most every group, plus two.
        let _ = list.push(SENTINEL);
    }

    unsafe fn gather(groups: &mut Groups<Paired>, x: &[u8], from: usize) -> usize {
        // SAFETY: `gather_live` writes at most LIST_GROUPS entries of the groups it is given,
        // then the sentinel.
        unsafe {
            groups.gather_whole::<Self>(x, from, false, |list, words, offset| {
                let (at, read) = gather_live(list, words, offset);
                at.write(SENTINEL);
                (at.add(1), read)
            })
        }
    }

    unsafe fn requantize(acc: &[i32], multiplier: &[[u8; 4]], shift: &[u8], out: &mut [u8]) {
        let n = acc
            .len()
            .min(multiplier.len())
            .min(shift.len())
            .min(out.len());
        if n == 0 || !n.is_multiple_of(4) {
            return super::arch::requantize_portable(acc, multiplier, shift, out);
        }
        // `quant::requantize` for shifts in `quant::SHIFTS` (the only ones a validated model
        // has), four units per iteration: 9.5 instructions per unit.
        // SAFETY: each pointer advances over exactly `n` elements of its slice (words, bytes),
        // four per iteration, and the loop ends when the output pointer reaches `n`. `ldr` of
        // an unaligned multiplier is allowed on Armv7E-M. Only the named registers change.
        unsafe {
            let end = out.as_mut_ptr().add(n);
            asm!(
                "2:",
                requantize_step!(),
                requantize_step!(),
                requantize_step!(),
                requantize_step!(),
                "cmp {po}, {end}",
                "bne.w 2b",
                pa = inout(reg) acc.as_ptr() => _,
                pm = inout(reg) multiplier.as_ptr() => _,
                ps = inout(reg) shift.as_ptr() => _,
                po = inout(reg) out.as_mut_ptr() => _,
                end = in(reg) end,
                a = out(reg) _,
                m = out(reg) _,
                s = out(reg) _,
                options(nostack),
            );
        }
    }

    unsafe fn kept_rows<const NIBBLES: bool>(
        w: &[u8],
        kept: &[[u8; 2]],
        x: &[u8],
        groups: &mut Groups<Paired>,
        out: &mut [i32],
    ) -> u32 {
        if !x.len().is_multiple_of(GROUP) || kept.len() > LIST_GROUPS {
            // SAFETY: the caller's guarantee.
            return unsafe { kept_rows_portable::<NIBBLES>(w, kept, x, groups, out) };
        }
        // SAFETY: the checks above and the caller's guarantee.
        let sum = unsafe { gather_block::<NIBBLES, false>(kept, x, 0, groups) };
        let entries = groups.entries();
        match out.as_chunks_mut::<TILE_ROWS>() {
            ([out, ..], _) if w.as_ptr().align_offset(4) == 0 && entries.len() > 1 => {
                let acc = out.as_mut_ptr();
                // SAFETY: `w` holds the row block's `kept.len()` tiles (the caller's guarantee),
                // word-aligned, and every entry's offset is a tile's; the list ends with the
                // sentinel; `acc` is the block's 16 rows, added to in place.
                unsafe {
                    if NIBBLES {
                        block4(w.as_ptr(), entries, acc.cast_const().cast(), 0, acc);
                    } else {
                        block8(w.as_ptr().cast(), entries, (acc.cast_const().cast(), acc));
                    }
                }
            }
            // SAFETY: the caller's guarantee; `groups` gathered from `w`'s tiles.
            _ => unsafe { walk_kept::<Self, NIBBLES>(w, groups, out) },
        }
        sum
    }

    unsafe fn kept_layer_out<const NIBBLES: bool>(
        layer: KeptLayer<'_>,
        x: &[u8],
        groups: &mut Groups<Paired>,
        out: &mut [u8],
    ) {
        let tile = if NIBBLES { TILE4_BYTES } else { TILE_BYTES };
        if !layer.fits(tile, out.len())
            || !x.len().is_multiple_of(GROUP)
            || layer.tiles.as_ptr().align_offset(4) != 0
        {
            // SAFETY: the caller's guarantee.
            return unsafe { kept_layer_out_portable::<NIBBLES>(layer, x, groups, out) };
        }
        let (mut kept, mut w) = (layer.kept.as_ptr(), layer.tiles.as_ptr());
        let rows = (
            layer.bias.as_ptr(),
            layer.multiplier.as_ptr(),
            layer.shift.as_ptr(),
            out.as_mut_ptr(),
        );
        for (b, count) in layer.counts.iter().enumerate() {
            let n = u16_of(count);
            // SAFETY: `layer` is checked against `x` (the caller's guarantee): the counts add up
            // to `kept.len()`, so the row block's `n` groups are the next ones of `kept`, each
            // one of `x`'s, and its `n` tiles the next ones of `tiles` (a tile per kept group,
            // checked), word-aligned (checked, and tiles are whole words); its 16 rows are
            // among those of the biases, multipliers, shifts and outputs (checked).
            unsafe {
                let (block, tiles) = (
                    core::slice::from_raw_parts(kept, n),
                    core::slice::from_raw_parts(w, n * tile),
                );
                let (bias, mul, shift, out) = (
                    rows.0.add(b * TILE_ROWS),
                    rows.1.add(b * TILE_ROWS),
                    rows.2.add(b * TILE_ROWS),
                    rows.3.add(b * TILE_ROWS),
                );
                if n <= LIST_GROUPS {
                    // The entries hold their tiles' addresses: the walk loads from them.
                    let list = groups.room();
                    let mut sum = 0;
                    let at =
                        gather_kept::<NIBBLES, NIBBLES>(list, block, x, w.addr() as u32, &mut sum);
                    at.write(SENTINEL);
                    // 12 bytes an entry: bit 2 of their size is their number's parity.
                    let odd = (at.addr() - list.addr()) & 4 != 0;
                    block_out::<NIBBLES>((list, odd, sum), bias, (mul, shift, out));
                } else {
                    let rows = (
                        &*bias.cast(),
                        &*mul.cast(),
                        &*shift.cast(),
                        &mut *out.cast(),
                    );
                    kept_block_out::<Dsp, NIBBLES>(tiles, block, x, groups, rows);
                }
                kept = kept.add(n);
                w = w.add(n * tile);
            }
        }
    }

    unsafe fn rows(w: &[i8], groups: &Groups<Paired>, out: &mut [i32]) {
        let entries = groups.entries();
        if w.as_ptr().align_offset(4) != 0 {
            // `ldrd` needs words: the same sums, in plain Rust.
            return rows_unaligned(w, TILE_BYTES, 1, groups, out, scalar::add_tile);
        }
        // Only the sentinel: no live group, nothing to add.
        if entries.len() < 2 {
            return;
        }
        let block = TILE_ROWS * groups.cols();
        let (whole, part) = out.as_chunks_mut::<TILE_ROWS>();
        for (b, out) in whole.iter_mut().enumerate() {
            let acc = out.as_mut_ptr();
            // SAFETY: row block `b`, inside `w` with every entry's offset (the `Arch::rows`
            // contract), word-aligned (checked above); the list ends with the sentinel; `acc`
            // its 16 rows, added to in place.
            unsafe {
                block8(
                    w.as_ptr().add(b * block),
                    entries,
                    (acc.cast_const().cast(), acc),
                )
            };
        }
        // The first quarters of one more (QUARTER_ROWS: a multiple of 4 rows).
        if !part.is_empty() {
            let acc = part.as_mut_ptr();
            // SAFETY: as above, for the row block after the whole ones and `part.len()` rows.
            unsafe {
                let base = w.as_ptr().add(whole.len() * block);
                block8_part(base, entries, (acc.cast_const().cast(), acc), part.len());
            }
        }
    }

    unsafe fn rows4(w: &[u8], groups: &Groups<Paired>, out: &mut [i32]) {
        let entries = groups.entries();
        if w.as_ptr().align_offset(4) != 0 {
            return rows_unaligned(w, TILE4_BYTES, 2, groups, out, scalar::add_tile4);
        }
        if entries.len() < 2 {
            return;
        }
        let block = TILE_ROWS / 2 * groups.cols();
        for (b, out) in out.as_chunks_mut::<TILE_ROWS>().0.iter_mut().enumerate() {
            let acc = out.as_mut_ptr();
            let base = w.as_ptr().wrapping_add(b * block);
            // SAFETY: row block `b`'s tiles, inside `w` with every entry's offset halved (the
            // `Arch::rows4` contract), word-aligned (checked); the list ends with the sentinel;
            // `acc` its 16 rows, added to in place.
            unsafe { block4(base, entries, acc.cast_const().cast(), 0, acc) };
        }
    }
}

/// One row block of a block-sparse hidden layer to its outputs: the walk of its gathered list
/// (`list`, ending with the sentinel, `odd` whether it has an odd number of entries, each the
/// address of a tile; `sum` their inputs' sum, for the 4-bit offset), from the biases at `bias`,
/// each quarter's four sums requantized as they leave it into `to` (multipliers, shifts,
/// outputs).
///
/// # Safety
/// Each entry's tile is readable and word-aligned; `bias` and `to` hold the block's 16 rows.
#[inline(always)]
unsafe fn block_out<const NIBBLES: bool>(
    (list, odd, sum): (*const Paired, bool, u32),
    bias: *const [u8; 4],
    to: (*const [u8; 4], *const u8, *mut u8),
) {
    // SAFETY: the caller's guarantee; each step's rows are among the block's 16.
    unsafe {
        if NIBBLES {
            let excess = (sum as i32).wrapping_mul(NIBBLE_OFFSET);
            let b = |r| rows_at::<8>(bias.add(r), excess);
            requantize4::<0, 8>(kept_nibble_rows::<0>(list, odd, b(0)), to);
            requantize4::<2, 8>(kept_nibble_rows::<8>(list, odd, b(2)), to);
            requantize4::<4, 8>(kept_nibble_rows::<16>(list, odd, b(4)), to);
            requantize4::<6, 8>(kept_nibble_rows::<24>(list, odd, b(6)), to);
        } else {
            let b = |r| rows_at::<2>(bias.add(r), 0);
            requantize4::<0, 2>(kept_quarter::<0>(list, odd, b(0)), to);
            requantize4::<4, 2>(kept_quarter::<16>(list, odd, b(4)), to);
            requantize4::<8, 2>(kept_quarter::<32>(list, odd, b(8)), to);
            requantize4::<12, 2>(kept_quarter::<48>(list, odd, b(12)), to);
        }
    }
}

/// `out = init + W · x` for the 16 rows of one 8-bit row block at `base`, quarter tile by
/// quarter tile (`init`, little-endian i32s, may be `out` itself). Not inlined: one copy of
/// the walk serves every row block, dense or sparse (flash is scarce where it runs), and its
/// quarters share one call.
///
/// # Safety
/// `base` is word-aligned, and `base + offset .. + 64` is readable for every entry's offset;
/// `entries` ends with [`SENTINEL`]; `init` and `out` are 16 rows.
#[inline(never)]
unsafe fn block8(base: *const i8, entries: &[Paired], rows: (*const [u8; 4], *mut i32)) {
    // SAFETY: the caller's guarantee.
    unsafe { quarters(base, entries, rows, TILE_ROWS) }
}

/// [`block8`] for the first `n` rows of the block (a multiple of 4, below 16): the output
/// layer's last row block ([`Arch::QUARTER_ROWS`]).
///
/// # Safety
/// As [`block8`], for `n` rows of `init` and `out`.
#[inline(never)]
unsafe fn block8_part(
    base: *const i8,
    entries: &[Paired],
    rows: (*const [u8; 4], *mut i32),
    n: usize,
) {
    // SAFETY: the caller's guarantee.
    unsafe { quarters(base, entries, rows, n) }
}

/// [`block8`]'s quarter tiles, the first `n / 4` of them.
///
/// # Safety
/// As [`block8_part`], for `n` at most 16.
#[inline(always)]
unsafe fn quarters(
    base: *const i8,
    entries: &[Paired],
    (init, out): (*const [u8; 4], *mut i32),
    n: usize,
) {
    let odd = entries.len().is_multiple_of(2);
    for q in (0..n).step_by(4) {
        // SAFETY: quarter tile `q / 4` of the block (the caller's guarantee).
        unsafe {
            let sums = quarter(
                base.add(q * 4),
                entries.as_ptr(),
                odd,
                rows_at::<2>(init.add(q), 0),
            );
            write_rows::<2>(out.add(q), sums);
        }
    }
}

/// [`block8`] for a 4-bit row block at `base`, `excess` taken off `init`: rows `2p`, `2p + 1`,
/// `2p + 8`, `2p + 9` at a time.
///
/// # Safety
/// As [`block8`], for `base + offset / 2 .. + 32`.
#[inline(never)]
unsafe fn block4(
    base: *const u8,
    entries: &[Paired],
    init: *const [u8; 4],
    excess: i32,
    out: *mut i32,
) {
    let odd = entries.len().is_multiple_of(2);
    for r in (0..TILE_ROWS / 2).step_by(2) {
        // SAFETY: words `r`, `r + 1` of the block's tiles (the caller's guarantee).
        unsafe {
            let init = rows_at::<8>(init.add(r), excess);
            write_rows::<8>(
                out.add(r),
                nibble_rows(base.add(4 * r), entries.as_ptr(), odd, init),
            );
        }
    }
}

/// [`Dsp::kept_rows`] for a vector whose length is not a multiple of 4 (or a longer list): the
/// portable gather. (Out of line: a model's layers normally never need it.)
///
/// # Safety
/// As [`Arch::kept_rows`].
#[cold]
#[inline(never)]
unsafe fn kept_rows_portable<const NIBBLES: bool>(
    w: &[u8],
    kept: &[[u8; 2]],
    x: &[u8],
    groups: &mut Groups<Paired>,
    out: &mut [i32],
) -> u32 {
    // SAFETY: the caller's guarantee.
    unsafe { gather_kept_then_rows::<Dsp, NIBBLES>(w, kept, x, groups, out) }
}

/// [`Dsp::kept_layer_out`] for a vector whose length is not a multiple of 4, misaligned tiles
/// or a layer whose lengths disagree: the default.
///
/// # Safety
/// As [`Arch::kept_layer_out`].
#[cold]
#[inline(never)]
unsafe fn kept_layer_out_portable<const NIBBLES: bool>(
    layer: KeptLayer<'_>,
    x: &[u8],
    groups: &mut Groups<Paired>,
    out: &mut [u8],
) {
    // SAFETY: the caller's guarantee.
    unsafe { kept_layer_out_by_blocks::<Dsp, NIBBLES>(layer, x, groups, out) }
}

/// Gathers into `groups` the entries of `kept`'s groups that are live in `x` ([`gather_kept`],
/// `base` and `HALF` as there), then the sentinel; returns, with `SUM`, the sum of their inputs.
///
/// # Safety
/// `x.len()` is a multiple of 4, every group of `kept` is below `x.len() / 4`, and `kept` holds
/// at most [`LIST_GROUPS`].
#[inline(always)]
unsafe fn gather_block<const SUM: bool, const HALF: bool>(
    kept: &[[u8; 2]],
    x: &[u8],
    base: u32,
    groups: &mut Groups<Paired>,
) -> u32 {
    let mut sum = 0u32;
    // SAFETY: each word `gather_kept` loads is inside `x` (the caller's guarantee); it writes at
    // most `kept.len()` ≤ LIST_GROUPS entries, then the sentinel.
    unsafe {
        groups.fill_with(kept.len() * GROUP, |list| {
            let at = gather_kept::<SUM, HALF>(list, kept, x, base, &mut sum);
            at.write(SENTINEL);
            at.offset_from_unsigned(list) + 1
        })
    };
    sum
}

/// Writes at `list` the entries of the groups in `words` that are not zero, the first one's
/// tile at byte `offset` of a row block, until [`LIST_GROUPS`] are written; returns where it
/// stopped writing and the first group it did not look at. 6 instructions per blank group, 10
/// per live one.
///
/// # Safety
/// `words` is not empty; `list` has room for [`LIST_GROUPS`] entries.
#[inline(always)]
unsafe fn gather_live(
    list: *mut Paired,
    words: Range<*const [u8; GROUP]>,
    offset: u32,
) -> (*mut Paired, *const [u8; GROUP]) {
    let (mut at, mut read) = (list, words.start);
    // SAFETY: the loop reads `words` to their end or until `list` is full, one word each, and
    // stores one entry per non-zero word, at most LIST_GROUPS (the caller's room). Only the
    // named registers change.
    unsafe {
        asm!(
            "2:",
            "ldr {w}, [{read}], #4",
            "cmp {w}, #0",
            "beq 4f",
            "and r0, {w}, {mask}",
            "and r1, {mask}, {w}, lsr #8",
            "stm {list}!, {{r0, r1, r2}}",
            "cmp {list}, {full}",
            "beq 3f",
            "4:",
            "add r2, r2, #64",
            "cmp {read}, {end}",
            "bne 2b",
            "3:",
            read = inout(reg) read,
            end = in(reg) words.end,
            list = inout(reg) at,
            full = in(reg) list.add(LIST_GROUPS),
            mask = in(reg) 0x00ff_00ffu32,
            w = out(reg) _,
            out("r0") _,
            out("r1") _,
            inout("r2") offset => _,
            options(nostack),
        );
    }
    (at, read)
}

/// [`Dsp::group`] in assembly, for [`gather_kept_asm`]: the word `r3` paired into `r0` (inputs 0
/// and 2) and `r1` (1 and 3).
macro_rules! pair {
    () => {
        "and r0, r3, {mask}\nand r1, {mask}, r3, lsr #8"
    };
}

/// Writes at `list` the entries of `kept`'s groups that are live in `x`, and returns where it
/// stopped;
/// with `SUM`, adds their inputs to `sum` (`usada8`). Each entry's `offset` is `base` plus its
/// tile's offset in the row block: 64 bytes per position in `kept`, or 32 with `HALF` (so a
/// 4-bit block's tiles, with its address as `base`). 5 instructions per kept tile, 4 more per
/// live one (5 with `SUM`).
///
/// # Safety
/// Every group of `kept` is below `x.len() / 4`; `list` has room for `kept.len()` entries.
#[inline(always)]
unsafe fn gather_kept<const SUM: bool, const HALF: bool>(
    list: *mut Paired,
    kept: &[[u8; 2]],
    x: &[u8],
    base: u32,
    sum: &mut u32,
) -> *mut Paired {
    let end = kept.as_ptr_range().end;
    let mut at = list;
    if kept.is_empty() {
        return at;
    }
    // SAFETY: the loop reads `kept` to its end, and at each group's position in `x` one word,
    // inside `x` (the caller's guarantee; `ldr` may be unaligned on Armv7-M), and stores one
    // entry per live group at `list`, which has room for them. Only the named registers change.
    unsafe {
        if SUM && HALF {
            gather_kept_asm!(
                pair!(), "usada8 {sum}, r3, {zero}, {sum}", (base, 4), kept.as_ptr(), end,
                x.as_ptr(), at;
                mask = in(reg) 0x00ff_00ffu32,
                zero = in(reg) 0u32,
                sum = inout(reg) *sum,
            );
        } else if SUM {
            gather_kept_asm!(
                pair!(), "usada8 {sum}, r3, {zero}, {sum}", (base, 5), kept.as_ptr(), end,
                x.as_ptr(), at;
                mask = in(reg) 0x00ff_00ffu32,
                zero = in(reg) 0u32,
                sum = inout(reg) *sum,
            );
        } else {
            gather_kept_asm!(
                pair!(), "", (base, 5), kept.as_ptr(), end, x.as_ptr(), at;
                mask = in(reg) 0x00ff_00ffu32,
            );
        }
    }
    at
}

/// The loop of a quarter-tile walk (`$step` per entry, the next entry loaded at its end), over
/// the entries at `{list}` up to the sentinel: entered with `r0` = whether their number is odd,
/// at the second of its two steps if so; an empty list is left at once.
macro_rules! walk {
    ($step:expr) => {
        concat!(
            "cmp r0, #0\n",
            "ldm {list}!, {{r0, r1, r2}}\n",
            "bne 3f\n",
            "cmn r0, #1\n",
            "beq.w 5f\n",
            "2:\n",
            $step,
            "3:\n",
            $step,
            "cmn r0, #1\n",
            "bne.w 2b\n",
            "5:\n",
        )
    };
}

/// [`walk!`]'s loop with `$step` over the entries at `$entries` (`$odd` whether they are an odd
/// number) for 4 rows, from the sums `$init`: the four sums. `$operands` are what the step names
/// besides the list, the sums and r0–r4; memory is only read.
macro_rules! walk_asm {
    ($step:expr, $entries:expr, $odd:expr, $init:expr; $($operands:tt)*) => {{
        let [mut a0, mut a1, mut a2, mut a3]: [i32; 4] = $init;
        asm!(
            walk!($step),
            list = inout(reg) $entries => _,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            $($operands)*
            inout("r0") u32::from($odd) => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            options(nostack, readonly),
        );
        [a0, a1, a2, a3]
    }};
}

/// One entry's step for 4 rows of 8-bit weights, the rows' words at `r2 + {o}` (two `ldrd`s):
/// `sxtb16` splits each into `(w0, w2)` and `(w1, w3)`, and two `smlad`s add the row's four
/// products; then the next entry. 19 instructions.
macro_rules! quarter_step {
    () => {
        concat!(
            "ldrd r3, r4, [r2, #{o}]\n",
            "sxtb16 {t}, r3, ror #8\n",
            "sxtb16 r3, r3\n",
            "smlad {a0}, r3, r0, {a0}\n",
            "smlad {a0}, {t}, r1, {a0}\n",
            "sxtb16 {t}, r4, ror #8\n",
            "sxtb16 r4, r4\n",
            "smlad {a1}, r4, r0, {a1}\n",
            "smlad {a1}, {t}, r1, {a1}\n",
            "ldrd r3, r4, [r2, #{o8}]\n",
            "sxtb16 r2, r3, ror #8\n",
            "sxtb16 r3, r3\n",
            "smlad {a2}, r3, r0, {a2}\n",
            "smlad {a2}, r2, r1, {a2}\n",
            "sxtb16 r2, r4, ror #8\n",
            "sxtb16 r4, r4\n",
            "smlad {a3}, r4, r0, {a3}\n",
            "smlad {a3}, r2, r1, {a3}\n",
            "ldm {list}!, {{r0, r1, r2}}\n",
        )
    };
}

/// One entry's step for 4 rows of 4-bit weights (two words, rows `2p`, `2p + 1` in their low
/// nibbles and `2p + 8`, `2p + 9` in their high ones) at `r2 + {o}`: `and` + `smlad` per nibble
/// pair; then the next entry. 18 instructions.
macro_rules! nibble_step {
    () => {
        concat!(
            "ldrd r3, r4, [r2, #{o}]\n",
            "and r2, {mask}, r3\n",
            "smlad {a0}, r2, r0, {a0}\n",
            "and r2, {mask}, r3, lsr #8\n",
            "smlad {a0}, r2, r1, {a0}\n",
            "and r2, {mask}, r3, lsr #4\n",
            "smlad {a2}, r2, r0, {a2}\n",
            "and r2, {mask}, r3, lsr #12\n",
            "smlad {a2}, r2, r1, {a2}\n",
            "and r2, {mask}, r4\n",
            "smlad {a1}, r2, r0, {a1}\n",
            "and r2, {mask}, r4, lsr #8\n",
            "smlad {a1}, r2, r1, {a1}\n",
            "and r2, {mask}, r4, lsr #4\n",
            "smlad {a3}, r2, r0, {a3}\n",
            "and r2, {mask}, r4, lsr #12\n",
            "smlad {a3}, r2, r1, {a3}\n",
            "ldm {list}!, {{r0, r1, r2}}\n",
        )
    };
}

/// `init + Σ` over the entries for the 4 rows of the quarter tile at `base` (each entry's offset
/// added to it): 20 instructions per entry.
///
/// # Safety
/// `base` is word-aligned, and `base + offset .. base + offset + 16` is readable for every
/// entry's offset; `entries` ends with [`SENTINEL`], and `odd` is whether the entries before it
/// are an odd number.
#[inline(always)]
unsafe fn quarter(base: *const i8, entries: *const Paired, odd: bool, init: [i32; 4]) -> [i32; 4] {
    // SAFETY: the loop reads the entries, three words each, up to and including the sentinel it
    // stops at, and 16 weight bytes at `base + offset` for each (the caller's contract). Only the
    // named registers change; memory is only read.
    unsafe {
        walk_asm!(
            concat!("add r2, {base}, r2\n", quarter_step!()), entries, odd, init;
            base = in(reg) base,
            t = out(reg) _,
            o = const 0,
            o8 = const 8,
        )
    }
}

/// [`quarter`] for entries holding their tiles' addresses: quarter tile `O / 16` of each, no
/// base added (19 instructions per entry).
///
/// # Safety
/// `offset + O .. + 16` is readable and word-aligned for every entry's offset; `entries` as for
/// [`quarter`].
#[inline(always)]
unsafe fn kept_quarter<const O: usize>(
    entries: *const Paired,
    odd: bool,
    init: [i32; 4],
) -> [i32; 4] {
    // SAFETY: as in `quarter`, at each entry's address.
    unsafe {
        walk_asm!(
            quarter_step!(), entries, odd, init;
            t = out(reg) _,
            o = const O,
            o8 = const O + 8,
        )
    }
}

/// `init + Σ` over the entries for rows `r`, `r + 1`, `r + 8`, `r + 9` of the 4-bit tiles (`r`
/// even), whose two words `r`, `r + 1` are at `base` + half an entry's offset: 19 instructions
/// per entry.
///
/// # Safety
/// `base` is word-aligned, and `base + offset / 2 .. + 8` is readable for every entry's offset;
/// `entries` as for [`quarter`].
#[inline(always)]
unsafe fn nibble_rows(
    base: *const u8,
    entries: *const Paired,
    odd: bool,
    init: [i32; 4],
) -> [i32; 4] {
    // SAFETY: as in `quarter`, for 8 bytes per entry at half its offset.
    unsafe {
        walk_asm!(
            concat!("add r2, {base}, r2, lsr #1\n", nibble_step!()), entries, odd, init;
            base = in(reg) base,
            mask = in(reg) 0x000f_000fu32,
            o = const 0,
        )
    }
}

/// [`nibble_rows`] for entries holding their 4-bit tiles' addresses: words `O / 4`, `O / 4 + 1`
/// of each (18 instructions per entry).
///
/// # Safety
/// `offset + O .. + 8` is readable and word-aligned for every entry's offset; `entries` as for
/// [`quarter`].
#[inline(always)]
unsafe fn kept_nibble_rows<const O: usize>(
    entries: *const Paired,
    odd: bool,
    init: [i32; 4],
) -> [i32; 4] {
    // SAFETY: as in `quarter`, for 8 bytes per entry at its address.
    unsafe {
        walk_asm!(
            nibble_step!(), entries, odd, init;
            mask = in(reg) 0x000f_000fu32,
            o = const O,
        )
    }
}

/// One unit of [`requantize4`]: sum `{$a}`, its row at byte `{$r}` of the shifts and outputs
/// and word `{$r}` of the multipliers (`{$m}` = 4 · `{$r}`).
macro_rules! requantize_unit {
    ($a:literal, $r:literal, $m:literal) => {
        concat!(
            "ldr {m}, [{pm}, #{",
            $m,
            "}]\n",
            "ldrb {s}, [{ps}, #{",
            $r,
            "}]\n",
            "smmul {",
            $a,
            "}, {",
            $a,
            "}, {m}\n",
            "sub {s}, {s}, #33\n",
            "asr {",
            $a,
            "}, {",
            $a,
            "}, {s}\n",
            "add {",
            $a,
            "}, {",
            $a,
            "}, #1\n",
            "usat {",
            $a,
            "}, #8, {",
            $a,
            "}, asr #1\n",
            "strb {",
            $a,
            "}, [{po}, #{",
            $r,
            "}]\n",
        )
    };
}

/// Rows `R`, `R + 1`, `R + HI`, `R + HI + 1` of a row block requantized from their sums, still in
/// registers: [`Dsp::requantize`]'s steps, 8 instructions per row. `to` is the block's
/// multipliers, shifts and outputs.
///
/// # Safety
/// `to` holds the rows; the multipliers may be unaligned (`ldr` allows it on Armv7E-M).
#[inline(always)]
unsafe fn requantize4<const R: usize, const HI: usize>(
    [a0, a1, a2, a3]: [i32; 4],
    (mul, shift, out): (*const [u8; 4], *const u8, *mut u8),
) {
    // SAFETY: each access is one of the four rows (the caller's guarantee). Only the named
    // registers change.
    unsafe {
        asm!(
            requantize_unit!("a0", "r0", "m0"),
            requantize_unit!("a1", "r1", "m1"),
            requantize_unit!("a2", "r2", "m2"),
            requantize_unit!("a3", "r3", "m3"),
            pm = in(reg) mul,
            ps = in(reg) shift,
            po = in(reg) out,
            m = out(reg) _,
            s = out(reg) _,
            a0 = inout(reg) a0 => _,
            a1 = inout(reg) a1 => _,
            a2 = inout(reg) a2 => _,
            a3 = inout(reg) a3 => _,
            r0 = const R,
            r1 = const R + 1,
            r2 = const R + HI,
            r3 = const R + HI + 1,
            m0 = const 4 * R,
            m1 = const 4 * (R + 1),
            m2 = const 4 * (R + HI),
            m3 = const 4 * (R + HI + 1),
            options(nostack),
        );
    }
}

/// Rows 0, 1, `HI` and `HI + 1` of the little-endian i32s at `init`, less `excess`.
///
/// # Safety
/// `init` has those rows.
#[inline(always)]
unsafe fn rows_at<const HI: usize>(init: *const [u8; 4], excess: i32) -> [i32; 4] {
    // SAFETY: the caller's guarantee.
    let row = |i| i32::from_le_bytes(unsafe { init.add(i).read() }).wrapping_sub(excess);
    [row(0), row(1), row(HI), row(HI + 1)]
}

/// Stores `sums` to rows 0, 1, `HI` and `HI + 1` at `out`.
///
/// # Safety
/// `out` has those rows.
#[inline(always)]
unsafe fn write_rows<const HI: usize>(out: *mut i32, [a0, a1, a2, a3]: [i32; 4]) {
    // SAFETY: the caller's guarantee.
    unsafe {
        out.cast::<[i32; 2]>().write_unaligned([a0, a1]);
        out.add(HI).cast::<[i32; 2]>().write_unaligned([a2, a3]);
    }
}

/// The walk for weights that are not word-aligned (only `matvec` with a misaligned slice: the
/// model format aligns its sections), through the reference's tile step: `tile_bytes` per tile at
/// the entry's offset divided by `divisor` (the last row block's rows may be only some of it:
/// [`Arch::QUARTER_ROWS`]).
fn rows_unaligned<T>(
    w: &[T],
    tile_bytes: usize,
    divisor: usize,
    groups: &Groups<Paired>,
    out: &mut [i32],
    add_tile: impl Fn(&mut [i32], &[T], [u8; 4]),
) {
    let block = tile_bytes * groups.cols() / 4;
    let live = groups
        .entries()
        .iter()
        .take_while(|e| e.x02 != SENTINEL.x02);
    if block == 0 {
        return;
    }
    for (w, out) in w.chunks_exact(block).zip(out.chunks_mut(TILE_ROWS)) {
        for e in live.clone() {
            let x = [
                e.x02 as u8,
                e.x13 as u8,
                (e.x02 >> 16) as u8,
                (e.x13 >> 16) as u8,
            ];
            let start = e.offset as usize / divisor;
            if let Some(tile) = w.get(start..start + tile_bytes) {
                add_tile(out, tile, x);
            }
        }
    }
}
