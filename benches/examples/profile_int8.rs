fn main() {
    let mnist = benches::mnist().unwrap();
    let models = benches::models(&mnist).unwrap();
    let (int8, _) = benches::views(&models).unwrap();
    let images = benches::test_images(&mnist, 256);
    let t = std::time::Instant::now();
    let mut s = 0u32;
    for r in 0..200_000 { s += u32::from(int8.predict(&images[r % 256]).class); }
    println!("{s} {:.3} us", t.elapsed().as_secs_f64() / 200_000.0 * 1e6);
}
