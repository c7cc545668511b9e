//! The model file: written once by [`write`](mod@write) (the trainer's side), validated once by
//! [`QuantModel::from_bytes`] or [`F32Model::from_bytes`], then read in place (zero-copy, O(1)
//! RAM, works on `&'static [u8]` in flash). After validation no accessor can fail or panic.
//! [`peek`] reads a file's header (its shape and weight kinds) without validating the rest.
//!
//! # Layout
//!
//! A file holds any chain of dense layers: inputs → hidden layers (ReLU) → classes. It is a
//! [postcard](https://docs.rs/postcard) encoding of the fields below, in order, followed by a
//! CRC-32 (ISO-HDLC, the zlib/PNG one) of everything before it, little-endian. postcard writes
//! `u8` as a raw byte, `u32` as a LEB128 varint, and a byte section as a varint length followed by
//! the bytes. Inside sections, numbers are little-endian on every host.
//!
//! | offset | field | encoding |
//! | --- | --- | --- |
//! | 0 | magic | `b"MNML"` |
//! | 4 | format version | u8, `5` |
//! | 5 | layers `L` | u8, 1–[`MAX_LAYERS`] |
//! | 6 | each layer's weights | `L` bytes: `1` int8, `3` int4, `2` f32 ([`Weights::byte`]), plus [`SPARSE`] (`0x80`) for a block-sparse integer layer; an f32 file's layers are all f32 and dense, an integer file's any mix of int8 and int4, dense or sparse |
//! | 6 + `L` | widths | `L + 1` varints: inputs, each hidden layer's units, classes; each 1–[`MAX_FORMAT_WIDTH`] |
//! | … | kept tiles | a varint `T` per sparse layer, in layer order (none in a dense file): the tiles it stores, at most `R′·K′/64` |
//! | … | each layer's sections, in order | see below, each `varint length ‖ bytes` |
//! | end − 4 | CRC-32 of bytes `0..end−4` | u32 little-endian |
//!
//! Layer `l` takes `K` inputs to `R` outputs. Its weights are stored padded to whole
//! [tiles](crate::kernels#weight-layout): `R'` rows (`R` rounded up to 16) of `K'` inputs (`K`
//! rounded up to 4); padding rows and columns are zero, padding rows have bias 0 (and scale 1 and
//! a valid requantization), so they are never read as outputs and never add to a sum. Padding is
//! the writer's work: no kernel has a tail.
//!
//! A **block-sparse** layer stores only some of its tiles (16 rows × 4 inputs: the blocks the
//! trainer prunes, and the units the [kernels skip](crate::kernels::Sparsity)): for each row
//! block, how many it keeps (`blocks`), their groups (`kept`, each block's strictly increasing),
//! and those tiles one after another (`weights`). A dense layer has `T = R′·K′/64` tiles and
//! no `blocks` or `kept` section at all (so dense files are what they were before sparse layers
//! existed). Every tile not stored is zero.
//!
//! Sections of a layer of an **integer** file (the same for int8 and int4 weights; "hidden" is
//! every layer but the last, whose outputs are the class logits):
//!
//! | section | bytes | content |
//! | --- | --- | --- |
//! | `act_scale` | 4 in a hidden layer, else 0 | f32: real value of one step of the layer's u8 outputs (the next layer's input scale) |
//! | `w_scale` | 4·R′ in the output layer, else 0, 4-aligned by a `pad` | f32 per row: weight scale (a hidden layer's follow from its requantization: `multiplier · 2^−shift · act_scale / input scale`) |
//! | `bias` | 4·R′, 4-aligned by a `pad` | i32 per row, at scale `input scale · w_scale` (the input scale is 1/255 for the first layer, the previous `act_scale` after it) |
//! | `multiplier` | 4·R′ in a hidden layer, else 0, 4-aligned by a `pad` | i32 per row: requantization multiplier, > 0 |
//! | `shift` | R′ in a hidden layer, else 0 | u8 per row: requantization shift ([33–62](crate::quant::SHIFTS)) |
//! | `blocks` | 2·R′/16; only in a sparse layer, 2-aligned by a `pad` | u16 per row block: the tiles it keeps (they add up to `T`) |
//! | `kept` | 2·T; only in a sparse layer, 2-aligned by a `pad` | u16 per stored tile: its group `g` (inputs 4g…4g+3), row block after row block, each block's strictly increasing and below K′/4 |
//! | `weights` | 64·T (int8) or 32·T (int4), after a `pad` | the `T` stored tiles, [tiled](crate::kernels#weight-layout) int8 or [4-bit tiles](crate::kernels#4-bit-weights) of nibbles `w + 8` (a dense layer's in tile order: R′·K′ or R′·K′/2 bytes) |
//!
//! Sections of a layer of an **f32** file:
//!
//! | section | bytes | content |
//! | --- | --- | --- |
//! | `bias` | 4·R, after a `pad` | f32 per output |
//! | `weights` | 4·K·R, after a `pad` | f32, input-major: `w[k·R + j]` weighs input `k` for output `j` (Keras's kernel) |
//!
//! A `pad` section holds fewer zero bytes than the alignment it gives, so that the section after
//! it starts aligned in the file: 64 bytes for weights ("after a `pad`"), 2 or 4 for sections
//! of u16 or 32-bit rows, which a core without unaligned loads (a Cortex-M0) then reads a row at
//! a time. Every section must lie so aligned in memory, up to 4 bytes (the Cortex-M kernels load
//! words): any buffer that starts 4-byte aligned passes; one that starts 64-byte aligned is
//! fastest (each weight tile one cache line): [`include_model!`](crate::include_model) for a file
//! embedded in the program.
//!
//! The tables above are [`INTEGER_SECTIONS`] and [`F32_SECTIONS`], which the reader and the
//! writer walk: a test renders them and checks that these docs show the same rows.
//!
//! Versions 1 and 2 held only the 784-512-10 network, version 3 stored every integer layer's
//! weight scales (int8 hidden layers' too), and version 4 aligned only the weights; their files
//! are refused with
//! [`FormatError::UnsupportedVersion`] (re-export or retrain them with this version's trainer).

