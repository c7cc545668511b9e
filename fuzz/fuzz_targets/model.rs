//! Any byte string given to `Int8Model::from_bytes` / `Int4Model::from_bytes` /
//! `F32Model::from_bytes`: no panic, no
//! out-of-bounds access, and a model that loads predicts the same on every kernel and never
//! answers NaN or infinity.
#![no_main]

use infer_core::format::checksum;
use infer_core::format::Bits;
use infer_core::{F32Model, INPUTS, Int4Model, Int8Model, Kernel, QuantModel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Mutations almost never keep the CRC right: re-seal it so they reach the fields behind it.
    if data.len() >= 4 {
        let mut sealed = data.to_vec();
        let n = sealed.len() - 4;
        let crc = checksum(&sealed[..n]);
        sealed[n..].copy_from_slice(&crc.to_le_bytes());
        check(&sealed);
    }
});

fn check(bytes: &[u8]) {
    // As loaded from a file into aligned memory, and as given (any alignment).
    let mut words = vec![0u128; bytes.len().div_ceil(16)];
    let aligned = &mut bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()];
    aligned.copy_from_slice(bytes);
    for bytes in [&*aligned, bytes] {
        let image: [u8; INPUTS] = std::array::from_fn(|i| bytes.get(i % bytes.len().max(1)).copied().unwrap_or(0));
        if let Ok(model) = Int8Model::from_bytes(bytes) {
            check_quant(&model, &image);
        }
        if let Ok(model) = Int4Model::from_bytes(bytes) {
            check_quant(&model, &image);
        }
        if let Ok(model) = F32Model::from_bytes(bytes) {
            assert!(model.logits(&image).iter().all(|v| v.is_finite()));
            assert!(model.probabilities(&image).iter().all(|v| v.is_finite()));
        }
    }
}

/// An integer model that loaded: the same prediction on every kernel and in batches, finite
/// probabilities.
fn check_quant<B: Bits>(model: &QuantModel<'_, B>, image: &[u8; INPUTS]) {
    let p = model.predict(image);
    assert!(p.class < 10);
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        assert_eq!(model.predict_with(kernel, image), Ok(p), "{kernel}");
    }
    let mut batch = [p; 5];
    model.predict_batch(&[*image; 5], &mut batch);
    assert!(batch.iter().all(|b| *b == p));
    assert!(model.probabilities(&p).iter().all(|v| v.is_finite()));
}
