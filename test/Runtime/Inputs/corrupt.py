#!/usr/bin/env python3
"""Writes corrupted copies of a checkpoint or artifact for the bad-input
tests: corrupt.py KIND SRC DST."""
import json
import shutil
import struct
import sys

kind, src, dst = sys.argv[1:4]


def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def write(path, header, data, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)


if kind in ("truncated", "header-too-long", "header-not-json", "missing-tensor",
            "wrong-shape", "wrong-dtype", "overlap", "out-of-range"):
    header, data = read(src + "/model.safetensors")
    shutil.os.makedirs(dst, exist_ok=True)
    out = dst + "/model.safetensors"
    name = "model.layers.0.self_attn.kv_b_proj.weight"
    if kind == "truncated":
        b = open(src + "/model.safetensors", "rb").read()
        open(out, "wb").write(b[: len(b) // 2])
    elif kind == "header-too-long":
        b = open(src + "/model.safetensors", "rb").read()
        open(out, "wb").write(struct.pack("<Q", len(b) * 2) + b[8:])
    elif kind == "header-not-json":
        write(out, None, data, raw_header=b"{not json" + b" " * 7)
    elif kind == "missing-tensor":
        del header[name]
        write(out, header, data)
    elif kind == "wrong-shape":
        e = header[name]
        e["shape"] = [e["shape"][1], e["shape"][0]]
        write(out, header, data)
    elif kind == "wrong-dtype":
        e = header[name]
        e["dtype"] = "I32"
        write(out, header, data)
    elif kind == "overlap":
        e = header[name]
        other = header["model.norm.weight"]
        size = e["data_offsets"][1] - e["data_offsets"][0]
        osize = other["data_offsets"][1] - other["data_offsets"][0]
        other["data_offsets"] = [e["data_offsets"][0], e["data_offsets"][0] + osize]
        write(out, header, data)
    elif kind == "out-of-range":
        header[name]["data_offsets"][1] += 10 ** 9
        write(out, header, data)
elif kind in ("manifest-version", "manifest-missing-field", "manifest-bad-buffer",
              "manifest-unknown-kernel", "manifest-not-json"):
    shutil.copytree(src, dst, dirs_exist_ok=True)
    path = dst + "/manifest.json"
    if kind == "manifest-not-json":
        open(path, "w").write("{\"format\": ")
        sys.exit(0)
    m = json.load(open(path))
    if kind == "manifest-version":
        m["version"] = 999
    elif kind == "manifest-missing-field":
        del m["entries"]["forward"]["launches"][2]["kernel"]
    elif kind == "manifest-bad-buffer":
        m["entries"]["forward"]["launches"][1]["inputs"][0] = {"buffer": 100000}
    elif kind == "manifest-unknown-kernel":
        m["entries"]["forward"]["launches"][0]["kernel"] = "warp_drive"
    json.dump(m, open(path, "w"))
else:
    sys.exit("unknown kind " + kind)
