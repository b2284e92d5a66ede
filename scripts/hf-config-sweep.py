#!/usr/bin/env python3
"""Differential conformance on DeepSeek-family configs nobody wrote a fixture for.

The four fixtures pin four configs; a user's model is another. This script
draws random configs over every field the importer reads (both families,
q-LoRA on/off, dense/MoE layer mixes, group-limited routing, shared experts
0..2, attention biases, tied embeddings, both RoPE pairings, default and
YaRN RoPE with every mscale form, MTP depths 0..2, odd widths), builds the
Hugging Face model for each in float64 (transformers 5.17, the reference of
SEMANTICS.md; MTP from its DeepseekV3 modules, SEMANTICS.md 7) with random
weights exactly representable in fp32 (or bf16: --checkpoint-dtype), and
writes a fixture in the layout of ../shared/fixtures (config.json,
model.safetensors, io.safetensors, grads.safetensors). Inputs are redrawn
until every routing choice has a margin >= 2e-4 and every greedy choice
>= 2e-3, as the shared fixtures were made. Each case is then compiled with
`dsv3c --mode train` and checked by `dsv3-run verify` (logits, loss,
greedy generation with the latent cache, continuous batching, every
gradient), the same command the conformance tests run.

Needs torch and transformers (PyPI; test-script dependencies only):
    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install torch transformers==5.17.0 safetensors numpy
    /tmp/hfenv/bin/python scripts/hf-config-sweep.py --cases 40 --out /tmp/sweep
    /tmp/hfenv/bin/python scripts/hf-config-sweep.py --seeds 7,12 --out /tmp/sweep   # rerun two cases
    ... --also fp64,ep2,fp8,fp8-train,kv-fp8,kv-bf16,bf16,cuda   # more artifacts per case
    ... --config my.json --seeds 1 --keep   # one given config (test/data/sweep was made so)

Prints one line per case (seed, the config's distinguishing fields,
PASS/FAIL) and keeps the failing cases' folders (verify's log beside
them). --keep keeps every folder (to copy one into test/data as a
regression fixture).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file

# Artifacts of other models than the fp32 oracle, each checked by verify.
VARIANT_FLAGS = {
    "bf16": ["--dtype", "bf16"],
    "fp8": ["--quantize", "fp8"],
    "fp8-train": ["--mode", "train", "--quantize", "fp8"],
    "kv-bf16": ["--kv-cache", "bf16"],
    "kv-fp8": ["--kv-cache", "fp8"],
    "cuda": ["--target", "cuda"],
}
ROUTING_MARGIN = 2e-4
GREEDY_MARGIN = 2e-3


def draw_config(rng):
    """A random config of either family, valid for HF and for dsv3c."""
    v3 = rng.random() < 0.7
    H = int(rng.choice([32, 48, 64, 72]))
    nh = int(rng.choice([n for n in (1, 2, 3, 4) if H % n == 0]))  # HF checks H % nh
    L = int(rng.integers(1, 4))
    cfg = {
        "architectures": ["DeepseekV3ForCausalLM" if v3 else "DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v3" if v3 else "deepseek_v2",
        "vocab_size": int(rng.integers(64, 400)),
        "hidden_size": H,
        "intermediate_size": int(rng.choice([40, 64, 96, 136])),
        "moe_intermediate_size": int(rng.choice([8, 16, 24, 40])),
        "num_hidden_layers": L,
        "num_attention_heads": nh,
        "num_key_value_heads": nh,
        "q_lora_rank": None if rng.random() < 0.4 else int(rng.choice([16, 24, 40])),
        "kv_lora_rank": int(rng.choice([8, 16, 24, 40])),
        "qk_nope_head_dim": int(rng.choice([8, 12, 16, 32])),
        "qk_rope_head_dim": int(rng.choice([2, 4, 6, 8, 16])),
        "v_head_dim": int(rng.choice([8, 12, 16, 24])),
        "first_k_dense_replace": int(rng.integers(0, L + 1)),
        "moe_layer_freq": int(rng.choice([1, 1, 2])),  # HF ignores it (SEMANTICS.md 1)
        "hidden_act": "silu",
        "rms_norm_eps": float(rng.choice([1e-6, 1e-5])),
        "attention_bias": bool(rng.random() < 0.3),
        "attention_dropout": 0.0,
        "tie_word_embeddings": bool(rng.random() < 0.25),
        "max_position_embeddings": int(rng.choice([128, 256])),
        "rope_theta": float(rng.choice([10000.0, 50000.0])),
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    if v3:
        # MTP depth D (SEMANTICS.md 7): verify checks depth 1's logits, and
        # every depth through the loss and the gradients
        cfg["num_nextn_predict_layers"] = int(rng.choice([0, 0, 0, 1, 2]))
    # V2 has no such field in HF (always adjacent pairs): dsv3c warns and ignores it
    cfg["rope_interleave"] = bool(rng.random() < 0.75)
    # Routing: contiguous groups of `per` experts (noaux_tc ranks a group by
    # its two best experts, so per >= 2 there).
    G = int(rng.choice([1, 2, 4]))
    per = int(rng.integers(2, 6))
    E = G * per
    topk_group = int(rng.integers(1, G + 1))
    K = int(rng.integers(1, min(topk_group * per, 6) + 1))
    cfg.update({
        "n_routed_experts": E,
        "n_shared_experts": int(rng.choice([0, 1, 2])),
        "num_experts_per_tok": K,
        "n_group": G,
        "topk_group": topk_group,
        "routed_scaling_factor": float(np.float32(rng.uniform(0.5, 3.0))),
        "norm_topk_prob": bool(rng.random() < 0.5),
    })
    if v3:
        cfg["scoring_func"] = "sigmoid"
        cfg["topk_method"] = "noaux_tc"
    else:
        cfg["scoring_func"] = "softmax"
        cfg["topk_method"] = "greedy" if (G == 1 or rng.random() < 0.4) else "group_limited_greedy"
        cfg["norm_topk_prob"] = False  # HF V2 ignores it; see SEMANTICS.md 5.5
        cfg["aux_loss_alpha"] = 0.001
        cfg["seq_aux"] = True
        cfg["mlp_bias"] = False
    # RoPE: default, or YaRN with each mscale form HF distinguishes (3.4/3.5).
    if rng.random() < 0.5:
        cfg["rope_scaling"] = None
    else:
        ys = {"type": "yarn", "rope_type": "yarn",
              "factor": float(rng.choice([2.0, 4.0, 8.0, 40.0])),
              "original_max_position_embeddings": int(rng.choice([8, 16, 32, 64])),
              "beta_fast": float(rng.choice([32.0, 16.0])),
              "beta_slow": float(rng.choice([1.0, 2.0]))}
        form = int(rng.integers(0, 4))
        if form == 0:
            ys.update(mscale=1.0, mscale_all_dim=1.0)
        elif form == 1:
            ys.update(mscale=0.707, mscale_all_dim=0.707)
        elif form == 2:
            ys.update(mscale=1.0)  # no mscale_all_dim: af on cos/sin, none in s
        else:
            ys.update(mscale=1.0, mscale_all_dim=0.8)
        if rng.random() < 0.2:
            ys["truncate"] = False
        if rng.random() < 0.15:
            ys["attention_factor"] = float(rng.choice([0.9, 1.2]))
        ys["rope_theta"] = cfg["rope_theta"]
        cfg["rope_scaling"] = ys
    if rng.random() < 0.2:
        # the new key (transformers 5), holding rope_theta
        r = cfg.pop("rope_scaling") or {"rope_type": "default"}
        r["rope_theta"] = cfg["rope_theta"]
        cfg["rope_parameters"] = r
    if rng.random() < 0.15:
        del cfg["num_key_value_heads"]  # null/absent: nh
    return cfg


def summary(cfg):
    r = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    rope = "default" if not r or r.get("rope_type") == "default" else "yarn(f{},m{},ma{}{}{})".format(
        r.get("factor", "-"), r.get("mscale"), r.get("mscale_all_dim", "-"),
        ",af{}".format(r["attention_factor"]) if "attention_factor" in r else "",
        ",notrunc" if r.get("truncate") is False else "")
    if "rope_parameters" in cfg:
        rope += "[rope_parameters]"
    return ("{fam} L{L} fkd{fkd} mtp{mtp} H{H} nh{nh} q{q} r{r} dn{dn} dr{dr} dv{dv} V{V} "
            "E{E} G{G}/{tg} K{K} Ns{Ns} {meth}{norm} freq{freq} bias{ab} tie{tie} il{il} {rope}").format(
        fam="v3" if cfg["model_type"] == "deepseek_v3" else "v2",
        L=cfg["num_hidden_layers"], fkd=cfg["first_k_dense_replace"],
        mtp=cfg.get("num_nextn_predict_layers", 0),
        H=cfg["hidden_size"], nh=cfg["num_attention_heads"], q=cfg["q_lora_rank"],
        r=cfg["kv_lora_rank"], dn=cfg["qk_nope_head_dim"], dr=cfg["qk_rope_head_dim"],
        dv=cfg["v_head_dim"], V=cfg["vocab_size"], E=cfg["n_routed_experts"],
        G=cfg["n_group"], tg=cfg["topk_group"], K=cfg["num_experts_per_tok"],
        Ns=cfg["n_shared_experts"], meth=cfg["topk_method"], freq=cfg["moe_layer_freq"],
        norm="+norm" if cfg["norm_topk_prob"] else "",
        ab=int(cfg["attention_bias"]), tie=int(cfg["tie_word_embeddings"]),
        il=int(cfg.get("rope_interleave", True)), rope=rope)


class MtpDepth(torch.nn.Module):
    """One MTP depth from HF's own DeepseekV3 modules (SEMANTICS.md 7): its
    projection of [enorm(embedding) ; hnorm(previous hidden)], a decoder
    block (MoE: its layer index is past first_k_dense_replace) and the
    shared head's norm. Stored at model.layers.{num_hidden_layers + k - 1}."""

    def __init__(self, conf, layer_idx):
        super().__init__()
        from transformers.models.deepseek_v3 import modeling_deepseek_v3 as m
        H, eps = conf.hidden_size, conf.rms_norm_eps
        self.enorm = m.DeepseekV3RMSNorm(H, eps=eps)
        self.hnorm = m.DeepseekV3RMSNorm(H, eps=eps)
        self.eh_proj = torch.nn.Linear(2 * H, H, bias=False)
        self.block = m.DeepseekV3DecoderLayer(conf, layer_idx)
        self.shared_head_norm = m.DeepseekV3RMSNorm(H, eps=eps)


