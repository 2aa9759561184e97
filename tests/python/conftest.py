"""Fixtures and helpers for pychat's tests.

Every test talks over real sockets on 127.0.0.1 with ephemeral ports. Nothing
sleeps to synchronise: waits are on events, queues or conditions, each with a
deadline, so a hang fails the test instead of stalling the suite.
"""
from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import textwrap
import threading
from typing import Any, Iterator, List, Optional, Tuple

import pytest

import pychat

# Shared with the other suites; imported from here by this suite's tests.
from chat_testing import WAIT, Lines, run, wait_until  # noqa: F401


def target(server: pychat.Server) -> str:
    return f"127.0.0.1:{server.port}"


class Recorder:
    """A handler that logs every event and answers like the echo server.

    `events` gets ("open", id), ("message", id, name, message),
    ("complete", id) and ("close", id, code, details); `closed` is set once
    `expect_closes` streams have closed.
    """

    def __init__(self, expect_closes: int = 1) -> None:
        self.events: "queue.Queue[Tuple[Any, ...]]" = queue.Queue()
        self.log: List[Tuple[Any, ...]] = []
        self.calls: List[pychat.Call] = []
        self.threads: List[int] = []
        self.closed = threading.Event()
        self._closes_left = expect_closes
        self._lock = threading.Lock()

    def _add(self, event: Tuple[Any, ...]) -> None:
        with self._lock:
            self.log.append(event)
            self.threads.append(threading.get_ident())
        self.events.put(event)

    def on_open(self, call: pychat.Call) -> None:
        self.calls.append(call)
        self._add(("open", call.id))

    def on_message(self, call: pychat.Call, name: str, message: str) -> None:
        self._add(("message", call.id, name, message))
        call.send(f"{name}: {message}")

    def on_complete(self, call: pychat.Call) -> None:
        self._add(("complete", call.id))
        call.complete()

    def on_close(self, call: pychat.Call, code: pychat.StatusCode, details: str) -> None:
        self._add(("close", call.id, code, details))
        with self._lock:
            self._closes_left -= 1
            if self._closes_left == 0:
                self.closed.set()

    def next_event(self, timeout: float = WAIT) -> Tuple[Any, ...]:
        return self.events.get(timeout=timeout)


@pytest.fixture
def echo_server() -> Iterator[pychat.Server]:
    server = pychat.Server("127.0.0.1:0")
    yield server
    server.close()


@pytest.fixture
def client(echo_server: pychat.Server) -> Iterator[pychat.Client]:
    c = pychat.Client(target(echo_server))
    yield c
    c.close()


@contextlib.contextmanager
def unraisable_hook() -> Iterator[List[Any]]:
    """Collects (exc_type, exc_value, object) of what reaches sys.unraisablehook.

    Installed inside the test body: pytest swaps the hook around each phase.
    """
    seen: List[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: seen.append((info.exc_type, info.exc_value, info.object))
    try:
        yield seen
    finally:
        sys.unraisablehook = previous


def run_python(code: str, timeout: float = 30.0,
               stdin: Optional[int] = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (same environment); fails on timeout."""
    return run([sys.executable, "-c", textwrap.dedent(code)], timeout=timeout, stdin=stdin,
               env=os.environ.copy())
