//! The model in a browser page: [`infer_core`] and [`mnist_digit`] behind a handful of plain
//! WebAssembly exports the page's JavaScript calls (no bindings generator: numbers in, numbers
//! out, bytes through the module's memory).
//!
//! One page, one model at a time, one thread: the state is a thread-local the exports share.
//!
//! - [`model_buffer`]`(len)` gives the address where the page writes a model file's `len`
//!   bytes (64-byte aligned, as the zero-copy view wants), then [`load_model`]`()` validates
//!   them with infer-core's `from_bytes` and, if they are a model, makes it the current one;
//!   if not, the current model stays and the message says why;
//! - [`input_buffer`]`(len)` gives the address for a canvas's RGBA pixels, then
//!   [`pixels_from_rgba`]`(width, height)` runs `trainer predict`'s preprocessing on them into
//!   the 28 × 28 input ([`pixels`]: its address, the page draws what the network sees);
//! - [`classify`]`()` runs the model on that input: the class, and the probabilities at
//!   [`probabilities`] ([`classes`] of them, f32);
//! - [`message`] / [`message_len`]: the last result's text — the model's facts as JSON after a
//!   load, or the error (UTF-8);
//! - [`nothing`]: an empty export, to measure the cost of a call from JavaScript.
//!
//! Status codes: 0 done, 1 refused (see the message).

use std::cell::RefCell;
use std::fmt::Write;

use infer_core::{AnyModel, Kernel, Logits};

/// A 64-byte unit of a model's storage (a weight tile is then one cache line).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A validated model and the storage it reads in place.
struct Loaded {
    /// Borrows `storage` (declared first, so dropped first).
    model: AnyModel<'static>,
    /// Never moved out of its heap allocation while `model` lives (only held, never read).
    _storage: Box<[Line]>,
}

struct State {
    loaded: Option<Loaded>,
    /// Where the page writes the next model file, and how many bytes it holds.
    pending: Option<(Box<[Line]>, usize)>,
    /// Where the page writes a canvas's RGBA pixels.
    input: Vec<u8>,
    pixels: [u8; mnist_digit::PIXELS],
    probabilities: Logits<f32>,
    message: String,
}

thread_local! {
    static STATE: RefCell<State> = const {
        RefCell::new(State {
            loaded: None,
            pending: None,
            input: Vec::new(),
            pixels: [0; mnist_digit::PIXELS],
            probabilities: Logits::new(),
            message: String::new(),
        })
    };
}

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// The address where the page writes a model file of `len` bytes (zeroed, 64-byte aligned).
#[unsafe(no_mangle)]
pub extern "C" fn model_buffer(len: usize) -> *mut u8 {
    with(|s| {
        let mut storage = vec![Line([0; 64]); len.div_ceil(64)].into_boxed_slice();
        let ptr = storage.as_mut_ptr().cast::<u8>();
        s.pending = Some((storage, len));
        ptr
    })
}

/// Validates the bytes written at [`model_buffer`] and, if they are a model, makes it the
/// current one; the message is then its facts (JSON), else why it was refused.
#[unsafe(no_mangle)]
pub extern "C" fn load_model() -> u32 {
    with(|s| {
        let Some((storage, len)) = s.pending.take() else {
            s.message = "no model file was given".into();
            return 1;
        };
        // SAFETY: `storage` holds at least `len` initialized bytes; its heap allocation does not
        // move when the box does, and `Loaded` drops the model before the storage, so the
        // `'static` view never outlives what it reads.
        let bytes: &'static [u8] = unsafe {
            core::slice::from_raw_parts(storage.as_ptr().cast::<u8>(), len.min(storage.len() * 64))
        };
        match AnyModel::from_bytes(bytes) {
            Ok(model) => {
                s.message = facts(&model, len);
                s.loaded = Some(Loaded {
                    model,
                    _storage: storage,
                });
                0
            }
            Err(e) => {
                s.message = format!("not a model this page can run: {e}");
                1
            }
        }
    })
}

