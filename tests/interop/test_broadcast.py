"""grpcio clients -> our chat_server in broadcast mode."""
import re
import time

import grpc
import pytest

from conftest import WAIT


@pytest.fixture
def room(chat_server, grpc_channel):
    server = chat_server("--mode", "broadcast")
    # One channel (one connection) per member, like independent users.
    return lambda: grpc_channel(server.target)


def join(room, open_stream, name, members):
    """Opens a stream for `name` and says hello. Returns once the hello has
    reached `name` and every earlier member, so the server has registered it
    before anything else is sent: that is the barrier the test relies on."""
    stream = open_stream(room())
    stream.send(name, "hello")
    for member in [*members, stream]:
        assert member.recv() == f"{name}: hello"
    return stream


def test_everyone_gets_everything_and_leaving_is_announced(room, open_stream):
    names = ["Ann", "Bob", "Cid"]
    streams = []
    for name in names:
        streams.append(join(room, open_stream, name, streams))
    ann, bob, cid = streams

    # All three are in the room: each message reaches every member, the
    # sender included. Each sender's lines keep their order; lines from
    # different senders may interleave.
    for stream, name in zip(streams, names):
        for i in range(3):
            stream.send(name, f"{name.lower()}-{i}")
    expected = {f"{n}: {n.lower()}-{i}" for n in names for i in range(3)}
    for stream in streams:
        got = stream.recv_n(9)
        assert set(got) == expected
        for n in names:
            mine = [line for line in got if line.startswith(f"{n}: ")]
            assert mine == [f"{n}: {n.lower()}-{i}" for i in range(3)]

    # Ann leaves by half-closing: her stream ends OK, the others are told.
    ann.half_close()
    assert ann.finish() == grpc.StatusCode.OK
    assert ann.pending() == []
    for stream in (bob, cid):
        assert stream.recv() == "Ann left the chat"

    # The room goes on without her.
    bob.send("Bob", "still here")
    for stream in (bob, cid):
        assert stream.recv() == "Bob: still here"
    bob.half_close()
    assert bob.finish() == grpc.StatusCode.OK
    assert cid.recv() == "Bob left the chat"
    cid.half_close()
    assert cid.finish() == grpc.StatusCode.OK
    assert bob.pending() == [] and cid.pending() == []


def test_silent_member_leaves_as_its_call_id(room, open_stream):
    ann = join(room, open_stream, "Ann", [])
    quiet = open_stream(room())
    # The quiet stream never sends, so the only sign that the server has
    # registered it is a broadcast reaching it: probe until one does.
    deadline = time.monotonic() + WAIT
    probes = 0
    while True:
        assert time.monotonic() < deadline, "the quiet stream never joined the room"
        ann.send("Ann", "probe")
        probes += 1
        try:
            line = quiet.recv(timeout=0.2)
            break
        except AssertionError:
            continue
    assert line == "Ann: probe"
    assert ann.recv_n(probes) == ["Ann: probe"] * probes

    quiet.half_close()
    assert quiet.finish() == grpc.StatusCode.OK
    left = ann.recv()
    assert re.fullmatch(r"[0-9]+ left the chat", left), left
