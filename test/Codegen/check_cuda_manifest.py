#!/usr/bin/env python3
"""For each artifact directory: every launch of every entry with a CUDA
launcher is covered by a compiled instance (recomputed the runtime's way is
not possible here, so it checks that each launch's kernel family has at
least one instance) and every binary file exists."""
import json
import os
import sys

CUDA_KERNELS = {"embedding", "rms_norm", "linear", "lm_head", "add", "swiglu",
                "fill", "rope", "latent_attention", "latent_attention_decode",
                "moe_route", "moe_dispatch", "expert_grouped_matmul",
                "moe_combine", "mtp", "cross_entropy", "gated_linear", "linear_add",
                "expert_gated_matmul", "norm_linear", "norm_gated_linear", "last_token",
                # train_step (dsv3_train_kernels.cuh)
                "embedding_vjp", "rms_norm_vjp", "linear_vjp", "lm_head_vjp",
                "swiglu_vjp", "rope_vjp", "cross_entropy_vjp", "mtp_vjp",
                "moe_route_vjp", "moe_dispatch_vjp", "expert_grouped_matmul_vjp",
                "moe_combine_vjp", "latent_attention_vjp", "moe_balance_loss",
                "moe_balance_loss_vjp", "global_norm", "adamw", "expert_bias_update"}
FAMILY = {"lm_head": "linear", "linear_add": "linear", "latent_attention": "mla_attention_prefill",
          "latent_attention_decode": "mla_decode_split",
          "moe_dispatch": "dispatch_plan", "expert_grouped_matmul": "expert_gmm",
          "mtp": "mtp_concat", "cross_entropy": "cross_entropy_rows",
          "expert_gated_matmul": "expert_gated_gmm", "norm_linear": "linear",
          "norm_gated_linear": "gated_linear",
          "embedding_vjp": "embedding_grad", "rms_norm_vjp": "rms_norm_grad",
          "linear_vjp": "gemm_any", "lm_head_vjp": "gemm_any", "swiglu_vjp": "swiglu_grad",
          "rope_vjp": "rope_transpose", "cross_entropy_vjp": "cross_entropy_grad",
          "mtp_vjp": "gemm_any", "moe_route_vjp": "route_grad",
          "moe_dispatch_vjp": "dispatch_grad", "expert_grouped_matmul_vjp": "gemm_any<1",
          "moe_combine_vjp": "combine_grad", "latent_attention_vjp": "mla_grad_key",
          "moe_balance_loss": "balance_loss_sum", "moe_balance_loss_vjp": "balance_grad",
          "global_norm": "sum_squares", "adamw": "adamw_update"}
status = 0
for d in sys.argv[1:]:
    m = json.load(open(os.path.join(d, "manifest.json")))
    cuda = m["cuda"]
    names = cuda["functions"].keys()
    missing = set()
    for entry in m["entries"].values():
        for launch in entry["launches"]:
            k = launch["kernel"]
            if k not in CUDA_KERNELS:
                continue
            family = "dsv3::" + FAMILY.get(k, k)
            family += "" if family.endswith("<1") else "<"
            if not any(n.startswith(family) for n in names):
                missing.add(k)
    for b in cuda["binaries"]:
        if os.path.getsize(os.path.join(d, b["file"])) != b["bytes"]:
            missing.add(b["file"])
    bins = ", ".join(f"{b['arch']} {b['kind']}" for b in cuda["binaries"])
    name = os.path.basename(d)
    if missing:
        status = 1
        print(f"{name}: missing {sorted(missing)}")
    else:
        print(f"{name}: {len(names)} instances, binaries {bins}, every launch covered")
sys.exit(status)
