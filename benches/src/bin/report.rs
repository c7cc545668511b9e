//! Turns criterion's saved estimates (`target/criterion`) into `BENCHMARKS.md`: median time per
//! image, images per second, and ratios to the scalar kernel and to each peer, measured in the
//! same run.
//!
//! Usage: `cargo bench -p benches --features benches && cargo run -p benches --bin report [CRITERION_DIR] [OUT.md]`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One benchmark's median.
struct Estimate {
    /// Median time per call, ns.
    median_ns: f64,
    /// Images (elements) per call.
    images: f64,
}

impl Estimate {
    fn per_image_ns(&self) -> f64 {
        self.median_ns / self.images
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let criterion = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| benches::repo().join("target/criterion"));
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| benches::repo().join("BENCHMARKS.md"));
    let estimates = read_estimates(&criterion)?;
    if estimates.is_empty() {
        bail!(
            "no criterion results under {}; run `cargo bench -p benches --features benches` first",
            criterion.display()
        );
    }
    let tflite = read_json(&criterion.join("peer-tflite-int8.json")).ok();
    let browser = read_json(&criterion.join("peer-browser.json")).ok();
    let mut markdown = render(&estimates, tflite.as_ref());
    markdown.push_str(&render_browser(browser.as_ref()));
    std::fs::write(&out, &markdown).with_context(|| format!("cannot write {}", out.display()))?;
    print!("{markdown}");
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Every `*/new/benchmark.json` with its `estimates.json`, by full benchmark ID.
fn read_estimates(dir: &Path) -> Result<BTreeMap<String, Estimate>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "benchmark.json")
                && path.parent().is_some_and(|p| p.ends_with("new"))
            {
                let meta: Value = read_json(&path)?;
                let est: Value = read_json(&path.with_file_name("estimates.json"))?;
                let id = meta["full_id"].as_str().context("full_id")?.to_owned();
                let median_ns = est["median"]["point_estimate"].as_f64().context("median")?;
                let images = meta["throughput"]["Elements"].as_f64().unwrap_or(1.0);
                found.insert(id, Estimate { median_ns, images });
            }
        }
    }
    Ok(found)
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn ratio(a: Option<&Estimate>, b: &Estimate) -> String {
    a.map_or("–".into(), |a| {
        format!("{:.1}×", a.per_image_ns() / b.per_image_ns())
    })
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn render(est: &BTreeMap<String, Estimate>, tflite: Option<&Value>) -> String {
    let mut md = String::new();
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Criterion medians on {} ({} logical CPUs), {}. Every engine runs on one core \
         (`RAYON_NUM_THREADS=1`) except the training step, which uses the trainer's two threads. \
         Same trained weights, same real MNIST test digits. Regenerate with \
         `cargo bench -p benches --features benches && cargo run -p benches --bin report`.\n",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        date.trim()
    );

    let scalar = est.get("forward/int8/scalar/batch-1");
    let nalgebra = est.get("forward/f32/nalgebra/batch-1");
    let candle = est.get("forward/f32/candle/batch-1");
    let _ = writeln!(md, "## One image\n");
    let _ = writeln!(
        md,
        "| benchmark | median per image | images/s | vs int8 scalar | vs nalgebra f32 | vs candle f32 |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for (id, e) in est.iter().filter(|(id, _)| id.starts_with("forward/")) {
        let _ = writeln!(
            md,
            "| `{id}` | {} | {:.0} | {} | {} | {} |",
            duration(e.per_image_ns()),
            1e9 / e.per_image_ns(),
            ratio(scalar, e),
            ratio(nalgebra, e),
            ratio(candle, e)
        );
    }

    let _ = writeln!(md, "\n## One image against TensorFlow Lite int8\n");
    match tflite.and_then(|t| Some((t, t["net_us"].as_f64()?))) {
        Some((t, net_us)) => {
            let _ = writeln!(
                md,
                "The same trained weights converted to a fully int8 TFLite model ({} bytes, test \
                 accuracy {:.4}), run by {}: {:.2} µs per call from Python, of which {:.2} µs is \
                 the binding's per-call overhead (the same loop on a one-op model), so **{:.2} µs \
                 net**. Measured by `benches/peers/tflite_int8.py` after the criterion run.\n",
                t["model_bytes"].as_u64().unwrap_or(0),
                t["test_accuracy"].as_f64().unwrap_or(0.0),
                t["engine"].as_str().unwrap_or("TFLite"),
                t["per_call_us"].as_f64().unwrap_or(0.0),
                t["call_overhead_us"].as_f64().unwrap_or(0.0),
                net_us
            );
            let _ = writeln!(
                md,
                "| infer-core kernel | median per image | time relative to TFLite int8 (net) |\n| --- | ---: | ---: |"
            );
            // The dense network on every kernel, and pruned to each density (its own, smaller
            // model: TFLite runs the dense one).
            let rows = est
                .iter()
                .filter(|(id, _)| id.starts_with("forward/int") || id.starts_with("pruned/"));
            for (id, e) in rows {
                let _ = writeln!(
                    md,
                    "| `{id}` | {} | {:.2}× |",
                    duration(e.per_image_ns()),
                    e.per_image_ns() / 1e3 / net_us
                );
            }
        }
        None => {
            let _ = writeln!(
                md,
                "Not measured in this run: see `benches/peers/tflite_int8.py` (needs TensorFlow)."
            );
        }
    }

    let _ = writeln!(md, "\n## Batches (throughput per core)\n");
    let _ = writeln!(
        md,
        "| benchmark | median per call | per image | images/s | vs nalgebra f32 (same batch) | vs candle f32 (same batch) |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut batch_ids: Vec<&String> = est
        .keys()
        .filter(|id| id.starts_with("throughput/"))
        .collect();
    batch_ids.sort_by_key(|id| {
        let n: u32 = id
            .rsplit("batch-")
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (n, (*id).clone())
    });
    for id in batch_ids {
        let e = &est[id];
        let suffix = id.rsplit('/').next().unwrap_or("");
        let peer = |engine: &str| est.get(&format!("throughput/f32/{engine}/{suffix}"));
        let _ = writeln!(
            md,
            "| `{id}` | {} | {} | {:.0} | {} | {} |",
            duration(e.median_ns),
            duration(e.per_image_ns()),
            1e9 / e.per_image_ns(),
            ratio(peer("nalgebra"), e),
            ratio(peer("candle"), e)
        );
    }

    let _ = writeln!(
        md,
        "\n## One image by network shape (int8, the tutorial recipe's files)\n\n\
         | benchmark | median per image | vs 784-512-10 |\n| --- | ---: | ---: |"
    );
    let tutorial = est
        .iter()
        .find(|(id, _)| id.starts_with("shape/784-512-10/"))
        .map(|(_, e)| e.per_image_ns());
    for (id, e) in est.iter().filter(|(id, _)| id.starts_with("shape/")) {
        let ratio = tutorial.map_or(String::from("—"), |t| {
            format!("{:.2}×", e.per_image_ns() / t)
        });
        let _ = writeln!(md, "| `{id}` | {} | {ratio} |", duration(e.per_image_ns()));
    }

    let _ = writeln!(
        md,
        "\n## One image, 784-512-10 pruned (the tutorial recipe with `--density`; `best-density-…`: \
         the best recipe's files the firmware runs, whose accuracy the README gives)\n\n\
         | benchmark | median per image | vs dense (density 1) of its width |\n| --- | ---: | ---: |"
    );
    for (id, e) in est.iter().filter(|(id, _)| id.starts_with("pruned/")) {
        // The dense file of the same width and kernel: `pruned/density-1/<width>/...`.
        let rest = id.split_once('/').and_then(|(_, r)| r.split_once('/'));
        let dense = rest.and_then(|(_, r)| est.get(&format!("pruned/density-1/{r}")));
        let ratio = dense.map_or(String::from("—"), |d| {
            format!("{:.2}×", e.per_image_ns() / d.per_image_ns())
        });
        let _ = writeln!(md, "| `{id}` | {} | {ratio} |", duration(e.per_image_ns()));
    }

    let _ = writeln!(md, "\n## Other\n\n| benchmark | median |\n| --- | ---: |");
    for (id, e) in est
        .iter()
        .filter(|(id, _)| id.starts_with("load/") || id.starts_with("train/"))
    {
        let _ = writeln!(md, "| `{id}` | {} |", duration(e.median_ns));
    }
    md
}

/// The browser section: infer-core's page against ONNX Runtime Web in one headless Chromium
/// session (written by `web/test/bench.mjs`).
fn render_browser(browser: Option<&Value>) -> String {
    let mut md = String::from("\n## One image in a browser, against ONNX Runtime Web\n\n");
    let Some(b) = browser else {
        md.push_str(
            "Not measured in this run: see `web/test/bench.mjs` (needs Chromium and npm).\n",
        );
        return md;
    };
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "The best recipe's network in {} (headless, one page): infer-core's int8 model in the \
         page's WebAssembly (`wasm-simd128` kernel), and the same network exported with `trainer \
         export --format onnx`, f32 and int8, run by ONNX Runtime Web {} (npm `onnxruntime-web`, \
         its SIMD WebAssembly backend, one thread), on the same {} test digits. Median over {} \
         batches of the time per inference, net of an empty call into the same API (an empty \
         WebAssembly export; an `await` of an empty async function, as `session.run` is async). \
         Measured by `web/test/bench.mjs`.\n",
        b["browser"].as_str().unwrap_or("Chromium"),
        b["ort_version"].as_str().unwrap_or("?"),
        b["digits"].as_u64().unwrap_or(0),
        b["batches"].as_u64().unwrap_or(0),
    );
    let _ = writeln!(
        md,
        "| engine | per image (net) | empty call | infer-core's time relative to it | classes agree |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let ours = &b["ours"];
    let _ = writeln!(
        md,
        "| infer-core int8 (`wasm-simd128`) | {:.2} µs | {:.4} µs | 1.00× | — |",
        f(&ours["net_us"]),
        f(&ours["empty_us"])
    );
    for kind in ["int8", "f32"] {
        let o = &b[format!("ort_{kind}").as_str()];
        let _ = writeln!(
            md,
            "| ONNX Runtime Web {kind} | {:.2} µs | {:.4} µs | {:.3}× | {} of {} |",
            f(&o["net_us"]),
            f(&o["empty_us"]),
            f(&o["ratio_net"]),
            o["agree"].as_u64().unwrap_or(0),
            b["digits"].as_u64().unwrap_or(0),
        );
    }
    let _ = writeln!(
        md,
        "\nThe page's code (HTML, JavaScript, CSS and WebAssembly, without the model): {} bytes, {} \
         gzip -9.",
        b["page_bytes"].as_u64().unwrap_or(0),
        b["page_gzip_bytes"].as_u64().unwrap_or(0)
    );
    md
}
