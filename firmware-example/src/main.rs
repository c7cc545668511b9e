//! Classifies real MNIST test digits with infer-core's int8 model on a Cortex-M4F, checks that
//! every prediction equals the host's, and reports what it costs: per-inference time, flash, static
//! RAM and peak stack.
//!
//! Platforms (Cargo features, exactly one): `qemu` (default; `cargo run --release`) and
//! `nrf52840` (`cargo board`). Exit status 0 only if the model is valid and host and MCU agree on
//! every image.
#![no_std]
#![no_main]

#[cfg(all(feature = "qemu", feature = "nrf52840"))]
compile_error!("choose one platform feature: `qemu` or `nrf52840`");
#[cfg(not(any(feature = "qemu", feature = "nrf52840")))]
compile_error!("choose a platform feature: `qemu` (default) or `nrf52840`");

mod platform;

use cortex_m_rt::entry;
use infer_core::{INPUTS, Int8Model, Kernel, Prediction, include_model};

use platform::{Timer, exit, log};

/// The model file, aligned as its weight sections need (the kernels load words).
static MODEL: &[u8] = include_model!(concat!(env!("OUT_DIR"), "/model.bin"));
static IMAGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/images.bin"));
static LABELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/labels.bin"));
/// The host's int8 prediction for each image, computed by infer-core when the firmware was built.
static EXPECTED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/expected.bin"));

/// What unused stack holds until something writes it.
const STACK_PAINT: u32 = 0xC0DE_5AFE;

unsafe extern "C" {
    static __sheap: u32;
    static _stack_start: u32;
    static __sdata: u32;
    static __edata: u32;
    static __erodata: u32;
}

#[entry]
fn main() -> ! {
    paint_stack();
    let timer = Timer::start();

    log!(
        "infer-core MNIST demo: {} model bytes, kernel {}",
        MODEL.len(),
        Kernel::best().name()
    );
    let boot = timer.now();
    let model = match Int8Model::from_bytes(MODEL) {
        Ok(model) => model,
        Err(e) => {
            log!("the embedded model is invalid: {}", e);
            exit(1)
        }
    };
    log!(
        "model validated (CRC-32 and every section) in {} {}",
        timer.cost_since(boot),
        Timer::UNIT
    );

    let images = IMAGES.as_chunks::<INPUTS>().0;
    let (mut correct, mut disagree) = (0usize, 0usize);
    let mut cost = Cost::default();
    for (i, ((image, &label), &expected)) in images.iter().zip(LABELS).zip(EXPECTED).enumerate() {
        let (prediction, spent) = measure(&timer, &model, image);
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

    let n = images.len();
    log!(
        "accuracy: {}/{} correct ({} per 10000)",
        correct,
        n,
        correct * 10_000 / n.max(1)
    );
    log!(
        "per inference: mean {}, min {}, max {} {}",
        cost.total / n.max(1) as u32,
        cost.min,
        cost.max,
        Timer::UNIT
    );
    // The bound: no group of inputs can be skipped. (Filled at run time: as a constant it would
    // take 784 bytes of flash.)
    let every_pixel = [core::hint::black_box(u8::MAX); INPUTS];
    let (_, worst) = measure(&timer, &model, &every_pixel);
    log!(
        "worst case (every pixel non-zero): {} {}",
        worst,
        Timer::UNIT
    );
    report_memory();
    if disagree == 0 {
        log!("host and MCU agree on all {} images", n);
        exit(0)
    } else {
        log!("host and MCU DISAGREE on {} of {} images", disagree, n);
        exit(1)
    }
}

/// One inference and what it cost, in [`Timer::UNIT`]s.
fn measure(timer: &Timer, model: &Int8Model<'_>, image: &[u8; INPUTS]) -> (Prediction, u32) {
    let start = timer.now();
    marker::<6>();
    let prediction = model.predict(image);
    marker::<7>();
    (prediction, timer.cost_since(start))
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
/// can count its instructions; both are NOPs on real cores. Armv6-M has no such encodings.
#[inline(always)]
fn marker<const N: u32>() {
    #[cfg(not(armv6m))]
    // SAFETY: `hint` instructions have no architectural effect.
    unsafe {
        core::arch::asm!("hint #{n}", n = const N, options(nomem, nostack, preserves_flags))
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

/// Flash and static RAM from the linker's symbols, peak stack from the paint.
fn report_memory() {
    // SAFETY: linker symbols; only their addresses are used.
    let (sheap, stack_top, sdata, edata, erodata) = unsafe {
        (
            addr(&__sheap),
            addr(&_stack_start),
            addr(&__sdata),
            addr(&__edata),
            addr(&__erodata),
        )
    };
    let ram_origin = 0x2000_0000;
    let mut p = sheap;
    // SAFETY: reads painted RAM below the live stack.
    while p < stack_top && unsafe { core::ptr::read_volatile(p as *const u32) } == STACK_PAINT {
        p += 4;
    }
    let flash = erodata + (edata - sdata);
    let embedded = MODEL.len() + IMAGES.len() + LABELS.len() + EXPECTED.len();
    log!(
        "flash: {} bytes in all, {} of them model + code (test digits excluded)",
        flash,
        flash - (embedded - MODEL.len())
    );
    log!(
        "static RAM: {} bytes; peak stack: {} bytes",
        sheap - ram_origin,
        stack_top - p
    );
}
