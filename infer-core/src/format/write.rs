//! Writing model files (the trainer's side), into a caller-provided buffer: each layer's parts
//! come in plain row-major order, and the writer pads every layer to whole tiles and lays the
//! weights out as the kernels read them, walking the same section tables as the reader.

use super::{
    CRC, FormatError, Layer, MAGIC, MAX_FORMAT_WIDTH, MAX_LAYERS, Section, VERSION, Weights, float,
    int, sections,
};
use crate::kernels::{GROUP, NIBBLE_OFFSET, TILE_BYTES, TILE_ROWS, TILE4_BYTES};

/// One layer of an integer file, unpacked, in row-major order.
#[derive(Debug, Clone, Copy)]
pub struct QuantLayerParts<'p> {
    /// [`Weights::Int8`] or [`Weights::Int4`] (weights then in −8…7).
    pub weights: Weights,
    /// Inputs `K`.
    pub inputs: usize,
    /// Outputs `R`.
    pub outputs: usize,
    /// Real value of one step of the u8 outputs (hidden layers; ignored for the last).
    pub act_scale: f32,
    /// `R` weight scales (an int4 hidden layer's are not stored: they follow from the rest).
    pub w_scale: &'p [f32],
    /// `R` biases.
    pub bias: &'p [i32],
    /// `R` requantization multipliers (hidden layers; empty for the last).
    pub multiplier: &'p [i32],
    /// `R` requantization shifts (hidden layers; empty for the last).
    pub shift: &'p [u8],
    /// `R × K`, row-major: `w[j·K + k]` weighs input `k` for output `j`.
    pub w: &'p [i8],
    /// Store the layer block-sparse: only its tiles (16 rows × 4 inputs) holding a non-zero
    /// weight, which is exact (the others are zero). For a pruned layer.
    pub sparse: bool,
}

/// One layer of an f32 file.
#[derive(Debug, Clone, Copy)]
pub struct F32LayerParts<'p> {
    /// Inputs `K`.
    pub inputs: usize,
    /// Outputs `R`.
    pub outputs: usize,
    /// `R` biases.
    pub bias: &'p [f32],
    /// `K × R`, input-major: `w[k·R + j]`.
    pub w: &'p [f32],
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
le_bytes!(u8, i8, u16, i32, u32, f32);

/// Appends fields to a buffer, postcard-encoded, tracking the offset. With no buffer, only
/// counts (for [`quant_len`] and [`f32_len`]).
struct Writer<'b> {
    buf: Option<&'b mut [u8]>,
    pos: usize,
}

fn varint_len(v: usize) -> usize {
    if v < 128 {
        1
    } else {
        (usize::BITS - v.leading_zeros()).div_ceil(7) as usize
    }
}

