//! Reading MNIST-style datasets from IDX files, gzip-compressed or raw: the trainer's reader, and
//! the firmware's build script's (one reader, one set of checks).
//!
//! IDX layout: a big-endian u32 magic (`0x0000`, the element type, the number of dimensions), one
//! big-endian u32 per dimension, then the elements row-major. Only unsigned bytes (type `0x08`) are
//! accepted. Whether a file is gzip is decided by its first two bytes, never by its name.
//!
//! Nothing here trusts a header: the size it claims is checked against the data actually present
//! before anything of that size is allocated, and a claim beyond [`MAX_DATA_BYTES`] is refused
//! before decompressing anything, so a small file claiming 4 billion images costs nothing. A gzip
//! file may hold several members (as `cat a.gz b.gz` makes); bytes after the last member are
//! an error, as they are after raw data.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

/// The longest image side accepted, in pixels.
pub const MAX_SIDE: usize = 1024;
/// The most pixels per image accepted: the widest input a model file can have.
pub const MAX_PIXELS: usize = 65_535;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most data bytes a header may claim: 1 GiB, over ten times all of MNIST's images (and EMNIST's
/// 814,255), so that a hostile header cannot make the reader decompress gigabytes first.
pub const MAX_DATA_BYTES: u64 = 1 << 30;
const TYPE_U8: u8 = 0x08;
/// The largest `SHA256SUMS` read (a line per file: a few hundred bytes for MNIST's four).
const MAX_SUMS_BYTES: u64 = 1 << 20;

/// Opening files the one careful way every reader of the workspace shares: only a regular file
/// (a link is followed to what it names), never a FIFO, a device or a socket, which could hang
/// the read or never end; its size checked against a cap per kind of file before anything is read,
/// and the read itself stopped at the cap (a file that grows while read).
pub mod file {
    use std::io::{self, Read};
    use std::path::Path;

    /// Why [`read_regular`] refused.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum ReadError {
        /// A folder, a FIFO, a device, a socket (or a link to one).
        #[error("not a regular file (a folder, a FIFO, a device or a socket)")]
        NotAFile,
        /// Larger than the cap for its kind.
        #[error("{size} bytes, more than the {cap} accepted for {what}")]
        TooLarge {
            /// Its size (or what was read before the cap stopped it).
            size: u64,
            /// The cap.
            cap: u64,
            /// The kind of file, as the message names it ("a model file").
            what: &'static str,
        },
        /// The operating system refused (transparent: its message once, not again as the
        /// cause).
        #[error(transparent)]
        Io(#[from] io::Error),
    }

