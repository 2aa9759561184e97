"""pychat.Room in a custom server's handler: a host that authenticates and
filters shares one room on Redis with chat_server processes."""
from __future__ import annotations

import asyncio
import os
import sys
from typing import List, Optional

import pychat
import pychat.aio
import pytest
from chat_testing import ServerProcess, program, wait_until
from conftest import GrpcioMember, PychatMember, enter, said, talk


class Lobby(pychat.Handler):
    """Joins every stream (with the replay its "replay" metadata asks for),
    publishes each message under the name the token proved, drops "spam"."""

    def __init__(self, room: pychat.Room) -> None:
        self.room = room

    def on_open(self, call: pychat.Call) -> None:
        self.room.join(call, replay=int(call.metadata.get("replay", "0")))

    def on_message(self, call: pychat.Call, name: str, message: str) -> None:
        if "spam" in message:
            call.send("not sent: spam")
            return
        self.room.publish(call.principal, message)


def authenticate(call: pychat.Call, token: Optional[str]) -> str:
    if not token or not token.startswith("t-"):
        raise pychat.Unauthenticated("a token t-<name> is needed")
    return token[2:]


def host(room: pychat.Room) -> pychat.Server:
    return pychat.Server("127.0.0.1:0", handler=Lobby(room), authenticate=authenticate)


def member(server: pychat.Server, token: str, replay: Optional[int] = None) -> PychatMember:
    m = PychatMember.__new__(PychatMember)
    m.client = pychat.Client(f"127.0.0.1:{server.port}", token=token)
    m.stream = m.client.chat(metadata=None if replay is None else [("replay", str(replay))])
    m.end = None
    return m


def test_a_host_and_a_chat_server_share_one_room(redis, room_server) -> None:
    lines: List[str] = []
    with pychat.Room(redis.url, "lobby", on_line=lines.append) as room, host(room) as lobby:
        plain = room_server()
        ann = GrpcioMember(plain.target)     # grpcio, on chat_server's broadcast
        bob = member(lobby, "t-bob")         # pychat, on the host, as "bob"
        enter(ann, "Ann")
        enter(bob, "bob")
        bob.send("Mallory", "I am not Mallory")  # the token's name wins
        bob.send("bob", "buy spam")              # filtered: only bob hears why
        # The refusal is bob's own reply: it may pass the room's line.
        assert {said(bob), said(bob)} == {"bob: I am not Mallory", "not sent: spam"}
        assert said(ann) == "bob: I am not Mallory"
        ann.send("Ann", "hi bob")
        for m in (ann, bob):
            assert said(m) == "Ann: hi bob"
        assert wait_until(lambda: "Ann: hi bob" in lines, what="on_line saw the room")
        assert [x for x in lines if not x.endswith(": hello")] == \
            ["bob: I am not Mallory", "Ann: hi bob"]
        assert room.members == 1
        # No token: refused before the handler sees it.
        eve = PychatMember(f"127.0.0.1:{lobby.port}")
        assert eve.recv() is None and isinstance(eve.end, pychat.Unauthenticated)
        for m in (ann, bob, eve):
            m.close()


def test_two_hosts_one_sequence_and_a_late_joiner_replays(redis) -> None:
    rounds = 100
    with pychat.Room(redis.url, "hosts") as r1, pychat.Room(redis.url, "hosts") as r2, \
            host(r1) as one, host(r2) as two:
        members = [member(one, "t-a"), member(two, "t-b"), member(two, "t-c")]
        names = ["a", "b", "c"]
        for m, name in zip(members, names):
            enter(m, name)
        seen = talk(members, names, rounds)
        assert len(seen[0]) == len(members) * rounds
        assert seen[1] == seen[0] and seen[2] == seen[0]
        late = member(one, "t-d", replay=3)
        assert [late.recv(), late.recv(), late.recv()] == seen[0][-3:]
        for m in members + [late]:
            m.close()


def test_redis_gone_makes_publish_raise_unavailable(redis) -> None:
    with pychat.Room(redis.url, "lobby") as room:
        room.publish("a", "while Redis is up")
        redis.kill()
        with pytest.raises(pychat.Unavailable, match="room unavailable"):
            room.publish("a", "lost")


