#!/usr/bin/env python3
"""Prints the closing 'N passed, N failed, N skipped' line of a lit run
from its --output JSON, and exits non-zero when anything failed or nothing
ran."""
import json
import sys

PASSED = {"PASS", "XFAIL", "FLAKYPASS"}
SKIPPED = {"UNSUPPORTED", "SKIPPED", "EXCLUDED"}


def main(path):
    try:
        with open(path) as f:
            tests = json.load(f).get("tests", [])
    except (OSError, ValueError) as e:
        print(f"summarize-lit: cannot read {path}: {e}")
        print("0 passed, 1 failed")
        return 1
    passed = sum(t["code"] in PASSED for t in tests)
    skipped = sum(t["code"] in SKIPPED for t in tests)
    failed = len(tests) - passed - skipped
    for t in tests:
        if t["code"] not in PASSED | SKIPPED:
            print(f"{t['code']}: {t['name']}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
