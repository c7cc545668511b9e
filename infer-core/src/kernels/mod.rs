//! The int8 matrix–vector product `out[r] += Σ_k x[k] · w[r][k]` (u8 inputs × i8 weights → i32,
//! wrapping), computed over the inputs that are not zero.
//!
//! # One algorithm
//!
//! About 72 % of MNIST's 4-pixel input groups are all zero, and a ReLU layer's outputs are often
//! zero too. So every kernel runs the same two steps:
//!
//! 1. **gather**, once per input vector: the live (not all-zero) groups of 4 inputs, each with its
//!    offset in the weights and its 4 bytes in the form the architecture multiplies with — a
//!    broadcast dword for `vpdpbusd`, pre-paired halfwords for `SMLAD`, widened halfwords for
//!    `vpmaddwd` and NEON's `smlal` — into a bounded [`heapless::Vec`];
//! 2. **walk** that list for every block of rows, so weights of zero inputs are never loaded.
//!
//! An architecture supplies only the form of a group and the walk (memchr's way); the gathering,
//! the shapes, the layer loop and the requantization are written once. The scalar walk is the
//! reference, and every kernel is bit-exact with the plain dense formula, checked by one shared
//! [`conformance`] suite.
//!
//! # Weight layout
//!
//! One layout serves every architecture: 64-byte **tiles** of 16 rows × 4 inputs. Within a tile,
//! byte `4·i + t` is `w[16·b + i][4·g + t]` (row after row, each row's 4 weights of the group);
//! tiles run over the groups of a 16-row block, then over the blocks: `w[r][k]` is at
//! [`tiled_index`]`(r, k, cols)`.
//!
//! - AVX-512 VNNI: a tile is one 512-bit `vpdpbusd` operand; the group's 4 inputs broadcast to
//!   all 16 lanes give the 16 rows' partial sums, in row order, with nothing to fold;
//! - AVX-VNNI: two 256-bit halves of a tile;
//! - Cortex-M4 DSP and NEON, AVX2: a quarter tile (16 bytes) is 4 rows × 4 inputs: `sxtb16` +
//!   `smlad`, `sxtl` + `smlal`, `vpmovsxbw` + `vpmaddwd`.
//!
//! Layers have whole tiles: rows a multiple of 16 (the output layer's 10 rows are padded to
//! [`crate::format::CLASSES_PADDED`]), inputs a multiple of 4, so no kernel has a tail path.
//! The model file stores its weights this way and loading copies nothing.
//!
//! # 4-bit weights
//!
//! [`matvec4`] takes int4 weights (−8…7) in the same tiles at half the size: a 32-byte tile holds
//! the same 16 rows × 4 inputs, byte `4·i + t` (i < 8) carrying row `i` in its low nibble and row
//! `i + 8` in its high nibble, each stored as `w + 8` (0…15): `w[r][k]` is at
//! [`nibble_index`]`(r, k, cols)`. Unpacking is a mask and a shift, with no sign extension: the
//! kernels multiply the stored nibbles (all non-negative, so even `vpmaddubsw` cannot saturate)
//! and the offset comes off once per vector, `Σ x·(n − 8) = Σ x·n − 8·Σ x`, into every row's
//! accumulator before the walk. The same gathered list serves both widths (a group's 4-bit tile
//! is at half its 8-bit offset).
//!
//! - AVX-512 VNNI: the 32 bytes, masked and shifted, are one 512-bit `vpdpbusd` operand (rows
//!   0–7 in the low half, 8–15 in the high half);
//! - AVX-VNNI, AVX2: a low and a high 256-bit half (`vpdpbusd`; `vpmaddubsw` + `vpmaddwd`);
//! - Cortex-M4 DSP: a word holds rows `i` and `i + 8`; `and` with `0x000F000F` (and the word
//!   shifted by 4, 8, 12, in the same instruction) gives each row's nibble pairs for `smlad`;
//! - NEON: `vmull_u8` + `vpadalq_u16` on the unpacked bytes;
//! - no SIMD (Cortex-M0, M3): two products per 32-bit multiply (`swar`).

mod scalar;
mod swar;

#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(cortex_m_dsp)]
mod arm;

