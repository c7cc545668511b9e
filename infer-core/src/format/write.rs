//! Writing model files (the trainer's side), into a caller-provided buffer: the parts come in
//! plain row-major order, and the writer pads the output layer and lays the weights out in the
//! kernels' [tiles](crate::kernels#weight-layout).

use super::{CLASSES_PADDED, CRC, FormatError, MAGIC, ModelKind, SECTION_ALIGN, VERSION};
use crate::kernels::{GROUP, NIBBLE_OFFSET, TILE_BYTES, TILE_ROWS, TILE4_BYTES};
use crate::{CLASSES, HIDDEN, INPUTS};

/// What an int8 or int4 file holds, unpacked, in row-major order; the writer pads the output
/// layer to [`CLASSES_PADDED`] rows (zero weights and biases, scale 1) and tiles the weights
/// (packing them two per byte for [`int4`]).
#[derive(Debug, Clone, Copy)]
pub struct QuantParts<'p> {
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
    /// `CLASSES` scales.
    pub w2_scale: &'p [f32],
    /// `CLASSES` biases.
    pub b2: &'p [i32],
    /// `HIDDEN × INPUTS`, row-major: `w1[j·INPUTS + k]` weighs input `k` for hidden unit `j`
    /// (−8…7 for [`int4`]).
    pub w1: &'p [i8],
    /// `CLASSES × HIDDEN`, row-major: `w2[c·HIDDEN + j]`.
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
    /// The next `n` bytes of the buffer, which the caller fills: the offset moves past them.
    fn next(&mut self, n: usize) -> Result<&mut [u8], FormatError> {
        let (start, end, got) = (self.pos, self.pos + n, self.buf.len());
        self.pos = end;
        self.buf
            .get_mut(start..end)
            .ok_or(FormatError::Truncated { needed: end, got })
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        self.next(bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }

    fn varint(&mut self, v: u32) -> Result<(), FormatError> {
        let mut tmp = [0u8; 5];
        let used = postcard::to_slice(&v, &mut tmp).map_err(|_| FormatError::Malformed)?;
        let used = used.len();
        self.raw(tmp.get(..used).ok_or(FormatError::Malformed)?)
    }

    fn section<T: LeBytes>(&mut self, values: &[T]) -> Result<(), FormatError> {
        self.section_from(values.len(), values.iter().copied())
    }

    /// A section of `len` values from `values` (which must yield that many).
    fn section_from<T: LeBytes>(
        &mut self,
        len: usize,
        values: impl Iterator<Item = T>,
    ) -> Result<(), FormatError> {
        self.varint((len * T::SIZE) as u32)?;
        let start = self.pos;
        for v in values.take(len) {
            v.put(self.next(T::SIZE)?);
        }
        if self.pos - start == len * T::SIZE {
            Ok(())
        } else {
            Err(FormatError::Malformed)
        }
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
/// Upper bound of an encoded int4 file's size.
pub const MAX_INT4_LEN: usize =
    MAX_INT8_LEN - (HIDDEN * INPUTS + CLASSES_PADDED * HIDDEN) / 2 - 4 * HIDDEN;
/// Upper bound of an encoded f32 file's size.
pub const MAX_F32_LEN: usize =
    64 + 4 * SECTION_ALIGN + 4 * (HIDDEN + CLASSES + INPUTS * HIDDEN + CLASSES * HIDDEN) + 40;

/// `rows × cols` row-major weights (`rows` a multiple of 16 or padded to it with zeros) in the
/// kernels' tile order.
fn tiled(w: &[i8], rows: usize, cols: usize) -> impl Iterator<Item = i8> + '_ {
    let padded = rows.div_ceil(TILE_ROWS) * TILE_ROWS;
    (0..padded * cols).map(move |i| {
        let (block, in_block) = (i / (TILE_ROWS * cols), i % (TILE_ROWS * cols));
        let (group, in_tile) = (in_block / TILE_BYTES, in_block % TILE_BYTES);
        let row = block * TILE_ROWS + in_tile / GROUP;
        let col = group * GROUP + in_tile % GROUP;
        if row < rows {
            w.get(row * cols + col).copied().unwrap_or(0)
        } else {
            0
        }
    })
}

/// `rows × cols` row-major 4-bit weights (−8…7, checked by the caller), padded to whole tiles of
/// rows with zeros, packed in the kernels' [4-bit tiles](crate::kernels#4-bit-weights).
fn tiled4(w: &[i8], rows: usize, cols: usize) -> impl Iterator<Item = u8> + '_ {
    let padded = rows.div_ceil(TILE_ROWS) * TILE_ROWS;
    let nibble = move |row: usize, col: usize| {
        let w = if row < rows {
            w.get(row * cols + col).copied().unwrap_or(0)
        } else {
            0
        };
        (i32::from(w) + NIBBLE_OFFSET) as u8 & 0x0f
    };
    (0..padded * cols / 2).map(move |i| {
        let (block, in_block) = (i / (TILE_ROWS / 2 * cols), i % (TILE_ROWS / 2 * cols));
        let (group, in_tile) = (in_block / TILE4_BYTES, in_block % TILE4_BYTES);
        let row = block * TILE_ROWS + in_tile / GROUP;
        let col = group * GROUP + in_tile % GROUP;
        nibble(row, col) | nibble(row + TILE_ROWS / 2, col) << 4
    })
}