    /// The bytes of the regular file at `path`, at most `cap` of them (`what` names the kind
    /// of file in the error).
    pub fn read_regular(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Err(ReadError::NotAFile);
        }
        let too_large = |size| ReadError::TooLarge { size, cap, what };
        if meta.len() > cap {
            return Err(too_large(meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(path)?
            .take(cap.saturating_add(1))
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > cap {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }
}

/// What is wrong with one dataset file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxError {
    /// None of the accepted names exists.
    #[error("missing (looked for {0})")]
    Missing(String),
    /// The name exists but is a directory, a pipe, a device…
    #[error("not a regular file")]
    NotAFile,
    /// The file is larger than any dataset file this reader accepts.
    #[error("{size} bytes, more than the {cap} accepted for an IDX file")]
    FileTooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The header claims more data than [`MAX_DATA_BYTES`].
    #[error(
        "the header claims {claimed} bytes of data, more than the {MAX_DATA_BYTES} this reader accepts"
    )]
    TooLarge {
        /// Bytes claimed.
        claimed: u64,
    },
    /// A header that declares no items.
    #[error("the file holds no items")]
    Empty,
    /// `SHA256SUMS` lists the file twice, with different digests.
    #[error("SHA256SUMS lists {name} twice, with different digests")]
    ConflictingChecksums {
        /// The file name listed twice.
        name: String,
    },
    /// The operating system refused the read.
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    /// The first bytes are neither the gzip magic nor an IDX magic.
    #[error("neither gzip nor IDX (starts with {0:02x?})")]
    NotIdx(Vec<u8>),
    /// A gzip stream that cannot be decompressed.
    #[error("corrupt gzip data: {0}")]
    Gzip(io::Error),
    /// An IDX magic for another kind of file (e.g. a labels file where images were expected).
    #[error("wrong IDX magic {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        /// The magic this file should have.
        expected: u32,
        /// The magic it has.
        found: u32,
    },
    /// Elements that are not unsigned bytes.
    #[error("element type {0:#04x} is not unsigned byte (0x08)")]
    ElementType(u8),
    /// Fewer bytes than the header (or the header's dimensions) require.
    #[error("truncated: needs {needed} bytes, has {got}")]
    Truncated {
        /// Bytes the header says the file holds (header included).
        needed: u64,
        /// Bytes actually present.
        got: u64,
    },
    /// More bytes than the header accounts for.
    #[error("{extra} bytes after the data the header describes")]
    TrailingData {
        /// The surplus.
        extra: u64,
    },
    /// The file exists both raw and gzipped (`name` and `name.gz`), with different data.
    #[error(
        "{} exists too and holds different data: remove the one that is not meant",
        .0.display()
    )]
    TwoVersions(PathBuf),
    /// The images and labels files hold different numbers of items.
    #[error("{labels} labels for {images} images")]
    CountMismatch {
        /// Images in the images file.
        images: usize,
        /// Labels in the labels file.
        labels: usize,
    },
    /// Images with a side of 0 or above [`MAX_SIDE`], or more than [`MAX_PIXELS`] pixels.
    #[error(
        "images of {rows}×{cols} pixels: each side must be 1 to {MAX_SIDE}, an image at most \
         {MAX_PIXELS} pixels"
    )]
    ImageSize {
        /// Rows per image in the header.
        rows: u32,
        /// Columns per image in the header.
        cols: u32,
    },
    /// Test images of another size than the training images.
    #[error("images of {rows}×{cols} pixels, the training images {train_rows}×{train_cols}")]
    ShapeMismatch {
        /// Rows of these images.
        rows: usize,
        /// Columns of these images.
        cols: usize,
        /// Rows of the training images.
        train_rows: usize,
        /// Columns of the training images.
        train_cols: usize,
    },
    /// The training labels run 0 to `classes − 1` with some of those classes absent.
    #[error(
        "labels run 0 to {}, but none is {}: classes must be numbered 0…C−1, each present in \
         the training set",
        classes - 1,
        missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    MissingClasses {
        /// One more than the largest label.
        classes: usize,
        /// The labels below it that no training image has (the first few).
        missing: Vec<u8>,
    },
    /// A test label that is none of the training set's classes.
    #[error("label {value} at index {index} is none of the training set's classes 0–{}", classes - 1)]
    Label {
        /// Position in the labels file.
        index: usize,
        /// The offending label.
        value: u8,
        /// The training set's classes.
        classes: usize,
    },
    /// The file's SHA-256 differs from the one listed in `SHA256SUMS`.
    #[error("checksum mismatch: SHA256SUMS lists {expected}, the file hashes to {actual}")]
    Checksum {
        /// Listed digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
}

/// An [`IdxError`] together with the file it concerns.
#[derive(Debug)]
pub struct DataError {
    /// The file (or, for a missing file, the name looked for).
    pub path: PathBuf,
    /// What is wrong.
    pub kind: IdxError,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.kind)
    }
}

/// The message already says what is wrong, with the file: no source, so that an error chain
/// (`anyhow`'s `{:#}`) does not repeat it.
impl std::error::Error for DataError {}

