//! The C interface as C sees it: `tests/c/host.c`, compiled by the host's C compiler (strict
//! C99) against `include/infer.h` and linked with this build's `libinfer.a`, refuses every wrong
//! call with its status, and answers MNIST test digits exactly as infer-core does in Rust — the
//! class, and every probability and logit to the bit — for int8, int4, mixed, pruned, two-layer
//! and f32 models. The header also compiles as C11 and C++11.

use std::path::{Path, PathBuf};
use std::process::Command;

use infer_core::AnyModel;
use infer_core::format::write::{F32LayerParts, f32 as write_f32, f32_len};

const DIGITS: usize = 100;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `libinfer.a` of this build: cargo leaves the test build's staticlib in `deps/` beside the
/// test binary, named with a hash; the newest is the one built from the sources under test.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let newest = std::fs::read_dir(deps)
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libinfer-") && name.ends_with(".a")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    newest
        .map(|e| e.path())
        .unwrap_or_else(|| panic!("no libinfer-*.a in {}", deps.display()))
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infer-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A small f32 model (784-32-10) of made-up weights: the committed models are all integer.
fn f32_model() -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32 - 0.5) * 0.2
    };
    let (w1, b1): (Vec<f32>, Vec<f32>) = ((0..784 * 32).map(|_| next()).collect(), vec![0.01; 32]);
    let (w2, b2): (Vec<f32>, Vec<f32>) = ((0..32 * 10).map(|_| next()).collect(), vec![0.0; 10]);
    let parts = [
        F32LayerParts {
            inputs: 784,
            outputs: 32,
            bias: &b1,
            w: &w1,
        },
        F32LayerParts {
            inputs: 32,
            outputs: 10,
            bias: &b2,
            w: &w2,
        },
    ];
    let mut bytes = vec![0; f32_len(&parts).unwrap()];
    write_f32(&parts, &mut bytes).unwrap();
    bytes
}

#[test]
fn c_programs_get_what_rust_gets() {
    let dir = temp_dir();
    let host = dir.join("host");
    run(Command::new("cc")
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-pedantic",
            "-Werror",
            "-O1",
        ])
        .arg("-I")
        .arg(manifest().join("include"))
        .arg(manifest().join("tests/c/host.c"))
        .arg(library())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&host));

    let data = manifest().join("../data/mnist");
    let test = mnist_idx::load_test(&data).unwrap();
    let digits = &test.images[..DIGITS * 784];
    let inputs = dir.join("digits.bin");
    std::fs::write(&inputs, digits).unwrap();

    let committed = manifest().join("../firmware-example/model");
    let mut models: Vec<(String, Vec<u8>)> = [
        "mlp-int8.bin",
        "mlp-int4.bin",
        "mlp-pruned20-int8.bin",
        "mlp-pruned15-int8.bin",
        "mlp-pruned15-int4.bin",
        "mlp-784-256-128-10-int4.bin",
    ]
    .iter()
    .map(|name| {
        (
            name.to_string(),
            std::fs::read(committed.join(name)).unwrap(),
        )
    })
    .collect();
    models.push(("f32 784-32-10".into(), f32_model()));

    for (name, bytes) in &models {
        let file = dir.join("model.bin");
        std::fs::write(&file, bytes).unwrap();
        let out = run(Command::new(&host)
            .arg(&file)
            .arg(&inputs)
            .arg(DIGITS.to_string()));
        let mut lines = out.lines();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.starts_with("model: 784 inputs, 10 classes, "),
            "{name}: {first}"
        );
        // The Rust side reads the same bytes from aligned memory.
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| {
                let mut w = [0; 4];
                w[..c.len()].copy_from_slice(c);
                u32::from_ne_bytes(w)
            })
            .collect();
        let aligned = &bytemuck_bytes(&words)[..bytes.len()];
        let model = AnyModel::from_bytes(aligned).unwrap();
        for (i, (line, digit)) in lines.zip(digits.chunks_exact(784)).enumerate() {
            let answer = model.answer(digit).unwrap();
            let mut expected = answer.class.to_string();
            for (p, l) in answer.probabilities.iter().zip(&answer.logits) {
                expected += &format!(" {:08x}:{:08x}", p.to_bits(), l.to_bits());
            }
            assert_eq!(line, expected, "{name}, digit {i}");
        }
        assert_eq!(out.lines().count(), DIGITS + 1, "{name}");
    }
}

/// `words` as bytes (native order: the file's bytes as they were).
fn bytemuck_bytes(words: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding; any byte of it is a valid u8; the length is exact.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), words.len() * 4) }
}

#[test]
fn the_header_compiles_as_strict_c11_and_cpp11() {
    let dir = temp_dir();
    let source = dir.join("uses-header.c");
    std::fs::write(
        &source,
        "#include \"infer.h\"\n\
         size_t storage(void) { return sizeof(InferModel) + sizeof(InferPrediction); }\n",
    )
    .unwrap();
    for (compiler, std) in [
        ("cc", "-std=c11"),
        ("cc", "-std=c99"),
        ("c++", "-std=c++11"),
    ] {
        let mut command = Command::new(compiler);
        if compiler == "c++" {
            command.args(["-x", "c++"]);
        }
        command
            .arg(std)
            .args(["-Wall", "-Wextra", "-pedantic", "-Werror", "-c", "-o"])
            .arg(dir.join("uses-header.o"))
            .arg("-I")
            .arg(manifest().join("include"))
            .arg(&source);
        match command.output() {
            Ok(out) => assert!(
                out.status.success(),
                "{compiler} {std}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) if compiler == "c++" => eprintln!("no C++ compiler here: C++11 not checked"),
            Err(e) => panic!("a C compiler (`cc`), as Rust's own linking needs: {e}"),
        }
    }
}