/// The current model's facts as JSON: kind, widths, bytes, the kernel, and per layer its weight
/// width, its stored weight tiles and those of its dense form (fewer for a pruned layer).
fn facts(model: &AnyModel<'_>, bytes: usize) -> String {
    let header = model.header();
    let mut json = format!(
        "{{\"kind\":\"{}\",\"bytes\":{bytes},\"kernel\":\"{}\",\"inputs\":{},\"classes\":{},\"widths\":[",
        model.kind(),
        match model {
            AnyModel::Quant(_) => Kernel::best().name(),
            AnyModel::F32(_) => "f32",
        },
        model.inputs(),
        model.classes(),
    );
    for (i, w) in header.widths().iter().enumerate() {
        let _ = write!(json, "{}{w}", if i > 0 { "," } else { "" });
    }
    json.push_str("],\"layers\":[");
    for (i, layer) in header.layers().enumerate() {
        let _ = write!(
            json,
            "{}{{\"weights\":\"{}\",\"tiles\":{},\"dense_tiles\":{}}}",
            if i > 0 { "," } else { "" },
            layer.weights.name(),
            layer.tiles,
            layer.dense_tiles(),
        );
    }
    json.push_str("]}");
    json
}

/// The address where the page writes `len` bytes of RGBA pixels.
#[unsafe(no_mangle)]
pub extern "C" fn input_buffer(len: usize) -> *mut u8 {
    with(|s| {
        s.input = vec![0; len];
        s.input.as_mut_ptr()
    })
}

/// The network's 28 × 28 input from the `width × height` RGBA pixels written at
/// [`input_buffer`] (the preprocessing of `trainer predict`); 1 with the message if there is no
/// digit in them.
#[unsafe(no_mangle)]
pub extern "C" fn pixels_from_rgba(width: u32, height: u32) -> u32 {
    with(|s| {
        let rgba = std::mem::take(&mut s.input);
        match mnist_digit::from_rgba(width, height, rgba) {
            Ok(pixels) => {
                s.pixels = pixels;
                0
            }
            Err(e) => {
                s.message = e.to_string();
                1
            }
        }
    })
}

/// The address of the network's input (784 bytes, row by row): written by
/// [`pixels_from_rgba`], or by the page directly.
#[unsafe(no_mangle)]
pub extern "C" fn pixels() -> *mut u8 {
    with(|s| s.pixels.as_mut_ptr())
}

/// The current model's class for the input at [`pixels`], its probabilities at
/// [`probabilities`]; −1 with the message when no model is loaded or it does not take 784
/// inputs.
#[unsafe(no_mangle)]
pub extern "C" fn classify() -> i32 {
    with(|s| {
        let Some(loaded) = &s.loaded else {
            s.message = "no model is loaded".into();
            return -1;
        };
        match loaded.model.probabilities(&s.pixels) {
            Ok((class, p)) => {
                s.probabilities = p;
                i32::from(class)
            }
            Err(e) => {
                s.message = format!("the model cannot read a 28 × 28 image: {e}");
                -1
            }
        }
    })
}

/// The address of the last [`classify`]'s probabilities (f32, [`classes`] of them).
#[unsafe(no_mangle)]
pub extern "C" fn probabilities() -> *const f32 {
    with(|s| s.probabilities.as_ptr())
}

/// How many probabilities the last [`classify`] gave.
#[unsafe(no_mangle)]
pub extern "C" fn classes() -> usize {
    with(|s| s.probabilities.len())
}

/// The address of the last message (UTF-8, [`message_len`] bytes).
#[unsafe(no_mangle)]
pub extern "C" fn message() -> *const u8 {
    with(|s| s.message.as_ptr())
}

/// The length of the last message.
#[unsafe(no_mangle)]
pub extern "C" fn message_len() -> usize {
    with(|s| s.message.len())
}

/// Does nothing: the page times it to take the cost of a call out of an inference's.
#[unsafe(no_mangle)]
pub extern "C" fn nothing() {}
