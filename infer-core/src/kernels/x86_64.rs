//! x86-64 walks: AVX-512 VNNI and AVX-VNNI (`vpdpbusd`, u8 × i8 → i32 in one instruction, one
//! 512-bit tile or two 256-bit halves per group) and AVX2 (`vpmovsxbw` + `vpmaddwd` per quarter
//! tile). Several row blocks share each broadcast group so that independent accumulators hide
//! the multiply-add latency.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::arch::{
    Arch, BatchArch, GROUP, Groups, KEPT_BLOCKS, KeptLayer, LIST_GROUPS, NIBBLE_OFFSET, TILE_BYTES,
    TILE_ROWS, kept_layer_out_by_blocks, u16_of,
};

// Every feature a kernel's `#[target_feature]` enables is one its detection checks.

/// Whether the running CPU (or, without `std`, the compile-time target) has AVX2.
pub(super) fn has_avx2() -> bool {
    #[cfg(any(feature = "std", test))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(any(feature = "std", test)))]
    {
        cfg!(target_feature = "avx2")
    }
}

/// Whether AVX-512 F, BW, DQ, VL and VNNI are all there, and POPCNT (the walk needs F and VNNI,
/// the vectorized requantization BW, DQ and VL, the gather VL and POPCNT).
pub(super) fn has_avx512_vnni() -> bool {
    #[cfg(any(feature = "std", test))]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(any(feature = "std", test)))]
    {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512dq",
            target_feature = "avx512vl",
            target_feature = "avx512vnni",
            target_feature = "popcnt"
        ))
    }
}

/// Whether AVX2 and AVX-VNNI (the 256-bit VEX encoding) are there.
pub(super) fn has_avx_vnni() -> bool {
    #[cfg(any(feature = "std", test))]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(any(feature = "std", test)))]
    {
        cfg!(all(target_feature = "avx2", target_feature = "avxvnni"))
    }
}

/// A live group for `vpdpbusd`: its offset and its 4 inputs as one dword to broadcast (in that
/// order, so that an entry is the little-endian u64 `offset | x << 32`: AVX-512 gathers them so).
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Dword {
    offset: u32,
    x: i32,
}

/// A group live in one of four vectors: each vector's dword.
#[derive(Clone, Copy)]
pub(crate) struct Dword4 {
    offset: u32,
    x: [i32; 4],
}

