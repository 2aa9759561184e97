"""A redis-server of one's own for the room on Redis (tests/room, the
room benchmark): a free loopback port, a given directory, nothing saved,
stopped by PID. Standard library and chat_testing only."""
from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
from typing import Optional

from chat_testing import Process, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _die_with_parent() -> None:
    # Killed with the test or benchmark that started it, however that ends.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Redis:
    """redis-server on 127.0.0.1:port; start() again after kill() brings it
    back on the same port (empty: nothing is saved)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: Optional[Process] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        proc = Process(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--dir", self.directory,
                        "--loglevel", "warning"], preexec_fn=_die_with_parent)
        self.proc = proc
        wait_until(lambda: accepts(self.port) or not proc.alive(),
                   what="redis-server to accept")
        assert proc.alive(), proc.out.text()

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc = None

    def cli(self, *args: str) -> str:
        """One redis-cli command against this server; its reply."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
