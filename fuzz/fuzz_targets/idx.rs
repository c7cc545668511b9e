//! Any byte string given to the IDX reader (the trainer's and the firmware build's), as images and as labels: an error or a
//! consistent result, never a panic or an allocation that a header alone can make huge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_idx::{MAX_PIXELS, MAX_SIDE, parse_images, parse_labels};

fuzz_target!(|data: &[u8]| {
    if let Ok((images, rows, cols)) = parse_images(data) {
        assert!((1..=MAX_SIDE).contains(&rows) && (1..=MAX_SIDE).contains(&cols));
        assert!(rows * cols <= MAX_PIXELS);
        assert_eq!(images.len() % (rows * cols), 0);
        assert!(!images.is_empty());
    }
    let _ = parse_labels(data);
});
