#!/usr/bin/env python3
"""What the bf16 and FP8 latent caches (dsv3c --kv-cache) cost on a trained
model: docs/fp8.md's table. Reads the logits `dsv3-run forward` wrote for
held-out text (the naive forward, and the decode entry through each cache)
and the ids; prints, per storage, the next-token loss and perplexity, and
against the f32 cache the largest logit change, argmax agreement and mean
KL divergence.

usage: kv-cache-study.py IDS.txt NAIVE.st F32.st BF16.st FP8.st"""
import json
import struct
import sys

import numpy as np


def read_logits(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        t = header["logits"]
        assert t["dtype"] == "F32", t
        begin, end = t["data_offsets"]
        f.seek(8 + n + begin)
        return np.frombuffer(f.read(end - begin), dtype="<f4").reshape(t["shape"]).astype(np.float64)


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


ids = np.array([[int(v) for v in row.split(",")] for row in open(sys.argv[1]).read().strip().split("/")])
names = ["naive forward", "f32 cache", "bf16 cache", "fp8 cache"]
logits = [read_logits(p) for p in sys.argv[2:6]]
ref = log_softmax(logits[1])
scale = np.abs(logits[1]).max()
bf16 = log_softmax(logits[2])
print(f"{ids.shape[0]} held-out sequences of {ids.shape[1]} tokens")
print(f"{'':14} {'loss':>7} {'ppl':>7} {'max|dlogit|/max|logit|':>23} {'argmax':>14} {'KL vs f32':>10} {'KL vs bf16':>10}")
for name, l in zip(names, logits):
    lp = log_softmax(l)
    nll = -np.take_along_axis(lp[:, :-1], ids[:, 1:, None], -1).mean()
    d = np.abs(l - logits[1]).max() / scale
    agree = (l.argmax(-1) == logits[1].argmax(-1)).sum()
    kl = (np.exp(ref) * (ref - lp)).sum(-1).mean()
    klb = (np.exp(bf16) * (bf16 - lp)).sum(-1).mean()
    print(f"{name:14} {nll:7.4f} {np.exp(nll):7.3f} {d:23.2e} {agree:>6} / {ids.size:<5} {kl:10.2e} {klb:10.2e}")
