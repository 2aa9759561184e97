"""Fixtures for the fault-injection suite (label `faults`).

Each test starts its own fault_server (and any client processes) as
children on 127.0.0.1 with ephemeral ports, signals and kills only those
PIDs, and waits on conditions with deadlines, never on sleeps.
"""
import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

FAULT_SERVER = os.environ.get("CHAT_FAULT_SERVER_BIN")
CHAT_CLIENT = os.environ.get("CHAT_CLIENT_BIN")

MiB = 1 << 20


def _sanitized():
    """True when fault_server is built with AddressSanitizer, whose shadow
    memory and quarantine make RSS figures meaningless."""
    if not FAULT_SERVER:
        return False
    with open(FAULT_SERVER, "rb") as f:
        return b"libasan" in f.read()


SANITIZED = _sanitized()
WAIT = 10.0  # only reached when something is wrong


def pytest_configure(config):
    for name, value in (("CHAT_FAULT_SERVER_BIN", FAULT_SERVER), ("CHAT_CLIENT_BIN", CHAT_CLIENT)):
        if not value or not os.access(value, os.X_OK):
            raise pytest.UsageError(f"{name} must name the built executable (run through ctest)")


def wait_until(predicate, timeout=WAIT, what="condition", interval=0.01):
    """Polls `predicate` until it returns something true; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def proc_status_kib(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def count_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Lines:
    """Pumps a pipe into a queue on a thread, so reads can have deadlines."""

    def __init__(self, pipe):
        self.q = queue.Queue()
        self.seen = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self.thread.start()

    def _pump(self, pipe):
        for line in iter(pipe.readline, ""):
            with self._lock:
                self.seen.append(line)
            self.q.put(line)
        self.q.put(None)

    def next(self, timeout=WAIT):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s")

    def text(self):
        with self._lock:
            return "".join(self.seen)


class Proc:
    """A child process with both pipes pumped; killed by PID at teardown."""

    def __init__(self, args, stdin=subprocess.DEVNULL, preexec_fn=None):
        self.args = args
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout=WAIT):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args[0]} still running after {timeout}s")

    def stop(self):
        """SIGCONT (it may be frozen), SIGTERM, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=WAIT)
        if self.proc.stdin:
            self.proc.stdin.close()
        self.out.thread.join(timeout=WAIT)
        self.err.thread.join(timeout=WAIT)


class FaultServer(Proc):
    def __init__(self, *flags, preexec_fn=None):
        super().__init__([FAULT_SERVER, "--address", "127.0.0.1:0", *flags],
                         preexec_fn=preexec_fn)
        first = self.out.next()
        m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", first or "")
        if not m:
            self.stop()
            raise AssertionError(f"fault_server: first line {first!r}, stderr {self.err.text()!r}")
        self.port = int(m.group(1))
        self.target = f"127.0.0.1:{self.port}"

    def rss_kib(self):
        return proc_status_kib(self.pid, "VmRSS")

    def hwm_kib(self):
        return proc_status_kib(self.pid, "VmHWM")

    def next_close(self, timeout):
        """The next `close ID CODE` line (custom mode) as (id, code)."""
        line = self.out.next(timeout)
        m = re.fullmatch(r"close (\d+) (\w+)\n", line or "")
        assert m, f"expected a close line, got {line!r}"
        return int(m.group(1)), m.group(2)


@pytest.fixture
def procs():
    """Factory for children; every one is stopped at teardown."""
    started = []

    def start(kind, *args, **kwargs):
        p = kind(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in reversed(started):
        p.stop()


@pytest.fixture
def fault_server(procs):
    return lambda *flags, **kw: procs(FaultServer, *flags, **kw)


@pytest.fixture
def chat_client(procs):
    """chat_client --target T --name NAME, fed lines through its stdin pipe."""
    def start(target, name="Ann"):
        return procs(Proc, [CHAT_CLIENT, "--target", target, "--name", name],
                     stdin=subprocess.PIPE)
    return start


def say(client, line):
    client.proc.stdin.write(line + "\n")
    client.proc.stdin.flush()