mod read;
pub mod write;

use core::fmt;

pub use read::{F32Layer, F32Model, QuantLayer, QuantModel};

pub use crate::Weights;
use crate::kernels::{GROUP, TILE_BYTES, TILE_ROWS};
use crate::kinds;

/// Added to a layer's [`Weights::byte`] when the layer is block-sparse.
pub const SPARSE: u8 = 0x80;

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"MNML";
/// The format version this crate reads and writes.
pub const VERSION: u8 = 5;
/// Most layers a file holds.
pub const MAX_LAYERS: usize = 8;
/// Widest layer a file may declare.
pub const MAX_FORMAT_WIDTH: usize = 65_535;
/// Most classes a model may have (the forward pass returns their logits by value).
pub const MAX_CLASSES: usize = 64;
/// The widest hidden layer [`QuantModel`] and [`F32Model`] accept unless told otherwise: the
/// bound of their scratch buffers, on the stack of each prediction.
pub const DEFAULT_MAX_WIDTH: usize = 1024;
/// The largest scale an integer file may hold (2^40). With it, no input can make a logit or a
/// probability NaN or infinite: a class's real logit is at most 2^31 · 2^40 · 2^40 = 2^111 in
/// magnitude, far inside f32's range. A trained network's scales are below 1.
pub const MAX_SCALE: f32 = (1u64 << 40) as f32;

/// The largest magnitude of an f32 file's weights and biases (2^20). A trained network's weights
/// are below 10. (That no input in [0, 1] can overflow the forward pass is checked at load, layer
/// by layer, from the widths and the largest weights: see [`FormatError::Overflow`].)
pub const MAX_F32_WEIGHT: f32 = (1u32 << 20) as f32;

