//! Reading: validation once, then zero-copy views of each layer's sections.

use crate::kernels::{BadBlock, GROUP, Sparsity, TILE_ROWS};

use super::{
    CRC, CRC_LEN, DEFAULT_MAX_WIDTH, Fields, FormatError, Header, Layer, MAX_F32_WEIGHT,
    MAX_LAYERS, MAX_SCALE, MAX_SECTIONS, PREAMBLE_LEN, Weights, float, header, int, slots_of,
};
use crate::kinds;

/// Decodes the header and checks the CRC; the fields after the header, up to the CRC.
fn open(bytes: &[u8]) -> Result<(Header, Fields<'_>), FormatError> {
    let (head, fields) = header(bytes)?;
    let Some(split) = bytes
        .len()
        .checked_sub(CRC_LEN)
        .filter(|&s| s >= PREAMBLE_LEN)
    else {
        return Err(FormatError::Truncated {
            needed: PREAMBLE_LEN + CRC_LEN,
            got: bytes.len(),
        });
    };
    let (contents, stored) = bytes.split_at(split);
    let stored = u32::from_le_bytes(stored.try_into().map_err(|_| FormatError::Malformed)?);
    let computed = CRC.checksum(contents);
    if stored != computed {
        return Err(FormatError::CrcMismatch { stored, computed });
    }
    // The sections end where the CRC starts (a header that runs into it is malformed).
    let sections = fields
        .0
        .len()
        .checked_sub(CRC_LEN)
        .ok_or(FormatError::Malformed)?;
    Ok((head, Fields(fields.0.get(..sections).unwrap_or(&[]))))
}

/// The sections of `layer`, in table order, each checked for its length and its alignment in
/// memory (its table's, up to 4 bytes).
fn layer_sections<'a>(
    fields: &mut Fields<'a>,
    layer: &Layer,
) -> Result<[&'a [u8]; MAX_SECTIONS], FormatError> {
    let mut found: [&[u8]; MAX_SECTIONS] = [&[]; MAX_SECTIONS];
    for (slot, s) in found.iter_mut().zip(slots_of(layer.weights)) {
        if s.sparse_only && !layer.sparse {
            continue;
        }
        if s.align > 1 {
            let pad = fields.section()?;
            if pad.len() >= s.align {
                return Err(FormatError::Malformed);
            }
        }
        let bytes = fields.section()?;
        let expected = (s.len)(layer);
        if bytes.len() != expected {
            return Err(FormatError::SectionLength {
                layer: layer.index,
                section: s.name,
                expected,
                got: bytes.len(),
            });
        }
        if bytes.as_ptr().align_offset(s.align.min(4)) != 0 {
            return Err(FormatError::Misaligned {
                layer: layer.index,
                section: s.name,
            });
        }
        *slot = bytes;
    }
    Ok(found)
}

/// Little-endian 4-byte elements of a section whose length is already checked.
fn words(bytes: &[u8]) -> &[[u8; 4]] {
    bytes.as_chunks::<4>().0
}

fn f32_of(b: &[u8; 4]) -> f32 {
    f32::from_le_bytes(*b)
}

fn check_scales(
    layer: usize,
    section: &'static str,
    scales: &[[u8; 4]],
) -> Result<(), FormatError> {
    match scales
        .iter()
        .map(f32_of)
        .position(|s| !(s > 0.0 && s <= MAX_SCALE))
    {
        Some(index) => Err(FormatError::BadScale {
            layer,
            section,
            index,
        }),
        None => Ok(()),
    }
}

