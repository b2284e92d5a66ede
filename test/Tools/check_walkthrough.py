#!/usr/bin/env python3
"""Keeps docs/dialect.md's pass-by-pass walkthrough true: every IR line
quoted in an ```mlir block of the section "The same layer through every
pass" must appear verbatim in the file that `dsv3c tiny --dump-ir-dir`
writes for the stage its bullet names (`05-dsv3-fuse-swiglu`, ...); with a
third argument, the same for the section "The same layer over 2
expert-parallel ranks" against the dumps of `dsv3c tiny --ep 2`; with a
fourth, the section "The same layer in FP8" against `dsv3c tiny --quantize
fp8`.

usage: check_walkthrough.py DIALECT.md DUMP_DIR [EP2_DUMP_DIR [FP8_DUMP_DIR]]"""
import os
import re
import sys

doc = sys.argv[1]
text = open(doc).read()
checked, missing = 0, []


def check(title, ir_dir):
    global checked
    section = text.split(title, 1)[1].split("\n## ", 1)[0]
    files = {f.split(".")[0]: open(os.path.join(ir_dir, f)).read() for f in os.listdir(ir_dir)}
    stage, in_block = None, False
    for line in section.splitlines():
        m = re.match(r"\* `(\d\d-[a-z0-9-]+)`", line.strip())
        if m:
            stage = m.group(1)
        if line.strip().startswith("```"):
            in_block = not in_block
            continue
        if in_block and line.strip():
            checked += 1
            if line.strip() not in files.get(stage, ""):
                missing.append(f"{stage}: {line.strip()[:100]}")


check("## The same layer through every pass", sys.argv[2])
if len(sys.argv) > 3:
    check("## The same layer over 2 expert-parallel ranks", sys.argv[3])
if len(sys.argv) > 4:
    check("## The same layer in FP8", sys.argv[4])
print("\n".join(missing))
print(f"walkthrough: {checked} IR lines checked, {len(missing)} not in the dumps")
sys.exit(1 if missing or checked == 0 else 0)
