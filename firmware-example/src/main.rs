//! Classifies real MNIST test digits with infer-core's integer model (any chain of int8 and int4
//! layers) on a Cortex-M, checks
//! that every prediction equals the host's, and reports what it costs: per-inference time, flash,
//! static RAM and peak stack.
//!
//! Boards (Cargo features, exactly one; each declared in `boards/<feature>.toml`): `mps2-an386`
//! (the default, QEMU, Cortex-M4F; `cargo run --release`), `netduinoplus2` (QEMU, STM32F405),
//! `microbit` (QEMU, nRF51822 Cortex-M0 with 256 KB of flash, a 784-256-128-10 int4 model;
//! `cargo microbit`), `lm3s811evb` (QEMU, Stellaris LM3S811, Cortex-M3 with 64 KB of flash and
//! 8 KB of RAM, the 784-512-10 int4 model pruned to 15 % of its first layer),
//! `nrf52840` (the DK, `cargo board`) and `pico` (RP2040, build only). Exit status 0 only if the
//! model is valid and host and MCU agree on every image.
#![no_std]
#![no_main]

mod platform;

use cortex_m_rt::entry;
use infer_core::{Kernel, Prediction, include_model};

use platform::{Timer, exit, log};

// The embedded model's shape as build.rs read it from the file: `INPUTS`, `MAX_WIDTH` (its widest
// hidden layer, the bound of the forward pass's buffers), `MODEL_KIND` and `MODEL_KINDS`.
include!(concat!(env!("OUT_DIR"), "/model_shape.rs"));

/// The embedded model, its forward pass bounded by its own widest layer and built for its own
/// layer kinds only.
type Model<'a> = infer_core::QuantModel<'a, MAX_WIDTH, MODEL_KINDS>;

/// The model file, aligned as its weight sections need (the kernels load words).
static MODEL: &[u8] = include_model!(concat!(env!("OUT_DIR"), "/model.bin"));
/// The test digits, run-length encoded by build.rs (see [`decode`]).
static IMAGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/images.rle"));
static LABELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/labels.bin"));
/// The host's prediction for each image, computed by infer-core when the firmware was built.
static EXPECTED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/expected.bin"));

/// What unused stack holds until something writes it.
const STACK_PAINT: u32 = 0xC0DE_5AFE;

unsafe extern "C" {
    static __vector_table: u32;
    static __sheap: u32;
    static _stack_start: u32;
    static __sdata: u32;
    static __edata: u32;
    static __erodata: u32;
}

#[entry]
fn main() -> ! {
    platform::boot();
    #[cfg(stray_interrupt)]
    platform::raise_stray_interrupt();
    paint_stack();
    let timer = Timer::start();

    log!(
        "infer-core MNIST demo on {}: {} model bytes ({}), kernel {}",
        platform::board::DESCRIPTION,
        MODEL.len(),
        MODEL_KIND,
        Kernel::best().name()
    );
    let boot = timer.now();
    let model = match Model::from_bytes_bounded(MODEL) {
        Ok(model) => model,
        Err(e) => {
            log!("the embedded model is invalid: {}", e);
            exit(1)
        }
    };
    if Timer::MEASURES {
        log!(
            "model validated (CRC-32 and every section) in {} {}",
            timer.cost_since(boot),
            Timer::UNIT
        );
    } else {
        log!("model validated (CRC-32 and every section)");
    }

    let mut encoded = IMAGES;
    let mut image = [0u8; INPUTS];
    let (mut correct, mut disagree, mut n) = (0usize, 0usize, 0usize);
    let mut cost = Cost::default();
    for (i, (&label, &expected)) in LABELS.iter().zip(EXPECTED).enumerate() {
        if !decode(&mut encoded, &mut image) {
            log!("image {}: the embedded digits are malformed", i);
            exit(2)
        }
        n += 1;
        let (prediction, spent) = measure(&timer, &model, &image);
        cost.add(spent);
        if prediction.class == label {
            correct += 1;
        } else {
            log!(
                "image {}: label {}, predicted {}",
                i,
                label,
                prediction.class
            );
        }
        if prediction.class != expected {
            disagree += 1;
            log!(
                "image {}: MCU predicts {}, host predicted {}",
                i,
                prediction.class,
                expected
            );
        }
    }

    // Hundredths of a percent, rounded down: the figure the host's eval prints to two places.
    let hundredths = correct * 10_000 / n.max(1);
    log!(
        "accuracy: {}/{} embedded test digits correct ({}.{:02} %)",
        correct,
        n,
        hundredths / 100,
        hundredths % 100
    );
    // The bound: no group of inputs can be skipped. (Filled at run time: as a constant it would
    // take 784 bytes of flash.)
    let every_pixel = [core::hint::black_box(u8::MAX); INPUTS];
    let (worst, inference_stack) = inference_stack(&timer, &model, &every_pixel);
    if Timer::MEASURES {
        log!(
            "per inference: mean {}, min {}, max {} {}",
            cost.total / n.max(1) as u32,
            cost.min,
            cost.max,
            Timer::UNIT
        );
        log!(
            "worst case (every pixel non-zero): {} {}",
            worst,
            Timer::UNIT
        );
    } else {
        log!("per inference: {}", Timer::UNIT);
    }
    report_memory(inference_stack);
    if disagree == 0 {
        log!("host and MCU agree on all {} images", n);
        exit(0)
    } else {
        log!("host and MCU DISAGREE on {} of {} images", disagree, n);
        exit(1)
    }
}