/// Defines a `vpdpbusd` architecture of one vector width: `$lanes` i32 lanes per vector, so
/// `16 / $lanes` vectors per tile.
macro_rules! vnni_arch {
    (
        $(#[$doc:meta])* $arch:ident, $features:literal, $vec:ty, $lanes:literal,
        panel: $panel:literal, panel_x4: $panel4:literal,
        $zero:ident, $set1:ident, $load:ident, $store:ident, $dpbusd:ident, $add:ident,
        unpack4: $unpack4:ident
        $(, kept_layer: $kept_layer:ident)?
    ) => {
        $(#[$doc])*
        pub(crate) struct $arch;

        impl $arch {
            /// The vectors of the tile at byte `at` of `base`: 64 bytes as they are, or
            /// (`NIBBLES`) 32 bytes of 4-bit weights unpacked to one byte each.
            ///
            /// # Safety
            /// The CPU has `$features`; the tile's bytes are readable.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn tile<const NIBBLES: bool>(base: *const u8, at: usize) -> [$vec; TILE_ROWS / $lanes] {
                if NIBBLES {
                    // SAFETY: the caller's guarantee.
                    return unsafe { $unpack4(base.add(at)) };
                }
                let mut v = [$zero(); TILE_ROWS / $lanes];
                for (h, v) in v.iter_mut().enumerate() {
                    // SAFETY: the caller's guarantee; unaligned load.
                    *v = unsafe { $load(base.add(at + 4 * $lanes * h).cast()) };
                }
                v
            }

            /// Where a group's tile starts in row block `b` (`block` bytes each).
            #[inline(always)]
            fn at<const NIBBLES: bool>(b: usize, block: usize, offset: u32) -> usize {
                b * block + (offset >> u32::from(NIBBLES)) as usize
            }

            /// The walk over all row blocks of `out`, for tiles of either width.
            ///
            /// # Safety
            /// As [`Arch::rows`] / [`Arch::rows4`], with `block` the bytes of a row block.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn walk<const NIBBLES: bool>(base: *const u8, block: usize, entries: &[Dword], out: &mut [i32]) {
                let (panels, rest) = out.as_chunks_mut::<{ TILE_ROWS * $panel }>();
                let done = panels.len() * $panel;
                for (p, out) in panels.iter_mut().enumerate() {
                    // SAFETY: row blocks `$panel·p..` are inside the weights (`Arch::rows`
                    // contract).
                    unsafe { Self::panel::<$panel, NIBBLES>(base, block, $panel * p, entries, out) };
                }
                for (r, out) in rest.chunks_exact_mut(TILE_ROWS).enumerate() {
                    // SAFETY: as above.
                    unsafe { Self::single::<NIBBLES>(base, block, done + r, entries, out) };
                }
            }

            /// The batch walk over all row blocks of `outs`, for tiles of either width.
            ///
            /// # Safety
            /// As [`BatchArch::rows_x4`], with `block` the bytes of a row block.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn walk_x4<const NIBBLES: bool>(
                base: *const u8,
                block: usize,
                entries: &[Dword4],
                outs: &mut [&mut [i32]; 4],
            ) {
                let blocks = outs.iter().map(|o| o.len()).min().unwrap_or(0) / TILE_ROWS;
                let panels = blocks / $panel4;
                for p in 0..panels {
                    // SAFETY: row blocks `$panel4·p..` are inside the weights and every `outs[i]`.
                    unsafe { Self::panel_x4::<$panel4, NIBBLES>(base, block, $panel4 * p, entries, outs) };
                }
                for r in panels * $panel4..blocks {
                    // SAFETY: as above.
                    unsafe { Self::panel_x4::<1, NIBBLES>(base, block, r, entries, outs) };
                }
            }

            /// `P` consecutive row blocks starting at `w`'s row block `first`, over every
            /// entry: each broadcast is used `P · V` times.
            ///
            /// # Safety
            /// The CPU has `$features`; row blocks `first..first + P` lie inside `w` (each
            /// `block` bytes, every entry's offset + 64 ≤ `block`); `out` has `16 · P` values.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn panel<const P: usize, const NIBBLES: bool>(
                base: *const u8,
                block: usize,
                first: usize,
                entries: &[Dword],
                out: &mut [i32],
            ) {
                let mut acc = [[$zero(); TILE_ROWS / $lanes]; P];
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (h, acc) in acc.iter_mut().enumerate() {
                        if let Some(init) = out.get(TILE_ROWS * r + $lanes * h..) {
                            if init.len() >= $lanes {
                                // SAFETY: `$lanes` i32s are there (checked); unaligned load.
                                *acc = unsafe { $load(init.as_ptr().cast()) };
                            }
                        }
                    }
                }
                for e in entries {
                    let x = $set1(e.x);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let at = Self::at::<NIBBLES>(first + r, block, e.offset);
                        // SAFETY: the tile is inside the weights (the caller's contract).
                        let wv = unsafe { Self::tile::<NIBBLES>(base, at) };
                        for (acc, wv) in acc.iter_mut().zip(wv) {
                            *acc = $dpbusd(*acc, x, wv);
                        }
                    }
                }
                store(acc.as_flattened(), out);
            }

            /// One row block, the entries split over four accumulators (for a layer with fewer
            /// row blocks than a panel, such as the output layer).
            ///
            /// # Safety
            /// As [`Self::panel`] with `P = 1`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn single<const NIBBLES: bool>(
                base: *const u8,
                block: usize,
                first: usize,
                entries: &[Dword],
                out: &mut [i32],
            ) {
                let mut acc = [[$zero(); TILE_ROWS / $lanes]; 4];
                let (quads, rest) = entries.as_chunks::<4>();
                for quad in quads {
                    for (acc, e) in acc.iter_mut().zip(quad) {
                        let x = $set1(e.x);
                        // SAFETY: as in `panel`.
                        let wv = unsafe { Self::tile::<NIBBLES>(base, Self::at::<NIBBLES>(first, block, e.offset)) };
                        for (acc, wv) in acc.iter_mut().zip(wv) {
                            *acc = $dpbusd(*acc, x, wv);
                        }
                    }
                }
                for e in rest {
                    let x = $set1(e.x);
                    // SAFETY: as in `panel`.
                    let wv = unsafe { Self::tile::<NIBBLES>(base, Self::at::<NIBBLES>(first, block, e.offset)) };
                    for (acc, wv) in acc[0].iter_mut().zip(wv) {
                        *acc = $dpbusd(*acc, x, wv);
                    }
                }
                let mut sum = [$zero(); TILE_ROWS / $lanes];
                for (h, sum) in sum.iter_mut().enumerate() {
                    if let Some(init) = out.get($lanes * h..$lanes * h + $lanes) {
                        // SAFETY: `$lanes` i32s; unaligned load.
                        *sum = unsafe { $load(init.as_ptr().cast()) };
                    }
                }
                for acc in &acc {
                    for (sum, &a) in sum.iter_mut().zip(acc) {
                        *sum = $add(*sum, a);
                    }
                }
                store(&sum, out);
            }

            /// `P` row blocks for four vectors: each weight load serves four `vpdpbusd`s.
            ///
            /// # Safety
            /// As [`Self::panel`], for each of `outs`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn panel_x4<const P: usize, const NIBBLES: bool>(
                base: *const u8,
                block: usize,
                first: usize,
                entries: &[Dword4],
                outs: &mut [&mut [i32]; 4],
            ) {
                let mut acc = [[[$zero(); TILE_ROWS / $lanes]; P]; 4];
                for (acc, out) in acc.iter_mut().zip(outs.iter()) {
                    for (i, acc) in acc.as_flattened_mut().iter_mut().enumerate() {
                        if let Some(init) = out.get(16 * first + $lanes * i..) {
                            if init.len() >= $lanes {
                                // SAFETY: `$lanes` i32s are there (checked); unaligned load.
                                *acc = unsafe { $load(init.as_ptr().cast()) };
                            }
                        }
                    }
                }
                for e in entries {
                    let x = e.x.map(|x| $set1(x));
                    for r in 0..P {
                        // SAFETY: as in `panel`.
                        let wv = unsafe { Self::tile::<NIBBLES>(base, Self::at::<NIBBLES>(first + r, block, e.offset)) };
                        for (h, &wv) in wv.iter().enumerate() {
                            for (acc, &x) in acc.iter_mut().zip(&x) {
                                if let Some(a) = acc.get_mut(r).and_then(|a| a.get_mut(h)) {
                                    *a = $dpbusd(*a, x, wv);
                                }
                            }
                        }
                    }
                }
                for (acc, out) in acc.iter().zip(outs.iter_mut()) {
                    if let Some(out) = out.get_mut(16 * first..) {
                        store(acc.as_flattened(), out);
                    }
                }
            }
        }

        impl Arch for $arch {
            type Group = Dword;

            fn group(offset: u32, x: [u8; 4]) -> Dword {
                Dword { offset, x: i32::from_le_bytes(x) }
            }

            #[target_feature(enable = $features)]
            unsafe fn gather(groups: &mut Groups<Dword>, x: &[u8], from: usize) -> usize {
                // SAFETY: the caller's guarantee.
                unsafe { Self::gather_live(groups, x, from) }
            }

            #[target_feature(enable = $features)]
            unsafe fn rows(w: &[i8], groups: &Groups<Dword>, out: &mut [i32]) {
                let block = TILE_ROWS * groups.cols();
                // SAFETY: the caller's guarantee, for 8-bit tiles.
                unsafe { Self::walk::<false>(w.as_ptr().cast(), block, groups.entries(), out) }
            }

            #[target_feature(enable = $features)]
            unsafe fn rows4(w: &[u8], groups: &Groups<Dword>, out: &mut [i32]) {
                let block = TILE_ROWS / 2 * groups.cols();
                // SAFETY: the caller's guarantee, for 4-bit tiles.
                unsafe { Self::walk::<true>(w.as_ptr(), block, groups.entries(), out) }
            }

            $(
                #[target_feature(enable = $features)]
                unsafe fn kept_layer_out<const NIBBLES: bool>(
                    layer: KeptLayer<'_>,
                    x: &[u8],
                    groups: &mut Groups<Dword>,
                    out: &mut [u8],
                ) {
                    // SAFETY: the caller's guarantee.
                    unsafe { Self::$kept_layer::<NIBBLES>(layer, x, groups, out) }
                }
            )?

            #[target_feature(enable = $features)]
            unsafe fn requantize(acc: &[i32], multiplier: &[[u8; 4]], shift: &[u8], out: &mut [u8]) {
                // The portable loop, vectorized by the compiler for these features: integer
                // arithmetic only, so the same bytes.
                super::arch::requantize_portable(acc, multiplier, shift, out);
            }

            /// Every kept tile multiplied, live or not (a blank group's dword is zero, so it
            /// adds nothing): one load of its 4 inputs and one `vpdpbusd` per tile and vector,
            /// no branch to mispredict, four accumulator chains.
            #[target_feature(enable = $features)]
            unsafe fn kept_rows<const NIBBLES: bool>(
                w: &[u8],
                kept: &[[u8; 2]],
                x: &[u8],
                _groups: &mut Groups<Dword>,
                out: &mut [i32],
            ) -> u32 {
                let split = super::arch::split_groups(x);
                let Some(tile) = super::arch::kept_tile_bytes::<NIBBLES>(w, kept, out) else {
                    return 0;
                };
                let mut acc = [[$zero(); TILE_ROWS / $lanes]; 4];
                let mut sum = 0u32;
                // Four kept tiles a step, one accumulator each (indexed by constants, so they
                // stay in registers).
                // A vector of whole groups is read without a bounds check (the kept groups are
                // its groups: the caller's guarantee), so that the broadcast is a load.
                let exact = split.1.is_none();
                let mut step = |acc: &mut [$vec; TILE_ROWS / $lanes], p: usize, k: &[u8; 2]| {
                    let g = super::arch::u16_of(k);
                    let b = if exact {
                        // SAFETY: `g` is a group of `x`, all whole (the caller's guarantee).
                        unsafe { *split.0.get_unchecked(g) }
                    } else {
                        super::arch::group_at(split, g)
                    };
                    if NIBBLES {
                        sum += super::arch::input_sum(b);
                    }
                    let xv = $set1(i32::from_le_bytes(b));
                    // SAFETY: tile `p` lies inside `w` (checked above).
                    let wv = unsafe { Self::tile::<NIBBLES>(w.as_ptr(), p * tile) };
                    for (acc, wv) in acc.iter_mut().zip(wv) {
                        *acc = $dpbusd(*acc, xv, wv);
                    }
                };
                let (quads, rest) = kept.as_chunks::<4>();
                for (q, quad) in quads.iter().enumerate() {
                    let [a0, a1, a2, a3] = &mut acc;
                    step(a0, 4 * q, &quad[0]);
                    step(a1, 4 * q + 1, &quad[1]);
                    step(a2, 4 * q + 2, &quad[2]);
                    step(a3, 4 * q + 3, &quad[3]);
                }
                for (i, k) in rest.iter().enumerate() {
                    step(&mut acc[0], 4 * quads.len() + i, k);
                }
                let mut total = [$zero(); TILE_ROWS / $lanes];
                for (h, t) in total.iter_mut().enumerate() {
                    if let Some(init) = out.get($lanes * h..$lanes * h + $lanes) {
                        // SAFETY: `$lanes` i32s; unaligned load.
                        *t = unsafe { $load(init.as_ptr().cast()) };
                    }
                }
                let [a0, a1, a2, a3] = acc;
                let parts = a0.into_iter().zip(a1).zip(a2.into_iter().zip(a3));
                for (t, ((a, b), (c, d))) in total.iter_mut().zip(parts) {
                    *t = $add($add(*t, $add(a, b)), $add(c, d));
                }
                store(&total, out);
                sum
            }
        }

        impl BatchArch for $arch {
            type Group4 = Dword4;

            fn group4(offset: u32, xs: [[u8; 4]; 4]) -> Dword4 {
                Dword4 { offset, x: xs.map(i32::from_le_bytes) }
            }

            #[target_feature(enable = $features)]
            unsafe fn rows_x4(w: &[i8], groups: &Groups<Dword4>, mut outs: [&mut [i32]; 4]) {
                let block = TILE_ROWS * groups.cols();
                // SAFETY: the caller's guarantee, for 8-bit tiles.
                unsafe { Self::walk_x4::<false>(w.as_ptr().cast(), block, groups.entries(), &mut outs) }
            }

            #[target_feature(enable = $features)]
            unsafe fn rows4_x4(w: &[u8], groups: &Groups<Dword4>, mut outs: [&mut [i32]; 4]) {
                let block = TILE_ROWS / 2 * groups.cols();
                // SAFETY: the caller's guarantee, for 4-bit tiles.
                unsafe { Self::walk_x4::<true>(w.as_ptr(), block, groups.entries(), &mut outs) }
            }
        }
    };
}

