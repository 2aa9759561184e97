#!/usr/bin/python3
"""The libchat benchmark driver (see README.md).

Starts each server on 127.0.0.1 (port 0), runs every workload for every
subject as a separate client process, interleaving subjects within each
repetition, and reports the median over repetitions as a table (stdout) and,
with --json, as JSON. A second table puts each server (grpc-go, libchat,
gRPC C++) under the same grpc-go client. Beside throughput it reports the
server's CPU time and context switches per message over the measured interval.

    run_bench.py --build-dir BUILD [--quick] [--json PATH]
    (or --bin-dir BUILD/bench --pygen-dir BUILD/pygen --pychat-dir BUILD/python)

Exits 1 if any reply was wrong, any call failed, a peer crashed or timed out;
never because of speed. Every child process is killed on exit.
"""
import argparse
import ctypes
import json
import os
import platform
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import node_rows  # the Node.js rows (bindings/node), bench/node_rows.py

HERE = os.path.dirname(os.path.abspath(__file__))

SUBJECTS = ["grpc_cpp", "libchat_c", "pychat", "grpcio", "grpc_go"]
# Servers, by the name their column has in the tables.
SERVERS = {"grpc_cpp": ["bench_grpc_server"], "libchat_c": ["bench_libchat_server"],
           "grpc_go": ["bench_go", "--mode", "server"]}
# Every client/server pairing measured: run name -> (client, server). The
# main table's subjects, then the grpc-go client against the other servers
# (the "servers under the grpc-go client" table; its grpc_go column is the
# grpc_go subject's run).
RUNS = {"grpc_cpp": ("grpc_cpp", "grpc_cpp"), "libchat_c": ("libchat_c", "libchat_c"),
        "pychat": ("pychat", "libchat_c"), "grpcio": ("grpcio", "libchat_c"),
        "grpc_go": ("grpc_go", "grpc_go"),
        "go_client/libchat_c": ("grpc_go", "libchat_c"),
        "go_client/grpc_cpp": ("grpc_go", "grpc_cpp")}
GO_TABLE = {"grpc_go": "grpc_go", "libchat_c": "go_client/libchat_c",
            "grpc_cpp": "go_client/grpc_cpp"}  # column -> run
# (key, label, unit, higher_is_better)
FIGURES = [
    ("single_stream_msgs_per_s", "single stream", "msgs/s", True),
    ("single_stream_server_cpu_us_per_msg", "single stream: server CPU", "us/msg", False),
    ("pingpong_p50_us", "ping-pong p50", "us", False),
    ("pingpong_p99_us", "ping-pong p99", "us", False),
    ("streams1000_msgs_per_s", "1,000 streams", "msgs/s", True),
    ("streams1000_server_cpu_us_per_msg", "1,000 streams: server CPU", "us/msg", False),
    ("idle10k_rss_mb", "10k idle: server RSS", "MB", False),
    ("idle10k_threads", "10k idle: server threads", "", False),
]
GO_FIGURES = [
    ("single_stream_msgs_per_s", "single stream", "msgs/s", True),
    ("single_stream_server_cpu_us_per_msg", "single stream: server CPU", "us/msg", False),
    ("single_stream_server_cs_per_msg", "single stream: server ctx switches", "/msg", False),
    ("pingpong_p50_us", "ping-pong p50", "us", False),
    ("pingpong_p99_us", "ping-pong p99", "us", False),
    ("streams1000_msgs_per_s", "1,000 streams", "msgs/s", True),
    ("streams1000_server_cpu_us_per_msg", "1,000 streams: server CPU", "us/msg", False),
    ("streams1000_server_cs_per_msg", "1,000 streams: server ctx switches", "/msg", False),
]
# Recorded for every run (JSON), whether a table shows it or not.
RUN_FIGURES = [k for k, _, _, _ in GO_FIGURES]

# Workload sizes. The two native subjects get the same counts and so do the
# two Python subjects; Python runs fewer messages so it does not dominate a
# run (figures are rates and percentiles, so they compare). A default run
# takes about 4.5 minutes on 2 cores, --quick about 20 s (README.md).
PROFILES = {
    "default": dict(reps=5, idle_reps=3, client_timeout=90, streams=1_000,
                    idle=10_000, idle_checkpoint=1_000,
                    native=dict(single=100_000, pingpong=5_000, per_stream=100),
                    python=dict(single=20_000, pingpong=2_000, per_stream=10)),
    "quick": dict(reps=1, idle_reps=1, client_timeout=40, streams=1_000,
                  idle=10_000, idle_checkpoint=1_000,
                  native=dict(single=5_000, pingpong=500, per_stream=5),
                  python=dict(single=2_000, pingpong=300, per_stream=3)),
}
NATIVE = ("grpc_cpp", "libchat_c", "grpc_go")  # clients given the native sizes


