#!/usr/bin/env python3
"""Which warpgroup-MMA kernels of a cubin does ptxas serialize?

ptxas waits for a `wgmma.mma_async` before issuing the next one (a
`WARPGROUP.DEPBAR.LE gsb0, 0x0` ahead of every `WARPGROUP.ARRIVE`) when it
cannot prove the MMAs' pipeline safe, e.g. with an MMA or a wait_group under
a branch it cannot tell is warpgroup-uniform; it says so (C7520) only in
some of those cases. A pipelined kernel has a few waits for many MMAs; a
serialized one has one per MMA. Usage:
  wgmma-audit.py [--cuobjdump PATH] CUBIN...
prints each kernel's MMA, wait and arrive counts and exits 1 if any kernel
with more than 4 MMAs waits once per MMA."""
import re
import shutil
import subprocess
import sys

args = sys.argv[1:]
tool = shutil.which("cuobjdump") or "/usr/local/cuda/bin/cuobjdump"
if args[:1] == ["--cuobjdump"]:
    tool, args = args[1], args[2:]
if not args:
    sys.exit(__doc__)
bad = 0
for cubin in args:
    sass = subprocess.run([tool, "-sass", cubin], capture_output=True, text=True, check=True).stdout
    counts, kernel = {}, None
    for line in sass.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            kernel = m.group(1)
            counts[kernel] = [0, 0, 0]
        elif kernel:
            c = counts[kernel]
            if "GMMA." in line and "WARPGROUP" not in line:
                c[0] += 1
            elif "WARPGROUP.DEPBAR" in line:
                c[1] += 1
            elif "WARPGROUP.ARRIVE" in line:
                c[2] += 1
    for kernel, (mma, wait, arrive) in sorted(counts.items()):
        if not mma:
            continue
        serial = mma > 4 and wait >= mma
        bad += serial
        name = subprocess.run(["c++filt"], input=kernel, capture_output=True,
                              text=True).stdout.strip() or kernel
        print(f"{'SERIALIZED' if serial else 'pipelined':>10}  {mma:3} MMAs {wait:3} waits "
              f"{arrive:3} arrives  {name.split('(')[0]}  ({cubin})")
sys.exit(1 if bad else 0)
