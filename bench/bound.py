#!/usr/bin/env python3
"""How fast the benchmark's prefill and training rows could be with the
fastest library kernels PyTorch reaches on this GPU: a measured floor for
issue 6's and 8's targets, not a model of dsv3.

Every GEMM a row needs (from the config alone, as bench/report.py counts
the FLOPs: the naive MLA projections, dense MLP, router, shared and routed
experts, lm_head) is timed at its own shape with cuBLAS (bf16 `X @ W.t()`,
FP8 `torch._scaled_mm` with DeepSeek-V3's 1x128 activation and 128x128
weight scales); the routed experts with `torch._grouped_mm` over counts
from a spread random routing, and, as an optimistic floor, as one dense
GEMM of all routed rows (the same FLOPs on one weight: no ragged tiles,
each weight tile read once for every row); the causal attention with every
`scaled_dot_product_attention` backend that takes MLA's head dims (192
for q and k, 128 for v; flash only with v zero-padded to 192, which
overstates it). Training adds each GEMM's two gradient GEMMs, the
attention's backward, lm_head at every position, and AdamW (fused, fp32
master weights and moments) at the slice's parameter count. Everything
else (norms, RoPE, routing, the gather and combine, SwiGLU, quantization,
cross entropy, the bf16 weight copies) counts as free, so the sum is a
floor: an implementation made of these kernels takes longer.

  bound.py --config bench/configs/v3-infer-3layer.json --prefill 4,2048 [--fp8]
  bound.py --config bench/configs/v3-train-2layer.json --train 4,4096
  bound.py ... --shapes   the GEMMs and FLOPs only (no GPU, no torch)

Prints one table a row (component, shape, ms, TFLOP/s, how) and the sum;
--json FILE appends the totals as JSON lines.
"""
import argparse
import json
import math

try: # --shapes runs without PyTorch (the tests)
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None


