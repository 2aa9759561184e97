#!/usr/bin/python3
"""Installs a build tree into a temporary prefix and uses it as a stranger would.

1. cmake --install BUILD --prefix TMP/prefix
2. the consumer project, through find_package(chat) + chat::chat
3. the same source, through cc $(pkg-config --cflags --libs chat)
4. the installed chat_server (port 0) driven by the installed chat_client,
   and the installed chat_dlopen_demo
5. the installed pychat package, imported from the prefix, runs the seed
6. nothing was installed outside the prefix (install_manifest.txt)
7. README.md's C example is the consumer source, verbatim

Every child runs with a deadline; the temporary tree and any server left
running are removed on every exit path.
"""
import argparse
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SEED_REPLIES = ["Sam: Hi", "Ann: Hey", "John: Hello"]
HERE = os.path.dirname(os.path.abspath(__file__))
CONSUMER = os.path.join(HERE, "consumer")


def log(msg):
    print(f"[install] {msg}", flush=True)


def run(cmd, timeout, env=None, capture=False):
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    res = subprocess.run(cmd, env=env, timeout=timeout, text=True,
                         stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.STDOUT if capture else None)
    if res.returncode != 0:
        if capture:
            sys.stdout.write(res.stdout or "")
        raise SystemExit(f"[install] FAILED ({res.returncode}): {cmd[0]}")
    return res.stdout if capture else None


def check_seed_output(what, out):
    lines = out.splitlines()
    if lines != SEED_REPLIES:
        sys.stdout.write(out)
        raise SystemExit(f"[install] FAILED: {what} printed the above, want {SEED_REPLIES!r}")
    log(f"ok: {what} printed the three replies")


def clean_env():
    # The installed tree must stand on its own: no library path from outside.
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    return env


def read_line(proc, deadline):
    """The first stdout line of proc, waiting at most until deadline."""
    fd = proc.stdout.fileno()
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise SystemExit("[install] FAILED: no 'listening on' line in time")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise SystemExit(f"[install] FAILED: server exited early ({proc.wait()})")
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


PYCHAT_SEED = """
import sys, pychat
assert pychat.__file__.startswith(sys.argv[1]), pychat.__file__
with pychat.Server("127.0.0.1:0") as server, \\
        pychat.Client(f"127.0.0.1:{server.port}") as client, client.chat(timeout=30) as stream:
    for name, message in [("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello")]:
        stream.send(name, message)
    stream.complete()
    for reply in stream:
        print(reply, flush=True)
"""