vnni_arch!(
    /// AVX-512 VNNI: one 512-bit `vpdpbusd` per tile, 16 rows at once.
    Avx512Vnni,
    "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,popcnt",
    __m512i,
    16,
    panel: 4,
    panel_x4: 4,
    _mm512_setzero_si512,
    _mm512_set1_epi32,
    _mm512_loadu_si512,
    _mm512_storeu_si512,
    _mm512_dpbusd_epi32,
    _mm512_add_epi32,
    unpack4: unpack4_512,
    kept_layer: kept_layer
);

vnni_arch!(
    /// AVX-VNNI: two 256-bit VEX `vpdpbusd`s per tile (16 vector registers: the batch form
    /// takes one row block at a time).
    AvxVnni,
    "avx2,avxvnni",
    __m256i,
    8,
    panel: 4,
    panel_x4: 1,
    _mm256_setzero_si256,
    _mm256_set1_epi32,
    _mm256_loadu_si256,
    _mm256_storeu_si256,
    _mm256_dpbusd_avx_epi32,
    _mm256_add_epi32,
    unpack4: unpack4_256
);

impl Avx512Vnni {
    /// [`Arch::gather`] without a branch per group: 8 groups at a time, their entries built in
    /// one vector and the live ones compressed (`vpcompressq`) to the end of the list. (Only
    /// for a vector of whole groups; a partial last group goes the portable way.)
    ///
    /// # Safety
    /// The CPU has AVX-512 F and VL, and POPCNT.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,popcnt")]
    unsafe fn gather_live(groups: &mut Groups<Dword>, x: &[u8], from: usize) -> usize {
        let (words, tail) = x.as_chunks::<GROUP>();
        let Some(rest) = words.get(from..).filter(|_| tail.is_empty()) else {
            return groups.gather_portable::<Self>(x, from);
        };
        let mut looked = 0;
        // SAFETY: at most LIST_GROUPS entries are written (a vector of 8 only while 8 more fit),
        // each that of a group of `rest`, below `x.len()`.
        unsafe {
            groups.fill_with(x.len(), |list| {
                let mut n = 0;
                let first = (from * TILE_BYTES) as u64;
                let mut offsets = _mm512_add_epi64(
                    _mm512_set1_epi64(first as i64),
                    _mm512_setr_epi64(0, 64, 128, 192, 256, 320, 384, 448),
                );
                let step = _mm512_set1_epi64(8 * TILE_BYTES as i64);
                let (octets, _) = rest.as_chunks::<8>();
                for octet in octets {
                    if n + 8 > LIST_GROUPS {
                        break;
                    }
                    let xv = _mm256_loadu_si256(octet.as_ptr().cast());
                    let live = _mm256_test_epi32_mask(xv, xv);
                    let entries = _mm512_or_si512(
                        offsets,
                        _mm512_slli_epi64::<32>(_mm512_cvtepu32_epi64(xv)),
                    );
                    _mm512_storeu_si512(
                        list.add(n).cast(),
                        _mm512_maskz_compress_epi64(live, entries),
                    );
                    n += live.count_ones() as usize;
                    offsets = _mm512_add_epi64(offsets, step);
                    looked += 8;
                }
                for b in rest.get(looked..).unwrap_or(&[]) {
                    if n == LIST_GROUPS {
                        break;
                    }
                    let x = i32::from_le_bytes(*b);
                    let offset = ((from + looked) * TILE_BYTES) as u32;
                    list.add(n).write(Dword { offset, x });
                    n += usize::from(x != 0);
                    looked += 1;
                }
                n
            })
        };
        from + looked
    }
}

