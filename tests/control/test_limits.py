"""Limits: streams per server and per connection, and connection age and
idle time for load balancers. The per-connection and connection options
are gRPC channel arguments of the server, so these tests also show that
they reach the connections the listener hands to gRPC
(AddInsecureChannelFromFd). A relay counts the connections."""
from __future__ import annotations

import os
import re
import signal
import time
from typing import Any, List

import pytest

import pychat
from chat_testing import WAIT, ServerProcess, wait_until

SERVER_BIN = os.environ.get("CHAT_SERVER_BIN", "chat_server")


def answered(stream: pychat.Stream, text: str = "x") -> None:
    """Sends one message and takes its reply: the stream is admitted."""
    stream.send("n", text)
    assert stream.recv(timeout=WAIT) == f"n: {text}"


def test_max_streams_refuses_streams_beyond_the_limit() -> None:
    with pychat.Server("127.0.0.1:0", max_streams=2) as server, \
            pychat.Client(f"127.0.0.1:{server.port}") as client:
        first, second = client.chat(timeout=WAIT), client.chat(timeout=WAIT)
        answered(first)
        answered(second)
        with client.chat(timeout=WAIT) as third:
            with pytest.raises(pychat.ResourceExhausted, match="max_streams"):
                third.recv(timeout=WAIT)
        assert server.stats().streams_refused == 1
        first.complete()
        assert first.recv(timeout=WAIT) is None
        wait_until(lambda: server.stats().streams_open == 1, what="the first stream to end")
        with client.chat(timeout=WAIT) as fourth:
            answered(fourth)  # room again
        second.close()
        first.close()


def test_chat_server_max_streams_flag() -> None:
    with ServerProcess([SERVER_BIN, "--address", "127.0.0.1:0", "--max-streams", "1",
                        "--stats", "60"]) as proc:
        with pychat.Client(proc.target) as client, client.chat(timeout=WAIT) as one:
            answered(one)
            with client.chat(timeout=WAIT) as two:
                with pytest.raises(pychat.ResourceExhausted):
                    two.recv(timeout=WAIT)
        last = proc.stop(signal.SIGINT).strip().splitlines()[-1]
        assert re.search(r"streams_total=1 streams_refused=1 ", last), last
    for value in ("0", "-3", "x"):
        with ServerProcess([SERVER_BIN, "--address", "127.0.0.1:0", "--max-streams", value]) as p:
            assert p.first_line is None and p.wait() == 2


def test_max_concurrent_streams_makes_a_client_wait_for_a_slot() -> None:
    with pychat.Server("127.0.0.1:0", max_concurrent_streams=2) as server, \
            pychat.Client(f"127.0.0.1:{server.port}") as client:
        first, second = client.chat(timeout=WAIT), client.chat(timeout=WAIT)
        answered(first)
        answered(second)
        third = client.chat(timeout=WAIT)
        third.send("n", "3")
        # Held by the client's HTTP/2 layer: the server never sees it.
        with pytest.raises(TimeoutError):
            third.recv(timeout=0.5)
        assert server.stats().streams_total == 2
        first.complete()
        assert first.recv(timeout=WAIT) is None
        assert third.recv(timeout=WAIT) == "n: 3"  # the slot it waited for
        for s in (first, second, third):
            s.close()


def test_a_connection_older_than_its_age_gets_goaway_and_the_client_reconnects(
        proxy: Any) -> None:
    with pychat.Server("127.0.0.1:0", max_connection_age=0.3,
                       max_connection_age_grace=30.0) as server:
        relay = proxy(f"127.0.0.1:{server.port}")
        with pychat.Client(relay.target) as client:
            with client.chat(timeout=WAIT) as old:
                answered(old, "before")
                time.sleep(1.0)  # the connection's age passes (no event to wait for)
                answered(old, "after")  # an open stream finishes within the grace
                old.complete()
                assert old.recv(timeout=WAIT) is None
                assert old.code == pychat.StatusCode.OK
            assert relay.connections == 1
            with client.chat(timeout=WAIT) as new:
                answered(new)
            assert relay.connections == 2  # the next stream came on a new connection


def test_streams_left_after_the_grace_are_cut() -> None:
    with pychat.Server("127.0.0.1:0", max_connection_age=0.2,
                       max_connection_age_grace=0.3) as server, \
            pychat.Client(f"127.0.0.1:{server.port}") as client, \
            client.chat(timeout=WAIT) as stream:
        answered(stream)
        start = time.monotonic()
        with pytest.raises(pychat.ChatError) as e:
            stream.recv(timeout=WAIT)
        assert e.value.code == pychat.StatusCode.UNAVAILABLE, e.value
        assert time.monotonic() - start < 5.0


def test_an_idle_connection_gets_goaway(proxy: Any) -> None:
    with pychat.Server("127.0.0.1:0", max_connection_idle=0.3) as server:
        relay = proxy(f"127.0.0.1:{server.port}")
        with pychat.Client(relay.target) as client:
            with client.chat(timeout=WAIT) as stream:
                answered(stream)
                time.sleep(0.8)  # an open stream keeps the connection busy, not idle
                answered(stream)
            wait_until(lambda: relay.server_closed >= 1, what="the idle connection to close")
            assert relay.connections == 1
            with client.chat(timeout=WAIT) as stream:
                answered(stream)
            assert relay.connections == 2


@pytest.mark.parametrize("option", [
    {"max_streams": -1}, {"max_concurrent_streams": -1}, {"max_connection_age": -1.0},
    {"max_connection_idle": "1"}, {"max_streams": 1.5}])
def test_bad_limits_are_refused(option: Any) -> None:
    with pytest.raises(ValueError):
        pychat.Server("127.0.0.1:0", **option)