def check_pychat(site_dir, args, env):
    py_env = dict(env, PYTHONPATH=site_dir)
    if args.sanitize:
        # The interpreter is not instrumented: load the runtime before it.
        libs = [run([args.c_compiler, f"-print-file-name={lib}"], timeout=30, capture=True).strip()
                for lib in ("libasan.so", "libstdc++.so")]
        py_env.update(LD_PRELOAD=" ".join(libs), ASAN_OPTIONS="detect_leaks=0")
    out = run([sys.executable, "-c", PYCHAT_SEED, site_dir], timeout=60, env=py_env, capture=True)
    check_seed_output(f"pychat imported from {os.path.basename(site_dir)}", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="the build tree to install")
    ap.add_argument("--source", required=True, help="the repository root (for README.md)")
    ap.add_argument("--version", required=True, help="expected package version")
    ap.add_argument("--c-compiler", default="cc")
    ap.add_argument("--generator", default="")
    ap.add_argument("--sanitize", default="", help="CHAT_SANITIZE of the build, if any")
    args = ap.parse_args()

    # A sanitized libchat.so needs its runtime loaded first: build the
    # consumers with the same -fsanitize so the executable brings it.
    san = [f"-fsanitize={args.sanitize}", "-fno-omit-frame-pointer"] if args.sanitize else []
    env = clean_env()

    with tempfile.TemporaryDirectory(prefix="chat-install-") as tmp:
        prefix = os.path.join(tmp, "prefix")
        run(["cmake", "--install", args.build, "--prefix", prefix], timeout=120, capture=True)
        for rel in ["include/libchat/chat.h", "lib/libchat.so.1", "lib/pkgconfig/chat.pc",
                    "lib/cmake/chat/chatConfig.cmake", "lib/cmake/chat/chatConfigVersion.cmake"]:
            if not os.path.exists(os.path.join(prefix, rel)):
                raise SystemExit(f"[install] FAILED: {rel} not installed")
        log("ok: header, library, pkg-config file and CMake package installed")
        with open(os.path.join(args.build, "install_manifest.txt")) as f:
            installed = f.read().split()
        outside = [p for p in installed if not p.startswith(prefix + os.sep)]
        if outside:
            raise SystemExit(f"[install] FAILED: installed outside --prefix: {outside}")
        log(f"ok: all {len(installed)} installed files are under the prefix")

        # (a) find_package(chat) + chat::chat
        cbuild = os.path.join(tmp, "consumer-cmake")
        cfg = ["cmake", "-S", CONSUMER, "-B", cbuild, f"-DCMAKE_PREFIX_PATH={prefix}",
               f"-DCMAKE_C_COMPILER={args.c_compiler}", f"-DCMAKE_C_FLAGS={' '.join(san)}",
               "-DCMAKE_BUILD_TYPE=Release"]
        if args.generator:
            cfg += ["-G", args.generator]
        out = run(cfg, timeout=120, capture=True)
        want_dir = os.path.join(prefix, "lib", "cmake", "chat")
        if f"chat {args.version} from {want_dir}" not in out:
            sys.stdout.write(out)
            raise SystemExit(f"[install] FAILED: find_package did not pick chat {args.version} in {want_dir}")
        run(["cmake", "--build", cbuild], timeout=180, capture=True)
        exe = os.path.join(cbuild, "hello_chat")
        check_seed_output("find_package consumer", run([exe], timeout=60, env=env, capture=True))

        # (b) pkg-config
        pc_env = dict(env, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
        modversion = run(["pkg-config", "--modversion", "chat"], timeout=30, env=pc_env, capture=True).strip()
        if modversion != args.version:
            raise SystemExit(f"[install] FAILED: pkg-config says {modversion}, want {args.version}")
        if run(["pkg-config", "--print-requires", "--print-requires-private", "chat"],
               timeout=30, env=pc_env, capture=True).strip():
            raise SystemExit("[install] FAILED: chat.pc must not require anything (gRPC is private)")
        flags = run(["pkg-config", "--cflags", "--libs", "chat"], timeout=30, env=pc_env, capture=True).split()
        pc_exe = os.path.join(tmp, "hello_chat_pc")
        run([args.c_compiler, "-std=c99", "-Wall", "-Werror", *san, "-o", pc_exe,
             os.path.join(CONSUMER, "hello_chat.c"), *flags], timeout=120, capture=True)
        # pkg-config gives no rpath: point the loader at the prefix explicitly.
        pc_run_env = dict(env, LD_LIBRARY_PATH=os.path.join(prefix, "lib"))
        check_seed_output("pkg-config consumer", run([pc_exe], timeout=60, env=pc_run_env, capture=True))

        # (c) the installed programs, from the prefix (their RUNPATH finds lib/)
        bindir = os.path.join(prefix, "bin")
        if os.path.exists(os.path.join(bindir, "chat_server")):
            server = subprocess.Popen([os.path.join(bindir, "chat_server"), "--address", "127.0.0.1:0"],
                                      stdout=subprocess.PIPE, env=env)
            try:
                line = read_line(server, time.monotonic() + 30)
                log(f"server: {line}")
                if not line.startswith("listening on 127.0.0.1:"):
                    raise SystemExit(f"[install] FAILED: unexpected server line {line!r}")
                port = int(line.rsplit(":", 1)[1])
                out = run([os.path.join(bindir, "chat_client"), "--target", f"http://127.0.0.1:{port}"],
                          timeout=60, env=env, capture=True)
                check_seed_output("installed chat_client", out)
                server.send_signal(signal.SIGINT)
                rc = server.wait(timeout=30)
                if rc != 0:
                    raise SystemExit(f"[install] FAILED: chat_server exited {rc} after SIGINT")
                log("ok: chat_server stopped cleanly on SIGINT")
            finally:
                stop(server)
            demo = [os.path.join(bindir, "chat_dlopen_demo")]
            if args.sanitize:
                # ASan intercepts dlopen, so the loader sees libasan as the
                # caller and ignores the demo's RUNPATH: name the library.
                demo.append(os.path.join(prefix, "lib", "libchat.so.1"))
            check_seed_output("installed chat_dlopen_demo", run(demo, timeout=60, env=env, capture=True))
        else:
            log("examples not installed (CHAT_BUILD_EXAMPLES=OFF): skipping the programs")

        # (d) pychat, imported from where it was installed
        inits = [p for p in installed if p.endswith(os.path.join("pychat", "__init__.py"))]
        if inits:
            check_pychat(os.path.dirname(os.path.dirname(inits[0])), args, env)
        else:
            log("pychat not installed (CHAT_BUILD_PYTHON=OFF): skipping it")

    # The README's C example is this consumer: keep them identical.
    readme = os.path.join(args.source, "README.md")
    with open(os.path.join(CONSUMER, "hello_chat.c")) as f:
        src = f.read()
    with open(readme) as f:
        if "```c\n" + src + "```" not in f.read():
            raise SystemExit("[install] FAILED: README.md's C example differs from "
                             "tests/install/consumer/hello_chat.c")
    log("ok: README.md's C example is the tested consumer")
    log("PASSED")


if __name__ == "__main__":
    # SIGTERM unwinds like an error, so the temporary tree and server go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("[install] FAILED: terminated"))
    try:
        main()
    except subprocess.TimeoutExpired as e:
        sys.exit(f"[install] FAILED: timed out: {e.cmd}")
