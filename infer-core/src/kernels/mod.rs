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
//!    `vpmaddwd` and NEON's `smlal` — into a bounded [`heapless::Vec`] (AVX-512 builds 8
//!    groups' entries in a vector and compresses the live ones into the list, without a branch
//!    per group; the Cortex-M4 gathers in assembly);
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
//! - Cortex-M4 DSP and NEON, AVX2, WebAssembly SIMD128: a quarter tile (16 bytes) is 4 rows × 4
//!   inputs: `sxtb16` + `smlad`, `sxtl` + `smlal`, `vpmovsxbw` + `vpmaddwd`, `i16x8.extend` +
//!   `i32x4.dot_i16x8_s`.
//!
//! Matrices have whole tiles: rows a multiple of 16, inputs a multiple of 4 (the model writer
//! pads a layer with zero rows and columns), so no kernel has a tail path; an input vector whose
//! length is not a multiple of 4 is zero-padded once, when gathered. The model file stores its
//! weights this way and loading copies nothing. A vector with more live groups than one list
//! holds ([`LIST_GROUPS`]: 128 on a microcontroller, 196 elsewhere) is gathered and walked in
//! chunks of that many live groups, so the stack a product needs does not grow with the layer,
//! and a vector that fits, as every MNIST digit does, is gathered once per layer.
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
//! - WebAssembly SIMD128: the unpacked bytes widened without sign, then as for 8-bit tiles;
//! - no SIMD (Cortex-M0, M3): two products per 32-bit multiply (`swar`).
//!
//! # Block-sparse matrices
//!
//! A block-sparse matrix keeps, for each 16-row block, a sorted list of its kept groups (tiles of
//! 16 rows × 4 inputs, in the [tiled layout](self#weight-layout)); the tiles themselves follow
//! one another, row block after row block. The product is the dense formula on the same weights
//! with every other tile zero.
//!
//! [`matvec_sparse`] takes such a matrix with its [`Sparsity`]; the format stores pruned layers
//! so. How "kept" meets "live" is each architecture's step (`kept_rows`), one row block at a time:
//!
//! - by default (scalar, swar, NEON, WebAssembly SIMD128, Cortex-M DSP, the Thumb-1 and Thumb-2
//!   walks): a walk down the
//!   block's kept list loads each kept group's 4 input bytes as one word and keeps the group if the
//!   word is not zero — a branch per kept tile — building the block's own gathered list in the
//!   architecture's form, with offsets into the block's stored tiles; the architecture's ordinary
//!   walk then multiplies that list. The work is the tiles both kept and live, plus the test;
//! - AVX-512 VNNI: without a branch, a whole hidden layer in one step (`kept_layer_out`), 8 row
//!   blocks at a time. The input's live groups become a bitmap in one register, once per layer;
//!   each block's kept groups are looked up in it 16 at a time (`vpermd`, `vpsrlvd`, `vptestmd`)
//!   and the live ones' tile offsets and groups compressed (`vpcompressd`) into the block's list;
//!   only then, so that no walk waits for the stores it reads, each list is walked, and its 16
//!   sums requantized in the register (`vpmuldq` on even and odd lanes). The work is the tiles
//!   both kept and live, plus about 7 vector instructions per 16 kept tiles;
//! - AVX2, which has no compress: the same lists, from a 256-bit bitmap 8 kept groups at a time
//!   (`vpermd`, `vpsrlvd`, `vmovmskps`), the compress a `vpermd` by a 2 KB table of lane
//!   orders; each list walked as [`matvec`]'s quarter tiles. Where a batch of row blocks keeps
//!   fewer than 16 tiles each, the lists cost more than they save (measured), and every kept
//!   tile is multiplied instead, as on AVX-VNNI;
//! - AVX-VNNI, whose tile step is two `vpdpbusd`s: every kept tile is multiplied, live or not (a
//!   blank group's inputs are zero and add nothing), in four register accumulators, with no
//!   branch to mispredict. The work is the kept tiles. (The AVX2 lists measured 1.16× slower
//!   here.)
//!
//! The two sparsities multiply only as far as the pruned tiles are those of blank inputs: a
//! network pruned for accuracy keeps the tiles of the inputs that are usually live. For 4-bit
//! weights the nibble offset comes off per row block, over the inputs of its kept groups.
//!
//! A forward pass gives a block-sparse hidden layer to the architecture whole (`kept_layer_out`),
//! to its requantized outputs: by default one row block at a time (the biases, `kept_rows`, then
//! the requantization). On the Cortex-M DSP the row blocks are a loop of raw pointers over lengths
//! checked once per layer; each block's gathered entries hold their tiles' addresses (the
//! gather's `rsb` makes them at no cost), so the walk loads from them without a base; it starts
//! from the biases themselves (less the nibble offset, known once the block is gathered), and
//! each quarter tile's four sums are requantized as they leave it, in registers. A row block
//! costs its kept tiles, 128 instructions of requantization and about 90 more (its biases, the
//! list's end, the four walks' entries and exits; a per-address profile of the emulated M4). On
//! Thumb-1 a 4-bit layer goes the same way: the biases copied by words (the model format aligns
//! them), the walk reading its entries' addresses, its eight passes written out, taking the
//! nibble offset off as it adds each row, and the requantization in assembly (16-bit halves: the
//! Cortex-M0 has no long multiply). On AVX-512 VNNI, above, the step is the whole layer too.
//!
//! The output layer's walk stops at the last quarter tile holding a class where the architecture
//! walks quarter tiles (`QUARTER_ROWS`, the Cortex-M DSP's 8-bit walk): a 10-class layer's padding
//! rows 12–15 are a quarter of its work.
//!
mod arch;
mod scalar;
mod sparse;

