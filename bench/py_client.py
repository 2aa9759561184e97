#!/usr/bin/python3
"""One Python client measurement, run by run_bench.py in its own process.

    py_client.py --subject pychat|grpcio --target HOST:PORT
                 --workload single|pingpong|streams [--messages N] [--streams S]
                 [--sync]

pychat: `pychat.Client(target).chat()` -> stream with send(name, message),
complete() and iteration over the replies.
grpcio: the python3-grpcio synchronous stub (chat_pb2_grpc.ChatStub) with a
request iterator, the way grpcio's own examples drive a bidi stream.

Both are used the same way as the C client: one thread sends while another
reads. Every reply is checked against "bench: <message>" in order. Prints one
JSON line. Exit codes: 0 ok, 1 wrong reply or failed call, 2 usage/import.
With --sync it prints {"sync": "start"} just before its clock starts and
{"sync": "stop"} once every measured stream has ended, and each time waits for
a line on stdin (the driver reads the server's CPU time then).
"""
import argparse
import json
import os
import queue
import sys
import threading
import time

NAME = "bench"
SYNC = False


def sync_point(what):
    # --sync: tell the driver where the measured interval starts or ends and
    # wait until it has sampled the server.
    if SYNC:
        print(json.dumps({"sync": what}), flush=True)
        sys.stdin.readline()


def message(i):
    # Same 16-byte format as bench_util.h: unique per index, so order is checked.
    return "m%015d" % (i % 10**15)


def expected(i):
    return NAME + ": " + message(i)


class WrongReply(Exception):
    pass


def check(i, reply, want=None):
    if reply != (want if want is not None else expected(i)):
        raise WrongReply("wrong reply #%d: %r" % (i, reply))


def expected_list(first, count):
    # Built before timing starts, so the reader only compares.
    return [expected(i) for i in range(first, first + count)]


