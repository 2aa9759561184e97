"""Reads ThreadSanitizer reports from ctest logs and fails on ours.

The system gRPC is not instrumented, so TSan cannot see the ordering gRPC
provides between its threads and reports some hand-overs inside gRPC's
header-inlined code (see tsan.supp). A report counts as ours, and fails the
run, when the racing access itself (frame #0 of either stack) is in the
project's sources; the others are counted and listed, not gating.

    tsan_gate.py LOG [LOG...]
"""
import re
import sys

OURS = re.compile(r"/(core|capi)/src/")


def main(paths):
    ours, theirs = [], []
    for path in paths:
        text = open(path, errors="replace").read()
        for block in text.split("WARNING: ThreadSanitizer:")[1:]:
            block = block.split("SUMMARY: ThreadSanitizer")[0]
            tops = re.findall(r"^\s+#0 (.*)$", block, re.M)
            kind = block.splitlines()[0].strip()
            top = next((t for t in tops if OURS.search(t)), tops[0] if tops else "?")
            (ours if any(OURS.search(t) for t in tops) else theirs).append(f"{kind}: {top}")
    print(f"[tsan] {len(ours)} report(s) in our code, {len(theirs)} inside gRPC's inlined code")
    for r in ours:
        print(f"[tsan]   OURS  {r}")
    for r in sorted(set(theirs))[:10]:
        print(f"[tsan]   gRPC  {r[:160]}")
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