/// Alignment of the weight sections within the file.
///
/// 64 bytes, a cache line: each 64-byte weight tile is then one line, not two (a tile split
/// across lines doubles the memory traffic of the bandwidth-bound kernels). A buffer that starts
/// 64-byte aligned keeps it so in memory ([`crate::include_model!`], the trainer's loader).
pub const SECTION_ALIGN: usize = 64;

/// Bit by bit, with no table, on microcontrollers, where flash is scarce (the table would take
/// 1 KiB, and the check runs once, at load); slice-by-16 (16 KiB, many
/// times faster) elsewhere. Same CRC either way.
#[cfg(target_os = "none")]
const CRC: crc::Crc<u32, crc::NoTable> = crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);
#[cfg(not(target_os = "none"))]
const CRC: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
const CRC_LEN: usize = 4;
/// Magic, version and layer count.
const PREAMBLE_LEN: usize = 6;

/// One layer's place in the chain: its inputs, outputs and weight kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layer {
    /// Position in the chain, from 0.
    pub index: usize,
    /// Inputs `K`.
    pub inputs: usize,
    /// Outputs `R` (units, or classes for the last layer).
    pub outputs: usize,
    /// Its weights.
    pub weights: Weights,
    /// Whether it is the output layer (no ReLU, no requantization).
    pub last: bool,
    /// Whether it stores only some of its tiles (block-sparse).
    pub sparse: bool,
    /// The weight tiles it stores: [`Self::dense_tiles`] for a dense layer.
    pub tiles: usize,
}

impl Layer {
    /// Rows as stored: [`Self::outputs`] rounded up to a whole tile of 16.
    pub const fn padded_rows(&self) -> usize {
        self.outputs.div_ceil(TILE_ROWS) * TILE_ROWS
    }

    /// Inputs as stored: [`Self::inputs`] rounded up to a whole group of 4.
    pub const fn padded_cols(&self) -> usize {
        self.inputs.div_ceil(GROUP) * GROUP
    }

    /// The tiles of 16 rows × 4 inputs its padded weights have.
    pub const fn dense_tiles(&self) -> usize {
        self.padded_rows() / TILE_ROWS * (self.padded_cols() / GROUP)
    }

    /// The weight bytes it stores.
    pub const fn weight_bytes(&self) -> usize {
        self.tiles * TILE_BYTES * self.weights.bits() / 8
    }

    /// Parameters the layer really has (weights and biases, padding left out).
    pub const fn parameters(&self) -> usize {
        self.outputs * (self.inputs + 1)
    }
}

/// A section of a layer, as [`INTEGER_SECTIONS`] and [`F32_SECTIONS`] list them in file order.
#[derive(Clone, Copy)]
pub struct Section {
    /// Its name in the format tables and in errors.
    pub name: &'static str,
    /// The alignment its bytes start at in the file (and in memory, up to 4): 1, or a power of
    /// two that a `pad` section before it gives (2 and 4 for u16 and 32-bit rows, which a core
    /// without unaligned loads then reads whole; [`SECTION_ALIGN`] for the weights).
    pub align: usize,
    /// Whether only a block-sparse layer has it (a dense layer has no such section at all, so
    /// dense files read as they always have).
    pub sparse_only: bool,
    /// The docs' "bytes" column.
    pub bytes_doc: &'static str,
    /// The docs' "content" column.
    pub content_doc: &'static str,
    /// Its length in bytes for a layer.
    pub len: fn(&Layer) -> usize,
}

impl fmt::Debug for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// `n` if the layer is hidden (has a requantization), else 0.
const fn hidden(layer: &Layer, n: usize) -> usize {
    if layer.last { 0 } else { n }
}

/// Positions of the integer sections in [`INTEGER_SECTIONS`].
pub(crate) mod int {
    pub const ACT_SCALE: usize = 0;
    pub const W_SCALE: usize = 1;
    pub const BIAS: usize = 2;
    pub const MULTIPLIER: usize = 3;
    pub const SHIFT: usize = 4;
    pub const BLOCKS: usize = 5;
    pub const KEPT: usize = 6;
    pub const WEIGHTS: usize = 7;
}