def percentile(sorted_values, pct):
    # Nearest rank, as in bench_util.h.
    n = len(sorted_values)
    rank = min(max((pct * n + 99) // 100, 1), n)
    return sorted_values[rank - 1]


def pingpong_result(rtt_us):
    rtt_us.sort()
    return {"workload": "pingpong", "round_trips": len(rtt_us),
            "p50_us": round(percentile(rtt_us, 50), 2),
            "p99_us": round(percentile(rtt_us, 99), 2),
            "mean_us": round(sum(rtt_us) / len(rtt_us), 2)}


class Sender(threading.Thread):
    """Sends messages first..first+count-1 on every stream, message-major so
    all streams progress together, then half-closes each. Records t0."""

    def __init__(self, send, complete, streams, first, count):
        super().__init__(daemon=True)
        self.send, self.complete = send, complete
        self.streams, self.first, self.count = streams, first, count
        self.t0 = None
        self.error = None

    def run(self):
        try:
            msgs = [message(i) for i in range(self.first, self.first + self.count)]
            self.t0 = time.perf_counter()
            for m in msgs:
                for s in self.streams:
                    self.send(s, m)
            for s in self.streams:
                self.complete(s)
        except BaseException as e:  # reported by the main thread
            self.error = e


# --------------------------------------------------------------------------
# pychat


def run_pychat(args):
    import pychat

    client = pychat.Client(args.target)
    send = lambda s, m: s.send(NAME, m)
    complete = lambda s: s.complete()

    def pingpong(count, rtt=None):
        s = client.chat()
        it = iter(s)
        for i in range(count):
            m = message(i)
            t0 = time.perf_counter()
            s.send(NAME, m)
            reply = next(it)
            t1 = time.perf_counter()
            check(i, reply)
            if rtt is not None:
                rtt.append((t1 - t0) * 1e6)
        s.complete()
        expect_end(it)

    def read(it, first, want):
        for k, w in enumerate(want):
            reply = next(it)
            if reply != w:
                check(first + k, reply, w)

    pingpong(200)  # warm-up: connection, caches
    if args.workload == "pingpong":
        rtt = []
        sync_point("start")
        pingpong(args.messages, rtt)
        sync_point("stop")
        return pingpong_result(rtt)
    if args.workload == "single":
        s = client.chat()
        it = iter(s)
        want = expected_list(0, args.messages)
        w = Sender(send, complete, [s], 0, args.messages)
        sync_point("start")
        w.start()
        read(it, 0, want)
        t1 = time.perf_counter()
        w.join()
        if w.error:
            raise w.error
        expect_end(it)
        sync_point("stop")
        return single_result(args.messages, t1 - w.t0)
    streams = [client.chat() for _ in range(args.streams)]
    its = [iter(s) for s in streams]
    for s in streams:
        s.send(NAME, message(0))
    first = expected_list(0, 1)
    for it in its:
        read(it, 0, first)
    want = expected_list(1, args.messages)
    w = Sender(send, complete, streams, 1, args.messages)
    sync_point("start")
    w.start()
    for it in its:
        read(it, 1, want)
    t1 = time.perf_counter()
    w.join()
    if w.error:
        raise w.error
    for it in its:
        expect_end(it)
    sync_point("stop")
    return streams_result(args, t1 - w.t0)


def expect_end(it):
    try:
        extra = next(it)
    except StopIteration:
        return
    raise WrongReply("extra reply %r" % (extra,))


def single_result(n, secs):
    return {"workload": "single", "messages": n, "seconds": round(secs, 6),
            "msgs_per_s": round(n / secs, 1)}


def streams_result(args, secs):
    n = args.messages * args.streams
    return {"workload": "streams", "streams": args.streams,
            "messages_per_stream": args.messages, "seconds": round(secs, 6),
            "msgs_per_s": round(n / secs, 1)}


# --------------------------------------------------------------------------
# grpcio


class Requests:
    """A request iterator fed from a queue: grpcio's consumer thread takes
    what the application puts in; None ends the stream (half-close)."""

    def __init__(self, pb2):
        self.pb2 = pb2
        self.q = queue.SimpleQueue()

    def __iter__(self):
        return self

    def __next__(self):
        m = self.q.get()
        if m is None:
            raise StopIteration
        return self.pb2.ChatMessage(name=NAME, message=m)


def run_grpcio(args):
    import grpc
    import chat_pb2
    import chat_pb2_grpc

    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = chat_pb2_grpc.ChatStub(channel)

    def open_stream():
        reqs = Requests(chat_pb2)
        return reqs, stub.chat(reqs)

    def pingpong(count, rtt=None):
        reqs, replies = open_stream()
        for i in range(count):
            m = message(i)
            t0 = time.perf_counter()
            reqs.q.put(m)
            reply = next(replies).value
            t1 = time.perf_counter()
            check(i, reply)
            if rtt is not None:
                rtt.append((t1 - t0) * 1e6)
        reqs.q.put(None)
        expect_end(replies)

    def read(replies, first, want):
        for k, w in enumerate(want):
            reply = next(replies).value
            if reply != w:
                check(first + k, reply, w)

    send = lambda s, m: s[0].q.put(m)
    complete = lambda s: s[0].q.put(None)

    pingpong(200)
    if args.workload == "pingpong":
        rtt = []
        sync_point("start")
        pingpong(args.messages, rtt)
        sync_point("stop")
        return pingpong_result(rtt)
    if args.workload == "single":
        s = open_stream()
        want = expected_list(0, args.messages)
        w = Sender(send, complete, [s], 0, args.messages)
        sync_point("start")
        w.start()
        read(s[1], 0, want)
        t1 = time.perf_counter()
        w.join()
        if w.error:
            raise w.error
        expect_end(s[1])
        sync_point("stop")
        return single_result(args.messages, t1 - w.t0)
    streams = [open_stream() for _ in range(args.streams)]
    for s in streams:
        send(s, message(0))
    first = expected_list(0, 1)
    for s in streams:
        read(s[1], 0, first)
    want = expected_list(1, args.messages)
    w = Sender(send, complete, streams, 1, args.messages)
    sync_point("start")
    w.start()
    for s in streams:
        read(s[1], 1, want)
    t1 = time.perf_counter()
    w.join()
    if w.error:
        raise w.error
    for s in streams:
        expect_end(s[1])
    sync_point("stop")
    channel.close()
    return streams_result(args, t1 - w.t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--subject", choices=["pychat", "grpcio"], required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--workload", choices=["single", "pingpong", "streams"], required=True)
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--sync", action="store_true")
    args = p.parse_args()
    global SYNC
    SYNC = args.sync
    run = run_pychat if args.subject == "pychat" else run_grpcio
    try:
        result = run(args)
    except ImportError as e:
        print(json.dumps({"error": "import: %s" % e}), flush=True)
        return 2
    except WrongReply as e:
        print("py_client: %s" % e, file=sys.stderr)
        print(json.dumps({"error": "wrong reply"}), flush=True)
        return 1
    except Exception as e:  # a failed call, whatever the library raises
        print("py_client: %s: %r" % (type(e).__name__, e), file=sys.stderr)
        print(json.dumps({"error": "failed call: %s" % type(e).__name__}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    # os._exit: skip interpreter teardown with library threads still around.
    rc = main()
    sys.stdout.flush()
    os._exit(rc)
