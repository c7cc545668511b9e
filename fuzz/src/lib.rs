//! What every model fuzz target checks of bytes that loaded as a model.

use infer_core::{F32Model, Kernel, QuantModel};

/// Offers `bytes` to every model kind; whatever loads must answer every image (`image(n)` gives
/// one of `n` bytes) the same on every kernel, in batches and one by one, with finite
/// probabilities (and finite logits for f32).
pub fn check_loads(bytes: &[u8], images: &[&dyn Fn(usize) -> Vec<u8>]) {
    if let Ok(model) = QuantModel::from_bytes(bytes) {
        for image in images {
            check_quant(&model, &image(model.inputs()));
        }
        // An input of the wrong length is an error, not a panic.
        assert!(model.predict(&image_of(model.inputs() + 1)).is_err());
    }
    if let Ok(model) = F32Model::from_bytes(bytes) {
        for image in images {
            let image = image(model.inputs());
            assert!(model.logits(&image).unwrap().iter().all(|v| v.is_finite()));
            assert!(
                model
                    .probabilities(&image)
                    .unwrap()
                    .iter()
                    .all(|v| v.is_finite())
            );
        }
    }
}

fn image_of(n: usize) -> Vec<u8> {
    vec![1; n]
}

/// An integer model that loaded: the same prediction on every kernel and in batches, finite
/// probabilities.
fn check_quant(model: &QuantModel<'_>, image: &[u8]) {
    let p = model.predict(image).unwrap();
    assert!(usize::from(p.class) < model.classes().max(1));
    assert_eq!(p.logits.len(), model.classes());
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        assert_eq!(
            model.predict_with(kernel, image).as_ref(),
            Ok(&p),
            "{kernel}"
        );
    }
    let mut batch = vec![p.clone(); 5];
    model.predict_batch(&image.repeat(5), &mut batch).unwrap();
    assert!(batch.iter().all(|b| *b == p));
    assert!(model.probabilities(&p).iter().all(|v| v.is_finite()));
}

/// What an imported ONNX network must be: a chain 784 → … → 10 whose matrices and biases agree
/// in shape.
pub fn check_imported(net: &trainer::mlp::Mlp) {
    let widths = net.widths();
    let (inputs, classes) = (widths[0], widths[widths.len() - 1]);
    assert!((1..=65_535).contains(&inputs), "{widths:?}");
    assert!((1..=64).contains(&classes), "{widths:?}");
    assert!((3..=9).contains(&widths.len()), "{widths:?}");
    assert_eq!(net.w1.shape(), (widths[1], inputs));
    assert_eq!(net.b1.len(), widths[1]);
    for (l, d) in net.middle.iter().enumerate() {
        assert_eq!(d.w.shape(), (widths[l + 2], widths[l + 1]));
        assert_eq!(d.b.len(), widths[l + 2]);
    }
    assert_eq!(net.w2.shape(), (widths[widths.len() - 2], classes));
    assert_eq!(net.b2.len(), classes);
}