impl Writer<'_> {
    /// The next `n` bytes of the buffer, which the caller fills (`None` when only counting): the
    /// offset moves past them.
    fn next(&mut self, n: usize) -> Result<Option<&mut [u8]>, FormatError> {
        let (start, end) = (self.pos, self.pos + n);
        self.pos = end;
        match &mut self.buf {
            None => Ok(None),
            Some(buf) => {
                let got = buf.len();
                buf.get_mut(start..end)
                    .map(Some)
                    .ok_or(FormatError::Truncated { needed: end, got })
            }
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        if let Some(out) = self.next(bytes.len())? {
            out.copy_from_slice(bytes);
        }
        Ok(())
    }

    fn varint(&mut self, v: u32) -> Result<(), FormatError> {
        let mut tmp = [0u8; 5];
        let used = postcard::to_slice(&v, &mut tmp).map_err(|_| FormatError::Malformed)?;
        let used = used.len();
        self.raw(tmp.get(..used).ok_or(FormatError::Malformed)?)
    }

    /// A section of `len` values from `values` (which must yield that many).
    fn section<T: LeBytes>(
        &mut self,
        len: usize,
        values: impl Iterator<Item = T>,
    ) -> Result<(), FormatError> {
        self.varint((len * T::SIZE) as u32)?;
        if self.buf.is_none() {
            self.pos += len * T::SIZE;
            return Ok(());
        }
        let start = self.pos;
        for v in values.take(len) {
            if let Some(out) = self.next(T::SIZE)? {
                v.put(out);
            }
        }
        if self.pos - start == len * T::SIZE {
            Ok(())
        } else {
            Err(FormatError::Malformed)
        }
    }

    /// A zero padding section such that a following section of `len` bytes starts `align`-aligned.
    fn pad_for(&mut self, len: usize, align: usize) -> Result<(), FormatError> {
        let pad = (0..align)
            .find(|p| (self.pos + 1 + p + varint_len(len)).is_multiple_of(align))
            .unwrap_or(0);
        self.section(pad, core::iter::repeat_n(0u8, pad))
    }

    fn header(&mut self, layers: &[Layer]) -> Result<(), FormatError> {
        self.raw(&MAGIC)?;
        self.raw(&[VERSION, layers.len() as u8])?;
        for l in layers {
            let flag = if l.sparse { super::SPARSE } else { 0 };
            self.raw(&[l.weights.byte() | flag])?;
        }
        let first = layers.first().map_or(0, |l| l.inputs);
        for v in core::iter::once(first).chain(layers.iter().map(|l| l.outputs)) {
            self.varint(v as u32)?;
        }
        for l in layers.iter().filter(|l| l.sparse) {
            self.varint(l.tiles as u32)?;
        }
        Ok(())
    }

    /// Every section of `layer` from the table, filled by `fill(section, writer)`.
    fn layer(
        &mut self,
        layer: &Layer,
        mut fill: impl FnMut(usize, &Section, &mut Self) -> Result<(), FormatError>,
    ) -> Result<(), FormatError> {
        for (i, s) in sections(layer.weights).iter().enumerate() {
            if s.sparse_only && !layer.sparse {
                continue;
            }
            if s.align > 1 {
                self.pad_for((s.len)(layer), s.align)?;
            }
            let start = self.pos;
            fill(i, s, self)?;
            let written = self.pos - start - varint_len((s.len)(layer));
            if written != (s.len)(layer) {
                return Err(FormatError::Malformed);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<usize, FormatError> {
        if let Some(buf) = &self.buf {
            let crc = CRC.checksum(buf.get(..self.pos).ok_or(FormatError::Malformed)?);
            self.raw(&crc.to_le_bytes())?;
        } else {
            self.pos += 4;
        }
        Ok(self.pos)
    }
}

fn check_len(
    layer: usize,
    section: &'static str,
    got: usize,
    expected: usize,
) -> Result<(), FormatError> {
    if got == expected {
        Ok(())
    } else {
        Err(FormatError::SectionLength {
            layer,
            section,
            expected,
            got,
        })
    }
}

/// The layers of a chain of `(weights, inputs, outputs, sparse)`, checked: 1–[`MAX_LAYERS`]
/// layers, widths 1–[`MAX_FORMAT_WIDTH`], each layer taking the previous one's outputs. (A sparse
/// layer's tiles are counted by the caller.)
fn chain(
    parts: impl ExactSizeIterator<Item = (Weights, usize, usize, bool)>,
) -> Result<heapless::Vec<Layer, MAX_LAYERS>, FormatError> {
    let n = parts.len();
    if !(1..=MAX_LAYERS).contains(&n) {
        return Err(FormatError::LayerCount(n));
    }
    let mut layers = heapless::Vec::new();
    let mut previous = None;
    for (index, (weights, inputs, outputs, sparse)) in parts.enumerate() {
        if previous.is_some_and(|p| p != inputs) || !(1..=MAX_FORMAT_WIDTH).contains(&inputs) {
            return Err(FormatError::BadWidth {
                index,
                width: inputs,
            });
        }
        if !(1..=MAX_FORMAT_WIDTH).contains(&outputs) {
            return Err(FormatError::BadWidth {
                index: index + 1,
                width: outputs,
            });
        }
        previous = Some(outputs);
        let mut layer = Layer {
            index,
            inputs,
            outputs,
            weights,
            last: index + 1 == n,
            sparse,
            tiles: 0,
        };
        layer.tiles = layer.dense_tiles();
        let _ = layers.push(layer);
    }
    Ok(layers)
}

/// `rows × cols` row-major weights, padded to whole tiles with zeros, in the kernels' tile order.
fn tiled(w: &[i8], layer: Layer) -> impl Iterator<Item = i8> + '_ {
    let (rows, cols) = (layer.outputs, layer.inputs);
    let (padded_rows, padded_cols) = (layer.padded_rows(), layer.padded_cols());
    (0..padded_rows * padded_cols).map(move |i| {
        let (block, in_block) = (i / (TILE_ROWS * padded_cols), i % (TILE_ROWS * padded_cols));
        let (group, in_tile) = (in_block / TILE_BYTES, in_block % TILE_BYTES);
        let row = block * TILE_ROWS + in_tile / GROUP;
        let col = group * GROUP + in_tile % GROUP;
        if row < rows && col < cols {
            w.get(row * cols + col).copied().unwrap_or(0)
        } else {
            0
        }
    })
}

/// `rows × cols` row-major 4-bit weights (−8…7, checked by the caller), padded to whole tiles with
/// zeros, packed in the kernels' [4-bit tiles](crate::kernels#4-bit-weights).
fn tiled4(w: &[i8], layer: Layer) -> impl Iterator<Item = u8> + '_ {
    let (rows, cols) = (layer.outputs, layer.inputs);
    let padded_cols = layer.padded_cols();
    let nibble = move |row: usize, col: usize| {
        let w = if row < rows && col < cols {
            w.get(row * cols + col).copied().unwrap_or(0)
        } else {
            0
        };
        (i32::from(w) + NIBBLE_OFFSET) as u8 & 0x0f
    };
    (0..layer.padded_rows() * padded_cols / 2).map(move |i| {
        let (block, in_block) = (
            i / (TILE_ROWS / 2 * padded_cols),
            i % (TILE_ROWS / 2 * padded_cols),
        );
        let (group, in_tile) = (in_block / TILE4_BYTES, in_block % TILE4_BYTES);
        let row = block * TILE_ROWS + in_tile / GROUP;
        let col = group * GROUP + in_tile % GROUP;
        nibble(row, col) | nibble(row + TILE_ROWS / 2, col) << 4
    })
}

/// Whether tile `t` (row block `t / (K′/4)`, group `t % (K′/4)`) of `rows × cols` row-major
/// weights holds a non-zero weight.
fn tile_is_kept(w: &[i8], layer: &Layer, t: usize) -> bool {
    let groups = layer.padded_cols() / GROUP;
    let (block, group) = (t / groups, t % groups);
    let rows = (block * TILE_ROWS..(block + 1) * TILE_ROWS).filter(|&r| r < layer.outputs);
    let cols = group * GROUP..((group + 1) * GROUP).min(layer.inputs);
    rows.into_iter().any(|r| {
        w.get(r * layer.inputs + cols.start..r * layer.inputs + cols.end)
            .is_some_and(|row| row.iter().any(|&v| v != 0))
    })
}

/// The tiles (16 rows × 4 inputs) of a layer's padded weights that hold a non-zero weight: what
/// it stores when written block-sparse (of `⌈R/16⌉ · ⌈K/4⌉`).
pub fn kept_tiles(parts: &QuantLayerParts<'_>) -> usize {
    let mut layer = Layer {
        index: 0,
        inputs: parts.inputs,
        outputs: parts.outputs,
        weights: parts.weights,
        last: false,
        sparse: true,
        tiles: 0,
    };
    layer.tiles = layer.dense_tiles();
    (0..layer.tiles)
        .filter(|&t| tile_is_kept(parts.w, &layer, t))
        .count()
}

/// Keeps, of a layer's bytes in tile order (`tile` bytes a tile), those of the tiles it stores:
/// all of a dense layer's, the ones with a non-zero weight of a sparse layer's.
fn stored<'w, T>(
    w: &'w [i8],
    layer: Layer,
    tile: usize,
    bytes: impl Iterator<Item = T> + 'w,
) -> impl Iterator<Item = T> + 'w {
    // One test per tile: the last tile's answer is kept.
    let mut last = (usize::MAX, false);
    bytes.enumerate().filter_map(move |(i, v)| {
        let t = i / tile;
        if last.0 != t {
            last = (t, !layer.sparse || tile_is_kept(w, &layer, t));
        }
        last.1.then_some(v)
    })
}

