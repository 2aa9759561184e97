#!/usr/bin/python3
"""pychat.aio against grpc.aio: 1,000 streams from one asyncio loop.

    aio_bench.py --build-dir BUILD [--quick] [--reps N] [--json PATH]
    (or --bin-dir BUILD/bench --pygen-dir BUILD/pygen --pychat-dir BUILD/python)

Starts the libchat echo server (bench_libchat_server) on 127.0.0.1:0 and,
for each repetition, one client process per subject, alternating:

  pychat_aio  pychat.aio.Client: stream.send / stream.recv
  grpc_aio    grpcio's grpc.aio channel with the chat_pb2_grpc stub:
              call.write / call.read

Each client opens S streams on one connection (one client / channel) from
one event loop; every stream sends one message and gets its reply (so all
are open). Then, with every stream open and nothing to do, it measures its
own CPU time over --idle-s seconds (idle CPU, % of one core). Then the clock
starts: every stream, in a coroutine of its own, sends M messages (awaiting
each send), half-closes, and reads its M replies, each checked to be
"bench: <message>" in order, then the OK end; S*M / (first send -> last
end). Beside msgs/s: the client's CPU time per message over that interval
(all its threads; grpc.aio's included) and the server's, sampled at the
same two points (--sync, as run_bench.py does).

Also run by run_bench.py (function measure()), which adds its table and
JSON. Exits 1 on a wrong reply, a failed call or a crashed peer; never
because of speed.
"""
import argparse
import asyncio
import ctypes
import json
import os
import selectors
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "bench"
SUBJECTS = ("pychat_aio", "grpc_aio")
PROFILES = {"default": dict(reps=3, streams=1000, messages=100, idle_s=2.0, timeout=120),
            "quick": dict(reps=1, streams=1000, messages=5, idle_s=1.0, timeout=60)}


def message(i):
    return "m%015d" % (i % 10**15)  # as py_client.py and bench_util.h


def expected(i):
    return NAME + ": " + message(i)


class Failure(Exception):
    pass


# --------------------------------------------------------------------------
# Client side: one subject in this process.


def sync_point(what, enabled):
    if enabled:
        print(json.dumps({"sync": what}), flush=True)
        sys.stdin.readline()


async def idle_cpu(seconds):
    """This process's CPU time over `seconds` of doing nothing, as a
    fraction of one core. The loop waits on a timer: whatever runs meanwhile
    is the library's (and the loop's) own."""
    c0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return (time.process_time() - c0) / (time.monotonic() - t0)


async def run_pychat_aio(args):
    import pychat.aio

    want_first = expected(0)
    msgs = [message(i) for i in range(1, args.messages + 1)]
    want = [expected(i) for i in range(1, args.messages + 1)]
    async with pychat.aio.Client(args.target) as client:
        streams = [client.chat() for _ in range(args.streams)]

        async def warm(s):
            await s.send(NAME, message(0))
            r = await s.recv()
            if r != want_first:
                raise Failure("wrong reply %r" % (r,))

        await asyncio.gather(*(warm(s) for s in streams))
        idle = await idle_cpu(args.idle_s)

        async def one(s):
            send = s.send
            for m in msgs:
                await send(NAME, m)
            s.complete()
            recv = s.recv
            for w in want:
                r = await recv()
                if r != w:
                    raise Failure("wrong reply %r, wanted %r" % (r, w))
            r = await recv()
            if r is not None:
                raise Failure("extra reply %r" % (r,))

        sync_point("start", args.sync)
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(s) for s in streams))
        t1, c1 = time.perf_counter(), time.process_time()
        sync_point("stop", args.sync)
        for s in streams:
            s.close()
    return idle, t1 - t0, c1 - c0


