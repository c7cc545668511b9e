//! ONNX in and out: a model exported and imported again is the same network, the layouts other
//! exporters write (PyTorch's `Gemm` with `transB`) read the same, deeper chains (784-256-128-10)
//! and narrower ones (784-128-10) too, and what is not a dense ReLU MLP is refused naming what was
//! found.

use std::process::Command;

use infer_core::F32Model;
use trainer::mlp::Mlp;
use trainer::onnx::{self, float_tensor, int_attribute, model_proto, node};
use trainer::output::AlignedBytes;
use trainer::quantize::{CALIBRATION_IMAGES, Width, encode_f32, encode_quant, quantize};

mod common;

use common::{eval_accuracy, mnist, tutorial_net};

fn exported(net: &Mlp) -> Vec<u8> {
    let file = AlignedBytes::new(&encode_f32(net).unwrap());
    onnx::export_f32(&F32Model::from_bytes(file.as_bytes()).unwrap())
}

fn same(a: &Mlp, b: &Mlp) {
    assert_eq!(a.widths(), b.widths());
    assert_eq!(a.middle, b.middle);
    assert_eq!(a.w1, b.w1);
    assert_eq!(a.b1, b.b1);
    assert_eq!(a.w2, b.w2);
    assert_eq!(a.b2, b.b2);
}

#[test]
fn export_then_import_gives_the_same_network() {
    let net = tutorial_net(&mnist().train.head(2000), 1);
    same(&onnx::import(&exported(&net)).unwrap(), &net);
    // Other chains of dense layers: narrower, and deeper.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
    for hidden in [&[128][..], &[256, 128], &[64, 48, 32]] {
        let net = Mlp::glorot(784, hidden, 10, &mut rng);
        let imported = onnx::import(&exported(&net)).unwrap();
        same(&imported, &net);
    }
}

#[test]
fn pytorch_gemm_layers_with_transposed_weights_read_the_same() {
    let net = tutorial_net(&mnist().train.head(2000), 1);
    // torch.onnx.export: Gemm(x, W[out, in], b, transB=1), Relu, Gemm, Softmax.
    let w1: Vec<f32> = (0..512 * 784).map(|i| net.w1[(i / 784, i % 784)]).collect();
    let w2: Vec<f32> = (0..10 * 512).map(|i| net.w2[(i % 512, i / 512)]).collect();
    let gemm = |inputs: &[&str], out: &str| {
        let mut n = node("Gemm", inputs, out);
        n.attribute.push(int_attribute("transB", 1));
        n
    };
    let model = model_proto(
        "torch",
        vec![
            gemm(&["pixels", "fc1.weight", "fc1.bias"], "a"),
            node("Relu", &["a"], "h"),
            gemm(&["h", "fc2.weight", "fc2.bias"], "z"),
            node("Softmax", &["z"], "logits"),
        ],
        vec![
            float_tensor("fc1.weight", &[512, 784], &w1),
            float_tensor("fc1.bias", &[512], net.b1.as_slice()),
            float_tensor("fc2.weight", &[10, 512], &w2),
            float_tensor("fc2.bias", &[10], net.b2.as_slice()),
        ],
        784,
        10,
    );
    use prost::Message;
    same(&onnx::import(&model.encode_to_vec()).unwrap(), &net);
}

#[test]
fn what_is_not_a_dense_relu_mlp_is_refused_naming_it() {
    let err = |bytes: &[u8]| format!("{:#}", onnx::import(bytes).unwrap_err());
    assert!(err(b"\xff\xff not protobuf").contains("not an ONNX model"));
    use prost::Message;
    // Any inputs (another dataset's images), but at most 64 classes.
    let graph = |classes: usize| {
        model_proto(
            "small",
            vec![
                node("MatMul", &["pixels", "w1"], "a"),
                node("Relu", &["a"], "h"),
                node("MatMul", &["h", "w2"], "logits"),
            ],
            vec![
                float_tensor("w1", &[100, 16], &vec![0.0; 100 * 16]),
                float_tensor("w2", &[16, classes as i64], &vec![0.0; 16 * classes]),
            ],
            100,
            classes,
        )
        .encode_to_vec()
    };
    assert_eq!(onnx::import(&graph(26)).unwrap().widths(), [100, 16, 26]);
    let message = err(&graph(100));
    assert!(
        message.contains("(16, 100)") && message.contains("at most 64 classes"),
        "{message}"
    );
    let sigmoid = model_proto(
        "sigmoid",
        vec![node("Sigmoid", &["pixels"], "logits")],
        vec![],
        784,
        10,
    );
    let message = err(&sigmoid.encode_to_vec());
    assert!(message.contains("Sigmoid"), "{message}");
}

