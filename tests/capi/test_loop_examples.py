"""The event-queue examples (examples/chat_loop_client.c, chat_loop_server.c)
against real peers over 127.0.0.1 with ephemeral ports: the loop client
against the echo server (examples/chat_server), the loop server under the
seed client (examples/chat_client), and the two loops against each other.

Standard library and pytest only. Every wait has a deadline; nothing sleeps.
The binaries come from the environment (tests/capi/CMakeLists.txt)."""
from __future__ import annotations

import re
import signal
import subprocess
from typing import Iterator, List

import pytest

from chat_testing import Process, ServerProcess, program, run as run_command

WAIT = 30.0  # only reached when something is wrong; generous for a busy 2-core machine
SEED_OUTPUT = "Sam: Hi\nAnn: Hey\nJohn: Hello\n"
C_SERVER = program("CHAT_SERVER_BIN", "chat_server")
C_CLIENT = program("CHAT_CLIENT_BIN", "chat_client")
LOOP_CLIENT = program("CHAT_LOOP_CLIENT_BIN", "chat_loop_client")
LOOP_SERVER = program("CHAT_LOOP_SERVER_BIN", "chat_loop_server")
SUMMARY = re.compile(r"(\d+) streams, (\d+) messages each: (\d+) replies in order, every stream "
                     r"ended OK; (\d+) sends refused, (\d+) resumed on WRITABLE; [0-9.]+ s\n")


def Server(*command: str) -> ServerProcess:
    return ServerProcess(command, wait=WAIT)


@pytest.fixture
def echo_server() -> Iterator[ServerProcess]:
    with Server(C_SERVER, "--address", "127.0.0.1:0") as server:
        yield server


@pytest.fixture
def loop_server() -> Iterator[ServerProcess]:
    with Server(LOOP_SERVER, "--address", "127.0.0.1:0") as server:
        yield server


def run(*command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_command(command, input=stdin, timeout=WAIT * 2)


def loop_client(target: str, *args: str) -> List[int]:
    """Runs the loop client; checks it passed; returns its summary's numbers."""
    result = run(LOOP_CLIENT, "--target", target, "--timeout-s", str(int(WAIT)), *args)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    m = SUMMARY.fullmatch(result.stdout)
    assert m, result.stdout
    return [int(g) for g in m.groups()]


def test_loop_client_drives_1000_streams_through_the_echo_server(echo_server: ServerProcess) -> None:
    streams, messages, replies, refused, resumed = loop_client(echo_server.target)
    assert (streams, messages, replies) == (1000, 10, 10000)
    assert refused == resumed  # a WRITABLE per refusal
    assert echo_server.stop() == "chat_server: stopped on SIGINT (0 streams cut)\n"


def test_loop_client_resumes_refused_sends_on_writable(echo_server: ServerProcess) -> None:
    """A send queue of one message: nearly every send is refused at first,
    and each refused stream must go on when its WRITABLE comes."""
    streams, messages, replies, refused, resumed = loop_client(
        echo_server.target, "--streams", "50", "--messages", "200", "--send-queue", "1")
    assert (streams, messages, replies) == (50, 200, 10000)
    assert refused > 0 and refused == resumed


def test_loop_server_serves_the_seed_client(loop_server: ServerProcess) -> None:
    result = run(C_CLIENT, "--target", f"http://{loop_server.target}")
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")
    # Twice: the first call's state is gone, the server goes on.
    result = run(C_CLIENT, "--target", loop_server.target)
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")
    assert loop_server.stop() == "chat_loop_server: stopped on SIGINT (0 streams cut)\n"


def test_loop_server_answers_interactive_lines_in_order(loop_server: ServerProcess) -> None:
    lines = "hello\n\nünïcode ✓\nlast line without newline"
    result = run(C_CLIENT, "--target", loop_server.target, "--name", "Zed", stdin=lines)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "Zed: hello\nZed: \nZed: ünïcode ✓\nZed: last line without newline\n"


def test_the_two_loops_against_each_other(loop_server: ServerProcess) -> None:
    streams, messages, replies, refused, resumed = loop_client(loop_server.target)
    assert (streams, messages, replies) == (1000, 10, 10000)
    assert refused == resumed
    # Small send queues on the client; many messages per stream, so the
    # server's replies pile up too (its backlog and WRITABLE path).
    streams, messages, replies, refused, resumed = loop_client(
        loop_server.target, "--streams", "20", "--messages", "2000", "--send-queue", "4")
    assert (streams, replies) == (20, 40000)
    assert refused == resumed
    assert loop_server.stop(signal.SIGTERM) == \
        "chat_loop_server: stopped on SIGTERM (0 streams cut)\n"


def test_loop_server_stop_serves_the_grace_period_then_cuts() -> None:
    """The stop runs off the loop (chat_server_stop waits for open calls,
    which only the loop can answer): during the grace period an open stream
    is still answered; at its end it is cut."""
    with Server(LOOP_SERVER, "--address", "127.0.0.1:0", "--grace-ms", "300") as server, \
            Process([C_CLIENT, "--target", server.target, "--name", "Zed"],
                    stdin=subprocess.PIPE, wait=WAIT) as client:
        client.say("before")
        assert client.out.next() == "Zed: before\n"
        assert server.stop(signal.SIGTERM) == \
            "chat_loop_server: stopped on SIGTERM (1 stream cut)\n"
        assert client.wait() == 1
        assert client.err.rest().startswith("chat_client: UNAVAILABLE: ")


def test_loop_client_reports_an_unreachable_server() -> None:
    server = Server(C_SERVER, "--address", "127.0.0.1:0")
    server.stop()  # its port is free now: nothing listens there
    result = run(LOOP_CLIENT, "--target", server.target, "--streams", "3",
                 "--timeout-s", str(int(WAIT)))
    assert result.returncode == 1 and result.stdout == ""
    assert "ended UNAVAILABLE" in result.stderr, result.stderr
    assert "3 mismatches" in result.stderr, result.stderr


@pytest.mark.parametrize("args", [["--streams", "0"], ["--messages", "x"], ["--bogus"],
                                  ["--target"]])
def test_loop_client_usage(args: List[str]) -> None:
    result = run(LOOP_CLIENT, *args)
    assert result.returncode == 2 and result.stderr.startswith("usage: ")


def test_loop_server_reports_an_address_in_use(echo_server: ServerProcess) -> None:
    result = run(LOOP_SERVER, "--address", echo_server.target)
    assert result.returncode == 1
    assert "chat_loop_server: CANNOT_LISTEN" in result.stderr, result.stderr
