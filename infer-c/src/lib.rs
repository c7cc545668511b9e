//! infer-core for C: validate a model file's bytes once, then classify inputs with them — int8,
//! int4 and f32 models, no heap, no panic, every pointer checked for NULL.
//!
//! Built as `libinfer.a` (`cargo build -p infer-c --release`, or for a Cortex-M
//! `--target thumbv7em-none-eabihf --no-default-features`); the header `include/infer.h` is
//! generated from this file by cbindgen (a unit test fails when it is stale; `INFER_C_BLESS=1`
//! rewrites it).
//!
//! ```c
//! #include "infer.h"
//! #include "mlp_int8.h"          /* trainer export out/mlp-int8.bin --format c -o mlp_int8.h */
//!
//! InferModel model;              /* a few KB of storage, no heap */
//! char why[128];
//! if (infer_model_load(&model, mlp_int8, mlp_int8_len, why, sizeof why) != INFER_STATUS_OK) {
//!     puts(why);                 /* e.g. "CRC-32 mismatch: …" */
//! }
//! uint8_t digit;
//! infer_classify(&model, pixels, 784, &digit);
//! ```
//!
//! The model keeps pointing at the bytes it was loaded from: they must stay in place, unchanged,
//! for as long as the model is used (a `const` array in flash does).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

use core::ffi::c_char;
use core::fmt::Write;
use core::mem::{align_of, size_of};

use infer_core::{AnyModel, FormatError, KernelError};

/// The 8-byte words of storage an `InferModel` keeps for the library (a validated model is a few
/// hundred bytes of views into the file's bytes; this leaves room for any build).
pub const INFER_MODEL_WORDS: usize = 256;

/// The most classes a model can have: the length of `InferPrediction`'s arrays.
pub const INFER_MAX_CLASSES: usize = 64;

const _: () = {
    assert!(size_of::<AnyModel<'static>>() <= INFER_MODEL_WORDS * 8);
    assert!(align_of::<AnyModel<'static>>() <= align_of::<u64>());
    assert!(INFER_MAX_CLASSES == infer_core::format::MAX_CLASSES);
};

/// Marks an `InferModel` that holds a validated model.
const LOADED: u32 = 0x494e_4652; // "INFR"

/// A validated model: storage for the library, opaque to C. Declare one (static, global or on
/// the stack) and fill it with `infer_model_load`; every other function refuses one that was
/// not loaded (`INFER_STATUS_NOT_LOADED`) — zero-initialize it, or load it before use.
#[repr(C)]
pub struct InferModel {
    loaded: u32,
    storage: [u64; INFER_MODEL_WORDS],
}

/// What a function says: `INFER_STATUS_OK` (0) or why it refused.
/// `infer_status_message` names each in English.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferStatus {
    /// Done.
    Ok = 0,
    /// A pointer argument was NULL.
    NullArgument = 1,
    /// The `InferModel` was not filled by a successful `infer_model_load`.
    NotLoaded = 2,
    /// Fewer bytes than the file's header and sections need.
    Truncated = 3,
    /// Not an infer-core model file (an ONNX file? convert it with `trainer import`).
    BadMagic = 4,
    /// A format version this library does not read (re-export the model with this release).
    UnsupportedVersion = 5,
    /// The file's CRC-32 does not match its contents: corrupted.
    CrcMismatch = 6,
    /// The bytes are not 4-byte aligned in memory (the exported C array is 16-byte aligned).
    Misaligned = 7,
    /// A layer or class count wider than this build supports.
    TooWide = 8,
    /// Weights of a kind this build leaves out.
    NotCompiled = 9,
    /// Any other inconsistency in the file (its sections, scales, weights or shape).
    InvalidModel = 10,
    /// The input is not as long as the model's inputs.
    InputLength = 11,
}

impl From<&FormatError> for InferStatus {
    fn from(e: &FormatError) -> Self {
        match e {
            FormatError::Truncated { .. } => InferStatus::Truncated,
            FormatError::BadMagic => InferStatus::BadMagic,
            FormatError::UnsupportedVersion(_) => InferStatus::UnsupportedVersion,
            FormatError::CrcMismatch { .. } => InferStatus::CrcMismatch,
            FormatError::Misaligned { .. } => InferStatus::Misaligned,
            FormatError::TooWide { .. } | FormatError::TooManyClasses { .. } => {
                InferStatus::TooWide
            }
            FormatError::KindLeftOut(_) => InferStatus::NotCompiled,
            _ => InferStatus::InvalidModel,
        }
    }
}

impl From<KernelError> for InferStatus {
    fn from(e: KernelError) -> Self {
        match e {
            KernelError::InputLength { .. } => InferStatus::InputLength,
            // A validated model has the shapes its kernels take, and the kernel is the best
            // available one: nothing else can happen.
            _ => InferStatus::InvalidModel,
        }
    }
}

/// One input's answer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct InferPrediction {
    /// The class: the largest logit's (the lowest class on a tie).
    pub class_index: u8,
    /// How many entries of `probabilities` and `logits` are the model's: its class count.
    pub classes: u8,
    /// The softmax of the logits, for classes `0 .. classes`; 0 beyond.
    pub probabilities: [f32; INFER_MAX_CLASSES],
    /// The logits in real units (an integer model's accumulators times their scale).
    pub logits: [f32; INFER_MAX_CLASSES],
}

