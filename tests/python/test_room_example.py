"""examples/python/room_server.py: the chat room protocol of its docstring,
against the real process, with pychat clients and a grpcio client (stubs
generated from proto/chat.proto). Waits have deadlines; the room's single
order of lines is what lets a test show that something was *not* sent: the
next line a member gets is the one after it."""
from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from typing import Any, Iterator, List, Optional

import grpc
import pytest

import chat_pb2
import chat_pb2_grpc
import pychat
from chat_testing import WAIT, ServerProcess, run

EXAMPLES = os.environ.get("CHAT_EXAMPLES_DIR",
                          os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))
ROOM = [sys.executable, os.path.join(EXAMPLES, "room_server.py")]


@pytest.fixture
def room() -> Iterator[str]:
    """The room's target, "127.0.0.1:PORT"."""
    with ServerProcess([*ROOM, "--address", "127.0.0.1:0", "--grace-ms", "0"]) as server:
        yield server.target
        assert "stopped on SIGTERM" in server.stop(signal.SIGTERM)


class GrpcioMember:
    """A member over grpcio: messages fed from a queue, replies read on a
    thread (a grpcio response iterator has no per-read timeout)."""

    _END = None

    def __init__(self, channel: grpc.Channel) -> None:
        self._out: "queue.Queue[Optional[chat_pb2.ChatMessage]]" = queue.Queue()
        self._in: "queue.Queue[Any]" = queue.Queue()
        stub = chat_pb2_grpc.ChatStub(channel)
        self.call = stub.chat(iter(self._out.get, self._END), timeout=3 * WAIT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for reply in self.call:
                self._in.put(reply.value)
            self._in.put(None)
        except grpc.RpcError as e:
            self._in.put(e)

    def send(self, name: str, message: str) -> None:
        self._out.put(chat_pb2.ChatMessage(name=name, message=message))

    def send_end(self) -> None:
        self._out.put(self._END)

    def recv(self) -> Any:
        try:
            return self._in.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no reply within {WAIT}s")


def recv(stream: pychat.Stream) -> Optional[str]:
    return stream.recv(WAIT)


def test_room_protocol(room: str) -> None:
    with pychat.Client(room) as client, grpc.insecure_channel(room) as channel:
        sam = client.chat()
        sam.send("Sam", "Hi")
        assert [recv(sam), recv(sam)] == ["* Sam joined", "Sam: Hi"]

        # A stream that never sends is no member: no notices either way.
        lurker = client.chat()
        ann = GrpcioMember(channel)
        ann.send("Ann", "Hey")
        # Ann sees the room from her join on, not what came before it.
        assert [ann.recv(), ann.recv()] == ["* Ann joined", "Ann: Hey"]
        assert [recv(sam), recv(sam)] == ["* Ann joined", "Ann: Hey"]

        # /who goes to its sender only, names sorted.
        ann.send("Ann", "/who")
        assert ann.recv() == "* members: Ann, Sam"
        # A member's name is that of its first message for good.
        sam.send("Eve", "still me")
        assert recv(sam) == "Sam: still me"  # not the /who answer
        assert ann.recv() == "Sam: still me"

        # A first message /who: the join, then the answer.
        john = client.chat()
        john.send("John", "/who")
        assert [recv(john), recv(john)] == ["* John joined", "* members: Ann, John, Sam"]
        assert recv(sam) == ann.recv() == "* John joined"

        # Half-closing leaves (the others are told) and ends the call OK.
        sam.complete()
        assert recv(sam) is None and sam.code is pychat.StatusCode.OK
        assert recv(john) == ann.recv() == "* Sam left"

        # So does going away: a cancelled grpcio call.
        ann.call.cancel()
        ann.send_end()  # lets grpcio's request thread finish
        assert recv(john) == "* Ann left"
        lurker.close()  # silently
        john.send("John", "/who")
        assert recv(john) == "* members: John"
        john.close()
        sam.close()


def test_room_stops_on_sigint_and_cuts_members() -> None:
    with ServerProcess([*ROOM, "--address", "127.0.0.1:0", "--grace-ms", "0"]) as server, \
            pychat.Client(server.target) as client, client.chat() as member:
        member.send("Sam", "Hi")
        assert [recv(member), recv(member)] == ["* Sam joined", "Sam: Hi"]
        err = server.stop(signal.SIGINT)
        assert "room_server: stopped on SIGINT (1 stream cut)" in err
        with pytest.raises(pychat.Unavailable):
            recv(member)


def test_room_address_in_use(room: str) -> None:
    busy = run([*ROOM, "--address", room])
    assert busy.returncode == 1 and busy.stdout == ""
    assert "room_server: " in busy.stderr and "Address already in use" in busy.stderr


def test_room_help_shows_the_loopback_default() -> None:
    shown = run([*ROOM, "--help"])
    assert shown.returncode == 0 and "default: 127.0.0.1:9090" in shown.stdout


def test_room_drops_a_member_that_does_not_read(room: str) -> None:
    # Sam never reads; Ann talks until Sam's send queue is full.
    # Sends from Ann are one at a time with replies read, so the room is
    # never ahead of what this test knows.
    with pychat.Client(room, recv_queue_limit=1) as slow_client, \
            pychat.Client(room) as client:
        sam = slow_client.chat()
        sam.send("Sam", "Hi")
        # A member before Ann comes; from here on he reads nothing.
        assert [recv(sam), recv(sam)] == ["* Sam joined", "Sam: Hi"]
        ann = client.chat()
        ann.send("Ann", "Hey")
        lines: List[Optional[str]] = [recv(ann), recv(ann)]
        assert lines == ["* Ann joined", "Ann: Hey"]
        filler = "x" * 16384  # fills the HTTP/2 windows to Sam in fewer lines
        for i in range(20000):
            ann.send("Ann", f"{i} {filler}")
            line = recv(ann)
            if line == "* Sam left":
                break
            assert line == f"Ann: {i} {filler}"
        else:
            raise AssertionError("Sam was never dropped")
        # Sam's call failed; the lines sent to him before stay readable first,
        # then its status, unless he starts reading more than 200 ms after
        # the cut (a busy machine): chat_call_fail then resets the stuck write.
        with pytest.raises((pychat.ResourceExhausted, pychat.Cancelled)) as ended:
            for _ in range(20000):
                recv(sam)
        if isinstance(ended.value, pychat.ResourceExhausted):
            assert "too slowly for the room" in str(ended.value)
        sam.close()
        ann.close()