#[cfg(target_arch = "aarch64")]
mod aarch64;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use core::fmt;

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
/// Widest layer a kernel accepts (inputs), which bounds the gathered list.
pub const MAX_COLS: usize = crate::INPUTS;
/// Most groups an input vector has.
const MAX_GROUPS: usize = MAX_COLS / GROUP;

/// A gathered list: every group of the widest input, plus two entries an architecture may append.
pub(crate) type GroupList<G> = heapless::Vec<G, { MAX_GROUPS + 2 }>;

/// Where `w[row][col]` of a matrix with `cols` inputs lies in the [tiled layout](self). (Exact for
/// any matrix that fits in memory; wraps, rather than panics, for indices that could not.)
pub const fn tiled_index(row: usize, col: usize, cols: usize) -> usize {
    (row / TILE_ROWS)
        .wrapping_mul(TILE_ROWS)
        .wrapping_mul(cols)
        .wrapping_add((col / GROUP).wrapping_mul(TILE_BYTES))
        .wrapping_add((row % TILE_ROWS) * GROUP + col % GROUP)
}

/// Where the 4-bit `w[row][col]` of a matrix with `cols` inputs lies in the
/// [4-bit layout](self#4-bit-weights): its byte, and the shift (0 or 4) of its nibble. (Total, as
/// [`tiled_index`].)
pub const fn nibble_index(row: usize, col: usize, cols: usize) -> (usize, u32) {
    let in_block = row % TILE_ROWS;
    let byte = (row / TILE_ROWS)
        .wrapping_mul(TILE_ROWS / 2)
        .wrapping_mul(cols)
        .wrapping_add((col / GROUP).wrapping_mul(TILE4_BYTES))
        .wrapping_add((in_block % (TILE_ROWS / 2)) * GROUP + col % GROUP);
    (byte, if in_block < TILE_ROWS / 2 { 0 } else { 4 })
}

/// The live groups of an input vector (or of several, for a batch), in the form architecture
/// entries `G` take, plus up to two entries an architecture appends (padding, a sentinel).
///
/// Filled only by [`Groups::gather`] and [`Groups::gather4`], so every entry's offset is that of
/// a group below `cols`.
pub(crate) struct Groups<G> {
    list: GroupList<G>,
    cols: usize,
}

impl<G> Groups<G> {
    /// An empty list, to fill in place with [`Self::gather`] or [`Self::gather4`] (the list is
    /// 2.4 KB on a Cortex-M4: built where it stays, it is never copied).
    pub(crate) const fn new() -> Self {
        Self {
            list: heapless::Vec::new(),
            cols: 0,
        }
    }

    /// Walks the `cols / 4` groups; `entry(g, offset)` gives the entry of group `g` (whose
    /// weights start `offset` = 64·g bytes into each row block) if it is live. A shape error if
    /// `cols` is not a multiple of 4 up to [`MAX_COLS`] (the list is then empty).
    #[inline(always)]
    fn fill(
        &mut self,
        cols: usize,
        mut entry: impl FnMut(usize, u32) -> Option<G>,
        close: impl FnOnce(&mut GroupList<G>),
    ) -> Result<(), KernelError> {
        self.list.clear();
        self.cols = 0;
        if !cols.is_multiple_of(GROUP) || cols > MAX_COLS {
            return Err(KernelError::Shape);
        }
        for g in 0..cols / GROUP {
            if let Some(e) = entry(g, (g * TILE_BYTES) as u32) {
                // Cannot fail: at most MAX_GROUPS groups, and the capacity is larger.
                let _ = self.list.push(e);
            }
        }
        close(&mut self.list);
        self.cols = cols;
        Ok(())
    }

    /// The entries, in group order (then the appended ones).
    pub(crate) fn entries(&self) -> &[G] {
        &self.list
    }

    /// Inputs of the vector(s) gathered.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }
}

/// A group's 4 inputs widened to 4 × i16 in one 64-bit lane (for `vpmaddwd` and NEON's `smlal`).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
fn halfwords(x: [u8; 4]) -> u64 {
    let [a, b, c, d] = x.map(u64::from);
    a | b << 16 | c << 32 | d << 48
}

/// Group `g` of `x` as 4 bytes, if present.
#[inline(always)]
fn group_of(x: &[u8], g: usize) -> Option<[u8; 4]> {
    x.as_chunks::<GROUP>().0.get(g).copied()
}

