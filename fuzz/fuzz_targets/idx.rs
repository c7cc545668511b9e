//! Any byte string given to the IDX reader (the trainer's and the firmware build's), as images and as labels: an error or a
//! consistent result, never a panic or an allocation that a header alone can make huge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_idx::{PIXELS, parse_images, parse_labels};

fuzz_target!(|data: &[u8]| {
    if let Ok(images) = parse_images(data) {
        assert_eq!(images.len() % PIXELS, 0);
    }
    if let Ok(labels) = parse_labels(data) {
        assert!(labels.iter().all(|&l| l <= 9));
    }
});