/// Images and their labels, `images.len() == labels.len() * rows * cols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Row-major u8 pixels, one image after another, 0 = background.
    pub images: Vec<u8>,
    /// One class per image, 0…C−1 (MNIST's: the digits 0–9).
    pub labels: Vec<u8>,
    /// Rows per image (28 in MNIST).
    pub rows: usize,
    /// Columns per image (28 in MNIST).
    pub cols: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// The number of classes: one more than the largest label (0 for no labels).
    pub fn classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |&m| usize::from(m) + 1)
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.pixels();
        &self.images[i * n..(i + 1) * n]
    }

    /// The same images' shape, other images and labels.
    fn with(&self, images: &[u8], labels: &[u8]) -> Dataset {
        Dataset {
            images: images.to_vec(),
            labels: labels.to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.with(&self.images[..n * self.pixels()], &self.labels[..n])
    }

    /// Keras's `validation_split`: the last `fraction` of the images (and labels) held out, in
    /// order, before any shuffling: `(training, validation)`.
    pub fn split_validation(&self, fraction: f64) -> (Dataset, Dataset) {
        let keep = ((self.len() as f64) * (1.0 - fraction.clamp(0.0, 1.0))) as usize;
        let keep = keep.min(self.len());
        let (images, held_images) = self.images.split_at(keep * self.pixels());
        let (labels, held_labels) = self.labels.split_at(keep);
        (
            self.with(images, labels),
            self.with(held_images, held_labels),
        )
    }
}

/// The training and test sets of one folder.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// 60,000 images in MNIST.
    pub train: Dataset,
    /// 10,000 images in MNIST.
    pub test: Dataset,
}

/// The standard base names; each may carry `.gz`.
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Loads the four standard files from `dir`, verifying them against `dir/SHA256SUMS` if present.
///
/// The images may have any size (the same in both sets, each side 1–[`MAX_SIDE`]); the labels
/// are the classes 0…C−1, every one of them present in the training set, and the test labels
/// among them.
pub fn load_mnist(dir: &Path) -> Result<Mnist, DataError> {
    let sums = Checksums::read(dir)?;
    let train = load_pair(dir, TRAIN_IMAGES, TRAIN_LABELS, &sums)?;
    let test = load_pair(dir, TEST_IMAGES, TEST_LABELS, &sums)?;
    let at = |name: &str, kind| DataError {
        path: dir.join(name),
        kind,
    };
    if (test.rows, test.cols) != (train.rows, train.cols) {
        return Err(at(
            TEST_IMAGES,
            IdxError::ShapeMismatch {
                rows: test.rows,
                cols: test.cols,
                train_rows: train.rows,
                train_cols: train.cols,
            },
        ));
    }
    let classes = train.classes();
    let mut present = [false; 256];
    for &l in &train.labels {
        present[usize::from(l)] = true;
    }
    let missing: Vec<u8> = (0..classes)
        .filter(|&c| !present[c])
        .map(|c| c as u8)
        .collect();
    if !missing.is_empty() {
        let missing = missing.into_iter().take(8).collect();
        return Err(at(
            TRAIN_LABELS,
            IdxError::MissingClasses { classes, missing },
        ));
    }
    if let Some((index, &value)) = test
        .labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        return Err(at(
            TEST_LABELS,
            IdxError::Label {
                index,
                value,
                classes,
            },
        ));
    }
    Ok(Mnist { train, test })
}

/// Loads only the test set's two files from `dir` (what evaluating a model needs), verified as
/// [`load_mnist`] verifies them.
pub fn load_test(dir: &Path) -> Result<Dataset, DataError> {
    let sums = Checksums::read(dir)?;
    load_pair(dir, TEST_IMAGES, TEST_LABELS, &sums)
}

fn load_pair(
    dir: &Path,
    images: &str,
    labels: &str,
    sums: &Checksums,
) -> Result<Dataset, DataError> {
    let mut shape = (0, 0);
    let (_, images) = read_parsed(dir, images, sums, |bytes| {
        parse_images(bytes).map(|(images, rows, cols)| {
            shape = (rows, cols);
            images
        })
    })?;
    let (labels_path, labels) = read_parsed(dir, labels, sums, parse_labels)?;
    let (rows, cols) = shape;
    let count = images.len() / (rows * cols).max(1);
    if count != labels.len() {
        return Err(DataError {
            path: labels_path,
            kind: IdxError::CountMismatch {
                images: count,
                labels: labels.len(),
            },
        });
    }
    Ok(Dataset {
        images,
        labels,
        rows,
        cols,
    })
}