/// Validates `len` bytes at `bytes` as a model file (integer or f32, told apart by its header)
/// and fills `model` with it. On failure the status says why, and `message` (if not NULL)
/// receives the library's sentence, with figures, NUL-terminated, truncated to `message_len`.
///
/// # Safety
/// `bytes` must point to `len` readable bytes that stay unchanged while `model` is used;
/// `model` to writable storage for an `InferModel`; `message` to `message_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn infer_model_load(
    model: *mut InferModel,
    bytes: *const u8,
    len: usize,
    message: *mut c_char,
    message_len: usize,
) -> InferStatus {
    // SAFETY: the caller's promise on `message` / `message_len`.
    let mut say = unsafe { Message::new(message, message_len) };
    if model.is_null() || bytes.is_null() {
        let _ = say.write_str("a NULL model or bytes pointer");
        return InferStatus::NullArgument;
    }
    // SAFETY: the caller's promise: `len` readable bytes, unchanged while the model is used.
    let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(bytes, len) };
    // SAFETY: `model` is non-null and points to writable storage for an `InferModel`.
    let model = unsafe { &mut *model };
    model.loaded = 0;
    match AnyModel::from_bytes(bytes) {
        Ok(loaded) => {
            // SAFETY: the storage is large and aligned enough (checked above at compile time);
            // what it held before is plain words, nothing to drop.
            unsafe {
                model
                    .storage
                    .as_mut_ptr()
                    .cast::<AnyModel<'static>>()
                    .write(loaded)
            };
            model.loaded = LOADED;
            InferStatus::Ok
        }
        Err(e) => {
            let _ = write!(say, "{e}");
            InferStatus::from(&e)
        }
    }
}

/// The model in `model`, if it was loaded.
///
/// # Safety
/// `model` is NULL or points to an `InferModel`.
unsafe fn loaded<'m>(model: *const InferModel) -> Result<&'m AnyModel<'static>, InferStatus> {
    // SAFETY: the caller's promise.
    let model = unsafe { model.as_ref() }.ok_or(InferStatus::NullArgument)?;
    if model.loaded != LOADED {
        return Err(InferStatus::NotLoaded);
    }
    // SAFETY: `loaded` is set only after an `AnyModel` was written into the storage.
    Ok(unsafe { &*model.storage.as_ptr().cast::<AnyModel<'static>>() })
}

/// `len` bytes at `input`.
///
/// # Safety
/// `input` is NULL or points to `len` readable bytes.
unsafe fn input<'i>(input: *const u8, len: usize) -> Result<&'i [u8], InferStatus> {
    if input.is_null() {
        return Err(InferStatus::NullArgument);
    }
    // SAFETY: the caller's promise.
    Ok(unsafe { core::slice::from_raw_parts(input, len) })
}

/// The number of inputs the model takes (784 for MNIST's 28 × 28 pixels); 0 for a model not
/// loaded.
///
/// # Safety
/// `model` is NULL or points to an `InferModel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn infer_model_inputs(model: *const InferModel) -> usize {
    // SAFETY: the caller's promise.
    unsafe { loaded(model) }.map_or(0, |m| m.inputs())
}

/// The number of classes the model tells apart; 0 for a model not loaded.
///
/// # Safety
/// `model` is NULL or points to an `InferModel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn infer_model_classes(model: *const InferModel) -> usize {
    // SAFETY: the caller's promise.
    unsafe { loaded(model) }.map_or(0, |m| m.classes())
}

/// The class of one input of `len` bytes (pixels 0–255, row by row) into `class_index`: the
/// cheapest call, the integer forward pass and nothing else for an integer model.
///
/// # Safety
/// `model` is NULL or points to an `InferModel`; `input` is NULL or points to `len` readable
/// bytes; `class_index` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn infer_classify(
    model: *const InferModel,
    input: *const u8,
    len: usize,
    class_index: *mut u8,
) -> InferStatus {
    // SAFETY: the caller's promises, passed on.
    let run = || unsafe {
        let class = loaded(model)?.classify(self::input(input, len)?)?;
        *class_index.as_mut().ok_or(InferStatus::NullArgument)? = class;
        Ok::<_, InferStatus>(())
    };
    run().err().unwrap_or(InferStatus::Ok)
}

/// One input's class, probabilities and logits into `prediction`.
///
/// # Safety
/// As `infer_classify`, with `prediction` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn infer_predict(
    model: *const InferModel,
    input: *const u8,
    len: usize,
    prediction: *mut InferPrediction,
) -> InferStatus {
    // SAFETY: the caller's promises, passed on.
    let run = || unsafe {
        let answer = loaded(model)?.answer(self::input(input, len)?)?;
        let out = prediction.as_mut().ok_or(InferStatus::NullArgument)?;
        out.class_index = answer.class;
        out.classes = answer.logits.len() as u8;
        out.probabilities = [0.0; INFER_MAX_CLASSES];
        out.logits = [0.0; INFER_MAX_CLASSES];
        out.probabilities[..answer.probabilities.len()].copy_from_slice(&answer.probabilities);
        out.logits[..answer.logits.len()].copy_from_slice(&answer.logits);
        Ok::<_, InferStatus>(())
    };
    run().err().unwrap_or(InferStatus::Ok)
}