/// The Armv7-M walks' gather of a row block's kept tiles: per kept tile its group's word (`r3`,
/// which `cbz` needs low) loaded by position, and, if not zero, its entry stored (`r0`, `r1`: the
/// paired inputs, which `$pair` makes from `r3` as the walk pairs them; `r2`: where the tile is,
/// `$base + 2^$shift · 2 · i` for the `i`-th position in `$kept`, wrapping). `$sum` is what else
/// a live tile does, `$extra` the operands `$pair` and `$sum` need. The loop runs at least once:
/// `$kept` must not be empty. 5 instructions per kept tile, 4 more per live one.
///
/// Where the tile is is worked out only for a live tile, from how far the list has been read:
/// after the `i`-th `ldrh`, `2^$shift · 2 · i = 2^$shift · (kept − (start + 2))`, so one `rsb` of
/// the read pointer shifted by `$shift` and of `2^$shift · (start + 2) − $base`. With `$base` 0
/// and `$shift` 5 it is the tile's offset in an 8-bit row block (64 bytes a tile); with the
/// block's address and 4, the address of a 4-bit tile (32 bytes).
#[cfg(all(target_arch = "arm", not(thumb1_only)))]
macro_rules! gather_kept_asm {
    ($pair:expr, $sum:expr, ($base:expr, $shift:tt), $kept:expr, $end:expr, $x:expr, $at:ident;
        $($extra:tt)*) => {{
        let start: *const [u8; 2] = $kept;
        let base: u32 = $base;
        core::arch::asm!(
            "2:",
            "ldrh r2, [{kept}], #2",
            "ldr r3, [{x}, r2, lsl #2]",
            "cbz r3, 4f",
            $pair,
            $sum,
            concat!("rsb r2, {start32}, {kept}, lsl #", stringify!($shift)),
            "stm {list}!, {{r0, r1, r2}}",
            "4:",
            "cmp {kept}, {end}",
            "bne 2b",
            start32 = in(reg) (start.addr() as u32).wrapping_add(2).wrapping_shl($shift).wrapping_sub(base),
            kept = inout(reg) start => _,
            end = in(reg) $end,
            x = in(reg) $x,
            list = inout(reg) $at,
            out("r3") _,
            $($extra)*
            out("r0") _,
            out("r1") _,
            out("r2") _,
            options(nostack),
        )
    }};
}

mod swar;

#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(cortex_m_dsp)]
mod arm;

#[cfg(target_arch = "aarch64")]
mod aarch64;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm32;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use core::fmt;

pub(crate) use arch::{Arch, BatchArch, Groups, groups_of, set_biases};
pub use arch::{
    GROUP, LIST_GROUPS, NIBBLE_OFFSET, TILE_BYTES, TILE_ROWS, TILE4_BYTES, nibble_index,
    tiled_index,
};
pub use sparse::{BadBlock, Sparsity};

use crate::{Weights, kinds};

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
    /// WebAssembly SIMD128 (build with `-C target-feature=+simd128`): `i16x8.extend` +
    /// `i32x4.dot_i16x8_s` on quarter tiles.
    WasmSimd128 = "wasm-simd128", cfg(all(target_arch = "wasm32", target_feature = "simd128")),
        wasm32::Simd128, available: true, batch: no;
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

/// Why a product or a forward pass refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KernelError {
    /// The kernel cannot run on this CPU or was not compiled in.
    Unavailable(Kernel),
    /// `out.len()` not a multiple of 16, `w` not `out.len()` rows of `x.len()` inputs (rounded
    /// up to 4), or the vectors of a batch differ in length.
    Shape,
    /// An input vector of the wrong length for the model.
    InputLength {
        /// The model's inputs.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Unavailable(k) => write!(f, "kernel {k} is not available on this CPU"),
            KernelError::Shape => write!(f, "matrix and vector shapes do not fit the kernel"),
            KernelError::InputLength { expected, got } => {
                write!(f, "the input has {got} values, the model takes {expected}")
            }
        }
    }
}

