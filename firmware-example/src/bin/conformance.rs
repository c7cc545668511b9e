//! infer-core's kernel conformance suite on the emulated Cortex-M4: the same cases `cargo test`
//! runs on the host, here for the kernels this target compiles (the scalar reference, the `swar`
//! kernel and, on Armv7E-M, the Cortex-M DSP kernel). Exits 0 only if all pass and the DSP
//! kernel is among them where the target has the DSP extension.
//!
//! `cargo run --release --bin conformance` (QEMU `mps2-an386`: the suite needs 402 KB of RAM
//! for the network's own layer shapes). Built for `thumbv6m-none-eabi`, the same binary runs the
//! Cortex-M0's Thumb-1 code (a subset of the M4's) there: see `.ci/run`.
#![no_std]
#![no_main]

#[path = "../platform.rs"]
#[allow(dead_code, unused_imports)] // The timer serves the demo binary only.
mod platform;

use cortex_m_rt::entry;
use infer_core::Kernel;
use infer_core::kernels::conformance::{self, TUTORIAL_SHAPES, scratch_len};

use platform::{exit, log};

/// Random shapes per kernel, as many as `cargo test` runs on the host: the same seed gives the
/// same cases.
const RANDOM_CASES: u32 = 300;

/// Weight bytes of the cases: the tutorial network's layers.
const SCRATCH_LEN: usize = scratch_len(&TUTORIAL_SHAPES);

/// Weights of the cases, in RAM (the suite writes them).
static mut SCRATCH: [i8; SCRATCH_LEN] = [0; SCRATCH_LEN];

#[entry]
fn main() -> ! {
    // SAFETY: the only reference to `SCRATCH`, taken once, before anything else runs.
    let scratch = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
    let mut failed = 0;
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let result = conformance::run(kernel, scratch, &TUTORIAL_SHAPES, RANDOM_CASES, |part| {
            log!("conformance: {}: {}", kernel.name(), part)
        });
        match result {
            Ok(summary) => log!(
                "conformance: {} passed {} cases ({} multiply-accumulates)",
                kernel.name(),
                summary.cases,
                summary.macs
            ),
            Err(failure) => {
                log!("conformance: {} FAILED: {}", kernel.name(), failure);
                failed += 1;
            }
        }
    }
    if cfg!(not(armv6m)) && !Kernel::CortexMDsp.is_available() {
        log!("conformance: the cortex-m-dsp kernel is not compiled for this target");
        failed += 1;
    }
    exit(if failed == 0 { 0 } else { 1 })
}
