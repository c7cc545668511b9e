//! Prepares what the firmware embeds, in `OUT_DIR`:
//!
//! - `memory.x` for the chosen platform, and the linker arguments;
//! - `model.bin`: the model, `model/mlp-int8.bin` (`model/mlp-int4.bin` on the 256 KB micro:bit)
//!   or the file named by `FIRMWARE_MODEL`, int8 or int4 (the `model_int4` cfg tells the firmware
//!   which);
//! - `images.rle`, `labels.bin`: the first `FIRMWARE_IMAGES` (default 200; 180 on the micro:bit)
//!   MNIST test digits, the images run-length encoded (see `decode` in main.rs): about a quarter
//!   of their 784 bytes;
//! - `expected.bin`: the host's predictions for those digits, computed here by infer-core,
//!   which the firmware must reproduce image for image.

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use infer_core::format::{ModelKind, peek_kind};
use infer_core::{INPUTS, Int4Model, Int8Model};

const DEFAULT_IMAGES: usize = 200;
/// Test digits beside the int4 model in the micro:bit's 256 KB.
const MICROBIT_IMAGES: usize = 180;

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);

    // Armv6-M (Cortex-M0/M0+) has no `hint #n` encodings for the measurement markers.
    println!("cargo::rustc-check-cfg=cfg(armv6m)");
    if env::var("TARGET").is_ok_and(|t| t.starts_with("thumbv6m")) {
        println!("cargo::rustc-cfg=armv6m");
    }

    println!("cargo::rustc-check-cfg=cfg(model_int4)");
    let feature = |name: &str| env::var_os(format!("CARGO_FEATURE_{name}")).is_some();
    let (qemu, board, microbit) = (feature("QEMU"), feature("NRF52840"), feature("MICROBIT"));
    let memory = match (qemu, board, microbit) {
        (true, false, false) => "memory-qemu.x",
        (false, true, false) => "memory-nrf52840.x",
        (false, false, true) => "memory-microbit.x",
        _ => return Ok(()), // main.rs says what is wrong with a compile_error!
    };
    let target = env::var("TARGET").unwrap_or_default();
    if microbit && !target.starts_with("thumbv6m") {
        return Err(format!(
            "the micro:bit's nRF51822 is a Cortex-M0: build it for thumbv6m-none-eabi, not \
             {target} (`cargo microbit`, or add `--target thumbv6m-none-eabi`)"
        ));
    }
    copy(&here.join(memory), &out.join("memory.x"))?;
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=--nmagic");
    println!("cargo:rustc-link-arg=-Tlink.x");
    if board {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }
    println!("cargo:rerun-if-changed={memory}");

    println!("cargo:rerun-if-env-changed=FIRMWARE_MODEL");
    let default_model = if microbit {
        "model/mlp-int4.bin"
    } else {
        "model/mlp-int8.bin"
    };
    let model_path = env::var_os("FIRMWARE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join(default_model));
    println!("cargo:rerun-if-changed={}", model_path.display());
    let model = fs::read(&model_path).map_err(|e| format!("{}: {e}", model_path.display()))?;
    fs::write(out.join("model.bin"), &model).map_err(|e| e.to_string())?;

    println!("cargo:rerun-if-env-changed=FIRMWARE_IMAGES");
    let count = match env::var("FIRMWARE_IMAGES") {
        Ok(v) => v
            .parse::<usize>()
            .map_err(|e| format!("FIRMWARE_IMAGES={v}: {e}"))?,
        Err(_) if microbit => MICROBIT_IMAGES,
        Err(_) => DEFAULT_IMAGES,
    };
    let data = here.join("../data/mnist");
    let images = read_idx(&data.join("t10k-images-idx3-ubyte.gz"), 16, count * INPUTS)?;
    let labels = read_idx(&data.join("t10k-labels-idx1-ubyte.gz"), 8, count)?;

    // The host's answers, by the same crate the firmware runs (here on the host's kernel).
    let aligned = Aligned::new(&model);
    let int4 = peek_kind(&model) == Ok(ModelKind::Int4);
    if int4 {
        println!("cargo::rustc-cfg=model_int4");
    }
    let digits = images.as_chunks::<INPUTS>().0;
    let predicted = if int4 {
        Int4Model::from_bytes(aligned.bytes()).map(|m| {
            digits
                .iter()
                .map(|d| m.predict(d).class)
                .collect::<Vec<u8>>()
        })
    } else {
        Int8Model::from_bytes(aligned.bytes())
            .map(|m| digits.iter().map(|d| m.predict(d).class).collect())
    };
    let expected: Vec<u8> = match predicted {
        Ok(classes) => classes,
        Err(e) => {
            // Still build: the firmware validates the model at boot and reports this itself.
            println!(
                "cargo:warning={} is not a valid model ({e}); the firmware will refuse it at boot",
                model_path.display()
            );
            vec![u8::MAX; count]
        }
    };
    let encoded: Vec<u8> = digits.iter().flat_map(|d| run_length(d)).collect();
    fs::write(out.join("images.rle"), &encoded).map_err(|e| e.to_string())?;
    fs::write(out.join("labels.bin"), &labels).map_err(|e| e.to_string())?;
    fs::write(out.join("expected.bin"), &expected).map_err(|e| e.to_string())?;
    Ok(())
}

/// One image as runs: `zeros, count, count pixel bytes`, each length at most 255, until the
/// 784 pixels are covered (the firmware's `decode` reads it back).
fn run_length(image: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < image.len() {
        let zeros = image[p..].iter().take(255).take_while(|&&v| v == 0).count();
        p += zeros;
        let ink = image[p..].iter().take(255).take_while(|&&v| v != 0).count();
        out.extend([zeros as u8, ink as u8]);
        out.extend_from_slice(&image[p..p + ink]);
        p += ink;
    }
    out
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", from.display()))
}

/// The first `len` data bytes of a gzip-compressed IDX file whose header is `header` bytes.
fn read_idx(path: &Path, header: usize, len: usize) -> Result<Vec<u8>, String> {
    println!("cargo:rerun-if-changed={}", path.display());
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::with_capacity(header + len);
    flate2::read::GzDecoder::new(file)
        .take((header + len) as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < header + len {
        return Err(format!("{}: fewer than {len} data bytes", path.display()));
    }
    Ok(bytes.split_off(header))
}

/// A copy of the model in aligned memory, as `Int8Model::from_bytes` requires.
struct Aligned {
    words: Vec<u128>,
    len: usize,
}

impl Aligned {
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
