#!/usr/bin/env python3
"""The bad-input corpus: hundreds of malformed configs, checkpoints, token
files, artifacts and command lines, each run through dsv3c / dsv3-run. Every
case must exit with status 1 or 2 (no crash, no signal, no success), print
"error:" and name what and where (the expected substrings). Prints one line
per failing case and a summary.

usage: corpus.py BINDIR FIXTURE_DIR TINY_CONFIG WORKDIR"""
import copy
import json
import os
import shutil
import struct
import subprocess
import sys

bindir, fixture, tiny_config, work = sys.argv[1:5]
DSV3C = os.path.join(bindir, "dsv3c")
RUN = os.path.join(bindir, "dsv3-run")
os.makedirs(work, exist_ok=True)
cases = []  # (name, argv, [expected substrings])


def path(*parts):
    return os.path.join(work, *parts)


def case(name, argv, *expect):
    cases.append((name, argv, list(expect)))


# ---------------------------------------------------------------- configs
base = json.load(open(tiny_config))


def config_case(name, mutate, *expect, raw=None):
    d = path("cfg", name)
    os.makedirs(d, exist_ok=True)
    f = os.path.join(d, "config.json")
    if raw is not None:
        open(f, "wb").write(raw)
    else:
        c = copy.deepcopy(base)
        mutate(c)
        json.dump(c, open(f, "w"))
    case("config/" + name, [DSV3C, f, "--emit=dsv3", "--quiet"], "config.json", *expect)


int_fields = ["vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
              "num_hidden_layers", "num_attention_heads", "kv_lora_rank", "q_lora_rank",
              "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
              "num_experts_per_tok", "n_group", "topk_group", "max_position_embeddings",
              "moe_layer_freq"]
zero_ok = {"q_lora_rank"}  # checked separately below
for f in int_fields:
    for label, v in [("negative", -3), ("string", "8"), ("fraction", 2.5), ("bool", True),
                     ("array", [8]), ("object", {"v": 8}), ("huge", 1 << 40)]:
        config_case(f"{f}-{label}", lambda c, f=f, v=v: c.__setitem__(f, v), f)
    if f not in zero_ok:
        config_case(f"{f}-zero", lambda c, f=f: c.__setitem__(f, 0), f)
for f in ["n_shared_experts", "first_k_dense_replace", "num_nextn_predict_layers"]:
    for label, v in [("negative", -1), ("string", "1"), ("fraction", 0.5), ("huge", 1 << 40)]:
        config_case(f"{f}-{label}", lambda c, f=f, v=v: c.__setitem__(f, v), f)
for f, vals in {"rms_norm_eps": [0, -1e-6, "1e-6"], "rope_theta": [0, -5, "10000"],
                "routed_scaling_factor": [-1, "2.5"]}.items():
    for v in vals:
        config_case(f"{f}-{v}", lambda c, f=f, v=v: c.__setitem__(f, v), f)
for f, v in [("model_type", "llama"), ("model_type", 7), ("model_type", None),
             ("scoring_func", "softmax"), ("topk_method", "greedy"), ("topk_method", 3),
             ("torch_dtype", "int8"), ("torch_dtype", 5), ("norm_topk_prob", "yes"),
             ("tie_word_embeddings", 1), ("attention_bias", "no")]:
    config_case(f"{f}-{v}", lambda c, f=f, v=v: c.__setitem__(f, v), f)
# Inconsistent combinations.
config_case("n_group-not-dividing", lambda c: c.update(n_group=3), "n_group")
config_case("topk_group-above-n_group", lambda c: c.update(topk_group=3), "topk_group")
config_case("top-k-above-experts", lambda c: c.update(num_experts_per_tok=9), "num_experts_per_tok")
config_case("top-k-above-kept-groups", lambda c: c.update(num_experts_per_tok=5),
            "num_experts_per_tok")
config_case("kv-heads-grouped", lambda c: c.update(num_key_value_heads=2), "num_key_value_heads")
config_case("odd-rope-dim", lambda c: c.update(qk_rope_head_dim=7), "qk_rope_head_dim")
config_case("layers-absurd", lambda c: c.update(num_hidden_layers=100000), "num_hidden_layers")
config_case("experts-absurd", lambda c: c.update(n_routed_experts=1 << 20), "n_routed_experts")
config_case("overflowing-embedding", lambda c: c.update(vocab_size=1 << 30, hidden_size=1 << 30),
            "vocab_size")
for name, rs, what in [
        ("rope_scaling-string", "yarn", "rope_scaling"),
        ("rope_scaling-unknown-type", {"type": "ntk", "factor": 2}, "rope_scaling"),
        # No factor: derived as max_position_embeddings / original (256 / 1024 < 1).
        ("rope_scaling-yarn-derived-factor-below-one", {"type": "yarn", "original_max_position_embeddings": 1024}, "factor"),
        ("rope_scaling-yarn-zero-factor", {"type": "yarn", "factor": 0, "original_max_position_embeddings": 64}, "factor"),
        ("rope_scaling-yarn-negative-factor", {"type": "yarn", "factor": -4, "original_max_position_embeddings": 64}, "factor"),
        ("rope_scaling-yarn-string-factor", {"type": "yarn", "factor": "4", "original_max_position_embeddings": 64}, "factor"),
        ("rope_scaling-yarn-bad-original", {"type": "yarn", "factor": 4, "original_max_position_embeddings": -1}, "original_max_position_embeddings"),
        ("rope_scaling-array", [1, 2], "rope_scaling")]:
    config_case(name, lambda c, rs=rs: c.update(rope_scaling=rs), what)
