//! From the trained network to infer-core: the files written by the trainer load, every kernel
//! gives identical int8 results on real digits, the f32 file reproduces the trainer's forward,
//! and a model exported as a C header compiles to the same bytes.

use std::path::Path;

use infer_core::{F32Model, Kernel, QuantModel};
use trainer::mlp::network_inputs;
use trainer::output::AlignedBytes;
use trainer::quantize::{Width, encode_f32, encode_quant, quantize};
use trainer::sparse::SparseBatch;

mod common;

use common::{mnist, tutorial_net};

#[test]
fn trained_model_round_trips_through_infer_core() {
    let mnist = mnist();
    let net = tutorial_net(&mnist.train.head(20_000), 2);
    let test = mnist.test.head(1000);
    let images = test.images.as_chunks::<784>().0;

    let int8_file = AlignedBytes::new(
        &encode_quant(&quantize(&net, &mnist.train.head(2000), Width::Int8).unwrap()).unwrap(),
    );
    assert!(
        int8_file.as_bytes().len() <= 420_000,
        "{} bytes",
        int8_file.as_bytes().len()
    );
    let int8 = QuantModel::from_bytes(int8_file.as_bytes()).unwrap();

    let f32_file = AlignedBytes::new(&encode_f32(&net).unwrap());
    let f32_model = F32Model::from_bytes(f32_file.as_bytes()).unwrap();

    // The trainer's own logits for the same images.
    let inputs = network_inputs(&test);
    let all: Vec<usize> = (0..test.len()).collect();
    let trainer_logits = net.forward(&SparseBatch::new(inputs.gather(&all)));

    let kernels: Vec<Kernel> = Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect();
    assert!(kernels.contains(&Kernel::Scalar));
    let (mut int8_correct, mut f32_correct, mut agree) = (0, 0, 0);
    for (i, (image, &label)) in images.iter().zip(&test.labels).enumerate() {
        let reference = int8.predict_with(Kernel::Scalar, image).unwrap();
        for &kernel in &kernels {
            assert_eq!(
                int8.predict_with(kernel, image).unwrap(),
                reference,
                "{kernel}, image {i}"
            );
        }

        let logits = f32_model.logits(image).unwrap();
        for (c, &l) in logits.iter().enumerate() {
            let t = trainer_logits[(c, i)];
            assert!(
                (l - t).abs() <= 1e-4 * (1.0 + t.abs()),
                "image {i} class {c}: {l} vs {t}"
            );
        }
        let f32_class = f32_model.predict(image).unwrap();
        assert_eq!(
            f32_class as usize,
            trainer_logits.column(i).argmax().0,
            "image {i}"
        );

        int8_correct += usize::from(reference.class == label);
        f32_correct += usize::from(f32_class == label);
        agree += usize::from(reference.class == f32_class);
    }
    // The batch path (four images per pass on AVX-512 VNNI) gives the same answers; 999 images
    // leave a remainder for the single-image path.
    let mut batch = vec![int8.predict(&images[0]).unwrap(); 999];
    int8.predict_batch(images[..999].as_flattened(), &mut batch)
        .unwrap();
    for (i, (image, p)) in images.iter().zip(&batch).enumerate() {
        assert_eq!(
            *p,
            int8.predict(image).unwrap(),
            "batch prediction of image {i}"
        );
    }

    assert!(f32_correct > 900, "f32 {f32_correct}/1000");
    assert!(
        int8_correct + 10 >= f32_correct,
        "int8 {int8_correct} vs f32 {f32_correct}"
    );
    assert!(agree >= 980, "int8 and f32 agree on {agree}/1000");
}

