//! A user's own digit image file read into an MNIST input: the file read with a bound, decoded
//! with bounds (PNG, JPEG, PGM/PPM), then [`mnist_digit`]'s preprocessing, the one the browser
//! page runs too.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The largest image file read (a phone photo is a few MB).
const MAX_IMAGE_FILE_BYTES: u64 = 64 << 20;
/// The largest side of an image decoded: what a file claims beyond it is refused before decoding.
const MAX_IMAGE_SIDE: u32 = 8192;
/// The most memory the decoder may take (a 8192 × 4096 RGBA image).
const MAX_IMAGE_ALLOC: u64 = 128 << 20;

/// Reads a PNG, JPEG or PGM/PPM file (any size, dark ink on light or the reverse, ink in the
/// alpha channel too) into the input of a network of `side` × `side` pixels (28 for MNIST's).
pub fn read(path: &Path, side: u32) -> Result<Vec<u8>> {
    let bytes = crate::output::read_capped(path, MAX_IMAGE_FILE_BYTES, "an image file")?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    // The JPEG decoder fills in what a cut-off file lacks (grey); such a file is refused.
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_is_complete(&bytes) {
        bail!(
            "{}: the JPEG file is truncated (its image data does not end with an end-of-image \
             marker)",
            path.display()
        );
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let image = reader.decode().with_context(|| {
        format!(
            "{}: not a readable PNG, JPEG or PGM image of at most {MAX_IMAGE_SIDE} × \
             {MAX_IMAGE_SIDE} pixels",
            path.display()
        )
    })?;
    mnist_digit::to_side(&mnist_digit::grey(&image), side)
        .with_context(|| format!("{}", path.display()))
}

/// Whether a JPEG file's image data runs to its end-of-image marker: its segments walked by their
/// lengths to the first scan (so an embedded thumbnail, which has its own, is passed over), then
/// an end-of-image marker (`FF D9`) after it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2; // after SOI
    while let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) {
        match marker {
            // Fill bytes before a marker.
            0xFF => at += 1,
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => at += 2,
            // The first scan: the image data follows its header.
            0xDA => return bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
            0xD9 => return false,
            _ => {
                let Some(&[hi, lo]) = bytes.get(at + 2..at + 4).and_then(|b| b.first_chunk())
                else {
                    return false;
                };
                at += 2 + usize::from(u16::from_be_bytes([hi, lo]));
            }
        }
    }
    false
}
