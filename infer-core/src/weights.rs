//! The weight kinds a layer can have: one enum that the format, the kernels and the trainer share.

/// A layer's weights: what the format stores and which product the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Weights {
    /// Integer-only int8 weights, one per byte (byte 1 in a file).
    Int8,
    /// f32 weights (byte 2): only in an f32 file, whose layers are all f32.
    F32,
    /// Integer-only int4 weights, two per byte (byte 3).
    Int4,
}

impl Weights {
    /// The byte that stands for it in a file.
    pub const fn byte(self) -> u8 {
        match self {
            Weights::Int8 => 1,
            Weights::F32 => 2,
            Weights::Int4 => 3,
        }
    }

    /// The kind of a byte.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Weights::Int8),
            2 => Some(Weights::F32),
            3 => Some(Weights::Int4),
            _ => None,
        }
    }

    /// "int8", "f32" or "int4".
    pub const fn name(self) -> &'static str {
        match self {
            Weights::Int8 => "int8",
            Weights::F32 => "f32",
            Weights::Int4 => "int4",
        }
    }

    /// Bits per stored weight.
    pub const fn bits(self) -> usize {
        match self {
            Weights::Int8 => 8,
            Weights::F32 => 32,
            Weights::Int4 => 4,
        }
    }

    /// Whether the integer forward pass runs it (int8, int4).
    pub const fn is_integer(self) -> bool {
        !matches!(self, Weights::F32)
    }
}

impl core::fmt::Display for Weights {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sets of integer layer kinds, for [`QuantModel`](crate::QuantModel)'s `KINDS` parameter: its
/// forward pass is compiled for these kinds only (a firmware embedding a dense int8 model leaves
/// the int4 and sparse walks out of its flash), and a file with a layer of another kind is refused
/// at load ([`FormatError::KindLeftOut`](crate::FormatError::KindLeftOut)).
/// [`Header::kinds`](crate::format::Header::kinds) is the set a file needs.
pub mod kinds {
    /// Layers of int8 weights.
    pub const INT8: u8 = 1;
    /// Layers of int4 weights.
    pub const INT4: u8 = 2;
    /// Block-sparse layers (of either width).
    pub const SPARSE: u8 = 4;
    /// Every kind: the default.
    pub const ALL: u8 = INT8 | INT4 | SPARSE;

    /// Whether `set` has every kind of `kinds`.
    pub const fn has(set: u8, kinds: u8) -> bool {
        set & kinds == kinds
    }

    /// The kind's name in errors: "int8", "int4" or "sparse" (the lowest of `kind`'s bits).
    pub const fn name(kind: u8) -> &'static str {
        if kind & INT8 != 0 {
            "int8"
        } else if kind & INT4 != 0 {
            "int4"
        } else {
            "sparse"
        }
    }
}
