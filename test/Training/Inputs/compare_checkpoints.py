#!/usr/bin/env python3
"""Compares two safetensors checkpoints tensor by tensor.

usage: compare_checkpoints.py A.safetensors B.safetensors RTOL

Both must hold the same tensor names, shapes and dtypes; each tensor's
largest difference, relative to the larger of its largest magnitude and
1e-12, must be at most RTOL. Prints the worst tensor and a last line
"N tensors, worst relative difference X (NAME)"; exits 1 on any mismatch.
"""
import array
import json
import struct
import sys

# Plain Python (no numpy on the CI machine): the tiny models' checkpoints
# are small.
CODES = {"F32": "f", "F64": "d", "BF16": "H", "I64": "q"}


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = array.array(CODES[info["dtype"]])
        arr.frombytes(data[a:b])
        if info["dtype"] == "BF16":
            arr = array.array("f", struct.pack(f"<{len(arr)}I", *[h << 16 for h in arr]))
        out[name] = (info["dtype"], info["shape"], [float(v) for v in arr])
    return out


def main():
    a, b, rtol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
    if set(a) != set(b):
        print("tensor names differ: only in A:", sorted(set(a) - set(b))[:5],
              "only in B:", sorted(set(b) - set(a))[:5])
        return 1
    worst, worst_name, bad = 0.0, "", 0
    for name in sorted(a):
        da, sa, xa = a[name]
        db, sb, xb = b[name]
        if da != db or sa != sb:
            print(f"{name}: {da}{sa} vs {db}{sb}")
            bad += 1
            continue
        scale = max([abs(v) for v in xa] + [abs(v) for v in xb] + [1e-12])
        rel = max([abs(p - q) for p, q in zip(xa, xb)] + [0.0]) / scale
        if rel > rtol:
            print(f"{name}: relative difference {rel:.3g} > {rtol:g}")
            bad += 1
        if rel >= worst:
            worst, worst_name = rel, name
    print(f"{len(a)} tensors, worst relative difference {worst:.3g} ({worst_name})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