config_case("quantization-not-fp8", lambda c: c.update(quantization_config={"quant_method": "gptq"}),
            "quantization_config")
config_case("quantization-block-size", lambda c: c.update(quantization_config={
    "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
    "weight_block_size": [128]}), "weight_block_size")
config_case("quantization-bad-fmt", lambda c: c.update(quantization_config={
    "quant_method": "fp8", "fmt": "e9m9", "activation_scheme": "dynamic",
    "weight_block_size": [128, 128]}), "fmt")
for name, raw in [("empty", b""), ("open-brace", b"{"), ("array", b"[1,2]"), ("null", b"null"),
                  ("number", b"42"), ("missing-value", b'{"model_type": }'),
                  ("trailing-comma", b'{"model_type": "deepseek_v3",}'),
                  ("binary", bytes(range(256))), ("nul-bytes", b"\x00" * 64),
                  ("utf16", json.dumps(base).encode("utf-16")),
                  ("two-objects", b"{}{}"), ("string", b'"config"'),
                  ("number-overflow", json.dumps(base).replace('"hidden_size": ', '"hidden_size": 1E999 + ', 1).split(" + ")[0].encode() + b"}")]:
    config_case("json-" + name, None, raw=raw)
os.makedirs(path("cfg", "empty-dir"), exist_ok=True)
case("config/dir-without-config", [DSV3C, path("cfg", "empty-dir"), "--emit=dsv3"], "empty-dir")

# ------------------------------------------------------------ safetensors
art = path("art")
if not os.path.isdir(art):
    subprocess.run([DSV3C, fixture, "-o", art, "--quiet"], check=True)
good = open(os.path.join(fixture, "model.safetensors"), "rb").read()
hlen = struct.unpack("<Q", good[:8])[0]
header = json.loads(good[8:8 + hlen])
data = good[8 + hlen:]


def pack(h, body):
    hb = json.dumps(h).encode()
    return struct.pack("<Q", len(hb)) + hb + body


def weights_case(name, blob, *expect, extra=None):
    d = path("w", name)
    os.makedirs(d, exist_ok=True)
    if blob is not None:
        open(os.path.join(d, "model.safetensors"), "wb").write(blob)
    for fname, content in (extra or {}).items():
        open(os.path.join(d, fname), "wb").write(content)
    case("weights/" + name, [RUN, "forward", art, "--weights", d, "--ids", "1,2,3",
                             "--out", path("w", name + ".out.safetensors")], *expect)