def test_room_errors_are_plain() -> None:
    with pytest.raises(ValueError, match="redis://"):
        pychat.Room("http://127.0.0.1:1", "lobby")
    with pytest.raises(ValueError, match="name"):
        pychat.Room("redis://127.0.0.1:1")
    with pytest.raises(TypeError):
        pychat.Room(on_line=42)  # type: ignore[arg-type]
    room = pychat.Room()  # in this process
    with pytest.raises(TypeError, match="pychat.Call"):
        room.join("not a call")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="replay"):
        room.join(None, replay=5000)  # type: ignore[arg-type]
    room.publish("a", "nobody listens")
    assert room.members == 0

    def reenter(line: str) -> None:
        with pytest.raises(RuntimeError, match="on_line"):
            echo.publish("x", line)
        heard.append(line)

    heard: List[str] = []
    echo = pychat.Room(on_line=reenter)
    echo.publish("a", "once")
    assert heard == ["a: once"]
    echo.close()
    room.close()
    with pytest.raises(pychat.ClosedError):
        room.publish("a", "closed")


ROOM_EXAMPLES = {
    "python": [sys.executable, os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                                            "python", "room_server.py")],
    "c": [program("CHAT_ROOM_SERVER_BIN", "room_server")],
}


@pytest.mark.parametrize("example", sorted(ROOM_EXAMPLES))
def test_the_room_examples_span_two_servers(redis, example: str) -> None:
    """room_server (C) and room_server.py --room: members of two processes
    are in one room (joins, lines and leaves), /who answers for its own
    server."""
    servers = [ServerProcess(ROOM_EXAMPLES[example] + ["--address", "127.0.0.1:0", "--grace-ms", "0",
                                               "--room", redis.url, "--room-name", "example"])
               for _ in range(2)]
    try:
        ann, bob = PychatMember(servers[0].target), PychatMember(servers[1].target)
        ann.send("Ann", "hi")
        assert [ann.recv(), ann.recv()] == ["* Ann joined", "Ann: hi"]
        bob.send("Bob", "/who")
        # The answer is bob's own reply; the join comes back through Redis,
        # and so may Ann's lines if bob's server had not delivered them yet
        # when he joined.
        got = set()
        while not {"* Bob joined", "* members: Bob"} <= got:
            line = bob.recv()
            assert line in ("* Bob joined", "* members: Bob", "* Ann joined", "Ann: hi"), line
            got.add(line)
        assert said(ann) == "* Bob joined"
        bob.send("Bob", "hello Ann")
        for m in (ann, bob):
            assert said(m) == "Bob: hello Ann"
        bob.stream.complete()
        assert said(ann) == "* Bob left"
        for m in (ann, bob):
            m.close()
    finally:
        for s in servers:
            s.kill()


def test_an_asyncio_host_shares_the_room(redis, room_server) -> None:
    """pychat.aio.Room in async handlers, beside a chat_server process."""
    plain = room_server()

    async def main() -> None:
        async with pychat.aio.Room(redis.url, "lobby") as room:
            class Lobby(pychat.aio.Handler):
                async def on_open(self, call: pychat.aio.Call) -> None:
                    await room.join(call, replay=1)

                async def on_message(self, call: pychat.aio.Call, name: str, message: str) -> None:
                    await room.publish(name.upper(), message)  # the host rewrites

            async with pychat.aio.Server("127.0.0.1:0", Lobby()) as server:
                loop = asyncio.get_running_loop()
                ann = GrpcioMember(plain.target)
                await loop.run_in_executor(None, enter, ann, "Ann")
                bob = PychatMember(f"127.0.0.1:{server.port}")
                # Bob's replay of 1: Ann's hello, the last line before him.
                assert await loop.run_in_executor(None, bob.recv) == "Ann: hello"
                await loop.run_in_executor(None, bob.send, "bob", "hi")
                for m in (ann, bob):
                    assert await loop.run_in_executor(None, said, m) == "BOB: hi"
                assert room.members == 1
                ann.close()
                bob.close()

    asyncio.run(main())
