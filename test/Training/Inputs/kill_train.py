#!/usr/bin/env python3
"""kill -9 while checkpointing: runs `dsv3-run train --save-every 1` and
kills it with SIGKILL at random points, again and again, each time resuming
from the newest complete checkpoint. After every kill each `step-*`
directory must hold a complete safetensors file (header parses, data fits)
and the newest must resume. At the end the run completes and its final
weights must equal an uninterrupted run's, bit for bit.

usage: kill_train.py DSV3_RUN ART TOKENS WORKDIR KILLS"""
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time

run, art, tokens, work, kills = sys.argv[1:6]
kills = int(kills)
STEPS = 600
common = ["--data", tokens, "--steps", str(STEPS), "--batch", "2", "--seq", "16",
          "--lr", "2e-3", "--warmup", "3", "--quiet"]


def complete(path):
    """A safetensors file whose header parses and whose data is all there."""
    try:
        with open(path, "rb") as f:
            b = f.read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
        return len(b) >= 8 + n + end and "dsv3_step" in h["__metadata__"]
    except Exception:
        return False


def checkpoints(d):
    out = []
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if re.fullmatch(r"step-\d{6}", name):
            out.append(name)
    return out


random.seed(1234)
ckpt = os.path.join(work, "killed")
broken, killed_mid_save = [], 0
for k in range(kills):
    have = checkpoints(ckpt)
    start = ["--resume", os.path.join(ckpt, have[-1])] if have else ["--init", "0"]
    p = subprocess.Popen([run, "train", art, *start, *common, "--save-dir", ckpt,
                          "--save-every", "1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(random.uniform(0.02, 0.4))
    p.send_signal(signal.SIGKILL)
    p.wait()
    if any(n.endswith(".tmp") or n.endswith(".old") for n in os.listdir(ckpt)):
        killed_mid_save += 1
    for name in checkpoints(ckpt):
        if not complete(os.path.join(ckpt, name, "model.safetensors")):
            broken.append(f"after kill {k}: {name}")
# Finish from the newest complete checkpoint, then an uninterrupted run.
have = checkpoints(ckpt)
last = have[-1] if have else None
subprocess.run([run, "train", art, *(["--resume", os.path.join(ckpt, last)] if last
                                      else ["--init", "0"]), *common,
                "--save-dir", ckpt, "--save-every", "10"], check=True,
               stdout=subprocess.DEVNULL)
ref = os.path.join(work, "uninterrupted")
subprocess.run([run, "train", art, "--init", "0", *common, "--save-dir", ref,
                "--save-every", "100"], check=True, stdout=subprocess.DEVNULL)
final = f"step-{STEPS:06d}/model.safetensors"
same = open(os.path.join(ckpt, final), "rb").read() == open(os.path.join(ref, final), "rb").read()
print(f"{kills} kills ({killed_mid_save} left a save half-done), newest before the "
      f"end: {last}, broken checkpoints: {len(broken)}")
print("\n".join(broken))
print(f"final weights identical to an uninterrupted run: {same}")
