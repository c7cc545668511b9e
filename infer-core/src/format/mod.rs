//! The model file: written once by [`write`](mod@write) (the trainer's side), validated once by
//! [`Int8Model::from_bytes`], [`Int4Model::from_bytes`] or [`F32Model::from_bytes`], then read in place (zero-copy, O(1) RAM,
//! works on `&'static [u8]` in flash). After validation no accessor can fail or panic.
//! [`peek_kind`] tells a file's kind without validating it.
//!
//! # Layout
//!
//! A file is a [postcard](https://docs.rs/postcard) encoding of the fields below, in order,
//! followed by a CRC-32 (ISO-HDLC, the zlib/PNG one) of everything before it, little-endian.
//! postcard writes `u8` and `[u8; 4]` as raw bytes, `u16`/`u32` as LEB128 varints, `f32` as 4 bytes
//! little-endian, and a byte section as a varint length followed by the bytes. Inside sections,
//! numbers are little-endian.
//!
//! | offset | field | encoding |
//! | --- | --- | --- |
//! | 0 | magic | `b"MNML"` |
//! | 4 | format version | u8, `2` |
//! | 5 | kind | u8: `1` int8, `2` f32, `3` int4 |
//! | 6 | inputs, hidden, classes | three varints: 784, 512, 10 |
//! | … | sections | see below, each `varint length ‖ bytes` |
//! | end − 4 | CRC-32 of bytes `0..end−4` | u32 little-endian |
//!
//! Sections of an **int8** file (kind 1), `H` = 512 hidden units, `C` = 10 classes, `P` = 16
//! (classes padded to a whole [tile](crate::kernels#weight-layout) of rows; padding rows have
//! zero weights and bias, scale 1):
//!
//! | section | bytes | content |
//! | --- | --- | --- |
//! | `hidden_scale` | 4 | f32: real value of one step of the u8 hidden activations |
//! | `w1_scale` | 4·H | f32 per hidden unit: weight scale |
//! | `b1` | 4·H | i32 per hidden unit, at scale `w1_scale / 255` |
//! | `m1` | 4·H | i32 per hidden unit: requantization multiplier |
//! | `s1` | H | u8 per hidden unit: requantization shift ([33–62](crate::quant::SHIFTS)) |
//! | `w2_scale` | 4·P | f32 per output row |
//! | `b2` | 4·P | i32 per output row, at scale `hidden_scale · w2_scale` |
//! | `pad` | 0–63 | zeros, so that `w1` starts 64-byte aligned in the file |
//! | `w1` | H·784 | i8 weights, [tiled](crate::kernels#weight-layout) |
//! | `pad` | 0–63 | zeros |
//! | `w2` | P·512 | i8 weights, tiled |
//!
//! An **int4** file (kind 3) has the int8 file's sections, with 4-bit weights: `w1` is H·784/2
//! bytes and `w2` P·512/2, in the kernels' [4-bit tiles](crate::kernels#4-bit-weights) (each
//! weight `w` in −8…7 stored as the nibble `w + 8`); the scales, biases and requantization mean
//! the same (a weight's real value is `w · w1_scale`). Its `w1_scale` section is empty: the
//! weight scales follow from what the integer path uses, `w1_scale = m1 · 2^−s1 ·
//! hidden_scale · 255` (to the multiplier's 31 bits), and the 2 KB they would take keep the file
//! under 210 kB, for 256 KB parts.
//!
//! Version 1 stored the weights in 4-row blocks, padded the classes to 12 and allowed shifts from
//! 1; its files are refused with [`FormatError::UnsupportedVersion`] (re-export them with the
//! trainer of this version).
//!
//! Sections of an **f32** file (kind 2), each preceded by a `pad` section that aligns it:
//! `b1` (4·H, f32), `b2` (4·C, f32), `w1` (4·784·H, f32, input-major: `w1[k·H + j]`), `w2`
//! (4·C·H, f32, class-major: `w2[c·H + j]`).
//!
//! The weight sections must lie 4-byte aligned in memory (the Cortex-M kernel loads them by
//! words): the file aligns them to 64 bytes, so any buffer that starts 4-byte aligned passes.
//! A buffer that starts 64-byte aligned is fastest (each weight tile one cache line):
//! [`include_model!`](crate::include_model) for a file embedded in the program.