/// One validated layer of a [`QuantModel`], borrowing the file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct QuantLayer<'a> {
    pub(crate) layer: Layer,
    /// The scale of this layer's inputs: 1/255 for the first, the previous layer's `act_scale`.
    pub(crate) in_scale: f32,
    /// 0 for the output layer.
    pub(crate) act_scale: f32,
    /// `padded_rows` scales, or none (an int4 hidden layer: derived).
    pub(crate) w_scale: &'a [[u8; 4]],
    pub(crate) bias: &'a [[u8; 4]],
    pub(crate) multiplier: &'a [[u8; 4]],
    pub(crate) shift: &'a [u8],
    pub(crate) w: &'a [u8],
    /// The kept tiles of a block-sparse layer.
    pub(crate) sparsity: Option<Sparsity<'a>>,
}

impl<'a> QuantLayer<'a> {
    fn from_sections(
        layer: Layer,
        in_scale: f32,
        s: [&'a [u8]; MAX_SECTIONS],
    ) -> Result<Self, FormatError> {
        let i = layer.index;
        let act_scale = match words(s[int::ACT_SCALE]).first() {
            Some(b) => {
                check_scales(i, "act_scale", &[*b])?;
                f32_of(b)
            }
            None => 0.0,
        };
        let l = Self {
            layer,
            in_scale,
            act_scale,
            w_scale: words(s[int::W_SCALE]),
            bias: words(s[int::BIAS]),
            multiplier: words(s[int::MULTIPLIER]),
            shift: s[int::SHIFT],
            w: s[int::WEIGHTS],
            sparsity: None,
        };
        let l = if layer.sparse {
            let pairs = |b: &'a [u8]| b.as_chunks::<2>().0;
            let sparsity = Sparsity::new(
                pairs(s[int::BLOCKS]),
                pairs(s[int::KEPT]),
                layer.padded_cols(),
            )
            .map_err(|BadBlock(block)| FormatError::BadSparsity { layer: i, block })?;
            Self {
                sparsity: Some(sparsity),
                ..l
            }
        } else {
            l
        };
        check_scales(i, "w_scale", l.w_scale)?;
        if let Some(index) = l
            .multiplier
            .iter()
            .zip(l.shift)
            .position(|(m, s)| i32::from_le_bytes(*m) <= 0 || !crate::quant::SHIFTS.contains(s))
        {
            return Err(FormatError::BadRequantization { layer: i, index });
        }
        Ok(l)
    }

    /// Its place in the chain.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// Real value of one step of its u8 outputs; `None` for the output layer.
    pub fn act_scale(&self) -> Option<f32> {
        (!self.layer.last).then_some(self.act_scale)
    }

    /// Real value of one step of its inputs (1/255 for the first layer).
    pub fn input_scale(&self) -> f32 {
        self.in_scale
    }

    /// Per output weight scales: stored in the output layer, derived from the requantization in
    /// a hidden layer (`multiplier · 2^−shift · act_scale / input scale`).
    pub fn w_scales(&self) -> impl Iterator<Item = f32> + '_ {
        let stored = self.w_scale.iter().map(f32_of);
        let derived = self.multiplier.iter().zip(self.shift).map(|(m, &s)| {
            let factor = f64::from(i32::from_le_bytes(*m)) / libm::exp2(f64::from(s));
            (factor * f64::from(self.act_scale) / f64::from(self.in_scale)) as f32
        });
        let (stored, derived) = if self.w_scale.is_empty() {
            (None, Some(derived))
        } else {
            (Some(stored), None)
        };
        stored
            .into_iter()
            .flatten()
            .chain(derived.into_iter().flatten())
            .take(self.layer.outputs)
    }

