//! The model file against every kind of damage: each gives its own `FormatError`, never a panic,
//! never a model that predicts.

use infer_core::format::{
    FormatError, MAX_F32_WEIGHT, MAX_SCALE, ModelKind, VERSION, checksum, peek_kind, write,
};
use infer_core::quant::requantize;
use infer_core::{CLASSES, F32Model, HIDDEN, INPUTS, Int4Model, Int8Model, Kernel};

/// A valid int8 file with varied weights, in 16-byte-aligned memory (as `Vec<u128>`).
struct File {
    words: Vec<u128>,
    len: usize,
}

impl File {
    fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u128; bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Self {
            words,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.words)[..self.len]
    }
}

fn int8_file(edit: impl FnOnce(&mut Parts)) -> Vec<u8> {
    let mut p = Parts::default();
    edit(&mut p);
    let mut out = vec![0; write::MAX_INT8_LEN];
    let len = write::int8(&p.view(), &mut out).unwrap();
    out.truncate(len);
    out
}

struct Parts {
    hidden_scale: f32,
    w1_scale: Vec<f32>,
    b1: Vec<i32>,
    m1: Vec<i32>,
    s1: Vec<u8>,
    w2_scale: Vec<f32>,
    b2: Vec<i32>,
    w1: Vec<i8>,
    w2: Vec<i8>,
}

impl Parts {
    fn view(&self) -> write::QuantParts<'_> {
        write::QuantParts {
            hidden_scale: self.hidden_scale,
            w1_scale: &self.w1_scale,
            b1: &self.b1,
            m1: &self.m1,
            s1: &self.s1,
            w2_scale: &self.w2_scale,
            b2: &self.b2,
            w1: &self.w1,
            w2: &self.w2,
        }
    }
}

impl Default for Parts {
    fn default() -> Self {
        Self {
            hidden_scale: 0.05,
            w1_scale: vec![0.01; HIDDEN],
            b1: (0..HIDDEN as i32).map(|j| j * 7 - 1000).collect(),
            m1: vec![1 << 30; HIDDEN],
            s1: vec![45; HIDDEN],
            w2_scale: vec![0.02; CLASSES],
            b2: (0..CLASSES as i32).collect(),
            w1: (0..HIDDEN * INPUTS).map(|i| (i * 31 % 255) as i8).collect(),
            w2: (0..CLASSES * HIDDEN)
                .map(|i| (i * 17 % 251) as i8)
                .collect(),
        }
    }
}

fn load(bytes: &[u8]) -> Result<Int8Model<'_>, FormatError> {
    Int8Model::from_bytes(bytes)
}

/// Re-seals `bytes` with a correct CRC, so that the check after the CRC is what fails.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len() - 4;
    let crc = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn a_written_file_loads_and_predicts_on_every_kernel_alike() {
    let file = File::new(&int8_file(|_| {}));
    let model = load(file.bytes()).unwrap();
    assert_eq!(model.hidden_scale(), 0.05);
    assert_eq!(model.w2_scales().count(), 10);
    let image: [u8; INPUTS] = std::array::from_fn(|i| (i * 13 % 256) as u8);
    let reference = model.predict_with(Kernel::Scalar, &image).unwrap();
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        assert_eq!(
            model.predict_with(kernel, &image).unwrap(),
            reference,
            "{kernel}"
        );
    }
    assert_eq!(model.predict(&image), reference);
}

#[test]
fn empty_and_short_files_are_truncated() {
    for len in 0..10 {
        let bytes = vec![b'M'; len];
        assert!(
            matches!(
                load(&bytes),
                Err(FormatError::Truncated { .. } | FormatError::BadMagic)
            ),
            "{len}"
        );
    }
    assert!(matches!(
        load(&[]),
        Err(FormatError::Truncated { needed: 10, got: 0 })
    ));
}

/// The reference model the trainer produced (the one the firmware embeds).
fn real_model() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware-example/model/mlp-int8.bin"
    );
    std::fs::read(path).unwrap()
}