/// What an architecture supplies: the form of one live group, and the walk over a list of them.
pub(crate) trait Arch {
    /// One live group, with its offset, as the inner step reads it.
    type Group: Copy;

    /// The entry of a group at byte `offset` of each row block, with inputs `x` (not all zero).
    fn group(offset: u32, x: [u8; 4]) -> Self::Group;

    /// Appends what the walk needs after the live groups (at most two entries). None by default.
    #[inline(always)]
    fn close(_list: &mut GroupList<Self::Group>) {}

    /// `out[r] += Σ` over the groups' inputs and the weights of row `r`, for the `out.len() / 16`
    /// row blocks of `w` (wrapping i32).
    ///
    /// # Safety
    /// - the running CPU has the instructions this architecture uses (its kernel is available);
    /// - `out.len()` is a multiple of [`TILE_ROWS`] and `w.len() == out.len() · groups.cols()`.
    ///
    /// (That every entry's offset lies inside a row block follows from how [`Groups`] is filled.)
    unsafe fn rows(w: &[i8], groups: &Groups<Self::Group>, out: &mut [i32]);

    /// [`Self::rows`] for [4-bit weights](self#4-bit-weights), without their offset: `out[r] += Σ`
    /// over the groups' inputs times the stored nibbles (0…15) of row `r` (wrapping i32).
    ///
    /// # Safety
    /// As [`Self::rows`], with `2 · w.len() == out.len() · groups.cols()`.
    unsafe fn rows4(w: &[u8], groups: &Groups<Self::Group>, out: &mut [i32]);

    /// `out[j] = requantize(acc[j], multiplier[j], shift[j])`, the same integers on every
    /// architecture.
    ///
    /// # Safety
    /// The running CPU has the instructions this architecture uses.
    #[inline(always)]
    unsafe fn requantize(acc: &[i32], multiplier: &[[u8; 4]], shift: &[u8], out: &mut [u8]) {
        requantize_portable(acc, multiplier, shift, out);
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
    /// Replaces the list with the live groups of `x` for architecture `A`.
    #[inline(always)]
    pub(crate) fn gather<A: Arch<Group = G>>(&mut self, x: &[u8]) -> Result<(), KernelError> {
        self.fill(
            x.len(),
            |g, offset| {
                group_of(x, g)
                    .filter(|b| u32::from_ne_bytes(*b) != 0)
                    .map(|b| A::group(offset, b))
            },
            A::close,
        )
    }

    /// Replaces the list with the groups live in any of the four `xs` (all of one length) for
    /// architecture `A`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn gather4<A: BatchArch<Group4 = G>>(
        &mut self,
        xs: [&[u8]; 4],
    ) -> Result<(), KernelError> {
        let cols = xs[0].len();
        if xs.iter().any(|x| x.len() != cols) {
            return Err(KernelError::Shape);
        }
        self.fill(
            cols,
            |g, offset| {
                let bytes = xs.map(|x| group_of(x, g).unwrap_or([0; 4]));
                bytes
                    .iter()
                    .any(|b| u32::from_ne_bytes(*b) != 0)
                    .then(|| A::group4(offset, bytes))
            },
            |_| {},
        )
    }
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

/// An operation generic over the architecture, run by [`dispatch`] with the kernel's.
pub(crate) trait ArchOp {
    /// What the operation gives.
    type Output;
    /// Runs the operation on `A`.
    ///
    /// # Safety
    /// The running CPU has the instructions `A` uses.
    unsafe fn run<A: Arch>(self) -> Self::Output;
    /// Runs the operation on `A`, which has a four-vector form; by default as on any other
    /// architecture.
    ///
    /// # Safety
    /// As [`ArchOp::run`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    unsafe fn run_batch<A: BatchArch>(self) -> Self::Output
    where
        Self: Sized,
    {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.run::<A>() }
    }
}