def timed(fn, reps=10, warm=3):
    """The mean ms of reps calls after warm-up (CUDA events around them)."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps


def randn(*shape, dtype=None):
    return torch.randn(*shape, device="cuda", dtype=dtype or torch.bfloat16).mul_(0.5)


class Gemms:
    """The forward GEMMs of one token pass: (name, count, rows, N, K)."""

    def __init__(self, c, tokens, head_rows):
        h, H = c["hidden_size"], c["num_attention_heads"]
        nope, rope, v = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        qk, kvr, ql = nope + rope, c["kv_lora_rank"], c.get("q_lora_rank")
        L, kd = c["num_hidden_layers"], min(c.get("first_k_dense_replace", 0), c["num_hidden_layers"])
        moe = L - kd
        mi, ns = c["moe_intermediate_size"], c.get("n_shared_experts", 0)
        T = tokens
        g = []
        if ql:
            g += [("q_a", L, T, ql, h), ("q_b", L, T, H * qk, ql)]
        else:
            g += [("q", L, T, H * qk, h)]
        g += [("kv_a", L, T, kvr + rope, h), ("kv_b", L, T, H * (nope + v), kvr),
              ("o", L, T, h, H * v)]
        if kd:
            g += [("dense gate+up", kd, T, 2 * c["intermediate_size"], h),
                  ("dense down", kd, T, h, c["intermediate_size"])]
        if moe:
            g += [("router", moe, T, c["n_routed_experts"], h)]
            if ns:
                g += [("shared gate+up", moe, T, 2 * ns * mi, h), ("shared down", moe, T, h, ns * mi)]
        g += [("lm_head", 1, head_rows, c["vocab_size"], h)]
        self.plain = g
        self.moe_layers, self.E, self.k = moe, c["n_routed_experts"], c["num_experts_per_tok"]
        self.routed = [("routed gate+up", 2 * mi, h), ("routed down", h, mi)] if moe else []


def routing_counts(tokens, E, k, seed=3):
    """Rows an expert for a spread routing: each token's k distinct experts
    uniformly at random (a trained model's load is about this even)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    pick = torch.rand(tokens, E, device="cuda", generator=gen).topk(k, dim=1).indices
    return torch.bincount(pick.flatten(), minlength=E)


# --- bf16 ----------------------------------------------------------------

def bf16_gemm(rows, N, K, grads):
    """ms of Y = X W^T and, with grads, dX = dY W and dW = dY^T X."""
    x, w = randn(rows, K), randn(N, K)
    out = {"fwd": timed(lambda: x @ w.t())}
    if grads:
        dy = randn(rows, N)
        out["dgrad"] = timed(lambda: dy @ w)
        out["wgrad"] = timed(lambda: dy.t() @ x)
    return out


def bf16_grouped(counts, N, K, grads):
    """ms of the routed experts' GEMMs, two ways: torch._grouped_mm over the
    counts, and one dense GEMM of all their rows (the floor)."""
    R, E = int(counts.sum()), counts.numel()
    offs = torch.cumsum(counts, 0).to(torch.int32)
    x, w, dy = randn(R, K), randn(E, N, K), randn(R, N)
    grouped, dense = {}, bf16_gemm(R, N, K, grads)
    try:
        grouped["fwd"] = timed(lambda: torch._grouped_mm(x, w.transpose(-2, -1), offs=offs))
        if grads:
            grouped["dgrad"] = timed(lambda: torch._grouped_mm(dy, w, offs=offs))
            grouped["wgrad"] = timed(lambda: torch._grouped_mm(dy.t(), x, offs=offs))
    except Exception as e: # noqa: BLE001 - report and fall back to the dense floor
        print(f"  (torch._grouped_mm unavailable at {N}x{K}: {str(e).splitlines()[0][:120]})")
    del x, w, dy
    return grouped, dense


# --- FP8 -----------------------------------------------------------------

E4M3 = torch.float8_e4m3fn if torch else None

# The weight scales' layouts tried, as (name, make (Kb, Nb) -> scale_b,
# full (scale_b) -> [Nb, Kb]): torch._scaled_mm tells the recipe by the
# scale's shape, and which one means 128 x 128 blocks of W^T varies.
SCALE_B = (("[K/128, N/128]", lambda kb, nb: torch.rand(kb, nb, device="cuda") + 0.5,
            lambda sb: sb.t()),
           ("[K/128, N/128] outer-major",
            lambda kb, nb: (torch.rand(kb, nb, device="cuda") + 0.5).t().contiguous().t(),
            lambda sb: sb.t()),
           ("[N/128, K/128]", lambda kb, nb: torch.rand(nb, kb, device="cuda") + 0.5,
            lambda sb: sb))
FP8_LAYOUT = None


def fp8_operands(rows, N, K):
    a = randn(rows, K).to(E4M3)
    w = randn(N, K).to(E4M3)
    # 1x128 activation scales, outer-dim-major as cuBLAS reads them.
    sa = (torch.rand(rows, math.ceil(K / 128), device="cuda") + 0.5).t().contiguous().t()
    if FP8_LAYOUT is None: # tensorwise
        one = torch.ones((), device="cuda")
        return a, w, one, one
    sb = FP8_LAYOUT[1](math.ceil(K / 128), math.ceil(N / 128))
    return a, w, sa, sb


def fp8_mm(a, w, sa, sb):
    return torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)


def fp8_find_layout():
    """The scale_b layout torch._scaled_mm takes as 128x128 weight blocks,
    checked against a dequantized float32 product (so the timing is of the
    block-scaled GEMM DeepSeek-V3 runs, not of another recipe). None:
    tensorwise scales only (a faster recipe: an optimistic floor)."""
    global FP8_LAYOUT
    errors = []
    for layout in SCALE_B:
        try:
            FP8_LAYOUT = layout
            a, w, sa, sb = fp8_operands(256, 512, 512)
            y = fp8_mm(a, w, sa, sb).float()
            ad = a.float() * sa.repeat_interleave(128, dim=1)
            wd = w.float() * layout[2](sb).repeat_interleave(128, dim=0).repeat_interleave(128, dim=1)
            ref = ad @ wd.t()
            rel = ((y - ref).norm() / ref.norm()).item()
            if rel < 2e-2:
                print(f"  FP8: torch._scaled_mm, 1x128 activation and 128x128 weight blocks "
                      f"(scale_b {layout[0]}), relative error {rel:.1e} against the dequantized product")
                return "cuBLAS FP8 block-scaled"
            errors.append(f"{layout[0]}: relative error {rel:.2f}")
        except Exception as e: # noqa: BLE001
            errors.append(f"{layout[0]}: {str(e).splitlines()[0][:160]}")
    FP8_LAYOUT = None
    print("  FP8 block-scaled torch._scaled_mm unavailable (" + "; ".join(errors) +
          "): tensorwise scales instead, an optimistic floor")
    return "cuBLAS FP8 tensorwise (optimistic)"