/// `x` as whole groups, if AVX2's list walk ([`Avx2::kept_live`]) takes these row blocks: `x` of
/// whole groups, at most `bitmap` of them; at most [`KEPT_BLOCKS`] row blocks, each with at most
/// [`LIST_GROUPS`] kept tiles of `tile` bytes, all stored; 16 rows of `out` (and of `bias`) each.
fn lists_take<'x>(
    blocks: &[(&[[u8; 2]], &[u8])],
    x: &'x [u8],
    (tile, bitmap): (usize, usize),
    bias: Option<&[[u8; 4]]>,
    out: &[i32],
) -> Option<&'x [[u8; GROUP]]> {
    let (whole, tail) = x.as_chunks::<GROUP>();
    let rows = TILE_ROWS * blocks.len();
    let fits = |&(kept, w): &(&[[u8; 2]], &[u8])| {
        kept.len() <= LIST_GROUPS && w.len() >= kept.len() * tile
    };
    (tail.is_empty()
        && whole.len() <= bitmap
        && blocks.len() <= KEPT_BLOCKS
        && out.len() >= rows
        && bias.is_none_or(|b| b.len() >= rows)
        && blocks.iter().all(fits))
    .then_some(whole)
}

/// The first blank group of a live bitmap (`bits`, bit g of byte g / 8: group g live) of
/// `groups` groups, if there is one.
fn first_blank(bits: &[u8], groups: usize) -> Option<usize> {
    bits.iter()
        .enumerate()
        .find(|&(_, &b)| b != u8::MAX)
        .map(|(i, &b)| 8 * i + (!b).trailing_zeros() as usize)
        .filter(|&g| g < groups)
}

/// Where row block `b`'s 16 starting values are for the list walks: its biases, or what `out`
/// (its 16 rows) holds.
fn start_of(bias: Option<&[[u8; 4]]>, b: usize, out: &[i32]) -> *const i32 {
    match bias {
        Some(bias) => bias.as_ptr().wrapping_add(TILE_ROWS * b).cast(),
        None => out.as_ptr(),
    }
}

/// The largest groups index [`Avx512Vnni::kept_layer`]'s live bitmap holds (512 bits).
const BITMAP_GROUPS: usize = 512;

