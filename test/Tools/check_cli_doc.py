#!/usr/bin/env python3
"""Fails when a flag that a tool's --help lists is missing from the CLI
reference, so the docs cannot drift from the tools.

usage: check_cli_doc.py TOOL HELP_TEXT_FILE DOCS_MD
  dsv3c:    every flag of its own options group (not MLIR's)
  dsv3-run: every --flag of its usage text
  dsv3-opt: every dsv3 pass and pipeline flag"""
import re
import sys

tool, help_file, doc_file = sys.argv[1:4]
help_text = open(help_file).read()
doc = open(doc_file).read()
if tool == "dsv3c":
    own = help_text.split("dsv3c options:")[-1]
    flags = set(re.findall(r"^\s+(--?[a-z][a-z0-9-]*)", own, re.M))
elif tool == "dsv3-run":
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text))
else:
    flags = set(re.findall(r"(--dsv3k?-[a-z0-9-]+)", help_text))
missing = sorted(f for f in flags if f"`{f}" not in doc)
for f in missing:
    print(f"docs/cli.md does not document {tool} {f}")
print(f"{tool}: {len(flags)} flags, {len(missing)} undocumented")
sys.exit(1 if missing else 0)