/// Sections a layer has at most.
pub(crate) const MAX_SECTIONS: usize = INTEGER_SECTIONS.len();

/// The sections of an integer layer, in file order: the reader, the writer and the format docs
/// follow this table.
pub const INTEGER_SECTIONS: [Section; 8] = [
    Section {
        name: "act_scale",
        align: 1,
        sparse_only: false,
        bytes_doc: "4 in a hidden layer, else 0",
        content_doc: "f32: real value of one step of the layer's u8 outputs (the next layer's input scale)",
        len: |l| hidden(l, 4),
    },
    Section {
        name: "w_scale",
        align: 4,
        sparse_only: false,
        bytes_doc: "4·R′ in the output layer, else 0",
        content_doc: "f32 per row: weight scale (a hidden layer's follow from its requantization: `multiplier · 2^−shift · act_scale / input scale`)",
        len: |l| if l.last { 4 * l.padded_rows() } else { 0 },
    },
    Section {
        name: "bias",
        align: 4,
        sparse_only: false,
        bytes_doc: "4·R′",
        content_doc: "i32 per row, at scale `input scale · w_scale` (the input scale is 1/255 for the first layer, the previous `act_scale` after it)",
        len: |l| 4 * l.padded_rows(),
    },
    Section {
        name: "multiplier",
        align: 4,
        sparse_only: false,
        bytes_doc: "4·R′ in a hidden layer, else 0",
        content_doc: "i32 per row: requantization multiplier, > 0",
        len: |l| hidden(l, 4 * l.padded_rows()),
    },
    Section {
        name: "shift",
        align: 1,
        sparse_only: false,
        bytes_doc: "R′ in a hidden layer, else 0",
        content_doc: "u8 per row: requantization shift ([33–62](crate::quant::SHIFTS))",
        len: |l| hidden(l, l.padded_rows()),
    },
    Section {
        name: "blocks",
        align: 2,
        sparse_only: true,
        bytes_doc: "2·R′/16; only in a sparse layer",
        content_doc: "u16 per row block: the tiles it keeps (they add up to `T`)",
        len: |l| 2 * l.padded_rows() / TILE_ROWS,
    },
    Section {
        name: "kept",
        align: 2,
        sparse_only: true,
        bytes_doc: "2·T; only in a sparse layer",
        content_doc: "u16 per stored tile: its group `g` (inputs 4g…4g+3), row block after row block, each block's strictly increasing and below K′/4",
        len: |l| 2 * l.tiles,
    },
    Section {
        name: "weights",
        align: SECTION_ALIGN,
        sparse_only: false,
        bytes_doc: "64·T (int8) or 32·T (int4)",
        content_doc: "the `T` stored tiles, [tiled](crate::kernels#weight-layout) int8 or [4-bit tiles](crate::kernels#4-bit-weights) of nibbles `w + 8` (a dense layer's in tile order: R′·K′ or R′·K′/2 bytes)",
        len: Layer::weight_bytes,
    },
];

/// Positions of the f32 sections in [`F32_SECTIONS`].
pub(crate) mod float {
    pub const BIAS: usize = 0;
    pub const WEIGHTS: usize = 1;
}

/// The sections of an f32 layer, in file order.
pub const F32_SECTIONS: [Section; 2] = [
    Section {
        name: "bias",
        align: SECTION_ALIGN,
        sparse_only: false,
        bytes_doc: "4·R",
        content_doc: "f32 per output",
        len: |l| 4 * l.outputs,
    },
    Section {
        name: "weights",
        align: SECTION_ALIGN,
        sparse_only: false,
        bytes_doc: "4·K·R",
        content_doc: "f32, input-major: `w[k·R + j]` weighs input `k` for output `j` (Keras's kernel)",
        len: |l| 4 * l.inputs * l.outputs,
    },
];

/// The sections of a layer of `weights`.
pub(crate) fn sections(weights: Weights) -> &'static [Section] {
    if weights.is_integer() {
        &INTEGER_SECTIONS
    } else {
        &F32_SECTIONS
    }
}

