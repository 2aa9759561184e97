"""The Node.js rows of the benchmark (bindings/node; README.md, "Node.js").

run_bench.py calls measure() after its own subjects and prints report().
The peers are bench/node_bench.js (this package's client and a JS-handler
server; @grpc/grpc-js's client and server) and the C peers
(bench_libchat_server, bench_libchat_client):

  client rows: node_bench.js --subject node|grpcjs against one libchat echo
               server (bench_libchat_server); msgs/s, the client process's
               CPU per message (all its threads) and the server's.
  server rows: bench_libchat_client against node_bench.js --mode server
               --subject node|grpcjs; msgs/s and the Node server process's
               CPU per message. node_cq1 is the same JS-handler server with
               completionQueues 1 (one transport thread; chat.h and
               core/src/cq.h: it suits a small box that is not exposed).

Each repetition runs every pairing, alternating which subject goes first.
Skipped (figures null, reason given) without node or bindings/node's
node_modules.
"""
import os
import shutil
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_BENCH = os.path.join(HERE, "node_bench.js")
PKG = os.path.join(HERE, "..", "bindings", "node")
SUBJECTS = ("node", "node_cq1", "grpcjs")
CLIENTS = ("node", "grpcjs")  # node_cq1 is a server only: completionQueues 1
# (key, label, unit, higher_is_better)
FIGURES = [
    ("client_single_msgs_per_s", "client, single stream", "msgs/s", True),
    ("client_single_client_cpu_us_per_msg", "client, single stream: client CPU", "us/msg", False),
    ("client_single_server_cpu_us_per_msg", "client, single stream: server CPU", "us/msg", False),
    ("client_streams1000_msgs_per_s", "client, 1,000 streams", "msgs/s", True),
    ("client_streams1000_client_cpu_us_per_msg", "client, 1,000 streams: client CPU", "us/msg", False),
    ("client_streams1000_server_cpu_us_per_msg", "client, 1,000 streams: server CPU", "us/msg", False),
    ("server_single_msgs_per_s", "JS-handler server, single stream", "msgs/s", True),
    ("server_single_server_cpu_us_per_msg", "JS-handler server, single stream: server CPU", "us/msg", False),
    ("server_streams1000_msgs_per_s", "JS-handler server, 1,000 streams", "msgs/s", True),
    ("server_streams1000_server_cpu_us_per_msg", "JS-handler server, 1,000 streams: server CPU", "us/msg", False),
]


def skipped_reason(node):
    if not node:
        return "node not found"
    for dep in ("koffi", os.path.join("@grpc", "grpc-js"), os.path.join("@grpc", "proto-loader")):
        if not os.path.exists(os.path.join(PKG, "node_modules", dep, "package.json")):
            return "bindings/node/node_modules missing (npm ci there; scripts/setup.sh does it)"
    return None


