use infer_core::QuantModel;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let bytes = trainer::output::AlignedBytes::read(std::path::Path::new(&path)).unwrap();
    let m = QuantModel::from_bytes(bytes.as_bytes()).unwrap();
    let l = &m.layers()[0];
    let s = l.sparsity().unwrap();
    let mut kept = vec![];
    for b in 0..32 {
        for g in 0..196 {
            if s.tile_of(16 * b, 4 * g).is_some() {
                kept.push((b, g));
            }
        }
    }
    let mnist = trainer::idx::load_mnist(std::path::Path::new("data/mnist")).unwrap();
    let n = 200;
    let mut live_kept = 0usize;
    let mut live_groups = 0usize;
    let mut hidden_live = 0usize;
    for i in 0..n {
        let img = &mnist.test.images[i * 784..(i + 1) * 784];
        let live: Vec<bool> = (0..196)
            .map(|g| img[4 * g..4 * g + 4].iter().any(|&v| v != 0))
            .collect();
        live_groups += live.iter().filter(|&&v| v).count();
        live_kept += kept.iter().filter(|&&(_, g)| live[g]).count();
        // hidden activations: run layer 1 via full predict? approximate: count nonzero groups of requantized hidden via weight() is slow; skip
        let _ = &mut hidden_live;
    }
    println!(
        "kept {} tiles; per image: live groups {:.1}, dense tile visits {:.0}, kept&live {:.1}",
        kept.len(),
        live_groups as f64 / n as f64,
        32.0 * live_groups as f64 / n as f64,
        live_kept as f64 / n as f64
    );
}