/// What the reader takes of a [`Section`]: the row without its docs, so that a program that only
/// reads models (a firmware) holds no documentation in its flash.
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    pub name: &'static str,
    pub align: usize,
    pub sparse_only: bool,
    pub len: fn(&Layer) -> usize,
}

/// A table's [`Slot`]s, at compile time.
const fn slots<const N: usize>(table: &[Section; N]) -> [Slot; N] {
    let mut out = [Slot {
        name: "",
        align: 1,
        sparse_only: false,
        len: |_| 0,
    }; N];
    let mut i = 0;
    while i < N {
        // Evaluated by the compiler: an index out of range would stop the build, not a program.
        #[allow(clippy::indexing_slicing)]
        let s = &table[i];
        #[allow(clippy::indexing_slicing)]
        {
            out[i] = Slot {
                name: s.name,
                align: s.align,
                sparse_only: s.sparse_only,
                len: s.len,
            };
        }
        i += 1;
    }
    out
}

static INTEGER_SLOTS: [Slot; INTEGER_SECTIONS.len()] = slots(&INTEGER_SECTIONS);
static F32_SLOTS: [Slot; F32_SECTIONS.len()] = slots(&F32_SECTIONS);

/// [`sections`] as the reader takes them.
pub(crate) fn slots_of(weights: Weights) -> &'static [Slot] {
    if weights.is_integer() {
        &INTEGER_SLOTS
    } else {
        &F32_SLOTS
    }
}

/// A file's shape and weight kinds, as its header declares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    widths: heapless::Vec<usize, { MAX_LAYERS + 1 }>,
    weights: heapless::Vec<Weights, MAX_LAYERS>,
    /// Per layer, its stored tiles if it is block-sparse.
    sparse: heapless::Vec<Option<usize>, MAX_LAYERS>,
}

impl Header {
    /// The widths: inputs, each hidden layer, classes.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Each layer's weights.
    pub fn weights(&self) -> &[Weights] {
        &self.weights
    }