# --------------------------------------------------------------------------
# The C event queue (bench_libchat_client --queue: every stream on one
# chat_queue, driven from one thread's epoll loop) beside the blocking C API
# (a sender thread and chat_stream_recv_batch), both against the libchat_c
# server, on one stream and on 1,000. Kept apart from the tables above: its
# own rounds, table, targets and JSON key ("c_queue").
# blocking_tps (1,000 streams only) is the blocking API as a host of
# independent streams must use it, a receiving thread per stream; the
# blocking row reads the streams one after another from one thread, which
# only works because the bench knows every stream gets its replies at once.
QUEUE_MODES = {"blocking": [], "queue": ["--queue"], "queue_wait": ["--queue-wait"],
               "blocking_tps": ["--thread-per-stream"]}
QUEUE_FIGURES = [
    ("single_stream_msgs_per_s", "single stream", "msgs/s", True),
    ("single_stream_client_cpu_us_per_msg", "single stream: client CPU", "us/msg", False),
    ("single_stream_server_cpu_us_per_msg", "single stream: server CPU", "us/msg", False),
    ("streams1000_msgs_per_s", "1,000 streams", "msgs/s", True),
    ("streams1000_client_cpu_us_per_msg", "1,000 streams: client CPU", "us/msg", False),
    ("streams1000_server_cpu_us_per_msg", "1,000 streams: server CPU", "us/msg", False),
]


def queue_round(bench, rep, server):
    """One repetition of both workloads in both modes, the modes' order
    alternating between repetitions."""
    modes = list(QUEUE_MODES) if rep % 2 == 0 else list(QUEUE_MODES)[::-1]
    for workload in ("single", "streams"):
        for mode in modes:
            if mode == "blocking_tps" and workload == "single":
                continue  # one stream: the same as blocking
            r, cpu, _ = bench.run_client("libchat_c", server, workload, QUEUE_MODES[mode])
            key = "single_stream" if workload == "single" else "streams1000"
            n = r["messages"] if workload == "single" else r["streams"] * r["messages_per_stream"]
            raw = bench.queue_raw[mode]
            for figure, value in ((key + "_msgs_per_s", r["msgs_per_s"]),
                                  (key + "_client_cpu_us_per_msg", r["client_cpu_s"] * 1e6 / n),
                                  (key + "_server_cpu_us_per_msg", cpu * 1e6 / n)):
                raw.setdefault(figure, []).append(round(value, 3))
            log("  rep %d %-8s c_queue/%-10s %.0f msgs/s, client %.2f us CPU, server %.2f us "
                "CPU per message" % (rep + 1, workload, mode, r["msgs_per_s"],
                                     r["client_cpu_s"] * 1e6 / n, cpu * 1e6 / n))


def queue_medians(bench):
    return {mode: {k: (round(statistics.median(bench.queue_raw[mode][k]), 3)
                       if bench.queue_raw[mode].get(k) else None)
                   for k, _, _, _ in QUEUE_FIGURES} for mode in QUEUE_MODES}


def queue_targets(med):
    out = []
    for key, what, goal, ok in (
            ("single_stream_msgs_per_s", "one stream", ">= 0.9x", lambda r: r >= 0.9),
            ("streams1000_msgs_per_s", "1,000 streams", "> 1.0x", lambda r: r > 1.0)):
        for mode, how in (("queue", "epoll on its descriptor"), ("queue_wait", "waiting in drain")):
            r = ratio(med[mode][key], med["blocking"][key])
            out.append({"target": "C event queue (%s) vs blocking C API, %s" % (how, what),
                        "value": r, "goal": goal, "met": ok(r) if r is not None else None})
    for mode, how in (("queue", "epoll on its descriptor"), ("queue_wait", "waiting in drain")):
        r = ratio(med[mode]["streams1000_msgs_per_s"], med["blocking_tps"]["streams1000_msgs_per_s"])
        out.append({"target": "C event queue (%s) vs blocking, a thread per stream, 1,000 streams"
                              % how, "value": r, "goal": "> 1.0x",
                    "met": r > 1.0 if r is not None else None})
    return out


# --------------------------------------------------------------------------
# TLS: the C client against the libchat_c server over TLS beside the same
# pair over plaintext, one stream and ping-pong, in the same repetitions.
# Certificates come from tests/security/make_certs.sh (openssl), made in a
# temporary directory; the client trusts the test CA (--tls-ca).
TLS_FIGURES = [
    ("single_stream_msgs_per_s", "single stream", "msgs/s", True),
    ("single_stream_client_cpu_us_per_msg", "single stream: client CPU", "us/msg", False),
    ("single_stream_server_cpu_us_per_msg", "single stream: server CPU", "us/msg", False),
    ("pingpong_p50_us", "ping-pong p50", "us", False),
    ("pingpong_p99_us", "ping-pong p99", "us", False),
]
MAKE_CERTS = os.path.join(HERE, "..", "tests", "security", "make_certs.sh")