impl core::error::Error for KernelError {}

/// `out[r] += Σ_k x[k] · w[r][k]` (wrapping i32) with `w` in the [tiled layout](self), by `kernel`.
/// Rows: `out.len()` (a multiple of 16); inputs: `x.len()`, any length (the matrix has it rounded
/// up to a multiple of 4, the extra columns meeting zeros).
pub fn matvec(kernel: Kernel, w: &[i8], x: &[u8], out: &mut [i32]) -> Result<(), KernelError> {
    Matrix::int8(w).matvec(kernel, x, out)
}

/// [`matvec`] for [4-bit weights](self#4-bit-weights): `out[r] += Σ_k x[k] · w[r][k]` with
/// `w[r][k]` the int4 value at [`nibble_index`]`(r, k, cols)` of `w` (`out.len() · cols / 2`
/// bytes, `cols` = `x.len()` rounded up to 4).
pub fn matvec4(kernel: Kernel, w: &[u8], x: &[u8], out: &mut [i32]) -> Result<(), KernelError> {
    Matrix::new(Weights::Int4, w).matvec(kernel, x, out)
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
    Matrix::int8(w).matvec_x4(kernel, xs, outs)
}

/// [`matvec_x4`] for [4-bit weights](self#4-bit-weights); same results as four [`matvec4`] calls.
pub fn matvec4_x4(
    kernel: Kernel,
    w: &[u8],
    xs: [&[u8]; 4],
    outs: [&mut [i32]; 4],
) -> Result<(), KernelError> {
    Matrix::new(Weights::Int4, w).matvec_x4(kernel, xs, outs)
}

/// [`matvec`] (or [`matvec4`], by `weights`) for a [block-sparse](self#block-sparse-matrices) matrix: `w` holds only
/// the tiles `sparsity` keeps, and `out[r] += Σ_k x[k] · w[r][k]` with every other weight zero.
/// Rows: `out.len()`, 16 per row block of `sparsity`; inputs: `x.len()` (rounded up to 4, the
/// inputs `sparsity` was made for).
pub fn matvec_sparse(
    kernel: Kernel,
    weights: Weights,
    w: &[u8],
    sparsity: Sparsity<'_>,
    x: &[u8],
    out: &mut [i32],
) -> Result<(), KernelError> {
    let m = Matrix::new(weights, w);
    if !weights.is_integer() {
        return Err(KernelError::Shape);
    }
    m.check_sparse(&sparsity, x.len(), out.len())?;
    if !kernel.is_available() {
        return Err(KernelError::Unavailable(kernel));
    }
    // SAFETY: shape and availability checked above.
    unsafe { dispatch(kernel, SparseMatVec(m, sparsity, x, out)) };
    Ok(())
}

/// One vector against a block-sparse matrix; shapes checked by the caller.
struct SparseMatVec<'a, 'o>(Matrix<'a>, Sparsity<'a>, &'a [u8], &'o mut [i32]);

impl ArchOp for SparseMatVec<'_, '_> {
    type Output = ();
    unsafe fn run<A: Arch>(self) {
        let SparseMatVec(w, s, x, out) = self;
        let mut groups = Groups::new();
        // SAFETY: shapes checked by the caller, the CPU by `dispatch`'s caller.
        unsafe { w.walk_sparse::<A, { kinds::ALL }>(s, x, &mut groups, None, out) }
    }
}

/// A weight matrix in the tiled layout: its bytes and their kind ([`Weights::Int8`] or
/// [`Weights::Int4`], when compiled in; any other kind walks as nothing, and never reaches a
/// walk: it is refused first).
#[derive(Clone, Copy)]
pub(crate) struct Matrix<'a> {
    weights: Weights,
    bytes: &'a [u8],
}

impl<'a> Matrix<'a> {
    /// The matrix of `bytes` holding weights of kind `weights`.
    #[inline(always)]
    pub(crate) const fn new(weights: Weights, bytes: &'a [u8]) -> Self {
        Self { weights, bytes }
    }

    fn int8(w: &'a [i8]) -> Self {
        Self::new(Weights::Int8, bytemuck::must_cast_slice(w))
    }

    /// The same kind of weights in `bytes` (some of its row blocks).
    #[inline(always)]
    pub(crate) fn with_bytes(self, bytes: &'a [u8]) -> Self {
        Self { bytes, ..self }
    }