/// One inference and what it cost, in [`Timer::UNIT`]s.
fn measure(timer: &Timer, model: &Model<'_>, image: &[u8; INPUTS]) -> (Prediction, u32) {
    let start = timer.now();
    marker::<6>();
    let prediction = model.predict(image);
    marker::<7>();
    let spent = timer.cost_since(start);
    match prediction {
        Ok(p) => (p, spent),
        // Its only error here (the kernel is the best available one): build.rs embeds digits of
        // the model's own input count, so this cannot happen. (Not formatting the error keeps its
        // messages out of flash.)
        Err(_) => {
            log!("the model does not take {} inputs", INPUTS);
            exit(1)
        }
    }
}

/// The next image of the run-length stream `encoded` into `image`; `false` if the stream is
/// malformed (it runs out, or its runs do not cover exactly the `INPUTS` pixels).
///
/// The stream is, per image, runs of `zeros: u8, count: u8` followed by `count` pixel bytes: the
/// zero pixels and then the ink of each run. A digit takes about a quarter of its 784 bytes.
fn decode(encoded: &mut &[u8], image: &mut [u8; INPUTS]) -> bool {
    let mut p = 0;
    while p < INPUTS {
        let Some((&[zeros, count], rest)) = encoded.split_first_chunk::<2>() else {
            return false;
        };
        let (zeros, count) = (usize::from(zeros), usize::from(count));
        let (Some(ink), Some(run)) = (rest.get(..count), image.get_mut(p..p + zeros + count))
        else {
            return false;
        };
        let (dark, lit) = run.split_at_mut(zeros.min(run.len()));
        dark.fill(0);
        // As long as `ink` by construction (`zip` spares the build a panic path).
        for (o, &i) in lit.iter_mut().zip(ink) {
            *o = i;
        }
        p += zeros + count;
        *encoded = rest.get(count..).unwrap_or(&[]);
    }
    true
}

/// Sum (saturating), minimum and maximum of the inferences' costs.
struct Cost {
    total: u32,
    min: u32,
    max: u32,
}

impl Default for Cost {
    fn default() -> Self {
        Self {
            total: 0,
            min: u32::MAX,
            max: 0,
        }
    }
}

impl Cost {
    fn add(&mut self, spent: u32) {
        self.total = self.total.saturating_add(spent);
        self.min = self.min.min(spent);
        self.max = self.max.max(spent);
    }
}

/// `hint #6` (start) and `hint #7` (end) bracket exactly one inference, so that an emulator plugin
/// can count its instructions; both are NOPs on real cores. Armv6-M has no such encodings: there
/// the markers are `mov r10, r10` (start) and `mov r11, r11` (end), no-ops compilers never emit.
#[inline(always)]
fn marker<const N: u32>() {
    #[cfg(not(armv6m))]
    // SAFETY: `hint` instructions have no architectural effect.
    unsafe {
        core::arch::asm!("hint #{n}", n = const N, options(nomem, nostack, preserves_flags))
    };
    #[cfg(armv6m)]
    // SAFETY: moving a register to itself has no effect.
    unsafe {
        if N == 6 {
            core::arch::asm!("mov r10, r10", options(nomem, nostack, preserves_flags));
        } else {
            core::arch::asm!("mov r11, r11", options(nomem, nostack, preserves_flags));
        }
    };
}

fn addr(symbol: &u32) -> usize {
    symbol as *const u32 as usize
}

/// Fills the free stack (from the end of static RAM to just below the current frame) with
/// [`STACK_PAINT`], so that the high-water mark can be read at the end.
fn paint_stack() {
    // SAFETY: linker symbols; only their addresses are used.
    let bottom = unsafe { addr(&__sheap) };
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = bottom;
    while p + 64 < sp {
        // SAFETY: [__sheap, sp − 64) is RAM that nothing uses: below the live stack, above
        // .data/.bss, and no heap exists.
        unsafe { core::ptr::write_volatile(p as *mut u32, STACK_PAINT) };
        p += 4;
    }
}

/// One inference of `image` and the stack it took below this function's frame: the free stack is
/// painted just before and read after.
#[inline(never)]
fn inference_stack(timer: &Timer, model: &Model<'_>, image: &[u8; INPUTS]) -> (u32, usize) {
    paint_stack();
    let sp = cortex_m::register::msp::read() as usize;
    let (_, spent) = measure(timer, model, image);
    // SAFETY: a linker symbol; only its address is used.
    let mut p = unsafe { addr(&__sheap) };
    // SAFETY: reads painted RAM below the live stack.
    while p < sp && unsafe { core::ptr::read_volatile(p as *const u32) } == STACK_PAINT {
        p += 4;
    }
    (spent, sp.saturating_sub(p))
}

/// Flash and static RAM from the linker's symbols, peak stack from the paint (of the whole run,
/// and of one inference below its caller).
fn report_memory(inference_stack: usize) {
    // SAFETY: linker symbols; only their addresses are used.
    let (flash_origin, sheap, stack_top, sdata, edata, erodata) = unsafe {
        (
            addr(&__vector_table),
            addr(&__sheap),
            addr(&_stack_start),
            addr(&__sdata),
            addr(&__edata),
            addr(&__erodata),
        )
    };
    // The memory map is the board's: flash from the vector table, RAM from the data.
    let mut p = sheap;
    // SAFETY: reads painted RAM below the live stack.
    while p < stack_top && unsafe { core::ptr::read_volatile(p as *const u32) } == STACK_PAINT {
        p += 4;
    }
    let flash = erodata - flash_origin + (edata - sdata);
    let embedded = MODEL.len() + IMAGES.len() + LABELS.len() + EXPECTED.len();
    log!(
        "flash: {} bytes in all, {} of them model + code (test digits excluded)",
        flash,
        flash - (embedded - MODEL.len())
    );
    log!(
        "static RAM: {} bytes; peak stack: {} bytes, {} of them one inference",
        sheap - sdata,
        stack_top - p,
        inference_stack
    );
}
