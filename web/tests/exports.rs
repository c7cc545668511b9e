//! The page's exports, called natively as the page's JavaScript calls them.

use infer_web::*;

fn load(bytes: &[u8]) -> u32 {
    let ptr = model_buffer(bytes.len());
    // SAFETY: `model_buffer` gave `bytes.len()` writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
    load_model()
}

fn text() -> String {
    // SAFETY: the message's bytes, as the module gives them.
    let bytes = unsafe { std::slice::from_raw_parts(message(), message_len()) };
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn a_model_loads_classifies_and_a_damaged_one_leaves_it_in_place() {
    assert_eq!(classify(), -1, "no model yet");
    assert_eq!(text(), "no model is loaded");
    let model = std::fs::read("../firmware-example/model/mlp-int8.bin").unwrap();
    assert_eq!(load(&model), 0, "{}", text());
    let facts = text();
    assert!(
        facts.contains(r#""kind":"int8""#) && facts.contains(r#""widths":[784,512,10]"#),
        "{facts}"
    );

    // A thick dark bar on white RGBA paper: the preprocessing finds a digit, the model answers.
    let (w, h) = (100u32, 100u32);
    let mut rgba = vec![255u8; (w * h * 4) as usize];
    for y in 10..90 {
        for x in 45..55 {
            rgba[((y * w + x) * 4) as usize..][..3].fill(0);
        }
    }
    let ptr = input_buffer(rgba.len());
    // SAFETY: `input_buffer` gave `rgba.len()` writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(rgba.as_ptr(), ptr, rgba.len()) };
    assert_eq!(pixels_from_rgba(w, h), 0, "{}", text());
    let digit = classify();
    assert_eq!(digit, 1, "a bar is a 1");
    // SAFETY: `classes()` f32s at `probabilities()`.
    let p = unsafe { std::slice::from_raw_parts(probabilities(), classes()) };
    assert_eq!(p.len(), 10);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);

    let mut damaged = model.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x55;
    assert_eq!(load(&damaged), 1);
    assert!(
        text().starts_with("not a model this page can run: CRC mismatch"),
        "{}",
        text()
    );
    assert_eq!(load(b"short"), 1);
    assert_eq!(classify(), digit, "the model in place still answers");

    // RGBA of the wrong length, and a blank page: errors, not answers.
    input_buffer(7);
    assert_eq!(pixels_from_rgba(2, 2), 1);
    assert!(
        text().contains("not the RGBA pixels of a 2 × 2 image"),
        "{}",
        text()
    );
    let ptr = input_buffer(16);
    // SAFETY: 16 writable bytes.
    unsafe { std::ptr::write_bytes(ptr, 255, 16) };
    assert_eq!(pixels_from_rgba(2, 2), 1);
    assert!(text().starts_with("no digit found"), "{}", text());
}