impl Avx512Vnni {
    /// [`Arch::kept_layer_out`]: only the tiles both kept and live are loaded and multiplied. The
    /// input's live groups become a bitmap in one register, once per layer; then, for every row
    /// block of a batch of [`KEPT_BLOCKS`] first, its kept groups are looked up in it 16 at a
    /// time (`vpermd`, `vpsrlvd`, `vptestmd`) and the live ones' tile offsets and groups
    /// compressed (`vpcompressd`) into the block's list, without a branch; then every block's
    /// list is walked in four accumulator chains, the group's inputs broadcast from `x`, and its
    /// 16 sums requantized in the register ([`requantize16`]). (All gathers of a batch come
    /// before any walk, so that no walk waits for the stores of the list it reads.) A vector with
    /// a partial group or more than 512 groups, or a row block of more than [`LIST_GROUPS`] kept
    /// tiles, goes the default way.
    ///
    /// # Safety
    /// As [`Arch::kept_layer_out`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,popcnt")]
    unsafe fn kept_layer<const NIBBLES: bool>(
        layer: KeptLayer<'_>,
        x: &[u8],
        groups: &mut Groups<Dword>,
        out: &mut [u8],
    ) {
        // SAFETY (of every fallback below): the caller's guarantee.
        let default = |groups: &mut Groups<Dword>, out: &mut [u8]| unsafe {
            kept_layer_out_by_blocks::<Self, NIBBLES>(layer, x, groups, out)
        };
        let tile = if NIBBLES { TILE_BYTES / 2 } else { TILE_BYTES };
        let (whole, tail) = x.as_chunks::<GROUP>();
        if !tail.is_empty()
            || whole.len() > BITMAP_GROUPS
            || !layer.fits(tile, out.len())
            || layer.counts.iter().any(|c| u16_of(c) > LIST_GROUPS)
            || layer.counts.iter().map(u16_of).sum::<usize>() != layer.kept.len()
        {
            return default(groups, out);
        }
        // Bit g of the bitmap: group g is live.
        let mut bits = [0u16; BITMAP_GROUPS / 16];
        for (bits, sixteen) in bits.iter_mut().zip(whole.chunks(16)) {
            let valid = (u32::MAX >> (32 - sixteen.len())) as __mmask16;
            // SAFETY: `sixteen.len()` groups of 4 bytes are readable; the rest are not read.
            let v = unsafe { _mm512_maskz_loadu_epi32(valid, sixteen.as_ptr().cast()) };
            *bits = _mm512_test_epi32_mask(v, v);
        }
        // A blank group, whose zero inputs pad the lists to whole quads. If there is none, every
        // kept tile is live: multiplied tile by tile.
        let Some(blank) = first_blank(bytemuck::cast_slice(&bits), whole.len()) else {
            return default(groups, out);
        };
        let padding = _mm512_set1_epi32(blank as i32);
        // SAFETY: 64 bytes; unaligned load.
        let bitmap = unsafe { _mm512_loadu_si512(bits.as_ptr().cast()) };
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_set1_epi32((16 * tile) as i32);
        let groups_v = _mm512_set1_epi32(whole.len() as i32);
        let xp = whole.as_ptr().cast::<i32>();
        let (mut kept, mut tiles) = (layer.kept.as_ptr(), layer.tiles.as_ptr());
        // Each row block's 16 biases, multipliers, shifts and outputs, in order (as many as the
        // counts: checked).
        let mut rows = layer
            .bias
            .as_chunks::<TILE_ROWS>()
            .0
            .iter()
            .zip(layer.multiplier.as_chunks::<TILE_ROWS>().0)
            .zip(layer.shift.as_chunks::<TILE_ROWS>().0)
            .zip(out.as_chunks_mut::<TILE_ROWS>().0);
        for counts in layer.counts.chunks(KEPT_BLOCKS) {
            // Each block's kept groups and tiles: the next ones of the layer's, which the counts
            // add up to (checked), a tile per kept group (checked).
            let mut batch: [(&[[u8; 2]], &[u8]); KEPT_BLOCKS] = [(&[], &[]); KEPT_BLOCKS];
            for (slot, count) in batch.iter_mut().zip(counts) {
                let n = u16_of(count);
                // SAFETY: as above, inside `layer.kept` and `layer.tiles`.
                unsafe {
                    *slot = (
                        core::slice::from_raw_parts(kept, n),
                        core::slice::from_raw_parts(tiles, n * tile),
                    );
                    kept = kept.add(n);
                    tiles = tiles.add(n * tile);
                }
            }
            let batch = batch.get(..counts.len()).unwrap_or(&[]);
            // Each block's list: per live kept tile, its offset in the block's tiles (high half)
            // and its group (low half); room for a vector stored past the last entry.
            let mut lists =
                [const { MaybeUninit::<[u32; LIST_GROUPS + 16]>::uninit() }; KEPT_BLOCKS];
            let mut lens = [0usize; KEPT_BLOCKS];
            for ((&(kept, _), list), len) in batch.iter().zip(&mut lists).zip(&mut lens) {
                let mut offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(tile as i32));
                let mut n = 0;
                for sixteen in kept.chunks(16) {
                    let valid = (u32::MAX >> (32 - sixteen.len())) as __mmask16;
                    // SAFETY: `sixteen.len()` u16s are readable; the rest are not read.
                    let g = _mm512_cvtepu16_epi32(unsafe {
                        _mm256_maskz_loadu_epi16(valid, sixteen.as_ptr().cast())
                    });
                    let word = _mm512_permutexvar_epi32(_mm512_srli_epi32::<5>(g), bitmap);
                    let bit = _mm512_srlv_epi32(word, _mm512_and_si512(g, _mm512_set1_epi32(31)));
                    let live = _mm512_mask_test_epi32_mask(valid, bit, _mm512_set1_epi32(1));
                    // (Every kept group is one of `x`'s; a lane that were not is never read.)
                    let live = _mm512_mask_cmplt_epu32_mask(live, g, groups_v);
                    let entries = _mm512_or_si512(_mm512_slli_epi32::<16>(offsets), g);
                    // SAFETY: `n` ≤ `kept.len()` ≤ LIST_GROUPS entries so far; 16 more fit.
                    unsafe {
                        _mm512_storeu_si512(
                            list.as_mut_ptr().cast::<u32>().add(n).cast(),
                            _mm512_mask_compress_epi32(padding, live, entries),
                        )
                    };
                    n += live.count_ones() as usize;
                    offsets = _mm512_add_epi32(offsets, step);
                }
                // The padding up to a whole quad (tile 0 times the blank group's zero inputs).
                // SAFETY: `n` ≤ LIST_GROUPS; 16 more fit.
                unsafe {
                    _mm512_storeu_si512(list.as_mut_ptr().cast::<u32>().add(n).cast(), padding)
                };
                *len = n.next_multiple_of(4);
            }
            let walks = batch.iter().zip(&lists).zip(&lens).zip(rows.by_ref());
            for (((&(_, w), list), &n), (((bias, mul), shift), out)) in walks {
                let mut acc = [_mm512_setzero_si512(); 4];
                let mut sad = _mm512_setzero_si512();
                let mut step = |acc: &mut __m512i, e: u32| {
                    let (offset, g) = ((e >> 16) as usize, (e & 0xffff) as usize);
                    // SAFETY: `g` is a live group of `x` (below `whole.len()`), `offset` a tile
                    // of `w` (both as gathered above).
                    let (xv, wv) = unsafe {
                        (
                            _mm512_set1_epi32(xp.add(g).read_unaligned()),
                            Self::tile::<NIBBLES>(w.as_ptr(), offset)[0],
                        )
                    };
                    if NIBBLES {
                        sad = _mm512_add_epi64(sad, _mm512_sad_epu8(xv, _mm512_setzero_si512()));
                    }
                    *acc = _mm512_dpbusd_epi32(*acc, xv, wv);
                };
                // SAFETY: the gather above wrote the first `n` entries (and more).
                let list = unsafe { core::slice::from_raw_parts(list.as_ptr().cast::<u32>(), n) };
                for quad in list.as_chunks::<4>().0 {
                    let [a0, a1, a2, a3] = &mut acc;
                    step(a0, quad[0]);
                    step(a1, quad[1]);
                    step(a2, quad[2]);
                    step(a3, quad[3]);
                }
                // SAFETY: 16 rows of each; unaligned loads.
                let (init, mul, shift) = unsafe {
                    (
                        _mm512_loadu_si512(bias.as_ptr().cast()),
                        _mm512_loadu_si512(mul.as_ptr().cast()),
                        _mm_loadu_si128(shift.as_ptr().cast()),
                    )
                };
                let mut total = _mm512_add_epi32(
                    _mm512_add_epi32(init, _mm512_add_epi32(acc[0], acc[1])),
                    _mm512_add_epi32(acc[2], acc[3]),
                );
                if NIBBLES {
                    // The 4-bit offset: a broadcast dword's 8-byte lanes each sum its 4 bytes twice.
                    let sum = (_mm512_cvtsi512_si32(sad) as u32 / 2) as i32;
                    let excess = _mm512_set1_epi32(sum.wrapping_mul(NIBBLE_OFFSET));
                    total = _mm512_sub_epi32(total, excess);
                }
                // SAFETY: 16 bytes; unaligned store.
                unsafe {
                    _mm_storeu_si128(out.as_mut_ptr().cast(), requantize16(total, mul, shift))
                };
            }
        }
    }
}

/// [`crate::quant::requantize`] of 16 rows in one register: `acc`'s lanes times `mul`'s as 64-bit
/// products (`vpmuldq` on the even lanes, then on the odd ones shifted down), their upper words
/// shifted by `shift − 33` (the low 5 bits, as `wrapping_shr` takes them), rounded, and clamped
/// to a byte: the same bytes as the portable requantization, for every input.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,popcnt")]
fn requantize16(acc: __m512i, mul: __m512i, shift: __m128i) -> __m128i {
    let even = _mm512_mul_epi32(acc, mul);
    let odd = _mm512_mul_epi32(_mm512_srli_epi64::<32>(acc), _mm512_srli_epi64::<32>(mul));
    let hi = _mm512_mask_blend_epi32(0xaaaa, _mm512_srli_epi64::<32>(even), odd);
    let s = _mm512_and_si512(
        _mm512_sub_epi32(_mm512_cvtepu8_epi32(shift), _mm512_set1_epi32(33)),
        _mm512_set1_epi32(31),
    );
    let scaled = _mm512_add_epi32(_mm512_srav_epi32(hi, s), _mm512_set1_epi32(1));
    let q = _mm512_max_epi32(_mm512_srai_epi32::<1>(scaled), _mm512_setzero_si512());
    _mm512_cvtusepi32_epi8(q)
}