/// Per row block of a sparse layer, its kept tiles (u16).
fn block_counts(w: &[i8], layer: Layer) -> impl Iterator<Item = u16> + '_ {
    let groups = layer.padded_cols() / GROUP;
    (0..layer.padded_rows() / TILE_ROWS).map(move |b| {
        (0..groups)
            .filter(|g| tile_is_kept(w, &layer, b * groups + g))
            .count() as u16
    })
}

/// The groups of a sparse layer's kept tiles (u16), row block after row block.
fn kept_groups(w: &[i8], layer: Layer) -> impl Iterator<Item = u16> + '_ {
    let groups = layer.padded_cols() / GROUP;
    (0..layer.dense_tiles())
        .filter(move |&t| tile_is_kept(w, &layer, t))
        .map(move |t| (t % groups) as u16)
}

/// `values` then `pad` up to `len`.
fn padded<T: Copy>(values: &[T], len: usize, pad: T) -> impl Iterator<Item = T> + '_ {
    values
        .iter()
        .copied()
        .chain(core::iter::repeat(pad))
        .take(len)
}

/// Checks an integer layer's parts against its shape.
fn check_quant(l: &Layer, p: &QuantLayerParts<'_>) -> Result<(), FormatError> {
    let (i, r) = (l.index, l.outputs);
    if !p.weights.is_integer() {
        return Err(FormatError::WrongKind);
    }
    // Only the output layer stores its weight scales (a hidden layer's follow from its
    // requantization).
    if l.last {
        check_len(i, "w_scale", p.w_scale.len(), r)?;
    }
    check_len(i, "bias", p.bias.len(), r)?;
    let hidden = if l.last { 0 } else { r };
    check_len(i, "multiplier", p.multiplier.len(), hidden)?;
    check_len(i, "shift", p.shift.len(), hidden)?;
    check_len(i, "weights", p.w.len(), r * l.inputs)?;
    if p.weights == Weights::Int4
        && let Some(index) = p.w.iter().position(|v| !(-8..=7).contains(v))
    {
        return Err(FormatError::BadWeight {
            layer: i,
            section: "weights",
            index,
        });
    }
    Ok(())
}