/// A status in English, as a static NUL-terminated string ("unknown status" for a value that
/// is none of them).
#[unsafe(no_mangle)]
pub extern "C" fn infer_status_message(status: i32) -> *const c_char {
    let text: &'static core::ffi::CStr = match status {
        0 => c"ok",
        1 => c"a pointer argument is NULL",
        2 => c"the model was not loaded (infer_model_load did not succeed on it)",
        3 => c"the model file is truncated",
        4 => c"not an infer-core model file (an ONNX file? convert it with `trainer import`)",
        5 => c"a model format version this library does not read: re-export the model",
        6 => c"the model file is corrupted (its CRC-32 does not match)",
        7 => c"the model bytes are not 4-byte aligned in memory",
        8 => c"the model is wider than this build supports",
        9 => c"the model has weights of a kind this build leaves out",
        10 => c"the model file is inconsistent (a section, scale, weight or width)",
        11 => c"the input's length is not the model's number of inputs",
        _ => c"unknown status",
    };
    text.as_ptr()
}

/// Writes the name of the kernel the library runs on this CPU ("avx512-vnni", "cortex-m-dsp",
/// …), NUL-terminated and truncated to `len` bytes, into `name`; returns the name's full length.
///
/// # Safety
/// `name` is NULL (then only the length is returned) or points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn infer_kernel_name(name: *mut c_char, len: usize) -> usize {
    let kernel = infer_core::Kernel::best().name();
    // SAFETY: the caller's promise.
    let _ = unsafe { Message::new(name, len) }.write_str(kernel);
    kernel.len()
}

/// A C string buffer written through `core::fmt`: truncated at a character boundary to leave
/// room for the NUL, always terminated (nothing is written to a NULL or empty buffer).
struct Message<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Message<'_> {
    /// # Safety
    /// `ptr` is NULL or points to `len` writable bytes.
    unsafe fn new(ptr: *mut c_char, len: usize) -> Self {
        let buf: &mut [u8] = if ptr.is_null() || len == 0 {
            &mut []
        } else {
            // SAFETY: the caller's promise.
            unsafe { core::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) }
        };
        if let Some(first) = buf.first_mut() {
            *first = 0;
        }
        Self { buf, at: 0 }
    }
}

impl Write for Message<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len().saturating_sub(self.at + 1);
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        if let Some(dst) = self.buf.get_mut(self.at..self.at + n) {
            dst.copy_from_slice(&s.as_bytes()[..n]);
            self.at += n;
        }
        if let Some(end) = self.buf.get_mut(self.at) {
            *end = 0;
        }
        Ok(())
    }
}

/// Without std, a panic (none of this library's code can panic: every index is checked) stops.
#[cfg(all(not(feature = "std"), not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_what_cbindgen_makes_of_this_crate() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
        let mut made = Vec::new();
        cbindgen::Builder::new()
            .with_crate(dir)
            .with_config(config)
            .generate()
            .unwrap()
            .write(&mut made);
        let path = format!("{dir}/include/infer.h");
        if std::env::var_os("INFER_C_BLESS").is_some() {
            std::fs::write(&path, &made).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == made,
            "{path} is stale: run `INFER_C_BLESS=1 cargo test -p infer-c` and commit it"
        );
    }

    #[test]
    fn every_status_has_its_own_message() {
        let messages: Vec<_> = (0..=11)
            .map(|s| {
                // SAFETY: a static NUL-terminated string.
                unsafe { core::ffi::CStr::from_ptr(infer_status_message(s)) }
            })
            .collect();
        for (i, m) in messages.iter().enumerate() {
            assert!(!messages[..i].contains(m), "{m:?} twice");
            assert_ne!(m.to_bytes(), b"unknown status");
        }
        // SAFETY: as above.
        let unknown = unsafe { core::ffi::CStr::from_ptr(infer_status_message(-1)) };
        assert_eq!(unknown.to_bytes(), b"unknown status");
    }

    #[test]
    fn messages_are_truncated_at_a_character_and_terminated() {
        // "→" is 3 bytes: six bytes hold "ab→" and the NUL, five only "ab" and the NUL.
        for (size, expected) in [(6, "ab→\0"), (5, "ab\0"), (1, "\0")] {
            let mut buf = [0x55u8; 6];
            // SAFETY: `size` ≤ 6 writable bytes.
            let mut m = unsafe { Message::new(buf.as_mut_ptr().cast(), size) };
            m.write_str("ab").unwrap();
            m.write_str("→cd").unwrap();
            assert_eq!(&buf[..expected.len()], expected.as_bytes(), "{size}");
        }
        // SAFETY: a NULL buffer takes nothing.
        let mut none = unsafe { Message::new(core::ptr::null_mut(), 10) };
        none.write_str("anything").unwrap();
    }
}
