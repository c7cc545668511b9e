//! What every model fuzz target checks of bytes that loaded as a model.

use infer_core::format::Bits;
use infer_core::{F32Model, INPUTS, Int4Model, Int8Model, Kernel, QuantModel};

/// Offers `bytes` to every model kind; whatever loads must answer every image the same on every
/// kernel, in batches and one by one, with finite probabilities (and finite logits for f32).
pub fn check_loads(bytes: &[u8], images: &[[u8; INPUTS]]) {
    if let Ok(model) = Int8Model::from_bytes(bytes) {
        images.iter().for_each(|i| check_quant(&model, i));
    }
    if let Ok(model) = Int4Model::from_bytes(bytes) {
        images.iter().for_each(|i| check_quant(&model, i));
    }
    if let Ok(model) = F32Model::from_bytes(bytes) {
        for image in images {
            assert!(model.logits(image).iter().all(|v| v.is_finite()));
            assert!(model.probabilities(image).iter().all(|v| v.is_finite()));
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