def tls_server(bench, cert_dir):
    return Server("libchat_c_tls", bench.server_cmd("libchat_c") + [
        "--tls-cert", os.path.join(cert_dir, "server.pem"),
        "--tls-key", os.path.join(cert_dir, "server.key")])


def tls_round(bench, rep, servers, cert_dir):
    """One repetition: both workloads against both servers, the order of the
    two alternating between repetitions."""
    modes = ["plaintext", "tls"] if rep % 2 == 0 else ["tls", "plaintext"]
    for workload in ("single", "pingpong"):
        for mode in modes:
            extra = ["--tls-ca", os.path.join(cert_dir, "ca.pem")] if mode == "tls" else []
            r, cpu, _ = bench.run_client("libchat_c", servers[mode], workload, extra)
            raw = bench.tls_raw[mode]
            if workload == "pingpong":
                raw.setdefault("pingpong_p50_us", []).append(r["p50_us"])
                raw.setdefault("pingpong_p99_us", []).append(r["p99_us"])
                log("  rep %d pingpong tls/%-10s p50 %.1f us, p99 %.1f us" % (
                    rep + 1, mode, r["p50_us"], r["p99_us"]))
                continue
            n = r["messages"]
            for figure, value in (("single_stream_msgs_per_s", r["msgs_per_s"]),
                                  ("single_stream_client_cpu_us_per_msg", r["client_cpu_s"] * 1e6 / n),
                                  ("single_stream_server_cpu_us_per_msg", cpu * 1e6 / n)):
                raw.setdefault(figure, []).append(round(value, 3))
            log("  rep %d single   tls/%-10s %.0f msgs/s, client %.2f us CPU, server %.2f us "
                "CPU per message" % (rep + 1, mode, r["msgs_per_s"], r["client_cpu_s"] * 1e6 / n,
                                     cpu * 1e6 / n))


def tls_medians(bench):
    return {mode: {k: (round(statistics.median(bench.tls_raw[mode][k]), 3)
                       if bench.tls_raw[mode].get(k) else None)
                   for k, _, _, _ in TLS_FIGURES} for mode in ("plaintext", "tls")}


class BenchFailure(Exception):
    """A wrong reply, a failed call, a crash or a timeout: the run fails."""


# --------------------------------------------------------------------------
# Child processes: each one is tracked and killed when the driver exits,
# whatever the reason. The peers also ask the kernel to kill them if the
# driver dies (PR_SET_PDEATHSIG); Python children get the same here.

CHILDREN = []
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(cmd, env=None, stdin=subprocess.DEVNULL):
    # stderr goes to a file: a long-lived peer that logs a lot must never
    # block on a full pipe nobody reads.
    err = tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=err,
                         env=env, preexec_fn=_die_with_parent)
    p.errfile = err
    CHILDREN.append(p)
    return p


def err_text(p, limit=2000):
    p.errfile.seek(0)
    return p.errfile.read().decode(errors="replace").strip()[-limit:]


def reap(p):
    if p in CHILDREN:
        CHILDREN.remove(p)


def kill_all():
    while CHILDREN:
        p = CHILDREN.pop()
        if p.poll() is None:
            p.kill()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _on_signal(sig, frame):
    raise SystemExit(128 + sig)


class Lines:
    """Line reader on a child's stdout with a timeout."""

    def __init__(self, proc):
        self.proc = proc
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def readline(self, timeout, what):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchFailure("timed out waiting for %s" % what)
            if not self.sel.select(left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                rc = self.proc.wait()
                raise BenchFailure("%s: process ended (rc=%s) %s" % (what, rc, err_text(self.proc)))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def read_json_line(lines, timeout, what):
    line = lines.readline(timeout, what)
    try:
        return json.loads(line)
    except ValueError:
        raise BenchFailure("%s: not JSON: %r" % (what, line))


# --------------------------------------------------------------------------
# Servers


def _cpu_clock(pid):
    """The CPU-time clock of process `pid` (clock_getcpuclockid), or None."""
    clk = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clk)) != 0:
        return None
    return clk.value


