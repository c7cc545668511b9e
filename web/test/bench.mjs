// One digit in the browser, side by side: `node web/test/bench.mjs TRAINER SET-DIR [OUT-DIR]`.
// Writes the figures also to target/criterion/peer-browser.json, where the benchmark report
// (`cargo run -p benches --bin report`) finds them for BENCHMARKS.md.
//
// SET-DIR is a training run's output set (`trainer --recipe best --out SET-DIR` writes
// mlp-int8.bin and mlp-f32.bin of one network). The int8 model runs in the page (infer-core,
// WebAssembly SIMD128); the same network exported with `trainer export --format onnx`, f32 and
// int8, runs in ONNX Runtime Web (npm, pinned; its SIMD WebAssembly backend, one thread), in the
// same headless Chromium page, on the same test digits. Each engine is timed in batches of
// calls (the browser's clock ticks in 100 µs steps, so one call cannot be timed alone); the
// figure is the median over the batches of the time per inference, less the time of an empty
// call from JavaScript into the same engine's API (for infer-core an empty WebAssembly export,
// for ONNX Runtime an `await` of an empty async function, as `session.run` is async). Prints the
// figures and the ratios; exit status 1 only if the engines disagree on a digit's class.
import { execFileSync } from "node:child_process";
import { createReadStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, median, mnistTest } from "./common.mjs";

const [trainer, set, outArg] = process.argv.slice(2);
const out = outArg ?? "target/web-bench";
const site = join(out, "site");
const data = fileURLToPath(new URL("../../data/mnist", import.meta.url));
mkdirSync(site, { recursive: true });
const run = (...args) => execFileSync(trainer, args, { stdio: ["ignore", "pipe", "inherit"] }).toString();
run("demo", join(set, "mlp-int8.bin"), "--write", site);
for (const kind of ["f32", "int8"]) run("export", join(set, `mlp-${kind}.bin`), "--format", "onnx", "-o", join(site, `${kind}.onnx`));

