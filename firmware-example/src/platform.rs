//! What differs between QEMU and a real board: logging, exit, and the clock that times inference;
//! and the fault handler both binaries share.

use cortex_m_rt::{ExceptionFrame, exception};

/// A fault ends the run with status 3 (in QEMU; a failure report on a board).
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    log!("HardFault at pc {:#x}", frame.pc());
    exit(3)
}

#[cfg(any(feature = "qemu", feature = "microbit"))]
pub use qemu::*;

#[cfg(feature = "qemu")]
pub use systick::Timer;

#[cfg(feature = "microbit")]
pub use untimed::Timer;

#[cfg(feature = "nrf52840")]
pub use board::*;

#[cfg(any(feature = "qemu", feature = "microbit"))]
mod qemu {
    /// Prints a line on the host's stdout through semihosting.
    macro_rules! log {
        ($($arg:tt)*) => { cortex_m_semihosting::hprintln!($($arg)*) };
    }
    pub(crate) use log;

    /// Ends the emulation with `code` as QEMU's exit status (semihosting SYS_EXIT_EXTENDED passes
    /// any code through, where SYS_EXIT knows only success and failure).
    pub fn exit(code: u32) -> ! {
        const SYS_EXIT_EXTENDED: usize = 0x20;
        const ADP_STOPPED_APPLICATION_EXIT: usize = 0x2_0026;
        let block = [ADP_STOPPED_APPLICATION_EXIT, code as usize];
        // SAFETY: a valid semihosting call with its two-word parameter block.
        unsafe { cortex_m_semihosting::syscall(SYS_EXIT_EXTENDED, &block) };
        loop {
            cortex_m::asm::wfi();
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        log!("panic: {}", info);
        exit(101)
    }
}

#[cfg(feature = "qemu")]
mod systick {
    use cortex_m::peripheral::{SYST, syst::SystClkSource};

    use super::exit;

    /// SysTick on the core clock. QEMU has no cycle model (DWT reads 0), but under
    /// `-icount shift=0` one instruction takes 1 ns and mps2-an386's 25 MHz SysTick ticks every
    /// 40 ns: one tick is 40 executed instructions.
    pub struct Timer {
        _syst: SYST,
    }

    /// Instructions per SysTick tick on mps2-an386 under `-icount shift=0`.
    const INSTRUCTIONS_PER_TICK: u32 = 40;

    impl Timer {
        /// Whether [`Timer::cost_since`] measures anything.
        pub const MEASURES: bool = true;
        /// What [`Timer::cost_since`] counts.
        pub const UNIT: &str = "instructions (SysTick x40 under -icount shift=0, to 40)";

        /// Takes SysTick and lets it run down from its maximum.
        pub fn start() -> Self {
            let Some(mut core) = cortex_m::Peripherals::take() else {
                exit(4)
            };
            core.SYST.set_clock_source(SystClkSource::Core);
            core.SYST.set_reload(0x00ff_ffff);
            core.SYST.clear_current();
            core.SYST.enable_counter();
            Self { _syst: core.SYST }
        }

        /// The counter now.
        pub fn now(&self) -> u32 {
            SYST::get_current()
        }

        /// Instructions since `start` (SysTick counts down; correct across one wrap of its
        /// 24 bits).
        pub fn cost_since(&self, start: u32) -> u32 {
            (start.wrapping_sub(self.now()) & 0x00ff_ffff) * INSTRUCTIONS_PER_TICK
        }
    }
}

#[cfg(feature = "microbit")]
mod untimed {
    /// No timer: the nRF51's Cortex-M0 has no SysTick (and QEMU's micro:bit no cycle model).
    /// The inference is bracketed by markers for an instruction counter instead.
    pub struct Timer;

    impl Timer {
        /// Whether [`Timer::cost_since`] measures anything.
        pub const MEASURES: bool = false;
        /// What to use instead.
        pub const UNIT: &str = "not timed (the Cortex-M0 has no SysTick): count its instructions \
            between the `mov r10, r10` and `mov r11, r11` markers with an emulator plugin";

        /// No timer to start.
        pub fn start() -> Self {
            Self
        }

        /// Always 0.
        pub fn now(&self) -> u32 {
            0
        }

        /// Always 0.
        pub fn cost_since(&self, _start: u32) -> u32 {
            0
        }
    }
}

#[cfg(feature = "nrf52840")]
mod board {
    use cortex_m::peripheral::DWT;
    use defmt_rtt as _;
    use panic_probe as _;

    /// Logs a line over RTT with defmt (probe-rs prints it).
    macro_rules! log {
        ($($arg:tt)*) => { defmt::println!($($arg)*) };
    }
    pub(crate) use log;

    /// Stops: a breakpoint ends `probe-rs run` with success; a failure panics, which probe-rs
    /// reports as an error.
    pub fn exit(code: u32) -> ! {
        if code == 0 {
            loop {
                cortex_m::asm::bkpt();
            }
        }
        defmt::panic!("exit status {}", code)
    }

    /// The DWT cycle counter: real CPU cycles.
    pub struct Timer {
        _dwt: DWT,
    }

    impl Timer {
        /// Whether [`Timer::cost_since`] measures anything.
        pub const MEASURES: bool = true;
        /// What [`Timer::cost_since`] counts.
        pub const UNIT: &str = "CPU cycles";

        /// Enables tracing and the cycle counter.
        pub fn start() -> Self {
            let Some(mut core) = cortex_m::Peripherals::take() else {
                exit(4)
            };
            core.DCB.enable_trace();
            core.DWT.enable_cycle_counter();
            Self { _dwt: core.DWT }
        }

        /// The counter now.
        pub fn now(&self) -> u32 {
            DWT::cycle_count()
        }

        /// Cycles since `start` (wrapping).
        pub fn cost_since(&self, start: u32) -> u32 {
            self.now().wrapping_sub(start)
        }
    }
}