/// Encodes an int8 model into `out`; returns the bytes written.
pub fn int8(parts: &QuantParts<'_>, out: &mut [u8]) -> Result<usize, FormatError> {
    quant(parts, ModelKind::Int8, out)
}

/// Encodes an int4 model into `out` (every weight in −8…7, else [`FormatError::BadWeight`]);
/// returns the bytes written.
pub fn int4(parts: &QuantParts<'_>, out: &mut [u8]) -> Result<usize, FormatError> {
    for (section, w) in [("w1", parts.w1), ("w2", parts.w2)] {
        if let Some(index) = w.iter().position(|v| !(-8..=7).contains(v)) {
            return Err(FormatError::BadWeight { section, index });
        }
    }
    quant(parts, ModelKind::Int4, out)
}

/// An int8 or int4 file: the same sections, the weights tiled for their width.
fn quant(parts: &QuantParts<'_>, kind: ModelKind, out: &mut [u8]) -> Result<usize, FormatError> {
    check_len("w1_scale", parts.w1_scale.len(), HIDDEN)?;
    check_len("b1", parts.b1.len(), HIDDEN)?;
    check_len("m1", parts.m1.len(), HIDDEN)?;
    check_len("s1", parts.s1.len(), HIDDEN)?;
    check_len("w2_scale", parts.w2_scale.len(), CLASSES)?;
    check_len("b2", parts.b2.len(), CLASSES)?;
    check_len("w1", parts.w1.len(), HIDDEN * INPUTS)?;
    check_len("w2", parts.w2.len(), CLASSES * HIDDEN)?;
    let padding = CLASSES_PADDED - CLASSES;
    let mut w = Writer { buf: out, pos: 0 };
    w.preamble(kind)?;
    w.raw(&parts.hidden_scale.to_le_bytes())?;
    // An int4 file derives the weight scales from the requantization (see the format docs).
    w.section(if kind == ModelKind::Int4 {
        &[]
    } else {
        parts.w1_scale
    })?;
    w.section(parts.b1)?;
    w.section(parts.m1)?;
    w.section(parts.s1)?;
    let w2_scale = parts.w2_scale.iter().copied();
    w.section_from(
        CLASSES_PADDED,
        w2_scale.chain(core::iter::repeat_n(1.0, padding)),
    )?;
    let b2 = parts.b2.iter().copied();
    w.section_from(CLASSES_PADDED, b2.chain(core::iter::repeat_n(0, padding)))?;
    let (w1_len, w2_len) = (HIDDEN * INPUTS, CLASSES_PADDED * HIDDEN);
    if kind == ModelKind::Int4 {
        w.pad_for(w1_len / 2)?;
        w.section_from(w1_len / 2, tiled4(parts.w1, HIDDEN, INPUTS))?;
        w.pad_for(w2_len / 2)?;
        w.section_from(w2_len / 2, tiled4(parts.w2, CLASSES, HIDDEN))?;
    } else {
        w.pad_for(w1_len)?;
        w.section_from(w1_len, tiled(parts.w1, HIDDEN, INPUTS))?;
        w.pad_for(w2_len)?;
        w.section_from(w2_len, tiled(parts.w2, CLASSES, HIDDEN))?;
    }
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