names = [k for k in header if k != "__metadata__"]
first = names[0]
for cut in [0, 4, 8, 9, 8 + hlen // 2, 8 + hlen, 8 + hlen + 1, len(good) // 2, len(good) - 1]:
    weights_case(f"truncated-at-{cut}", good[:cut], "model.safetensors")
weights_case("header-length-beyond-file", struct.pack("<Q", 1 << 40) + good[8:], "header")
weights_case("header-length-zero", struct.pack("<Q", 0) + good[8:], "model.safetensors")
weights_case("header-not-json", struct.pack("<Q", 10) + b"not json!!" + data, "header")
weights_case("header-array", pack([1, 2], data), "header")
weights_case("header-utf8-garbage", struct.pack("<Q", 8) + b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8" + data,
             "model.safetensors")


def header_case(name, mutate, *expect):
    h = copy.deepcopy(header)
    mutate(h)
    weights_case(name, pack(h, data), *expect)


for field in ["dtype", "shape", "data_offsets"]:
    header_case(f"entry-without-{field}", lambda h, f=field: h[first].pop(f), first)
hb_overflow = json.dumps(header).replace('"data_offsets": [0', '"data_offsets": [1e999', 1).encode()
weights_case("header-number-overflow", struct.pack("<Q", len(hb_overflow)) + hb_overflow + data,
             "header")
for label, dt in [("unknown", "F9"), ("number", 4), ("lowercase", "f32")]:
    header_case(f"dtype-{label}", lambda h, dt=dt: h[first].__setitem__("dtype", dt), first)
for label, shape in [("negative", [-512, 64]), ("string", ["512", 64]), ("not-list", 512),
                     ("fraction", [512.5, 64])]:
    header_case(f"shape-{label}", lambda h, s=shape: h[first].__setitem__("shape", s), first)
header_case("offsets-reversed", lambda h: h[first].__setitem__(
    "data_offsets", h[first]["data_offsets"][::-1]), first)
header_case("offsets-out-of-range", lambda h: h[first].__setitem__(
    "data_offsets", [len(data) - 8, len(data) + 131064]), first)
header_case("offsets-negative", lambda h: h[first].__setitem__("data_offsets", [-8, 131064]), first)
header_case("offsets-one-value", lambda h: h[first].__setitem__("data_offsets", [0]), first)
header_case("offsets-overlap", lambda h: h[names[1]].__setitem__(
    "data_offsets", [h[first]["data_offsets"][0] + 4,
                     h[first]["data_offsets"][0] + 4 + (h[names[1]]["data_offsets"][1] -
                                                        h[names[1]]["data_offsets"][0])]),
    names[1])
header_case("byte-size-mismatch", lambda h: h[first].__setitem__("shape", [511, 64]), first)
header_case("metadata-not-object", lambda h: h.__setitem__("__metadata__", [1]), "__metadata__")
header_case("entry-not-object", lambda h: h.__setitem__(first, 5), first)
# Tensors that parse but do not fit the model.
header_case("missing-tensor", lambda h: h.pop(names[3]), names[3])
header_case("renamed-tensor", lambda h: h.__setitem__("model.bogus.weight", h.pop(names[3])),
            names[3])
header_case("wrong-dtype", lambda h: h[first].__setitem__("dtype", "I32"), first)
shape_swap = [n for n in names if len(header[n]["shape"]) == 2 and header[n]["shape"][0] != header[n]["shape"][1]][0]
header_case("transposed-shape", lambda h: h[shape_swap].__setitem__(
    "shape", h[shape_swap]["shape"][::-1]), shape_swap)
for label, value in [("nan", float("nan")), ("inf", float("inf")), ("neg-inf", float("-inf"))]:
    body = bytearray(data)
    off = header[first]["data_offsets"][0]
    body[off + 40:off + 44] = struct.pack("<f", value)
    weights_case(f"weights-{label}", pack(header, bytes(body)), first, "non-finite")
# Sharded checkpoints.
index = {"metadata": {}, "weight_map": {n: "model-00001-of-00002.safetensors" for n in names}}
weights_case("index-missing-shard", None, "model-00001-of-00002.safetensors",
             extra={"model.safetensors.index.json": json.dumps(index).encode()})
weights_case("index-not-json", None, "model.safetensors.index.json",
             extra={"model.safetensors.index.json": b"{not json"})
weights_case("index-no-weight-map", None, "weight_map",
             extra={"model.safetensors.index.json": b'{"metadata": {}}'})
weights_case("index-shard-lacks-tensor", None, names[5], extra={
    "model.safetensors.index.json": json.dumps({"weight_map": {names[5]: "b.safetensors"}}).encode(),
    "b.safetensors": pack({"other.weight": {"dtype": "F32", "shape": [2],
                                            "data_offsets": [0, 8]}}, b"\0" * 8)})
weights_case("no-checkpoint-at-all", None, "model.safetensors")

# --------------------------------------------------------------- tokens
tart = path("tart")
if not os.path.isdir(tart):
    subprocess.run([DSV3C, fixture, "--mode", "train", "-o", tart, "--quiet"], check=True)
for name, blob, expect in [("odd-size", b"\x01\x00\x00\x00\x02", "4"),
                           ("empty", b"", "tokens"),
                           ("beyond-vocab", struct.pack("<64I", *([7] * 63 + [99999])), "99999"),
                           ("too-short", struct.pack("<3I", 1, 2, 3), "tokens")]:
    f = path("tok-" + name)
    open(f, "wb").write(blob)
    case("tokens/" + name, [RUN, "train", tart, "--init", "0", "--data", f, "--steps", "1",
                            "--batch", "2", "--seq", "16", "--save-dir", path("tok-ck-" + name),
                            "--quiet"], os.path.basename(f), expect)
case("tokens/missing-file", [RUN, "train", tart, "--init", "0", "--data", path("no-such.tokens"),
                             "--steps", "1", "--batch", "1", "--seq", "8", "--save-dir",
                             path("tok-ck-missing")], "no-such.tokens")

# ------------------------------------------------------------ artifacts
manifest = json.load(open(os.path.join(art, "manifest.json")))


def artifact_case(name, mutate, *expect, raw=None):
    d = path("a", name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    shutil.copytree(art, d)
    f = os.path.join(d, "manifest.json")
    if raw is not None:
        open(f, "wb").write(raw)
    else:
        m = copy.deepcopy(manifest)
        mutate(m)
        json.dump(m, open(f, "w"))
    case("artifact/" + name, [RUN, "forward", d, "--weights", fixture, "--ids", "1,2",
                              "--out", path("a", name + ".out")], "manifest.json", *expect)


fwd = manifest["entries"]["forward"]
artifact_case("not-json", None, raw=b"{")
artifact_case("empty", None, raw=b"")
# A number too large for a double (JSON's out_of_range, not a parse error:
# found by the manifest fuzz target, which it aborted).
manifest_text = json.dumps(manifest)
artifact_case("number-overflow", None, "JSON",
              raw=manifest_text.replace('"version": 1', '"version": 0.2E2414523193154', 1).encode())
artifact_case("version-99", lambda m: m.__setitem__("version", 99), "version")
artifact_case("version-string", lambda m: m.__setitem__("version", "1"), "version")
for key in ["params", "entries", "version"]:
    artifact_case(f"without-{key}", lambda m, k=key: m.pop(k), key)
artifact_case("param-without-name", lambda m: m["params"][0].pop("name"), "name")
artifact_case("param-bad-dtype", lambda m: m["params"][0].__setitem__("dtype", "q4"), "dtype")
artifact_case("param-negative-dim", lambda m: m["params"][0].__setitem__("shape", [-1, 64]), "shape")
artifact_case("entry-without-launches", lambda m: m["entries"]["forward"].pop("launches"), "launches")
artifact_case("launch-unknown-kernel", lambda m: m["entries"]["forward"]["launches"][0].__setitem__(
    "kernel", "warp_drive"), "warp_drive")
artifact_case("launch-bad-buffer", lambda m: m["entries"]["forward"]["launches"][0].__setitem__(
    "outputs", [{"buffer": 99999}]), "buffer")
artifact_case("launch-bad-param", lambda m: m["entries"]["forward"]["launches"][0].__setitem__(
    "inputs", [{"arg": 0}, {"param": "no.such.weight"}]), "no.such.weight")
artifact_case("launch-bad-arg", lambda m: m["entries"]["forward"]["launches"][0].__setitem__(
    "inputs", [{"arg": 7}, {"param": "model.embed_tokens.weight"}]), "arg")
artifact_case("buffer-beyond-arena", lambda m: m["entries"]["forward"]["buffers"][0].__setitem__(
    "offset", m["entries"]["forward"]["arena_bytes"]), "arena")
artifact_case("buffer-negative-bytes", lambda m: m["entries"]["forward"]["buffers"][0].__setitem__(
    "bytes", -5), "bytes")
artifact_case("params-not-array", lambda m: m.__setitem__("params", {}), "params")


def edit_launch(kernel, key, value):
    def mutate(m):
        for l in m["entries"]["forward"]["launches"]:
            if l["kernel"] == kernel:
                if value is None:
                    l["params"].pop(key)
                else:
                    l["params"][key] = value
                return
    return mutate


# Edited launch parameters: the kernel names itself, the entry, the launch
# and the model op (layer) it belongs to.
artifact_case("mla-heads-edited", edit_launch("latent_attention", "num_heads", 3),
              "q_proj", "model.layers.0.self_attn")
artifact_case("mla-latent-edited", edit_launch("latent_attention", "kv_lora_rank", 7),
              "kv_a_proj", "launch")
artifact_case("norm-eps-missing", edit_launch("rms_norm", "epsilon", None), "epsilon",
              "entry forward")
artifact_case("norm-eps-string", edit_launch("rms_norm", "epsilon", "x"), "epsilon")
artifact_case("route-topk-edited", edit_launch("moe_route", "num_experts_per_tok", 0),
              "num_experts_per_tok")
artifact_case("results-bad-ref", lambda m: m["entries"]["forward"].__setitem__(
    "results", [{"buffer": -1}]), "results")
case("artifact/missing-dir", [RUN, "forward", path("no-such-artifact"), "--weights", fixture,
                              "--ids", "1"], "no-such-artifact")

# ------------------------------------------------------------ FP8 checkpoints
# A checkpoint in the hub FP8 format (dsv3-run quantize), then broken.
subprocess.run([RUN, "quantize", art, "--weights", fixture, "--out", path("fp8")],
               check=True, capture_output=True)
fp8 = open(path("fp8", "model.safetensors"), "rb").read()
fp8_hlen = struct.unpack("<Q", fp8[:8])[0]
fp8_header = json.loads(fp8[8:8 + fp8_hlen])
fp8_data = fp8[8 + fp8_hlen:]
q = next(k for k, v in fp8_header.items() if k != "__metadata__" and v["dtype"] == "F8_E4M3")


def fp8_case(name, mutate, *expect):
    h = copy.deepcopy(fp8_header)
    mutate(h)
    weights_case("fp8-" + name, pack(h, fp8_data), *expect)


fp8_case("scale-missing", lambda h: h.pop(q + "_scale_inv"), q, "_scale_inv", "missing")
fp8_case("scale-renamed", lambda h: h.__setitem__(q + "_scale", h.pop(q + "_scale_inv")),
         q + "_scale_inv", "missing")


def scale_shape(h, shape):
    s = h[q + "_scale_inv"]
    n = 1
    for d in shape:
        n *= d
    s["shape"] = shape
    s["data_offsets"] = [s["data_offsets"][0], s["data_offsets"][0] + 4 * n]


old_shape = fp8_header[q + "_scale_inv"]["shape"]
if old_shape[0] > 1:
    fp8_case("scale-too-few-rows", lambda h: scale_shape(h, [old_shape[0] - 1, old_shape[1]]),
             q + "_scale_inv", "expected F32")
fp8_case("scale-3d", lambda h: scale_shape(h, [1] + old_shape), q + "_scale_inv", "expected F32")
fp8_case("scale-1d", lambda h: scale_shape(h, [old_shape[0] * old_shape[1]]), q + "_scale_inv")


def scale_int(h):
    s = h[q + "_scale_inv"]
    s["dtype"] = "I32"


fp8_case("scale-int", scale_int, q + "_scale_inv", "expected F32")

# An FP8 artifact (dsv3c --quantize fp8): its manifest's quantization and
# weight_scale records, and checkpoints whose FP8 weights are broken.
art8 = path("art8")
if not os.path.isdir(art8):
    subprocess.run([DSV3C, fixture, "--quantize", "fp8", "-o", art8, "--quiet"], check=True)
manifest8 = json.load(open(os.path.join(art8, "manifest.json")))
scale_params = [i for i, p in enumerate(manifest8["params"]) if p["role"] == "weight_scale"]


def fp8_artifact_case(name, mutate, *expect):
    d = path("a8", name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    shutil.copytree(art8, d)
    m = copy.deepcopy(manifest8)
    mutate(m)
    json.dump(m, open(os.path.join(d, "manifest.json"), "w"))
    case("artifact/fp8-" + name, [RUN, "forward", d, "--weights", fixture, "--ids", "1,2",
                                  "--out", path("a8", name + ".out")], "manifest.json", *expect)


first_scale = scale_params[0]
fp8_artifact_case("quantization-int4", lambda m: m.__setitem__("quantization", "int4"),
                  "quantization", "fp8")
fp8_artifact_case("scales-dropped",
                  lambda m: m["params"][first_scale].pop("scales"), "weight_scale", "scales")
fp8_artifact_case("scales-unknown",
                  lambda m: m["params"][first_scale].__setitem__("scales", "no.such.weight"),
                  "no.such.weight", "f8e4m3")
fp8_artifact_case("scales-bf16",
                  lambda m: m["params"][first_scale].__setitem__("dtype", "bf16"),
                  "f32 scales")
fp8_artifact_case("scale-param-gone",
                  lambda m: m["params"].pop(first_scale), "f8e4m3", "weight_scale")
fp8_artifact_case("scales-of-norm",
                  lambda m: m["params"][first_scale].__setitem__(
                      "scales", "model.layers.0.input_layernorm.weight"),
                  "model.layers.0.input_layernorm.weight", "f8e4m3")


def fp8_run_case(name, blob, *expect):
    d = path("w8", name)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "model.safetensors"), "wb").write(blob)
    case("weights/fp8-artifact-" + name,
         [RUN, "forward", art8, "--weights", d, "--ids", "1,2,3",
          "--out", path("w8", name + ".out.safetensors")], *expect)


w8 = path("fp8-128")
if not os.path.isdir(w8):
    subprocess.run([RUN, "quantize", art, "--weights", fixture, "--out", w8],
                   check=True, stdout=subprocess.DEVNULL)
w8b = open(os.path.join(w8, "model.safetensors"), "rb").read()
w8h = json.loads(w8b[8:8 + struct.unpack("<Q", w8b[:8])[0]])
w8d = w8b[8 + struct.unpack("<Q", w8b[:8])[0]:]
q8 = next(k for k, v in w8h.items() if k != "__metadata__" and v["dtype"] == "F8_E4M3")


def w8_case(name, mutate, *expect):
    h = copy.deepcopy(w8h)
    mutate(h)
    fp8_run_case(name, pack(h, w8d), *expect)


w8_case("scale-missing", lambda h: h.pop(q8 + "_scale_inv"), q8, "_scale_inv", "missing")
w8_case("weight-missing", lambda h: h.pop(q8), q8, "missing")
w8_case("weight-i8", lambda h: h[q8].__setitem__("dtype", "I8"), q8)

# -------------------------------------------------------------- tokenizers
tok_good = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                       "Tokenizer", "Inputs", "tiny", "tokenizer.json"),
                          encoding="utf-8"))
