"""One room across chat_server processes on Redis Streams."""
from __future__ import annotations

import signal
import time

import pychat
import pytest
from chat_testing import wait_until
from conftest import WAIT, GrpcioMember, PychatMember, enter, said, talk


def test_three_servers_two_members_each_see_one_sequence(room_server) -> None:
    servers = [room_server() for _ in range(3)]
    members = [PychatMember(s.target) for s in servers for _ in range(2)]
    names = [f"m{i}" for i in range(len(members))]
    for member, name in zip(members, names):
        enter(member, name)
    seen = talk(members, names, rounds=100)
    for i, lines in enumerate(seen):
        assert len(lines) == len(members) * 100, (i, len(lines))
        for name in names:  # each sender's lines in its order
            assert [x for x in lines if x.startswith(name + ": ")] == \
                [f"{name}: {k}" for k in range(100)]
        assert lines == seen[0], f"member {i} differs from member 0"
    for member in members:
        member.close()


def test_a_grpcio_member_and_a_pychat_member_on_two_servers(room_server) -> None:
    one, two = room_server(), room_server()
    ann, bob = GrpcioMember(one.target), PychatMember(two.target)
    enter(ann, "Ann")
    enter(bob, "Bob")
    ann.send("Ann", "hi Bob")
    for member in (ann, bob):
        assert said(member) == "Ann: hi Bob"
    bob.send("Bob", "hi Ann")
    for member in (ann, bob):
        assert said(member) == "Bob: hi Ann"
    bob.close()
    assert said(ann) == "Bob left the chat"  # the notice crosses servers too
    ann.close()


def test_redis_killed_fails_sends_then_the_room_resumes(redis, room_server) -> None:
    one, two = room_server(), room_server()
    ann, bob = PychatMember(one.target), PychatMember(two.target)
    enter(ann, "Ann")
    enter(bob, "Bob")
    redis.kill()
    ann.send("Ann", "anyone?")  # taken by the client; the room cannot take it
    assert said(ann) is None
    assert ann.end is not None and ann.end.code is pychat.StatusCode.UNAVAILABLE, ann.end
    assert "room unavailable" in ann.end.details, ann.end
    redis.start()
    # Both servers reconnect with backoff; until server one has, a newcomer's
    # hello fails the same way and it joins again.
    deadline = time.monotonic() + 3 * WAIT

    def newcomer_heard() -> bool:
        cid = PychatMember(one.target)
        cid.send("Cid", "hello")
        line = cid.recv(WAIT)
        if line is None:
            assert cid.end is not None and cid.end.code is pychat.StatusCode.UNAVAILABLE, cid.end
            cid.close()
            assert time.monotonic() < deadline, "server one never reached Redis again"
            return False
        assert line == "Cid: hello"
        cid.close()
        return True

    wait_until(newcomer_heard, timeout=3 * WAIT, interval=0.1,
               what="a newcomer on server one to be heard")
    # Bob, on the other server, stayed in the room: he hears it as well.
    while (line := bob.recv()) != "Cid: hello":
        assert line is not None, bob.end
    bob.close()


def test_a_killed_server_ends_its_members_the_others_go_on(room_server) -> None:
    servers = [room_server() for _ in range(3)]
    members = [PychatMember(s.target) for s in servers]
    names = ["Ann", "Bob", "Cid"]
    for member, name in zip(members, names):
        enter(member, name)
    servers[2].signal(signal.SIGKILL)
    assert said(members[2]) is None
    assert members[2].end is not None, "the stream ended OK"
    assert members[2].end.code is pychat.StatusCode.UNAVAILABLE, members[2].end
    members[0].send("Ann", "still here?")
    for member in members[:2]:
        assert said(member) == "Ann: still here?"
    for member in members:
        member.close()


def test_a_pychat_server_joins_the_room_of_chat_servers(redis, room_server) -> None:
    one = room_server()
    with pychat.Server("127.0.0.1:0", mode="broadcast", room=redis.url,
                       room_name="lobby") as two:
        ann, bob = PychatMember(one.target), PychatMember(f"127.0.0.1:{two.port}")
        enter(ann, "Ann")
        enter(bob, "Bob")
        bob.send("Bob", "from pychat's server")
        for member in (ann, bob):
            assert said(member) == "Bob: from pychat's server"
        ann.close()
        bob.close()


def test_pychat_refuses_a_malformed_room() -> None:
    for room in ("redis://127.0.0.1", "127.0.0.1:6379", "redis://h:1/db"):
        with pytest.raises(ValueError, match="redis://HOST:PORT"):
            pychat.Server("127.0.0.1:0", mode="broadcast", room=room, room_name="lobby")
    with pytest.raises(TypeError):
        pychat.Server("127.0.0.1:0", mode="broadcast", room=b"redis://h:1",  # type: ignore
                      room_name="lobby")


def test_a_late_joiner_asks_for_the_last_lines(room_server) -> None:
    one, two = room_server(), room_server()
    ann, bob = GrpcioMember(one.target), PychatMember(two.target)
    enter(ann, "Ann")
    enter(bob, "Bob")
    for i in range(1, 6):
        ann.send("Ann", f"line {i}")
    while (line := said(bob)) != "Ann: line 5":  # server two has delivered them all
        assert line is not None, bob.end
    cid = PychatMember(two.target, replay=2)
    assert [cid.recv(), cid.recv()] == ["Ann: line 4", "Ann: line 5"]
    bob.send("Bob", "welcome, Cid")
    assert said(cid) == "Bob: welcome, Cid"
    for member in (ann, bob, cid):
        member.close()


def test_lines_trimmed_before_a_frozen_server_read_them_end_its_members(redis,
                                                                        room_server) -> None:
    """A server away from Redis (here: frozen by SIGSTOP) while more lines
    than the stream keeps were added cannot give them to its members: it
    says so (DATA_LOSS) instead of going on as if nothing had happened."""
    redis.cli("CONFIG", "SET", "stream-node-max-entries", "1")  # MAXLEN ~ trims exactly
    one, two = room_server("lobby", "--room-max-len", "5"), room_server("lobby",
                                                                      "--room-max-len", "5")
    ann, bob = PychatMember(one.target), PychatMember(two.target)
    enter(ann, "Ann")
    enter(bob, "Bob")
    one.signal(signal.SIGSTOP)
    try:
        # One at a time, each back before the next: Bob's own server keeps
        # up (a reader more than 5 lines behind would lose lines too).
        for i in range(30):
            bob.send("Bob", f"line {i}")
            assert said(bob) == f"Bob: line {i}", bob.end
    finally:
        one.signal(signal.SIGCONT)
    while (line := ann.recv()) is not None:
        assert line.startswith("Bob: "), line
    assert isinstance(ann.end, pychat.DataLoss), ann.end
    assert "lost" in ann.end.details, ann.end
    # Bob's server never lost sight of Redis: he stays, and Ann may join again.
    cid = PychatMember(one.target)
    enter(cid, "Cid")
    bob.send("Bob", "still here")
    assert said(cid) == "Bob: still here"
    for m in (ann, bob, cid):
        m.close()
