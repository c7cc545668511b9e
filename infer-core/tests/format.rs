//! The model file and the forward pass over any chain of layers: random shapes through every
//! kernel against the definition, and every kind of damage giving its own `FormatError`, never a
//! panic, never a model that predicts.

use infer_core::format::write::{self, F32LayerParts, QuantLayerParts};
use infer_core::format::{
    DEFAULT_MAX_WIDTH, FormatError, MAX_CLASSES, MAX_F32_WEIGHT, VERSION, checksum, peek,
};
use infer_core::quant::requantize;
use infer_core::{F32Model, Kernel, KernelError, QuantModel, Weights};

/// Bytes in 16-byte-aligned memory (as `Vec<u128>`), as a loader gives them.
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

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One integer layer, unpacked.
#[derive(Clone)]
struct Layer {
    weights: Weights,
    inputs: usize,
    outputs: usize,
    act_scale: f32,
    w_scale: Vec<f32>,
    bias: Vec<i32>,
    multiplier: Vec<i32>,
    shift: Vec<u8>,
    w: Vec<i8>,
    sparse: bool,
}

impl Layer {
    fn random(rng: &mut Rng, weights: Weights, inputs: usize, outputs: usize, last: bool) -> Self {
        let range = if weights == Weights::Int4 { 15 } else { 255 };
        let low = if weights == Weights::Int4 { -7 } else { -127 };
        let w = (0..inputs * outputs)
            .map(|_| (rng.below(range) as i32 + low).clamp(-127, 127) as i8)
            .collect();
        let hidden = if last { 0 } else { outputs };
        Self {
            weights,
            inputs,
            outputs,
            act_scale: 0.05,
            w_scale: (0..outputs).map(|j| 0.001 + j as f32 * 1e-5).collect(),
            bias: (0..outputs)
                .map(|_| rng.below(20_001) as i32 - 10_000)
                .collect(),
            // Factors that keep the u8 outputs varied for inputs this wide.
            multiplier: (0..hidden)
                .map(|_| (1 << 30) + rng.below(1 << 30) as i32)
                .collect(),
            shift: (0..hidden)
                .map(|_| (40 + inputs.ilog2() as usize + rng.below(4)).min(62) as u8)
                .collect(),
            w,
            sparse: false,
        }
    }

    /// Keeps each tile (16 rows × 4 inputs) with probability `density` (in 1/16ths; whole row
    /// blocks and whole groups now and then), zeroing the others; written block-sparse.
    fn pruned(mut self, rng: &mut Rng, density: usize) -> Self {
        let (blocks, groups) = (self.outputs.div_ceil(16), self.inputs.div_ceil(4));
        let empty_block = rng.below(blocks);
        let empty_group = rng.below(groups);
        for b in 0..blocks {
            for g in 0..groups {
                let keep = rng.below(16) < density && b != empty_block && g != empty_group;
                if !keep {
                    for r in (b * 16..(b + 1) * 16).filter(|&r| r < self.outputs) {
                        for k in (g * 4..(g + 1) * 4).filter(|&k| k < self.inputs) {
                            self.w[r * self.inputs + k] = 0;
                        }
                    }
                }
            }
        }
        self.sparse = true;
        self
    }

    fn parts(&self) -> QuantLayerParts<'_> {
        QuantLayerParts {
            weights: self.weights,
            inputs: self.inputs,
            outputs: self.outputs,
            act_scale: self.act_scale,
            w_scale: &self.w_scale,
            bias: &self.bias,
            multiplier: &self.multiplier,
            shift: &self.shift,
            w: &self.w,
            sparse: self.sparse,
        }
    }
}

fn encode(layers: &[Layer]) -> File {
    let parts: Vec<_> = layers.iter().map(Layer::parts).collect();
    let len = write::quant_len(&parts).unwrap();
    let mut out = vec![0; len];
    assert_eq!(write::quant(&parts, &mut out), Ok(len));
    File::new(&out)
}

/// The integer network from the definition: each layer `bias + Σ x·w`, requantized (ReLU) but
/// the last; the logits of the last.
fn reference(layers: &[Layer], input: &[u8]) -> Vec<i32> {
    let mut x: Vec<u8> = input.to_vec();
    for (i, l) in layers.iter().enumerate() {
        let acc: Vec<i32> = (0..l.outputs)
            .map(|j| {
                let mut a = l.bias[j];
                for (&xk, &w) in x.iter().zip(&l.w[j * l.inputs..][..l.inputs]) {
                    a = a.wrapping_add(i32::from(xk) * i32::from(w));
                }
                a
            })
            .collect();
        if i + 1 == layers.len() {
            return acc;
        }
        x = (0..l.outputs)
            .map(|j| requantize(acc[j], l.multiplier[j], l.shift[j]))
            .collect();
    }
    unreachable!()
}