#[test]
fn truncation_at_every_offset_of_a_real_model_is_an_error() {
    let bytes = real_model();
    let file = File::new(&bytes);
    assert!(load(file.bytes()).is_ok());
    for n in 0..bytes.len() {
        match load(&file.bytes()[..n]) {
            Err(FormatError::Truncated { .. } | FormatError::CrcMismatch { .. }) => {}
            other => panic!("truncated to {n} bytes: {other:?}"),
        }
    }
}

#[test]
fn every_bit_flip_is_caught() {
    let bytes = real_model();
    // Every bit of the header and the first scales, then a sample through to the CRC.
    let positions = (0..8 * 256).chain((8 * 256..8 * bytes.len()).step_by(4099));
    for bit in positions {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let file = File::new(&damaged);
        let err = load(file.bytes()).expect_err(&format!("bit {bit} flipped still loads"));
        assert!(
            matches!(
                err,
                FormatError::BadMagic
                    | FormatError::UnsupportedVersion(_)
                    | FormatError::WrongKind(_)
                    | FormatError::CrcMismatch { .. }
            ),
            "bit {bit}: {err:?}"
        );
    }
}

#[test]
fn header_fields_get_their_own_errors() {
    let bytes = int8_file(|_| {});
    let mut bad_magic = bytes.clone();
    bad_magic[0] = b'X';
    assert_eq!(load(&bad_magic).unwrap_err(), FormatError::BadMagic);

    for old_or_new in [1, VERSION + 1] {
        let mut version = bytes.clone();
        version[4] = old_or_new;
        let err = load(&version).unwrap_err();
        assert_eq!(err, FormatError::UnsupportedVersion(old_or_new));
        assert!(err.to_string().contains("re-export"), "{err}");
        assert_eq!(
            peek_kind(&version),
            Err(FormatError::UnsupportedVersion(old_or_new))
        );
    }
    assert_eq!(peek_kind(&bytes), Ok(ModelKind::Int8));
    assert_eq!(peek_kind(&bytes[..6]), Ok(ModelKind::Int8));
    assert!(matches!(
        peek_kind(&bytes[..5]),
        Err(FormatError::Truncated { .. })
    ));
    let mut unknown_kind = bytes.clone();
    unknown_kind[5] = 9;
    assert_eq!(peek_kind(&unknown_kind), Err(FormatError::WrongKind(9)));

    let file = File::new(&bytes);
    assert_eq!(
        F32Model::from_bytes(file.bytes()).unwrap_err(),
        FormatError::WrongKind(1)
    );

    let mut crc = bytes.clone();
    let n = crc.len();
    crc[n - 1] ^= 0x80;
    assert!(matches!(
        load(&crc).unwrap_err(),
        FormatError::CrcMismatch { .. }
    ));
}

#[test]
fn wrong_shape() {
    let mut bytes = int8_file(|_| {});
    // hidden = 512 is the varint [0x80, 0x04] at offset 8; 511 is [0xff, 0x03].
    assert_eq!(&bytes[6..11], &[0x90, 0x06, 0x80, 0x04, 10]);
    bytes[8..10].copy_from_slice(&[0xff, 0x03]);
    let file = File::new(&reseal(bytes));
    assert_eq!(
        load(file.bytes()).unwrap_err(),
        FormatError::WrongShape {
            found: [784, 511, 10]
        }
    );
}

