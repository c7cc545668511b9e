//! The IDX reader on every kind of bad input: each gives its own error, naming the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use mnist_idx::{IdxError, load_mnist, load_test, parse_images, parse_labels};

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn images(n: u32) -> Vec<u8> {
    idx(0x803, &[n, 28, 28], &vec![7; n as usize * 784])
}

fn labels(values: &[u8]) -> Vec<u8> {
    idx(0x801, &[values.len() as u32], values)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A folder with a valid two-image train set and one-image test set, raw IDX.
fn valid_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir, "train-images-idx3-ubyte", &images(2));
    write(&dir, "train-labels-idx1-ubyte", &labels(&[1, 0]));
    write(&dir, "t10k-images-idx3-ubyte", &images(1));
    write(&dir, "t10k-labels-idx1-ubyte", &labels(&[0]));
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn raw_and_gzip_are_told_apart_by_content_not_name() {
    let raw = images(2);
    assert_eq!(parse_images(&raw).unwrap(), (vec![7; 2 * 784], 28, 28));
    assert_eq!(
        parse_images(&gzip(&raw)).unwrap(),
        (vec![7; 2 * 784], 28, 28)
    );

    // A gzip file without `.gz` and a raw file with it both load.
    let dir = valid_dir("names");
    write(&dir, "t10k-images-idx3-ubyte", &gzip(&images(1)));
    std::fs::rename(
        dir.join("train-labels-idx1-ubyte"),
        dir.join("train-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let mnist = load_mnist(&dir).unwrap();
    assert_eq!(mnist.train.labels, vec![1, 0]);
    assert_eq!(mnist.test.len(), 1);
}

#[test]
fn missing_file_names_what_was_looked_for() {
    let dir = valid_dir("missing");
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let err = load_mnist(&dir).unwrap_err();
    assert!(matches!(err.kind, IdxError::Missing(_)), "{err}");
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
}

#[test]
fn neither_gzip_nor_idx() {
    let err = parse_images(b"hello, world").unwrap_err();
    assert!(matches!(err, IdxError::NotIdx(_)), "{err}");
    let err = parse_images(b"PK").unwrap_err();
    assert!(matches!(err, IdxError::NotIdx(_)), "{err}");
}

#[test]
fn corrupt_gzip() {
    let mut bytes = gzip(&images(3));
    let n = bytes.len();
    bytes.truncate(n / 2);
    let err = parse_images(&bytes).unwrap_err();
    assert!(matches!(err, IdxError::Gzip(_)), "{err}");
}

#[test]
fn wrong_magic_for_the_kind_of_file() {
    let err = parse_images(&labels(&[1, 2])).unwrap_err();
    assert!(
        matches!(
            err,
            IdxError::BadMagic {
                expected: 0x803,
                found: 0x801
            }
        ),
        "{err}"
    );
}

#[test]
fn wrong_element_type() {
    let err = parse_labels(&idx(0x0d01, &[1], &[0, 0, 0, 0])).unwrap_err();
    assert!(matches!(err, IdxError::ElementType(0x0d)), "{err}");
}

#[test]
fn truncated_header_and_data() {
    for len in [0, 3, 4, 9, 15] {
        let err = parse_images(&images(1)[..len]).unwrap_err();
        assert!(
            matches!(err, IdxError::Truncated { .. }),
            "len {len}: {err}"
        );
    }
    let full = images(2);
    let err = parse_images(&full[..full.len() - 1]).unwrap_err();
    assert!(
        matches!(err, IdxError::Truncated { needed, got } if needed == full.len() as u64 && got == needed - 1),
        "{err}"
    );
    let err = parse_images(&gzip(&full[..full.len() - 100])).unwrap_err();
    assert!(matches!(err, IdxError::Truncated { .. }), "{err}");
}

#[test]
fn a_header_claiming_billions_of_images_fails_without_allocating_them() {
    // 4 billion × 784 bytes would be 3 TB: the reader must compare with what is there first.
    // Claims beyond the documented limit are refused before anything is decompressed: a 2 MB
    // gzip of zeros that claims 4 billion images never inflates into gigabytes.
    let err = parse_images(&idx(0x803, &[u32::MAX, 28, 28], &[0; 64])).unwrap_err();
    assert!(matches!(err, IdxError::TooLarge { .. }), "{err}");
    let zeros = gzip(
        &[
            &idx(0x803, &[u32::MAX, 28, 28], &[])[..],
            &vec![0u8; 64 << 20],
        ]
        .concat(),
    );
    let err = parse_images(&zeros).unwrap_err();
    assert!(matches!(err, IdxError::TooLarge { .. }), "{err}");
    // Within the limit, the claim is still checked against what is there.
    let err = parse_images(&idx(0x803, &[1000, 28, 28], &[0; 64])).unwrap_err();
    assert!(matches!(err, IdxError::Truncated { got: 80, .. }), "{err}");
}

#[test]
fn several_gzip_members_are_one_file_and_garbage_after_them_is_not() {
    let raw = images(3);
    let (a, b) = raw.split_at(1000);
    let members = [gzip(a), gzip(b)].concat();
    assert_eq!(parse_images(&members).unwrap(), parse_images(&raw).unwrap());
    let err = parse_images(&[&gzip(&raw)[..], b"garbage"].concat()).unwrap_err();
    assert!(
        matches!(err, IdxError::Gzip(_) | IdxError::TrailingData { .. }),
        "{err}"
    );
}

#[test]
fn an_empty_set_is_an_error() {
    let dir = valid_dir("empty");
    write(&dir, "t10k-images-idx3-ubyte", &images(0));
    write(&dir, "t10k-labels-idx1-ubyte", &labels(&[]));
    let err = load_test(&dir).unwrap_err();
    assert!(matches!(err.kind, IdxError::Empty), "{err}");
}

#[test]
fn what_is_there_but_not_a_file_is_said_as_such() {
    let dir = valid_dir("not-a-file");
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    std::fs::create_dir(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let err = load_test(&dir).unwrap_err();
    assert!(matches!(err.kind, IdxError::NotAFile), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // A link that loops: an error about that file, not "missing".
    std::fs::remove_dir(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let looped = dir.join("t10k-labels-idx1-ubyte");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let err = load_test(&dir).unwrap_err();
    assert!(matches!(err.kind, IdxError::Io(_)), "{err}");
    assert!(err.path.ends_with("t10k-labels-idx1-ubyte"), "{err}");
}

#[test]
fn conflicting_checksum_lines_are_refused() {
    let dir = valid_dir("conflict");
    let listed = format!(
        "{} t10k-labels-idx1-ubyte\n{} t10k-labels-idx1-ubyte\n",
        "0".repeat(64),
        "1".repeat(64)
    );
    write(&dir, "SHA256SUMS", listed.as_bytes());
    let err = load_test(&dir).unwrap_err();
    assert!(
        matches!(err.kind, IdxError::ConflictingChecksums { .. }),
        "{err}"
    );
}

#[test]
fn trailing_bytes() {
    let mut bytes = labels(&[1, 2]);
    bytes.extend_from_slice(&[0; 5]);
    let err = parse_labels(&bytes).unwrap_err();
    assert!(matches!(err, IdxError::TrailingData { extra: 5 }), "{err}");
}

#[test]
fn images_of_any_size_load_and_impossible_sizes_are_refused() {
    let (pixels, rows, cols) = parse_images(&idx(0x803, &[1, 16, 12], &[3; 192])).unwrap();
    assert_eq!((pixels.len(), rows, cols), (192, 16, 12));
    for (rows, cols) in [(0, 5), (5, 0), (2000, 1), (300, 300)] {
        let err = parse_images(&idx(
            0x803,
            &[1, rows, cols],
            &vec![0; (rows * cols) as usize],
        ))
        .unwrap_err();
        assert!(
            matches!(err, IdxError::ImageSize { .. }),
            "{rows}×{cols}: {err}"
        );
    }
}

#[test]
fn a_folder_of_other_images_and_classes_loads() {
    let dir = valid_dir("shapes");
    write(
        &dir,
        "train-images-idx3-ubyte",
        &idx(0x803, &[3, 16, 12], &[1; 576]),
    );
    write(&dir, "train-labels-idx1-ubyte", &labels(&[0, 2, 1]));
    write(
        &dir,
        "t10k-images-idx3-ubyte",
        &idx(0x803, &[1, 16, 12], &[2; 192]),
    );
    write(&dir, "t10k-labels-idx1-ubyte", &labels(&[2]));
    let mnist = load_mnist(&dir).unwrap();
    assert_eq!(
        (mnist.train.rows, mnist.train.cols, mnist.train.pixels()),
        (16, 12, 192)
    );
    assert_eq!((mnist.train.classes(), mnist.test.classes()), (3, 3));
    assert_eq!(mnist.test.image(0), &[2; 192][..]);
}

#[test]
fn classes_must_be_numbered_from_zero_and_the_test_sets_among_them() {
    // Test images of another size.
    let dir = valid_dir("shape-mismatch");
    write(
        &dir,
        "t10k-images-idx3-ubyte",
        &idx(0x803, &[1, 16, 16], &[0; 256]),
    );
    let err = load_mnist(&dir).unwrap_err();
    assert!(
        matches!(err.kind, IdxError::ShapeMismatch { rows: 16, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("the training images 28×28"),
        "{err}"
    );
    // Labels 0, 3, 9: 1–2 and 4–8 are missing.
    let dir = valid_dir("gaps");
    write(&dir, "train-images-idx3-ubyte", &images(3));
    write(&dir, "train-labels-idx1-ubyte", &labels(&[0, 3, 9]));
    let err = load_mnist(&dir).unwrap_err();
    assert!(
        err.to_string()
            .contains("labels run 0 to 9, but none is 1, 2, 4, 5, 6, 7, 8"),
        "{err}"
    );
    assert!(err.path.ends_with("train-labels-idx1-ubyte"), "{err}");
    // A test label the training set does not have.
    let dir = valid_dir("unknown-label");
    write(&dir, "t10k-labels-idx1-ubyte", &labels(&[10]));
    let err = load_mnist(&dir).unwrap_err();
    assert!(
        matches!(
            err.kind,
            IdxError::Label {
                index: 0,
                value: 10,
                classes: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn image_and_label_counts_differ() {
    let dir = valid_dir("count");
    write(&dir, "train-labels-idx1-ubyte", &labels(&[1, 2, 3]));
    let err = load_mnist(&dir).unwrap_err();
    assert!(
        matches!(
            err.kind,
            IdxError::CountMismatch {
                images: 2,
                labels: 3
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
}

#[test]
fn checksums_are_verified_when_listed() {
    let dir = valid_dir("sums");
    let good = "9f3c94b1c1e1fb10cd9c4c8a6d6f0b1a5b8b16f6d3a2c7a1e9e3b9b3c6a1d2e4";
    write(
        &dir,
        "SHA256SUMS",
        format!("{good}  t10k-labels-idx1-ubyte\n").as_bytes(),
    );
    let err = load_mnist(&dir).unwrap_err();
    assert!(matches!(err.kind, IdxError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");

    // The right digest passes; files not listed are not checked.
    let actual = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(labels(&[0]));
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    write(
        &dir,
        "SHA256SUMS",
        format!("{actual} *t10k-labels-idx1-ubyte\n").as_bytes(),
    );
    load_mnist(&dir).unwrap();
}

#[test]
fn the_shipped_dataset_verifies_and_has_mnist_shape() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let mnist = load_mnist(&dir).unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
    assert_eq!(&mnist.test.labels[..5], &[7, 2, 1, 0, 4]);
}

#[test]
fn the_test_set_alone_is_enough_to_evaluate() {
    let dir = valid_dir("test-only");
    std::fs::remove_file(dir.join("train-images-idx3-ubyte")).unwrap();
    std::fs::remove_file(dir.join("train-labels-idx1-ubyte")).unwrap();
    let test = load_test(&dir).unwrap();
    assert_eq!((test.len(), test.labels[0]), (1, 0));
    let err = load_mnist(&dir).unwrap_err();
    assert!(matches!(err.kind, IdxError::Missing(_)), "{err}");
}

#[test]
fn an_error_chain_says_each_thing_once() {
    let dir = valid_dir("chain");
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let chain = format!("{:#}", anyhow_like(&load_mnist(&dir).unwrap_err()));
    assert_eq!(chain.matches("missing").count(), 1, "{chain}");
}

/// What `anyhow`'s `{:#}` prints: the error and each source after it.
fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

#[test]
fn a_file_both_raw_and_gzipped_must_hold_the_same_data() {
    // The same data under both names loads.
    let dir = valid_dir("two-versions");
    write(&dir, "t10k-images-idx3-ubyte.gz", &gzip(&images(1)));
    assert_eq!(load_test(&dir).unwrap().len(), 1);

    // Different data is refused, naming both files, rather than one used without a word.
    let mut other = images(1);
    *other.last_mut().unwrap() = 8;
    write(&dir, "t10k-images-idx3-ubyte.gz", &gzip(&other));
    let err = load_test(&dir).unwrap_err();
    assert!(matches!(err.kind, IdxError::TwoVersions(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("t10k-images-idx3-ubyte:")
            && text.contains("t10k-images-idx3-ubyte.gz exists too"),
        "{text}"
    );
}
