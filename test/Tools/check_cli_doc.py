#!/usr/bin/env python3
"""Fails when a flag that `--help` lists (outside the MLIR group) is missing
from the CLI reference, so the docs cannot drift from the tool."""
import re
import sys

help_text = open(sys.argv[1]).read()
doc = open(sys.argv[2]).read()
# Only the tool's own section: stop at the MLIR options group.
own = help_text.split("dsv3c options:")[-1]
flags = set(re.findall(r"^\s+(--?[a-z][a-z0-9-]*)", own, re.M))
missing = sorted(f for f in flags if f"`{f}" not in doc)
for f in missing:
    print(f"docs/cli.md does not document {f}")
sys.exit(1 if missing else 0)
