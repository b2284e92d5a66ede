#!/usr/bin/env python3
"""Compares two training runs' metrics (train --metrics JSON lines).

usage: compare_losses.py A.jsonl B.jsonl RTOL

Same steps; loss and gradient norm within RTOL (relative), expert loads
identical. Prints "N steps: loss within X, grad_norm within Y, expert loads
identical|DIFFER"; exits 1 when anything is off.
"""
import json
import sys


def main():
    a = [json.loads(l) for l in open(sys.argv[1])]
    b = [json.loads(l) for l in open(sys.argv[2])]
    rtol = float(sys.argv[3])
    if [r["step"] for r in a] != [r["step"] for r in b]:
        print("the runs have different steps")
        return 1
    rel = lambda x, y: abs(x - y) / max(abs(x), abs(y), 1e-30)
    loss = max(rel(x["loss"], y["loss"]) for x, y in zip(a, b))
    norm = max(rel(x["grad_norm"], y["grad_norm"]) for x, y in zip(a, b))
    loads = all(x["expert_load"] == y["expert_load"] for x, y in zip(a, b))
    print(f"{len(a)} steps: loss within {loss:.2g}, grad_norm within {norm:.2g}, "
          f"expert loads {'identical' if loads else 'DIFFER'}")
    return 0 if loss <= rtol and norm <= rtol and loads else 1


if __name__ == "__main__":
    sys.exit(main())