fn encode_quant(
    parts: &[QuantLayerParts<'_>],
    buf: Option<&mut [u8]>,
) -> Result<usize, FormatError> {
    let mut layers = chain(
        parts
            .iter()
            .map(|p| (p.weights, p.inputs, p.outputs, p.sparse)),
    )?;
    for (l, p) in layers.iter_mut().zip(parts) {
        check_quant(l, p)?;
        if l.sparse {
            l.tiles = (0..l.dense_tiles())
                .filter(|&t| tile_is_kept(p.w, l, t))
                .count();
        }
    }
    let mut w = Writer { buf, pos: 0 };
    w.header(&layers)?;
    for (l, p) in layers.iter().zip(parts) {
        let rows = l.padded_rows();
        w.layer(l, |section, s, w| {
            let len = (s.len)(l);
            match section {
                int::ACT_SCALE => w.section(len / 4, core::iter::once(p.act_scale)),
                int::W_SCALE => w.section(len / 4, padded(p.w_scale, rows, 1.0)),
                int::BIAS => w.section(rows, padded(p.bias, rows, 0)),
                // Padding rows: any valid requantization (their sums are zero).
                int::MULTIPLIER => w.section(len / 4, padded(p.multiplier, rows, 1 << 30)),
                int::SHIFT => w.section(len, padded(p.shift, rows, 40)),
                int::BLOCKS => w.section(len / 2, block_counts(p.w, *l)),
                int::KEPT => w.section(len / 2, kept_groups(p.w, *l)),
                _ if l.weights == Weights::Int4 => {
                    w.section(len, stored(p.w, *l, TILE4_BYTES, tiled4(p.w, *l)))
                }
                _ => w.section(len, stored(p.w, *l, TILE_BYTES, tiled(p.w, *l))),
            }
        })?;
    }
    w.finish()
}

/// Encodes an integer model (each layer int8 or int4) into `out`; returns the bytes written.
pub fn quant(parts: &[QuantLayerParts<'_>], out: &mut [u8]) -> Result<usize, FormatError> {
    encode_quant(parts, Some(out))
}

/// The exact size [`quant`] writes for `parts` (or the error it gives).
pub fn quant_len(parts: &[QuantLayerParts<'_>]) -> Result<usize, FormatError> {
    encode_quant(parts, None)
}

fn encode_f32(parts: &[F32LayerParts<'_>], buf: Option<&mut [u8]>) -> Result<usize, FormatError> {
    let layers = chain(
        parts
            .iter()
            .map(|p| (Weights::F32, p.inputs, p.outputs, false)),
    )?;
    let mut w = Writer { buf, pos: 0 };
    w.header(&layers)?;
    for (l, p) in layers.iter().zip(parts) {
        check_len(l.index, "bias", p.bias.len(), l.outputs)?;
        check_len(l.index, "weights", p.w.len(), l.outputs * l.inputs)?;
        w.layer(l, |section, s, w| {
            let len = (s.len)(l) / 4;
            match section {
                float::BIAS => w.section(len, p.bias.iter().copied()),
                _ => w.section(len, p.w.iter().copied()),
            }
        })?;
    }
    w.finish()
}

/// Encodes an f32 model into `out`; returns the bytes written.
pub fn f32(parts: &[F32LayerParts<'_>], out: &mut [u8]) -> Result<usize, FormatError> {
    encode_f32(parts, Some(out))
}

/// The exact size [`f32()`] writes for `parts` (or the error it gives).
pub fn f32_len(parts: &[F32LayerParts<'_>]) -> Result<usize, FormatError> {
    encode_f32(parts, None)
}