// The site, and ONNX Runtime Web's files under /ort/, on a free port of 127.0.0.1.
const ortDir = fileURLToPath(new URL("node_modules/onnxruntime-web/dist/", import.meta.url));
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".wasm": "application/wasm" };
const server = createServer((req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
  const file = path.startsWith("/ort/") ? join(ortDir, path.slice(5)) : join(site, path === "/" ? "index.html" : path);
  if (path.includes("..") || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "Content-Type": types[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const url = `http://127.0.0.1:${server.address().port}/`;

const digits = 100;
const test = mnistTest(data);
const images = test.images.slice(0, digits).map((p) => Array.from(p));
const browser = await launch();
let failed = false;
const report = {};
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.evaluate(() => window.demo.ready);
  const result = await page.evaluate(async ({ images, batches }) => {
    const ort = await import("/ort/ort.wasm.min.mjs");
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = "/ort/";
    const wasm = window.demo.wasm();
    const perCall = (n, body) => {
      const t0 = performance.now();
      body(n);
      return (performance.now() - t0) * 1000 / n;
    };
    const perCallAsync = async (n, body) => {
      const t0 = performance.now();
      await body(n);
      return (performance.now() - t0) * 1000 / n;
    };
    const med = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

    // infer-core: the 784 bytes copied into the module, then classify.
    const ours = { classes: images.map((p) => window.demo.classifyRaw(p)), times: [], empty: [] };
    const view = () => new Uint8Array(wasm.memory.buffer, wasm.pixels(), 784);
    const bytes = images.map((p) => Uint8Array.from(p));
    const n = 2000;
    for (let b = 0; b < batches; b++) {
      ours.times.push(perCall(n, (n) => {
        const v = view();
        for (let i = 0; i < n; i++) {
          v.set(bytes[i % bytes.length]);
          wasm.classify();
        }
      }));
      // Many more empty calls than inferences: each takes nanoseconds, the clock ticks in 100 µs.
      ours.empty.push(perCall(100 * n, (n) => { for (let i = 0; i < n; i++) wasm.nothing(); }));
    }

    const engines = { ours: { ...ours, median: med(ours.times), emptyMedian: med(ours.empty) } };
    for (const kind of ["f32", "int8"]) {
      const session = await ort.InferenceSession.create(`/${kind}.onnx`, {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
      });
      const tensors = images.map((p) => new ort.Tensor("float32", Float32Array.from(p, (v) => v / 255), [1, 784]));
      const classes = [];
      for (const t of tensors) {
        const logits = (await session.run({ pixels: t })).logits.data;
        classes.push(logits.indexOf(Math.max(...logits)));
      }
      const times = [];
      const empty = [];
      const nothing = async () => {};
      const m = 200;
      for (let b = 0; b < batches; b++) {
        times.push(await perCallAsync(m, async (m) => {
          for (let i = 0; i < m; i++) await session.run({ pixels: tensors[i % tensors.length] });
        }));
        empty.push(await perCallAsync(100 * m, async (m) => { for (let i = 0; i < m; i++) await nothing(); }));
      }
      engines[`ort-${kind}`] = { classes, times, empty, median: med(times), emptyMedian: med(empty) };
      await session.release();
    }
    return { engines, userAgent: navigator.userAgent, ort: ort.env.versions };
  }, { images, batches: 31 });

  const e = result.engines;
  const net = (x) => x.median - x.emptyMedian;
  console.log(`${result.userAgent}\nONNX Runtime Web ${JSON.stringify(result.ort)}, wasm backend, one thread`);
  console.log(`one digit (median of 31 batches; µs per inference, gross / empty call / net):`);
  for (const [name, x] of Object.entries(e)) {
    console.log(`  ${name.padEnd(9)} ${x.median.toFixed(2).padStart(7)} / ${x.emptyMedian.toFixed(4).padStart(7)} / ${net(x).toFixed(2).padStart(7)}`);
  }
  for (const kind of ["int8", "f32"]) {
    const o = e[`ort-${kind}`];
    const agree = o.classes.filter((c, i) => c === e.ours.classes[i]).length;
    console.log(`infer-core int8 / ONNX Runtime Web ${kind}: ${(net(e.ours) / net(o)).toFixed(3)}× net ` +
      `(${(e.ours.median / o.median).toFixed(3)}× gross); classes agree on ${agree} of ${digits} digits`);
    if (kind === "int8" && agree !== digits) failed = true;
    report[`ort_${kind}`] = { net_us: net(o), gross_us: o.median, empty_us: o.emptyMedian, ratio_net: net(e.ours) / net(o), agree };
  }
  Object.assign(report, {
    browser: result.userAgent.match(/HeadlessChrome\/[0-9.]+/)?.[0] ?? result.userAgent,
    ort_version: result.ort.web,
    digits,
    batches: 31,
    ours: { net_us: net(e.ours), gross_us: e.ours.median, empty_us: e.ours.emptyMedian },
  });
  const labels = Array.from(test.labels.slice(0, digits));
  console.log(`right on these ${digits} digits: infer-core ${e.ours.classes.filter((c, i) => c === labels[i]).length}, ` +
    `ORT int8 ${e["ort-int8"].classes.filter((c, i) => c === labels[i]).length}, ORT f32 ${e["ort-f32"].classes.filter((c, i) => c === labels[i]).length}`);
} finally {
  await browser.close();
  server.close();
}
// The page's download, excluding the model.
const { gzipSync } = await import("node:zlib");
let total = 0;
let gz = 0;
for (const f of ["index.html", "app.js", "style.css", "infer_web.wasm"]) {
  const b = readFileSync(join(site, f));
  total += b.length;
  gz += gzipSync(b, { level: 9 }).length;
}
console.log(`the page's code (HTML, JS, CSS, wasm; no model): ${total} bytes, ${gz} gzip -9`);
Object.assign(report, { page_bytes: total, page_gzip_bytes: gz });
const json = fileURLToPath(new URL("../../target/criterion/peer-browser.json", import.meta.url));
mkdirSync(join(json, ".."), { recursive: true });
writeFileSync(json, JSON.stringify(report, null, 1));
console.log(`wrote ${json}`);
process.exit(failed ? 1 : 0);
