//! The model file: written once by the trainer, validated once by [`Int8Model::from_bytes`] or
//! [`F32Model::from_bytes`], then read in place (zero-copy, O(1) RAM, works on `&'static [u8]` in
//! flash). After validation no accessor can fail or panic.
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
//! | 4 | format version | u8, `1` |
//! | 5 | kind | u8: `1` int8, `2` f32 |
//! | 6 | inputs, hidden, classes | three varints: 784, 512, 10 |
//! | … | sections | see below, each `varint length ‖ bytes` |
//! | end − 4 | CRC-32 of bytes `0..end−4` | u32 little-endian |
//!
//! Sections of an **int8** file (kind 1), `H` = 512 hidden units, `C` = 10 classes, `P` = 12
//! (classes padded to a multiple of 4, padding rows all zero):
//!
//! | section | bytes | content |
//! | --- | --- | --- |
//! | `hidden_scale` | 4 | f32: real value of one step of the u8 hidden activations |
//! | `w1_scale` | 4·H | f32 per hidden unit: weight scale |
//! | `b1` | 4·H | i32 per hidden unit, at scale `w1_scale / 255` |
//! | `m1` | 4·H | i32 per hidden unit: requantization multiplier |
//! | `s1` | H | u8 per hidden unit: requantization shift (1–62) |
//! | `w2_scale` | 4·P | f32 per output row |
//! | `b2` | 4·P | i32 per output row, at scale `hidden_scale · w2_scale` |
//! | `pad` | 0–15 | zeros, so that `w1` starts 16-byte aligned in the file |
//! | `w1` | H·784 | i8 weights, [blocked](crate::kernels#weight-layout) |
//! | `pad` | 0–15 | zeros |
//! | `w2` | P·512 | i8 weights, blocked |
//!
//! Sections of an **f32** file (kind 2), each preceded by a `pad` section that aligns it:
//! `b1` (4·H, f32), `b2` (4·C, f32), `w1` (4·784·H, f32, input-major: `w1[k·H + j]`), `w2`
//! (4·C·H, f32, class-major: `w2[c·H + j]`).
//!
//! The weight sections must lie 4-byte aligned in memory (the Cortex-M kernel loads them with
//! `ldm`): the file aligns them to 16 bytes, so a buffer that starts 16-byte aligned (the
//! firmware's `include_bytes!` wrapper, or any heap allocation on a desktop OS) always passes.

use core::fmt;

use serde::Deserialize;

use crate::{CLASSES, HIDDEN, INPUTS};

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"MNML";
/// The format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Output rows of the int8 second layer: [`CLASSES`] padded to a whole block of 4.
pub const CLASSES_PADDED: usize = CLASSES.div_ceil(4) * 4;
/// Alignment of the weight sections within the file.
pub const SECTION_ALIGN: usize = 16;

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
}

impl ModelKind {
    /// The kind byte in the file.
    pub const fn byte(self) -> u8 {
        match self {
            ModelKind::Int8 => 1,
            ModelKind::F32 => 2,
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
    /// A valid file of the other kind (an f32 model where int8 was expected, or the reverse), or an
    /// unknown kind byte.
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
    /// A scale that is zero, negative, NaN or infinite.
    BadScale {
        /// The section.
        section: &'static str,
        /// Position within it.
        index: usize,
    },
    /// A requantization multiplier ≤ 0 or a shift outside 1–62.
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
            FormatError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "format version {v} is not supported (this build reads {VERSION})"
                )
            }
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
            FormatError::BadScale { section, index } => {
                write!(f, "{section}[{index}] is not a finite positive scale")
            }
            FormatError::BadRequantization { index } => {
                write!(f, "requantization of hidden unit {index} is out of range")
            }
        }
    }
}

impl core::error::Error for FormatError {}

/// The fields every file starts with, after the preamble.
#[derive(Deserialize)]
struct Shape {
    inputs: u32,
    hidden: u32,
    classes: u32,
}

#[derive(Deserialize)]
struct Int8Sections<'a> {
    shape: Shape,
    hidden_scale: f32,
    w1_scale: &'a [u8],
    b1: &'a [u8],
    m1: &'a [u8],
    s1: &'a [u8],
    w2_scale: &'a [u8],
    b2: &'a [u8],
    _pad1: &'a [u8],
    w1: &'a [u8],
    _pad2: &'a [u8],
    w2: &'a [u8],
}