async def run_grpc_aio(args):
    import grpc
    import chat_pb2
    import chat_pb2_grpc

    Msg = chat_pb2.ChatMessage
    want_first = expected(0)
    msgs = [message(i) for i in range(1, args.messages + 1)]
    want = [expected(i) for i in range(1, args.messages + 1)]
    async with grpc.aio.insecure_channel(args.target) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        stub = chat_pb2_grpc.ChatStub(channel)
        calls = [stub.chat() for _ in range(args.streams)]

        async def warm(c):
            await c.write(Msg(name=NAME, message=message(0)))
            r = await c.read()
            if r is grpc.aio.EOF or r.value != want_first:
                raise Failure("wrong reply %r" % (r,))

        await asyncio.gather(*(warm(c) for c in calls))
        idle = await idle_cpu(args.idle_s)

        async def one(c):
            for m in msgs:
                await c.write(Msg(name=NAME, message=m))
            await c.done_writing()
            for w in want:
                r = await c.read()
                if r is grpc.aio.EOF or r.value != w:
                    raise Failure("wrong reply %r, wanted %r" % (r, w))
            r = await c.read()
            if r is not grpc.aio.EOF:
                raise Failure("extra reply %r" % (r,))
            code = await c.code()
            if code != grpc.StatusCode.OK:
                raise Failure("call ended %s" % (code,))

        sync_point("start", args.sync)
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(c) for c in calls))
        t1, c1 = time.perf_counter(), time.process_time()
        sync_point("stop", args.sync)
    return idle, t1 - t0, c1 - c0


def client_main(args):
    run = run_pychat_aio if args.client == "pychat_aio" else run_grpc_aio
    try:
        idle, secs, cpu = asyncio.run(run(args))
    except ImportError as e:
        print(json.dumps({"error": "import: %s" % e}), flush=True)
        return 2
    except Exception as e:
        print("aio_bench %s: %s: %s" % (args.client, type(e).__name__, e), file=sys.stderr)
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}), flush=True)
        return 1
    n = args.streams * args.messages
    print(json.dumps({"subject": args.client, "streams": args.streams,
                      "messages_per_stream": args.messages, "seconds": round(secs, 6),
                      "msgs_per_s": round(n / secs, 1),
                      "client_cpu_us_per_msg": round(cpu * 1e6 / n, 3),
                      "idle_cpu_pct": round(idle * 100, 3)}), flush=True)
    return 0


# --------------------------------------------------------------------------
# Driver


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


class Proc:
    """A child with a line reader on stdout (deadlines) and stderr kept."""

    def __init__(self, cmd, env=None):
        import tempfile
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, env=env, preexec_fn=_die_with_parent)
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)

    def line(self, timeout, what):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("timed out waiting for %s" % what)
            if not self.sel.select(left):
                continue
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise Failure("%s: process ended (rc=%s): %s" % (what, self.p.wait(), self.stderr()))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace").strip()[-2000:]

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def cpu_seconds(pid):
    clk = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clk)) == 0:
        try:
            return time.clock_gettime(clk.value)
        except OSError:
            pass
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(bin_dir, env, profile, log=lambda m: print(m, file=sys.stderr, flush=True)):
    """Runs every repetition; returns {"subjects": {subject: medians},
    "raw": {subject: [results]}, "config": ...}. Raises Failure."""
    server = Proc([os.path.join(bin_dir, "bench_libchat_server"), "--address", "127.0.0.1:0"])
    raw = {s: [] for s in SUBJECTS}
    try:
        hello = json.loads(server.line(20, "bench_libchat_server start"))
        target, pid = "127.0.0.1:%d" % hello["port"], hello["pid"]
        for rep in range(profile["reps"]):
            order = SUBJECTS if rep % 2 == 0 else SUBJECTS[::-1]
            for subject in order:
                cmd = [sys.executable, os.path.abspath(__file__), "--client", subject,
                       "--target", target, "--streams", str(profile["streams"]),
                       "--messages", str(profile["messages"]),
                       "--idle-s", str(profile["idle_s"]), "--sync"]
                client = Proc(cmd, env=env)
                marks = {}
                try:
                    while True:
                        msg = json.loads(client.line(profile["timeout"], subject))
                        if "sync" not in msg:
                            break
                        marks[msg["sync"]] = cpu_seconds(pid)
                        client.p.stdin.write(b"go\n")
                        client.p.stdin.flush()
                    rc = client.p.wait(30)
                except (Failure, ValueError, OSError, subprocess.TimeoutExpired) as e:
                    client.kill()
                    raise Failure("%s: %s %s" % (subject, e, client.stderr()))
                if rc != 0 or "error" in msg or set(marks) != {"start", "stop"}:
                    raise Failure("%s failed (rc=%s): %s %s" % (subject, rc, msg, client.stderr()))
                if server.p.poll() is not None:
                    raise Failure("server died: %s" % server.stderr())
                n = msg["streams"] * msg["messages_per_stream"]
                msg["server_cpu_us_per_msg"] = round((marks["stop"] - marks["start"]) * 1e6 / n, 3)
                raw[subject].append(msg)
                log("  aio rep %d %-10s %.0f msgs/s, client %.2f us CPU/msg, server %.2f us "
                    "CPU/msg, idle client CPU %.2f%% with %d streams open" % (
                        rep + 1, subject, msg["msgs_per_s"], msg["client_cpu_us_per_msg"],
                        msg["server_cpu_us_per_msg"], msg["idle_cpu_pct"], msg["streams"]))
        server.p.stdin.close()
        if server.p.wait(15) != 0:
            raise Failure("server exited with %s: %s" % (server.p.returncode, server.stderr()))
    finally:
        server.kill()
    keys = ("msgs_per_s", "client_cpu_us_per_msg", "server_cpu_us_per_msg", "idle_cpu_pct")
    med = {s: {k: round(statistics.median(r[k] for r in raw[s]), 3) for k in keys}
           for s in SUBJECTS}
    a, g = med["pychat_aio"]["msgs_per_s"], med["grpc_aio"]["msgs_per_s"]
    return {"subjects": med, "ratio_msgs_per_s": round(a / g, 3) if g else None,
            "raw": raw, "config": dict(profile)}