#[test]
fn a_c_header_export_compiles_and_holds_the_file_byte_for_byte() {
    let dir = common::temp_dir("export-c");
    let header = dir.join("mlp-int4.h");
    let model = export_int4("c", &header);
    let text = std::fs::read_to_string(&header).unwrap();
    let bytes = std::fs::read(&model).unwrap();
    // The array's bytes, read back from the text, are the file's.
    let body = &text[text.find("] = {").unwrap()..text.find("};").unwrap()];
    let parsed: Vec<u8> = body
        .split("0x")
        .skip(1)
        .map(|h| u8::from_str_radix(&h[..2], 16).unwrap())
        .collect();
    assert_eq!(parsed, bytes);
    assert!(text.contains(&format!(
        "static const size_t mlp_int4_len = {};",
        bytes.len()
    )));

    // A C compiler takes it, with the array 16-byte aligned and of the file's length.
    let source = dir.join("use.c");
    std::fs::write(
        &source,
        format!(
            "#include \"mlp-int4.h\"\n\
             _Static_assert(sizeof(mlp_int4) == {}, \"length\");\n\
             _Static_assert(__alignof__(mlp_int4) >= 16, \"alignment\");\n\
             const uint8_t *model(size_t *len) {{ *len = mlp_int4_len; return mlp_int4; }}\n",
            bytes.len()
        ),
    )
    .unwrap();
    // C11 with its own assertions; C99 and C++11 (`c++`, where installed) with a C99 one; all
    // strict.
    let c99 = dir.join("use99.c");
    std::fs::write(
        &c99,
        format!(
            "#include \"mlp-int4.h\"\n\
             typedef char length_is_right[sizeof(mlp_int4) == {} ? 1 : -1];\n\
             typedef char aligned_to_16[__alignof__(mlp_int4) >= 16 ? 1 : -1];\n\
             const uint8_t *model(size_t *len) {{ *len = mlp_int4_len; return mlp_int4; }}\n",
            bytes.len()
        ),
    )
    .unwrap();
    let strict = ["-Wall", "-Wextra", "-pedantic", "-Werror", "-c", "-o"];
    for (compiler, std, source) in [
        ("cc", "-std=c11", &source),
        ("cc", "-std=c99", &c99),
        ("c++", "-std=c++11", &c99),
    ] {
        let mut command = std::process::Command::new(compiler);
        if compiler == "c++" {
            command.args(["-x", "c++"]);
        }
        let out = command
            .arg(std)
            .args(strict)
            .arg(dir.join("use.o"))
            .arg(source)
            .output();
        match out {
            Ok(out) => common::succeeded(&out),
            Err(_) if compiler == "c++" => eprintln!("no C++ compiler here: C++11 not checked"),
            Err(e) => panic!("a C compiler (`cc`), as Rust's own linking needs: {e}"),
        }
    }
}

/// `inspect` of an exported ONNX file says which command reads it, whatever its name.
#[test]
fn an_onnx_file_given_as_a_model_points_to_import() {
    let dir = common::temp_dir("export-onnx-hint");
    let onnx = dir.join("model.bin");
    export_int4("onnx", &onnx);
    let inspect = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("inspect")
        .arg(&onnx)
        .output()
        .unwrap();
    assert_eq!(inspect.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&inspect.stderr);
    assert!(
        stderr.contains("looks like an ONNX model: `trainer import"),
        "{stderr}"
    );
}

/// Exports the committed int4 model in `format` to `out`; the model's path.
fn export_int4(format: &str, out: &Path) -> std::path::PathBuf {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-example/model/mlp-int4.bin");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["export", model.to_str().unwrap(), "--format", format, "-o"])
        .arg(out)
        .output()
        .unwrap();
    common::succeeded(&run);
    model
}

/// A hidden unit pruned away entirely (every weight zero, as `--density 0.1` leaves some) is
/// quantized like any other, in both widths: its weights stay zero, the file loads, and the int8
/// model still answers as the network does.
#[test]
fn a_unit_whose_weights_are_all_zero_quantizes() {
    let mnist = mnist();
    let mut net = tutorial_net(&mnist.train.head(5_000), 1);
    let dead = 16;
    net.w1.row_mut(dead).fill(0.0);
    let test = mnist.test.head(300);
    for width in [Width::Int8, Width::Int4] {
        let q = quantize(&net, &mnist.train.head(1000), width)
            .unwrap_or_else(|e| panic!("{width:?}: {e:#}"));
        let file = AlignedBytes::new(&encode_quant(&q).unwrap());
        let model = QuantModel::from_bytes(file.as_bytes()).unwrap();
        let first = &model.layers()[0];
        assert!(
            (0..784).all(|k| first.weight(dead, k) == Some(0)),
            "{width:?}"
        );
        if width == Width::Int8 {
            let inputs = network_inputs(&test);
            let all: Vec<usize> = (0..test.len()).collect();
            let logits = net.forward(&SparseBatch::new(inputs.gather(&all)));
            let agree = (0..test.len())
                .filter(|&i| {
                    let l = logits.column(i);
                    let class = (0..10).fold(0, |b, c| if l[c] > l[b] { c } else { b });
                    usize::from(model.predict(test.image(i)).unwrap().class) == class
                })
                .count();
            assert!(agree >= 295, "int8 agrees with f32 on {agree}/300");
        }
    }
}
