#!/usr/bin/env python3
"""MNIST test digits for the C firmware.

    digits.py DATA N --raw FILE                   the first N test digits, raw (784 bytes each)
    digits.py DATA N --expected FILE --header H   digits.h: the digits, their labels and the
                                                  host's classes (one per line of FILE)

DATA is a folder holding t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz].
"""
import argparse
import gzip
import os
import struct
import sys


def idx(folder, name, dims):
    path = os.path.join(folder, name)
    opener = open
    if not os.path.exists(path):
        path += ".gz"
        opener = gzip.open
    with opener(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != 0x800 + dims:
        sys.exit(f"{path}: not an IDX file of {dims} dimensions")
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return shape, data[4 + 4 * dims :]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("data")
    p.add_argument("n", type=int)
    p.add_argument("--raw")
    p.add_argument("--expected")
    p.add_argument("--header")
    a = p.parse_args()
    (count, rows, cols), pixels = idx(a.data, "t10k-images-idx3-ubyte", 3)
    _, labels = idx(a.data, "t10k-labels-idx1-ubyte", 1)
    size = rows * cols
    if not 0 < a.n <= count:
        sys.exit(f"N must be 1 to {count}")
    if a.raw:
        with open(a.raw, "wb") as f:
            f.write(pixels[: a.n * size])
    if a.header:
        with open(a.expected) as f:
            expected = [int(line.split()[0]) for line in f if line.strip()]
        if len(expected) != a.n:
            sys.exit(f"{a.expected}: {len(expected)} classes for {a.n} digits")
        out = [
            "/* The first %d MNIST test digits, their labels and the host's classes (digits.py). */" % a.n,
            "#ifndef DIGITS_H",
            "#define DIGITS_H",
            "#include <stdint.h>",
            "#define DIGITS %d" % a.n,
            "#define DIGIT_BYTES %d" % size,
            "static const uint8_t digits[DIGITS][DIGIT_BYTES] = {",
        ]
        for i in range(a.n):
            d = pixels[i * size : (i + 1) * size]
            out.append("    {" + ",".join(str(b) for b in d) + "},")
        out.append("};")
        out.append("static const uint8_t labels[DIGITS] = {" + ",".join(str(b) for b in labels[: a.n]) + "};")
        out.append("static const uint8_t expected[DIGITS] = {" + ",".join(map(str, expected)) + "};")
        out.append("#endif")
        with open(a.header, "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
