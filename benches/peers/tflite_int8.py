"""TensorFlow Lite's int8 model of the same trained weights, one image per call, one thread, next
to infer-core's criterion median from the same machine: prints both and their ratio.

The peer users would pick instead: the trainer's f32 weights (out/mlp-f32.bin) go into the Keras
tutorial's model, TFLiteConverter makes a fully int8 model of it (calibrated on 1,000 training
digits), and tf.lite's interpreter (XNNPACK, one thread) classifies real test digits. Its time per
call includes the Python binding's overhead, so the same loop on a trivial one-op int8 model is
measured too and subtracted ("net").

Set-up (once, ~1.5 GB; not needed by the project's build or tests):
    python3 -m venv /tmp/keras-venv && /tmp/keras-venv/bin/pip install tensorflow-cpu==2.21.0 keras==3.15.1 ai-edge-litert
Run, right after `cargo bench -p benches --bench inference -- forward/int8` in the same session:
    cargo run -p trainer && /tmp/keras-venv/bin/python benches/peers/tflite_int8.py
It also saves its figures in target/criterion/peer-tflite-int8.json, which
`cargo run -p benches --bin report` adds to BENCHMARKS.md.
"""
import gzip, json, os, statistics, struct, sys, time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

try:  # LiteRT, TensorFlow Lite's successor (`pip install ai-edge-litert`), where installed.
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    ENGINE = f"LiteRT {version('ai-edge-litert')}"
except ImportError:
    Interpreter = tf.lite.Interpreter
    ENGINE = f"tf.lite {tf.__version__}"

REPO = Path(__file__).resolve().parents[2]
HIDDEN, INPUTS, CLASSES = 512, 784, 10


def varint(buf, pos):
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def read_f32_model(path):
    """The f32 model file of a 784-512-10 network (infer-core's format version 5: magic, version,
    layer count, one weight-kind byte per layer, the widths, then per layer its sections, each a
    varint length and the bytes: pad, bias, pad, weights input-major): w1, b1, w2 (hidden-major),
    b2."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"MNML" or buf[4] != 5 or buf[5] != 2 or buf[6:8] != b"\x02\x02":
        raise SystemExit(f"{path}: not a version-5 f32 model file of two layers")
    pos = 8
    widths = []
    for _ in range(3):
        w, pos = varint(buf, pos)
        widths.append(w)
    if widths != [INPUTS, HIDDEN, CLASSES]:
        raise SystemExit(f"{path}: shape {widths}, not 784-512-10")
    sections = []
    while pos < len(buf) - 4:
        n, pos = varint(buf, pos)
        sections.append(buf[pos : pos + n])
        pos += n
    # Layer 1: pad, b1, pad, w1; layer 2: pad, b2, pad, w2.
    b1, w1, b2, w2 = (np.frombuffer(s, "<f4") for s in sections[1::2])
    return w1.reshape(INPUTS, HIDDEN), b1, w2.reshape(HIDDEN, CLASSES), b2


def idx(path):
    raw = gzip.decompress(Path(path).read_bytes())
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def int8_tflite(model, calibration):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None, :]] for x in calibration)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def per_call_us(interpreter, inputs, rounds=15, reps=20):
    """Median over rounds of the mean time of one set_tensor + invoke + get_tensor."""
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            for x in inputs:
                interpreter.set_tensor(inp, x)
                interpreter.invoke()
                interpreter.get_tensor(out)
        times.append((time.perf_counter() - t0) / (reps * len(inputs)) * 1e6)
    return statistics.median(times)


def main():
    f32_path = sys.argv[1] if len(sys.argv) > 1 else REPO / "out/mlp-f32.bin"
    w1, b1, w2, b2 = read_f32_model(f32_path)
    from keras import layers, models

    net = models.Sequential(
        [layers.Input(shape=(INPUTS,)), layers.Dense(HIDDEN, activation="relu"), layers.Dense(CLASSES, activation="softmax")]
    )
    net.layers[0].set_weights([w1, b1])
    net.layers[1].set_weights([w2, b2])

    data = REPO / "data/mnist"
    train = idx(data / "train-images-idx3-ubyte.gz").reshape(-1, INPUTS)[:1000].astype("float32") / 255
    test = idx(data / "t10k-images-idx3-ubyte.gz").reshape(-1, INPUTS)
    labels = idx(data / "t10k-labels-idx1-ubyte.gz")

    model = int8_tflite(net, train)
    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    scale, zero = detail["quantization"]
    quantized = np.clip(np.round(test / 255 / scale + zero), -128, 127).astype(np.int8)

    # Same network: its accuracy on the whole test set.
    inp, out = detail["index"], interpreter.get_output_details()[0]["index"]
    correct = 0
    for x, y in zip(quantized, labels):
        interpreter.set_tensor(inp, x[None, :])
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out)) == y)

    # A trivial int8 model: the binding's cost of one call.
    trivial = tf.keras.Sequential([tf.keras.layers.Input(shape=(1,)), tf.keras.layers.ReLU()])
    tiny = Interpreter(model_content=int8_tflite(trivial, np.ones((10, 1), "float32")), num_threads=1)
    tiny.allocate_tensors()

    images = [x[None, :] for x in quantized[:256]]
    gross = per_call_us(interpreter, images)
    overhead = per_call_us(tiny, [np.zeros((1, 1), np.int8)] * 256)
    net_us = gross - overhead
    print(f"tflite int8 ({ENGINE}, one thread): {len(model)} bytes, test accuracy {correct / len(labels):.4f}")
    print(f"tflite int8 one image: {gross:.3f} us per call, call overhead {overhead:.3f} us, net {net_us:.3f} us")
    # For `cargo run -p benches --bin report`, which puts it in BENCHMARKS.md beside criterion's.
    record = REPO / "target/criterion/peer-tflite-int8.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({
        "engine": f"{ENGINE} (TensorFlow {tf.__version__} converter), XNNPACK, one thread",
        "model_bytes": len(model),
        "test_accuracy": correct / len(labels),
        "per_call_us": gross,
        "call_overhead_us": overhead,
        "net_us": net_us,
    }))

    # infer-core's best kernel, from the criterion run of this session.
    found = sorted((REPO / "target/criterion/forward").glob("int8_*_batch-1/new/estimates.json"))
    for path in found:
        kernel = path.parts[-3][len("int8_") : -len("_batch-1")]
        ours = json.loads(path.read_text())["median"]["point_estimate"] / 1000
        print(f"infer-core int8 {kernel}: {ours:.3f} us  ratio to tflite net: {ours / net_us:.2f}x")
    if not found:
        print("no criterion results: run `cargo bench -p benches --bench inference -- forward/int8` first")


if __name__ == "__main__":
    main()
