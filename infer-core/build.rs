//! Stable rustc does not expose Arm target features such as `dsp` to `cfg`, so the targets whose
//! cores always have the DSP extension (Armv7E-M: Cortex-M4/M7; Armv8-M Mainline with DSP:
//! Cortex-M33/M55) are named here.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(cortex_m_dsp)");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main") {
        println!("cargo::rustc-cfg=cortex_m_dsp");
    }
}
