"""Process helpers shared by libchat's pytest suites (tests/*, examples/go).

Starting a program, reading its output with deadlines, stopping it by PID
and running a client to completion were written out again in every suite;
they live here once. Standard library only: the examples' suites must run
without pychat or grpcio.

Every wait has a deadline, nothing sleeps to synchronise, and only the
processes started here are signalled, always by PID.

Found through tests/pytest.ini (`pythonpath = support`) for anything under
tests/, whether pytest runs from ctest or by hand; a suite elsewhere puts
this folder on sys.path itself.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from typing import IO, Any, Callable, List, Mapping, Optional, Sequence, TypeVar, Union

# Only reached when something is wrong; generous for a busy 2-core machine.
WAIT = 10.0

# The examples' servers (and fault_server) announce their port this way.
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)\n")

T = TypeVar("T")
P = TypeVar("P", bound="Process")


def program(env_var: str, default: str) -> str:
    """A built program's path: ctest passes it in `env_var`; by hand, `default`
    (a name found on PATH, or a path)."""
    return os.environ.get(env_var, default)


def wait_until(predicate: Callable[[], T], timeout: float = WAIT, what: str = "condition",
               interval: float = 0.005) -> T:
    """Polls `predicate` until it returns something true and returns that;
    fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Lines:
    """Reads a pipe on a thread, so that each read has a deadline and the
    child never blocks on a full pipe."""

    def __init__(self, pipe: IO[str], wait: float = WAIT) -> None:
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._seen: List[str] = []
        self._lock = threading.Lock()
        self._wait = wait
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in iter(pipe.readline, ""):
            with self._lock:
                self._seen.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def next(self, timeout: Optional[float] = None) -> Optional[str]:
        """The next line, or None at EOF; fails after `timeout`."""
        timeout = self._wait if timeout is None else timeout
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout}s")

    def rest(self, timeout: Optional[float] = None) -> str:
        """The lines not taken yet, up to EOF (so: once the process ended)."""
        out = []
        while (line := self.next(timeout)) is not None:
            out.append(line)
        return "".join(out)

    def text(self) -> str:
        """Everything read so far, taken by next() or not; does not wait."""
        with self._lock:
            return "".join(self._seen)

    def join(self, timeout: Optional[float] = None) -> None:
        self._thread.join(self._wait if timeout is None else timeout)


class Process:
    """A child with stdout and stderr pumped into `out` and `err` (Lines).

    A context manager: leaving it kills the child if it still runs, so a
    failing test leaves nothing behind.
    """

    def __init__(self, command: Sequence[str], *, stdin: Optional[int] = subprocess.DEVNULL,
                 env: Optional[Mapping[str, str]] = None, wait: float = WAIT,
                 preexec_fn: Optional[Callable[[], Any]] = None) -> None:
        self.command = list(command)
        self.wait_s = wait
        self.proc = subprocess.Popen(self.command, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout, wait)
        self.err = Lines(self.proc.stderr, wait)

    def __enter__(self: "P") -> "P":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def say(self, line: str) -> None:
        """Writes a line to its stdin (started with stdin=subprocess.PIPE)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        """Sends `sig` by PID, unless the child has already been reaped."""
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Its exit code; fails if it is still running after `timeout`."""
        timeout = self.wait_s if timeout is None else timeout
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.command[0]} still running after {timeout}s")

    def kill(self) -> None:
        """SIGKILL by PID if it still runs; reaps it and closes its stdin."""
        self.signal(signal.SIGKILL)
        self.proc.wait(self.wait_s)
        if self.proc.stdin is not None:
            self.proc.stdin.close()


class ServerProcess(Process):
    """A server whose first line is `listening on 127.0.0.1:PORT`.

    `first_line` is that line (None if it exited first); `port` and `target`
    fail the test, with its stderr, when the line is something else.
    """

    def __init__(self, command: Sequence[str], **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self.first_line = self.out.next()

    @property
    def port(self) -> int:
        m = LISTENING.fullmatch(self.first_line or "")
        if not m:
            self.kill()  # its stderr ends only once it has
            raise AssertionError(f"{self.command}: first line {self.first_line!r}, "
                                 f"stderr {self.err.rest()!r}")
        return int(m.group(1))

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGINT) -> str:
        """Signals the server by PID; checks it exited 0; returns its stderr."""
        self.signal(sig)
        rc = self.wait()
        err = self.err.rest()
        assert rc == 0, (rc, err)
        return err


def run(command: Sequence[str], input: Union[str, bytes, None] = None,
        timeout: float = WAIT * 2, env: Optional[Mapping[str, str]] = None,
        stdin: Any = subprocess.DEVNULL) -> "subprocess.CompletedProcess[Any]":
    """Runs `command` to its end and captures its output: text, or bytes when
    `input` is bytes. Without `input`, stdin is `stdin` (/dev/null, or a
    file). Fails (the child killed) when it outlives `timeout`."""
    try:
        return subprocess.run(list(command), input=input, capture_output=True,
                              stdin=None if input is not None else stdin,
                              text=not isinstance(input, bytes), timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{command[0]} still running after {timeout}s; "
                             f"stdout={e.stdout!r} stderr={e.stderr!r}")