#[derive(Deserialize)]
struct F32Sections<'a> {
    shape: Shape,
    _pad0: &'a [u8],
    b1: &'a [u8],
    _pad1: &'a [u8],
    b2: &'a [u8],
    _pad2: &'a [u8],
    w1: &'a [u8],
    _pad3: &'a [u8],
    w2: &'a [u8],
}

/// The CRC-32 that ends a file, of `bytes` (all that precede it).
pub fn checksum(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

/// Checks the preamble and the CRC; returns the postcard-encoded fields after the preamble.
fn open(bytes: &[u8], kind: ModelKind) -> Result<&[u8], FormatError> {
    let min = PREAMBLE_LEN + CRC_LEN;
    let (Some(magic), Some(&version), Some(&kind_byte)) =
        (bytes.get(..4), bytes.get(4), bytes.get(5))
    else {
        return Err(FormatError::Truncated {
            needed: min,
            got: bytes.len(),
        });
    };
    if magic != MAGIC {
        return Err(FormatError::BadMagic);
    }
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    if kind_byte != kind.byte() {
        return Err(FormatError::WrongKind(kind_byte));
    }
    let Some(split) = bytes
        .len()
        .checked_sub(CRC_LEN)
        .filter(|&s| s >= PREAMBLE_LEN)
    else {
        return Err(FormatError::Truncated {
            needed: min,
            got: bytes.len(),
        });
    };
    let (contents, stored) = bytes.split_at(split);
    let stored = u32::from_le_bytes(stored.try_into().map_err(|_| FormatError::Malformed)?);
    let computed = CRC.checksum(contents);
    if stored != computed {
        return Err(FormatError::CrcMismatch { stored, computed });
    }
    contents.get(PREAMBLE_LEN..).ok_or(FormatError::Malformed)
}

/// Decodes all the fields; no bytes may follow them.
fn decode<'a, T: Deserialize<'a>>(fields: &'a [u8]) -> Result<T, FormatError> {
    match postcard::take_from_bytes::<T>(fields) {
        Ok((value, [])) => Ok(value),
        _ => Err(FormatError::Malformed),
    }
}

fn check_shape(shape: &Shape) -> Result<(), FormatError> {
    let found = [shape.inputs, shape.hidden, shape.classes];
    if found.map(|v| v as usize) == [INPUTS, HIDDEN, CLASSES] {
        Ok(())
    } else {
        Err(FormatError::WrongShape { found })
    }
}

/// A section of exactly `N` elements of `[u8; W]`.
fn section<'a, const W: usize, const N: usize>(
    name: &'static str,
    bytes: &'a [u8],
) -> Result<&'a [[u8; W]; N], FormatError> {
    let wrong = || FormatError::SectionLength {
        section: name,
        expected: W * N,
        got: bytes.len(),
    };
    match bytes.as_chunks::<W>() {
        (elements, []) => elements.try_into().map_err(|_| wrong()),
        _ => Err(wrong()),
    }
}

/// A weight section of exactly `N` elements of `T`, 4-byte aligned in memory.
fn weights<'a, T: bytemuck::AnyBitPattern, const N: usize>(
    name: &'static str,
    bytes: &'a [u8],
) -> Result<&'a [T; N], FormatError> {
    let expected = N * core::mem::size_of::<T>();
    if bytes.len() != expected {
        return Err(FormatError::SectionLength {
            section: name,
            expected,
            got: bytes.len(),
        });
    }
    if bytes.as_ptr().align_offset(4) != 0 {
        return Err(FormatError::Misaligned { section: name });
    }
    let elements: &[T] =
        bytemuck::try_cast_slice(bytes).map_err(|_| FormatError::Misaligned { section: name })?;
    elements.try_into().map_err(|_| FormatError::Malformed)
}

fn check_scales(name: &'static str, scales: &[[u8; 4]]) -> Result<(), FormatError> {
    match scales
        .iter()
        .map(|s| f32::from_le_bytes(*s))
        .position(|s| !(s.is_finite() && s > 0.0))
    {
        Some(index) => Err(FormatError::BadScale {
            section: name,
            index,
        }),
        None => Ok(()),
    }
}