class Server:
    def __init__(self, kind, cmd):
        self.kind = kind
        self.proc = spawn(cmd + ["--address", "127.0.0.1:0"], stdin=subprocess.PIPE)
        self.lines = Lines(self.proc)
        hello = read_json_line(self.lines, 20, "%s server start" % kind)
        self.port, self.pid = hello["port"], hello["pid"]
        self.target = "127.0.0.1:%d" % self.port
        self.clock = _cpu_clock(self.pid)

    def usage(self):
        """(CPU seconds, context switches) of the server so far.

        CPU: utime + stime of the whole process, all threads including those
        that ended. Read from the process's CPU-time clock, which is that sum
        in ns (/proc/PID/stat has it in clock ticks, 10 ms here: too coarse
        for a --quick run); /proc/PID/stat is the fallback. Context switches:
        voluntary + involuntary summed over the live threads
        (/proc/PID/task/*/status; /proc/PID/status counts the main thread only,
        and a thread that ends takes its count along)."""
        self.check_alive()
        cpu = None
        if self.clock is not None:
            try:
                cpu = time.clock_gettime(self.clock)
            except OSError:
                cpu = None
        if cpu is None:
            with open("/proc/%d/stat" % self.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        switches = 0
        task_dir = "/proc/%d/task" % self.pid
        for tid in os.listdir(task_dir):
            try:
                with open("%s/%s/status" % (task_dir, tid)) as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches:",
                                            "nonvoluntary_ctxt_switches:")):
                            switches += int(line.split()[1])
            except OSError:  # the thread just ended
                pass
        return cpu, switches

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchFailure("%s server died (rc=%s): %s" % (
                self.kind, self.proc.returncode, err_text(self.proc)))

    def sample(self):
        """(VmRSS in MB, Threads) from /proc."""
        self.check_alive()
        rss_kb = threads = None
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        return round(rss_kb / 1024.0, 1), threads

    def stop(self):
        """Closing stdin asks the server to stop; it must exit cleanly."""
        self.check_alive()
        self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise BenchFailure("%s server did not stop" % self.kind)
        finally:
            reap(self.proc)
        if rc != 0:
            raise BenchFailure("%s server exited with %d: %s" % (self.kind, rc, err_text(self.proc)))


# --------------------------------------------------------------------------
# Clients: one process per measurement.


