"""go_chat_client (examples/go) against examples/chat_server on 127.0.0.1
with an ephemeral port: the seed, 10,000 concurrent streams whose replies
come in order while the process keeps a small thread count, and sends that
wait for WRITABLE behind a one-message send queue.

Standard library and pytest only. Every wait has a deadline; nothing
sleeps. The binaries come from the environment (CMakeLists.txt)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from typing import Iterator, List

import pytest

# The shared process helpers (tests/support/chat_testing.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "support"))
from chat_testing import ServerProcess, program, run as run_command  # noqa: E402

WAIT = 30.0  # only reached when something is wrong; generous for a busy 2-core machine
SEED_OUTPUT = "Sam: Hi\nAnn: Hey\nJohn: Hello\n"
GO_CLIENT = program("GO_CHAT_CLIENT_BIN", "go_chat_client")
C_SERVER = program("CHAT_SERVER_BIN", "chat_server")
C_CLIENT = program("CHAT_CLIENT_BIN", "chat_client")
SUMMARY = re.compile(r"(\d+) streams open at once over (\d+) connections?, (\d+) messages each: (\d+) replies "
                     r"in order, every stream ended OK; peak (\d+) threads; (\d+) sends waited "
                     r"for WRITABLE; [0-9.]+ s\n")
# The blocking design would need one thread per stream (10,000 here); the
# queue needs the drain goroutine's, the Go runtime's (about twice
# GOMAXPROCS, plus a few) and gRPC's own, which grow with the cores, not the
# streams: 19 to 21 measured on 2 cores.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """examples/chat_server on 127.0.0.1, port 0; its first line gives the port."""
    with ServerProcess([C_SERVER, "--address", "127.0.0.1:0"], wait=WAIT) as s:
        yield s


def run(*command: str) -> "subprocess.CompletedProcess[str]":
    return run_command(command, timeout=WAIT * 4)


def many_streams(target: str, *args: str) -> List[int]:
    """Runs --streams; checks it passed; returns the summary's numbers."""
    result = run(GO_CLIENT, "--target", target, "--timeout-s", str(int(WAIT * 3)), *args)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    m = SUMMARY.fullmatch(result.stdout)
    assert m, result.stdout
    return [int(g) for g in m.groups()]


def test_seed_prints_the_three_replies(server: ServerProcess) -> None:
    result = run(GO_CLIENT, "--target", server.target)
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")
    # The Ballerina URL form too, as the C client takes it.
    result = run(GO_CLIENT, "--target", f"http://{server.target}")
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")
    assert server.stop() == "chat_server: stopped on SIGINT (0 streams cut)\n"


def test_10000_streams_in_order_with_few_threads(server: ServerProcess) -> None:
    streams, conns, messages, replies, threads, _ = many_streams(
        server.target, "--streams", "10000", "--messages", "2")
    assert (streams, messages, replies) == (10000, 2, 20000)
    assert conns == 3  # one per 4,096 streams: a connection may hold 8,192 (chat.h)
    assert threads < MAX_THREADS
    assert server.stop() == "chat_server: stopped on SIGINT (0 streams cut)\n"


def test_sends_wait_for_writable_behind_a_full_send_queue(server: ServerProcess) -> None:
    streams, _, messages, replies, threads, waited = many_streams(
        server.target, "--streams", "100", "--messages", "300", "--send-queue-limit", "1")
    assert (streams, messages, replies) == (100, 300, 30000)
    assert waited > 0  # the WRITABLE path ran, and every reply still came in order
    assert threads < MAX_THREADS
    server.stop()


def test_unreachable_server_fails_like_the_c_client() -> None:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = f"127.0.0.1:{port}"
    ours, theirs = run(GO_CLIENT, "--target", target), run(C_CLIENT, "--target", target)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stdout == theirs.stdout == ""
    assert ours.stderr.startswith("chat_client: UNAVAILABLE: "), ours.stderr
    assert theirs.stderr.startswith("chat_client: UNAVAILABLE: "), theirs.stderr


def test_usage_errors_exit_2() -> None:
    assert run(GO_CLIENT, "--streams", "-1").returncode == 2
    assert run(GO_CLIENT, "extra").returncode == 2
