"""The chat room: the built-in broadcast mode and one written in Python."""
from __future__ import annotations

import threading
from typing import Dict, List, Set

import pychat
from conftest import WAIT, target


def join_room(client: pychat.Client, names: List[str]) -> List[pychat.Stream]:
    """Opens one stream per name; returns once the server counts each one in
    (a member sees its own hello only after it joined the room)."""
    streams = []
    for name in names:
        stream = client.chat()
        stream.send(name, "hello")
        while stream.recv(WAIT) != f"{name}: hello":
            pass
        streams.append(stream)
    return streams


def collect(stream: pychat.Stream, wanted: Set[str]) -> List[str]:
    """Reads until every line of `wanted` was seen; returns them in arrival order.
    Other lines (hellos of later members) are skipped."""
    got: List[str] = []
    while len(got) < len(wanted):
        reply = stream.recv(WAIT)
        assert reply is not None, f"stream ended after {got}"
        if reply in wanted:
            got.append(reply)
    return got


def drain(stream: pychat.Stream) -> List[str]:
    """Reads to the end; the end must be OK."""
    rest = list(stream)
    assert stream.code is pychat.StatusCode.OK
    return rest


def test_three_clients() -> None:
    names = ["Sam", "Ann", "John"]
    with pychat.Server("127.0.0.1:0", mode="broadcast") as server:
        clients = [pychat.Client(target(server)) for _ in names]
        streams = [join_room(c, [n])[0] for c, n in zip(clients, names)]
        for name, stream in zip(names, streams):
            stream.send(name, f"message from {name}")
        wanted = {f"{n}: message from {n}" for n in names}
        for stream in streams:  # everyone sees every line (in an order of its own:
            collect(stream, wanted)  # senders on other connections race)
        # Sam leaves: the others are told.
        streams[0].complete()
        drain(streams[0])
        for stream in streams[1:]:
            collect(stream, {"Sam left the chat"})
        for stream, c in zip(streams, clients):
            stream.complete()
            drain(stream)
            stream.close()
            c.close()


class Room:
    """A chat room in Python: keeps the calls, sends from the dispatcher."""

    def __init__(self) -> None:
        self.members: Dict[int, pychat.Call] = {}
        self.lock = threading.Lock()

    def on_open(self, call: pychat.Call) -> None:
        with self.lock:
            self.members[call.id] = call

    def on_message(self, call: pychat.Call, name: str, message: str) -> None:
        with self.lock:
            members = list(self.members.values())
        for member in members:
            try:
                member.send(f"{name}: {message}", timeout=1.0)
            except (pychat.ClosedError, TimeoutError):
                pass  # left, or too slow for the room

    def on_close(self, call: pychat.Call, code: pychat.StatusCode, details: str) -> None:
        with self.lock:
            self.members.pop(call.id, None)


def test_room_written_in_python() -> None:
    room = Room()
    with pychat.Server("127.0.0.1:0", handler=room) as server, \
            pychat.Client(target(server)) as client:
        streams = join_room(client, ["Sam", "Ann", "John"])
        assert len(room.members) == 3
        # A member announces from the test's thread too (calls are thread-safe).
        for call in list(room.members.values()):
            call.send("server: welcome")
        for i, stream in enumerate(streams):
            stream.send(f"m{i}", "hi")
        for stream in streams:
            collect(stream, {"server: welcome"})
            collect(stream, {f"m{i}: hi" for i in range(3)})
        for stream in streams:
            stream.complete()
            drain(stream)
            stream.close()
