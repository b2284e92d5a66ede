#!/usr/bin/env python3
"""Splits SRC/model.safetensors into N shards plus model.safetensors.index.json
in DST (the layout of sharded Hugging Face checkpoints): shard.py SRC DST N
[--drop-shard K] (the index then names a shard that is not there)."""
import json
import os
import struct
import sys

src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
drop = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--drop-shard" else None
b = open(os.path.join(src, "model.safetensors"), "rb").read()
hl = struct.unpack("<Q", b[:8])[0]
header = json.loads(b[8:8 + hl])
data = b[8 + hl:]
names = sorted(k for k in header if k != "__metadata__")
os.makedirs(dst, exist_ok=True)
weight_map = {}
for s in range(n):
    part = names[s::n]
    fname = f"model-{s + 1:05d}-of-{n:05d}.safetensors"
    h, blob, off = {}, b"", 0
    for k in part:
        e = header[k]
        chunk = data[e["data_offsets"][0]:e["data_offsets"][1]]
        h[k] = {"dtype": e["dtype"], "shape": e["shape"], "data_offsets": [off, off + len(chunk)]}
        blob += chunk
        off += len(chunk)
        weight_map[k] = fname
    hb = json.dumps(h).encode()
    if s != drop:
        open(os.path.join(dst, fname), "wb").write(struct.pack("<Q", len(hb)) + hb + blob)
json.dump({"metadata": {}, "weight_map": weight_map},
          open(os.path.join(dst, "model.safetensors.index.json"), "w"))