#[test]
fn import_writes_model_files_that_evaluate() {
    let dir = common::temp_dir("onnx-import");
    let net = tutorial_net(&mnist().train.head(10_000), 1);
    let onnx_file = dir.join("keras.onnx");
    std::fs::write(&onnx_file, exported(&net)).unwrap();
    let out = dir.join("out");
    // Into a folder holding another set: a run like training, which says what it replaced.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(
        env!("CARGO_MANIFEST_DIR").to_owned() + "/../firmware-example/model/mlp-int4.bin",
        out.join("mlp-int4.bin"),
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("import")
        .arg(&onnx_file)
        .arg("--out")
        .arg(&out)
        .args(["--weights", "both"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("(784-512-10)") && stdout.contains("previous mlp-int4.bin"),
        "{stdout}"
    );
    // The report says where the model came from (path, SHA-256) and what it scores.
    let report = imported(&out);
    assert_eq!(report["source"], onnx_file.display().to_string());
    let sha = trainer::idx::sha256_hex(&std::fs::read(&onnx_file).unwrap());
    assert_eq!(report["source_sha256"], sha);
    assert_eq!(report["layers"], serde_json::json!([784, 512, 10]));
    assert_eq!(report["replaced"], serde_json::json!(["mlp-int4.bin"]));
    let accuracy = |kind: &str| report[kind]["test_accuracy"].as_f64().unwrap();
    let (f32_accuracy, int8_accuracy) = (accuracy("f32"), accuracy("int8"));
    assert!(
        f32_accuracy > 0.85
            && (f32_accuracy - int8_accuracy).abs() < 0.01
            && (f32_accuracy - accuracy("int4")).abs() < 0.02,
        "{report}"
    );
    assert!(out.join("mlp-int4.bin").is_file());
    // The f32 file holds the imported weights exactly, and the int8 file is the one the trainer
    // makes from them (same calibration): both predict as the originals on every test digit.
    let f32_file = AlignedBytes::read(&out.join("mlp-f32.bin")).unwrap();
    assert_eq!(f32_file.as_bytes(), encode_f32(&net).unwrap());
    let int8 = quantize(&net, &mnist().train.head(CALIBRATION_IMAGES), Width::Int8).unwrap();
    let int8_file = AlignedBytes::read(&out.join("mlp-int8.bin")).unwrap();
    assert_eq!(int8_file.as_bytes(), encode_quant(&int8).unwrap());
    let eval = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("eval")
        .arg(out.join("mlp-int8.bin"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        (eval_accuracy(&text) - int8_accuracy).abs() < 1e-9,
        "{text}"
    );
}

/// The report `trainer import` wrote into `out`.
fn imported(out: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

/// The nodes of a model's graph.
fn nodes(m: &mut onnx::ModelProto) -> &mut Vec<onnx::NodeProto> {
    &mut m.graph.as_mut().unwrap().node
}

/// Graphs that compute something other than the MLP their layers suggest, and malformed files:
/// each refused, naming what is wrong; none imported as a model.
#[test]
fn hostile_graphs_are_refused_naming_what_is_wrong() {
    use onnx::{AttributeProto, ModelProto};
    use prost::Message;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(9);
    let net = Mlp::glorot(784, &[16], 10, &mut rng);
    let base = ModelProto::decode(exported(&net).as_slice()).unwrap();
    // Nodes: MatMul(pixels, w1) → z1, Add(z1, b1) → a1, Relu(a1) → h1, MatMul(h1, w2) → z2,
    // Add(z2, b2) → logits.
    assert!(onnx::import(&base.encode_to_vec()).is_ok());
    type Mutation = Box<dyn Fn(&mut ModelProto)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "a Softmax between the layers",
            Box::new(|m| {
                let n = nodes(m);
                n[2].output[0] = "r".into();
                n.insert(3, node("Softmax", &["r"], "h1"));
            }),
            "Softmax",
        ),
        (
            "ReLU on the pixels, the second layer reading the sum before its ReLU",
            Box::new(|m| {
                let n = nodes(m);
                n[0].input[0] = "rp".into();
                n.insert(0, node("Relu", &["pixels"], "rp"));
                n[4].input[0] = "a1".into();
            }),
            "on the input",
        ),
        (
            "a Cast to INT8 between the layers",
            Box::new(|m| {
                let n = nodes(m);
                n[2].output[0] = "r".into();
                let mut cast = node("Cast", &["r"], "h1");
                cast.attribute.push(int_attribute("to", 3));
                n.insert(3, cast);
            }),
            "casts to element type 3",
        ),
        (
            "a cycle",
            Box::new(|m| {
                let n = nodes(m);
                n[0].input[0] = "h1".into();
            }),
            "is read by 0 nodes",
        ),
        (
            "a self-loop",
            Box::new(|m| {
                let n = nodes(m);
                n.push(node("Identity", &["q"], "q"));
            }),
            "not on the path",
        ),
        (
            "an input naming nothing",
            Box::new(|m| nodes(m)[3].input[1] = "nowhere".into()),
            "\"nowhere\" is nothing in the graph",
        ),
        (
            "a custom domain",
            Box::new(|m| nodes(m)[2].domain = "com.example".into()),
            "domain \"com.example\"",
        ),
        (
            "opset 1",
            Box::new(|m| m.opset_import[0].version = 1),
            "operator set 1",
        ),
        (
            "opset 99999",
            Box::new(|m| m.opset_import[0].version = 99_999),
            "operator set 99999",
        ),
        (
            "two initializers with one name",
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                let mut twin = g.initializer[0].clone();
                twin.raw_data.iter_mut().for_each(|b| *b = 0);
                g.initializer.push(twin);
            }),
            "two initializers are named",
        ),
        (
            "both float_data and raw_data",
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                g.initializer[1].float_data = vec![0.0; 16];
            }),
            "holds its values twice",
        ),
        (
            "transA = 1.5 as a float",
            Box::new(|m| {
                let n = nodes(m);
                n[0].op_type = "Gemm".into();
                n[0].attribute.push(AttributeProto {
                    name: "transA".into(),
                    f: 1.5,
                    r#type: onnx::ATTRIBUTE_FLOAT,
                    ..Default::default()
                });
            }),
            "attribute transA is of kind 1",
        ),
        (
            "bias dims whose product wraps",
            Box::new(|m| {
                let g = m.graph.as_mut().unwrap();
                g.initializer[1].dims = vec![i64::MAX, 16, (1 << 55) - 1];
            }),
            "overflow",
        ),
        (
            "a negative dimension",
            Box::new(|m| m.graph.as_mut().unwrap().initializer[1].dims = vec![-16]),
            "is negative",
        ),
        (
            "two dense layers with no ReLU between",
            Box::new(|m| {
                let n = nodes(m);
                n.remove(2);
                n[2].input[0] = "a1".into();
            }),
            "no Relu after the first",
        ),
        (
            "300 MatMul nodes",
            Box::new(|m| {
                let n = nodes(m);
                n.truncate(3);
                n[2].output[0] = "x0".into();
                for k in 0..300 {
                    n.push(node("MatMul", &[&format!("x{k}"), "w2"], &format!("m{k}")));
                    n.push(node("Relu", &[&format!("m{k}")], &format!("x{}", k + 1)));
                }
                n.push(node("MatMul", &["x300", "w2"], "logits"));
            }),
            "more than 8 dense layers",
        ),
        (
            "20,000 Identity nodes (decoded, a node costs far more than its bytes)",
            Box::new(|m| {
                let n = nodes(m);
                let relu = n.iter().position(|n| n.op_type == "Relu").unwrap();
                let out = std::mem::replace(&mut n[relu].output[0], "i0".into());
                let chain: Vec<_> = (0..20_000)
                    .map(|k| {
                        let to = if k == 19_999 {
                            out.clone()
                        } else {
                            format!("i{}", k + 1)
                        };
                        node("Identity", &[&format!("i{k}")], &to)
                    })
                    .collect();
                n.splice(relu + 1..relu + 1, chain);
            }),
            "this reader takes up to 10000",
        ),
        (
            "weights in an external file",
            Box::new(|m| m.graph.as_mut().unwrap().initializer[0].data_location = 1),
            "external file",
        ),
    ];
    for (what, mutate, expected) in cases {
        let mut model = base.clone();
        mutate(&mut model);
        let message = match onnx::import(&model.encode_to_vec()) {
            Ok(_) => panic!("{what}: imported"),
            Err(e) => format!("{e:#}"),
        };
        assert!(message.contains(expected), "{what}: {message}");
    }
}