mod read;
pub mod write;

use core::fmt;

pub use read::{Bits, Bits4, Bits8, F32Model, Int4Model, Int8Model, QuantModel};

use crate::kernels::TILE_ROWS;
use crate::{CLASSES, HIDDEN, INPUTS};

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"MNML";
/// The format version this crate reads and writes.
pub const VERSION: u8 = 2;
/// The largest scale an int8 file may hold (2^40). With it, no input can make a logit or a
/// probability NaN or infinite: a class's real logit is at most 2^31 · 2^40 · 2^40 = 2^111 in
/// magnitude, far inside f32's range. A trained network's scales are below 1.
pub const MAX_SCALE: f32 = (1u64 << 40) as f32;

/// The largest magnitude of an f32 file's weights and biases (2^20). With it, no input in
/// [0, 1] can make the forward pass overflow: hidden values stay below 785 · 2^20 < 2^30 and
/// logits below 2^20 + 512 · 2^30 · 2^20 < 2^60, so logits and probabilities are always finite. A
/// trained network's weights are below 10.
pub const MAX_F32_WEIGHT: f32 = (1u32 << 20) as f32;

/// Output rows of the int8 second layer: [`CLASSES`] padded to a whole tile of rows.
pub const CLASSES_PADDED: usize = CLASSES.div_ceil(TILE_ROWS) * TILE_ROWS;
/// Alignment of the weight sections within the file.
///
/// 64 bytes, a cache line: each 64-byte weight tile is then one line, not two (a tile split
/// across lines doubles the memory traffic of the bandwidth-bound kernels). A buffer that starts
/// 64-byte aligned keeps it so in memory ([`crate::include_model!`], the trainer's loader).
pub const SECTION_ALIGN: usize = 64;

/// Byte-at-a-time tables (1 KiB) on microcontrollers, where flash is scarce; slice-by-16 (16 KiB,
/// several times faster) elsewhere. Same CRC either way.
#[cfg(target_os = "none")]
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
#[cfg(not(target_os = "none"))]
const CRC: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
const CRC_LEN: usize = 4;
/// Magic, version and kind.
const PREAMBLE_LEN: usize = 6;

/// Which network a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ModelKind {
    /// Integer-only int8 weights (kind byte 1).
    Int8,
    /// f32 weights (kind byte 2).
    F32,
    /// Integer-only int4 weights (kind byte 3).
    Int4,
}

impl ModelKind {
    /// The kind byte in the file.
    pub const fn byte(self) -> u8 {
        match self {
            ModelKind::Int8 => 1,
            ModelKind::F32 => 2,
            ModelKind::Int4 => 3,
        }
    }

    /// The kind of a kind byte.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(ModelKind::Int8),
            2 => Some(ModelKind::F32),
            3 => Some(ModelKind::Int4),
            _ => None,
        }
    }

    /// "int8", "f32" or "int4".
    pub const fn name(self) -> &'static str {
        match self {
            ModelKind::Int8 => "int8",
            ModelKind::F32 => "f32",
            ModelKind::Int4 => "int4",
        }
    }
}

