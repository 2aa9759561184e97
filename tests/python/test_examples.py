"""examples/python: same command lines and output as the C examples."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, Iterator, List, NamedTuple

import pytest

import pychat
from chat_testing import WAIT, Process, ServerProcess, program, run

EXAMPLES = os.environ.get("CHAT_EXAMPLES_DIR",
                          os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))
PY_SERVER = [sys.executable, os.path.join(EXAMPLES, "chat_server.py")]
PY_CLIENT = [sys.executable, os.path.join(EXAMPLES, "chat_client.py")]
AIO_SERVER = [sys.executable, os.path.join(EXAMPLES, "aio_chat_server.py")]
AIO_CLIENT = [sys.executable, os.path.join(EXAMPLES, "aio_chat_client.py")]
C_SERVER = [program("CHAT_SERVER_BIN", "chat_server")]
C_CLIENT = [program("CHAT_CLIENT_BIN", "chat_client")]
SEED_OUTPUT = "Sam: Hi\nAnn: Hey\nJohn: Hello\n"


@pytest.fixture
def py_server() -> Iterator[ServerProcess]:
    with ServerProcess([*PY_SERVER, "--address", "127.0.0.1:0"]) as server:
        yield server


def run_client(command: List[str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run([*command, *args], input=stdin)


class Example(NamedTuple):
    server: ServerProcess
    server_command: List[str]
    client_command: List[str]


@pytest.fixture(params=[(PY_SERVER, PY_CLIENT), (AIO_SERVER, AIO_CLIENT)], ids=["python", "aio"])
def example(request: Any) -> Iterator[Example]:
    """The pychat example pair, then its pychat.aio twin: the same command
    lines and output."""
    server_command, client_command = request.param
    with ServerProcess([*server_command, "--address", "127.0.0.1:0"]) as server:
        yield Example(server, server_command, client_command)


def test_seed_client_and_server(example: Example) -> None:
    result = run_client(example.client_command, "--target", example.server.target)
    assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")
    assert example.server.stop() == "chat_server: stopped on SIGINT (0 streams cut)\n"


def test_seed_without_arguments() -> None:
    """The default target, localhost:9090, when that port is free here."""
    with ServerProcess(PY_SERVER) as server:
        if server.first_line is None:
            pytest.skip(f"port 9090 is taken: {server.err.rest()}")
        assert server.first_line == "listening on 127.0.0.1:9090\n"
        result = run_client(PY_CLIENT)
        assert (result.returncode, result.stdout) == (0, SEED_OUTPUT), result.stderr


def test_mixed_with_the_c_examples(py_server: ServerProcess) -> None:
    with ServerProcess([*C_SERVER, "--address", "127.0.0.1:0"]) as c_server:
        for client, port in ((C_CLIENT, py_server.port), (PY_CLIENT, c_server.port)):
            result = run_client(client, "--target", f"http://127.0.0.1:{port}")
            assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, "")


def test_interactive_client_matches_c(example: Example) -> None:
    lines = "hello\n\nünïcode ✓\nlast line without newline"
    target = example.server.target
    ours = run_client(example.client_command, "--target", target, "--name", "Zed", stdin=lines)
    theirs = run_client(C_CLIENT, "--target", target, "--name", "Zed", stdin=lines)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout == (
        "Zed: hello\nZed: \nZed: ünïcode ✓\nZed: last line without newline\n")


@pytest.mark.parametrize("client_command", [C_CLIENT, PY_CLIENT, AIO_CLIENT],
                         ids=["c", "python", "aio"])
def test_interactive_client_exits_when_the_server_dies(client_command: List[str]) -> None:
    """With stdin still open and quiet, a stream that ends must end the client
    (it used to sit in its stdin read until the next line or EOF)."""
    with ServerProcess([*C_SERVER, "--address", "127.0.0.1:0"]) as server, \
            Process([*client_command, "--target", server.target, "--name", "Zed"],
                    stdin=subprocess.PIPE) as client:
        client.say("hello")
        assert client.out.next() == "Zed: hello\n"
        server.kill()  # SIGKILL, by PID: no goodbye on the wire
        try:
            rc = client.proc.wait(5.0)  # at once, in fact; 5 s for a loaded machine
        except subprocess.TimeoutExpired:
            raise AssertionError("the client is still waiting on stdin after the server died")
        assert rc == 1
        assert client.err.rest().startswith("chat_client: UNAVAILABLE: ")
        assert client.out.rest() == ""


def test_interactive_client_still_ends_cleanly(py_server: ServerProcess) -> None:
    """EOF on stdin half-closes; the server completes; exit 0, nothing on stderr."""
    result = run_client(C_CLIENT, "--target", py_server.target, "--name", "Zed",
                        stdin="a\nb\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "Zed: a\nZed: b\n", "")


def test_client_rejects_invalid_utf8_and_goes_on(example: Example) -> None:
    result = run([*example.client_command, "--target", example.server.target, "--name", "Zed"],
                 input=b"ok\nbad \xff byte\nstill ok\n")
    assert result.returncode == 0
    assert result.stdout == b"Zed: ok\nZed: still ok\n"
    assert result.stderr.startswith(b"chat_client: not sent: message is not valid text")


def test_server_stop_cuts_open_streams() -> None:
    server = ServerProcess([*PY_SERVER, "--address", "127.0.0.1:0", "--mode", "broadcast",
                            "--grace-ms", "200"])
    with server, pychat.Client(server.target) as client, client.chat() as stream:
        stream.send("Sam", "Hi")
        assert stream.recv(WAIT) == "Sam: Hi"  # broadcast to the only member
        assert server.stop(signal.SIGTERM) == "chat_server: stopped on SIGTERM (1 stream cut)\n"
        with pytest.raises(pychat.Unavailable):
            stream.recv(WAIT)


def blocked_signals(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    raise AssertionError(f"no SigBlk for thread {tid}")


def test_every_server_thread_leaves_stop_signals_to_the_main_thread(py_server: ServerProcess) -> None:
    """The kernel hands a process's SIGINT to any thread that does not block
    it, and CPython runs handlers only on a main thread that wakes up: the
    example must keep the stop signals off gRPC's threads (CI once saw it
    sleep through a SIGINT), then stop on one."""
    assert py_server.port  # it is up, and so are its threads
    pid = py_server.proc.pid
    # The main thread is left out: it takes them in sigwait, which unblocks
    # them while it waits.
    others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    assert others, "the server has no library threads"
    stop_bits = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    for tid in others:
        assert blocked_signals(pid, tid) & stop_bits == stop_bits, f"thread {tid}"
    assert py_server.stop() == "chat_server: stopped on SIGINT (0 streams cut)\n"


def test_failures_exit_non_zero(example: Example) -> None:
    example.server.stop()  # its port is free now: nothing listens there
    result = run_client(example.client_command, "--target", example.server.target)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("chat_client: UNAVAILABLE: ")
    result = run_client(example.client_command, "--target", "ftp://127.0.0.1:1")
    assert result.returncode == 1 and "ftp" in result.stderr
    with ServerProcess([*example.server_command, "--address", "127.0.0.1:0"]) as taken:
        busy = run_client(example.server_command, "--address", taken.target)
        assert busy.returncode == 1
        assert "chat_server: cannot listen" in busy.stderr  # after gRPC's log


# ----------------------------------------------------------------------------
# What only the pychat.aio examples have to show.


@pytest.fixture
def aio_server() -> Iterator[ServerProcess]:
    with ServerProcess([*AIO_SERVER, "--address", "127.0.0.1:0"]) as server:
        yield server


def test_aio_examples_mixed_with_the_others(aio_server: ServerProcess) -> None:
    with ServerProcess([*C_SERVER, "--address", "127.0.0.1:0"]) as c_server:
        for client, port in ((C_CLIENT, aio_server.port), (PY_CLIENT, aio_server.port),
                             (AIO_CLIENT, c_server.port)):
            result = run_client(client, "--target", f"http://127.0.0.1:{port}")
            assert (result.returncode, result.stdout, result.stderr) == (0, SEED_OUTPUT, ""), client


def test_aio_client_reads_a_regular_file_too(aio_server: ServerProcess, tmp_path: Any) -> None:
    """epoll refuses regular files; the client reads them directly."""
    path = tmp_path / "lines.txt"
    path.write_text("one\ntwo\n")
    with open(path) as f:
        result = run([*AIO_CLIENT, "--target", aio_server.target, "--name", "Zed"], stdin=f)
    assert (result.returncode, result.stdout, result.stderr) == (0, "Zed: one\nZed: two\n", "")


def test_aio_server_stop_cuts_open_streams() -> None:
    server = ServerProcess([*AIO_SERVER, "--address", "127.0.0.1:0", "--mode", "broadcast",
                            "--grace-ms", "200"])
    with server, pychat.Client(server.target) as client, \
            client.chat() as one, client.chat() as two:
        one.send("Sam", "Hi")
        assert one.recv(WAIT) == "Sam: Hi"  # broadcast to both members
        assert two.recv(WAIT) == "Sam: Hi"
        two.send("Ann", "Hey")
        assert one.recv(WAIT) == "Ann: Hey"
        assert two.recv(WAIT) == "Ann: Hey"
        assert server.stop(signal.SIGTERM) == "chat_server: stopped on SIGTERM (2 streams cut)\n"
        for stream in (one, two):
            with pytest.raises(pychat.Unavailable):
                stream.recv(WAIT)


def test_aio_client_deadline(aio_server: ServerProcess) -> None:
    """--deadline-ms with stdin left open and quiet: the deadline ends it."""
    with Process([*AIO_CLIENT, "--target", aio_server.target, "--name", "Zed", "--deadline-ms",
                  "300"], stdin=subprocess.PIPE) as client:
        assert client.wait() == 1  # stdin still open: the deadline ended it
        assert client.out.rest() == ""
        assert client.err.rest().startswith("chat_client: DEADLINE_EXCEEDED")