    /// Whether the matrix fits `rows` × `len` inputs (rounded up to 4).
    fn check_shape(self, len: usize, rows: usize) -> Result<(), KernelError> {
        let cols = len.div_ceil(GROUP) * GROUP;
        if rows.is_multiple_of(TILE_ROWS)
            && rows.checked_mul(cols).map(|n| n * self.weights.bits() / 8) == Some(self.bytes.len())
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

    /// `out += W · x` on `A` for the chunk of `x` gathered in `groups`, without the 4-bit
    /// weights' offset (see [`Self::excess`]); only weights of the `KINDS` (a set of
    /// [`kinds`](crate::kinds)) are walked, so that a build for fewer kinds leaves the others'
    /// walks out (a model is refused at load if it has others).
    ///
    /// # Safety
    /// As [`Arch::rows`] / [`Arch::rows4`].
    #[inline(always)]
    pub(crate) unsafe fn walk<A: Arch, const KINDS: u8>(
        self,
        groups: &Groups<A::Group>,
        out: &mut [i32],
    ) {
        match self.weights {
            // SAFETY: the caller's guarantee, passed on.
            Weights::Int4 if kinds::has(KINDS, kinds::INT4) => unsafe {
                A::rows4(self.bytes, groups, out)
            },
            // SAFETY: as above.
            Weights::Int8 if kinds::has(KINDS, kinds::INT8) => unsafe {
                A::rows(bytemuck::must_cast_slice(self.bytes), groups, out)
            },
            _ => {}
        }
    }

    /// [`Self::walk`] for four vectors.
    ///
    /// # Safety
    /// As [`BatchArch::rows_x4`] / [`BatchArch::rows4_x4`].
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) unsafe fn walk_x4<A: BatchArch, const KINDS: u8>(
        self,
        groups: &Groups<A::Group4>,
        outs: [&mut [i32]; 4],
    ) {
        match self.weights {
            // SAFETY: the caller's guarantee, passed on.
            Weights::Int4 if kinds::has(KINDS, kinds::INT4) => unsafe {
                A::rows4_x4(self.bytes, groups, outs)
            },
            // SAFETY: as above.
            Weights::Int8 if kinds::has(KINDS, kinds::INT8) => unsafe {
                A::rows_x4(bytemuck::must_cast_slice(self.bytes), groups, outs)
            },
            _ => {}
        }
    }

    /// What the 4-bit weights' offset adds to every row's sum with `x`: `NIBBLE_OFFSET · Σ x`
    /// (0 for int8 weights), to take off the accumulators first.
    #[inline(always)]
    pub(crate) fn excess(self, x: &[u8]) -> i32 {
        if self.weights == Weights::Int4 {
            let sum: u32 = x.iter().map(|&v| u32::from(v)).sum();
            (sum as i32).wrapping_mul(NIBBLE_OFFSET)
        } else {
            0
        }
    }

    /// Takes [`Self::excess`] of `x` off each of `out`.
    #[inline(always)]
    fn take_excess(self, x: &[u8], out: &mut [i32]) {
        let excess = self.excess(x);
        for o in out.iter_mut() {
            *o = o.wrapping_sub(excess);
        }
    }
}

/// One vector against a matrix; shapes checked by the caller.
struct MatVec<'a, 'o>(Matrix<'a>, &'a [u8], &'o mut [i32]);

impl ArchOp for MatVec<'_, '_> {
    type Output = ();
    unsafe fn run<A: Arch>(self) {
        let MatVec(w, x, out) = self;
        w.take_excess(x, out);
        let mut groups = Groups::new();
        groups.walk_chunks(
            x.len(),
            // SAFETY: the CPU by `dispatch`'s caller.
            |g, from| unsafe { g.gather::<A>(x, from) },
            // SAFETY: shapes checked by the caller, the CPU by `dispatch`'s caller.
            |g| unsafe { w.walk::<A, { kinds::ALL }>(g, out) },
        );
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
        let BatchOp { w, xs, mut outs } = self;
        for (x, out) in xs.iter().zip(outs.iter_mut()) {
            w.take_excess(x, out);
        }
        let mut groups = Groups::new();
        groups.walk_chunks(
            xs[0].len(),
            |g, from| g.gather4::<A>(xs, from),
            |g| {
                let outs = outs.each_mut().map(|o| &mut **o);
                // SAFETY: as above.
                unsafe { w.walk_x4::<A, { kinds::ALL }>(g, outs) }
            },
        );
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
            assert_eq!(matvec(kernel, &w, &[0; 9], &mut out), shape);
            assert_eq!(matvec(kernel, &w[..127], &[0; 8], &mut out), shape);
            assert_eq!(matvec(kernel, &w, &[0; 8], &mut out[..15]), shape);
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