#[test]
fn bad_scales_and_requantization() {
    for (name, bad) in [
        ("nan", f32::NAN),
        ("zero", 0.0),
        ("negative", -1.0),
        ("inf", f32::INFINITY),
        ("huge", 3e38),
        ("above the bound", MAX_SCALE * 2.0),
    ] {
        let file = File::new(&int8_file(|p| p.w1_scale[17] = bad));
        assert_eq!(
            load(file.bytes()).unwrap_err(),
            FormatError::BadScale {
                section: "w1_scale",
                index: 17
            },
            "{name}"
        );
        let file = File::new(&int8_file(|p| p.w2_scale[3] = bad));
        assert_eq!(
            load(file.bytes()).unwrap_err(),
            FormatError::BadScale {
                section: "w2_scale",
                index: 3
            },
            "{name}"
        );
        let file = File::new(&int8_file(|p| p.hidden_scale = bad));
        assert!(matches!(
            load(file.bytes()).unwrap_err(),
            FormatError::BadScale {
                section: "hidden_scale",
                ..
            }
        ));
    }
    for shift in [0, 1, 32, 63, 255] {
        let file = File::new(&int8_file(|p| p.s1[5] = shift));
        assert_eq!(
            load(file.bytes()).unwrap_err(),
            FormatError::BadRequantization { index: 5 },
            "shift {shift}"
        );
    }
    let file = File::new(&int8_file(|p| p.m1[9] = -3));
    assert_eq!(
        load(file.bytes()).unwrap_err(),
        FormatError::BadRequantization { index: 9 }
    );
}

#[test]
fn misaligned_buffers_are_refused_not_misread() {
    let bytes = int8_file(|_| {});
    // The file one byte into 16-byte-aligned memory.
    let mut shifted = vec![0u128; bytes.len() / 16 + 2];
    let raw = bytemuck::cast_slice_mut::<u128, u8>(&mut shifted);
    raw[1..1 + bytes.len()].copy_from_slice(&bytes);
    let err = load(&raw[1..1 + bytes.len()]).unwrap_err();
    assert!(
        matches!(err, FormatError::Misaligned { section: "w1" }),
        "{err:?}"
    );
}

