//! Any byte string given to `QuantModel::from_bytes` / `F32Model::from_bytes`: no panic, no out-of-bounds access, and a model that loads predicts the
//! same on every kernel and never answers NaN or infinity.
#![no_main]

use fuzz::check_loads;
use infer_core::format::checksum;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Mutations almost never keep the CRC right: re-seal it so they reach the fields behind it.
    if data.len() >= 4 {
        let mut sealed = data.to_vec();
        let n = sealed.len() - 4;
        let crc = checksum(&sealed[..n]);
        sealed[n..].copy_from_slice(&crc.to_le_bytes());
        check(&sealed);
    }
});

fn check(bytes: &[u8]) {
    // As loaded from a file into aligned memory, and as given (any alignment).
    let mut words = vec![0u128; bytes.len().div_ceil(16)];
    let aligned = &mut bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()];
    aligned.copy_from_slice(bytes);
    for bytes in [&*aligned, bytes] {
        let image = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|i| bytes.get(i % bytes.len().max(1)).copied().unwrap_or(0))
                .collect()
        };
        check_loads(bytes, &[&image]);
    }
}