def table(result):
    med, cfg = result["subjects"], result["config"]
    rows = [("figure", "pychat_aio", "grpc_aio"),
            ("%d streams x %d msgs (msgs/s, higher better)" % (cfg["streams"], cfg["messages"]),
             "{:,.0f}".format(med["pychat_aio"]["msgs_per_s"]),
             "{:,.0f}".format(med["grpc_aio"]["msgs_per_s"])),
            ("client CPU (us/msg, lower better)",
             "%.2f" % med["pychat_aio"]["client_cpu_us_per_msg"],
             "%.2f" % med["grpc_aio"]["client_cpu_us_per_msg"]),
            ("server CPU (us/msg, lower better)",
             "%.2f" % med["pychat_aio"]["server_cpu_us_per_msg"],
             "%.2f" % med["grpc_aio"]["server_cpu_us_per_msg"]),
            ("idle client CPU, %d streams open (%% of a core)" % cfg["streams"],
             "%.2f" % med["pychat_aio"]["idle_cpu_pct"], "%.2f" % med["grpc_aio"]["idle_cpu_pct"])]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    out = ["asyncio clients against the libchat echo server (medians of %d):" % cfg["reps"]]
    for r in rows:
        out.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                             for i, c in enumerate(r)))
    ratio = result["ratio_msgs_per_s"]
    out.append("pychat_aio / grpc_aio msgs/s: %s (goal >= 3x: %s)" % (
        "n/a" if ratio is None else "%.2fx" % ratio,
        "n/a" if ratio is None else "met" if ratio >= 3 else "NOT met"))
    return "\n".join(out)


def python_env(pychat_dir, pygen_dir):
    env = dict(os.environ)
    paths = [d for d in (pychat_dir, pygen_dir) if d]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", choices=SUBJECTS, help="(internal) run one subject's client")
    ap.add_argument("--target")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--idle-s", type=float, default=2.0)
    ap.add_argument("--sync", action="store_true")
    ap.add_argument("--build-dir")
    ap.add_argument("--bin-dir")
    ap.add_argument("--pygen-dir")
    ap.add_argument("--pychat-dir")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.client:
        rc = client_main(args)
        sys.stdout.flush()
        os._exit(rc)  # skip teardown with library threads around, as py_client.py
    if args.build_dir:
        b = os.path.abspath(args.build_dir)
        args.bin_dir = args.bin_dir or os.path.join(b, "bench")
        args.pygen_dir = args.pygen_dir or os.path.join(b, "pygen")
        args.pychat_dir = args.pychat_dir or os.path.join(b, "python")
    if not args.bin_dir:
        ap.error("give --build-dir or --bin-dir")
    profile = dict(PROFILES["quick" if args.quick else "default"])
    if args.reps:
        profile["reps"] = args.reps
    try:
        result = measure(args.bin_dir, python_env(args.pychat_dir, args.pygen_dir), profile)
    except Failure as e:
        print("FAILED: %s" % e, file=sys.stderr)
        return 1
    print(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