/// Declares the kernels, once each: the enum entry, its name, its detection, its dispatch (and
/// whether it has a four-vector batch form) and its conformance test all come from one line.
/// Declared from slowest to fastest: [`Kernel::best`] is the last available one.
macro_rules! kernels {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $name:literal, cfg($($cfg:tt)*), $arch:path,
        available: $available:expr, batch: $batch:ident;
    )*) => {
        /// An implementation of the product; see the [module docs](self).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[non_exhaustive]
        pub enum Kernel {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Kernel {
            /// Every kernel, available here or not, slowest first.
            pub const ALL: [Kernel; [$(Kernel::$variant),*].len()] = [$(Kernel::$variant),*];

            /// A short name, for benchmarks, logs and `INFER_CORE_EXPECT_KERNELS`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Kernel::$variant => $name, )*
                }
            }

            /// Whether this build can run the kernel on this CPU: decided at compile time from
            /// the target features, and with feature `std` on x86-64 also by asking the CPU.
            pub fn is_available(self) -> bool {
                match self {
                    $( Kernel::$variant => {
                        #[cfg($($cfg)*)]
                        { $available }
                        #[cfg(not($($cfg)*))]
                        { false }
                    } )*
                }
            }
        }

        /// Runs `op` on `kernel`'s architecture (the scalar one for a kernel not compiled in).
        ///
        /// # Safety
        /// `kernel.is_available()`.
        pub(crate) unsafe fn dispatch<O: ArchOp>(kernel: Kernel, op: O) -> O::Output {
            match kernel {
                $(
                    #[cfg($($cfg)*)]
                    // SAFETY: the caller checked that the kernel is available.
                    Kernel::$variant => unsafe { kernels!(@run $batch, op, $arch) },
                )*
                #[allow(unreachable_patterns)]
                // SAFETY: scalar code runs everywhere.
                _ => unsafe { op.run::<scalar::Scalar>() },
            }
        }

        #[cfg(test)]
        #[allow(non_snake_case)]
        mod declared_kernel_conformance {
            $(
                #[test]
                fn $variant() {
                    super::conformance::test_kernel(super::Kernel::$variant);
                }
            )*
        }
    };
    (@run yes, $op:ident, $arch:path) => { $op.run_batch::<$arch>() };
    (@run no, $op:ident, $arch:path) => { $op.run::<$arch>() };
}

kernels! {
    /// Portable reference, always available.
    Scalar = "scalar", cfg(all()), scalar::Scalar, available: true, batch: no;
    /// Portable 32-bit pair multiplies for 4-bit weights (the reference's walk for int8): the
    /// kernel of cores without SIMD, such as the Cortex-M0 (Thumb-1) and M3. Always available.
    Swar = "swar", cfg(all()), swar::Swar, available: true, batch: no;
    /// aarch64 NEON: `sxtl` + `smlal` on quarter tiles.
    Neon = "neon", cfg(target_arch = "aarch64"), aarch64::Neon, available: true, batch: no;
    /// Cortex-M4/M7/M33 DSP extension: `sxtb16` + `smlad` on quarter tiles.
    CortexMDsp = "cortex-m-dsp", cfg(cortex_m_dsp), arm::Dsp, available: true, batch: no;
    /// x86-64 AVX2: `vpmovsxbw` + `vpmaddwd` on quarter tiles.
    Avx2 = "avx2", cfg(target_arch = "x86_64"), x86_64::Avx2,
        available: x86_64::has_avx2(), batch: no;
    /// x86-64 AVX-VNNI: 256-bit `vpdpbusd` on half tiles.
    AvxVnni = "avx-vnni", cfg(target_arch = "x86_64"), x86_64::AvxVnni,
        available: x86_64::has_avx_vnni(), batch: yes;
    /// x86-64 AVX-512 VNNI: one 512-bit `vpdpbusd` per tile.
    Avx512Vnni = "avx512-vnni", cfg(target_arch = "x86_64"), x86_64::Avx512Vnni,
        available: x86_64::has_avx512_vnni(), batch: yes;
}

impl Kernel {
    /// The fastest kernel available.
    pub fn best() -> Kernel {
        Kernel::ALL
            .into_iter()
            .rev()
            .find(|k| k.is_available())
            .unwrap_or(Kernel::Scalar)
    }