class Bench:
    def __init__(self, args, profile):
        self.args = args
        self.p = profile
        self.bin = lambda name: os.path.join(args.bin_dir, name)
        paths = [d for d in (args.pychat_dir, args.pygen_dir) if d]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(paths + [env["PYTHONPATH"]] if env.get("PYTHONPATH") else paths)
        self.py_env = env
        self.python = sys.executable
        self.available = {}   # subject (= client) -> None or reason it is skipped
        self.raw = {r: {} for r in RUNS}  # run -> figure -> [per rep]
        self.queue_raw = {m: {} for m in QUEUE_MODES}  # the C event queue section
        self.tls_raw = {"plaintext": {}, "tls": {}}  # the TLS section
        self.details = {}

    def probe_python(self):
        """pychat is built by another part of the tree: bench it if it imports."""
        probes = (("pychat", "import pychat; pychat.Client.chat"),
                  ("grpcio", "import grpc, chat_pb2, chat_pb2_grpc"))
        for subject, code in probes:
            r = subprocess.run([self.python, "-c", code], env=self.py_env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            if r.returncode == 0:
                self.available[subject] = None
            else:
                last = (r.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
                self.available[subject] = "not importable (%s)" % last
        self.available["grpc_cpp"] = self.available["libchat_c"] = None
        self.available["grpc_go"] = (
            None if os.access(self.bin("bench_go"), os.X_OK) else
            "bench_go not built (go, protoc-gen-go, protoc-gen-go-grpc or "
            "golang-google-grpc-dev missing when the build tree was configured)")

    def server_cmd(self, kind):
        return [self.bin(SERVERS[kind][0])] + SERVERS[kind][1:]

    def run_available(self, run):
        client, server = RUNS[run]
        return not self.available[client] and not self.available[server]

    def client_cmd(self, client, target, workload):
        sizes = self.p["native" if client in NATIVE else "python"]
        n = sizes["per_stream" if workload == "streams" else workload]
        common = ["--target", target, "--workload", workload, "--messages", str(n),
                  "--streams", str(self.p["streams"]), "--sync"]
        timeout = ["--timeout-s", str(self.p["client_timeout"])]
        if client == "grpc_cpp":
            return [self.bin("bench_grpc_client")] + common + timeout, None
        if client == "libchat_c":
            return [self.bin("bench_libchat_client")] + common + timeout, None
        if client == "grpc_go":
            return [self.bin("bench_go"), "--mode", "client"] + common + timeout, None
        return [self.python, os.path.join(HERE, "py_client.py"), "--subject", client] + common, self.py_env

    def run_client(self, run, server, workload, extra=()):
        """One client process. It prints {"sync": "start"} and {"sync": "stop"}
        around its measured interval and waits on stdin each time, so the
        server's CPU time and context switches are sampled at exactly those
        points. `extra`: more client arguments. Returns (result, cpu seconds,
        context switches) of the interval."""
        client = RUNS[run][0]
        what = " ".join(["%s %s" % (run, workload)] + list(extra))
        cmd, env = self.client_cmd(client, server.target, workload)
        cmd = cmd + list(extra)
        proc = spawn(cmd, env=env, stdin=subprocess.PIPE)
        lines = Lines(proc)
        deadline = time.monotonic() + self.p["client_timeout"] + 10
        marks = {}
        try:
            while True:
                left = deadline - time.monotonic()
                line = lines.readline(left, what)
                if not line.startswith("{"):
                    continue
                msg = json.loads(line)
                if "sync" not in msg:
                    break
                marks[msg["sync"]] = server.usage()
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            rc = proc.wait(timeout=max(deadline - time.monotonic(), 1))
        except (BenchFailure, OSError, ValueError, subprocess.TimeoutExpired) as e:
            proc.kill()
            proc.wait()
            raise BenchFailure("%s failed: %s %s" % (what, e, err_text(proc)))
        finally:
            reap(proc)
        server.check_alive()
        if rc != 0 or "error" in msg or set(marks) != {"start", "stop"}:
            raise BenchFailure("%s failed (rc=%s): %s %s" % (what, rc, msg, err_text(proc)))
        (cpu0, cs0), (cpu1, cs1) = marks["start"], marks["stop"]
        return msg, cpu1 - cpu0, cs1 - cs0

    def record(self, run, figure, value):
        self.raw[run].setdefault(figure, []).append(value)

    def throughput_round(self, rep, servers):
        runs = [r for r in RUNS if self.run_available(r)]
        order = runs[rep % len(runs):] + runs[:rep % len(runs)]
        for workload in ("single", "pingpong", "streams"):
            for run in order:
                server = servers[RUNS[run][1]]
                r, cpu, cs = self.run_client(run, server, workload)
                if workload == "pingpong":
                    self.record(run, "pingpong_p50_us", r["p50_us"])
                    self.record(run, "pingpong_p99_us", r["p99_us"])
                    log("  rep %d %-8s %-19s p50 %.1f us, p99 %.1f us" % (
                        rep + 1, workload, run, r["p50_us"], r["p99_us"]))
                    continue
                key = "single_stream" if workload == "single" else "streams1000"
                n = r["messages"] if workload == "single" else r["streams"] * r["messages_per_stream"]
                self.record(run, key + "_msgs_per_s", r["msgs_per_s"])
                self.record(run, key + "_server_cpu_us_per_msg", round(cpu * 1e6 / n, 3))
                self.record(run, key + "_server_cs_per_msg", round(cs / n, 4))
                log("  rep %d %-8s %-19s %.0f msgs/s, server %.2f us CPU and %.3f context "
                    "switches per message" % (rep + 1, workload, run, r["msgs_per_s"],
                                              cpu * 1e6 / n, cs / n))

    def idle_round(self, rep):
        """Fresh server, 10k streams opened and confirmed by a raw gRPC client
        process, then the server's VmRSS and Threads."""
        kinds = [k for k in SERVERS if not self.available[k]]
        kinds = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
        for subject in kinds:
            server = Server(subject, self.server_cmd(subject))
            try:
                rss0, threads0 = server.sample()
                client = spawn([self.bin("bench_grpc_client"), "--target", server.target,
                                "--workload", "idle", "--streams", str(self.p["idle"]),
                                "--checkpoint", str(self.p["idle_checkpoint"]),
                                "--channels", str(self.args.idle_channels),
                                "--timeout-s", str(self.p["client_timeout"])],
                               stdin=subprocess.PIPE)
                lines = Lines(client)
                t0 = time.monotonic()
                samples = {}
                for upto in (self.p["idle_checkpoint"], self.p["idle"]):
                    ready = read_json_line(lines, self.p["client_timeout"], "idle streams to open")
                    if not ready.get("ready") or ready.get("streams") != upto:
                        raise BenchFailure("idle client: %s %s" % (ready, err_text(client)))
                    time.sleep(0.5)  # let the server's post-open work settle
                    samples[upto] = server.sample()
                    client.stdin.write(b"go on\n")
                    client.stdin.flush()
                open_s = time.monotonic() - t0
                closed = read_json_line(lines, self.p["client_timeout"], "idle streams to close")
                rc = client.wait(timeout=30)
                reap(client)
                if rc != 0 or closed.get("closed") != self.p["idle"]:
                    raise BenchFailure("idle client failed (rc=%s): %s %s" % (
                        rc, closed, err_text(client)))
                server.stop()
            finally:
                if server.proc.poll() is None:
                    server.proc.kill()
            rss1k, threads1k = samples[self.p["idle_checkpoint"]]
            rss, threads = samples[self.p["idle"]]
            per_stream_kb = (rss - rss1k) * 1024 / (self.p["idle"] - self.p["idle_checkpoint"])
            self.record(subject, "idle10k_rss_mb", rss)
            self.record(subject, "idle10k_threads", threads)
            d = self.details.setdefault("idle", {}).setdefault(subject, [])
            d.append({"rss_mb_0": rss0, "threads_0": threads0, "rss_mb_1k": rss1k,
                      "threads_1k": threads1k, "rss_mb_10k": rss, "threads_10k": threads,
                      "kb_per_idle_stream": round(per_stream_kb, 1),
                      "open_seconds": round(open_s, 2)})
            log("  rep %d idle     %-9s RSS %.1f/%.1f/%.1f MB, threads %d/%d/%d at 0/1k/10k "
                "streams (%.1f KB per stream)" % (rep + 1, subject, rss0, rss1k, rss, threads0,
                                                  threads1k, threads, per_stream_kb))

    def run(self):
        self.probe_python()
        for s, why in self.available.items():
            if why:
                log("note: %s skipped: %s" % (s, why))
        servers = {k: Server(k, self.server_cmd(k)) for k in SERVERS if not self.available[k]}
        cert_dir = tempfile.mkdtemp(prefix="libchat-bench-certs-")
        try:
            subprocess.run(["sh", MAKE_CERTS, cert_dir], check=True, timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.SubprocessError) as e:
            raise BenchFailure("cannot make the TLS certificates: %s" % e)
        tls = {"plaintext": servers["libchat_c"], "tls": tls_server(self, cert_dir)}
        for rep in range(self.p["reps"]):
            self.throughput_round(rep, servers)
            queue_round(self, rep, servers["libchat_c"])
            tls_round(self, rep, tls, cert_dir)
            # Server memory and threads barely move between runs; fewer
            # idle rounds leave time for more throughput repetitions.
            if rep < self.p["idle_reps"]:
                self.idle_round(rep)
        for s in list(servers.values()) + [tls["tls"]]:
            s.stop()
        shutil.rmtree(cert_dir, ignore_errors=True)

    def medians(self):
        """run -> figure -> median (None when not measured)."""
        keys = [k for k, _, _, _ in FIGURES] + RUN_FIGURES
        out = {}
        for run in RUNS:
            out[run] = {}
            for key in keys:
                vals = self.raw[run].get(key)
                out[run][key] = round(statistics.median(vals), 3) if vals else None
        return out


def busy_cpu_seconds():
    """CPU time the whole machine (all CPUs) has spent busy, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]  # user .. steal
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def own_cpu_seconds():
    """CPU time of the driver and its (reaped) children: every peer."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Report


def ratio(v, base):
    return v / base if v is not None and base else None


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "msgs/s":
        return "{:,.0f}".format(v)
    if unit in ("us", "MB"):
        return "{:,.1f}".format(v)
    if unit == "us/msg":
        return "{:,.2f}".format(v)
    if unit == "/msg":
        return "{:,.3f}".format(v)
    return "{:,.0f}".format(v)


def table(med, figures, columns, base):
    """columns: [(heading, run)]; ratios are to the `base` run's figure."""
    head = ["figure"] + [c for c, _ in columns]
    rows = []
    for key, label, unit, higher in figures:
        row = ["%s (%s, %s better)" % (label, unit or "count", "higher" if higher else "lower")]
        b = med[base][key]
        for _, run in columns:
            v = med[run][key]
            r = ratio(v, b)
            row.append(fmt(v, unit) + ("" if r is None else " (%.2fx)" % r))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                               for i, c in enumerate(r))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def targets(med, details):
    """The team's goals for libchat; informational, never a failure."""
    g, c, py, gi = med["grpc_cpp"], med["libchat_c"], med["pychat"], med["grpcio"]
    go, go_c = med["grpc_go"], med["go_client/libchat_c"]
    out = []

    def add(name, value, goal, ok):
        out.append({"target": name, "value": value, "goal": goal,
                    "met": ok if value is not None else None})

    # The goals are issue 9's (the completion-queue core) and the first
    # benchmark's (pychat against grpcio).
    r = ratio(c["single_stream_msgs_per_s"], g["single_stream_msgs_per_s"])
    add("libchat_c single stream vs grpc_cpp", r, ">= 3.0x", r is not None and r >= 3.0)
    r = ratio(c["pingpong_p50_us"], g["pingpong_p50_us"])
    add("libchat_c ping-pong p50 vs grpc_cpp", r, "<= 1.2x", r is not None and r <= 1.2)
    r = ratio(c["streams1000_msgs_per_s"], g["streams1000_msgs_per_s"])
    add("libchat_c 1,000 streams vs grpc_cpp", r, ">= 1.5x", r is not None and r >= 1.5)
    r = ratio(py["single_stream_msgs_per_s"], gi["single_stream_msgs_per_s"])
    add("pychat single stream vs grpcio", r, ">= 10x", r is not None and r >= 10)
    r = ratio(py["streams1000_msgs_per_s"], gi["streams1000_msgs_per_s"])
    add("pychat 1,000 streams vs grpcio", r, ">= 10x", r is not None and r >= 10)
    # The servers under the grpc-go client: libchat's against grpc-go's.
    for key, what, goal, most in (("single_stream", "one stream", "<= 1.0x", 1.0),
                                  ("streams1000", "1,000 streams", "<= 1.2x", 1.2)):
        k = key + "_server_cpu_us_per_msg"
        r = ratio(go_c[k], go[k])
        add("libchat server CPU/msg, %s, go client, vs grpc_go" % what, r, goal,
            r is not None and r <= most)
    r = ratio(go_c["single_stream_msgs_per_s"], go["single_stream_msgs_per_s"])
    add("libchat server msgs/s, one stream, go client, vs grpc_go", r, ">= 1.0x",
        r is not None and r >= 1.0)
    r = ratio(go_c["pingpong_p50_us"], go["pingpong_p50_us"])
    add("libchat server ping-pong p50, go client, vs grpc_go", r, "<= 1.0x",
        r is not None and r <= 1.0)
    r = ratio(c["idle10k_rss_mb"], g["idle10k_rss_mb"])
    add("libchat server RSS, 10k idle streams, vs grpc_cpp", r, "<= 1.0x", r is not None and r <= 1.0)
    # "Independent of stream count": the same from 1k to 10k idle streams
    # (0 -> 1k can add a thread or two while gRPC's pools warm up).
    idle = details.get("idle", {}).get("libchat_c", [])
    name = "libchat server threads, 1k -> 10k idle streams"
    if idle:
        t1k = statistics.median(d["threads_1k"] for d in idle)
        t10k = statistics.median(d["threads_10k"] for d in idle)
        add(name, "%d -> %d" % (t1k, t10k), "unchanged", t1k == t10k)
    else:
        add(name, None, "unchanged", None)
    return out


def targets_text(ts):
    lines = ["targets (informational):"]
    for t in ts:
        v = t["value"]
        shown = "n/a" if v is None else (("%.3fx" % v) if isinstance(v, float) else str(v))
        state = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        lines.append("  %-60s %-10s goal %-9s %s" % (t["target"], shown, t["goal"], state))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# pychat.aio against grpc.aio (bench/aio_bench.py measures; this only runs it)

sys.path.insert(0, HERE)
import aio_bench  # noqa: E402


def run_aio_bench(args, bench):
    """The aio table's figures, {"skipped": why} when pychat or grpcio is not
    importable; a failure (wrong reply, failed call) fails the run."""
    if bench.available.get("pychat") or bench.available.get("grpcio"):
        return {"skipped": "pychat or grpcio not importable"}
    profile = dict(aio_bench.PROFILES["quick" if args.quick else "default"])
    if args.reps:
        profile["reps"] = args.reps
    try:
        return aio_bench.measure(args.bin_dir, bench.py_env, profile, log=log)
    except aio_bench.Failure as e:
        raise BenchFailure("aio: %s" % e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="CMake build tree: sets the three below")
    ap.add_argument("--bin-dir", help="directory with the bench_* peers (BUILD/bench)")
    ap.add_argument("--pygen-dir", help="grpcio stubs chat_pb2, chat_pb2_grpc (BUILD/pygen)")
    ap.add_argument("--pychat-dir", help="directory holding the pychat package (BUILD/python)")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, quick 1)")
    ap.add_argument("--idle-channels", type=int, default=1,
                    help="connections the 10k idle streams are spread over")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--node-only", action="store_true", help="only the Node.js rows (node_rows.py)")
    args = ap.parse_args()
    if args.build_dir:
        b = os.path.abspath(args.build_dir)
        args.bin_dir = args.bin_dir or os.path.join(b, "bench")
        args.pygen_dir = args.pygen_dir or os.path.join(b, "pygen")
        args.pychat_dir = args.pychat_dir or os.path.join(b, "python")
    if not args.bin_dir or not args.pygen_dir:
        ap.error("give --build-dir, or --bin-dir and --pygen-dir")
    for name in ("bench_grpc_server", "bench_grpc_client", "bench_libchat_server",
                 "bench_libchat_client"):  # bench_go is optional (needs go)
        if not os.access(os.path.join(args.bin_dir, name), os.X_OK):
            ap.error("%s not found in %s: build it first (ninja -C BUILD)" % (name, args.bin_dir))

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    profile = dict(PROFILES["quick" if args.quick else "default"])
    if args.reps:
        profile["reps"] = args.reps
        profile["idle_reps"] = min(profile["idle_reps"], args.reps)

    started = time.monotonic()
    busy0, own0 = busy_cpu_seconds(), own_cpu_seconds()
    bench = Bench(args, profile)
    failure = None
    node = None
    try:
        if not args.node_only:
            bench.run()
        # --- Node.js rows (bench/node_rows.py) ---
        node = node_rows.measure(sys.modules[__name__], bench, args, profile)
    except BenchFailure as e:
        failure = str(e)
    finally:
        kill_all()
    aio = None  # pychat.aio against grpc.aio: bench/aio_bench.py
    if not failure and not args.node_only:
        try:
            aio = run_aio_bench(args, bench)
        except BenchFailure as e:
            failure = str(e)
    elapsed = time.monotonic() - started
    # What else ran on the machine meanwhile, in CPUs on average: the
    # figures are only comparable between runs with little of it.
    other = max(busy_cpu_seconds() - busy0 - (own_cpu_seconds() - own0), 0) / elapsed

    med = bench.medians()
    ts = targets(med, bench.details)
    print(table(med, FIGURES, [(s, s) for s in SUBJECTS], "grpc_cpp"))
    print()
    print("servers under the grpc-go client (ratios to grpc_go):")
    print(table(med, GO_FIGURES, [(s, GO_TABLE[s]) for s in ("grpc_go", "libchat_c", "grpc_cpp")],
                "grpc_go"))
    print()
    print(targets_text(ts))
    print()
    qmed = queue_medians(bench)
    qts = queue_targets(qmed)
    print("the C client on the event queue, one thread, vs the blocking C API "
          "(libchat_c server; ratios to blocking; CPU per message is each process's):")
    print(table(qmed, QUEUE_FIGURES, [("blocking", "blocking"), ("queue", "queue"),
                                      ("queue_wait", "queue_wait"),
                                      ("thread/stream", "blocking_tps")], "blocking"))
    print(targets_text(qts))
    print()
    tmed = tls_medians(bench)
    print("TLS: the C client and the libchat_c server over TLS (test CA, P-256 keys) vs "
          "plaintext (ratios to plaintext):")
    print(table(tmed, TLS_FIGURES, [("plaintext", "plaintext"), ("tls", "tls")], "plaintext"))
    for s, why in bench.available.items():
        if why:
            print("note: %s: %s; its figures are null" % (s, why))
    print("note: idle figures are the server's: libchat_c shows the libchat echo "
          "server, pychat/grpcio target that same server and show n/a")
    print("note: server CPU and context switches per message are the server "
          "process's over the client's measured interval (see README.md)")
    if aio is not None:
        print()
        print(aio_bench.table(aio) if "subjects" in aio else "pychat.aio row: %s" % aio["skipped"])
    if node is not None:  # --- Node.js rows ---
        print()
        print(node_rows.report(node, sys.modules[__name__]))
    print("%s run, %d repetition(s) (idle: %d), medians; %.1f s; other load on the "
          "machine meanwhile: %.2f of %d CPUs" % (
              "quick" if args.quick else "default", profile["reps"], profile["idle_reps"],
              elapsed, other, os.cpu_count()))

    if args.json:
        doc = {
            "subjects": {s: med[s] for s in SUBJECTS},
            "go_client": {s: {k: med[GO_TABLE[s]][k] for k in RUN_FIGURES} for s in GO_TABLE},
            "targets": ts,
            "c_queue": {"medians": qmed, "targets": qts, "raw": bench.queue_raw},
            "tls": {"medians": tmed, "raw": bench.tls_raw},
            "details": bench.details,
            "raw": bench.raw,
            "skipped": {s: why for s, why in bench.available.items() if why},
            "config": dict(profile, mode="quick" if args.quick else "default",
                           idle_channels=args.idle_channels),
            "machine": {"host": platform.node(), "cpus": os.cpu_count(),
                        "platform": platform.platform(), "other_load_cpus": round(other, 2)},
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(elapsed, 1),
            "failure": failure,
            "aio": aio,
            "node": node,  # --- Node.js rows ---
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    if failure:
        print("FAILED: %s" % failure, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
