#!/usr/bin/env python3
"""Checks a training run's metrics against its text: check_training.py
METRICS.jsonl TEXT. The mean loss of the last 20 steps must be below half
the first step's loss and below the unigram (byte) entropy of the text, in
nats: the model learned more than byte frequencies."""
import collections
import json
import math
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
text = open(sys.argv[2], "rb").read()
counts = collections.Counter(text)
entropy = -sum(c / len(text) * math.log(c / len(text)) for c in counts.values())
first = rows[0]["loss"]
last = sum(r["loss"] for r in rows[-20:]) / 20
print(f"steps {len(rows)}: first loss {first:.4f}, mean of the last 20 {last:.4f}, "
      f"unigram entropy {entropy:.4f} nats")
ok = last < 0.5 * first and last < entropy
print("training: " + ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
