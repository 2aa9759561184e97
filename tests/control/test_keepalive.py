"""Keepalive agreement, with the intervals the defaults scale down to: a
libchat server accepts a ping every 500 ms without data
(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS in server.cc), and
a libchat client pings at most once a second (keepalive_ms >= 1000). So a
client at its lowest interval on an idle stream is never answered with
GOAWAY too_many_pings, however long the stream stays idle (an hour-idle
stream pings 3600 times; here 6), while a client pinging faster than its
server permits is cut (shown against a grpcio server that permits less:
grpcio 1.51 clients ping at most once a second, so none pings faster than
a libchat server permits)."""
from __future__ import annotations

import time
from typing import Any

import pytest

import pychat
from chat_testing import WAIT

IDLE = 6.0  # seconds: six pings of a client at its lowest interval


def test_a_client_at_the_lowest_interval_survives_a_long_idle_stream() -> None:
    with pychat.Server("127.0.0.1:0") as server, \
            pychat.Client(f"127.0.0.1:{server.port}", keepalive=1.0) as client, \
            client.chat(timeout=IDLE + WAIT) as stream:
        stream.send("a", "before")
        assert stream.recv(timeout=WAIT) == "a: before"
        # Idle: nothing arrives; a GOAWAY would end the stream here.
        with pytest.raises(TimeoutError):
            stream.recv(timeout=IDLE)
        stream.send("a", "after")
        assert stream.recv(timeout=WAIT) == "a: after"
        assert server.stats().streams_cut == 0


def test_the_same_client_against_a_stricter_server_gets_goaway(grpcio_server: Any) -> None:
    """Against a server that permits a ping only every 5 s without data
    (grpcio's default is 5 min), the same client is pinging too fast: the
    server answers with GOAWAY too_many_pings and the idle stream ends
    UNAVAILABLE. So the test above would catch a server that stopped
    permitting the client's interval."""
    _, target = grpcio_server(
        options=[("grpc.http2.min_ping_interval_without_data_ms", 5000)])
    with pychat.Client(target, keepalive=1.0) as client, \
            client.chat(timeout=IDLE + WAIT) as stream:
        stream.send("a", "b")
        assert stream.recv(timeout=WAIT) == "a: b"
        start = time.monotonic()
        with pytest.raises(pychat.Unavailable) as e:
            stream.recv(timeout=IDLE + WAIT)
        assert "too_many_pings" in str(e.value).lower().replace(" ", "_"), e.value
        assert time.monotonic() - start < IDLE + WAIT
