"""A Keras user's own network through `trainer import`: the tutorial recipe with a 128-unit hidden
layer (784-128-10), trained by Keras, converted to ONNX by tf2onnx; prints Keras's own test
accuracy, to compare with what `trainer import` reports for the same file.

Not run by CI (TensorFlow is 1.5 GB). Set-up, once:
    python3 -m venv /tmp/keras-venv
    /tmp/keras-venv/bin/pip install tensorflow-cpu==2.21.0 keras==3.15.1 tf2onnx==1.17.0 onnx==1.23.2
Run, from the repository:
    /tmp/keras-venv/bin/python trainer/tests/keras_import_check.py data/mnist keras-128.onnx
    cargo run -q -p trainer -- import keras-128.onnx --out keras-128 --weights both
"""
import gzip, os, struct, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras, tensorflow as tf, tf2onnx

data, out = sys.argv[1], sys.argv[2]
def idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b": raw = gzip.decompress(raw)
    ndim = struct.unpack(">I", raw[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
x_train = idx(f"{data}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype("float32") / 255
y_train = keras.utils.to_categorical(idx(f"{data}/train-labels-idx1-ubyte.gz"), 10)
x_test = idx(f"{data}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype("float32") / 255
y_test = idx(f"{data}/t10k-labels-idx1-ubyte.gz")
keras.utils.set_random_seed(42)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer=keras.optimizers.RMSprop(), loss="categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=128, epochs=5, verbose=0)
pred = model.predict(x_test, batch_size=1000, verbose=0).argmax(1)
print(f"keras 784-128-10 test accuracy {np.mean(pred == y_test):.4f} ({int(np.sum(pred == y_test))} of 10000)")
spec = (tf.TensorSpec((None, 784), tf.float32, name="pixels"),)
# tf2onnx's from_keras does not read Keras 3 models: convert the model's call as a tf.function.
fn = tf.function(lambda pixels: model(pixels, training=False), input_signature=spec)
tf2onnx.convert.from_function(fn, input_signature=spec, opset=13, output_path=out)
