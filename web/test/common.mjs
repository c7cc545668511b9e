// What the page test and the benchmark share: the MNIST test digits, headless Chromium, and
// `trainer demo` started on a free port.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { chromium } from "playwright-core";

/// The test set of an MNIST folder: `{ images: [Uint8Array(784)…], labels: Uint8Array }`.
export function mnistTest(dir) {
  const read = (name) => gunzipSync(readFileSync(`${dir}/${name}.gz`));
  const images = read("t10k-images-idx3-ubyte");
  const labels = read("t10k-labels-idx1-ubyte");
  const count = images.readUInt32BE(4);
  return {
    images: Array.from({ length: count }, (_, i) => images.subarray(16 + 784 * i, 16 + 784 * (i + 1))),
    labels: labels.subarray(8, 8 + count),
  };
}

/// Debian's Chromium, headless, with nothing contacting the network but the page's server.
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/// Runs `trainer demo ARGS… --port 0` and resolves to `{ url, process }` once it serves.
export function demo(trainer, args = []) {
  const child = spawn(trainer, ["demo", ...args, "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const url = out.match(/http:\/\/[0-9.:]+\//);
      if (url) resolve({ url: url[0], process: child });
    });
    child.on("exit", (code) => reject(new Error(`trainer demo exited with ${code}: ${out}`)));
  });
}

/// The median of numbers.
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