text_file = path("tok-text.jsonl")
open(text_file, "w").write(json.dumps({"text": "hello"}) + "\n")


def tokenizer_case(name, mutate, *expect, raw=None):
    d = path("tok", name)
    os.makedirs(d, exist_ok=True)
    f = os.path.join(d, "tokenizer.json")
    if raw is not None:
        open(f, "wb").write(raw)
    else:
        t = copy.deepcopy(tok_good)
        mutate(t)
        open(f, "w", encoding="utf-8").write(json.dumps(t, ensure_ascii=False))
    case("tokenizer/" + name, [RUN, "encode", "--tokenizer", d, "--jsonl", text_file],
         "tokenizer.json", *expect)


raw_good = json.dumps(tok_good, ensure_ascii=False).encode("utf-8")
tokenizer_case("empty", None, "JSON", raw=b"")
tokenizer_case("truncated", None, "JSON", raw=raw_good[:len(raw_good) // 2])
tokenizer_case("not-an-object", None, "structure", raw=b"[1, 2, 3]")
tokenizer_case("no-model", lambda t: t.pop("model"), "model")
tokenizer_case("model-wordpiece", lambda t: t["model"].__setitem__("type", "WordPiece"), "model.type")
tokenizer_case("vocab-array", lambda t: t["model"].__setitem__("vocab", [1, 2]), "model.vocab")
tokenizer_case("vocab-id-string", lambda t: t["model"]["vocab"].__setitem__("zz", "4"), "model.vocab.zz")
tokenizer_case("merges-object", lambda t: t["model"].__setitem__("merges", {"a": "b"}), "model.merges")
tokenizer_case("vocab-negative-id", lambda t: t["model"]["vocab"].__setitem__("zz", -4), "negative")
tokenizer_case("merge-unknown-token", lambda t: t["model"]["merges"].insert(0, "qqqq zzzz"),
               "model.merges[0]", "not in the vocabulary")
tokenizer_case("merge-one-word", lambda t: t["model"]["merges"].insert(0, "abc"),
               "model.merges[0]")
tokenizer_case("byte-fallback", lambda t: t["model"].__setitem__("byte_fallback", True),
               "byte_fallback")
tokenizer_case("subword-prefix", lambda t: t["model"].__setitem__("continuing_subword_prefix", "##"),
               "continuing_subword_prefix")
tokenizer_case("normalizer-nfkc", lambda t: t.__setitem__("normalizer", {"type": "NFKC"}),
               "normalizer")
tokenizer_case("pre-whitespace", lambda t: t.__setitem__("pre_tokenizer", {"type": "Whitespace"}),
               "pre_tokenizer.type", "Whitespace")
tokenizer_case("decoder-wordpiece", lambda t: t.__setitem__("decoder", {"type": "WordPiece"}),
               "decoder.type")
tokenizer_case("post-bert", lambda t: t.__setitem__("post_processor", {"type": "BertProcessing"}),
               "post_processor")


def set_regex(pattern):
    def mutate(t):
        t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = pattern
    return mutate


for label, pattern, expect in [("unterminated-class", "[abc", "unterminated"),
                               ("unterminated-group", "(ab", "expected ')'"),
                               ("unbalanced", "ab)", "unbalanced"),
                               ("nested-class", "[[a]]", "nested"),
                               ("intersection", "[a&&b]", "intersection"),
                               ("possessive", "a++", "possessive"),
                               ("lookbehind", "(?<=a)b", "lookbehind"),
                               ("script-property", "\\p{Han}+", "\\p{Han}"),
                               ("backreference", "(a)\\1", "escape"),
                               ("nothing-to-repeat", "*a", "nothing to repeat"),
                               ("range-reversed", "[z-a]", "out of order"),
                               ("bad-hex", "\\x{zz}", "hex"),
                               ("trailing-backslash", "ab\\", "backslash")]:
    tokenizer_case("regex-" + label, set_regex(pattern), "pre_tokenizer.pretokenizers[0].pattern.Regex",
                   expect)
tokenizer_case("split-behavior", lambda t: t["pre_tokenizer"]["pretokenizers"][0].__setitem__(
    "behavior", "Sideways"), "Sideways")
tokenizer_case("split-no-pattern", lambda t: t["pre_tokenizer"]["pretokenizers"][0].__setitem__(
    "pattern", {"Glob": "*"}), "pattern")
tokenizer_case("added-token-no-id", lambda t: t["added_tokens"][0].pop("id"), "structure")
bad_utf8 = path("tok-bad-utf8.jsonl")
open(bad_utf8, "wb").write(b'{"text": "ok"}\n{"text": "\\ud800"}\n')
for name, argv, expect in [
        ("encode-no-tokenizer", [RUN, "encode", "--prompt", "x"], "--tokenizer"),
        ("encode-no-input", [RUN, "encode", "--tokenizer", path("tok", "empty")], "--prompt"),
        ("encode-both-inputs", [RUN, "encode", "--tokenizer", path("tok", "empty"), "--prompt", "x",
                                "--jsonl", text_file], "either"),
        ("encode-missing-file", [RUN, "encode", "--tokenizer", path("nowhere"), "--prompt", "x"],
         "nowhere"),
        ("encode-jsonl-not-json", [RUN, "encode", "--tokenizer", path("tok", "byte-fallback"),
                                   "--jsonl", tiny_config], "error"),
        ("decode-no-ids", [RUN, "decode", "--tokenizer", path("tok", "empty")], "--ids"),
        ("generate-prompt-without-tokenizer", [RUN, "generate", art, "--weights", fixture,
                                               "--prompt", "x"], "--tokenizer"),
        ("generate-both-prompts", [RUN, "generate", art, "--weights", fixture, "--prompt", "x",
                                   "--prompt-ids", "1"], "--prompt-ids")]:
    case("cli/" + name, argv, expect)

# --------------------------------------------------------------- CLI misuse
gen = [RUN, "generate", art, "--weights", fixture]
for name, argv, expect in [
        ("run-no-command", [RUN], "no command"),
        ("run-unknown-command", [RUN, "fly", art], "fly"),
        ("run-unknown-flag", gen + ["--prompt-ids", "1", "--warp", "9"], "--warp"),
        ("run-missing-value", gen + ["--prompt-ids"], "--prompt-ids"),
        ("run-no-weights", [RUN, "generate", art, "--prompt-ids", "1"], "--weights"),
        ("run-no-prompt", gen, "--prompt-ids"),
        ("run-prompt-letters", gen + ["--prompt-ids", "a,b"], "--prompt-ids"),
        ("run-prompt-empty-item", gen + ["--prompt-ids", "1,,2"], "--prompt-ids"),
        ("run-prompt-trailing-slash", gen + ["--prompt-ids", "1/"], "--prompt-ids"),
        ("run-prompt-negative", gen + ["--prompt-ids", "-4"], "-4"),
        ("run-prompt-beyond-vocab", gen + ["--prompt-ids", "1,100000"], "100000"),
        ("run-max-new-zero", gen + ["--prompt-ids", "1", "--max-new", "0"], "--max-new"),
        ("run-max-new-text", gen + ["--prompt-ids", "1", "--max-new", "ten"], "--max-new"),
        ("run-top-p-two", gen + ["--prompt-ids", "1", "--top-p", "2"], "--top-p"),
        ("run-top-p-zero", gen + ["--prompt-ids", "1", "--top-p", "0"], "--top-p"),
        ("run-temperature-text", gen + ["--prompt-ids", "1", "--temperature", "hot"], "--temperature"),
        ("run-backend-tpu", gen + ["--prompt-ids", "1", "--backend", "tpu"], "tpu"),
        ("run-dtype-int8", gen + ["--prompt-ids", "1", "--dtype", "int8"], "int8"),
        ("run-max-batch-negative", gen + ["--prompt-ids", "1", "--max-batch", "-1"], "--max-batch"),
        ("run-speculative-sampling", gen + ["--prompt-ids", "1", "--speculative", "mtp",
                                            "--temperature", "0.7"], "--speculative"),
        ("run-speculative-unknown", gen + ["--prompt-ids", "1", "--speculative", "eagle"], "eagle"),
        ("run-extra-positional", [RUN, "forward", art, "extra", "--weights", fixture], "extra"),
        ("run-train-no-data", [RUN, "train", tart, "--init", "0", "--steps", "1", "--save-dir",
                               path("x")], "--data"),
        ("run-train-zero-steps", [RUN, "train", tart, "--init", "0", "--data", "x", "--steps", "0",
                                  "--save-dir", path("x")], "--steps"),
        ("run-train-bad-lr", [RUN, "train", tart, "--init", "0", "--data", "x", "--steps", "1",
                              "--save-dir", path("x"), "--lr", "-1"], "--lr"),
        ("run-train-seq-one", [RUN, "train", tart, "--init", "0", "--data", "x", "--steps", "1",
                               "--save-dir", path("x"), "--seq", "1"], "--seq"),
        ("run-train-on-infer-artifact", [RUN, "train", art, "--init", "0", "--data",
                                         path("tok-beyond-vocab"), "--steps", "1", "--save-dir",
                                         path("x2"), "--batch", "1", "--seq", "8"], "train_step"),
        ("run-verify-no-oracle", [RUN, "verify", art, "--weights", fixture], "--oracle"),
        ("run-forward-no-out", [RUN, "forward", art, "--weights", fixture, "--ids", "1"], "--out"),
        ("run-plot-missing-file", [RUN, "plot", path("no.jsonl"), "-o", path("p")], "no.jsonl"),
        ("run-plot-no-out", [RUN, "plot", path("no.jsonl")], "-o"),
        ("run-tokenize-no-text", [RUN, "tokenize", "--out", path("t")], "--text"),
        ("c-unknown-flag", [DSV3C, "tiny", "--warp"], "--warp"),
        ("c-no-model", [DSV3C], "no model"),
        ("c-missing-model", [DSV3C, path("nothing-here")], "nothing-here"),
        ("c-emit-dsv3-with-output", [DSV3C, "tiny", "--emit=dsv3", "-o", path("o1")], "-o"),
        ("c-bad-mode", [DSV3C, "tiny", "--mode=fast"], "fast"),
        ("c-bad-dtype", [DSV3C, "tiny", "--dtype=int4"], "int4"),
        ("c-bad-target", [DSV3C, "tiny", "--target=tpu"], "tpu"),
        ("c-max-batch-zero", [DSV3C, "tiny", "--max-batch=0", "-o", path("o2")], "max"),
        ("c-max-seq-one", [DSV3C, "tiny", "--max-seq=1", "-o", path("o3")], "max"),
        ("c-max-batch-text", [DSV3C, "tiny", "--max-batch=lots"], "lots"),
        ("c-bad-report-format", [DSV3C, "tiny", "--report=pdf"], "pdf"),
        ("c-unknown-preset", [DSV3C, "deepseek-v9"], "deepseek-v9"),
        ("c-output-is-file", [DSV3C, "tiny", "-o", tiny_config], "Not a directory")]:
    case("cli/" + name, argv, expect)

# -------------------------------------------------- ranks and parallelism
import socket


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return str(port)


epart = path("epart")
if not os.path.isdir(epart):
    subprocess.run([DSV3C, fixture, "--ep", "2", "-o", epart, "--quiet"], check=True)
open(path("tok-ok"), "wb").write(b"".join(i.to_bytes(4, "little") for i in range(256)))
eptrain = path("eptrain")
if not os.path.isdir(eptrain):
    subprocess.run([DSV3C, fixture, "--mode", "train", "--ep", "2", "-o", eptrain, "--quiet"],
                   check=True)
fwd = ["forward", epart, "--weights", fixture, "--ids", "1,2/3,4", "--out", path("l.st")]
one = ["env", "DSV3_COLLECTIVE_TIMEOUT=1"]
for name, argv, expect in [
        ("rank-beyond-world", ["env", "RANK=3", "WORLD_SIZE=2", RUN] + fwd, "RANK='3'"),
        ("world-size-text", ["env", "RANK=0", "WORLD_SIZE=two", RUN] + fwd, "WORLD_SIZE='two'"),
        ("world-size-zero", ["env", "RANK=0", "WORLD_SIZE=0", RUN] + fwd, "WORLD_SIZE='0'"),
        ("local-rank-negative", ["env", "RANK=0", "WORLD_SIZE=1", "LOCAL_RANK=-1", RUN] + fwd,
         "LOCAL_RANK"),
        ("no-master-addr", ["env", "RANK=0", "WORLD_SIZE=2", RUN] + fwd, "MASTER_ADDR"),
        ("master-port-huge", ["env", "RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                              "MASTER_PORT=99999", RUN] + fwd, "MASTER_PORT='99999'"),
        ("slurm-procid-beyond", ["env", "SLURM_PROCID=5", "SLURM_NTASKS=2", RUN] + fwd,
         "SLURM_PROCID='5'"),
        ("nobody-listening", one + ["RANK=1", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                                    "MASTER_PORT=" + free_port(), RUN] + fwd,
         ("rank 1 of 2", "cannot connect after 1 s")),
        ("nobody-connecting", one + ["RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                                     "MASTER_PORT=" + free_port(), RUN] + fwd,
         "waiting for the other ranks to connect"),
        ("timeout-text", ["env", "DSV3_COLLECTIVE_TIMEOUT=soon", "RANK=0", "WORLD_SIZE=2",
                          "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + free_port(), RUN] + fwd,
         "DSV3_COLLECTIVE_TIMEOUT='soon'"),
        ("fault-spec-bad", ["env", "DSV3_FAULT=explode:1", RUN, "launch", "--nproc", "2"] + fwd,
         "DSV3_FAULT='explode:1'"),
        ("launch-nproc-zero", [RUN, "launch", "--nproc", "0"] + fwd, "--nproc"),
        ("launch-no-nproc", [RUN, "launch"] + fwd, "--nproc N is required"),
        ("launch-no-command", [RUN, "launch", "--nproc", "2"], "no command"),
        ("launch-itself", [RUN, "launch", "--nproc", "2", "launch"], "launch itself"),
        ("launch-port-huge", [RUN, "launch", "--nproc", "2", "--master-port", "70000"] + fwd,
         "--master-port"),
        ("launch-unknown-option", [RUN, "launch", "--nodes", "2"] + fwd, "--nodes"),
        ("ep-artifact-one-rank", [RUN] + fwd, "launch --nproc 2"),
        ("ep-artifact-three-ranks", [RUN, "launch", "--nproc", "3"] + fwd,
         "compiled for 2 ranks"),
        ("single-artifact-two-ranks", [RUN, "launch", "--nproc", "2", "forward", art, "--weights",
                                       fixture, "--ids", "1/2", "--out", path("l.st")],
         "single-rank artifact"),
        ("ep-fewer-sequences", [RUN, "launch", "--nproc", "2", "forward", epart, "--weights",
                                fixture, "--ids", "1,2", "--out", path("l.st")],
         "each rank needs at least one"),
        ("ep-gradcheck", [RUN, "launch", "--nproc", "2", "gradcheck", eptrain, "--weights",
                          fixture, "--ids", "1,2/3,4"],
         "`forward`, `verify`, `generate`, `train` and `time`"),
        ("timeout-zero", ["env", "DSV3_COLLECTIVE_TIMEOUT=0", RUN, "launch", "--nproc", "2"] + fwd,
         "DSV3_COLLECTIVE_TIMEOUT='0' must be a positive number"),
        ("ep-train-uneven-batch", [RUN, "launch", "--nproc", "2", "train", eptrain, "--weights",
                                   fixture, "--data", path("tok-ok"), "--steps", "1", "--batch",
                                   "3", "--seq", "8", "--save-dir", path("x3")],
         "--batch 3 does not split evenly over 2"),
        ("c-ep-uneven", [DSV3C, fixture, "--ep", "3"], "cannot split the 16 experts"),
        ("c-ep-zero", [DSV3C, fixture, "--ep", "0"], "--ep N needs N >= 1"),
        ("c-dp-zero", [DSV3C, fixture, "--dp", "0"], "--dp M needs M >= 1"),
        ("c-placement-missing", [DSV3C, fixture, "--ep", "2", "--ep-placement", path("no.json")],
         "cannot read"),
        ("c-placement-not-json", [DSV3C, fixture, "--ep", "2", "--ep-placement", tiny_config],
         "\"ep\" must be 2"),
        ("placement-no-ep", [RUN, "placement", path("m.jsonl"), "--out", path("p.json")],
         "--ep N and --out FILE are required"),
        ("placement-missing-metrics", [RUN, "placement", path("no.jsonl"), "--ep", "2", "--out",
                                       path("p.json")], "no.jsonl"),
        ("placement-not-metrics", [RUN, "placement", tiny_config, "--ep", "2", "--out",
                                   path("p.json")], "not JSON"),
        ("c-dp-not-multiple", [DSV3C, fixture, "--ep", "2", "--dp", "3"],
         "dp 3 must be a multiple of ep 2")]:
    case("parallel/" + name, argv, *([expect] if isinstance(expect, str) else expect))

# ------------------------------------------------------------------- run
failures = []
for name, argv, expect in cases:
    try:
        p = subprocess.run(argv, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        failures.append(f"{name}: timed out")
        continue
    err = (p.stderr + p.stdout).decode("utf-8", "replace")
    problems = []
    if p.returncode not in (1, 2):
        problems.append(f"exit status {p.returncode}")
    # LLVM's command-line parser words its errors its own way.
    llvm_cl = "unknown command line argument" in err.lower() or ": for the --" in err
    if "error" not in err.lower() and not llvm_cl:
        problems.append("no error message")
    for bad in ("Assertion", "terminate called", "Segmentation", "Stack dump", "PLEASE submit"):
        if bad in err:
            problems.append(f"crash ({bad})")
    for e in expect:
        if e not in err:
            problems.append(f"message lacks '{e}'")
    if problems:
        first_line = err.strip().splitlines()[0][:200] if err.strip() else "(no output)"
        failures.append(f"{name}: {'; '.join(problems)}: {first_line}")
groups = {}
for name, _, _ in cases:
    groups[name.split("/")[0]] = groups.get(name.split("/")[0], 0) + 1
print("\n".join(failures))
print(f"{len(cases)} cases ({', '.join(f'{k} {v}' for k, v in sorted(groups.items()))}), "
      f"{len(failures)} failed")
sys.exit(1 if failures else 0)