    /// The layers, first to last.
    pub fn layers(&self) -> impl ExactSizeIterator<Item = Layer> + '_ {
        let n = self.weights.len();
        self.weights
            .iter()
            .zip(self.widths.windows(2))
            .zip(&self.sparse)
            .enumerate()
            .map(move |(index, ((&weights, w), &tiles))| {
                let mut layer = Layer {
                    index,
                    inputs: w.first().copied().unwrap_or(0),
                    outputs: w.get(1).copied().unwrap_or(0),
                    weights,
                    last: index + 1 == n,
                    sparse: tiles.is_some(),
                    tiles: 0,
                };
                layer.tiles = tiles.unwrap_or(layer.dense_tiles());
                layer
            })
    }

    /// Whether any layer is block-sparse.
    pub fn is_sparse(&self) -> bool {
        self.sparse.iter().any(Option::is_some)
    }

    /// The integer layer kinds the file has (a set of [`kinds`]; 0 for an f32
    /// file): what a [`QuantModel`]'s `KINDS` must include to run it.
    pub fn kinds(&self) -> u8 {
        let mut set = 0;
        for (w, sparse) in self.weights.iter().zip(&self.sparse) {
            set |= match w {
                Weights::Int8 => kinds::INT8,
                Weights::Int4 => kinds::INT4,
                Weights::F32 => 0,
            };
            if sparse.is_some() {
                set |= kinds::SPARSE;
            }
        }
        set
    }

    /// Inputs of the first layer.
    pub fn inputs(&self) -> usize {
        self.widths.first().copied().unwrap_or(0)
    }

    /// Outputs of the last layer: the classes.
    pub fn classes(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    /// Whether the file holds f32 weights (else integer ones).
    pub fn is_f32(&self) -> bool {
        self.weights.first() == Some(&Weights::F32)
    }

    /// "f32", "int8", "int4", or "int4+int8" for a mix.
    pub fn kind_name(&self) -> &'static str {
        let has = |w: Weights| self.weights.contains(&w);
        match (has(Weights::F32), has(Weights::Int8), has(Weights::Int4)) {
            (true, _, _) => "f32",
            (_, true, true) => "int4+int8",
            (_, false, true) => "int4",
            _ => "int8",
        }
    }

    /// The widest hidden layer as stored (rows padded to 16), 0 for a one-layer model: what a
    /// forward pass's scratch must hold.
    pub fn max_hidden_width(&self) -> usize {
        let hidden = self.widths.get(1..self.widths.len().saturating_sub(1));
        let widest = hidden.unwrap_or(&[]).iter().copied().max().unwrap_or(0);
        if self.is_f32() {
            widest
        } else {
            widest.div_ceil(TILE_ROWS) * TILE_ROWS
        }
    }

    /// Refuses a header a forward pass bounded by `max_width` and built for `built` (a set of
    /// [`kinds`]) cannot run.
    fn check_bounds(&self, max_width: usize, built: u8) -> Result<(), FormatError> {
        let missing = self.kinds() & !built;
        if missing != 0 {
            return Err(FormatError::KindLeftOut(kinds::name(missing)));
        }
        let widest = self.max_hidden_width();
        if widest > max_width {
            return Err(FormatError::TooWide {
                width: widest,
                max: max_width,
            });
        }
        if self.classes() > MAX_CLASSES {
            return Err(FormatError::TooManyClasses {
                classes: self.classes(),
            });
        }
        Ok(())
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
    /// A valid file of another kind (an f32 model where an integer one was expected, or the
    /// reverse), or f32 layers mixed with integer ones.
    WrongKind,
    /// A weight byte that names no [`Weights`].
    UnknownWeights(u8),
    /// Layers of a kind (`"int8"`, `"int4"` or `"sparse"`) the model's forward pass was built
    /// without (its `KINDS`, see [`kinds`]).
    KindLeftOut(&'static str),
    /// The CRC-32 at the end does not match the contents.
    CrcMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the contents.
        computed: u32,
    },
    /// The fields do not decode (a section runs past the end, or bytes follow the last one).
    Malformed,
    /// A layer count outside 1–[`MAX_LAYERS`].
    LayerCount(usize),
    /// A width of 0 or above [`MAX_FORMAT_WIDTH`] (position: 0 inputs, then each layer's
    /// outputs), or, when writing, layers that do not chain (a layer's inputs are not the previous
    /// one's outputs).
    BadWidth {
        /// Position among the widths.
        index: usize,
        /// The width.
        width: usize,
    },
    /// A hidden layer wider than the bound this build's forward pass was given
    /// ([`DEFAULT_MAX_WIDTH`], or the `MAX_WIDTH` of [`QuantModel`] / [`F32Model`]).
    TooWide {
        /// Its width as stored.
        width: usize,
        /// The bound.
        max: usize,
    },
    /// More classes than [`MAX_CLASSES`].
    TooManyClasses {
        /// Classes in the file.
        classes: usize,
    },
    /// A section of the wrong length.
    SectionLength {
        /// The layer.
        layer: usize,
        /// The section's name as in the format table.
        section: &'static str,
        /// Bytes it must have.
        expected: usize,
        /// Bytes it has.
        got: usize,
    },
    /// A section not aligned in memory as the format aligns it in the file (up to 4 bytes: the
    /// file's buffer does not start 4-byte aligned).
    Misaligned {
        /// The layer.
        layer: usize,
        /// The section.
        section: &'static str,
    },
    /// A scale that is zero, negative, NaN, infinite or above [`MAX_SCALE`].
    BadScale {
        /// The layer.
        layer: usize,
        /// The section.
        section: &'static str,
        /// Position within it.
        index: usize,
    },
    /// An f32 weight or bias that is NaN, infinite or beyond ±[`MAX_F32_WEIGHT`] (or, when
    /// writing, an int4 weight outside −8…7).
    BadWeight {
        /// The layer.
        layer: usize,
        /// The section.
        section: &'static str,
        /// Position within it.
        index: usize,
    },
    /// A requantization multiplier ≤ 0 or a shift outside [`crate::quant::SHIFTS`].
    BadRequantization {
        /// The layer.
        layer: usize,
        /// The row.
        index: usize,
    },
    /// A block-sparse layer whose kept tiles are not, block by block, strictly increasing groups
    /// of the layer's inputs adding up to its tile count (`block`: the first wrong row block; the
    /// number of row blocks when the counts do not add up or the count exceeds a dense layer's).
    BadSparsity {
        /// The layer.
        layer: usize,
        /// The row block.
        block: usize,
    },
    /// An f32 layer whose outputs could overflow f32 for some input in [0, 1] (its widths times
    /// its largest weights, after the layers before it, pass 2^100).
    Overflow {
        /// The layer.
        layer: usize,
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
            FormatError::WrongKind => write!(
                f,
                "the model's weights are not of the kind expected (f32 and integer layers \
                 are different files)"
            ),
            FormatError::UnknownWeights(b) => write!(f, "weight kind {b} is unknown"),
            FormatError::KindLeftOut(kind) => write!(
                f,
                "the model has {kind} layers, which this build's forward pass leaves out \
                 (QuantModel's KINDS)"
            ),
            FormatError::CrcMismatch { stored, computed } => write!(
                f,
                "CRC mismatch: file says {stored:#010x}, contents give {computed:#010x}"
            ),
            FormatError::Malformed => write!(f, "malformed fields"),
            FormatError::LayerCount(n) => {
                write!(f, "{n} layers: a model has 1 to {MAX_LAYERS}")
            }
            FormatError::BadWidth { index, width } => write!(
                f,
                "width {index} is {width}: widths are 1 to {MAX_FORMAT_WIDTH}, and each layer \
                 takes the previous one's outputs"
            ),
            FormatError::TooWide { width, max } => write!(
                f,
                "a hidden layer of {width} units is wider than this build supports ({max}); \
                 build with a larger MAX_WIDTH"
            ),
            FormatError::TooManyClasses { classes } => {
                write!(f, "{classes} classes: at most {MAX_CLASSES} are supported")
            }
            FormatError::SectionLength {
                layer,
                section,
                expected,
                got,
            } => write!(
                f,
                "layer {layer} section {section} has {got} bytes, expected {expected}"
            ),
            FormatError::Misaligned { layer, section } => write!(
                f,
                "layer {layer} section {section} is misaligned in memory (the file must start 4-byte aligned)"
            ),
            // The bounds as text: formatting an f32 would bring float formatting (over 10 KB)
            // into every firmware that reports a format error.
            FormatError::BadScale {
                layer,
                section,
                index,
            } => write!(
                f,
                "layer {layer} {section}[{index}] is not a positive scale up to 2^40"
            ),
            FormatError::BadWeight {
                layer,
                section,
                index,
            } => write!(
                f,
                "layer {layer} {section}[{index}] is not a finite weight within ±2^20"
            ),
            FormatError::BadRequantization { layer, index } => write!(
                f,
                "layer {layer}: requantization of unit {index} is out of range"
            ),
            FormatError::BadSparsity { layer, block } => write!(
                f,
                "layer {layer}: the kept tiles of row block {block} are not sorted, distinct \
                 groups of the layer's inputs adding up to its tile count"
            ),
            FormatError::Overflow { layer } => write!(
                f,
                "layer {layer}: weights this large over this many inputs could overflow f32"
            ),
        }
    }
}

