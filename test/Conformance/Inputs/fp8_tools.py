#!/usr/bin/env python3
"""Safetensors helpers for the FP8 checkpoint test, in plain Python (no
numpy), independent of dsv3's loader:

  fp8_tools.py dequantize SRC DST BR BC   e4m3 weights x their <name>_scale_inv
                                           blocks (BR x BC) -> an F32 checkpoint
  fp8_tools.py compare A B TOL            logits of two files: max |a - b| /
                                           max |b| <= TOL (prints it)
  fp8_tools.py agreement A B              argmax agreement of two logit files
  fp8_tools.py drop SRC DST NAME          SRC without tensor NAME
  fp8_tools.py reshape SRC DST NAME R C   SRC with tensor NAME's shape set to
                                           [R, C] (data cut or zero-padded)
"""
import json
import math
import struct
import sys


def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = b[8 + n:]
    tensors = {}
    for name, h in header.items():
        s, e = h["data_offsets"]
        tensors[name] = (h["dtype"], h["shape"], data[s:e])
    return meta, tensors


def write(path, meta, tensors):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


def e4m3(byte):
    sign, exp, man = byte >> 7, (byte >> 3) & 15, byte & 7
    if exp == 15 and man == 7:
        return math.nan
    v = man * 2.0 ** -9 if exp == 0 else (8 + man) * 2.0 ** (exp - 10)
    return -v if sign else v


def floats(dtype, raw):
    if dtype == "F32":
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if dtype == "BF16":
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0]
                for h in struct.unpack(f"<{len(raw) // 2}H", raw)]
    raise SystemExit(f"unexpected dtype {dtype}")


def dequantize(src, dst, br, bc):
    meta, t = read(src)
    out = {}
    for name, (dtype, shape, raw) in t.items():
        if name.endswith("_scale_inv"):
            continue
        if dtype != "F8_E4M3":
            out[name] = (dtype, shape, raw)
            continue
        sdt, sshape, sraw = t[name + "_scale_inv"]
        scale = floats(sdt, sraw)
        rows, cols = shape
        vals = [e4m3(raw[i]) * scale[(i // cols) // br * sshape[1] + (i % cols) // bc]
                for i in range(rows * cols)]
        # The exact product (4 + 24 bits) rounded to float32 once, as the
        # runtime's loader does.
        out[name] = ("F32", shape, struct.pack(f"<{len(vals)}f", *vals))
    write(dst, meta, out)


def logits(path):
    _, t = read(path)
    dtype, shape, raw = t["logits"]
    return floats(dtype, raw), shape


def compare(a, b, tol):
    x, _ = logits(a)
    y, _ = logits(b)
    err = max(abs(p - q) for p, q in zip(x, y)) / max(abs(q) for q in y)
    print(f"max |a - b| / max |b| = {err:.3e} (tolerance {tol:g}): "
          f"{'PASS' if err <= tol else 'FAIL'}")
    return 0 if err <= tol else 1


def agreement(a, b):
    x, shape = logits(a)
    y, _ = logits(b)
    v = shape[-1]
    rows = len(x) // v
    same = sum(max(range(v), key=lambda j: x[r * v + j]) ==
               max(range(v), key=lambda j: y[r * v + j]) for r in range(rows))
    err = max(abs(p - q) for p, q in zip(x, y)) / max(abs(q) for q in y)
    print(f"argmax agreement {same}/{rows}, max relative logit difference {err:.3e}")
    return 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "dequantize":
        dequantize(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "compare":
        return compare(args[0], args[1], float(args[2]))
    elif cmd == "agreement":
        return agreement(args[0], args[1])
    elif cmd == "drop":
        meta, t = read(args[0])
        del t[args[2]]
        write(args[1], meta, t)
    elif cmd == "reshape":
        meta, t = read(args[0])
        dtype, shape, raw = t[args[2]]
        r, c = int(args[3]), int(args[4])
        size = {"F32": 4, "BF16": 2, "F8_E4M3": 1}[dtype] * r * c
        t[args[2]] = (dtype, [r, c], (raw + bytes(size))[:size])
        write(args[1], meta, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