    /// The kernel named `name` (as [`Kernel::name`] gives it).
    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`matvec`] or [`matvec_x4`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KernelError {
    /// The kernel cannot run on this CPU or was not compiled in.
    Unavailable(Kernel),
    /// `x.len()` is not a multiple of 4 up to [`MAX_COLS`], `out.len()` not a multiple of 16,
    /// `w.len() != out.len() · x.len()`, or the vectors of a batch differ in length.
    Shape,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Unavailable(k) => write!(f, "kernel {k} is not available on this CPU"),
            KernelError::Shape => write!(f, "matrix and vector shapes do not fit the kernel"),
        }
    }
}

impl core::error::Error for KernelError {}

/// `out[r] += Σ_k x[k] · w[r][k]` (wrapping i32) with `w` in the [tiled layout](self), by `kernel`.
/// Rows: `out.len()` (a multiple of 16); inputs: `x.len()` (a multiple of 4, at most
/// [`MAX_COLS`]).
pub fn matvec(kernel: Kernel, w: &[i8], x: &[u8], out: &mut [i32]) -> Result<(), KernelError> {
    Matrix::Int8(w).matvec(kernel, x, out)
}

/// [`matvec`] for [4-bit weights](self#4-bit-weights): `out[r] += Σ_k x[k] · w[r][k]` with
/// `w[r][k]` the int4 value at [`nibble_index`]`(r, k, x.len())` of `w` (`out.len() · x.len() / 2`
/// bytes).
pub fn matvec4(kernel: Kernel, w: &[u8], x: &[u8], out: &mut [i32]) -> Result<(), KernelError> {
    Matrix::Int4(w).matvec(kernel, x, out)
}

/// [`matvec`] for four vectors of one length against the same matrix: `outs[i] += W · xs[i]`.
/// Kernels with a batch form load each weight tile once for the four; the others run one vector
/// after another. Same results as four [`matvec`] calls.
pub fn matvec_x4(
    kernel: Kernel,
    w: &[i8],
    xs: [&[u8]; 4],
    outs: [&mut [i32]; 4],
) -> Result<(), KernelError> {
    Matrix::Int8(w).matvec_x4(kernel, xs, outs)
}

/// [`matvec_x4`] for [4-bit weights](self#4-bit-weights); same results as four [`matvec4`] calls.
pub fn matvec4_x4(
    kernel: Kernel,
    w: &[u8],
    xs: [&[u8]; 4],
    outs: [&mut [i32]; 4],
) -> Result<(), KernelError> {
    Matrix::Int4(w).matvec_x4(kernel, xs, outs)
}

