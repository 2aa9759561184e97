#!/usr/bin/python3
"""Builds libchat the way a project that vendors it does, and runs the result.

1. configure tests/install/subdir: add_subdirectory(<repo> libchat) and
   hello_chat.c (the install consumer's source) linked to chat::chat; its
   CMakeLists fails the configure if libchat's tests, examples, pychat or
   benchmark are on, or their targets exist
2. no Python was looked for (nothing left in the cache)
3. build everything it builds (the core, libchat.so, hello_chat)
4. hello_chat starts an echo server and runs the seed against it

Each run starts from an empty build tree, so the options' defaults are
really those of a first configure (a kept cache would remember old ones).
It compiles libchat's core again: about 15 s on 2 quiet cores. Every child
runs with a deadline; the temporary tree goes on every exit path.
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEED_REPLIES = ["Sam: Hi", "Ann: Hey", "John: Hello"]


def log(msg):
    print(f"[subdir] {msg}", flush=True)


def run(cmd, timeout, env=None):
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    res = subprocess.run(cmd, env=env, timeout=timeout, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        sys.stdout.write(res.stdout)
        raise SystemExit(f"[subdir] FAILED ({res.returncode}): {cmd[0]}")
    return res.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True, help="the libchat repository root")
    ap.add_argument("--c-compiler", required=True)
    ap.add_argument("--cxx-compiler", required=True)
    ap.add_argument("--generator", default="")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="chat-subdir-") as work:
        check(args, work)


def check(args, work):
    t0 = time.monotonic()
    cfg = ["cmake", "-S", os.path.join(HERE, "subdir"), "-B", work,
           f"-DLIBCHAT_SOURCE={args.source}", "-DCMAKE_BUILD_TYPE=Release",
           f"-DCMAKE_C_COMPILER={args.c_compiler}", f"-DCMAKE_CXX_COMPILER={args.cxx_compiler}"]
    if args.generator:
        cfg += ["-G", args.generator]
    run(cfg, timeout=120)
    with open(os.path.join(work, "CMakeCache.txt")) as f:
        python = [line for line in f if line.startswith("Python_EXECUTABLE")]
    if python:
        raise SystemExit(f"[subdir] FAILED: Python was looked for: {python}")
    log(f"ok: configured with only the library ({time.monotonic() - t0:.1f} s)")

    t1 = time.monotonic()
    run(["cmake", "--build", work, "-j2"], timeout=600)
    log(f"ok: built ({time.monotonic() - t1:.1f} s)")

    # Only its own build's libchat.so, found through the build RUNPATH.
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    out = run([os.path.join(work, "hello_chat")], timeout=60, env=env)
    if out.splitlines() != SEED_REPLIES:
        sys.stdout.write(out)
        raise SystemExit(f"[subdir] FAILED: hello_chat printed the above, want {SEED_REPLIES!r}")
    log("ok: hello_chat printed the three replies")
    log(f"PASSED in {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("[subdir] FAILED: terminated"))
    try:
        main()
    except subprocess.TimeoutExpired as e:
        sys.exit(f"[subdir] FAILED: timed out: {e.cmd}")