/// Reads and parses `dir/name` or `dir/name.gz`, whichever exists. Where both do, both are read
/// and must hold the same data: a folder holding two versions of a file is refused rather than
/// one of them picked without a word.
fn read_parsed(
    dir: &Path,
    name: &str,
    sums: &Checksums,
    mut parse: impl FnMut(&[u8]) -> Result<Vec<u8>, IdxError>,
) -> Result<(PathBuf, Vec<u8>), DataError> {
    let gz = format!("{name}.gz");
    // Whatever exists under either name (a link is followed; a loop is an error, not "missing").
    let mut found = [name, gz.as_str()]
        .into_iter()
        .map(|n| (n, dir.join(n)))
        .filter(|(_, p)| p.symlink_metadata().is_ok())
        .map(|(n, path)| {
            let bytes = read_file(&path, n, sums)?;
            let data = parse(&bytes).map_err(|kind| DataError {
                path: path.clone(),
                kind,
            })?;
            Ok((path, data))
        });
    let Some(first) = found.next() else {
        return Err(DataError {
            path: dir.join(name),
            kind: IdxError::Missing(format!("{name} or {gz}")),
        });
    };
    let (path, data) = first?;
    if let Some(second) = found.next() {
        let (other, other_data) = second?;
        if other_data != data {
            return Err(DataError {
                path,
                kind: IdxError::TwoVersions(other),
            });
        }
    }
    Ok((path, data))
}

/// Reads `path` (listed in `SHA256SUMS` as `name`) and checks its listed digest.
fn read_file(path: &Path, name: &str, sums: &Checksums) -> Result<Vec<u8>, DataError> {
    let at = |kind| DataError {
        path: path.to_path_buf(),
        kind,
    };
    // Not a regular file (a folder, a FIFO, a device, a link to one), a loop: its own error.
    let bytes =
        file::read_regular(path, MAX_DATA_BYTES + 4096, "an IDX file").map_err(|e| at(e.into()))?;
    sums.verify(name, &bytes).map_err(at)?;
    Ok(bytes)
}

/// Parses an images file: `n × rows × cols` unsigned bytes (each side 1–[`MAX_SIDE`], at most
/// [`MAX_PIXELS`] per image); returns the pixels, rows and columns.
pub fn parse_images(bytes: &[u8]) -> Result<(Vec<u8>, usize, usize), IdxError> {
    let (dims, data) = parse_idx(bytes, 3)?;
    let (rows, cols) = (dims[1] as usize, dims[2] as usize);
    if !(1..=MAX_SIDE).contains(&rows)
        || !(1..=MAX_SIDE).contains(&cols)
        || rows * cols > MAX_PIXELS
    {
        return Err(IdxError::ImageSize {
            rows: dims[1],
            cols: dims[2],
        });
    }
    Ok((data, rows, cols))
}

/// Parses a labels file: `n` classes, one byte each.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>, IdxError> {
    parse_idx(bytes, 1).map(|(_, data)| data)
}

/// Parses one IDX file of unsigned bytes with `ndim` dimensions, decompressing gzip first.
fn parse_idx(bytes: &[u8], ndim: u8) -> Result<(Vec<u32>, Vec<u8>), IdxError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        read_idx(MultiGzDecoder::new(bytes), ndim).map_err(|e| match e {
            IdxError::Io(io) => IdxError::Gzip(io),
            other => other,
        })
    } else {
        read_idx(bytes, ndim)
    }
}

