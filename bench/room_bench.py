"""The broadcast room: in one process against one room on Redis Streams
across 1, 2 and 3 chat_server processes; and the same room run by a host's
own handler (examples/room_server, a custom server on chat_room) in one
process and across 2 on Redis.

Six pychat members spread round-robin over the servers. Throughput: one
member sends lines as fast as the slowest member takes them (at most 256
ahead); the rate is lines per second until every member has received the
last one. Latency: a member on
the first server sends one line at a time, and the time until a member on
the last server receives it is one sample (p50 and p99 of --samples).
Every process starts fresh per configuration; redis-server is the
benchmark's own (free loopback port, temporary directory, nothing saved).

    /usr/bin/python3 bench/room_bench.py --build-dir build [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from typing import List, Optional

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "support"))

from chat_testing import ServerProcess  # noqa: E402
from redis_testing import Redis  # noqa: E402

MEMBERS = 6
WINDOW = 256  # lines the sender may be ahead of the slowest member
WAIT = 30.0


def percentile(sorted_values: List[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def measure(pychat, server: List[str], redis: Optional[Redis], servers: int, messages: int,
            samples: int) -> dict:
    """`server`: the command of one server, without its room arguments."""
    room = ["--room", redis.url, "--room-name", f"bench{servers}"] if redis else []
    procs = [ServerProcess([*server, "--address", "127.0.0.1:0", "--grace-ms", "0", *room])
             for _ in range(servers)]
    try:
        clients = [pychat.Client(procs[i % servers].target) for i in range(MEMBERS)]
        streams = [c.chat() for c in clients]
        for i, s in enumerate(streams):  # in the room once it hears itself
            s.send(f"m{i}", "hello", WAIT)
            while s.recv(WAIT) != f"m{i}: hello":
                pass

        def drain_until(stream, last: str) -> None:
            while stream.recv(WAIT) != last:
                pass

        # Throughput: m0 sends, everyone reads. m0 keeps at most WINDOW
        # lines ahead of the slowest member: flooding would only measure the
        # room cutting members that fall behind (RESOURCE_EXHAUSTED).
        got = [0] * MEMBERS
        moved = threading.Condition()

        def count(i: int) -> None:
            while got[i] < messages:
                line = streams[i].recv(WAIT)
                if line is not None and line.startswith("m0: "):
                    with moved:
                        got[i] += 1
                        moved.notify_all()

        readers = [threading.Thread(target=count, args=(i,)) for i in range(MEMBERS)]
        start = time.perf_counter()
        for t in readers:
            t.start()
        for k in range(messages):
            with moved:
                assert moved.wait_for(lambda: min(got) >= k - WINDOW, WAIT), "the room stalled"
            streams[0].send("m0", str(k), WAIT)
        for t in readers:
            t.join(WAIT * 4)
            assert not t.is_alive(), "a member never got the last line"
        rate = messages / (time.perf_counter() - start)

        # Latency: m0 (first server) to the last member (last server); the
        # others read along so the room never waits for them.
        others = streams[1:-1]
        last_line = f"m0: lat{samples - 1}"
        readers = [threading.Thread(target=drain_until, args=(s, last_line)) for s in others]
        for t in readers:
            t.start()
        lat = []
        for k in range(samples):
            t0 = time.perf_counter()
            streams[0].send("m0", f"lat{k}", WAIT)
            drain_until(streams[-1], f"m0: lat{k}")
            lat.append((time.perf_counter() - t0) * 1e6)
        drain_until(streams[0], last_line)
        for t in readers:
            t.join(WAIT)
        lat.sort()
        for s in streams:
            s.close()
        for c in clients:
            c.close()
        return {"rate": rate, "p50_us": percentile(lat, 0.50), "p99_us": percentile(lat, 0.99)}
    finally:
        for p in procs:
            p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(root, "build"))
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.build_dir, "python"))
    import pychat
    broadcast = [os.path.join(args.build_dir, "examples", "chat_server"), "--mode", "broadcast"]
    # A member joins the host's room with its first message ("* m0 joined",
    # then "m0: hello"): the same lines the measurement waits for.
    host = [os.path.join(args.build_dir, "examples", "room_server")]
    messages, samples = (500, 100) if args.quick else (20000, 2000)
    print(f"room: {MEMBERS} pychat members, {messages} lines from one of them, "
          f"{samples} latency samples")
    print(f"{'room':<24} {'lines/s':>10} {'p50 us':>8} {'p99 us':>8}")
    rows = [("in-process", broadcast, 1, False), ("redis, 1 server", broadcast, 1, True),
            ("redis, 2 servers", broadcast, 2, True), ("redis, 3 servers", broadcast, 3, True),
            ("host, in-process", host, 1, False), ("host, redis, 2 servers", host, 2, True)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, server, servers, on_redis in rows:
            redis = Redis(tmp) if on_redis else None
            if redis:
                redis.start()
            try:
                r = measure(pychat, server, redis, servers, messages, samples)
            finally:
                if redis:
                    redis.kill()
            print(f"{name:<24} {r['rate']:>10.0f} {r['p50_us']:>8.0f} {r['p99_us']:>8.0f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