def build_model(cfg, rng):
    klass = (transformers.DeepseekV3ForCausalLM if cfg["model_type"] == "deepseek_v3"
             else transformers.DeepseekV2ForCausalLM)
    conf = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items()
                                                if k != "architectures"})
    conf._attn_implementation = "sdpa"
    conf._experts_implementation = "eager"  # grouped_mm has no float64
    model = klass(conf)
    D = cfg.get("num_nextn_predict_layers", 0)
    if D:
        L = cfg["num_hidden_layers"]
        model.mtp_depths = torch.nn.ModuleList(MtpDepth(conf, L + k) for k in range(D))
    model = model.to(torch.float64).eval()
    H = cfg["hidden_size"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if "norm" in name and len(shape) == 1:
                w = 1.0 + 0.2 * rng.standard_normal(shape)
            elif name.endswith(".bias"):
                w = 0.1 * rng.standard_normal(shape)
            elif "embed_tokens" in name:
                w = rng.standard_normal(shape)
            elif name == "lm_head.weight":
                w = 2.0 * rng.standard_normal(shape) / np.sqrt(H)
            elif "mlp.gate.weight" in name:
                w = 2.0 * rng.standard_normal(shape) / np.sqrt(H)
            else:
                fan_in = shape[-1] if shape[-1] > 0 else 1
                w = rng.standard_normal(shape) / np.sqrt(fan_in)
            # exactly representable in fp32, so the fp32 checkpoint is the model
            w = torch.from_numpy(w.astype(np.float32))
            if cfg.get("torch_dtype") == "bfloat16":
                w = w.to(torch.bfloat16)  # a bf16 checkpoint: the model is its values
            p.copy_(w.to(torch.float64))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                w = 0.05 * rng.standard_normal(tuple(b.shape))
                b.copy_(torch.from_numpy(w.astype(np.float32).astype(np.float64)))
    return model


def hub_tensors(model, cfg, grads=False):
    """The model's tensors (or their gradients) under the hub checkpoint's names:
    per-expert projections, biases, no zero-width shared experts, no lm_head
    when it is tied."""
    out = {}
    Im = cfg["moe_intermediate_size"]
    L = cfg["num_hidden_layers"]

    def hub_name(name):
        if not name.startswith("mtp_depths."):
            return name
        _, k, rest = name.split(".", 2)
        rest = rest.replace("block.", "", 1).replace("shared_head_norm", "shared_head.norm")
        return f"model.layers.{L + int(k)}.{rest}"

    for name, p in model.named_parameters():
        t = p.grad if grads else p.detach()
        if grads and t is None:
            continue
        bf16 = cfg.get("torch_dtype") == "bfloat16" and not grads
        t = t.to(torch.bfloat16 if bf16 else torch.float32).contiguous()
        if t.numel() == 0:
            continue
        name = hub_name(name)
        if name.endswith("mlp.experts.gate_up_proj"):
            base = name[: -len("gate_up_proj")]
            for e in range(t.shape[0]):
                out[f"{base}{e}.gate_proj.weight"] = t[e, :Im].contiguous()
                out[f"{base}{e}.up_proj.weight"] = t[e, Im:].contiguous()
        elif name.endswith("mlp.experts.down_proj"):
            base = name[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{base}{e}.down_proj.weight"] = t[e].contiguous()
        else:
            out[name] = t
    if cfg["tie_word_embeddings"]:
        out.pop("lm_head.weight", None)
    if not grads:
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                out[hub_name(name)] = b.to(torch.float32).contiguous()
        # each depth's copies of the embedding and the head, as the official
        # checkpoint stores them (shared in training: no gradients of their own)
        for k in range(cfg.get("num_nextn_predict_layers", 0)):
            out[f"model.layers.{L + k}.embed_tokens.weight"] = out["model.embed_tokens.weight"].clone()
            head = model.lm_head.weight.detach().to(out["model.embed_tokens.weight"].dtype).clone()
            out[f"model.layers.{L + k}.shared_head.head.weight"] = head
    return out


def losses(model, cfg, ids, mtp_lambda=0.3):
    """The main loss and logits, and with MTP depths the weighted MTP loss
    (SEMANTICS.md 7: depth k's row i predicts ids[i+k+1] from the embedding
    of ids[i+k] and depth k-1's normed hidden state at i) and depth 1's
    logits."""
    V = cfg["vocab_size"]
    h = model.model(input_ids=ids).last_hidden_state  # after model.norm
    logits = model.lm_head(h)
    loss_main = model.loss_function(logits=logits, labels=ids, vocab_size=V)
    if not hasattr(model, "mtp_depths"):
        return logits, loss_main, None, None
    B, T = ids.shape
    D = len(model.mtp_depths)
    prev, mtp_total, depth1 = h, 0.0, None
    for k, depth in enumerate(model.mtp_depths, start=1):
        n = T - k
        emb = model.model.embed_tokens(ids[:, k:])
        m = depth.eh_proj(torch.cat([depth.enorm(emb), depth.hnorm(prev[:, :n])], dim=-1))
        pos = torch.arange(k, T).unsqueeze(0).expand(B, -1)  # the positions of ids[i+k]
        cos_sin = model.model.rotary_emb(m, pos)
        mask = torch.full((n, n), float("-inf"), dtype=m.dtype).triu(1)[None, None].expand(B, 1, n, n)
        g = depth.block(m, attention_mask=mask, position_ids=pos, position_embeddings=cos_sin)
        prev = depth.shared_head_norm(g)
        lk = model.lm_head(prev)
        if k == 1:
            depth1 = lk
        # rows 0..T-k-2 against ids[k+1..]: the labels ids[k..] shifted once
        mtp_total = mtp_total + model.loss_function(logits=lk, labels=ids[:, k:], vocab_size=V)
    return logits, loss_main, (mtp_lambda / D) * mtp_total, depth1


class RoutingMargins:
    """Records the smallest gap at every discrete routing choice (group
    selection, then expert selection) over all calls of every router."""

    def __init__(self, model, cfg):
        self.cfg = cfg
        self.min = float("inf")
        self.handles = []
        for name, mod in model.named_modules():
            if name.endswith("mlp.gate"):
                self.handles.append(mod.register_forward_hook(self.hook))

    @staticmethod
    def gap(values, k):
        # smallest margin between the k-th and (k+1)-th largest, per row
        if values.shape[-1] <= k:
            return float("inf")
        s = torch.sort(values, dim=-1, descending=True).values
        g = s[:, k - 1] - s[:, k]
        g = g[torch.isfinite(g)]
        return float(g.min()) if g.numel() else float("inf")

    def hook(self, mod, inputs, output):
        cfg = self.cfg
        x = inputs[0].reshape(-1, cfg["hidden_size"])
        logits = torch.nn.functional.linear(x.float(), mod.weight.float())
        E, G, tg, K = (cfg["n_routed_experts"], cfg["n_group"], cfg["topk_group"],
                       cfg["num_experts_per_tok"])
        if cfg["model_type"] == "deepseek_v3":
            choice = logits.sigmoid() + mod.e_score_correction_bias.float()
            gscore = choice.view(-1, G, E // G).topk(2, dim=-1)[0].sum(-1)
        else:
            choice = logits.softmax(dim=-1)
            gscore = choice.view(-1, G, E // G).max(-1).values
        grouped = cfg["model_type"] == "deepseek_v3" or cfg["topk_method"] == "group_limited_greedy"
        if grouped and tg < G:
            self.min = min(self.min, self.gap(gscore, tg))
            keep = torch.zeros_like(gscore).scatter_(1, gscore.topk(tg, dim=-1)[1], 1)
            mask = keep.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E).bool()
            # HF masks with -inf (V3) or 0 (V2; K fits in the kept groups, so
            # a masked expert is never chosen): either way out of the choice
            choice = choice.masked_fill(~mask, float("-inf"))
        self.min = min(self.min, self.gap(choice, K))

    def remove(self):
        for h in self.handles:
            h.remove()


def make_fixture(cfg, seed, folder, batch, tries=60):
    rng = np.random.default_rng(seed)
    model = build_model(cfg, rng)
    V = cfg["vocab_size"]
    B = batch
    T = int(rng.integers(8, 33))
    P = int(rng.integers(3, 11))
    N = int(rng.integers(4, 11))
    for attempt in range(tries):
        ids = torch.from_numpy(rng.integers(2, V, size=(B, T))).long()
        prompt = torch.from_numpy(rng.integers(2, V, size=(B, P))).long()
        margins = RoutingMargins(model, cfg)
        with torch.no_grad():
            logits, _, _, mtp_logits = losses(model, cfg, ids)
            gen = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                 max_new_tokens=N, min_new_tokens=N, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True,
                                 eos_token_id=None, pad_token_id=0)
        margins.remove()
        gen_logits = torch.stack(gen.logits, dim=1)
        top2 = gen_logits.topk(2, dim=-1).values
        greedy = float((top2[..., 0] - top2[..., 1]).min())
        if margins.min >= ROUTING_MARGIN and greedy >= GREEDY_MARGIN:
            break
    else:
        return None, f"no inputs with clear choices in {tries} draws (routing {margins.min:.1e}, greedy {greedy:.1e})"
    model.zero_grad()
    _, loss_main, loss_mtp, _ = losses(model, cfg, ids)
    loss = loss_main if loss_mtp is None else loss_main + loss_mtp
    loss.backward()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_file(hub_tensors(model, cfg), os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})
    io = {"input_ids": ids, "logits": logits.float().contiguous(),
          "loss": loss.detach().float().reshape(1),
          "prompt_ids": prompt, "gen_ids": gen.sequences[:, P:].contiguous(),
          "gen_logits": gen_logits.float().contiguous()}
    meta = {"seed": str(seed),
            "oracle": f"transformers {transformers.__version__} {type(model).__name__} float64"}
    if loss_mtp is not None:
        io.update(mtp_logits=mtp_logits.float().contiguous(),
                  loss_main=loss_main.detach().float().reshape(1),
                  loss_mtp=(loss_mtp.detach() / 0.3).float().reshape(1))  # unweighted, as tiny-e
        meta.update(mtp_lambda="0.3", mtp_hidden="post",
                    oracle=meta["oracle"] + " + MTP from HF DeepseekV3 modules")
    save_file(io, os.path.join(folder, "io.safetensors"), metadata=meta)
    save_file(hub_tensors(model, cfg, grads=True), os.path.join(folder, "grads.safetensors"),
              metadata={"format": "pt"})
    return folder, f"routing margin {margins.min:.1e}, greedy {greedy:.1e}, {attempt + 1} draw(s)"


def run_case(args, seed):
    rng = np.random.default_rng(seed)
    cfg = draw_config(rng)
    if args.config:
        with open(args.config) as f:
            cfg = json.load(f)
    if args.checkpoint_dtype == "bf16":
        cfg["torch_dtype"] = "bfloat16"
    folder = os.path.join(args.out, f"case-{seed}")
    shutil.rmtree(folder, ignore_errors=True)
    try:
        # verify on N ranks splits the oracle's sequences: one at least each
        batch = max([2] + [int(v[2:]) for v in args.also if v.startswith("ep")])
        made, why = make_fixture(cfg, seed + 1_000_003, folder, batch)
    except Exception as e:  # a config HF itself refuses is no test of ours
        return "SKIP", cfg, f"transformers refused it: {type(e).__name__}: {e}"
    if made is None:
        return "SKIP", cfg, why
    art = os.path.join(folder, "art")
    log = os.path.join(folder, "verify.log")
    # fp32 compute whatever the checkpoint holds: a bf16 checkpoint's values
    # are the model, so the fp32 checks apply unchanged
    steps = [[args.dsv3c, folder, "--mode", "train", "--dtype", "f32", "-o", art],
             [args.dsv3_run, "verify", art, "--weights", folder, "--oracle", folder]]
    E = cfg["n_routed_experts"]
    moe = cfg["first_k_dense_replace"] < cfg["num_hidden_layers"]
    for variant in args.also:
        if variant == "fp64":
            steps.append([args.dsv3_run, "verify", art, "--weights", folder, "--oracle", folder,
                          "--dtype", "fp64"])
        elif variant.startswith("ep"):
            # the experts split over N ranks: SPMD processes on this
            # machine, collectives over TCP; logits equal to one rank's
            n = int(variant[2:])
            if moe and E % n == 0:
                art_ep = os.path.join(folder, f"art-{variant}")
                steps += [[args.dsv3c, folder, "--mode", "train", "--ep", str(n), "-o", art_ep],
                          [args.dsv3_run, "launch", "--nproc", str(n), "verify", art_ep,
                           "--weights", folder, "--oracle", folder]]
        elif variant == "train":
            # training steps from the checkpoint, saved, then resumed: the
            # training loop (AdamW, bias balancing, checkpoints) on this config
            tokens = os.path.join(folder, "data.tokens")
            np.random.default_rng(seed).integers(
                0, cfg["vocab_size"], size=4096).astype("<u4").tofile(tokens)
            ckpt = os.path.join(folder, "ckpt")
            steps += [[args.dsv3_run, "train", art, "--weights", folder, "--data", tokens,
                       "--steps", "3", "--batch", "2", "--seq", "16", "--save-dir", ckpt],
                      [args.dsv3_run, "train", art, "--resume", os.path.join(ckpt, "step-000003"),
                       "--data", tokens, "--steps", "5", "--batch", "2", "--seq", "16",
                       "--save-dir", ckpt]]
        elif variant in VARIANT_FLAGS:
            # another model than the fp32 oracle: verify checks its kernels
            # against the same model in float64 on the host and reports the
            # rows against the oracle
            art_v = os.path.join(folder, f"art-{variant}")
            steps += [[args.dsv3c, folder, *VARIANT_FLAGS[variant], "-o", art_v]]
            if variant != "cuda":
                steps.append([args.dsv3_run, "verify", art_v, "--weights", folder,
                              "--oracle", folder])
        else:
            raise SystemExit(f"unknown variant {variant!r}")
    with open(log, "w") as f:
        for cmd in steps:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                return "FAIL", cfg, f"{os.path.basename(cmd[0])} exited {r.returncode}: {log}"
    text = open(log).read()
    tail = [l.strip() for l in text.splitlines() if "passed," in l]
    return "PASS", cfg, (" / ".join(tail) if tail else why)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--seeds", help="comma-separated seeds to run instead of a range")
    ap.add_argument("--out", default="/tmp/dsv3-config-sweep")
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    ap.add_argument("--keep", action="store_true", help="keep passing cases' folders")
    ap.add_argument("--checkpoint-dtype", choices=["f32", "bf16"], default="f32",
                    help="the checkpoint's element type (bf16: torch_dtype bfloat16, the "
                         "weights rounded to bf16 before the oracle runs; e_score_correction_bias "
                         "stays f32 as in the official checkpoint)")
    ap.add_argument("--config", help="a config.json to use (weights and inputs still drawn "
                                     "from each seed) instead of a random one")
    ap.add_argument("--also", default="",
                    help="comma-separated extra checks per case: train (3 training steps "
                         "from the checkpoint, saved, resumed to step 5), fp64 (verify --dtype fp64, "
                         "tolerance 1e-5: the oracle's fp32 islands), epN (an --ep N artifact "
                         "under `dsv3-run launch --nproc N`, where N divides the experts), "
                         + ", ".join(VARIANT_FLAGS) + " (compiled with "
                         + "; ".join(f"{k}: {' '.join(v)}" for k, v in VARIANT_FLAGS.items())
                         + "; cuda is compiled only: NVRTC builds every kernel instance)")
    args = ap.parse_args()
    args.also = [v for v in args.also.split(",") if v]
    args.dsv3c = os.path.join(args.build, "bin", "dsv3c")
    args.dsv3_run = os.path.join(args.build, "bin", "dsv3-run")
    torch.manual_seed(0)
    seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
             else range(args.first_seed, args.first_seed + args.cases))
    os.makedirs(args.out, exist_ok=True)
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for seed in seeds:
        status, cfg, detail = run_case(args, seed)
        counts[status] += 1
        print(f"{seed:5d} {status} {summary(cfg)}  [{detail}]", flush=True)
        if status == "PASS" and not args.keep:
            shutil.rmtree(os.path.join(args.out, f"case-{seed}"), ignore_errors=True)
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
          f"(transformers {transformers.__version__})")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
