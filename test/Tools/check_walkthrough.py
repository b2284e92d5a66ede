#!/usr/bin/env python3
"""Keeps docs/dialect.md's pass-by-pass walkthrough true: every IR line
quoted in an ```mlir block of the section "The same layer through every
pass" must appear verbatim in the file that `dsv3c tiny --dump-ir-dir`
writes for the stage its bullet names (`05-dsv3-fuse-swiglu`, ...)."""
import os
import re
import sys

doc, ir_dir = sys.argv[1], sys.argv[2]
text = open(doc).read()
section = text.split("## The same layer through every pass", 1)[1].split("\n## ", 1)[0]
files = {f.split(".")[0]: open(os.path.join(ir_dir, f)).read() for f in os.listdir(ir_dir)}
stage, checked, missing = None, 0, []
in_block = False
for line in section.splitlines():
    m = re.match(r"\* `(\d\d-[a-z0-9-]+)`", line.strip())
    if m:
        stage = m.group(1)
    if line.strip().startswith("```"):
        in_block = not in_block
        continue
    if in_block and line.strip():
        checked += 1
        body = files.get(stage, "")
        if line.strip() not in body:
            missing.append(f"{stage}: {line.strip()[:100]}")
print("\n".join(missing))
print(f"walkthrough: {checked} IR lines checked, {len(missing)} not in the dumps")
sys.exit(1 if missing or checked == 0 else 0)
