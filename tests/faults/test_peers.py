"""Peers that die or freeze mid-stream."""
import signal
import time

import pytest

import pychat
from conftest import say, wait_until

# A killed peer's socket is closed by the kernel at once; its stream must
# end well within this.
END_BOUND = 5.0


def test_server_sigkill_ends_pychat_stream_unavailable(fault_server):
    server = fault_server("--mode", "echo")
    with pychat.Client(server.target) as client, client.chat() as stream:
        stream.send("Sam", "Hi", timeout=WAIT_SEND)
        assert stream.recv(timeout=END_BOUND) == "Sam: Hi"
        server.signal(signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(pychat.Unavailable):
            stream.recv(timeout=END_BOUND)
        assert time.monotonic() - t0 < END_BOUND
        assert stream.code == pychat.StatusCode.UNAVAILABLE


def test_server_sigkill_ends_c_client_unavailable(fault_server, chat_client):
    server = fault_server("--mode", "echo")
    client = chat_client(server.target, "Ann")
    say(client, "Hi")
    assert client.out.next() == "Ann: Hi\n"
    server.signal(signal.SIGKILL)
    assert client.wait(timeout=END_BOUND) == 1
    assert "UNAVAILABLE" in client.err.text() or wait_until(
        lambda: "UNAVAILABLE" in client.err.text(), what="UNAVAILABLE on stderr")


def test_client_sigkill_server_sees_cancelled(fault_server, chat_client):
    server = fault_server("--mode", "custom")
    client = chat_client(server.target, "Ann")
    say(client, "Hi")
    assert client.out.next() == "Ann: Hi\n"
    client.signal(signal.SIGKILL)
    assert server.next_close(timeout=END_BOUND) == (1, "CANCELLED")


# Keepalive: a ping every KEEPALIVE_MS on an idle connection, and
# KEEPALIVE_TIMEOUT_MS for its answer. A frozen peer never answers, so its
# calls end within about the sum of the two; the bound leaves room for a
# busy machine.
KEEPALIVE_MS = 500
KEEPALIVE_TIMEOUT_MS = 1500
FROZEN_BOUND = (KEEPALIVE_MS + KEEPALIVE_TIMEOUT_MS) / 1000 + 5


def test_frozen_client_is_ended_by_server_keepalive(fault_server, chat_client):
    server = fault_server("--mode", "custom", "--keepalive-ms", str(KEEPALIVE_MS),
                          "--keepalive-timeout-ms", str(KEEPALIVE_TIMEOUT_MS))
    client = chat_client(server.target, "Ann")
    say(client, "Hi")
    assert client.out.next() == "Ann: Hi\n"
    client.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        call_id, code = server.next_close(timeout=FROZEN_BOUND)
        took = time.monotonic() - t0
    finally:
        client.signal(signal.SIGCONT)
    assert call_id == 1
    assert code in ("CANCELLED", "UNAVAILABLE")
    # Not ended before a ping could have gone unanswered.
    assert took >= KEEPALIVE_TIMEOUT_MS / 1000, took


# Client keepalive (pychat's keepalive=, chat_client_options.keepalive_ms)
# ends a stream to a frozen server with UNAVAILABLE: without it the stream
# would wait forever. gRPC's client keepalive timeout is the default 10 s.
CLIENT_FROZEN_BOUND = 1.0 + 10 + 5


def test_frozen_server_is_ended_by_client_keepalive(fault_server):
    server = fault_server("--mode", "echo")
    with pychat.Client(server.target, keepalive=1.0) as client, client.chat() as stream:
        stream.send("Sam", "Hi", timeout=WAIT_SEND)
        assert stream.recv(timeout=END_BOUND) == "Sam: Hi"
        server.signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(pychat.Unavailable):
                stream.recv(timeout=CLIENT_FROZEN_BOUND)
            took = time.monotonic() - t0
        finally:
            server.signal(signal.SIGCONT)
        assert took >= 1.0, took
        assert stream.code == pychat.StatusCode.UNAVAILABLE


WAIT_SEND = 5.0