impl core::error::Error for FormatError {}

/// A cursor over postcard-encoded fields.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl<'a> Fields<'a> {
    pub(crate) fn varint(&mut self) -> Result<u32, FormatError> {
        let (v, rest) =
            postcard::take_from_bytes::<u32>(self.0).map_err(|_| FormatError::Malformed)?;
        self.0 = rest;
        Ok(v)
    }

    pub(crate) fn section(&mut self) -> Result<&'a [u8], FormatError> {
        let (v, rest) =
            postcard::take_from_bytes::<&'a [u8]>(self.0).map_err(|_| FormatError::Malformed)?;
        self.0 = rest;
        Ok(v)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError::Malformed);
        }
        let (v, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(v)
    }
}

/// The header of `bytes` (magic, version, layers, weight kinds, widths), without checking the
/// sections or the CRC; the fields after it.
fn header(bytes: &[u8]) -> Result<(Header, Fields<'_>), FormatError> {
    let truncated = FormatError::Truncated {
        needed: PREAMBLE_LEN + CRC_LEN,
        got: bytes.len(),
    };
    let (Some(magic), Some(&version), Some(&layers)) = (bytes.get(..4), bytes.get(4), bytes.get(5))
    else {
        return Err(truncated);
    };
    if magic != MAGIC {
        return Err(FormatError::BadMagic);
    }
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let n = usize::from(layers);
    if !(1..=MAX_LAYERS).contains(&n) {
        return Err(FormatError::LayerCount(n));
    }
    let mut fields = Fields(bytes.get(PREAMBLE_LEN..).unwrap_or(&[]));
    let mut header = Header {
        widths: heapless::Vec::new(),
        weights: heapless::Vec::new(),
        sparse: heapless::Vec::new(),
    };
    for &b in fields.bytes(n).map_err(|_| truncated)? {
        let w = Weights::from_byte(b & !SPARSE)
            .filter(|w| b & SPARSE == 0 || w.is_integer())
            .ok_or(FormatError::UnknownWeights(b))?;
        // Cannot fail: at most MAX_LAYERS.
        let _ = header.weights.push(w);
        let _ = header.sparse.push((b & SPARSE != 0).then_some(0));
    }
    if header
        .weights
        .iter()
        .any(|w| w.is_integer() == header.is_f32())
    {
        return Err(FormatError::WrongKind);
    }
    for index in 0..=n {
        let width = fields.varint()? as usize;
        if !(1..=MAX_FORMAT_WIDTH).contains(&width) {
            return Err(FormatError::BadWidth { index, width });
        }
        let _ = header.widths.push(width);
    }
    for (index, (tiles, w)) in header
        .sparse
        .iter_mut()
        .zip(header.widths.windows(2))
        .enumerate()
    {
        if let (Some(t), &[inputs, outputs]) = (tiles, w) {
            *t = fields.varint()? as usize;
            let row_blocks = outputs.div_ceil(TILE_ROWS);
            if *t > row_blocks * inputs.div_ceil(GROUP) {
                return Err(FormatError::BadSparsity {
                    layer: index,
                    block: row_blocks,
                });
            }
        }
    }
    Ok((header, fields))
}

