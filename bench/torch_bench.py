#!/usr/bin/env python3
"""The PyTorch side of the benchmark: Hugging Face transformers' DeepseekV3
with the bench slice's config, bf16 random weights, on the same GPU.

Modes (each a fresh model with the same seed):
  eager       transformers as shipped (experts looped in Python)
  grouped_mm  model.set_experts_implementation("grouped_mm"): one grouped GEMM
              over all experts (torch._grouped_mm)
  compile     grouped_mm + torch.compile(mode="reduce-overhead") (Inductor,
              CUDA graphs); one compilation per shape

Workloads (the same as dsv3's rows): decode steps at context 1024 for
batches 1, 32, 128 (a static latent cache filled with random latents, then
single-token steps); prefill B x 2048 (forward over the prompt with the
logits of each sequence's last position only, `logits_to_keep=1`, as HF's
`generate` prefills and as dsv3's prefill entry computes them; HF builds no
cache here, dsv3 fills its latent caches).
Times are CUDA-event medians after warm-up. One JSON line per row is
appended to --out.

Runs on the CPU with a small config (--device cpu) to test the script.
"""
import argparse
import json
import statistics
import sys
import time
import traceback

import torch


def make_model(config_path, mode, device):
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    cfg = json.load(open(config_path))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    config = DeepseekV3Config(**cfg)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = DeepseekV3ForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    # Random weights as dsv3-run --random-weights makes them: matrices
    # normal(0, 0.02), norms 1, router correction biases 0. Random router
    # weights spread the tokens over the experts (no degenerate routing).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
            elif "norm" in name:
                p.fill_(1.0)
        for name, b in model.named_buffers():
            if "e_score_correction_bias" in name:
                b.zero_()
    model.eval()
    if mode in ("grouped_mm", "compile"):
        model.set_experts_implementation("grouped_mm")
    return model, config


def timed(fn, warmup, reps, device):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            stop.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(stop))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def decode_row(model, config, forward, B, ctx, steps, device):
    from transformers import StaticCache

    warmup = 3
    cache = StaticCache(config=config, max_cache_len=ctx + warmup + steps + 4)
    g = torch.Generator(device=device).manual_seed(1)
    for layer in range(config.num_hidden_layers):
        # The latent cache (HF caches the normed latent and the roped key).
        kv = torch.randn(B, 1, ctx, config.kv_lora_rank, generator=g, device=device,
                         dtype=torch.bfloat16)
        kr = torch.randn(B, 1, ctx, config.qk_rope_head_dim, generator=g, device=device,
                         dtype=torch.bfloat16)
        cache.update(kv, kr, layer)
    ids = torch.randint(0, config.vocab_size, (B, 1), generator=g, device=device)

    def step():
        with torch.no_grad():
            forward(input_ids=ids, past_key_values=cache, use_cache=True)

    return timed(step, warmup, steps, device)


def prefill_row(model, config, forward, B, P, device):
    g = torch.Generator(device=device).manual_seed(2)
    ids = torch.randint(0, config.vocab_size, (B, P), generator=g, device=device)

    def run():
        # The last position's logits only (what generation samples from, and
        # what dsv3's prefill entry returns): lm_head over every position
        # would add 2 x tokens x vocab x hidden FLOPs neither side needs.
        with torch.no_grad():
            out = forward(input_ids=ids, use_cache=False, logits_to_keep=1)
        if out.logits.shape[1] != 1:
            raise RuntimeError(f"logits_to_keep=1 gave logits {tuple(out.logits.shape)}")

    return timed(run, 1, 3, device)


def train_row(model, config, forward, B, P, device):
    """fwd+bwd of the causal-LM loss (HF shifts the labels), bf16 weights."""
    g = torch.Generator(device=device).manual_seed(3)
    ids = torch.randint(0, config.vocab_size, (B, P), generator=g, device=device)
    model.train()

    def run():
        out = forward(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    try:
        return timed(run, 1, 3, device)
    finally:
        model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--modes", default="eager,grouped_mm,compile")
    ap.add_argument("--decode-batches", default="1,32,128")
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--prefill", default="1x2048,4x2048")
    ap.add_argument("--train", default="",
                    help="fwd+bwd rows, e.g. 1x4096,4x4096 (torch.compile: default mode)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--deadline", type=float, default=0,
                    help="seconds (from start) after which remaining rows are skipped")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    start = time.time()
    out = open(a.out, "a")

    def emit(mode, workload, ms, note=""):
        row = {"impl": "torch-" + mode, "workload": workload, "ms": ms, "note": note}
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(json.dumps(row), flush=True)

    workloads = [("decode", int(b)) for b in a.decode_batches.split(",") if b] + [
        ("prefill", tuple(int(x) for x in p.split("x"))) for p in a.prefill.split(",") if p] + [
        ("train", tuple(int(x) for x in p.split("x"))) for p in a.train.split(",") if p]
    training_only = all(kind == "train" for kind, _ in workloads)
    for mode in a.modes.split(","):
        model, config = make_model(a.config, mode, a.device)
        forward = model
        if mode == "compile":
            # CUDA graphs for inference; training compiles the default way
            # (its backward graph is compiled too).
            forward = torch.compile(model) if training_only else \
                torch.compile(model, mode="reduce-overhead")
        for kind, shape in workloads:
            name = (f"decode b{shape} ctx{a.context}" if kind == "decode"
                    else f"{kind} {shape[0]}x{shape[1]}")
            if a.deadline and time.time() - start > a.deadline:
                emit(mode, name, None, "skipped: the run's time budget was spent")
                continue
            try:
                if kind == "decode":
                    ms = decode_row(model, config, forward, shape, a.context, a.steps, a.device)
                elif kind == "train":
                    ms = train_row(model, config, forward, shape[0], shape[1], a.device)
                else:
                    ms = prefill_row(model, config, forward, shape[0], shape[1], a.device)
                emit(mode, name, ms)
            except torch.OutOfMemoryError:
                emit(mode, name, None, "out of memory")
                torch.cuda.empty_cache()
            except Exception as e:  # a failed mode is a result, not a crash
                traceback.print_exc()
                emit(mode, name, None, f"failed: {type(e).__name__}: {str(e)[:120]}")
        del model, forward
        if a.device == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
