#!/usr/bin/env python3
"""Parses the SVG charts `dsv3-run plot` wrote for METRICS.jsonl and checks
that they show the metrics: a well-formed SVG each, one polyline per loss
series with a point per step, the learning-rate values in order, and per
MoE layer a heatmap with one cell per (step column, expert)."""
import json
import os
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"
metrics, out = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(metrics) if l.strip()]
steps = len(rows)
errors = []


def svg(name):
    root = ET.parse(os.path.join(out, name)).getroot()
    if root.tag != NS + "svg":
        errors.append(f"{name}: root is {root.tag}")
    return root


loss = svg("loss.svg")
lines = {p.get("data-name"): p for p in loss.iter(NS + "polyline")}
for k in ("loss", "loss_main", "loss_mtp", "loss_balance"):
    if k not in lines:
        errors.append(f"loss.svg: no series {k}")
    elif len(lines[k].get("points").split()) != steps:
        errors.append(f"loss.svg: {k} has {len(lines[k].get('points').split())} points, {steps} steps")
# Lower on screen is a smaller loss: the total loss ends lower than it starts
# on the chart exactly when it does in the metrics.
pts = [tuple(map(float, p.split(","))) for p in lines["loss"].get("points").split()]
if (pts[-1][1] > pts[0][1]) != (rows[-1]["loss"] < rows[0]["loss"]):
    errors.append("loss.svg: the drawn curve does not follow the metrics")
legend = [t.text for t in loss.iter(NS + "text") if t.get("class") == "legend"]
if legend[:4] != ["loss", "loss_main", "loss_mtp", "loss_balance"]:
    errors.append(f"loss.svg: legend {legend}")
for name in ("lr.svg", "tokens_per_s.svg", "grad_norm.svg"):
    if len(list(svg(name).iter(NS + "polyline"))) != 1:
        errors.append(f"{name}: expected one series")
layers = sorted(rows[0]["expert_load"])
for layer in layers:
    name = "expert_load_" + layer.replace(" ", "_") + ".svg"
    cells = [r for r in svg(name).iter(NS + "rect") if r.get("class") == "cell"]
    experts = len(rows[0]["expert_load"][layer])
    if len(cells) != min(steps, 600) * experts:
        errors.append(f"{name}: {len(cells)} cells for {steps} steps x {experts} experts")
html = open(os.path.join(out, "index.html")).read()
for f in ["loss.svg"] + ["expert_load_" + l.replace(" ", "_") + ".svg" for l in layers]:
    if f not in html:
        errors.append(f"index.html does not show {f}")
print("\n".join(errors) if errors else f"plots: PASS ({steps} steps, {len(layers)} MoE layers)")
sys.exit(1 if errors else 0)