fn input(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            if rng.below(3) == 0 {
                rng.next() as u8
            } else {
                0
            }
        })
        .collect()
}

/// A random chain: depth 1–4, widths 1–1024 (the classes up to `MAX_CLASSES`), int8 and int4
/// layers mixed.
fn random_layers(rng: &mut Rng) -> Vec<Layer> {
    let depth = 1 + rng.below(4);
    let mut widths = vec![1 + rng.below(1024)];
    for _ in 1..depth {
        widths.push(1 + rng.below(1024));
    }
    widths.push(1 + rng.below(MAX_CLASSES));
    (0..depth)
        .map(|i| {
            let weights = if rng.below(2) == 0 {
                Weights::Int8
            } else {
                Weights::Int4
            };
            let layer = Layer::random(rng, weights, widths[i], widths[i + 1], i + 1 == depth);
            // A third of the layers block-sparse, at densities 0–100 %.
            match rng.below(3) {
                0 => {
                    let density = rng.below(17);
                    layer.pruned(rng, density)
                }
                _ => layer,
            }
        })
        .collect()
}

#[test]
fn random_chains_predict_as_the_definition_on_every_kernel() {
    let mut rng = Rng(7);
    let mut shapes = vec![];
    let mut sparse = 0;
    for case in 0..40 {
        let layers = random_layers(&mut rng);
        let file = encode(&layers);
        let model = QuantModel::from_bytes(file.bytes()).unwrap();
        assert_eq!(model.layers().len(), layers.len());
        let inputs = layers[0].inputs;
        let images: Vec<Vec<u8>> = (0..5).map(|_| input(&mut rng, inputs)).collect();
        for image in &images {
            let expected = reference(&layers, image);
            for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let p = model.predict_with(kernel, image).unwrap();
                assert_eq!(p.logits[..], expected[..], "case {case}, {kernel}");
            }
        }
        let flat: Vec<u8> = images.concat();
        let mut batch = vec![model.predict(&images[0]).unwrap(); 5];
        model.predict_batch(&flat, &mut batch).unwrap();
        for (p, image) in batch.iter().zip(&images) {
            assert_eq!(p, &model.predict(image).unwrap(), "case {case}, batch");
        }
        shapes.push(model.header().widths().to_vec());
        sparse += usize::from(model.header().is_sparse());
    }
    // The cases covered deep chains, wide layers (several gathered lists) and sparse ones.
    assert!(shapes.iter().any(|w| w.len() == 5));
    assert!(sparse > 5);
    assert!(shapes.iter().any(|w| w.iter().any(|&v| v > 784)));
}