/// The tutorial network as a PyTorch user trained it on `Normalize((mean,), (std,))`: first-layer
/// weights and biases that expect `(x − mean) / std`, computing the same function of the pixels.
fn normalized(net: &Mlp, mean: f32, std: f32) -> Mlp {
    let mut n = net.clone();
    for j in 0..n.w1.nrows() {
        let sum: f64 = (0..n.w1.ncols()).map(|k| f64::from(net.w1[(j, k)])).sum();
        n.b1[j] = (f64::from(net.b1[j]) + sum * f64::from(mean)) as f32;
        for k in 0..n.w1.ncols() {
            n.w1[(j, k)] = net.w1[(j, k)] * std;
        }
    }
    n
}

/// Input scaling folded into the first layer: a normalization done outside the graph
/// (`--input-mean`, `--input-std`), the same done inside it (Sub, Div), and Keras's
/// `Rescaling(1/255)` (a graph taking pixels in 0–255) all give back the network of pixels in
/// 0–1; a model scored below 50 % (one trained on 0–255, scaled outside its graph) is flagged and
/// does not replace an existing set without `--force`; a normalized one imported with the flags
/// keeps its accuracy.
#[test]
fn input_scaling_is_folded_into_the_first_layer() {
    use prost::Message;
    let net = tutorial_net(&mnist().train.head(10_000), 1);
    let (mean, std) = (0.1307f32, 0.3081f32);
    let pytorch = normalized(&net, mean, std);
    let close = |a: &Mlp, b: &Mlp| {
        let w =
            a.w1.iter()
                .zip(b.w1.iter())
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
        let bias =
            a.b1.iter()
                .zip(b.b1.iter())
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
        assert!(
            w < 1e-6 && bias < 1e-4,
            "weights differ by {w}, biases by {bias}"
        );
        assert_eq!((&a.middle, &a.w2, &a.b2), (&b.middle, &b.w2, &b.b2));
    };
    let mut scaling = onnx::InputScaling {
        outside: Some((mean, std)),
        folded: Vec::new(),
    };
    close(
        &onnx::import_scaled(&exported(&pytorch), &mut scaling).unwrap(),
        &net,
    );
    // The same normalization as nodes of the graph.
    let mut inside = onnx::ModelProto::decode(exported(&pytorch).as_slice()).unwrap();
    {
        let g = inside.graph.as_mut().unwrap();
        g.node[0].input[0] = "scaled".into();
        g.node
            .insert(0, node("Sub", &["pixels", "mean"], "centred"));
        g.node.insert(1, node("Div", &["centred", "std"], "scaled"));
        g.initializer.push(float_tensor("mean", &[1], &[mean]));
        g.initializer.push(float_tensor("std", &[], &[std]));
    }
    let mut scaling = onnx::InputScaling {
        outside: None,
        folded: Vec::new(),
    };
    close(
        &onnx::import_scaled(&inside.encode_to_vec(), &mut scaling).unwrap(),
        &net,
    );
    assert_eq!(scaling.folded.len(), 2, "{:?}", scaling.folded);
    // Keras's Rescaling(1/255): the graph takes 0–255.
    let mut keras = onnx::ModelProto::decode(exported(&net).as_slice()).unwrap();
    {
        let g = keras.graph.as_mut().unwrap();
        g.node[0].input[0] = "rescaled".into();
        g.node.insert(0, node("Mul", &["pixels", "k"], "rescaled"));
        g.initializer.push(float_tensor("k", &[], &[1.0 / 255.0]));
    }
    let mut scaling = onnx::InputScaling {
        outside: None,
        folded: Vec::new(),
    };
    close(
        &onnx::import_scaled(&keras.encode_to_vec(), &mut scaling).unwrap(),
        &net,
    );
    assert!(scaling.folded[0].contains("0–255"), "{:?}", scaling.folded);

    // The command. A model trained on 0–255 with the scaling outside its graph scores far
    // below 50 % on pixels in 0–1: flagged, and not written over a set.
    let dir = common::temp_dir("onnx-normalized");
    let file = dir.join("pytorch.onnx");
    std::fs::write(&file, exported(&pytorch)).unwrap();
    let raw = dir.join("raw-255.onnx");
    std::fs::write(&raw, exported(&normalized(&net, 0.0, 1.0 / 255.0))).unwrap();
    let (out, original) = (dir.join("out"), dir.join("original.onnx"));
    std::fs::write(&original, exported(&net)).unwrap();
    let import = |model: &std::path::Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trainer"))
            .arg("import")
            .arg(model)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let figures = |run: &std::process::Output| {
        common::succeeded(run);
        let report = imported(&out);
        ["f32", "int8"].map(|k| report[k]["test_accuracy"].as_f64().unwrap())
    };
    let before_scaling = figures(&import(&original, &[]));
    let before = std::fs::read(out.join("mlp-int8.bin")).unwrap();
    let bare = import(&raw, &[]);
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert_eq!(bare.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--input-mean") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(out.join("mlp-int8.bin")).unwrap(), before);
    let flagged = figures(&import(
        &file,
        &["--input-mean", "0.1307", "--input-std", "0.3081"],
    ));
    assert_eq!(
        imported(&out)["input_scaling"].as_array().map(Vec::len),
        Some(1),
        "the report names the folded scaling"
    );
    for ((a, b), (key, bound)) in before_scaling
        .into_iter()
        .zip(flagged)
        .zip([("f32", 0.0001), ("int8", 0.001)])
    {
        assert!((a - b).abs() <= bound, "{key}: {a} against {b}");
    }
}
