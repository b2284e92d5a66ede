#!/usr/bin/env python3
"""compare_runs.py A.jsonl B.jsonl: every step B logged has exactly A's loss
and gradient norm (bit-identical resume)."""
import json
import sys

a = {r["step"]: r for r in map(json.loads, open(sys.argv[1]))}
b = {r["step"]: r for r in map(json.loads, open(sys.argv[2]))}
bad = [s for s in b if (a[s]["loss"], a[s]["grad_norm"]) != (b[s]["loss"], b[s]["grad_norm"])]
print(f"resumed steps {min(b)}..{max(b)}: {len(b) - len(bad)} identical, {len(bad)} differ")
sys.exit(1 if bad else 0)
