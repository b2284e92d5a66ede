#!/usr/bin/env python3
"""Two logits files (dsv3-run forward --out) against each other: the largest
difference relative to A's largest magnitude, and how many positions'
greedy tokens (argmax) agree. Usage: logits-diff.py A.safetensors
B.safetensors [--bound REL] (exit 1 past the bound or on any argmax
disagreement where A's top two logits differ by more than the bound)."""
import json
import struct
import sys

import numpy as np


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", f"{path}: {name} is {t['dtype']}, not F32"
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=np.float32).reshape(t["shape"])
    return out


args = sys.argv[1:]
bound = None
if "--bound" in args:
    i = args.index("--bound")
    bound = float(args[i + 1])
    del args[i : i + 2]
if len(args) != 2:
    sys.exit(__doc__)
a, b = read(args[0]), read(args[1])
ok = True
for name in sorted(a):
    x, y = a[name].astype(np.float64), b[name].astype(np.float64)
    scale = float(np.abs(x).max()) or 1.0
    rel = float(np.abs(x - y).max()) / scale
    xs, ys = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    ax, ay = xs.argmax(-1), ys.argmax(-1)
    agree = int((ax == ay).sum())
    # A disagreement counts only where A's top two are further apart than
    # the bound allows either side to move.
    top2 = np.sort(xs, -1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * (bound or 0) * scale
    hard = int(((ax != ay) & clear).sum())
    verdict = ""
    if bound is not None:
        good = rel <= bound and hard == 0
        ok = ok and good
        verdict = " PASS" if good else " FAIL"
    # Per position: a kernel that is wrong somewhere moves most positions of
    # the sequences it touches; a correct one that rounds otherwise moves
    # most positions by rounding and a few (a flipped near-tied expert) by
    # O(1).
    pos = np.abs(xs - ys).max(-1) / scale
    q = np.quantile(pos, [0.5, 0.9, 0.99])
    seqs = x.shape[0] if x.ndim == 3 else 1
    per_seq = " ".join(f"{float(v):.1e}" for v in pos.reshape(seqs, -1).max(-1))
    print(f"{name}: max|A-B| / max|A| {rel:.3e}, argmax agree {agree}/{len(ax)} "
          f"({hard} clear disagreements){verdict}; positions: median {q[0]:.1e}, "
          f"90% {q[1]:.1e}, 99% {q[2]:.1e}, over 1e-2 {int((pos > 1e-2).sum())}; "
          f"max per sequence {per_seq}")
sys.exit(0 if ok else 1)
