#!/usr/bin/env python3
"""Guards libchat's C ABI: compares the built libchat.so with the committed
baseline (capi/abi/libchat.so.<major>.abi) using libabigail.

  check_abi.py --lib build/capi/libchat.so.1            check (the test)
  check_abi.py --lib build/capi/libchat.so.1 --update   record a new baseline

Any difference fails until the baseline is updated, so every change to the
ABI is a deliberate one. An incompatible one (a function removed or changed,
a struct's layout changed, other than a versioned options struct growing at
its end) may land only with a new major version: a new SONAME and a new
baseline file. A compatible one (a function, an enumerator or an options
field added) is recorded with --update, in the commit that makes it. README.md, "Versions and compatibility", states the rules.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADERS = ROOT / "capi" / "include" / "libchat"

# abidiff's exit status is a bit field (libabigail's abidiff manual).
ABIDIFF_ERROR = 1
ABIDIFF_USAGE_ERROR = 2
ABIDIFF_ABI_CHANGE = 4
ABIDIFF_ABI_INCOMPATIBLE_CHANGE = 8


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        sys.exit(f"check_abi: {name} not found: install abigail-tools (scripts/setup.sh does)")
    return path


def dump(lib: Path, out: Path) -> None:
    """The library's public ABI only: exported functions, the types reachable
    from chat.h, no paths of this machine."""
    subprocess.run([tool("abidw"), "--exported-interfaces-only", "--headers-dir", str(HEADERS),
                    "--drop-private-types", "--no-show-locs", "--no-comp-dir-path",
                    "--no-corpus-path", "--out-file", str(out), str(lib)], check=True)


def diff(old: Path, new: Path) -> tuple[int, str]:
    r = subprocess.run([tool("abidiff"), "--no-show-locs", str(old), str(new)],
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def soname_major(lib: Path) -> str:
    m = re.search(r"\.so\.(\d+)", lib.resolve().name) or re.search(r"\.so\.(\d+)", lib.name)
    if not m:
        sys.exit(f"check_abi: cannot tell the SONAME major of {lib}")
    return m.group(1)


def self_test(current: Path, tmp: Path) -> None:
    """The check must be able to fail: a baseline with one more function than
    the library (as if the library had dropped it) is an incompatible change."""
    text = current.read_text()
    m = re.search(r"\n(\s*<function-decl name='chat_version'.*?</function-decl>)", text, re.S)
    sym = re.search(r"\n(\s*<elf-symbol name='chat_version' .*?/>)", text)
    if not m or not sym:
        sys.exit("check_abi: self-test cannot find chat_version in the dump")
    richer = text.replace(m.group(1), m.group(1) + m.group(1).replace("chat_version", "chat_gone"), 1)
    richer = richer.replace(sym.group(1), sym.group(1) + sym.group(1).replace("chat_version", "chat_gone"), 1)
    baseline = tmp / "richer.abi"
    baseline.write_text(richer)
    rc, report = diff(baseline, current)
    if not rc & ABIDIFF_ABI_INCOMPATIBLE_CHANGE:
        sys.exit(f"check_abi: self-test: a removed function was not flagged (abidiff {rc}):\n{report}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, type=Path, help="the built libchat.so.<major>")
    ap.add_argument("--update", action="store_true", help="write the baseline from --lib")
    args = ap.parse_args()
    baseline = ROOT / "capi" / "abi" / f"libchat.so.{soname_major(args.lib)}.abi"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        current = tmp / "current.abi"
        dump(args.lib, current)
        if args.update:
            baseline.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(current, baseline)
            print(f"check_abi: wrote {baseline.relative_to(ROOT)}")
            return 0
        if not baseline.exists():
            print(f"check_abi: no baseline {baseline.relative_to(ROOT)} for this SONAME major: "
                  "a new major records one with --update")
            return 1
        self_test(current, tmp)
        rc, report = diff(baseline, current)
        if rc == 0:
            print(f"check_abi: the ABI matches {baseline.relative_to(ROOT)}")
            return 0
        if rc & (ABIDIFF_ERROR | ABIDIFF_USAGE_ERROR):
            print(f"check_abi: abidiff failed ({rc}):\n{report}")
            return 1
        removed, changed, added = summary(report)
        if rc & ABIDIFF_ABI_INCOMPATIBLE_CHANGE or removed:
            verdict = "INCOMPATIBLE change (something was removed)"
        elif changed:
            # abidiff calls a struct's new layout a change, not a break: it is
            # one, unless only a versioned options struct grew at its end.
            verdict = ("existing functions' types CHANGED (a struct layout, a parameter): "
                       "incompatible unless only a versioned options struct grew at its end")
        else:
            verdict = "compatible addition"
        print(f"check_abi: {verdict}, against {baseline.relative_to(ROOT)}:\n{report}\n"
              "An incompatible change needs a new major version (new SONAME, new baseline). "
              "A compatible one is recorded in the commit that makes it:\n"
              f"  /usr/bin/python3 tests/abi/check_abi.py --lib {args.lib} --update\n"
              "See README.md, 'Versions and compatibility'.")
        return 1


def summary(report: str) -> tuple[int, int, int]:
    """Removed, changed and added functions and variables, from abidiff's summary."""
    removed = changed = added = 0
    for m in re.finditer(r"changes summary: (\d+) Removed(?: \(\d+ filtered out\))?, "
                         r"(\d+) Changed(?: \(\d+ filtered out\))?, (\d+) Added", report):
        removed += int(m.group(1))
        changed += int(m.group(2))
        added += int(m.group(3))
    return removed, changed, added


if __name__ == "__main__":
    sys.exit(main())
