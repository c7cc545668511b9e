// The page: a drawing pad, infer-core (WebAssembly) classifying what is drawn, the model's facts.
// The exports it calls are described in web/src/lib.rs.

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen").getContext("2d");
const $ = (id) => document.getElementById(id);

let wasm; // the module's exports
let facts = null; // the current model's, as load_model gave them
let blank = true;

/// The last message of the module (UTF-8 in its memory).
function message() {
  const bytes = new Uint8Array(wasm.memory.buffer, wasm.message(), wasm.message_len());
  return new TextDecoder().decode(bytes);
}

function showMessage(text) {
  const m = $("message");
  m.textContent = text;
  m.hidden = !text;
}

/// Validates `bytes` as a model (infer-core's from_bytes, in the module) and uses it if it is one.
function loadModel(bytes, name) {
  const ptr = wasm.model_buffer(bytes.length);
  new Uint8Array(wasm.memory.buffer, ptr, bytes.length).set(bytes);
  if (wasm.load_model() !== 0) {
    showMessage(`${name} was not loaded: ${message()}`);
    return false;
  }
  facts = JSON.parse(message());
  facts.name = name;
  showMessage("");
  showFacts();
  recognize();
  return true;
}

function showFacts() {
  const layers = facts.layers
    .map((l) => (l.tiles < l.dense_tiles ? `${l.weights} (${(100 * l.tiles / l.dense_tiles).toFixed(0)} % of tiles kept)` : l.weights))
    .join(", ");
  const rows = [
    ["model", facts.name],
    ["kind", facts.kind],
    ["shape", facts.widths.join(" → ")],
    ["layers", layers],
    ["bytes", facts.bytes.toLocaleString("en")],
    ["kernel", facts.kernel],
  ];
  $("facts").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    dd.dataset.fact = k;
    return [dt, dd];
  }));
  const bars = $("bars");
  bars.replaceChildren();
  for (let c = 0; c < facts.classes; c++) {
    const li = document.createElement("li");
    li.innerHTML = `<span>${c}</span><span class="bar"><span></span></span><span class="p"></span>`;
    bars.append(li);
  }
}

/// Microseconds per call of `f`, over `n` calls, less those of an empty call.
function microseconds(f, n) {
  const time = (g) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) g();
    return (performance.now() - t0) * 1000 / n;
  };
  return Math.max(0, time(f) - time(wasm.nothing));
}

/// What the page last computed, for display and for tests.
const result = { digit: null, probabilities: [], pixels: null, error: null, microseconds: null };

/// Classifies the network's input already at `wasm.pixels()`.
function classifyPixels() {
  const digit = wasm.classify();
  if (digit < 0) {
    result.error = message();
    return;
  }
  result.digit = digit;
  result.probabilities = Array.from(new Float32Array(wasm.memory.buffer, wasm.probabilities(), wasm.classes()));
}

/// The pad's drawing → 784 pixels (trainer predict's preprocessing) → the model.
function recognize() {
  Object.assign(result, { digit: null, probabilities: [], pixels: null, error: null, microseconds: null });
  if (!facts || blank) return render();
  const image = ctx.getImageData(0, 0, pad.width, pad.height);
  const ptr = wasm.input_buffer(image.data.length);
  new Uint8Array(wasm.memory.buffer, ptr, image.data.length).set(image.data);
  if (wasm.pixels_from_rgba(pad.width, pad.height) !== 0) {
    result.error = message();
    return render();
  }
  result.pixels = new Uint8Array(wasm.memory.buffer, wasm.pixels(), 784).slice();
  classifyPixels();
  if (result.error === null) result.microseconds = microseconds(wasm.classify, 200);
  render();
}

function render() {
  $("answer").textContent = result.digit ?? "–";
  $("time").textContent = result.microseconds !== null
    ? `${result.microseconds.toFixed(2)} µs per inference (${facts.kernel})`
    : result.error ?? "";
  const img = seen.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = result.pixels ? result.pixels[i] : 0;
    img.data.set([v, v, v, 255], 4 * i);
  }
  seen.putImageData(img, 0, 0);
  const bars = $("bars").children;
  for (let c = 0; c < bars.length; c++) {
    const p = result.probabilities[c] ?? 0;
    bars[c].querySelector(".bar span").style.width = `${(100 * p).toFixed(1)}%`;
    bars[c].querySelector(".p").textContent = result.probabilities.length ? p.toFixed(3) : "";
    bars[c].classList.toggle("top", c === result.digit);
  }
}

function clear() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  blank = true;
  recognize();
}

// Drawing: pointer events cover mouse, pen and touch alike.
let last = null;
let pending = false;
function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
function stroke(to) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 18;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(...(last ?? to));
  ctx.lineTo(...to);
  ctx.stroke();
  last = to;
  blank = false;
  if (!pending) {
    pending = true;
    requestAnimationFrame(() => { pending = false; recognize(); });
  }
}
pad.addEventListener("pointerdown", (e) => { pad.setPointerCapture(e.pointerId); last = null; stroke(point(e)); });
pad.addEventListener("pointermove", (e) => { if (last) stroke(point(e)); });
for (const end of ["pointerup", "pointercancel"]) pad.addEventListener(end, () => { last = null; });
$("clear").addEventListener("click", clear);

// A user's own model: the file picker, or a file dropped anywhere on the page.
async function openFile(file) {
  if (file) loadModel(new Uint8Array(await file.arrayBuffer()), file.name);
}
$("file").addEventListener("change", (e) => openFile(e.target.files[0]));
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  openFile(e.dataTransfer.files[0]);
});

/// For tests and scripts: draw a 28 × 28 grey image (ink bright, as MNIST) on the pad as dark ink
/// on white, scaled up, and recognize it as if drawn; classify raw pixels, bypassing the pad.
window.demo = {
  result,
  get facts() { return facts; },
  loadModel,
  drawDigit(pixels) {
    const small = new OffscreenCanvas(28, 28);
    const img = new ImageData(28, 28);
    for (let i = 0; i < 784; i++) img.data.set([255 - pixels[i], 255 - pixels[i], 255 - pixels[i], 255], 4 * i);
    small.getContext("2d").putImageData(img, 0, 0);
    clear();
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, pad.width, pad.height);
    blank = false;
    recognize();
    return { ...result, pixels: result.pixels && Array.from(result.pixels) };
  },
  png: () => pad.toDataURL("image/png"),
  classifyRaw(pixels) {
    new Uint8Array(wasm.memory.buffer, wasm.pixels(), 784).set(pixels);
    classifyPixels();
    return result.digit;
  },
  wasm: () => wasm,
};

const started = performance.now();
window.demo.ready = (async () => {
  const { instance } = await WebAssembly.instantiateStreaming(fetch("infer_web.wasm"), {});
  wasm = instance.exports;
  clear();
  const response = await fetch("model.bin");
  if (response.ok) loadModel(new Uint8Array(await response.arrayBuffer()), "model.bin");
  else showMessage(`model.bin: ${response.status} ${response.statusText}; open a model file instead`);
  window.demo.startMilliseconds = performance.now() - started;
})().catch((e) => showMessage(`The page could not start: ${e}`));