/// A weight matrix in the tiled layout, of either width.
#[derive(Clone, Copy)]
pub(crate) enum Matrix<'a> {
    /// int8 weights, 64-byte tiles.
    Int8(&'a [i8]),
    /// int4 weights, 32-byte tiles of offset nibbles.
    Int4(&'a [u8]),
}

impl Matrix<'_> {
    /// Whether the matrix fits `rows × cols`.
    fn check_shape(self, cols: usize, rows: usize) -> Result<(), KernelError> {
        let (bytes, bits) = match self {
            Matrix::Int8(w) => (w.len(), 8),
            Matrix::Int4(w) => (w.len(), 4),
        };
        if cols.is_multiple_of(GROUP)
            && cols <= MAX_COLS
            && rows.is_multiple_of(TILE_ROWS)
            && rows.checked_mul(cols).map(|n| n * bits / 8) == Some(bytes)
        {
            Ok(())
        } else {
            Err(KernelError::Shape)
        }
    }

    fn matvec(self, kernel: Kernel, x: &[u8], out: &mut [i32]) -> Result<(), KernelError> {
        self.check_shape(x.len(), out.len())?;
        if !kernel.is_available() {
            return Err(KernelError::Unavailable(kernel));
        }
        // SAFETY: shape and availability checked above.
        unsafe { dispatch(kernel, MatVec(self, x, out)) };
        Ok(())
    }

    fn matvec_x4(
        self,
        kernel: Kernel,
        xs: [&[u8]; 4],
        outs: [&mut [i32]; 4],
    ) -> Result<(), KernelError> {
        let (cols, rows) = (xs[0].len(), outs[0].len());
        if xs.iter().any(|x| x.len() != cols) || outs.iter().any(|o| o.len() != rows) {
            return Err(KernelError::Shape);
        }
        self.check_shape(cols, rows)?;
        if !kernel.is_available() {
            return Err(KernelError::Unavailable(kernel));
        }
        // SAFETY: shapes and availability checked above.
        unsafe { dispatch(kernel, BatchOp { w: self, xs, outs }) };
        Ok(())
    }

    /// `out += W · x` on `A`, `x` gathered in `groups`; `excess` is [`nibble_excess`] of `x`
    /// (used by 4-bit weights only: their nibbles' offset comes off every row first).
    ///
    /// # Safety
    /// As [`Arch::rows`] / [`Arch::rows4`].
    #[inline(always)]
    pub(crate) unsafe fn rows<A: Arch>(
        self,
        groups: &Groups<A::Group>,
        excess: i32,
        out: &mut [i32],
    ) {
        match self {
            // SAFETY: the caller's guarantee, passed on.
            Matrix::Int8(w) => unsafe { A::rows(w, groups, out) },
            Matrix::Int4(w) => {
                for o in out.iter_mut() {
                    *o = o.wrapping_sub(excess);
                }
                // SAFETY: as above.
                unsafe { A::rows4(w, groups, out) }
            }
        }
    }

    /// [`Self::rows`] for four vectors.
    ///
    /// # Safety
    /// As [`BatchArch::rows_x4`] / [`BatchArch::rows4_x4`].
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) unsafe fn rows_x4<A: BatchArch>(
        self,
        groups: &Groups<A::Group4>,
        excess: [i32; 4],
        mut outs: [&mut [i32]; 4],
    ) {
        match self {
            // SAFETY: the caller's guarantee, passed on.
            Matrix::Int8(w) => unsafe { A::rows_x4(w, groups, outs) },
            Matrix::Int4(w) => {
                for (out, excess) in outs.iter_mut().zip(excess) {
                    for o in out.iter_mut() {
                        *o = o.wrapping_sub(excess);
                    }
                }
                // SAFETY: as above.
                unsafe { A::rows4_x4(w, groups, outs) }
            }
        }
    }

    /// [`nibble_excess`] of `x` for 4-bit weights, 0 (unused) for 8-bit ones.
    #[inline(always)]
    pub(crate) fn excess(self, x: &[u8]) -> i32 {
        match self {
            Matrix::Int8(_) => 0,
            Matrix::Int4(_) => nibble_excess(x),
        }
    }
}

/// `NIBBLE_OFFSET · Σ x`: what the stored nibbles add to every row beyond the weights' values
/// (below 2^21 for any vector a kernel takes).
#[inline(always)]
fn nibble_excess(x: &[u8]) -> i32 {
    let sum: u32 = x.iter().map(|&v| u32::from(v)).sum();
    (sum as i32).wrapping_mul(NIBBLE_OFFSET)
}