    /// The integer weight of output `row` for input `col`, as the kernels multiply it (int8, or
    /// the int4 value −8…7); `None` outside the layer. For exporters and inspection: the forward
    /// pass reads the tiles directly.
    pub fn weight(&self, row: usize, col: usize) -> Option<i32> {
        if row >= self.layer.outputs || col >= self.layer.inputs {
            return None;
        }
        let mut cols = self.layer.padded_cols();
        let (mut row, mut col) = (row, col);
        if let Some(s) = &self.sparsity {
            // The stored tiles as one row block of `T` tiles.
            let Some(tile) = s.tile_of(row, col) else {
                return Some(0);
            };
            (row, col, cols) = (
                row % TILE_ROWS,
                tile * GROUP + col % GROUP,
                s.tiles() * GROUP,
            );
        }
        if self.layer.weights == Weights::Int4 {
            let (byte, shift) = crate::kernels::nibble_index(row, col, cols);
            let nibble = (self.w.get(byte)? >> shift) & 0x0f;
            Some(i32::from(nibble) - crate::kernels::NIBBLE_OFFSET)
        } else {
            let byte = *self.w.get(crate::kernels::tiled_index(row, col, cols))?;
            Some(i32::from(byte as i8))
        }
    }

    /// The kept tiles, for a block-sparse layer.
    pub fn sparsity(&self) -> Option<Sparsity<'a>> {
        self.sparsity
    }

    /// The i32 bias of output `row` (at scale `input scale · w_scale`); `None` outside the layer.
    pub fn bias(&self, row: usize) -> Option<i32> {
        if row >= self.layer.outputs {
            return None;
        }
        self.bias.get(row).map(|b| i32::from_le_bytes(*b))
    }

    /// The requantization `(multiplier, shift)` of output `row` of a hidden layer.
    pub fn requantization(&self, row: usize) -> Option<(i32, u8)> {
        if row >= self.layer.outputs {
            return None;
        }
        let m = self.multiplier.get(row)?;
        Some((i32::from_le_bytes(*m), *self.shift.get(row)?))
    }
}

/// A validated integer-only model (each layer int8 or int4), borrowing the file's bytes. Its
/// forward pass ([`QuantModel::predict`]) keeps two activation buffers of `MAX_WIDTH` bytes on
/// the stack, and is compiled for the layer kinds of `KINDS` (a set of [`kinds`](crate::kinds),
/// all by default); a file with a wider hidden layer or another kind of layer is refused at load
/// ([`FormatError::TooWide`], [`FormatError::KindLeftOut`]).
#[derive(Debug, Clone)]
pub struct QuantModel<
    'a,
    const MAX_WIDTH: usize = DEFAULT_MAX_WIDTH,
    const KINDS: u8 = { kinds::ALL },
> {
    pub(crate) header: Header,
    pub(crate) layers: heapless::Vec<QuantLayer<'a>, MAX_LAYERS>,
}

impl<'a> QuantModel<'a> {
    /// Validates an integer model file and borrows its sections; see the
    /// [format docs](crate::format). Hidden layers up to [`DEFAULT_MAX_WIDTH`] units.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        Self::from_bytes_bounded(bytes)
    }
}

impl<'a, const MAX_WIDTH: usize, const KINDS: u8> QuantModel<'a, MAX_WIDTH, KINDS> {
    /// [`QuantModel::from_bytes`] for a forward pass bounded by `MAX_WIDTH` hidden units and
    /// built for the layer kinds `KINDS` (the firmware derives both from the model it embeds):
    /// `QuantModel::<64, { kinds::INT4 }>::from_bytes_bounded`.
    pub fn from_bytes_bounded(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (header, mut fields) = open(bytes)?;
        if header.is_f32() {
            return Err(FormatError::WrongKind);
        }
        header.check_bounds(MAX_WIDTH, KINDS)?;
        let mut layers = heapless::Vec::new();
        let mut in_scale = 1.0 / 255.0;
        for layer in header.layers() {
            let s = layer_sections(&mut fields, &layer)?;
            let l = QuantLayer::from_sections(layer, in_scale, s)?;
            in_scale = l.act_scale;
            // Cannot fail: the header has at most MAX_LAYERS layers.
            let _ = layers.push(l);
        }
        if !fields.0.is_empty() {
            return Err(FormatError::Malformed);
        }
        Ok(Self { header, layers })
    }
}

