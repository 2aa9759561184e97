"""The chat room example (examples/room_server.c) under real clients over
127.0.0.1 with ephemeral ports: the example C client (chat_client --name,
one process per member, lines on stdin) and, where the test needs a client
that misbehaves on purpose or a final status, pychat (skipped when it is not
built).

Every wait has a deadline; nothing sleeps. The binaries come from the
environment (tests/capi/CMakeLists.txt)."""
from __future__ import annotations

import contextlib
import signal
import subprocess
from typing import Iterator, List

import pytest

from chat_testing import Process, ServerProcess, program
from test_loop_examples import WAIT, Server, run

ROOM_SERVER = program("CHAT_ROOM_SERVER_BIN", "room_server")
C_CLIENT = program("CHAT_CLIENT_BIN", "chat_client")


class Member(Process):
    """chat_client --name NAME: each say() is one stdin line, every reply
    one stdout line; closing stdin half-closes (the member leaves)."""

    def __init__(self, room: ServerProcess, name: str) -> None:
        super().__init__([C_CLIENT, "--target", room.target, "--name", name],
                         stdin=subprocess.PIPE, wait=WAIT)
        self.name = name

    def say(self, *lines: str) -> None:
        for line in lines:
            super().say(line)

    def expect(self, *lines: str) -> None:
        got = [self.out.next() for _ in lines]
        assert got == [line + "\n" for line in lines], (self.name, got)

    def take(self, n: int) -> List[str]:
        return [(self.out.next() or "<EOF>").rstrip("\n") for _ in range(n)]

    def leave(self) -> None:
        """Half-closes; the stream must end OK after the lines queued."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.ends_ok()

    def ends_ok(self, last: str = "") -> None:
        assert self.out.rest() == last, self.name
        assert self.wait() == 0, self.err.rest()
        assert self.err.rest() == ""

    def kill(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            super().kill()


@pytest.fixture
def room() -> Iterator[ServerProcess]:
    server = Server(ROOM_SERVER, "--address", "127.0.0.1:0")
    yield server
    server.kill()


@pytest.fixture
def members(room: ServerProcess) -> Iterator[List[Member]]:
    made: List[Member] = []
    yield made
    for m in made:
        m.kill()


def test_three_members_join_talk_ask_who_leave_and_the_room_stops(
        room: ServerProcess, members: List[Member]) -> None:
    ann = Member(room, "Ann")
    members.append(ann)
    ann.say("hi")
    ann.expect("* Ann joined", "Ann: hi")

    sam = Member(room, "Sam")
    members.append(sam)
    sam.say("hello")
    for m in (ann, sam):  # the notice comes first, to the newcomer too
        m.expect("* Sam joined", "Sam: hello")

    # A first message of "/who" joins too; the answer goes to its sender only.
    bob = Member(room, "Bob")
    members.append(bob)
    bob.say("/who")
    bob.expect("* Bob joined", "* members: Ann, Bob, Sam")
    ann.expect("* Bob joined")
    sam.expect("* Bob joined")

    # One member's messages reach everyone in the order sent; "/who" in
    # between is Sam's alone, so the others go straight on to the next line.
    lines = [f"line {i}" for i in range(100)]
    sam.say(*lines[:50], "/who", *lines[50:])
    theirs = [f"Sam: {line}" for line in lines]
    for m in (ann, bob):
        assert m.take(100) == theirs
    assert sam.take(101) == theirs[:50] + ["* members: Ann, Bob, Sam"] + theirs[50:]

    ann.leave()  # end of input: half-close, the room completes the call
    sam.expect("* Ann left")
    bob.expect("* Ann left")
    bob.say("/who")
    bob.expect("* members: Bob, Sam")

    # SIGTERM: each member gets a goodbye and its call ends OK; none is cut.
    assert room.stop(signal.SIGTERM) == "room_server: stopped on SIGTERM (0 streams cut)\n"
    for m in (sam, bob):
        m.ends_ok("* room closing\n")


def test_members_talking_at_once_all_see_one_order(room: ServerProcess, members: List[Member]) -> None:
    names = ["Ann", "Bob", "Cid"]
    for name in names:
        m = Member(room, name)
        members.append(m)
        m.say("here")
        m.expect(f"* {name} joined", f"{name}: here")
        for other in members[:-1]:
            other.expect(f"* {name} joined", f"{name}: here")

    n = 200
    for m in members:  # all three write their whole batch before anyone reads
        m.say(*(f"{i}" for i in range(n)))
    seen = [m.take(len(names) * n) for m in members]
    assert seen[0] == seen[1] == seen[2]  # the room's single order
    for name in names:  # and within it, each sender's own order
        assert [line for line in seen[0] if line.startswith(name + ": ")] == \
            [f"{name}: {i}" for i in range(n)]

    for i, m in enumerate(members):
        m.leave()
        for other in members[i + 1:]:
            other.expect(f"* {m.name} left")
    assert room.stop(signal.SIGINT) == "room_server: stopped on SIGINT (0 streams cut)\n"


def test_a_member_keeps_its_first_name(room: ServerProcess) -> None:
    pychat = pytest.importorskip("pychat")
    with pychat.Client(room.target) as client, client.chat(timeout=WAIT) as sam:
        sam.send("Sam", "hi")
        sam.send("Ann", "it is me, Ann")  # a later name is not the member's
        sam.send("", "still Sam")
        sam.complete()
        assert list(sam) == ["* Sam joined", "Sam: hi", "Sam: it is me, Ann", "Sam: still Sam"]
        assert sam.code == pychat.StatusCode.OK


def test_a_taken_or_empty_name_is_refused(room: ServerProcess) -> None:
    pychat = pytest.importorskip("pychat")
    with pychat.Client(room.target) as client, client.chat(timeout=WAIT) as sam:
        sam.send("Sam", "hi")
        assert sam.recv(WAIT) == "* Sam joined"
        assert sam.recv(WAIT) == "Sam: hi"
        with client.chat(timeout=WAIT) as other:
            # The second message is most likely on its way when the first is
            # refused: it must not join as Sam2. (If the refusal came first,
            # queueing it raises.)
            with contextlib.suppress(pychat.AlreadyExists):
                other.send_many([("Sam", "me too"), ("Sam2", "then me")])
            with pytest.raises(pychat.AlreadyExists):
                other.recv(WAIT)
        with client.chat(timeout=WAIT) as nameless:
            nameless.send("", "hello")
            with pytest.raises(pychat.InvalidArgument):
                nameless.recv(WAIT)
        sam.send("Sam", "/who")  # neither joined, and nobody announced them
        assert sam.recv(WAIT) == "* members: Sam"


def test_a_member_that_does_not_read_is_cut_and_the_room_goes_on() -> None:
    """A send queue of 4 lines, and a member whose client stops reading
    (one reply buffered): once the transport's windows are full its queue
    fills, it is failed with RESOURCE_EXHAUSTED and leaves, while the
    member that reads is served throughout."""
    pychat = pytest.importorskip("pychat")
    room = Server(ROOM_SERVER, "--address", "127.0.0.1:0", "--send-queue", "4")
    try:
        with pychat.Client(room.target, recv_queue_limit=1) as slow_client, \
                pychat.Client(room.target) as client, \
                slow_client.chat(timeout=WAIT * 2) as slow, client.chat(timeout=WAIT * 2) as fast:
            slow.send("Slow", "hi")
            assert [slow.recv(WAIT), slow.recv(WAIT)] == ["* Slow joined", "Slow: hi"]
            fast.send("Fast", "hi")
            assert [fast.recv(WAIT), fast.recv(WAIT)] == ["* Fast joined", "Fast: hi"]
            # From here on Slow reads nothing.
            big = "x" * 65536
            left_after = None
            for i in range(2000):  # 128 MiB at most; it takes a few MiB
                fast.send("Fast", f"{i} {big}")
                while True:
                    reply = fast.recv(WAIT)
                    assert reply is not None
                    if reply == "* Slow left":
                        left_after = i
                    if reply.startswith(f"Fast: {i} "):
                        break
                if left_after is not None:
                    break
            assert left_after is not None, "the slow member was never cut"
            fast.send("Fast", "/who")
            assert fast.recv(WAIT) == "* members: Fast"
            # The slow client gets what was queued for it, then the status,
            # unless it starts reading more than 200 ms after the cut (a busy
            # machine): chat_call_fail then resets the stuck write.
            with pytest.raises((pychat.ResourceExhausted, pychat.Cancelled)):
                while slow.recv(WAIT) is not None:
                    pass
            if slow.code == pychat.StatusCode.RESOURCE_EXHAUSTED:
                assert "too slow" in (slow.details or "")
            else:
                assert slow.code == pychat.StatusCode.CANCELLED
            fast.complete()
            assert fast.recv(WAIT) is None
        assert room.stop() == "room_server: stopped on SIGINT (0 streams cut)\n"
    finally:
        room.kill()


def test_a_call_that_never_joins_is_cut_after_the_grace_period() -> None:
    pychat = pytest.importorskip("pychat")
    room = Server(ROOM_SERVER, "--address", "127.0.0.1:0", "--grace-ms", "200")
    try:
        with pychat.Client(room.target) as client, client.chat(timeout=WAIT) as lurker, \
                client.chat(timeout=WAIT) as ann:
            ann.send("Ann", "hi")  # also proves both calls are open on the server
            assert [ann.recv(WAIT), ann.recv(WAIT)] == ["* Ann joined", "Ann: hi"]
            assert room.stop(signal.SIGTERM) == \
                "room_server: stopped on SIGTERM (1 stream cut)\n"
            assert ann.recv(WAIT) == "* room closing"
            assert ann.recv(WAIT) is None  # completed: ends OK
            with pytest.raises(pychat.Unavailable):
                lurker.recv(WAIT)
    finally:
        room.kill()


@pytest.mark.parametrize("args", [["--bogus"], ["--address"], ["--grace-ms", "x"],
                                  ["--send-queue", "0"]])
def test_usage(args: List[str]) -> None:
    result = run(ROOM_SERVER, *args)
    assert result.returncode == 2 and result.stderr.startswith("usage: ")


def test_an_address_in_use_exits_1(room: ServerProcess) -> None:
    result = run(ROOM_SERVER, "--address", room.target)
    assert result.returncode == 1
    assert "room_server: CANNOT_LISTEN" in result.stderr, result.stderr
