"""Lifetimes: garbage collection, interpreter exit and Ctrl-C, each in a
fresh interpreter so that a hang or a crash shows as that process failing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import WAIT, Lines, run_python

# Shared by the child programs: an echo server, a silent custom server, and
# a client of each.
PRELUDE = """
import gc, sys, threading, time
import pychat

class Silent:
    def on_message(self, call, name, message):
        pass

echo = pychat.Server("127.0.0.1:0")
silent = pychat.Server("127.0.0.1:0", handler=Silent())
echo_client = pychat.Client(f"127.0.0.1:{echo.port}")
silent_client = pychat.Client(f"127.0.0.1:{silent.port}")
"""

# A crash on the way out shows up as one of these on stderr.
CRASH_SIGNS = ("Fatal Python error", "terminate called", "Segmentation fault", "Aborted",
               "FATAL", "Traceback")


def check_clean(result: subprocess.CompletedProcess[str], expected_stdout: str) -> None:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == expected_stdout, result.stderr
    for sign in CRASH_SIGNS:
        assert sign not in result.stderr, result.stderr


def test_unclosed_objects_dropped_and_collected() -> None:
    result = run_python(PRELUDE + """
stream = echo_client.chat()
stream.send("Sam", "Hi")
assert stream.recv(10) == "Sam: Hi"
pending = echo_client.chat()           # replies never read
pending.send_many([("n", "m")] * 100)
blocked = silent_client.chat()         # no reply will ever come
blocked.send("Sam", "Hi")
del stream, pending, blocked
del echo_client, echo                  # dropped without close
gc.collect()
print("dropped", flush=True)
""")
    check_clean(result, "dropped\n")


def test_exit_with_everything_open() -> None:
    """Servers, clients and streams left open at exit, a daemon thread
    blocked in recv, a handler running and a server in a reference cycle."""
    result = run_python(PRELUDE + """
import atexit
started = threading.Event()
exiting = threading.Event()
atexit.register(exiting.set)  # runs before pychat's hook (registered earlier)

class Slow:
    def __init__(self):
        self.server = None
    def on_message(self, call, name, message):
        started.set()
        exiting.wait(10)  # still running when the interpreter exits
        try:
            call.send("done")
        except pychat.ClosedError:
            pass  # the exit hook has cut the stream meanwhile

slow_handler = Slow()
slow_handler.server = pychat.Server("127.0.0.1:0", handler=slow_handler)  # a cycle
slow_client = pychat.Client(f"127.0.0.1:{slow_handler.server.port}")
slow_stream = slow_client.chat()
slow_stream.send("Sam", "Hi")

stuck = silent_client.chat()
stuck.send("Sam", "Hi")
outcome = []
def reader():
    try:
        stuck.recv()
    except pychat.ClosedError:
        outcome.append("closed")
threading.Thread(target=reader, daemon=True).start()

half_read = echo_client.chat()
half_read.send_many([("n", "m")] * 1000)
assert half_read.recv(10) == "n: m"

assert started.wait(10)
del slow_handler
gc.collect()
print("exiting", flush=True)
""", timeout=WAIT * 3)
    check_clean(result, "exiting\n")


def test_blocked_receivers_are_released_at_exit() -> None:
    """Daemon threads blocked in recv, send and stop when the main thread ends."""
    result = run_python(PRELUDE + """
import atexit
release = threading.Event()
atexit.register(release.set)  # runs before pychat's hook (registered earlier)

class Stuck:
    def on_message(self, call, name, message):
        release.wait(10)  # the server stops reading: the sender's queue fills

stuck_server = pychat.Server("127.0.0.1:0", handler=Stuck(), recv_window=1)
full_client = pychat.Client(f"127.0.0.1:{stuck_server.port}", send_queue_limit=1)
full = full_client.chat()
recv_stream = silent_client.chat()
ready = threading.Barrier(3)

def receiver():
    ready.wait()
    try:
        for _ in recv_stream:
            pass
    except pychat.ClosedError:
        pass  # closed by the exit hook

