//! Stable rustc does not expose Arm target features such as `dsp` or `thumb2` to `cfg`, so the
//! targets are named here: those whose cores always have the DSP extension (Armv7E-M:
//! Cortex-M4/M7; Armv8-M Mainline with DSP: Cortex-M33/M55), and those limited to Thumb-1
//! (Armv6-M: Cortex-M0/M0+; Armv8-M Baseline: Cortex-M23), where the `swar` walk is assembly.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(cortex_m_dsp)");
    println!("cargo::rustc-check-cfg=cfg(thumb1_only)");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main") {
        println!("cargo::rustc-cfg=cortex_m_dsp");
    }
    if target.starts_with("thumbv6m") || target.starts_with("thumbv8m.base") {
        println!("cargo::rustc-cfg=thumb1_only");
    }
}