/// The most groups the AVX2 walks' live bitmap holds (256 bits, one register).
const BITMAP_GROUPS_256: usize = 256;

/// For each 8-bit mask, the lanes of its set bits in order (a byte each, the rest 0): AVX2's
/// compress, as a `vpermd` index.
static COMPRESS: [u64; 256] = compress_table();

/// For each 8-bit mask, its set bits.
static COUNTS: [u8; 256] = count_table();

const fn compress_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut k) = (0, 0);
        while lane < 8 {
            if (mask >> lane) & 1 == 1 {
                // Evaluated at compile time: an index out of range would not compile.
                #[allow(clippy::indexing_slicing)]
                {
                    table[mask] |= (lane as u64) << (8 * k);
                }
                k += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
}

const fn count_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut mask = 0;
    while mask < 256 {
        // Evaluated at compile time: an index out of range would not compile.
        #[allow(clippy::indexing_slicing)]
        {
            table[mask] = (mask as u32).count_ones() as u8;
        }
        mask += 1;
    }
    table
}

/// The 4-bit offset of a walk's inputs: `sad` summed each broadcast dword's bytes twice (once
/// per dword of a 64-bit lane).
#[inline]
#[target_feature(enable = "avx2")]
fn nibble_excess(sad: __m256i) -> __m256i {
    let sum = (_mm256_cvtsi256_si32(sad) as u32 / 2) as i32;
    _mm256_set1_epi32(sum.wrapping_mul(NIBBLE_OFFSET))
}

impl Avx2 {
    /// [`Arch::kept_blocks`] without a compress instruction: as [`Avx512Vnni::kept_layer`], with a
    /// 256-bit bitmap (`vpermd`, `vpsrlvd`, `vmovmskps`, 8 kept groups at a time) and the compress a
    /// `vpermd` by a 2 KB table of lane orders; then each row block's list walked by
    /// [`Self::walk_list`]. (On AVX-VNNI, whose tile step is two `vpdpbusd`s, this measured 1.16×
    /// slower than multiplying every kept tile, so only AVX2 takes it.)
    ///
    /// # Safety
    /// As [`Arch::kept_blocks`].
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn kept_live<const NIBBLES: bool>(
        blocks: &[(&[[u8; 2]], &[u8])],
        x: &[u8],
        groups: &mut Groups<Halfwords>,
        bias: Option<&[[u8; 4]]>,
        out: &mut [i32],
    ) {
        let tile = if NIBBLES { TILE_BYTES / 2 } else { TILE_BYTES };
        // SAFETY (of both fallbacks): the caller's guarantee.
        let by_rows = |groups: &mut Groups<Halfwords>, out: &mut [i32]| unsafe {
            super::arch::kept_blocks_by_rows::<Self, NIBBLES>(blocks, x, groups, bias, out)
        };
        // Fewer than 16 kept tiles a row block: the lists cost more than they save (measured).
        let kept: usize = blocks.iter().map(|(kept, _)| kept.len()).sum();
        let whole = lists_take(blocks, x, (tile, BITMAP_GROUPS_256), bias, out);
        let Some(whole) = whole.filter(|_| kept >= 16 * blocks.len()) else {
            return by_rows(groups, out);
        };
        // Bit g of the bitmap: group g is live. The live groups among the 8 from group `at` on, as
        // bits (`at + 8` ≤ `whole.len()`):
        let live8 = |at: usize| {
            // SAFETY: groups `at..at + 8` are in `whole` (the caller's), 32 bytes; unaligned load.
            let v = unsafe { _mm256_loadu_si256(whole.as_ptr().add(at).cast()) };
            let blank = _mm256_cmpeq_epi32(v, _mm256_setzero_si256());
            !(_mm256_movemask_ps(_mm256_castsi256_ps(blank)) as u8)
        };
        let mut bits = [0u8; BITMAP_GROUPS_256 / 8];
        if whole.len() < 8 {
            for (g, b) in whole.iter().enumerate() {
                bits[0] |= u8::from(u32::from_le_bytes(*b) != 0) << g;
            }
        } else {
            for (j, bits) in bits.iter_mut().enumerate().take(whole.len().div_ceil(8)) {
                // The last, partial eight read as the eight ending at the end, shifted down.
                let at = (8 * j).min(whole.len() - 8);
                *bits = live8(at) >> (8 * j - at);
            }
        }
        let Some(blank) = first_blank(&bits, whole.len()) else {
            return by_rows(groups, out);
        };
        let padding = _mm256_set1_epi32(blank as i32);
        // SAFETY: 32 bytes; unaligned load.
        let bitmap = unsafe { _mm256_loadu_si256(bits.as_ptr().cast()) };
        let t = tile as i32;
        let base = _mm256_setr_epi32(0, t, 2 * t, 3 * t, 4 * t, 5 * t, 6 * t, 7 * t);
        let groups_v = _mm256_set1_epi32(whole.len() as i32);
        let xp = whole.as_ptr().cast::<i32>();
        let mut lists = [const { MaybeUninit::<[u32; LIST_GROUPS + 16]>::uninit() }; KEPT_BLOCKS];
        let mut counts = [0usize; KEPT_BLOCKS];
        for ((&(kept, _), list), count) in blocks.iter().zip(&mut lists).zip(&mut counts) {
            let mut n = 0;
            for (c, eight) in kept.chunks(8).enumerate() {
                let g = if let Ok(eight) = <&[[u8; 2]; 8]>::try_from(eight) {
                    // SAFETY: 16 bytes; unaligned load.
                    unsafe { _mm_loadu_si128(eight.as_ptr().cast()) }
                } else {
                    // The last chunk padded with the blank group, which is never live.
                    let mut g = [blank as u16; 8];
                    for (g, k) in g.iter_mut().zip(eight) {
                        *g = u16::from_le_bytes(*k);
                    }
                    // SAFETY: 16 bytes; unaligned load.
                    unsafe { _mm_loadu_si128(g.as_ptr().cast()) }
                };
                // The tiles' offsets: lane i's is (8c + i) · tile.
                let offsets = _mm256_add_epi32(base, _mm256_set1_epi32((8 * c * tile) as i32));
                let g = _mm256_cvtepu16_epi32(g);
                let word = _mm256_permutevar8x32_epi32(bitmap, _mm256_srli_epi32::<5>(g));
                let bit = _mm256_srlv_epi32(word, _mm256_and_si256(g, _mm256_set1_epi32(31)));
                // (Every kept group is one of `x`'s; a lane that were not is never read.)
                let live = _mm256_and_si256(
                    _mm256_slli_epi32::<31>(bit),
                    _mm256_cmpgt_epi32(groups_v, g),
                );
                let live = usize::from(_mm256_movemask_ps(_mm256_castsi256_ps(live)) as u8);
                let entries = _mm256_or_si256(_mm256_slli_epi32::<16>(offsets), g);
                let order = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(
                    COMPRESS.get(live).map_or(0, |&o| o as i64),
                ));
                // SAFETY: `n` ≤ `kept.len()` ≤ LIST_GROUPS entries so far; 8 more fit.
                unsafe {
                    _mm256_storeu_si256(
                        list.as_mut_ptr().cast::<u32>().add(n).cast(),
                        _mm256_permutevar8x32_epi32(entries, order),
                    )
                };
                n += usize::from(COUNTS.get(live).copied().unwrap_or(0));
            }
            // The padding up to a whole quad (tile 0 times the blank group's zero inputs).
            // SAFETY: `n` ≤ LIST_GROUPS; 8 more fit.
            unsafe { _mm256_storeu_si256(list.as_mut_ptr().cast::<u32>().add(n).cast(), padding) };
            *count = n.next_multiple_of(4);
        }
        let lists = blocks.iter().zip(&lists).zip(&counts);
        for (b, (((&(_, w), list), &n), out)) in
            lists.zip(out.chunks_exact_mut(TILE_ROWS)).enumerate()
        {
            let from = start_of(bias, b, out);
            // SAFETY: 16 i32s at `from` (`bias` and `out` checked above); unaligned loads.
            let init = unsafe {
                [
                    _mm256_loadu_si256(from.cast()),
                    _mm256_loadu_si256(from.wrapping_add(8).cast()),
                ]
            };
            // SAFETY: the gather above wrote the first `n` entries (and more), each a tile of `w`
            // and a group below `whole.len()`; the CPU by the caller.
            unsafe {
                let list = core::slice::from_raw_parts(list.as_ptr().cast::<u32>(), n);
                Self::walk_list::<NIBBLES>(w, list, xp, init, out);
            }
        }
    }
    /// `out[..16] = init + Σ` over `list`'s entries (offset in `w` << 16 | group) of the
    /// group's inputs (a dword of `x`) times its tile, less the 4-bit offset with `NIBBLES`.
    ///
    /// # Safety
    /// The CPU has AVX2; every entry's tile lies in `w`, its group's 4 bytes at `x` + 4 · group
    /// are readable; `out.len()` ≥ 16.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn walk_list<const NIBBLES: bool>(
        w: &[u8],
        list: &[u32],
        x: *const i32,
        init: [__m256i; 2],
        out: &mut [i32],
    ) {
        let zero = _mm256_setzero_si256();
        let base = w.as_ptr();
        let mut sad = zero;
        let total = if NIBBLES {
            let ones = _mm256_set1_epi16(1);
            let mut acc = [zero; 2];
            for &e in list {
                let (offset, g) = ((e >> 16) as usize, (e & 0xffff) as usize);
                // SAFETY: the caller's guarantee.
                let (xv, halves) = unsafe {
                    (
                        _mm256_set1_epi32(x.add(g).read_unaligned()),
                        unpack4_256(base.add(offset)),
                    )
                };
                sad = _mm256_add_epi64(sad, _mm256_sad_epu8(xv, zero));
                for (acc, h) in acc.iter_mut().zip(halves) {
                    let pairs = _mm256_maddubs_epi16(xv, h);
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, ones));
                }
            }
            let excess = nibble_excess(sad);
            let ([a0, a1], [i0, i1]) = (acc, init);
            [
                _mm256_sub_epi32(_mm256_add_epi32(i0, a0), excess),
                _mm256_sub_epi32(_mm256_add_epi32(i1, a1), excess),
            ]
        } else {
            // Accumulator q: lanes (row 4q + i, input pair p) at 2·i + p, as in `Avx2::rows`.
            let mut acc = [zero; 4];
            for &e in list {
                let (offset, g) = ((e >> 16) as usize, (e & 0xffff) as usize);
                // SAFETY: the caller's guarantee (a quarter is 16 bytes of the tile).
                let xw = _mm256_cvtepu8_epi16(_mm_set1_epi32(unsafe { x.add(g).read_unaligned() }));
                for (q, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: as above; unaligned load.
                    let w16 = _mm256_cvtepi8_epi16(unsafe {
                        _mm_loadu_si128(base.add(offset + 16 * q).cast())
                    });
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(w16, xw));
                }
            }
            let rows_0_7 = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc[0], acc[1]));
            let rows_8_15 = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc[2], acc[3]));
            [
                _mm256_add_epi32(init[0], rows_0_7),
                _mm256_add_epi32(init[1], rows_8_15),
            ]
        };
        store(&total, out);
    }
}

