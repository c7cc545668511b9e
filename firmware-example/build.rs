//! Prepares what the firmware embeds, in `OUT_DIR`, for the board chosen by its feature:
//!
//! - the board: `boards/<feature>.toml` declares it (see `boards/README.md`); from it come
//!   `memory.x`, `board.rs` (its description and clock, for the firmware), the cfgs that pick its
//!   I/O, timer and boot-time needs, and `qemu-board.txt`, the QEMU command `qemu-run` starts the
//!   ELF with (embedded in the ELF, so that each ELF carries its own board's);
//! - `model.bin`: the board's model (`model/mlp-int8.bin`, or `mlp-int4.bin` where flash is
//!   short) or the file named by `FIRMWARE_MODEL`, any chain of int8 and int4 layers taking 784
//!   inputs; `model_shape.rs`, its inputs, widest hidden layer and layer kinds, which bound the
//!   firmware's forward pass (the walks of other kinds are left out of its flash);
//! - `images.rle`, `labels.bin`: the first `FIRMWARE_IMAGES` (default: the board's `digits`)
//!   MNIST test digits, the images run-length encoded (see `decode` in main.rs): about a quarter
//!   of their 784 bytes;
//! - `expected.bin`: the host's predictions for those digits, computed here by infer-core,
//!   which the firmware must reproduce image for image.
//!
//! It stops with a message naming the sizes when the model and digits cannot fit the board's
//! flash, or its RAM the stack.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use infer_core::QuantModel;
use infer_core::format::peek;

/// What the firmware's code and constants take besides the model and the digits (measured:
/// 13.2 KB on a Cortex-M0, 15 KB on a Cortex-M4): the flash check's allowance, which the linker
/// then makes exact.
const CODE_BUDGET: usize = 16 * 1024;
/// Peak stack of an inference with its gathered lists, and the decoded digit (measured: 5.1 KB).
const STACK_BUDGET: usize = 7 * 1024;

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// A board's declaration, `boards/<name>.toml`.
struct Board {
    name: String,
    description: String,
    /// The first is the board's own; the others run on it too (an Armv6-M build on a Cortex-M4).
    targets: Vec<String>,
    flash: (u64, u64),
    ram: (u64, u64),
    io: String,
    timer: String,
    systick_hz: u64,
    qemu: Option<String>,
    approtect_open: bool,
    boot2: Option<(u64, u64)>,
    model: String,
    digits: usize,
}

impl Board {
    /// The board whose feature is on; exactly one must be.
    fn chosen(here: &Path) -> Result<Board, String> {
        let mut names: Vec<String> = fs::read_dir(here.join("boards"))
            .map_err(|e| format!("boards/: {e}"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".toml").map(str::to_owned)
            })
            .collect();
        names.sort();
        let on: Vec<&String> = names
            .iter()
            .filter(|n| {
                let var = format!("CARGO_FEATURE_{}", n.to_uppercase().replace('-', "_"));
                env::var_os(var).is_some()
            })
            .collect();
        let [name] = on.as_slice() else {
            return Err(format!(
                "choose one board feature of {} (found {}): e.g. `--no-default-features \
                 --features netduinoplus2`",
                names.join(", "),
                if on.is_empty() {
                    "none".into()
                } else {
                    format!("{on:?}")
                }
            ));
        };
        let path = here.join("boards").join(format!("{name}.toml"));
        println!("cargo:rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Board::parse(name, &text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(name: &str, text: &str) -> Result<Board, String> {
        let t: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let string = |key: &str| -> Result<String, String> {
            t.get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or(format!("`{key}` (a string) is missing"))
        };
        let region = |v: Option<&toml::Value>, key: &str| -> Result<(u64, u64), String> {
            let get = |field: &str| {
                v.and_then(|r| r.get(field))
                    .and_then(|x| x.as_integer())
                    .and_then(|x| u64::try_from(x).ok())
                    .ok_or(format!("`{key}.{field}` (a number) is missing"))
            };
            Ok((get("origin")?, get("length")?))
        };
        let timer = t.get("timer");
        let kind = timer
            .and_then(|t| t.get("kind"))
            .and_then(|k| k.as_str())
            .unwrap_or("none")
            .to_owned();
        if !["systick", "dwt", "none"].contains(&kind.as_str()) {
            return Err(format!("timer kind `{kind}` is not systick, dwt or none"));
        }
        let io = string("io")?;
        if !["semihosting", "rtt"].contains(&io.as_str()) {
            return Err(format!("io `{io}` is not semihosting or rtt"));
        }
        Ok(Board {
            name: name.to_owned(),
            description: string("description")?,
            targets: t
                .get("targets")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .filter(|a: &Vec<String>| !a.is_empty())
                .ok_or("`targets` (a list of target triples) is missing")?,
            flash: region(t.get("flash"), "flash")?,
            ram: region(t.get("ram"), "ram")?,
            io,
            systick_hz: timer
                .and_then(|t| t.get("hz"))
                .and_then(|h| h.as_integer())
                .and_then(|h| u64::try_from(h).ok())
                .unwrap_or(0),
            timer: kind,
            qemu: t.get("qemu").and_then(|q| q.as_str()).map(str::to_owned),
            approtect_open: t.get("approtect").and_then(|a| a.as_str()) == Some("open"),
            boot2: match t.get("boot2") {
                Some(b) => Some(region(Some(b), "boot2")?),
                None => None,
            },
            model: string("model")?,
            digits: t
                .get("digits")
                .and_then(|d| d.as_integer())
                .and_then(|d| usize::try_from(d).ok())
                .ok_or("`digits` (a number) is missing")?,
        })
    }

