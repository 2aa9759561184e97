"""Stopping our chat_server with SIGTERM while a grpcio stream is open."""
import signal
import time

import grpc

def test_sigterm_cuts_open_stream_after_grace(chat_server, grpc_channel, open_stream):
    server = chat_server("--mode", "echo", "--grace-ms", "500")
    stream = open_stream(grpc_channel(server.target))
    stream.send("Sam", "Hi")
    assert stream.recv() == "Sam: Hi"  # the server has the stream registered

    sent = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=5) == 0
    elapsed = time.monotonic() - sent
    # The stream never half-closes, so the server waits out the whole grace.
    assert 0.4 <= elapsed < 5, elapsed
    assert stream.finish(timeout=5) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert stream.pending() == []

    err = server.stderr_text()
    assert err == "chat_server: stopped on SIGTERM (1 stream cut)\n"


def test_sigterm_with_no_streams(chat_server):
    server = chat_server("--grace-ms", "3000")
    sent = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=5) == 0
    # Nothing to wait for: the grace period is not spent.
    assert time.monotonic() - sent < 2.5
    assert server.stderr_text() == "chat_server: stopped on SIGTERM (0 streams cut)\n"