impl AvxVnni {
    /// [`Arch::gather`]: the portable one (AVX-VNNI has no compress).
    ///
    /// # Safety
    /// None beyond [`Arch::gather`]'s (unsafe only to match the AVX-512 one).
    #[inline(always)]
    unsafe fn gather_live(groups: &mut Groups<Dword>, x: &[u8], from: usize) -> usize {
        groups.gather_portable::<Self>(x, from)
    }
}

/// A 4-bit tile as one vector of bytes: the low nibbles (rows 0–7) in the low half, the high
/// nibbles (rows 8–15) in the high half.
///
/// # Safety
/// The CPU has AVX-512 F and BW; 32 bytes are readable at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn unpack4_512(p: *const u8) -> [__m512i; 1] {
    // SAFETY: the caller's guarantee; unaligned load.
    let v = unsafe { _mm256_loadu_si256(p.cast()) };
    let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v), _mm256_srli_epi16::<4>(v));
    [_mm512_and_si512(both, _mm512_set1_epi8(0x0f))]
}

/// A 4-bit tile as two vectors of bytes: the low nibbles (rows 0–7), then the high ones (8–15).
///
/// # Safety
/// The CPU has AVX2; 32 bytes are readable at `p`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn unpack4_256(p: *const u8) -> [__m256i; 2] {
    // SAFETY: the caller's guarantee; unaligned load.
    let v = unsafe { _mm256_loadu_si256(p.cast()) };
    let mask = _mm256_set1_epi8(0x0f);
    [
        _mm256_and_si256(v, mask),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask),
    ]
}

/// Stores whole vectors into `out`, as many as fit.
#[inline(always)]
fn store<V: Copy>(acc: &[V], out: &mut [i32]) {
    let lanes = core::mem::size_of::<V>() / 4;
    for (v, out) in acc.iter().zip(out.chunks_exact_mut(lanes)) {
        // SAFETY: `out` holds `lanes` i32s, the size of `V`; unaligned write of plain data.
        unsafe { core::ptr::write_unaligned(out.as_mut_ptr().cast::<V>(), *v) };
    }
}

