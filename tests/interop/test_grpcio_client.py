"""grpcio client -> our chat_server (echo mode)."""
import time

import grpc
import pytest
from google.protobuf import wrappers_pb2

import chat_pb2

SEED = [("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello")]


def assert_serves(channel, run_stream):
    """The server still answers a fresh stream exactly."""
    replies, code, _ = run_stream(channel, [("Zoe", "still there?")])
    assert (replies, code) == (["Zoe: still there?"], grpc.StatusCode.OK)


def test_seed(echo_server, grpc_channel, run_stream):
    channel = grpc_channel(echo_server.target)
    replies, code, _ = run_stream(channel, SEED)
    assert replies == ["Sam: Hi", "Ann: Hey", "John: Hello"]
    assert code == grpc.StatusCode.OK


def test_thousand_messages_in_order(echo_server, grpc_channel, run_stream):
    channel = grpc_channel(echo_server.target)
    messages = [(f"user{i % 7}", f"message {i}") for i in range(1000)]
    replies, code, _ = run_stream(channel, messages)
    assert code == grpc.StatusCode.OK
    assert len(replies) == 1000
    assert replies == [f"{n}: {m}" for n, m in messages]


def test_client_cancel_mid_stream(echo_server, grpc_channel, open_stream, run_stream):
    channel = grpc_channel(echo_server.target)
    stream = open_stream(channel)
    for i in range(3):
        stream.send("Sam", f"m{i}")
    assert stream.recv_n(3) == ["Sam: m0", "Sam: m1", "Sam: m2"]
    stream.cancel()  # the stream is still open: the server is waiting for more
    assert stream.finish() == grpc.StatusCode.CANCELLED
    assert echo_server.alive()
    assert_serves(channel, run_stream)
    assert_serves(grpc_channel(echo_server.target), run_stream)


def test_unknown_methods_unimplemented(echo_server, grpc_channel, open_stream, run_stream):
    channel = grpc_channel(echo_server.target)
    nope = channel.stream_stream(
        "/Chat/nope",
        request_serializer=chat_pb2.ChatMessage.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString)
    stream = open_stream(channel, method=nope)
    stream.send("Sam", "Hi")
    stream.half_close()
    assert stream.finish() == grpc.StatusCode.UNIMPLEMENTED
    assert stream.pending() == []

    unary = channel.unary_unary("/Nope/x", request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    try:
        unary(b"", timeout=10)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED
    else:
        raise AssertionError("/Nope/x succeeded")
    assert_serves(channel, run_stream)


def test_deadline_exceeded(echo_server, grpc_channel, open_stream):
    channel = grpc_channel(echo_server.target)
    stream = open_stream(channel, timeout=0.5)
    stream.send("Sam", "Hi")
    assert stream.recv() == "Sam: Hi"  # the stream is live; it just never half-closes
    assert stream.finish(timeout=5) == grpc.StatusCode.DEADLINE_EXCEEDED
    elapsed = time.monotonic() - stream.started
    assert 0.4 <= elapsed < 5, elapsed


def test_oversized_message(echo_server, grpc_channel, open_stream, run_stream):
    channel = grpc_channel(echo_server.target)
    stream = open_stream(channel)
    stream.send("Sam", "x" * (5 << 20))  # server limit is 4 MiB
    assert stream.finish() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stream.pending() == []
    assert echo_server.alive()
    assert_serves(channel, run_stream)


def open_raw_stream(channel, open_stream):
    """A /Chat/chat stream whose requests are sent as given bytes."""
    raw = channel.stream_stream("/Chat/chat", request_serializer=lambda b: b,
                                response_deserializer=wrappers_pb2.StringValue.FromString)
    return open_stream(channel, method=raw)


# ChatMessage{name = b"\xff\xfe"} by hand: field 1, wire type 2 (tag 0x0a),
# length 2. A proto3 string must be UTF-8, so the server cannot parse it.
BAD_UTF8_NAME = b"\x0a\x02\xff\xfe"


def test_invalid_utf8_keeps_server_serving(echo_server, grpc_channel, open_stream, run_stream):
    channel = grpc_channel(echo_server.target)
    stream = open_raw_stream(channel, open_stream)
    stream.send_raw(b"\x0a\x02ab\x12\x01x")  # control: the same path with valid bytes
    assert stream.recv() == "ab: x"
    stream.send_raw(BAD_UTF8_NAME)
    stream.finish()
    assert echo_server.alive()
    assert_serves(channel, run_stream)


def test_invalid_utf8_stream_rejected(echo_server, grpc_channel, open_stream):
    channel = grpc_channel(echo_server.target)
    stream = open_raw_stream(channel, open_stream)
    # No half-close: only the bad message can end this stream.
    stream.send_raw(BAD_UTF8_NAME)
    stream.send_raw(b"\x0a\x02cd")  # valid, must not be answered after the bad one
    code = stream.finish()
    assert stream.pending() == []
    assert code == grpc.StatusCode.INVALID_ARGUMENT, stream.details
    assert "UTF-8" in stream.details