def fp8_gemm(rows, N, K):
    """ms of the FP8 GEMM; where cuBLAS refuses the shape (N not a multiple
    of the block), with N padded to the next multiple of 128."""
    try:
        a, w, sa, sb = fp8_operands(rows, N, K)
        return {"fwd": timed(lambda: fp8_mm(a, w, sa, sb))}, ""
    except Exception: # noqa: BLE001
        Np = -(-N // 128) * 128
        a, w, sa, sb = fp8_operands(rows, Np, K)
        return {"fwd": timed(lambda: fp8_mm(a, w, sa, sb))}, f", N padded to {Np}"


# --- attention and AdamW ---------------------------------------------------

def attention(B, H, P, dqk, dv, grads):
    """Best ms over the SDPA backends that run MLA's shapes (causal)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    results = {}
    for name, backend, pad in (("cudnn", SDPBackend.CUDNN_ATTENTION, False),
                               ("efficient", SDPBackend.EFFICIENT_ATTENTION, False),
                               ("flash, v padded to qk", SDPBackend.FLASH_ATTENTION, True)):
        q, k = randn(B, H, P, dqk), randn(B, H, P, dqk)
        v = randn(B, H, P, dqk if pad else dv)
        if grads:
            for t in (q, k, v):
                t.requires_grad_(True)
        try:
            with sdpa_kernel([backend]):
                if grads:
                    do = randn(B, H, P, v.shape[-1])

                    def step():
                        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                        o.backward(do)
                    ms = timed(step, reps=5, warm=2)
                else:
                    ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            results[name] = ms
        except Exception as e: # noqa: BLE001
            print(f"  (SDPA {name}: {str(e).splitlines()[0][:120]})")
        del q, k, v
        torch.cuda.empty_cache()
    return results


def adamw_ms(params):
    """Fused AdamW over `params` fp32 master weights (moments fp32, as
    PyTorch's and dsv3's default), timed on a 256M slice and scaled: the
    update is a stream over its 16 bytes of state a parameter (+ the grad),
    so its time is linear in the count."""
    n = 256 * 1024 * 1024
    p = torch.nn.Parameter(torch.zeros(n, device="cuda"))
    p.grad = randn(n, dtype=torch.float32)
    opt = torch.optim.AdamW([p], lr=1e-4, fused=True)
    ms = timed(opt.step, reps=5, warm=2)
    del opt, p
    torch.cuda.empty_cache()
    return ms * params / n


def parameters(c):
    h, H = c["hidden_size"], c["num_attention_heads"]
    nope, rope, v = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    qk, kvr, ql = nope + rope, c["kv_lora_rank"], c.get("q_lora_rank")
    attn = (h * ql + ql + ql * H * qk) if ql else h * H * qk
    attn += h * (kvr + rope) + kvr + kvr * H * (nope + v) + H * v * h + 2 * h
    L, kd = c["num_hidden_layers"], min(c.get("first_k_dense_replace", 0), c["num_hidden_layers"])
    expert = 3 * h * c["moe_intermediate_size"]
    moe = c["n_routed_experts"] * (expert + h) + c.get("n_shared_experts", 0) * expert
    return 2 * c["vocab_size"] * h + h + L * attn + kd * 3 * h * c["intermediate_size"] + \
        (L - kd) * moe


def print_shapes(c, B, P, train):
    """The forward GEMMs (name, count, rows, N, K) and the row's FLOPs as
    the timed run counts them (3x the forward's for training)."""
    T = B * P
    g = Gemms(c, T, T if train else B)
    flops = 0
    for name, count, M, N, K in g.plain:
        print(f"{name} x{count}: {M}x{N}x{K}")
        flops += count * 2 * M * N * K
    for name, N, K in g.routed:
        print(f"{name} x{g.moe_layers}: {T * g.k} rows over {g.E} experts x{N}x{K}")
        flops += g.moe_layers * 2 * T * g.k * N * K
    dqk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    att = c["num_hidden_layers"] * B * c["num_attention_heads"] * P * P * (dqk + c["v_head_dim"])
    print(f"attention x{c['num_hidden_layers']}: {B}x{c['num_attention_heads']}x{P} causal")
    total = 3 * flops + 3.5 * att if train else flops + att
    print(f"total {total / 1e12:.3f} TFLOP; parameters {parameters(c) / 1e9:.3f}B")


# --- the table -------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--prefill", help="B,P: prefill of B prompts of P tokens (lm_head at the last)")
    ap.add_argument("--train", help="B,P: a training step (fwd + bwd + AdamW)")
    ap.add_argument("--fp8", action="store_true", help="the GEMMs in FP8 (prefill only)")
    ap.add_argument("--json", help="append the totals to this JSON-lines file")
    ap.add_argument("--shapes", action="store_true", help="list the GEMMs and FLOPs, time nothing")
    args = ap.parse_args()
    if (args.prefill is None) == (args.train is None):
        ap.error("one of --prefill B,P and --train B,P")
    c = json.load(open(args.config))
    train = args.train is not None
    B, P = map(int, (args.train or args.prefill).split(","))
    T = B * P
    grads = train
    fp8 = args.fp8 and not train
    if args.shapes:
        print_shapes(c, B, P, train)
        return
    fp8_how = fp8_find_layout() if fp8 else None
    g = Gemms(c, T, T if train else B)
    label = f"{'train' if train else ('FP8 ' if fp8 else '') + 'prefill'} {B}x{P}"
    print(f"\n== floor of {label} ({torch.cuda.get_device_name(0)}, torch {torch.__version__})")
    rows = []

    def add(name, count, shape, ms, flops, how):
        rows.append((name, count, shape, ms, count * ms, flops, how))

    parts = ("fwd", "dgrad", "wgrad") if grads else ("fwd",)
    for name, count, M, N, K in g.plain:
        # The official FP8 checkpoint keeps the router and lm_head in bf16.
        if fp8 and name not in ("router", "lm_head"):
            t, note = fp8_gemm(M, N, K)
            how = fp8_how + note
        else:
            t, how = bf16_gemm(M, N, K, grads), "cuBLAS bf16"
        for p in parts:
            add(f"{name} {p}" if grads else name, count, f"{M}x{N}x{K}", t[p], 2 * M * N * K, how)
        torch.cuda.empty_cache()
    if g.routed:
        counts = routing_counts(T, g.E, g.k)
        R = int(counts.sum())
        print(f"  routing: {R} rows over {g.E} experts, {int(counts.min())}..{int(counts.max())} an expert")
        for name, N, K in g.routed:
            if fp8:
                # No block-scaled grouped GEMM in PyTorch: the dense floor only.
                t, note = fp8_gemm(R, N, K)
                add(name, g.moe_layers, f"{R}x{N}x{K} (dense floor)", t["fwd"], 2 * R * N * K,
                    f"{fp8_how}, all rows as one GEMM{note}")
            else:
                grouped, dense = bf16_grouped(counts, N, K, grads)
                for p in parts:
                    best, how = dense[p], "one dense GEMM of all rows (floor)"
                    if p in grouped and grouped[p] < best:
                        best, how = grouped[p], "torch._grouped_mm"
                    gtxt = f"; grouped_mm {grouped[p]:.3f}" if p in grouped else ""
                    add(f"{name} {p}" if grads else name, g.moe_layers,
                        f"{g.E}x[~{R // g.E}]x{N}x{K}", best, 2 * R * N * K,
                        f"{how} (dense {dense[p]:.3f}{gtxt})")
            torch.cuda.empty_cache()
    H = c["num_attention_heads"]
    dqk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    dv = c["v_head_dim"]
    att = attention(B, H, P, dqk, dv, grads)
    if att:
        how = min(att, key=att.get)
        fl = B * H * P * P * (dqk + dv) * (3.5 if grads else 1)
        add("attention" + (" fwd+bwd" if grads else ""), c["num_hidden_layers"],
            f"{B}x{H}x{P} causal", att[how], fl,
            f"SDPA {how} (" + ", ".join(f"{k} {v:.3f}" for k, v in att.items()) + ")")
    if train:
        n = parameters(c)
        add("AdamW", 1, f"{n / 1e9:.2f}B params", adamw_ms(n), 0, "torch fused AdamW, fp32 state")
    total = sum(r[4] for r in rows)
    flops = sum(r[1] * r[5] for r in rows)
    print(f"| component | x | shape | ms each | ms | TFLOP/s | how |")
    print("|---|---|---|---|---|---|---|")
    for name, count, shape, ms, tot, fl, how in rows:
        tf = f"{fl / ms / 1e9:.0f}" if fl else "—"
        print(f"| {name} | {count} | {shape} | {ms:.3f} | {tot:.2f} | {tf} | {how} |")
    print(f"| **sum** | | | | **{total:.2f}** | {flops / total / 1e9:.0f} | "
          f"everything else free |")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"workload": label, "floor_ms": round(total, 3),
                                "tflops": round(flops / 1e12, 2)}) + "\n")


if __name__ == "__main__":
    main()