#[test]
fn the_tutorial_shape_round_trips_its_parts() {
    let mut rng = Rng(1);
    let layers = vec![
        Layer::random(&mut rng, Weights::Int4, 784, 512, false),
        Layer::random(&mut rng, Weights::Int8, 512, 10, true),
    ];
    let file = encode(&layers);
    let model = QuantModel::from_bytes(file.bytes()).unwrap();
    let header = peek(file.bytes()).unwrap();
    assert_eq!(header.widths(), &[784, 512, 10]);
    assert_eq!(header.weights(), &[Weights::Int4, Weights::Int8]);
    assert_eq!(header.kind_name(), "int4+int8");
    let [first, second] = model.layers() else {
        panic!()
    };
    for (j, k) in [(0, 0), (511, 783), (77, 400)] {
        assert_eq!(
            first.weight(j, k),
            Some(i32::from(layers[0].w[j * 784 + k]))
        );
    }
    assert_eq!(
        second.weight(9, 511),
        Some(i32::from(layers[1].w[9 * 512 + 511]))
    );
    assert_eq!(second.weight(10, 0), None);
    assert_eq!(first.weight(0, 784), None);
    assert_eq!(second.bias(3), Some(layers[1].bias[3]));
    assert_eq!(second.bias(10), None);
    assert_eq!(
        first.requantization(5),
        Some((layers[0].multiplier[5], layers[0].shift[5]))
    );
    assert_eq!(second.act_scale(), None);
    assert_eq!(first.act_scale(), Some(0.05));
    // int4 hidden scales are derived from the requantization; stored ones are read back.
    let derived: Vec<f32> = first.w_scales().collect();
    let (m, s) = (layers[0].multiplier[0], layers[0].shift[0]);
    let expected = f64::from(m) / 2f64.powi(i32::from(s)) * 0.05 * 255.0;
    assert!((f64::from(derived[0]) - expected).abs() < 1e-9 * expected.abs().max(1.0));
    assert_eq!(second.w_scales().collect::<Vec<_>>(), layers[1].w_scale);
    let p = model.predict(&[3; 784]).unwrap();
    let probabilities = model.probabilities(&p);
    assert_eq!(probabilities.len(), 10);
    assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn inputs_of_the_wrong_length_are_errors() {
    let mut rng = Rng(2);
    let layers = vec![Layer::random(&mut rng, Weights::Int8, 30, 3, true)];
    let file = encode(&layers);
    let model = QuantModel::from_bytes(file.bytes()).unwrap();
    let wrong = Err(KernelError::InputLength {
        expected: 30,
        got: 29,
    });
    assert_eq!(model.predict(&[0; 29]), wrong);
    let mut out = vec![model.predict(&[0; 30]).unwrap(); 2];
    assert!(model.predict_batch(&[0; 59], &mut out).is_err());
    assert_eq!(model.predict_batch(&[], &mut out), Ok(()));
}

#[test]
fn a_model_wider_than_the_build_is_refused_at_load() {
    let mut rng = Rng(3);
    let layers = vec![
        Layer::random(&mut rng, Weights::Int8, 20, 100, false),
        Layer::random(&mut rng, Weights::Int8, 100, 10, true),
    ];
    let file = encode(&layers);
    assert!(QuantModel::<'_, 112>::from_bytes_bounded(file.bytes()).is_ok());
    assert_eq!(
        QuantModel::<'_, 64>::from_bytes_bounded(file.bytes()).unwrap_err(),
        FormatError::TooWide {
            width: 112,
            max: 64
        }
    );
    let wide = vec![
        Layer::random(&mut rng, Weights::Int8, 8, DEFAULT_MAX_WIDTH + 1, false),
        Layer::random(&mut rng, Weights::Int8, DEFAULT_MAX_WIDTH + 1, 2, true),
    ];
    assert!(matches!(
        QuantModel::from_bytes(encode(&wide).bytes()),
        Err(FormatError::TooWide { .. })
    ));
    let classes = vec![Layer::random(
        &mut rng,
        Weights::Int8,
        8,
        MAX_CLASSES + 1,
        true,
    )];
    assert_eq!(
        QuantModel::from_bytes(encode(&classes).bytes()).unwrap_err(),
        FormatError::TooManyClasses {
            classes: MAX_CLASSES + 1
        }
    );
}

/// Rewrites the CRC after an edit, so the edit itself is what is checked.
fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len() - 4;
    let crc = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn small_file() -> (Vec<Layer>, Vec<u8>) {
    let mut rng = Rng(4);
    let layers = vec![
        Layer::random(&mut rng, Weights::Int8, 12, 20, false),
        Layer::random(&mut rng, Weights::Int8, 20, 3, true),
    ];
    let bytes = encode(&layers).bytes().to_vec();
    (layers, bytes)
}

fn load(bytes: &[u8]) -> Result<(), FormatError> {
    QuantModel::from_bytes(File::new(bytes).bytes()).map(|_| ())
}

#[test]
fn damaged_headers_are_refused() {
    let (_, bytes) = small_file();
    assert_eq!(load(&bytes), Ok(()));
    assert!(matches!(
        load(&bytes[..5]),
        Err(FormatError::Truncated { .. })
    ));
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert_eq!(load(&magic), Err(FormatError::BadMagic));
    for v in [1, 2, VERSION + 1] {
        let mut version = bytes.clone();
        version[4] = v;
        assert_eq!(load(&version), Err(FormatError::UnsupportedVersion(v)));
        assert!(
            FormatError::UnsupportedVersion(v)
                .to_string()
                .contains("re-export")
        );
    }
    for n in [0u8, 9] {
        let mut layers = bytes.clone();
        layers[5] = n;
        assert_eq!(
            load(&resealed(layers)),
            Err(FormatError::LayerCount(n.into()))
        );
    }
    let mut kind = bytes.clone();
    kind[6] = 9;
    assert_eq!(load(&resealed(kind)), Err(FormatError::UnknownWeights(9)));
    let mut mixed = bytes.clone();
    mixed[7] = Weights::F32.byte();
    assert_eq!(load(&resealed(mixed)), Err(FormatError::WrongKind));
    // Widths: byte 8 is the inputs (12), a one-byte varint.
    let mut zero = bytes.clone();
    zero[8] = 0;
    assert_eq!(
        load(&resealed(zero)),
        Err(FormatError::BadWidth { index: 0, width: 0 })
    );
    let mut crc = bytes.clone();
    *crc.last_mut().unwrap() ^= 1;
    assert!(matches!(load(&crc), Err(FormatError::CrcMismatch { .. })));
    let mut trailing = bytes.clone();
    trailing.splice(bytes.len() - 4..bytes.len() - 4, [0]);
    assert_eq!(load(&resealed(trailing)), Err(FormatError::Malformed));
    assert_eq!(
        F32Model::from_bytes(File::new(&bytes).bytes()).unwrap_err(),
        FormatError::WrongKind
    );
    // Cut anywhere: an error, never a panic.
    for n in 0..bytes.len() {
        assert!(load(&bytes[..n]).is_err(), "{n}");
        assert!(
            load(&resealed(bytes[..n.max(10)].to_vec())).is_err(),
            "{n} resealed"
        );
    }
}

#[test]
fn bad_values_are_refused_naming_the_layer_and_section() {
    let (layers, _) = small_file();
    let mut bad = layers.clone();
    bad[0].act_scale = f32::NAN;
    assert_eq!(
        load(encode(&bad).bytes()),
        Err(FormatError::BadScale {
            layer: 0,
            section: "act_scale",
            index: 0
        })
    );
    let mut bad = layers.clone();
    bad[1].w_scale[2] = -1.0;
    assert_eq!(
        load(encode(&bad).bytes()),
        Err(FormatError::BadScale {
            layer: 1,
            section: "w_scale",
            index: 2
        })
    );
    let mut bad = layers.clone();
    bad[0].shift[4] = 32;
    assert_eq!(
        load(encode(&bad).bytes()),
        Err(FormatError::BadRequantization { layer: 0, index: 4 })
    );
    let mut bad = layers.clone();
    bad[0].multiplier[1] = 0;
    assert_eq!(
        load(encode(&bad).bytes()),
        Err(FormatError::BadRequantization { layer: 0, index: 1 })
    );
    // A misaligned buffer: the weight section is not word-aligned.
    let file = encode(&layers);
    let mut shifted = vec![0u8; file.len + 1];
    shifted[1..].copy_from_slice(file.bytes());
    let words = File::new(&shifted);
    assert!(matches!(
        QuantModel::from_bytes(&words.bytes()[1..]),
        Err(FormatError::Misaligned { layer: 0, .. })
    ));
}

#[test]
fn the_writer_refuses_what_the_reader_would() {
    let (layers, _) = small_file();
    let mut parts: Vec<_> = layers.iter().map(Layer::parts).collect();
    assert!(matches!(
        write::quant(&parts, &mut [0; 100]),
        Err(FormatError::Truncated { .. })
    ));
    parts[1].inputs = 19;
    assert_eq!(
        write::quant_len(&parts),
        Err(FormatError::BadWidth {
            index: 1,
            width: 19
        })
    );
    assert_eq!(write::quant_len(&[]), Err(FormatError::LayerCount(0)));
    let mut int4 = layers.clone();
    int4[0].weights = Weights::Int4;
    int4[0].w.iter_mut().for_each(|w| *w = (*w).clamp(-8, 7));
    int4[0].w[3] = 8;
    let parts: Vec<_> = int4.iter().map(Layer::parts).collect();
    assert_eq!(
        write::quant_len(&parts),
        Err(FormatError::BadWeight {
            layer: 0,
            section: "weights",
            index: 3
        })
    );
    let mut short = layers.clone();
    short[1].bias.pop();
    let parts: Vec<_> = short.iter().map(Layer::parts).collect();
    assert_eq!(
        write::quant_len(&parts),
        Err(FormatError::SectionLength {
            layer: 1,
            section: "bias",
            expected: 3,
            got: 2
        })
    );
}

/// An f32 layer: biases, then weights input-major.
type F32Layer = (Vec<f32>, Vec<f32>);

/// An f32 chain, weights input-major.
fn f32_file(widths: &[usize], weight: f32) -> (Vec<F32Layer>, Vec<u8>) {
    let layers: Vec<F32Layer> = widths
        .windows(2)
        .map(|w| {
            let bias = (0..w[1]).map(|j| j as f32 * 0.01 - 0.02).collect();
            let weights = (0..w[0] * w[1])
                .map(|i| weight * (((i * 37) % 19) as f32 - 9.0) / 9.0)
                .collect();
            (bias, weights)
        })
        .collect();
    let parts: Vec<_> = widths
        .windows(2)
        .zip(&layers)
        .map(|(w, (b, wt))| F32LayerParts {
            inputs: w[0],
            outputs: w[1],
            bias: b,
            w: wt,
        })
        .collect();
    let len = write::f32_len(&parts).unwrap();
    let mut out = vec![0; len];
    write::f32(&parts, &mut out).unwrap();
    (layers, out)
}

#[test]
fn f32_chains_compute_the_definition() {
    let widths = [7, 33, 5, 3];
    let (layers, bytes) = f32_file(&widths, 0.5);
    let file = File::new(&bytes);
    let model = F32Model::from_bytes(file.bytes()).unwrap();
    let image: Vec<u8> = (0..7).map(|i| (i * 40) as u8).collect();
    let mut x: Vec<f64> = image.iter().map(|&p| f64::from(p) / 255.0).collect();
    for (i, (b, w)) in layers.iter().enumerate() {
        let n = b.len();
        let mut out: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
        for (k, &xk) in x.iter().enumerate() {
            for j in 0..n {
                out[j] += xk * f64::from(w[k * n + j]);
            }
        }
        if i + 1 < layers.len() {
            out.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        x = out;
    }
    let logits = model.logits(&image).unwrap();
    for (got, want) in logits.iter().zip(&x) {
        assert!((f64::from(*got) - want).abs() < 1e-4 * want.abs().max(1.0));
    }
    assert!(model.logits(&image[..6]).is_err());
    assert_eq!(peek(file.bytes()).unwrap().kind_name(), "f32");
    assert_eq!(
        QuantModel::from_bytes(file.bytes()).unwrap_err(),
        FormatError::WrongKind
    );
}

#[test]
fn f32_weights_that_could_overflow_are_refused() {
    let (_, bytes) = f32_file(&[4, 3], f32::INFINITY);
    assert!(matches!(
        F32Model::from_bytes(File::new(&bytes).bytes()),
        Err(FormatError::BadWeight { layer: 0, .. })
    ));
    let big = MAX_F32_WEIGHT;
    let (_, bytes) = f32_file(&[1000, 1000, 1000, 1000, 10], big);
    assert!(matches!(
        F32Model::from_bytes(File::new(&bytes).bytes()),
        Err(FormatError::Overflow { .. })
    ));
    // Within the bound every output is finite, even for the largest inputs.
    let (_, bytes) = f32_file(&[784, 512, 10], big);
    let file = File::new(&bytes);
    let model = F32Model::from_bytes(file.bytes()).unwrap();
    assert!(
        model
            .probabilities(&[255; 784])
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    );
}

/// A pruned tutorial-shaped layer: stored sparse (smaller), read back weight for weight, and its
/// damaged kept lists refused, naming the row block.
#[test]
fn a_build_for_some_layer_kinds_runs_them_and_refuses_the_others_by_name() {
    use infer_core::kinds::{ALL, INT4, INT8, SPARSE};
    let mut rng = Rng(12);
    let mut layers = vec![
        Layer::random(&mut rng, Weights::Int4, 60, 40, false),
        Layer::random(&mut rng, Weights::Int8, 40, 10, true),
    ];
    layers[0] = layers[0].clone().pruned(&mut rng, 2);
    let file = encode(&layers);
    let header = infer_core::format::peek(file.bytes()).unwrap();
    assert_eq!(header.kinds(), INT4 | INT8 | SPARSE);
    let image = input(&mut rng, 60);
    let all = QuantModel::<'_, 48, ALL>::from_bytes_bounded(file.bytes()).unwrap();
    let own = QuantModel::<'_, 48, { INT4 | INT8 | SPARSE }>::from_bytes_bounded(file.bytes());
    assert_eq!(own.unwrap().predict(&image), all.predict(&image));
    let no_int4 = QuantModel::<'_, 48, { INT8 | SPARSE }>::from_bytes_bounded(file.bytes());
    assert_eq!(no_int4.err(), Some(FormatError::KindLeftOut("int4")));
    let no_int8 = QuantModel::<'_, 48, { INT4 | SPARSE }>::from_bytes_bounded(file.bytes());
    assert_eq!(no_int8.err(), Some(FormatError::KindLeftOut("int8")));
    let dense_only = QuantModel::<'_, 48, { INT4 | INT8 }>::from_bytes_bounded(file.bytes());
    let e = dense_only.unwrap_err();
    assert_eq!(e, FormatError::KindLeftOut("sparse"));
    assert!(e.to_string().contains("sparse layers"), "{e}");
}

#[test]
fn sparse_layers_round_trip_and_bad_kept_lists_are_refused() {
    let mut rng = Rng(11);
    let dense = vec![
        Layer::random(&mut rng, Weights::Int4, 784, 512, false),
        Layer::random(&mut rng, Weights::Int8, 512, 10, true),
    ];
    let mut pruned = dense.clone();
    pruned[0] = pruned[0].clone().pruned(&mut rng, 2);
    let (dense_file, file) = (encode(&dense), encode(&pruned));
    assert!(
        file.len < dense_file.len / 4,
        "{} {}",
        file.len,
        dense_file.len
    );
    let model = QuantModel::from_bytes(file.bytes()).unwrap();
    let first = &model.layers()[0];
    let s = first.sparsity().unwrap();
    assert!(first.layer().sparse && !model.layers()[1].layer().sparse);
    assert_eq!(s.tiles(), first.layer().tiles);
    assert!(s.tiles() < s.dense_tiles() / 4);
    for j in (0..512).step_by(7) {
        for k in (0..784).step_by(3) {
            let w = i32::from(pruned[0].w[j * 784 + k]);
            assert_eq!(first.weight(j, k), Some(w), "{j} {k}");
        }
    }
    let image = input(&mut rng, 784);
    assert_eq!(
        model.predict(&image).unwrap().logits[..],
        reference(&pruned, &image)[..]
    );

    // The kept list: find it (after the 32 u16 block counts and the pad that aligns it) and
    // damage it.
    let bytes = file.bytes().to_vec();
    let counts: Vec<u8> = s_counts(&pruned[0]);
    let at = bytes
        .windows(counts.len())
        .position(|w| w == counts)
        .unwrap()
        + counts.len();
    let pad = usize::from(bytes[at]);
    assert!(pad < 2, "a pad of {pad} bytes before a u16 section");
    let kept_at = at + 1 + pad + varint_len(2 * s.tiles());
    assert_eq!(
        file.bytes().as_ptr().wrapping_add(kept_at).align_offset(2),
        0
    );
    let first_block = u16::from_le_bytes([counts[0], counts[1]]) as usize;
    assert!(
        first_block >= 2,
        "the first row block keeps at least two tiles"
    );
    let damage = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        edit(&mut b);
        load(&resealed(b))
    };
    let bad = |block| Err(FormatError::BadSparsity { layer: 0, block });
    // Two groups out of order; a group repeated; a group past the inputs (196 groups).
    assert_eq!(damage(&|b| b.swap(kept_at, kept_at + 2)), bad(0));
    assert_eq!(
        damage(&|b| {
            b[kept_at + 2] = b[kept_at];
            b[kept_at + 3] = b[kept_at + 1];
        }),
        bad(0)
    );
    let last = kept_at + 2 * s.tiles() - 2;
    assert_eq!(
        damage(&|b| b[last..last + 2].copy_from_slice(&196u16.to_le_bytes())),
        bad(31)
    );
    // Counts that do not add up to the tiles: one more in block 0, one less in block 0.
    for edit in [1u8, 255] {
        let got = damage(&|b| b[at - counts.len()] = b[at - counts.len()].wrapping_add(edit));
        assert!(
            matches!(got, Err(FormatError::BadSparsity { layer: 0, .. })),
            "{got:?}"
        );
    }
}

/// The u16 kept-tile counts of a pruned layer's row blocks, as the file stores them.
fn s_counts(l: &Layer) -> Vec<u8> {
    let (blocks, groups) = (l.outputs.div_ceil(16), l.inputs.div_ceil(4));
    (0..blocks)
        .flat_map(|b| {
            let n = (0..groups)
                .filter(|g| {
                    (b * 16..(b + 1) * 16).filter(|&r| r < l.outputs).any(|r| {
                        (g * 4..(g + 1) * 4)
                            .filter(|&k| k < l.inputs)
                            .any(|k| l.w[r * l.inputs + k] != 0)
                    })
                })
                .count() as u16;
            n.to_le_bytes()
        })
        .collect()
}

fn varint_len(v: usize) -> usize {
    if v < 128 {
        1
    } else {
        (usize::BITS - v.leading_zeros()).div_ceil(7) as usize
    }
}