/// The header of a file, without validating the rest: its shape, its layers' weights, and so
/// which of [`QuantModel::from_bytes`] and [`F32Model::from_bytes`] applies.
pub fn peek(bytes: &[u8]) -> Result<Header, FormatError> {
    header(bytes).map(|(h, _)| h)
}

/// The CRC-32 that ends a file, of `bytes` (all that precede it).
pub fn checksum(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn rendered(table: &[Section]) -> String {
        let mut s = String::from("//! | section | bytes | content |\n//! | --- | --- | --- |\n");
        for t in table {
            let pad = match t.align {
                1 => std::string::String::new(),
                SECTION_ALIGN => std::string::String::from(", after a `pad`"),
                a => std::format!(", {a}-aligned by a `pad`"),
            };
            s += &std::format!(
                "//! | `{}` | {}{pad} | {} |\n",
                t.name,
                t.bytes_doc,
                t.content_doc
            );
        }
        s
    }

    /// The docs' section tables are the ones the reader and the writer walk.
    #[test]
    fn the_docs_show_the_section_tables() {
        let docs = include_str!("mod.rs");
        for table in [&INTEGER_SECTIONS[..], &F32_SECTIONS[..]] {
            let table = rendered(table);
            assert!(docs.contains(&table), "the docs lack:\n{table}");
        }
    }
}
