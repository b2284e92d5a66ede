#!/usr/bin/env python3
"""Safetensors helpers for the FP8 checkpoint test, in plain Python (no
numpy), independent of dsv3's loader:

  fp8_tools.py dequantize SRC DST BR BC   e4m3 weights x their <name>_scale_inv
                                           blocks (BR x BC) -> an F32 checkpoint
  fp8_tools.py compare A B TOL            logits of two files: max |a - b| /
                                           max |b| <= TOL (prints it)
  fp8_tools.py agreement A B              argmax agreement of two logit files
  fp8_tools.py accuracy A B MEDIAN_TOL     per position max |a - b| / max |b|:
                                           the median <= MEDIAN_TOL (prints the
                                           median, the max and argmax agreement)
  fp8_tools.py gemm FILE TOL               dsv3-run fp8-gemm --out FILE: y against
                                           this file's own FP8 GEMM of x and the
                                           e4m3 weight (SEMANTICS.md 9, written
                                           from the spec, not from the runtime)
  fp8_tools.py train-gemm FILE TOL         dsv3-run fp8-gemm --train --out FILE:
                                           dx and dw against this file's own FP8
                                           training GEMMs (docs/fp8.md)
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


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


E4M3 = [e4m3(c) for c in range(127)]  # the finite non-negative codes, increasing


def to_e4m3(v):
    """Nearest e4m3fn value of a float32 (ties to the even code), saturating."""
    a = abs(v)
    if a >= 448.0:
        q = 448.0
    else:
        lo = max(c for c in range(127) if E4M3[c] <= a)
        hi = lo + 1
        dl, dh = a - E4M3[lo], E4M3[hi] - a
        q = E4M3[lo] if dl < dh or (dl == dh and lo % 2 == 0) else E4M3[hi]
    return -q if v < 0 else q


def gemm(path, tol):
    _, t = read(path)
    (M, K), x = t["x"][1], floats("F32", t["x"][2])
    (N, _), wraw = t["w"][1], t["w"][2]
    sshape, sw = t["w_scale_inv"][1], floats("F32", t["w_scale_inv"][2])
    y = floats("F32", t["y"][2])
    blk = 128
    nb = (K + blk - 1) // blk
    worst, ymax = 0.0, 0.0
    ref = []
    for m in range(M):
        xq, sa = [], []
        for kb in range(nb):
            chunk = x[m * K + kb * blk: m * K + min(K, (kb + 1) * blk)]
            s = f32(f32(max(1e-4, max(abs(v) for v in chunk))) / 448.0)
            sa.append(s)
            xq += [to_e4m3(f32(v / s)) for v in chunk]
        for n in range(N):
            acc = 0.0
            for kb in range(nb):
                lo, hi = kb * blk, min(K, (kb + 1) * blk)
                dot = sum(xq[k] * e4m3(wraw[n * K + k]) for k in range(lo, hi))
                acc += dot * f32(sa[kb] * sw[(n // blk) * sshape[1] + kb])
            ref.append(acc)
    ymax = max(abs(r) for r in ref)
    worst = max(abs(a - b) for a, b in zip(y, ref)) / ymax
    ok = worst <= tol
    print(f"fp8 GEMM vs the spec's FP8 GEMM: max |y - ref| / max |ref| = {worst:.3e} "
          f"(tolerance {tol:g}): {'PASS' if ok else 'FAIL'}")
    return ok


def quantize(values, lo_floor):
    """One tile's scale and e4m3 values, as SEMANTICS.md 9 quantizes:
    s = max(amax, floor) / 448 in float32 (a weight block: 1 when all zero),
    values e4m3(v / s)."""
    amax = f32(max(abs(v) for v in values))
    if lo_floor is None:
        s = f32(amax / 448.0) if amax > 0 else 1.0
    else:
        s = f32(f32(max(lo_floor, amax)) / 448.0)
    return s, [to_e4m3(f32(v / s)) for v in values]


def train_gemm(path, tol):
    """fp8-gemm --train --out FILE: dx and dw against this file's own FP8
    training GEMMs (docs/fp8.md, "FP8 training"): Dgrad dy (1 x 128 tiles)
    times w (128 x 128 blocks), Wgrad dy^T x (both in 128 x 1 tiles over the
    tokens), each block's e4m3 products summed, then scaled in float32."""
    _, t = read(path)
    (M, N), dy = t["dy"][1], floats("F32", t["dy"][2])
    (_, K), w = t["w"][1], floats("F32", t["w"][2])
    x = floats("F32", t["x"][2])
    dx, dw = floats("F32", t["dx"][2]), floats("F32", t["dw"][2])
    blk = 128
    nb, kb = (N + blk - 1) // blk, (K + blk - 1) // blk
    wq, sw = [0.0] * (N * K), {}
    for bi in range(nb):
        for bj in range(kb):
            cells = [(n, k) for n in range(bi * blk, min(N, (bi + 1) * blk))
                     for k in range(bj * blk, min(K, (bj + 1) * blk))]
            s, q = quantize([w[n * K + k] for n, k in cells], None)
            sw[bi, bj] = s
            for (n, k), v in zip(cells, q):
                wq[n * K + k] = v
    ok = True
    ref = []
    for m in range(M):
        row = [0.0] * K
        for bi in range(nb):
            lo, hi = bi * blk, min(N, (bi + 1) * blk)
            s, q = quantize(dy[m * N + lo:m * N + hi], 1e-4)
            for k in range(K):
                dot = sum(q[j] * wq[(lo + j) * K + k] for j in range(hi - lo))
                row[k] += dot * f32(s * sw[bi, k // blk])
        ref += row
    err = max(abs(a - b) for a, b in zip(dx, ref)) / max(abs(r) for r in ref)
    ok &= err <= tol
    print(f"Dgrad vs the spec's: max |dx - ref| / max |ref| = {err:.3e} (tolerance {tol:g}): "
          f"{'PASS' if err <= tol else 'FAIL'}")
    ref = [0.0] * (N * K)
    for tb in range((M + blk - 1) // blk):
        lo, hi = tb * blk, min(M, (tb + 1) * blk)
        cols_dy = [quantize([dy[m * N + n] for m in range(lo, hi)], 1e-4) for n in range(N)]
        cols_x = [quantize([x[m * K + k] for m in range(lo, hi)], 1e-4) for k in range(K)]
        for n in range(N):
            sa, qa = cols_dy[n]
            for k in range(K):
                sb, qb = cols_x[k]
                ref[n * K + k] += sum(a * b for a, b in zip(qa, qb)) * f32(sa * sb)
    err = max(abs(a - b) for a, b in zip(dw, ref)) / max(abs(r) for r in ref)
    ok &= err <= tol
    print(f"Wgrad vs the spec's: max |dw - ref| / max |ref| = {err:.3e} (tolerance {tol:g}): "
          f"{'PASS' if err <= tol else 'FAIL'}")
    return ok


def accuracy(a, b, tol):
    (x, shape), (y, _) = logits(a), logits(b)
    V = shape[-1]
    rows = len(x) // V
    ymax = max(abs(v) for v in y)
    errs, agree = [], 0
    for r in range(rows):
        xs, ys = x[r * V:(r + 1) * V], y[r * V:(r + 1) * V]
        errs.append(max(abs(p - q) for p, q in zip(xs, ys)) / ymax)
        agree += xs.index(max(xs)) == ys.index(max(ys))
    errs.sort()
    median = errs[len(errs) // 2]
    ok = median <= tol
    print(f"per position max |a - b| / max |b|: median {median:.3e} (tolerance {tol:g}), "
          f"max {errs[-1]:.3e}; argmax agreement {agree}/{rows}: {'PASS' if ok else 'FAIL'}")
    return ok


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "dequantize":
        dequantize(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "compare":
        return compare(args[0], args[1], float(args[2]))
    elif cmd == "gemm":
        sys.exit(0 if gemm(args[0], float(args[1])) else 1)
    elif cmd == "train-gemm":
        sys.exit(0 if train_gemm(args[0], float(args[1])) else 1)
    elif cmd == "accuracy":
        sys.exit(0 if accuracy(args[0], args[1], float(args[2])) else 1)
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
