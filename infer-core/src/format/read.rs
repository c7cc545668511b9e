//! Reading: validation once, then zero-copy views of the sections.

use serde::Deserialize;

use super::{CLASSES_PADDED, CRC, CRC_LEN, FormatError, ModelKind, PREAMBLE_LEN, peek_kind};
use super::{MAX_F32_WEIGHT, MAX_SCALE};
use crate::{CLASSES, HIDDEN, INPUTS};

/// The fields every file starts with, after the preamble.
#[derive(Deserialize)]
struct Shape {
    inputs: u32,
    hidden: u32,
    classes: u32,
}

/// The sections of an integer (int8 or int4) file.
#[derive(Deserialize)]
struct QuantSections<'a> {
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

/// Checks the preamble and the CRC; returns the postcard-encoded fields after the preamble.
fn open(bytes: &[u8], kind: ModelKind) -> Result<&[u8], FormatError> {
    let min = PREAMBLE_LEN + CRC_LEN;
    let found = peek_kind(bytes)?;
    if found != kind {
        return Err(FormatError::WrongKind(found.byte()));
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
    let bytes = packed(name, bytes, N * core::mem::size_of::<T>(), 8)?;
    let elements: &[T] =
        bytemuck::try_cast_slice(bytes).map_err(|_| FormatError::Misaligned { section: name })?;
    elements.try_into().map_err(|_| FormatError::Malformed)
}

fn check_scales(name: &'static str, scales: &[[u8; 4]]) -> Result<(), FormatError> {
    match scales
        .iter()
        .map(|s| f32::from_le_bytes(*s))
        .position(|s| !(s > 0.0 && s <= MAX_SCALE))
    {
        Some(index) => Err(FormatError::BadScale {
            section: name,
            index,
        }),
        None => Ok(()),
    }
}

/// The weight width of a [`QuantModel`]: [`Bits8`] or [`Bits4`] (sealed: no other).
pub trait Bits: sealed::Sealed + Copy + core::fmt::Debug {
    /// The file kind of such a model.
    const KIND: ModelKind;
    /// Bits per weight.
    const BITS: usize;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Bits8 {}
    impl Sealed for super::Bits4 {}
}

/// int8 weights, one per byte ([`Int8Model`]).
#[derive(Debug, Clone, Copy)]
pub struct Bits8;

/// int4 weights, two per byte ([`Int4Model`]).
#[derive(Debug, Clone, Copy)]
pub struct Bits4;

impl Bits for Bits8 {
    const KIND: ModelKind = ModelKind::Int8;
    const BITS: usize = 8;
}

impl Bits for Bits4 {
    const KIND: ModelKind = ModelKind::Int4;
    const BITS: usize = 4;
}

/// A validated integer-only model with `B`-bit weights, borrowing the file's bytes:
/// [`Int8Model`] or [`Int4Model`]. Both run the same forward pass; only the weight tiles differ.
#[derive(Debug, Clone, Copy)]
pub struct QuantModel<'a, B: Bits> {
    pub(crate) hidden_scale: f32,
    /// `HIDDEN` scales in an int8 file; none in an int4 one (derived, see the format docs).
    pub(crate) w1_scale: &'a [[u8; 4]],
    pub(crate) b1: &'a [[u8; 4]; HIDDEN],
    pub(crate) m1: &'a [[u8; 4]; HIDDEN],
    pub(crate) s1: &'a [u8; HIDDEN],
    pub(crate) w2_scale: &'a [[u8; 4]; CLASSES_PADDED],
    pub(crate) b2: &'a [[u8; 4]; CLASSES_PADDED],
    /// `HIDDEN × INPUTS` weights of `B` bits, tiled.
    pub(crate) w1: &'a [u8],
    /// `CLASSES_PADDED × HIDDEN` weights of `B` bits, tiled.
    pub(crate) w2: &'a [u8],
    pub(crate) bits: core::marker::PhantomData<B>,
}

/// A validated int8 model (file kind 1).
pub type Int8Model<'a> = QuantModel<'a, Bits8>;

/// A validated int4 model (file kind 3): half the weight bytes of an int8 one.
pub type Int4Model<'a> = QuantModel<'a, Bits4>;

/// A weight section of `elements` weights of `bits` bits, 4-byte aligned in memory.
fn packed<'a>(
    name: &'static str,
    bytes: &'a [u8],
    elements: usize,
    bits: usize,
) -> Result<&'a [u8], FormatError> {
    let expected = elements * bits / 8;
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
    Ok(bytes)
}

