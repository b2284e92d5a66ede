#!/usr/bin/env python3
"""Compares two training runs' loss curves (train --metrics JSON lines) by
windows of W steps: single steps are noisy in both, so the second curve's
window means must lie within RTOL (relative) of the first's.

usage: compare_curves.py REF.jsonl OTHER.jsonl W RTOL [REPEAT.jsonl]

Prints every 40th step of both, then "N steps: W-step means within X (bound
RTOL): PASS|FAIL"; exits 1 on FAIL or when the runs differ in length.

REPEAT is the reference run again, from the same initialisation and data:
where the reference is not deterministic (the GPU's backward sums
gradients with atomics, so two bf16 runs part after a loss spike), the
distance between REF and REPEAT is noise, not OTHER's error, and the bound
becomes max(RTOL, 1.5 x that distance) (1.5: one repeat is a single draw
of that noise, OTHER's distance another).
"""
import json
import sys


def losses(path):
    return [json.loads(line)["loss"] for line in open(path) if line.strip()]


def distance(ref, other, n, w):
    """The largest relative difference of the W-step means over n steps."""
    worst = 0.0
    for s in range(0, n - w + 1, w):
        a, b = sum(ref[s:s + w]) / w, sum(other[s:s + w]) / w
        worst = max(worst, abs(a - b) / abs(a))
    return worst


def main():
    try:
        ref, other = losses(sys.argv[1]), losses(sys.argv[2])
    except FileNotFoundError as e:
        print(f"no curve: {e.filename}: FAIL")
        return 1
    w, rtol = int(sys.argv[3]), float(sys.argv[4])
    n = min(len(ref), len(other))
    for s in range(0, n, 40):
        print(f"  step {s + 1:3d}  {ref[s]:.4f}  {other[s]:.4f}")
    worst = distance(ref, other, n, w)
    ok = n > 0 and len(ref) == len(other)
    if len(sys.argv) > 5:
        repeat = losses(sys.argv[5])
        noise = distance(ref, repeat, n, w)
        ok = ok and len(repeat) == len(ref)
        print(f"{n} steps: the reference against its repeat: {w}-step means within "
              f"{noise:.2e}")
        rtol = max(rtol, 1.5 * noise)
    ok = ok and worst <= rtol
    print(f"{n} steps: {w}-step means within {worst:.2e} (bound {rtol:g}): "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
