"""ONNX Runtime against infer-core on the 10,000 MNIST test digits: the models `trainer export
--format onnx` writes must load and agree with the files they came from (f32 logits within 1e-4
absolute; the integer models' classes on every digit), with ONNX Runtime's default session
options (all graph optimizations: the QDQ nodes fused into its integer kernels) and with only
its basic ones (`ORT_ENABLE_BASIC`).

Run by .ci/run (ONNX Runtime from PyPI), or by hand:
    python3 -m venv /tmp/ort-venv && /tmp/ort-venv/bin/pip install onnxruntime numpy
    /tmp/ort-venv/bin/python trainer/tests/onnx_runtime_check.py data/mnist \
        f32 m-f32.onnx m-f32.logits int8 m-int8.onnx m-int8.logits ...
where each *.logits file is `trainer eval MODEL --logits FILE` of the model exported.
`--options default` (first) checks with the default session options only: what an emulated CPU
runs, where the fused integer kernels are the ones that differ by CPU.
"""
import gzip, struct, sys

import numpy as np
import onnxruntime as ort


def test_images(folder):
    raw = gzip.decompress(open(f"{folder}/t10k-images-idx3-ubyte.gz", "rb").read())
    count = struct.unpack(">I", raw[4:8])[0]
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, 784)


def main():
    pixels = test_images(sys.argv[1]).astype(np.float32) / 255.0
    failed = False
    args = sys.argv[2:]
    levels = {"default": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    if args[:2] == ["--options", "default"]:
        args = args[2:]
        del levels["basic"]
    if not args or len(args) % 3:
        sys.exit("usage: onnx_runtime_check.py MNIST-FOLDER [--options default] "
                 "(KIND ONNX LOGITS)...")
    for kind, onnx_path, logits_path in zip(args[0::3], args[1::3], args[2::3]):
        want = np.fromfile(logits_path, "<f4").reshape(-1, 10)
        for name, level in levels.items():
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
            got = session.run(["logits"], {"pixels": pixels})[0]
            agree = float(np.mean(got.argmax(1) == want.argmax(1)))
            error = float(np.max(np.abs(got - want)))
            ok = error <= 1e-4 if kind == "f32" else agree == 1.0
            print(f"onnxruntime {ort.__version__} {kind} {onnx_path} ({name} options): classes agree on "
                  f"{agree:.4%} of {len(want)} digits, largest logit difference {error:.2e} - "
                  f"{'ok' if ok else 'FAILED'}")
            failed |= not ok
    sys.exit(1 if failed else 0)


main()