def sender():
    ready.wait()
    try:
        while True:
            full.send("Sam", "x" * (1 << 20))  # blocks once flow control is full
    except pychat.ClosedError:
        pass

for target in (receiver, sender):
    threading.Thread(target=target, daemon=True).start()
ready.wait()
print("exiting", flush=True)
""", timeout=WAIT * 3)
    check_clean(result, "exiting\n")


def test_server_dropped_inside_its_own_handler() -> None:
    """The last reference to a server goes away on its dispatcher thread,
    which cannot wait for itself: the destroy must happen elsewhere."""
    result = run_python("""
import threading
import pychat

dropped = threading.Event()

class SelfDestruct:
    def __init__(self):
        self.server = None
    def on_message(self, call, name, message):
        if message == "drop":
            self.server = None  # the last reference, with this call still open
            dropped.set()
        else:
            call.send("bye")
            call.complete()

handler = SelfDestruct()
handler.server = pychat.Server("127.0.0.1:0", handler=handler)
port = handler.server.port
with pychat.Client(f"127.0.0.1:{port}") as client:
    with client.chat() as stream:
        stream.send("Sam", "Hi")
        assert list(stream) == ["bye"], stream.code
    with client.chat() as stream:
        stream.send("Sam", "drop")
        assert dropped.wait(10)
        assert pychat._pychat._wait_deferred(10)
        try:
            stream.recv(10)
        except pychat.Unavailable:
            print("stream cut", flush=True)
    with client.chat() as stream:  # nobody listens any more
        try:
            stream.send("Sam", "Hi")
            stream.recv(10)
        except pychat.Unavailable:
            print("server gone", flush=True)
""")
    check_clean(result, "stream cut\nserver gone\n")


def wait_blocked(pid: int) -> None:
    """Waits until the process's main thread sleeps (blocked in a wait)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state == "S":
            return
        time.sleep(0.01)
    raise AssertionError("the child never blocked")


def test_ctrl_c_interrupts_blocking_calls() -> None:
    """SIGINT reaches a main thread blocked in recv, iteration, send and
    stop as KeyboardInterrupt, promptly."""
    child = subprocess.Popen([sys.executable, "-c", PRELUDE + """
import signal
# Python keeps SIGINT ignored when it starts with it ignored (a background
# job of a script): make Ctrl-C raise whatever launched the tests.
signal.signal(signal.SIGINT, signal.default_int_handler)
release = threading.Event()

class Stuck:
    def on_message(self, call, name, message):
        release.wait(10)

stuck_server = pychat.Server("127.0.0.1:0", handler=Stuck(), recv_window=1)
stream = silent_client.chat()
stream.send("Sam", "Hi")

def interrupted(what, blocking_call):
    try:
        print(what, flush=True)  # inside: an early signal still counts
        blocking_call()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    else:
        print("not interrupted", flush=True)

interrupted("recv", stream.recv)
interrupted("iterate", lambda: list(stream))

full_client = pychat.Client(f"127.0.0.1:{stuck_server.port}", send_queue_limit=1)
full = full_client.chat()
try:
    while True:
        full.send("Sam", "x" * (1 << 20), timeout=0.5)
except TimeoutError:
    pass  # the queue is full now
interrupted("send", lambda: full.send("Sam", "x"))
interrupted("stop", lambda: stuck_server.stop(60))
release.set()
print("done", flush=True)
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        out = Lines(child.stdout)
        for what in ("recv", "iterate", "send", "stop"):
            assert out.next() == f"{what}\n"
            wait_blocked(child.pid)
            child.send_signal(signal.SIGINT)
            signalled = time.monotonic()
            assert out.next() == "interrupted\n", what
            assert time.monotonic() - signalled < 3.0, what  # 100 ms slices; a busy host
        assert out.next() == "done\n"
        assert child.wait(WAIT * 2) == 0
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        stderr = child.stderr.read() if child.stderr else ""
    for sign in CRASH_SIGNS:
        assert sign not in stderr, stderr