def measure(rb, bench, args, profile):
    """rb: the run_bench module (its spawn, Server, Lines, BenchFailure, log).
    Returns {"figures": {subject: {key: median}}, "raw": ..., "skipped": why}."""
    node = shutil.which("node")
    why = skipped_reason(node)
    out = {"figures": {s: {k: None for k, _, _, _ in FIGURES} for s in SUBJECTS},
           "raw": {s: {} for s in SUBJECTS}, "skipped": why}
    if why:
        rb.log("note: node rows skipped: %s" % why)
        return out
    env = dict(os.environ)
    lib = os.path.join(os.path.dirname(os.path.abspath(args.bin_dir)), "capi", "libchat.so.1")
    if os.path.exists(lib) and "CHAT_LIBRARY" not in env:
        env["CHAT_LIBRARY"] = lib  # the libchat of the build being measured
    raw = out["raw"]

    def record(subject, key, value):
        raw[subject].setdefault(key, []).append(value)

    def sizes(subject):
        # This package gets the native sizes; grpc-js the Python ones (it is
        # about as slow), so a run stays short. Figures are rates.
        return profile["native" if subject == "node" else "python"]

    def run_client(cmd, cenv, server, what):
        """Like Bench.run_client: the server is sampled at the client's sync
        points. Returns (result, server CPU seconds over the interval)."""
        proc = rb.spawn(cmd, env=cenv, stdin=rb.subprocess.PIPE)
        lines = rb.Lines(proc)
        deadline = rb.time.monotonic() + profile["client_timeout"] + 10
        marks = {}
        try:
            while True:
                line = lines.readline(deadline - rb.time.monotonic(), what)
                if not line.startswith("{"):
                    continue
                msg = rb.json.loads(line)
                if "sync" not in msg:
                    break
                marks[msg["sync"]] = server.usage()
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            rc = proc.wait(timeout=max(deadline - rb.time.monotonic(), 1))
        except (rb.BenchFailure, OSError, ValueError, rb.subprocess.TimeoutExpired) as e:
            proc.kill()
            proc.wait()
            raise rb.BenchFailure("%s failed: %s %s" % (what, e, rb.err_text(proc)))
        finally:
            rb.reap(proc)
        server.check_alive()
        if rc != 0 or "error" in msg or set(marks) != {"start", "stop"}:
            raise rb.BenchFailure("%s failed (rc=%s): %s %s" % (what, rc, msg, rb.err_text(proc)))
        return msg, marks["stop"][0] - marks["start"][0]

    def node_server(subject):
        extra = ["--completion-queues", "1"] if subject == "node_cq1" else []
        class NodeServer(rb.Server):
            def __init__(self):  # rb.Server with our env (CHAT_LIBRARY)
                self.kind = "node_%s" % subject
                self.proc = rb.spawn([node, NODE_BENCH, "--mode", "server", "--subject",
                                      "grpcjs" if subject == "grpcjs" else "node",
                                      "--address", "127.0.0.1:0"] + extra, env=env, stdin=rb.subprocess.PIPE)
                self.lines = rb.Lines(self.proc)
                hello = rb.read_json_line(self.lines, 20, "%s server start" % self.kind)
                self.port, self.pid = hello["port"], hello["pid"]
                self.target = "127.0.0.1:%d" % self.port
                self.clock = rb._cpu_clock(self.pid)
        return NodeServer()

    echo = rb.Server("libchat_c", [bench.bin("bench_libchat_server")])
    servers = {s: node_server(s) for s in SUBJECTS}
    try:
        for rep in range(profile["reps"]):
            rot = lambda xs: xs[rep % len(xs):] + xs[:rep % len(xs)]
            for workload, key in (("single", "single"), ("streams", "streams1000")):
                for subject in rot(CLIENTS):
                    sz = sizes(subject)
                    n = sz["per_stream" if workload == "streams" else "single"]
                    total = n * (profile["streams"] if workload == "streams" else 1)
                    cmd = [node, NODE_BENCH, "--mode", "client", "--subject", subject,
                           "--target", echo.target, "--workload", workload, "--messages", str(n),
                           "--streams", str(profile["streams"]), "--sync",
                           "--timeout-s", str(profile["client_timeout"])]
                    r, cpu = run_client(cmd, env, echo, "node rows: %s client %s" % (subject, workload))
                    record(subject, "client_%s_msgs_per_s" % key, r["msgs_per_s"])
                    record(subject, "client_%s_client_cpu_us_per_msg" % key, round(r["client_cpu_us_per_msg"], 3))
                    record(subject, "client_%s_server_cpu_us_per_msg" % key, round(cpu * 1e6 / total, 3))
                    rb.log("  rep %d node rows: %-8s client %-8s %.0f msgs/s, client %.2f us CPU, "
                           "server %.2f us CPU per message" % (rep + 1, subject, workload, r["msgs_per_s"],
                                                              r["client_cpu_us_per_msg"], cpu * 1e6 / total))
                for subject in rot(SUBJECTS):
                    sz = profile["native"]
                    n = sz["per_stream" if workload == "streams" else "single"]
                    total = n * (profile["streams"] if workload == "streams" else 1)
                    server = servers[subject]
                    cmd = [bench.bin("bench_libchat_client"), "--target", server.target,
                           "--workload", workload, "--messages", str(n), "--streams",
                           str(profile["streams"]), "--sync", "--timeout-s", str(profile["client_timeout"])]
                    r, cpu = run_client(cmd, None, server, "node rows: %s server %s" % (subject, workload))
                    record(subject, "server_%s_msgs_per_s" % key, r["msgs_per_s"])
                    record(subject, "server_%s_server_cpu_us_per_msg" % key, round(cpu * 1e6 / total, 3))
                    rb.log("  rep %d node rows: %-8s server %-8s %.0f msgs/s, server %.2f us CPU per "
                           "message" % (rep + 1, subject, workload, r["msgs_per_s"], cpu * 1e6 / total))
        for s in [echo] + list(servers.values()):
            s.stop()
    finally:
        for s in [echo] + list(servers.values()):
            if s.proc.poll() is None:
                s.proc.kill()
    for s in SUBJECTS:
        for key, _, _, _ in FIGURES:
            vals = raw[s].get(key)
            out["figures"][s][key] = round(statistics.median(vals), 3) if vals else None
    return out


def targets(res):
    f = res["figures"]
    n, g = f["node"], f["grpcjs"]
    ts = []

    def ratio(a, b):
        return a / b if a is not None and b else None

    r = ratio(n["client_single_msgs_per_s"], g["client_single_msgs_per_s"])
    ts.append(("node client single stream vs grpc-js client", r, ">= 5x", r is not None and r >= 5))
    r = ratio(n["client_streams1000_msgs_per_s"], g["client_streams1000_msgs_per_s"])
    ts.append(("node client 1,000 streams vs grpc-js client", r, ">= 2x", r is not None and r >= 2))
    v = n["server_single_msgs_per_s"]
    ts.append(("node JS-handler server, single stream (msgs/s)", v, ">= 100k", v is not None and v >= 100000))
    v = f["node_cq1"]["server_single_msgs_per_s"]
    ts.append(("  the same with completionQueues 1 (msgs/s)", v, ">= 100k", v is not None and v >= 100000))
    return ts


def report(res, rb):
    lines = ["node.js rows (bindings/node; ratios to grpcjs): client rows against the libchat "
             "echo server, server rows under bench_libchat_client"]
    if res["skipped"]:
        lines.append("  skipped: %s" % res["skipped"])
        return "\n".join(lines)
    med = {s: res["figures"][s] for s in SUBJECTS}
    lines.append(rb.table(med, FIGURES, [(s, s) for s in SUBJECTS], "grpcjs"))
    lines.append("")
    lines.append("node.js targets (informational):")
    for name, v, goal, ok in targets(res):
        shown = "n/a" if v is None else ("%.3fx" % v if v < 1000 else "{:,.0f}".format(v))
        state = {True: "met", False: "NOT met"}[ok] if v is not None else "n/a"
        lines.append("  %-60s %-10s goal %-9s %s" % (name, shown, goal, state))
    lines.append("note: node_cq1 is the node server with completionQueues 1 (server rows only)")
    lines.append("note: client CPU is the whole Node process's (process.cpuUsage: JS and libchat's "
                 "or grpc-js's threads) over the measured interval")
    return "\n".join(lines)