/// The accessors both model views share.
macro_rules! model_accessors {
    ([$($generics:tt)*] $model:ty, $layer:ident) => {
        impl<'a, $($generics)*> $model {
            /// Its header: widths and weight kinds.
            pub fn header(&self) -> &Header {
                &self.header
            }

            /// The layers, first to last.
            pub fn layers(&self) -> &[$layer<'a>] {
                &self.layers
            }

            /// Inputs of the first layer.
            pub fn inputs(&self) -> usize {
                self.header.inputs()
            }

            /// Outputs of the last layer.
            pub fn classes(&self) -> usize {
                self.header.classes()
            }
        }
    };
}

model_accessors!([const W: usize, const K: u8] QuantModel<'a, W, K>, QuantLayer);
model_accessors!([const W: usize] F32Model<'a, W>, F32Layer);

/// One validated layer of an [`F32Model`], borrowing the file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct F32Layer<'a> {
    pub(crate) layer: Layer,
    pub(crate) bias: &'a [[u8; 4]],
    /// Input-major: `w[k·outputs + j]`.
    pub(crate) w: &'a [[u8; 4]],
}

impl F32Layer<'_> {
    /// Its place in the chain.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// The biases, one per output.
    pub fn biases(&self) -> impl ExactSizeIterator<Item = f32> + '_ {
        self.bias.iter().map(f32_of)
    }

    /// The weights, input-major (`w[k·outputs + j]` weighs input `k` for output `j`).
    pub fn weights(&self) -> impl ExactSizeIterator<Item = f32> + '_ {
        self.w.iter().map(f32_of)
    }
}

/// A validated f32 model, borrowing the file's bytes; `MAX_WIDTH` bounds its hidden layers as
/// for [`QuantModel`].
#[derive(Debug, Clone)]
pub struct F32Model<'a, const MAX_WIDTH: usize = DEFAULT_MAX_WIDTH> {
    pub(crate) header: Header,
    pub(crate) layers: heapless::Vec<F32Layer<'a>, MAX_LAYERS>,
}

impl<'a> F32Model<'a> {
    /// Validates an f32 model file and borrows its sections; see the [format docs](crate::format).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        Self::from_bytes_bounded(bytes)
    }
}

impl<'a, const MAX_WIDTH: usize> F32Model<'a, MAX_WIDTH> {
    /// [`F32Model::from_bytes`] for a forward pass bounded by `MAX_WIDTH` hidden units.
    pub fn from_bytes_bounded(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (header, mut fields) = open(bytes)?;
        if !header.is_f32() {
            return Err(FormatError::WrongKind);
        }
        header.check_bounds(MAX_WIDTH, 0)?;
        let mut layers = heapless::Vec::new();
        // The largest magnitude a layer's inputs can have (pixels are at most 1).
        let mut bound = 1.0f64;
        for layer in header.layers() {
            let s = layer_sections(&mut fields, &layer)?;
            let l = F32Layer {
                layer,
                bias: words(s[float::BIAS]),
                w: words(s[float::WEIGHTS]),
            };
            let mut largest = [0.0f64; 2];
            for ((section, values), largest) in [("bias", l.bias), ("weights", l.w)]
                .into_iter()
                .zip(&mut largest)
            {
                for (index, v) in values.iter().map(f32_of).enumerate() {
                    if !(v.is_finite() && v.abs() <= MAX_F32_WEIGHT) {
                        return Err(FormatError::BadWeight {
                            layer: layer.index,
                            section,
                            index,
                        });
                    }
                    *largest = largest.max(f64::from(v.abs()));
                }
            }
            let [bias, weight] = largest;
            bound = bound * layer.inputs as f64 * weight + bias;
            if bound > libm::exp2(100.0) {
                return Err(FormatError::Overflow { layer: layer.index });
            }
            let _ = layers.push(l);
        }
        if !fields.0.is_empty() {
            return Err(FormatError::Malformed);
        }
        Ok(Self { header, layers })
    }
}