/// One vector against a matrix; shapes checked by the caller.
struct MatVec<'a, 'o>(Matrix<'a>, &'a [u8], &'o mut [i32]);

impl ArchOp for MatVec<'_, '_> {
    type Output = ();
    unsafe fn run<A: Arch>(self) {
        let MatVec(w, x, out) = self;
        let mut groups = Groups::new();
        if groups.gather::<A>(x).is_ok() {
            // SAFETY: shapes checked by the caller, the CPU by `dispatch`'s caller.
            unsafe { w.rows::<A>(&groups, w.excess(x), out) }
        }
    }
}

/// Four vectors against one matrix; shapes checked by the caller.
struct BatchOp<'a, 'o> {
    w: Matrix<'a>,
    xs: [&'a [u8]; 4],
    outs: [&'o mut [i32]; 4],
}

impl ArchOp for BatchOp<'_, '_> {
    type Output = ();
    unsafe fn run<A: Arch>(self) {
        for (x, out) in self.xs.into_iter().zip(self.outs) {
            // SAFETY: as `run`'s own contract, for each vector.
            unsafe { MatVec(self.w, x, out).run::<A>() }
        }
    }
    unsafe fn run_batch<A: BatchArch>(self) {
        let mut groups = Groups::new();
        if groups.gather4::<A>(self.xs).is_ok() {
            let excess = self.xs.map(|x| self.w.excess(x));
            // SAFETY: as above.
            unsafe { self.w.rows_x4::<A>(&groups, excess, self.outs) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_index_is_a_bijection() {
        let (rows, cols) = (32, 24);
        let mut seen = [false; 32 * 24];
        for r in 0..rows {
            for k in 0..cols {
                let i = tiled_index(r, k, cols);
                assert!(!seen[i], "{r} {k}");
                seen[i] = true;
            }
        }
        // A tile is 16 rows of one group: rows 0..16, inputs 4..8 fill bytes 64..128.
        assert_eq!(tiled_index(0, 4, cols), 64);
        assert_eq!(tiled_index(15, 7, cols), 127);
        assert_eq!(tiled_index(16, 0, cols), 16 * cols);
        // Total: absurd arguments give some index, not an overflow panic.
        let _ = tiled_index(usize::MAX, usize::MAX, usize::MAX);
    }

    #[test]
    fn nibble_index_is_a_bijection_onto_half_the_bytes() {
        let (rows, cols) = (32, 24);
        let mut seen = [[false; 2]; 32 * 24 / 2];
        for r in 0..rows {
            for k in 0..cols {
                let (byte, shift) = nibble_index(r, k, cols);
                assert!(!seen[byte][shift as usize / 4], "{r} {k}");
                seen[byte][shift as usize / 4] = true;
            }
        }
        // A 4-bit tile is 32 bytes: row i < 8 in the low nibbles of bytes 4i.., row i + 8 in the
        // high ones; the next group's tile follows.
        assert_eq!(nibble_index(0, 0, cols), (0, 0));
        assert_eq!(nibble_index(8, 0, cols), (0, 4));
        assert_eq!(nibble_index(7, 3, cols), (31, 0));
        assert_eq!(nibble_index(15, 7, cols), (63, 4));
        assert_eq!(nibble_index(16, 0, cols), (8 * cols, 0));
        let _ = nibble_index(usize::MAX, usize::MAX, usize::MAX);
    }

    #[test]
    fn shapes_are_checked_not_panicked_on() {
        let w = [0i8; 16 * 8];
        let mut out = [0i32; 16];
        for kernel in Kernel::ALL {
            let shape = Err(KernelError::Shape);
            assert_eq!(matvec(kernel, &[], &[], &mut [0; 4]), shape);
            assert_eq!(matvec(kernel, &w, &[0; 7], &mut out), shape);
            assert_eq!(matvec(kernel, &w[..127], &[0; 8], &mut out), shape);
            assert_eq!(matvec(kernel, &w, &[0; 8], &mut out[..15]), shape);
            let big = std::vec![0i8; 16 * (MAX_COLS + 4)];
            assert_eq!(
                matvec(kernel, &big, &[1; MAX_COLS + 4], &mut out),
                shape,
                "inputs past MAX_COLS"
            );
            // 4-bit weights: half a byte each.
            assert_eq!(matvec4(kernel, &[0; 128], &[0; 8], &mut out), shape);
            assert_eq!(matvec4(kernel, &[0; 63], &[0; 8], &mut [0; 16]), shape);
            let [a, b, c, d] = [[0i32; 16]; 4];
            let (mut a, mut b, mut c, mut d) = (a, b, c, d);
            assert_eq!(
                matvec_x4(
                    kernel,
                    &w,
                    [&[0; 8], &[0; 8], &[0; 4], &[0; 8]],
                    [&mut a, &mut b, &mut c, &mut d]
                ),
                shape
            );
            let expected = if kernel.is_available() {
                Ok(())
            } else {
                Err(KernelError::Unavailable(kernel))
            };
            // Empty products are fine: no rows, or no inputs (out keeps its values).
            assert_eq!(matvec(kernel, &[], &[], &mut []), expected);
            let mut kept = [7i32; 16];
            assert_eq!(matvec(kernel, &[], &[], &mut kept), expected);
            assert_eq!(kept, [7; 16]);
        }
    }

    #[test]
    fn kernels_are_named_uniquely_and_found_by_name() {
        for k in Kernel::ALL {
            assert_eq!(Kernel::from_name(k.name()), Some(k));
        }
        assert_eq!(Kernel::from_name("nope"), None);
        assert!(Kernel::best().is_available());
        assert!(Kernel::Scalar.is_available());
    }
}
