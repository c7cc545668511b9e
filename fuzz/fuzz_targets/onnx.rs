//! ONNX bytes, as `trainer import` reads them: whatever the bytes, the importer answers with a
//! network or an error, never a panic or an abort; a network it accepts is a chain of 2 to 8
//! layers, 1–65,535 inputs to 1–64 classes, whose every weight is finite or not, as the file said
//! (import does not judge values), and its shapes agree with each other. Seeded from exported
//! models.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(net) = trainer::onnx::import(data) {
        fuzz::check_imported(&net);
    }
});