#[test]
fn writer_rejects_wrong_lengths_and_small_buffers() {
    let p = Parts::default();
    let parts = write::QuantParts {
        w1_scale: &p.w1_scale[1..],
        ..p.view()
    };
    let mut out = vec![0; write::MAX_INT8_LEN];
    assert!(matches!(
        write::int8(&parts, &mut out),
        Err(FormatError::SectionLength {
            section: "w1_scale",
            ..
        })
    ));
    let parts = write::QuantParts {
        w1_scale: &p.w1_scale,
        ..parts
    };
    assert!(matches!(
        write::int8(&parts, &mut out[..1000]),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn f32_files_round_trip() {
    let w1: Vec<f32> = (0..INPUTS * HIDDEN)
        .map(|i| ((i % 97) as f32 - 48.0) * 1e-3)
        .collect();
    let b1 = vec![0.01f32; HIDDEN];
    let w2: Vec<f32> = (0..10 * HIDDEN)
        .map(|i| ((i % 13) as f32 - 6.0) * 1e-2)
        .collect();
    let b2 = vec![0.0f32; 10];
    let mut out = vec![0; write::MAX_F32_LEN];
    let len = write::f32(
        &write::F32Parts {
            w1: &w1,
            b1: &b1,
            w2: &w2,
            b2: &b2,
        },
        &mut out,
    )
    .unwrap();
    let file = File::new(&out[..len]);
    let model = F32Model::from_bytes(file.bytes()).unwrap();
    let borrowed = F32Model::from_weights(
        w1.as_slice().try_into().unwrap(),
        b1.as_slice().try_into().unwrap(),
        w2.as_slice().try_into().unwrap(),
        b2.as_slice().try_into().unwrap(),
    )
    .unwrap();
    let image: [u8; INPUTS] = std::array::from_fn(|i| if i % 5 == 0 { 200 } else { 0 });
    assert_eq!(model.logits(&image), borrowed.logits(&image));
    let p = model.probabilities(&image);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(
        Int8Model::from_bytes(file.bytes()).unwrap_err(),
        FormatError::WrongKind(2)
    );
}

/// The int8 network straight from the row-major parts: what the writer's tiling and every
/// kernel's walk must reproduce.
fn forward_by_definition(p: &Parts, image: &[u8; INPUTS]) -> [i32; CLASSES] {
    let mut hidden = [0u8; HIDDEN];
    for (j, h) in hidden.iter_mut().enumerate() {
        let mut acc = p.b1[j];
        for (k, &x) in image.iter().enumerate() {
            acc = acc.wrapping_add(i32::from(x) * i32::from(p.w1[j * INPUTS + k]));
        }
        *h = requantize(acc, p.m1[j], p.s1[j]);
    }
    std::array::from_fn(|c| {
        let mut acc = p.b2[c];
        for (j, &h) in hidden.iter().enumerate() {
            acc = acc.wrapping_add(i32::from(h) * i32::from(p.w2[c * HIDDEN + j]));
        }
        acc
    })
}

/// Parts with varied, sign-mixed weights (`w(i)` maps an index to a weight) and requantization,
/// and classes on different scales, so that any misplaced weight or raw-accumulator comparison
/// shows.
fn varied_parts(w: impl Fn(usize) -> i8) -> Parts {
    let mut p = Parts::default();
    for (i, v) in p.w1.iter_mut().enumerate() {
        *v = w((i * 2_654_435_761) >> 7);
    }
    for (i, v) in p.w2.iter_mut().enumerate() {
        *v = w((i * 40_503) >> 3);
    }
    for (j, (m, s)) in p.m1.iter_mut().zip(&mut p.s1).enumerate() {
        *m = (1 << 30) + (j as i32) * 999_983;
        *s = 44 + (j % 8) as u8;
    }
    for (c, scale) in p.w2_scale.iter_mut().enumerate() {
        *scale = 0.004 * (1.0 + 0.37 * c as f32);
    }
    p
}

/// Every kernel's predictions, one at a time and in batches, against the definition.
fn check_every_kernel<B: infer_core::format::Bits>(
    p: &Parts,
    model: &infer_core::QuantModel<'_, B>,
) {
    let images: Vec<[u8; INPUTS]> = (0..40usize)
        .map(|seed| {
            std::array::from_fn(|i| {
                let v = (i * 7 + seed * 131) % 256;
                if (i / 28 + seed) % 3 == 0 { v as u8 } else { 0 }
            })
        })
        .collect();
    for (seed, image) in images.iter().enumerate() {
        let expected = forward_by_definition(p, image);
        let real = |c: usize| f64::from(expected[c]) * f64::from(p.w2_scale[c]);
        let class = (0..CLASSES).fold(0, |best, c| if real(c) > real(best) { c } else { best });
        for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            let got = model.predict_with(kernel, image).unwrap();
            assert_eq!(got.logits, expected, "{kernel}, image {seed}");
            assert_eq!(usize::from(got.class), class, "{kernel}, image {seed}");
        }
    }
    let mut batch = vec![model.predict(&images[0]); images.len()];
    model.predict_batch(&images, &mut batch);
    for (image, got) in images.iter().zip(&batch) {
        assert_eq!(*got, model.predict(image));
    }
}

#[test]
fn row_major_parts_are_tiled_so_every_kernel_computes_the_definition() {
    let p = varied_parts(|i| i as u8 as i8);
    let mut out = vec![0; write::MAX_INT8_LEN];
    let len = write::int8(&p.view(), &mut out).unwrap();
    let file = File::new(&out[..len]);
    check_every_kernel(&p, &load(file.bytes()).unwrap());
}

#[test]
fn int4_parts_are_packed_so_every_kernel_computes_the_definition() {
    // Every value of −8…7, in varied places.
    let p = varied_parts(|i| (i % 16) as i8 - 8);
    let mut out = vec![0; write::MAX_INT4_LEN];
    let len = write::int4(&p.view(), &mut out).unwrap();
    let file = File::new(&out[..len]);
    let model = Int4Model::from_bytes(file.bytes()).unwrap();
    check_every_kernel(&p, &model);
    // Half the weight bytes of the int8 file, and no stored weight scales: they follow from the
    // requantization.
    let int8_len = int8_file(|_| {}).len();
    let saved = int8_len - len;
    let expected = (HIDDEN * INPUTS + 16 * HIDDEN) / 2 + 4 * HIDDEN;
    assert!((expected..expected + 64).contains(&saved), "{saved}");
    let derived: Vec<f32> = model.w1_scales().collect();
    assert_eq!(derived.len(), HIDDEN);
    for (j, &d) in derived.iter().enumerate() {
        let factor = f64::from(p.m1[j]) / 2f64.powi(i32::from(p.s1[j]));
        let expected = factor * f64::from(p.hidden_scale) * 255.0;
        assert!(
            (f64::from(d) / expected - 1.0).abs() < 1e-6,
            "{j}: {d} {expected}"
        );
    }

    // Each kind reads only its own files.
    assert_eq!(
        Int8Model::from_bytes(file.bytes()).unwrap_err(),
        FormatError::WrongKind(3)
    );
    assert_eq!(peek_kind(file.bytes()), Ok(ModelKind::Int4));
    let int8 = File::new(&int8_file(|_| {}));
    assert_eq!(
        Int4Model::from_bytes(int8.bytes()).unwrap_err(),
        FormatError::WrongKind(1)
    );
    // Damage is caught as in an int8 file: every truncation, a flipped bit.
    let bytes = &out[..len];
    for cut in (0..len).step_by(997) {
        assert!(Int4Model::from_bytes(File::new(&bytes[..cut]).bytes()).is_err());
    }
    let mut flipped = bytes.to_vec();
    flipped[len / 2] ^= 0x10;
    assert!(matches!(
        Int4Model::from_bytes(File::new(&flipped).bytes()),
        Err(FormatError::CrcMismatch { .. })
    ));
}

#[test]
fn weights_and_biases_read_back_as_written_for_both_widths() {
    let p8 = varied_parts(|i| i as u8 as i8);
    let p4 = varied_parts(|i| (i % 16) as i8 - 8);
    let mut out8 = vec![0; write::MAX_INT8_LEN];
    let len8 = write::int8(&p8.view(), &mut out8).unwrap();
    let mut out4 = vec![0; write::MAX_INT4_LEN];
    let len4 = write::int4(&p4.view(), &mut out4).unwrap();
    let (f8, f4) = (File::new(&out8[..len8]), File::new(&out4[..len4]));
    let (m8, m4) = (
        Int8Model::from_bytes(f8.bytes()).unwrap(),
        Int4Model::from_bytes(f4.bytes()).unwrap(),
    );
    for (j, k) in [(0, 0), (7, 3), (8, 4), (15, 783), (511, 783), (300, 401)] {
        assert_eq!(m8.weight(1, j, k), Some(i32::from(p8.w1[j * INPUTS + k])));
        assert_eq!(m4.weight(1, j, k), Some(i32::from(p4.w1[j * INPUTS + k])));
    }
    for c in 0..CLASSES {
        for j in [0, 9, 255, 511] {
            assert_eq!(m8.weight(2, c, j), Some(i32::from(p8.w2[c * HIDDEN + j])));
            assert_eq!(m4.weight(2, c, j), Some(i32::from(p4.w2[c * HIDDEN + j])));
        }
        assert_eq!(m8.bias(2, c), Some(p8.b2[c]));
    }
    assert_eq!(m8.bias(1, 77), Some(p8.b1[77]));
    // Outside the network: none (the padding rows of the output layer included).
    assert_eq!(m8.weight(2, 10, 0), None);
    assert_eq!(m8.weight(1, 512, 0), None);
    assert_eq!(m4.weight(3, 0, 0), None);
    assert_eq!(m8.bias(2, 12), None);
}

#[test]
fn int4_writer_refuses_weights_beyond_four_bits() {
    let mut out = vec![0; write::MAX_INT4_LEN];
    let mut p = Parts {
        w1: vec![0; HIDDEN * INPUTS],
        w2: vec![0; CLASSES * HIDDEN],
        ..Default::default()
    };
    p.w2[77] = 8;
    assert_eq!(
        write::int4(&p.view(), &mut out),
        Err(FormatError::BadWeight {
            section: "w2",
            index: 77
        })
    );
    p.w2[77] = -8;
    p.w1[5] = -9;
    assert_eq!(
        write::int4(&p.view(), &mut out),
        Err(FormatError::BadWeight {
            section: "w1",
            index: 5
        })
    );
    p.w1[5] = 7;
    assert!(write::int4(&p.view(), &mut out).is_ok());
}

fn f32_file(w1: &[f32], b1: &[f32], w2: &[f32], b2: &[f32]) -> File {
    let mut out = vec![0; write::MAX_F32_LEN];
    let len = write::f32(&write::F32Parts { w1, b1, w2, b2 }, &mut out).unwrap();
    File::new(&out[..len])
}

#[test]
fn the_bounds_are_those_the_messages_name() {
    assert_eq!(MAX_SCALE, 2f32.powi(40));
    assert_eq!(MAX_F32_WEIGHT, 2f32.powi(20));
    let scale = FormatError::BadScale {
        section: "w2_scale",
        index: 3,
    };
    assert_eq!(
        scale.to_string(),
        "w2_scale[3] is not a positive scale up to 2^40"
    );
}

#[test]
fn f32_weights_that_could_overflow_are_refused() {
    let (w1, b1) = (vec![0.01f32; INPUTS * HIDDEN], vec![0.0f32; HIDDEN]);
    let (w2, b2) = (vec![0.01f32; CLASSES * HIDDEN], vec![0.0f32; CLASSES]);
    for bad in [
        f32::NAN,
        f32::INFINITY,
        -f32::INFINITY,
        MAX_F32_WEIGHT * 2.0,
        -3e38,
    ] {
        let mut w1 = w1.clone();
        w1[12_345] = bad;
        let file = f32_file(&w1, &b1, &w2, &b2);
        assert_eq!(
            F32Model::from_bytes(file.bytes()).unwrap_err(),
            FormatError::BadWeight {
                section: "w1",
                index: 12_345
            },
            "{bad}"
        );
        let mut b2 = b2.clone();
        b2[9] = bad;
        let file = f32_file(&w1[..1].repeat(INPUTS * HIDDEN), &b1, &w2, &b2);
        assert!(matches!(
            F32Model::from_bytes(file.bytes()).unwrap_err(),
            FormatError::BadWeight { .. }
        ));
    }
}

#[test]
fn validated_models_answer_finite_numbers_at_the_bounds() {
    // Every f32 value at the bound, every input at its largest: finite logits and probabilities.
    let (w1, b1) = (
        vec![MAX_F32_WEIGHT; INPUTS * HIDDEN],
        vec![MAX_F32_WEIGHT; HIDDEN],
    );
    let w2: Vec<f32> = (0..CLASSES * HIDDEN)
        .map(|i| {
            if i % 3 == 0 {
                -MAX_F32_WEIGHT
            } else {
                MAX_F32_WEIGHT
            }
        })
        .collect();
    let b2 = vec![-MAX_F32_WEIGHT; CLASSES];
    let file = f32_file(&w1, &b1, &w2, &b2);
    let model = F32Model::from_bytes(file.bytes()).unwrap();
    let image = [255u8; INPUTS];
    assert!(model.logits(&image).iter().all(|v| v.is_finite()));
    assert!(model.probabilities(&image).iter().all(|v| v.is_finite()));

    // int8 scales at the bound, accumulators at their extremes.
    let file = File::new(&int8_file(|p| {
        p.hidden_scale = MAX_SCALE;
        p.w2_scale = vec![MAX_SCALE; CLASSES];
        p.w2_scale[4] = f32::from_bits(1); // the smallest subnormal
        p.b2 = vec![i32::MAX; CLASSES];
        p.w2 = vec![127; CLASSES * HIDDEN];
        p.w1 = vec![127; HIDDEN * INPUTS];
    }));
    let model = load(file.bytes()).unwrap();
    for image in [[255u8; INPUTS], [0u8; INPUTS]] {
        let p = model.predict(&image);
        assert!(
            model.probabilities(&p).iter().all(|v| v.is_finite()),
            "{p:?}"
        );
        assert!((0..CLASSES).all(|c| model.logit_scale(c).is_finite()));
    }
}