/// AVX2: quarter tiles sign-extended to 16 × i16 meet the group's inputs as 4 × i16 repeated.
pub(crate) struct Avx2;

/// A live group for `vpmaddwd`: its offset and its inputs widened to 4 × i16 (and as bytes,
/// for `vpmaddubsw` on 4-bit tiles).
#[derive(Clone, Copy)]
pub(crate) struct Halfwords {
    offset: u32,
    bytes: i32,
    x: i64,
}

impl Arch for Avx2 {
    type Group = Halfwords;

    const KEPT_BATCH: bool = true;

    /// [`Self::kept_live`], with `vpmaddwd` on quarter tiles (`vpmaddubsw` on 4-bit ones).
    #[target_feature(enable = "avx2")]
    unsafe fn kept_blocks<const NIBBLES: bool>(
        blocks: &[(&[[u8; 2]], &[u8])],
        x: &[u8],
        groups: &mut Groups<Halfwords>,
        bias: Option<&[[u8; 4]]>,
        out: &mut [i32],
    ) {
        // SAFETY: the caller's guarantee.
        unsafe { Self::kept_live::<NIBBLES>(blocks, x, groups, bias, out) }
    }

    fn group(offset: u32, x: [u8; 4]) -> Halfwords {
        Halfwords {
            offset,
            bytes: i32::from_le_bytes(x),
            x: super::arch::halfwords(x) as i64,
        }
    }

    /// Each half of a 4-bit tile (8 rows × 4 nibbles) meets the group's bytes in `vpmaddubsw`
    /// (u8 × non-negative nibble: pairs sum to at most 7,650, no saturation), then `vpmaddwd`
    /// by ones gives each row's sum of four.
    #[target_feature(enable = "avx2")]
    unsafe fn rows4(w: &[u8], groups: &Groups<Halfwords>, out: &mut [i32]) {
        let block = TILE_ROWS / 2 * groups.cols();
        let base = w.as_ptr();
        let ones = _mm256_set1_epi16(1);
        for (b, out) in out.chunks_exact_mut(TILE_ROWS).enumerate() {
            let mut acc = [_mm256_setzero_si256(); 2];
            for e in groups.entries() {
                let x = _mm256_set1_epi32(e.bytes);
                // SAFETY: the tile's 32 bytes are inside `w` (`Arch::rows4` contract).
                let halves = unsafe { unpack4_256(base.add(b * block + e.offset as usize / 2)) };
                for (acc, h) in acc.iter_mut().zip(halves) {
                    let pairs = _mm256_maddubs_epi16(x, h);
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, ones));
                }
            }
            add_store(acc, out);
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn rows(w: &[i8], groups: &Groups<Halfwords>, out: &mut [i32]) {
        let block = TILE_ROWS * groups.cols();
        let base = w.as_ptr();
        for (b, out) in out.chunks_exact_mut(TILE_ROWS).enumerate() {
            // Accumulator q: lanes (row 4q + i, input pair p) at 2·i + p (in 128-bit halves).
            let mut acc = [_mm256_setzero_si256(); 4];
            for e in groups.entries() {
                let x = _mm256_set1_epi64x(e.x);
                let tile = b * block + e.offset as usize;
                for (q, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: the tile's 64 bytes are inside `w` (`Arch::rows` contract); a
                    // quarter is 16 of them. Unaligned load.
                    let w16 = _mm256_cvtepi8_epi16(unsafe {
                        _mm_loadu_si128(base.add(tile + 16 * q).cast())
                    });
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(w16, x));
                }
            }
            // Pairs to rows: hadd gives (rows 0, 1, 4, 5 | 2, 3, 6, 7); the permute orders them.
            let rows_0_7 = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc[0], acc[1]));
            let rows_8_15 = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc[2], acc[3]));
            add_store([rows_0_7, rows_8_15], out);
        }
    }

    /// Every kept tile multiplied, live or not (a blank group adds nothing), without a branch:
    /// the same steps as [`Self::rows`] and [`Self::rows4`] on each stored tile in turn.
    #[target_feature(enable = "avx2")]
    unsafe fn kept_rows<const NIBBLES: bool>(
        w: &[u8],
        kept: &[[u8; 2]],
        x: &[u8],
        _groups: &mut Groups<Halfwords>,
        out: &mut [i32],
    ) -> u32 {
        let split = super::arch::split_groups(x);
        let Some(tile) = super::arch::kept_tile_bytes::<NIBBLES>(w, kept, out) else {
            return 0;
        };
        let base = w.as_ptr();
        let mut sum = 0u32;
        if NIBBLES {
            let ones = _mm256_set1_epi16(1);
            let mut acc = [_mm256_setzero_si256(); 2];
            for (p, k) in kept.iter().enumerate() {
                let b = super::arch::group_at(split, super::arch::u16_of(k));
                sum += super::arch::input_sum(b);
                let x = _mm256_set1_epi32(i32::from_le_bytes(b));
                // SAFETY: tile `p` lies inside `w` (checked above).
                let halves = unsafe { unpack4_256(base.add(p * tile)) };
                for (acc, h) in acc.iter_mut().zip(halves) {
                    let pairs = _mm256_maddubs_epi16(x, h);
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, ones));
                }
            }
            add_store(acc, out);
        } else {
            let mut acc = [_mm256_setzero_si256(); 4];
            for (p, k) in kept.iter().enumerate() {
                let b = super::arch::group_at(split, super::arch::u16_of(k));
                let x = _mm256_set1_epi64x(super::arch::halfwords(b) as i64);
                for (q, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: tile `p` lies inside `w` (checked above); a quarter is 16 bytes.
                    let w16 = _mm256_cvtepi8_epi16(unsafe {
                        _mm_loadu_si128(base.add(p * tile + 16 * q).cast())
                    });
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(w16, x));
                }
            }
            let rows_0_7 = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc[0], acc[1]));
            let rows_8_15 = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc[2], acc[3]));
            add_store([rows_0_7, rows_8_15], out);
        }
        sum
    }
}

/// `out[..16] += ` rows 0–7 and 8–15.
#[inline]
#[target_feature(enable = "avx2")]
fn add_store(mut sums: [__m256i; 2], out: &mut [i32]) {
    for (h, sum) in sums.iter_mut().enumerate() {
        if let Some(init) = out.get(8 * h..8 * h + 8) {
            // SAFETY: 8 i32s; unaligned load.
            *sum = _mm256_add_epi32(*sum, unsafe { _mm256_loadu_si256(init.as_ptr().cast()) });
        }
    }
    store(&sums, out);
}
