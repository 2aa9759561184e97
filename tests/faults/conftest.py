"""Fixtures for the fault-injection suite (label `faults`).

Each test starts its own fault_server (and any client processes) as
children on 127.0.0.1 with ephemeral ports, signals and kills only those
PIDs, and waits on conditions with deadlines, never on sleeps.
"""
import os
import re
import signal
import subprocess

import pytest

from chat_testing import WAIT, Process, ServerProcess, wait_until  # noqa: F401 (the tests' too)

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


def pytest_configure(config):
    for name, value in (("CHAT_FAULT_SERVER_BIN", FAULT_SERVER), ("CHAT_CLIENT_BIN", CHAT_CLIENT)):
        if not value or not os.access(value, os.X_OK):
            raise pytest.UsageError(f"{name} must name the built executable (run through ctest)")


def proc_status_kib(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def count_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Proc(Process):
    """A child with both pipes pumped; stopped by PID at teardown."""

    def stop(self):
        """SIGCONT (it may be frozen), SIGTERM, then SIGKILL if it lingers."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.wait()
        except AssertionError:
            pass  # it lingers: killed below
        self.kill()  # reaps it and closes its stdin
        self.out.join()
        self.err.join()


class FaultServer(Proc, ServerProcess):  # Proc's stop: the teardown's
    def __init__(self, *flags, preexec_fn=None):
        # Buffers of 256 KiB and more always come from mmap and go back to
        # the system when freed: glibc otherwise raises its mmap threshold
        # after the first big free, and later big messages stay in its heap,
        # so VmHWM (what the memory tests bound) measured the allocator's
        # history more than the server's live bytes (a second round of 4 MiB
        # messages peaked 18 MiB above the first, 1 run in ~15).
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(256 * 1024))
        super().__init__([FAULT_SERVER, "--address", "127.0.0.1:0", *flags],
                         preexec_fn=preexec_fn, env=env)
        _ = self.port  # fails now, with its stderr, unless it listens

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
    client.say(line)
