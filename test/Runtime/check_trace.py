#!/usr/bin/env python3
"""Checks a `dsv3-run --trace` file: Chrome trace-event JSON, host phases on
track 0, kernel launches on track 1 in time order, each naming its kernel
and the IR op (checkpoint prefix) it was lowered from."""
import json
import sys

t = json.load(open(sys.argv[1]))
events = t["traceEvents"]
spans = [e for e in events if e.get("ph") == "X"]
kernels = [e for e in spans if e["cat"] == "kernel"]
host = [e for e in spans if e["cat"] == "host"]
errors = []
if any(e["dur"] < 0 or e["ts"] < 0 for e in spans):
    errors.append("negative time")
if any(e["tid"] != 1 for e in kernels) or any(e["tid"] != 0 for e in host):
    errors.append("tracks mixed up")
ts = [e["ts"] for e in kernels]
if ts != sorted(ts):
    errors.append("kernel launches out of order")
ops = {(e["name"], e["args"].get("op", "")) for e in kernels}
print(f"{len(kernels)} kernel events, {len(host)} host phases")
for name in sys.argv[2:]:
    hits = sorted(op for k, op in ops if k == name)
    print(f"{name}: {hits[0] if hits else 'MISSING'}")
print("phases:", ", ".join(sorted({e["name"] for e in host})))
print("\n".join(errors) if errors else "trace: PASS")