    /// The linker's memory map.
    fn memory_x(&self) -> String {
        let mut x = format!(
            "/* {} (generated from boards/{}.toml) */\nMEMORY\n{{\n  FLASH : ORIGIN = {:#x}, \
             LENGTH = {:#x}\n  RAM : ORIGIN = {:#x}, LENGTH = {:#x}\n",
            self.description, self.name, self.flash.0, self.flash.1, self.ram.0, self.ram.1
        );
        if let Some((origin, length)) = self.boot2 {
            x += &format!("  BOOT2 : ORIGIN = {origin:#x}, LENGTH = {length:#x}\n");
        }
        if self.approtect_open {
            x += "  UICR_APPROTECT : ORIGIN = 0x10001208, LENGTH = 4\n";
        }
        x += "}\n";
        if self.boot2.is_some() {
            x += "SECTIONS {\n  .boot2 ORIGIN(BOOT2) : { KEEP(*(.boot2)); } > BOOT2\n} \
                  INSERT BEFORE .text;\n";
        }
        if self.approtect_open {
            x += "SECTIONS {\n  .uicr_approtect : { KEEP(*(.uicr_approtect)); } > \
                  UICR_APPROTECT\n} INSERT AFTER .text;\n";
        }
        x
    }
}

fn run() -> Result<(), String> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let target = env::var("TARGET").unwrap_or_default();

    // Armv6-M (Cortex-M0/M0+) has no `hint #n` encodings for the measurement markers.
    println!("cargo::rustc-check-cfg=cfg(armv6m)");
    if target.starts_with("thumbv6m") {
        println!("cargo::rustc-cfg=armv6m");
    }
    for cfg in [
        "io_semihosting",
        "io_rtt",
        "timer_systick",
        "timer_dwt",
        "timer_none",
        "approtect_open",
        "boot2",
        "stray_interrupt",
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo:rerun-if-changed=boards");
    // A self-test of the fault path: FIRMWARE_FAULT=interrupt raises an interrupt nothing handles.
    println!("cargo:rerun-if-env-changed=FIRMWARE_FAULT");
    match env::var("FIRMWARE_FAULT").as_deref() {
        Ok("interrupt") => println!("cargo::rustc-cfg=stray_interrupt"),
        Ok(other) => {
            return Err(format!(
                "FIRMWARE_FAULT={other}: the only fault is `interrupt`"
            ));
        }
        Err(_) => {}
    }

    let board = Board::chosen(&here)?;
    if !board.targets.contains(&target) {
        return Err(format!(
            "the {} board is built for {}, not {target}: add `--target {}`",
            board.name,
            board.targets.join(" or "),
            board.targets[0]
        ));
    }
    println!("cargo::rustc-cfg=io_{}", board.io);
    println!("cargo::rustc-cfg=timer_{}", board.timer);
    if board.approtect_open {
        println!("cargo::rustc-cfg=approtect_open");
    }
    if board.boot2.is_some() {
        println!("cargo::rustc-cfg=boot2");
    }
    fs::write(out.join("memory.x"), board.memory_x()).map_err(|e| e.to_string())?;
    fs::write(
        out.join("board.rs"),
        format!(
            "/// What the board is.\npub const DESCRIPTION: &str = {:?};\n\
             /// SysTick's clock (0 where the board times otherwise).\n\
             pub const SYSTICK_HZ: u32 = {};\n",
            board.description, board.systick_hz
        ),
    )
    .map_err(|e| e.to_string())?;
    // `qemu-run` (cargo's runner) reads the board's QEMU command from the ELF, where the firmware
    // puts this line in a section that is not loaded (see platform.rs).
    let command = match &board.qemu {
        Some(options) => format!(
            "qemu-system-arm {options} -nographic -semihosting-config enable=on,target=native \
             -icount shift=0 -kernel"
        ),
        None => format!("none {}", board.name),
    };
    if command.contains(['"', ']', '\\', '\n']) {
        return Err(format!(
            "`qemu` may not hold quotes, brackets or backslashes: {command}"
        ));
    }
    fs::write(out.join("qemu-board.txt"), &command).map_err(|e| e.to_string())?;
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=--nmagic");
    println!("cargo:rustc-link-arg=-Tlink.x");
    if board.io == "rtt" {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }

    println!("cargo:rerun-if-env-changed=FIRMWARE_MODEL");
    let model_path = env::var_os("FIRMWARE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join(&board.model));
    println!("cargo:rerun-if-changed={}", model_path.display());
    let model = fs::read(&model_path).map_err(|e| format!("{}: {e}", model_path.display()))?;
    fs::write(out.join("model.bin"), &model).map_err(|e| e.to_string())?;

    println!("cargo:rerun-if-env-changed=FIRMWARE_IMAGES");
    let count = match env::var("FIRMWARE_IMAGES") {
        Ok(v) => v
            .parse::<usize>()
            .map_err(|e| format!("FIRMWARE_IMAGES={v}: {e}"))?,
        Err(_) => board.digits,
    };
    // The test digits through the trainer's reader: the same header, size and checksum checks.
    let data = here.join("../data/mnist");
    println!("cargo:rerun-if-changed={}", data.display());
    let test = mnist_idx::load_test(&data).map_err(|e| e.to_string())?;
    if count > test.len() {
        return Err(format!(
            "FIRMWARE_IMAGES={count}: the test set has {} digits",
            test.len()
        ));
    }
    // The model's shape, from its header (a header too damaged to read: the tutorial's, and the
    // firmware refuses the model at boot).
    let header = peek(&model).ok();
    let inputs = header.as_ref().map_or(784, |h| h.inputs());
    let max_width = header.as_ref().map_or(16, |h| h.max_hidden_width().max(16));
    let kind = header.as_ref().map_or("int8", |h| h.kind_name());
    // The layer kinds the forward pass is built for: the model's own, so that the walks of the
    // others stay out of flash.
    let kinds = header
        .as_ref()
        .map_or(infer_core::kinds::ALL, |h| h.kinds());
    if inputs != 784 {
        return Err(format!(
            "{} takes {inputs} inputs: the firmware embeds 28 × 28 MNIST digits",
            model_path.display()
        ));
    }
    fs::write(
        out.join("model_shape.rs"),
        format!(
            "/// Inputs of the embedded model.\nconst INPUTS: usize = {inputs};\n\
             /// Its widest hidden layer (rows padded to 16).\nconst MAX_WIDTH: usize = {max_width};\n\
             /// Its weights.\nconst MODEL_KIND: &str = {kind:?};\n\
             /// Its layer kinds (a set of `infer_core::kinds`).\nconst MODEL_KINDS: u8 = {kinds};\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let images = test.images[..count * inputs].to_vec();
    let labels = test.labels[..count].to_vec();

    // The host's answers, by the same crate the firmware runs (here on the host's kernel).
    let aligned = Aligned::new(&model);
    let digits: Vec<&[u8]> = images.chunks_exact(inputs).collect();
    let predicted = QuantModel::from_bytes(aligned.bytes()).map(|m| {
        digits
            .iter()
            .map(|d| m.predict(d).map_or(u8::MAX, |p| p.class))
            .collect::<Vec<u8>>()
    });
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
    // The guard rails: what is embedded must fit the board, with room for the code.
    let embedded = model.len() + encoded.len() + 2 * count;
    if embedded + CODE_BUDGET > board.flash.1 as usize {
        return Err(format!(
            "the model ({} bytes) and {count} test digits ({} bytes) do not fit the {} board's \
             {} bytes of flash with room for the code ({CODE_BUDGET} bytes): embed fewer digits \
             (FIRMWARE_IMAGES) or a smaller model (the int4 one, `--weights int4`)",
            model.len(),
            encoded.len() + 2 * count,
            board.name,
            board.flash.1
        ));
    }
    // The forward pass's two activation buffers grow with the model's widest layer.
    let stack = STACK_BUDGET + 2 * max_width;
    if stack > board.ram.1 as usize {
        return Err(format!(
            "the {} board's {} bytes of RAM cannot hold the {stack} bytes of stack an \
             inference of this model needs",
            board.name, board.ram.1
        ));
    }
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

/// A copy of the model in aligned memory, as `QuantModel::from_bytes` requires.
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