/// Why a byte string is not a valid model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FormatError {
    /// Shorter than the smallest possible file.
    Truncated {
        /// Bytes needed at least.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// A format version this crate does not read.
    UnsupportedVersion(u8),
    /// A valid file of another kind (an f32 model where int8 was expected, …), or an unknown kind
    /// byte.
    WrongKind(u8),
    /// The CRC-32 at the end does not match the contents.
    CrcMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the contents.
        computed: u32,
    },
    /// The fields do not decode (a section runs past the end, or bytes follow the last one).
    Malformed,
    /// Not the 784 → 512 → 10 network.
    WrongShape {
        /// Inputs, hidden units, classes in the file.
        found: [u32; 3],
    },
    /// A section of the wrong length.
    SectionLength {
        /// The section's name as in the format table.
        section: &'static str,
        /// Bytes it must have.
        expected: usize,
        /// Bytes it has.
        got: usize,
    },
    /// A weight section not 4-byte aligned in memory.
    Misaligned {
        /// The section.
        section: &'static str,
    },
    /// A scale that is zero, negative, NaN, infinite or above [`MAX_SCALE`].
    BadScale {
        /// The section.
        section: &'static str,
        /// Position within it.
        index: usize,
    },
    /// An f32 weight or bias that is NaN, infinite or beyond ±[`MAX_F32_WEIGHT`] (or, when
    /// writing, an int4 weight outside −8…7).
    BadWeight {
        /// The section.
        section: &'static str,
        /// Position within it.
        index: usize,
    },
    /// A requantization multiplier ≤ 0 or a shift outside [`crate::quant::SHIFTS`].
    BadRequantization {
        /// Hidden unit.
        index: usize,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FormatError::Truncated { needed, got } => {
                write!(
                    f,
                    "truncated: {got} bytes, a model file has at least {needed}"
                )
            }
            FormatError::BadMagic => write!(f, "not a model file (bad magic)"),
            FormatError::UnsupportedVersion(v) => write!(
                f,
                "format version {v} is not supported (this build reads version {VERSION}); \
                 re-export the model with this version's trainer (`cargo run -p trainer`)"
            ),
            FormatError::WrongKind(k) => write!(f, "model kind {k} is not the one expected"),
            FormatError::CrcMismatch { stored, computed } => write!(
                f,
                "CRC mismatch: file says {stored:#010x}, contents give {computed:#010x}"
            ),
            FormatError::Malformed => write!(f, "malformed fields"),
            FormatError::WrongShape { found } => write!(
                f,
                "shape {}-{}-{} is not {INPUTS}-{HIDDEN}-{CLASSES}",
                found[0], found[1], found[2]
            ),
            FormatError::SectionLength {
                section,
                expected,
                got,
            } => write!(f, "section {section} has {got} bytes, expected {expected}"),
            FormatError::Misaligned { section } => {
                write!(f, "section {section} is not 4-byte aligned in memory")
            }
            // The bounds as text: formatting an f32 would bring float formatting (over 10 KB)
            // into every firmware that reports a format error.
            FormatError::BadScale { section, index } => {
                write!(f, "{section}[{index}] is not a positive scale up to 2^40")
            }
            FormatError::BadWeight { section, index } => {
                write!(f, "{section}[{index}] is not a finite weight within ±2^20")
            }
            FormatError::BadRequantization { index } => {
                write!(f, "requantization of hidden unit {index} is out of range")
            }
        }
    }
}

impl core::error::Error for FormatError {}

/// Magic, version and kind of a file, without validating the rest: which of
/// [`Int8Model::from_bytes`], [`Int4Model::from_bytes`] and [`F32Model::from_bytes`] applies.
pub fn peek_kind(bytes: &[u8]) -> Result<ModelKind, FormatError> {
    let (Some(magic), Some(&version), Some(&kind)) = (bytes.get(..4), bytes.get(4), bytes.get(5))
    else {
        return Err(FormatError::Truncated {
            needed: PREAMBLE_LEN + CRC_LEN,
            got: bytes.len(),
        });
    };
    if magic != MAGIC {
        return Err(FormatError::BadMagic);
    }
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    ModelKind::from_byte(kind).ok_or(FormatError::WrongKind(kind))
}

/// The CRC-32 that ends a file, of `bytes` (all that precede it).
pub fn checksum(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}