fn read_idx(mut src: impl Read, ndim: u8) -> Result<(Vec<u32>, Vec<u8>), IdxError> {
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut src, &mut magic)?;
    if got < magic.len() {
        return Err(if magic[..got.min(2)].iter().all(|&b| b == 0) {
            IdxError::Truncated {
                needed: 4,
                got: got as u64,
            }
        } else {
            IdxError::NotIdx(magic[..got].to_vec())
        });
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(IdxError::NotIdx(magic.to_vec()));
    }
    if magic[2] != TYPE_U8 {
        return Err(IdxError::ElementType(magic[2]));
    }
    let expected = u32::from_be_bytes([0, 0, TYPE_U8, ndim]);
    let found = u32::from_be_bytes(magic);
    if found != expected {
        return Err(IdxError::BadMagic { expected, found });
    }

    let header_len = 4 + 4 * u64::from(ndim);
    let mut dim_bytes = vec![0u8; 4 * usize::from(ndim)];
    let got = read_up_to(&mut src, &mut dim_bytes)?;
    if got < dim_bytes.len() {
        return Err(IdxError::Truncated {
            needed: header_len,
            got: 4 + got as u64,
        });
    }
    let dims: Vec<u32> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // u64 cannot overflow for three u32 factors' worth of realistic files; saturate for the rest.
    let claimed = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .unwrap_or(u64::MAX);
    if claimed > MAX_DATA_BYTES {
        return Err(IdxError::TooLarge { claimed });
    }
    if dims.first() == Some(&0) {
        return Err(IdxError::Empty);
    }

    // Read at most one byte more than claimed: the buffer grows with the data actually present,
    // never with what the header says.
    let mut data = Vec::new();
    (&mut src)
        .take(claimed.saturating_add(1))
        .read_to_end(&mut data)?;
    let got = data.len() as u64;
    if got < claimed {
        return Err(IdxError::Truncated {
            needed: header_len.saturating_add(claimed),
            got: header_len + got,
        });
    }
    if got > claimed {
        // Count the rest without keeping it.
        let rest = io::copy(&mut src, &mut io::sink())?;
        return Err(IdxError::TrailingData {
            extra: got - claimed + rest,
        });
    }
    Ok((dims, data))
}

/// `read_exact` that reports how much it got instead of failing on a short source.
fn read_up_to(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The SHA-256 of `bytes` in lowercase hex, as `SHA256SUMS` lists it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl From<file::ReadError> for IdxError {
    fn from(e: file::ReadError) -> Self {
        match e {
            file::ReadError::NotAFile => IdxError::NotAFile,
            file::ReadError::TooLarge { size, cap, .. } => IdxError::FileTooLarge { size, cap },
            file::ReadError::Io(e) => IdxError::Io(e),
        }
    }
}

/// The digests listed in a folder's `SHA256SUMS` (`<hex>  <file name>` per line), if it has one.
#[derive(Debug, Default)]
struct Checksums(Vec<(String, String)>);

impl Checksums {
    fn read(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join("SHA256SUMS");
        if path.symlink_metadata().is_err() {
            return Ok(Self::default());
        }
        let text = match file::read_regular(&path, MAX_SUMS_BYTES, "SHA256SUMS") {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                return Err(DataError {
                    path,
                    kind: e.into(),
                });
            }
        };
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let Some((hex, name)) = line.trim().split_once(char::is_whitespace) else {
                continue;
            };
            let name = name.trim_start().trim_start_matches('*').to_owned();
            let hex = hex.to_ascii_lowercase();
            match entries.iter().find(|(n, _)| *n == name) {
                Some((_, listed)) if *listed != hex => {
                    return Err(DataError {
                        path,
                        kind: IdxError::ConflictingChecksums { name },
                    });
                }
                Some(_) => {}
                None => entries.push((name, hex)),
            }
        }
        Ok(Self(entries))
    }

    fn verify(&self, file_name: &str, bytes: &[u8]) -> Result<(), IdxError> {
        let Some((_, expected)) = self.0.iter().find(|(name, _)| name == file_name) else {
            return Ok(());
        };
        let actual = sha256_hex(bytes);
        if &actual == expected {
            Ok(())
        } else {
            Err(IdxError::Checksum {
                expected: expected.clone(),
                actual,
            })
        }
    }
}
