"""Reads ThreadSanitizer reports from ctest logs and fails on ours.

The system gRPC is not instrumented, so TSan cannot see the ordering gRPC
provides between its threads and reports some hand-overs inside gRPC's
header-inlined code (see tsan.supp). A report counts as ours, and fails the
run, when the racing access of either stack happens in the project's
sources: its frame #0, or, when #0 is standard-library code (a std::deque,
std::string or atomic of ours), the first frame below it that is not. The
others are counted and listed, not gating.

    tsan_gate.py LOG [LOG...]
"""
import re
import sys

OURS = re.compile(r"/(core|capi)/src/")
# Frames that only say which library helper touched the memory.
LIBRARY = re.compile(r"^(std::|__gnu_cxx::|void std::|bool std::|operator |_M_|__)|/usr/include/c\+\+/")


def racing_frame(stack):
    """The frame that made the access: #0, skipping standard-library code."""
    frames = re.findall(r"^\s+#\d+ (.*)$", stack, re.M)
    for frame in frames:
        if not LIBRARY.search(frame):
            return frame
    return frames[0] if frames else "?"


def main(paths):
    ours, theirs = [], []
    for path in paths:
        text = open(path, errors="replace").read()
        for block in text.split("WARNING: ThreadSanitizer:")[1:]:
            block = block.split("SUMMARY: ThreadSanitizer")[0].split("Location is")[0]
            kind = block.splitlines()[0].strip()
            # The two access stacks: "Read of ..."/"Previous write of ..." etc.
            stacks = re.split(r"\n  (?:Previous )?(?:[Aa]tomic )?(?:[Ww]rite|[Rr]ead)[^\n]*\n", block)[1:]
            frames = [racing_frame(st) for st in stacks] or ["?"]
            mine = [f for f in frames if OURS.search(f)]
            (ours if mine else theirs).append(f"{kind}: {(mine or frames)[0]}")
    print(f"[tsan] {len(ours)} report(s) in our code, {len(theirs)} inside gRPC's inlined code")
    for r in ours:
        print(f"[tsan]   OURS  {r}")
    for r in sorted(set(theirs))[:10]:
        print(f"[tsan]   gRPC  {r[:160]}")
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
