// The page in a real browser: `node web/test/page.mjs TRAINER MODEL DATA-DIR OUT-DIR [DIGITS]`.
//
// Serves the page with `TRAINER demo MODEL` (an integer model), opens it in headless
// Chromium, draws DIGITS real MNIST test digits (default 200) on the canvas as images, and checks
// that the page's answers equal `TRAINER predict --json` on the canvases exported as PNG (the
// same class and the same f32 probabilities, bit for bit) and the labels; that the page
// classifies the 10,000 raw test digits exactly as `TRAINER eval` does; that a bad model file
// gets a message and leaves the model in place; and that the kernel is wasm-simd128. Writes the
// PNGs, the page's answers and a screenshot (page.png) into OUT-DIR. Exit status 1 on any
// difference.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { demo, launch, mnistTest } from "./common.mjs";

const [trainer, model, data, out, digitsArg] = process.argv.slice(2);
const count = Number(digitsArg ?? 200);
mkdirSync(`${out}/canvas`, { recursive: true });
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
  return ok;
};

const test = mnistTest(data);
const server = await demo(trainer, [model]);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 720 } });
  page.on("pageerror", (e) => failures.push(`page error: ${e}`));
  const opened = performance.now();
  await page.goto(server.url);
  await page.evaluate(() => window.demo.ready);
  // The first answer: a digit drawn as soon as the page is ready.
  await page.evaluate((p) => window.demo.drawDigit(p), Array.from(test.images[0]));
  const firstAnswer = performance.now() - opened;
  const facts = await page.evaluate(() => window.demo.facts);
  console.log(`page ready in ${(await page.evaluate(() => window.demo.startMilliseconds)).toFixed(0)} ms,` +
    ` first answer ${firstAnswer.toFixed(0)} ms after opening; model: ${JSON.stringify(facts)}`);
  check(facts.kernel === "wasm-simd128", `the kernel is ${facts.kernel}, not wasm-simd128`);

  // Digits drawn on the canvas, against predict on the exported canvas and the labels.
  const answers = [];
  for (let i = 0; i < count; i++) {
    const result = await page.evaluate((p) => window.demo.drawDigit(p), Array.from(test.images[i]));
    const png = await page.evaluate(() => window.demo.png());
    const file = `${out}/canvas/${String(i).padStart(5, "0")}.png`;
    writeFileSync(file, Buffer.from(png.split(",")[1], "base64"));
    answers.push({ file, label: test.labels[i], ...result });
  }
  writeFileSync(`${out}/answers.json`, JSON.stringify(answers));
  // Status 1 when an image has no digit: each image's answer or error is in the JSON either way.
  const run = spawnSync(trainer, ["predict", model, "--json", ...answers.map((a) => a.file)],
    { maxBuffer: 1 << 26, stdio: ["ignore", "pipe", "inherit"] });
  const predicted = JSON.parse(run.stdout.toString());
  let same = 0;
  let right = 0;
  answers.forEach((a, i) => {
    const p = predicted[i];
    const equal = p.digit === a.digit && p.probabilities.length === a.probabilities.length &&
      p.probabilities.every((v, c) => Math.fround(v) === a.probabilities[c]);
    if (check(equal, `${a.file}: page ${a.digit} ${a.probabilities}, predict ${p.digit} ${p.probabilities}`)) same++;
    if (a.digit === a.label) right++;
  });
  console.log(`canvas: ${same} of ${count} digits answered as trainer predict --json answers (class and ` +
    `probabilities bit for bit); ${right} of ${count} (${(100 * right / count).toFixed(1)} %) right`);
  check(right >= 0.95 * count, `only ${right} of ${count} canvas digits right`);

  // The raw test digits, bypassing the canvas: the page's classes against trainer eval's.
  // (Handed over as one base64 string: an array of 7.8 million numbers takes the protocol minutes.)
  const classes = await page.evaluate((b64) => {
    const all = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return Array.from({ length: all.length / 784 }, (_, i) => window.demo.classifyRaw(all.subarray(784 * i, 784 * (i + 1))));
  }, Buffer.concat(test.images).toString("base64"));
  const logitsFile = `${out}/eval.logits`;
  execFileSync(trainer, ["eval", model, "--data", data, "--logits", logitsFile], { stdio: ["ignore", "ignore", "inherit"] });
  const logits = new Float32Array(readFileSync(logitsFile).buffer.slice(0));
  const classesOf = facts.classes;
  let agree = 0;
  let correct = 0;
  classes.forEach((c, i) => {
    const row = logits.subarray(i * classesOf, (i + 1) * classesOf);
    const best = row.indexOf(Math.max(...row));
    if (check(c === best, `test digit ${i}: page ${c}, trainer eval ${best}`)) agree++;
    if (c === test.labels[i]) correct++;
  });
  console.log(`raw: ${agree} of ${classes.length} test digits classified as trainer eval does; accuracy ` +
    `${(100 * correct / classes.length).toFixed(2)} %`);

  // A bad model file: refused with a message, the model in place.
  const bad = Buffer.from(readFileSync(model));
  bad[bad.length >> 1] ^= 0x55;
  await page.setInputFiles("#file", { name: "damaged.bin", mimeType: "application/octet-stream", buffer: bad });
  await page.waitForSelector("#message:not([hidden])");
  const text = await page.textContent("#message");
  console.log(`a damaged model file: "${text}"`);
  check(/damaged\.bin was not loaded: not a model this page can run/.test(text), `message: ${text}`);
  const after = await page.evaluate((p) => window.demo.drawDigit(p), Array.from(test.images[1]));
  check(after.digit === answers[1]?.digit, "the model in place still answers after a refused file");
  await page.evaluate(() => { document.getElementById("message").hidden = true; });

  // Drawn with the mouse: a vertical stroke is a 1.
  await page.click("#clear");
  const pad = await page.locator("#pad").boundingBox();
  await page.mouse.move(pad.x + pad.width / 2, pad.y + 40);
  await page.mouse.down();
  for (let y = 40; y <= pad.height - 40; y += 10) await page.mouse.move(pad.x + pad.width / 2 + y / 20, pad.y + y);
  await page.mouse.up();
  await page.waitForFunction(() => window.demo.result.digit !== null);
  const stroke = await page.evaluate(() => window.demo.result.digit);
  console.log(`a vertical mouse stroke: ${stroke}`);
  check(stroke === 1, `a vertical mouse stroke was read as ${stroke}`);

  // The screenshot: a test digit drawn on the pad, answered.
  await page.evaluate((p) => window.demo.drawDigit(p), Array.from(test.images[7]));
  await page.screenshot({ path: `${out}/page.png`, fullPage: true });
} finally {
  await browser.close();
  server.process.kill();
}
if (failures.length) {
  console.error(`FAILED (${failures.length}):\n${failures.slice(0, 20).join("\n")}`);
  process.exit(1);
}
console.log("page test passed");