impl<'a, B: Bits> QuantModel<'a, B> {
    /// Validates an int8 (or, for [`Int4Model`], int4) model file and borrows its sections; see
    /// the [format docs](crate::format).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let s: QuantSections<'a> = decode(open(bytes, B::KIND)?)?;
        check_shape(&s.shape)?;
        let model = Self {
            hidden_scale: s.hidden_scale,
            w1_scale: if B::BITS == 4 {
                section::<4, 0>("w1_scale", s.w1_scale)?
            } else {
                section::<4, HIDDEN>("w1_scale", s.w1_scale)?
            },
            b1: section("b1", s.b1)?,
            m1: section("m1", s.m1)?,
            s1: section::<1, HIDDEN>("s1", s.s1)?
                .as_flattened()
                .try_into()
                .map_err(|_| FormatError::Malformed)?,
            w2_scale: section("w2_scale", s.w2_scale)?,
            b2: section("b2", s.b2)?,
            w1: packed("w1", s.w1, HIDDEN * INPUTS, B::BITS)?,
            w2: packed("w2", s.w2, CLASSES_PADDED * HIDDEN, B::BITS)?,
            bits: core::marker::PhantomData,
        };
        if !(model.hidden_scale > 0.0 && model.hidden_scale <= MAX_SCALE) {
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
            .position(|(m, s)| i32::from_le_bytes(*m) <= 0 || !crate::quant::SHIFTS.contains(s))
        {
            return Err(FormatError::BadRequantization { index });
        }
        Ok(model)
    }

    /// Real value of one step of the u8 hidden activations.
    pub fn hidden_scale(&self) -> f32 {
        self.hidden_scale
    }

    /// Per hidden unit weight scales: stored in an int8 file, derived from the requantization in
    /// an int4 one (`m1 · 2^−s1 · hidden_scale · 255`).
    pub fn w1_scales(&self) -> impl Iterator<Item = f32> + '_ {
        let stored = self.w1_scale.iter().map(|s| f32::from_le_bytes(*s));
        let derived = self.m1.iter().zip(self.s1).map(|(m, &s)| {
            let factor = f64::from(i32::from_le_bytes(*m)) / libm::exp2(f64::from(s));
            (factor * f64::from(self.hidden_scale) * 255.0) as f32
        });
        let (stored, derived) = if self.w1_scale.is_empty() {
            (None, Some(derived))
        } else {
            (Some(stored), None)
        };
        stored
            .into_iter()
            .flatten()
            .chain(derived.into_iter().flatten())
    }

    /// The integer weight of `row` (hidden unit, or class) for input `col` of layer 1 or 2, as
    /// the kernels multiply it (int8, or the int4 value −8…7); `None` outside the network or
    /// beyond the 10 classes. For exporters and inspection: the forward pass reads the tiles
    /// directly.
    pub fn weight(&self, layer: u8, row: usize, col: usize) -> Option<i32> {
        let (w, rows, cols) = match layer {
            1 => (self.w1, HIDDEN, INPUTS),
            2 => (self.w2, CLASSES, HIDDEN),
            _ => return None,
        };
        if row >= rows || col >= cols {
            return None;
        }
        if B::BITS == 4 {
            let (byte, shift) = crate::kernels::nibble_index(row, col, cols);
            let nibble = (w.get(byte)? >> shift) & 0x0f;
            Some(i32::from(nibble) - crate::kernels::NIBBLE_OFFSET)
        } else {
            let byte = *w.get(crate::kernels::tiled_index(row, col, cols))?;
            Some(i32::from(byte as i8))
        }
    }

    /// The i32 bias of `row` of layer 1 (at scale `w1_scale / 255`) or 2 (at scale
    /// `hidden_scale · w2_scale`); `None` outside the network.
    pub fn bias(&self, layer: u8, row: usize) -> Option<i32> {
        let b = match layer {
            1 => self.b1.get(row)?,
            2 if row < CLASSES => self.b2.get(row)?,
            _ => return None,
        };
        Some(i32::from_le_bytes(*b))
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
    /// Validates an f32 model file and borrows its sections; see the [format docs](crate::format).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let s: F32Sections<'a> = decode(open(bytes, ModelKind::F32)?)?;
        check_shape(&s.shape)?;
        Self::from_weights(
            weights("w1", s.w1)?,
            weights("b1", s.b1)?,
            weights("w2", s.w2)?,
            weights("b2", s.b2)?,
        )
    }

    /// Borrowed weights: `w1` input-major (`w1[k·512 + j]`, Keras's layout), `w2` class-major
    /// (`w2[c·512 + j]`), checked as a file's are: every value finite and within
    /// ±[`MAX_F32_WEIGHT`](super::MAX_F32_WEIGHT), so the outputs are always finite.
    pub fn from_weights(
        w1: &'a [f32; INPUTS * HIDDEN],
        b1: &'a [f32; HIDDEN],
        w2: &'a [f32; CLASSES * HIDDEN],
        b2: &'a [f32; CLASSES],
    ) -> Result<Self, FormatError> {
        for (section, values) in [("w1", &w1[..]), ("b1", b1), ("w2", w2), ("b2", b2)] {
            let usable = |v: &f32| v.is_finite() && v.abs() <= MAX_F32_WEIGHT;
            if let Some(index) = values.iter().position(|v| !usable(v)) {
                return Err(FormatError::BadWeight { section, index });
            }
        }
        Ok(Self { w1, b1, w2, b2 })
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