/// A validated int8 model, borrowing the file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Int8Model<'a> {
    pub(crate) hidden_scale: f32,
    pub(crate) w1_scale: &'a [[u8; 4]; HIDDEN],
    pub(crate) b1: &'a [[u8; 4]; HIDDEN],
    pub(crate) m1: &'a [[u8; 4]; HIDDEN],
    pub(crate) s1: &'a [u8; HIDDEN],
    pub(crate) w2_scale: &'a [[u8; 4]; CLASSES_PADDED],
    pub(crate) b2: &'a [[u8; 4]; CLASSES_PADDED],
    pub(crate) w1: &'a [i8; HIDDEN * INPUTS],
    pub(crate) w2: &'a [i8; CLASSES_PADDED * HIDDEN],
}

impl<'a> Int8Model<'a> {
    /// Validates an int8 model file and borrows its sections; see the [module docs](self).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let s: Int8Sections<'a> = decode(open(bytes, ModelKind::Int8)?)?;
        check_shape(&s.shape)?;
        let model = Self {
            hidden_scale: s.hidden_scale,
            w1_scale: section("w1_scale", s.w1_scale)?,
            b1: section("b1", s.b1)?,
            m1: section("m1", s.m1)?,
            s1: section::<1, HIDDEN>("s1", s.s1)?
                .as_flattened()
                .try_into()
                .map_err(|_| FormatError::Malformed)?,
            w2_scale: section("w2_scale", s.w2_scale)?,
            b2: section("b2", s.b2)?,
            w1: weights("w1", s.w1)?,
            w2: weights("w2", s.w2)?,
        };
        if !(model.hidden_scale.is_finite() && model.hidden_scale > 0.0) {
            return Err(FormatError::BadScale {
                section: "hidden_scale",
                index: 0,
            });
        }
        check_scales("w1_scale", model.w1_scale)?;
        check_scales("w2_scale", model.w2_scale)?;
        if let Some(index) = model
            .m1
            .iter()
            .zip(model.s1)
            .position(|(m, &s)| i32::from_le_bytes(*m) <= 0 || !(1..=62).contains(&s))
        {
            return Err(FormatError::BadRequantization { index });
        }
        Ok(model)
    }

    /// Real value of one step of the u8 hidden activations.
    pub fn hidden_scale(&self) -> f32 {
        self.hidden_scale
    }

    /// Per hidden unit weight scales.
    pub fn w1_scales(&self) -> impl Iterator<Item = f32> + '_ {
        self.w1_scale.iter().map(|s| f32::from_le_bytes(*s))
    }

    /// Per class weight scales.
    pub fn w2_scales(&self) -> impl Iterator<Item = f32> + '_ {
        self.w2_scale
            .iter()
            .take(CLASSES)
            .map(|s| f32::from_le_bytes(*s))
    }
}

/// A validated f32 model, borrowing the file's bytes (or any `&[f32]` weights).
#[derive(Debug, Clone, Copy)]
pub struct F32Model<'a> {
    pub(crate) w1: &'a [f32; INPUTS * HIDDEN],
    pub(crate) b1: &'a [f32; HIDDEN],
    pub(crate) w2: &'a [f32; CLASSES * HIDDEN],
    pub(crate) b2: &'a [f32; CLASSES],
}

impl<'a> F32Model<'a> {
    /// Validates an f32 model file and borrows its sections; see the [module docs](self).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let s: F32Sections<'a> = decode(open(bytes, ModelKind::F32)?)?;
        check_shape(&s.shape)?;
        Ok(Self {
            w1: weights("w1", s.w1)?,
            b1: weights("b1", s.b1)?,
            w2: weights("w2", s.w2)?,
            b2: weights("b2", s.b2)?,
        })
    }

    /// Borrowed weights: `w1` input-major (`w1[k·512 + j]`, Keras's layout), `w2` class-major
    /// (`w2[c·512 + j]`).
    pub fn from_weights(
        w1: &'a [f32; INPUTS * HIDDEN],
        b1: &'a [f32; HIDDEN],
        w2: &'a [f32; CLASSES * HIDDEN],
        b2: &'a [f32; CLASSES],
    ) -> Self {
        Self { w1, b1, w2, b2 }
    }

    /// The weights: `(w1, b1, w2, b2)`, in the layouts of [`Self::from_weights`].
    #[allow(clippy::type_complexity)]
    pub fn weights(
        &self,
    ) -> (
        &'a [f32; INPUTS * HIDDEN],
        &'a [f32; HIDDEN],
        &'a [f32; CLASSES * HIDDEN],
        &'a [f32; CLASSES],
    ) {
        (self.w1, self.b1, self.w2, self.b2)
    }
}

/// Writing model files (the trainer's side), into a caller-provided buffer.
pub mod write {
    use super::*;

    /// What an int8 file holds, unpacked. Weight arrays are already [blocked](crate::kernels).
    #[derive(Debug, Clone, Copy)]
    pub struct Int8Parts<'p> {
        /// See the format table.
        pub hidden_scale: f32,
        /// `HIDDEN` weight scales.
        pub w1_scale: &'p [f32],
        /// `HIDDEN` biases.
        pub b1: &'p [i32],
        /// `HIDDEN` multipliers.
        pub m1: &'p [i32],
        /// `HIDDEN` shifts.
        pub s1: &'p [u8],
        /// `CLASSES_PADDED` scales.
        pub w2_scale: &'p [f32],
        /// `CLASSES_PADDED` biases.
        pub b2: &'p [i32],
        /// `HIDDEN × INPUTS`, blocked.
        pub w1: &'p [i8],
        /// `CLASSES_PADDED × HIDDEN`, blocked.
        pub w2: &'p [i8],
    }

    /// What an f32 file holds.
    #[derive(Debug, Clone, Copy)]
    pub struct F32Parts<'p> {
        /// `INPUTS × HIDDEN`, input-major.
        pub w1: &'p [f32],
        /// `HIDDEN`.
        pub b1: &'p [f32],
        /// `CLASSES × HIDDEN`, class-major.
        pub w2: &'p [f32],
        /// `CLASSES`.
        pub b2: &'p [f32],
    }

    /// A section's elements as little-endian bytes.
    trait LeBytes: Copy {
        const SIZE: usize;
        fn put(self, out: &mut [u8]);
    }
    macro_rules! le_bytes {
        ($($t:ty),*) => {$(
            impl LeBytes for $t {
                const SIZE: usize = core::mem::size_of::<$t>();
                fn put(self, out: &mut [u8]) {
                    out.copy_from_slice(&self.to_le_bytes());
                }
            }
        )*};
    }
    le_bytes!(u8, i8, i32, u32, f32);

    /// Appends fields to a buffer, postcard-encoded, tracking the offset.
    struct Writer<'b> {
        buf: &'b mut [u8],
        pos: usize,
    }

    impl Writer<'_> {
        fn raw(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
            let end = self.pos + bytes.len();
            let got = self.buf.len();
            let dst = self
                .buf
                .get_mut(self.pos..end)
                .ok_or(FormatError::Truncated { needed: end, got })?;
            dst.copy_from_slice(bytes);
            self.pos = end;
            Ok(())
        }

        fn varint(&mut self, v: u32) -> Result<(), FormatError> {
            let mut tmp = [0u8; 5];
            let used = postcard::to_slice(&v, &mut tmp).map_err(|_| FormatError::Malformed)?;
            let used = used.len();
            self.raw(tmp.get(..used).ok_or(FormatError::Malformed)?)
        }

        fn section<T: LeBytes>(&mut self, values: &[T]) -> Result<(), FormatError> {
            self.varint((values.len() * T::SIZE) as u32)?;
            for &v in values {
                let end = self.pos + T::SIZE;
                let got = self.buf.len();
                let dst = self
                    .buf
                    .get_mut(self.pos..end)
                    .ok_or(FormatError::Truncated { needed: end, got })?;
                v.put(dst);
                self.pos = end;
            }
            Ok(())
        }

        /// A zero padding section such that a following section of `len` bytes starts aligned.
        fn pad_for(&mut self, len: usize) -> Result<(), FormatError> {
            let varint_len = |v: usize| {
                if v < 128 {
                    1
                } else {
                    (usize::BITS - v.leading_zeros()).div_ceil(7) as usize
                }
            };
            let pad = (0..SECTION_ALIGN)
                .find(|p| (self.pos + 1 + p + varint_len(len)).is_multiple_of(SECTION_ALIGN))
                .unwrap_or(0);
            self.section([0u8; SECTION_ALIGN].get(..pad).unwrap_or(&[]))
        }

        fn preamble(&mut self, kind: ModelKind) -> Result<(), FormatError> {
            self.raw(&MAGIC)?;
            self.raw(&[VERSION, kind.byte()])?;
            for v in [INPUTS, HIDDEN, CLASSES] {
                self.varint(v as u32)?;
            }
            Ok(())
        }

        fn finish(mut self) -> Result<usize, FormatError> {
            let crc = CRC.checksum(self.buf.get(..self.pos).ok_or(FormatError::Malformed)?);
            self.raw(&crc.to_le_bytes())?;
            Ok(self.pos)
        }
    }

    fn check_len(section: &'static str, got: usize, expected: usize) -> Result<(), FormatError> {
        if got == expected {
            Ok(())
        } else {
            Err(FormatError::SectionLength {
                section,
                expected,
                got,
            })
        }
    }

    /// Upper bound of an encoded file's size, for sizing the buffer.
    pub const MAX_INT8_LEN: usize = 64
        + 2 * SECTION_ALIGN
        + 4
        + 4 * HIDDEN * 3
        + HIDDEN
        + 8 * CLASSES_PADDED
        + HIDDEN * INPUTS
        + CLASSES_PADDED * HIDDEN
        + 40;
    /// Upper bound of an encoded f32 file's size.
    pub const MAX_F32_LEN: usize =
        64 + 2 * SECTION_ALIGN + 4 * (HIDDEN + CLASSES + INPUTS * HIDDEN + CLASSES * HIDDEN) + 40;

    /// Encodes an int8 model into `out`; returns the bytes written.
    pub fn int8(parts: &Int8Parts<'_>, out: &mut [u8]) -> Result<usize, FormatError> {
        check_len("w1_scale", parts.w1_scale.len(), HIDDEN)?;
        check_len("b1", parts.b1.len(), HIDDEN)?;
        check_len("m1", parts.m1.len(), HIDDEN)?;
        check_len("s1", parts.s1.len(), HIDDEN)?;
        check_len("w2_scale", parts.w2_scale.len(), CLASSES_PADDED)?;
        check_len("b2", parts.b2.len(), CLASSES_PADDED)?;
        check_len("w1", parts.w1.len(), HIDDEN * INPUTS)?;
        check_len("w2", parts.w2.len(), CLASSES_PADDED * HIDDEN)?;
        let mut w = Writer { buf: out, pos: 0 };
        w.preamble(ModelKind::Int8)?;
        w.raw(&parts.hidden_scale.to_le_bytes())?;
        w.section(parts.w1_scale)?;
        w.section(parts.b1)?;
        w.section(parts.m1)?;
        w.section(parts.s1)?;
        w.section(parts.w2_scale)?;
        w.section(parts.b2)?;
        w.pad_for(parts.w1.len())?;
        w.section(parts.w1)?;
        w.pad_for(parts.w2.len())?;
        w.section(parts.w2)?;
        w.finish()
    }

    /// Encodes an f32 model into `out`; returns the bytes written.
    pub fn f32(parts: &F32Parts<'_>, out: &mut [u8]) -> Result<usize, FormatError> {
        check_len("w1", parts.w1.len(), INPUTS * HIDDEN)?;
        check_len("b1", parts.b1.len(), HIDDEN)?;
        check_len("w2", parts.w2.len(), CLASSES * HIDDEN)?;
        check_len("b2", parts.b2.len(), CLASSES)?;
        let mut w = Writer { buf: out, pos: 0 };
        w.preamble(ModelKind::F32)?;
        // The biases are read as f32 in place too, so every section is aligned.
        w.pad_for(4 * HIDDEN)?;
        w.section(parts.b1)?;
        w.pad_for(4 * CLASSES)?;
        w.section(parts.b2)?;
        w.pad_for(4 * INPUTS * HIDDEN)?;
        w.section(parts.w1)?;
        w.pad_for(4 * CLASSES * HIDDEN)?;
        w.section(parts.w2)?;
        w.finish()
    }
}
