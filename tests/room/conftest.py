"""Fixtures for the room on Redis: a redis-server of the test's own (free
loopback port, temporary directory, no persistence, stopped by PID) and
chat_server processes in broadcast mode on it."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, List, Optional

import grpc
import pytest
from google.protobuf import wrappers_pb2

import chat_pb2
import pychat
from chat_testing import ServerProcess, program
from redis_testing import Redis

CHAT_SERVER = program("CHAT_SERVER_BIN", "chat_server")
WAIT = 10.0


@pytest.fixture
def redis(tmp_path) -> Iterator[Redis]:
    r = Redis(str(tmp_path))
    r.start()
    yield r
    r.kill()


@pytest.fixture
def room_server(redis) -> Iterator[Callable[..., ServerProcess]]:
    """Starts chat_server in broadcast mode on the room; killed at the end."""
    started: List[ServerProcess] = []

    def start(room_name: str = "lobby", *extra: str) -> ServerProcess:
        server = ServerProcess([CHAT_SERVER, "--address", "127.0.0.1:0", "--mode", "broadcast",
                                "--grace-ms", "0", "--room", redis.url,
                                "--room-name", room_name, *extra])
        server.port  # fails with its stderr unless it listens
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


class GrpcioMember:
    """A member written with grpcio, the independent implementation."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.requests: "queue.Queue[Optional[chat_pb2.ChatMessage]]" = queue.Queue()
        call = self.channel.stream_stream(
            "/Chat/chat", request_serializer=chat_pb2.ChatMessage.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString)
        self.responses = call(iter(self.requests.get, None))
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for reply in self.responses:
                self.lines.put(reply.value)
        except grpc.RpcError:
            pass
        self.lines.put(None)

    def send(self, name: str, message: str) -> None:
        self.requests.put(chat_pb2.ChatMessage(name=name, message=message))

    def recv(self, timeout: float = WAIT) -> Optional[str]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s")

    def close(self) -> None:
        self.requests.put(None)
        self.responses.cancel()
        self.channel.close()


def said(member, timeout: float = WAIT) -> Optional[str]:
    """The next line that is not a hello (later members' hellos reach the
    members already in the room in any order)."""
    while (line := member.recv(timeout)) is not None and line.endswith(": hello"):
        pass
    return line


def enter(member, name: str) -> None:
    """Says hello until the member hears itself: then it is in the room."""
    member.send(name, "hello")
    while (line := member.recv(WAIT)) != f"{name}: hello":
        assert line is not None, f"{name}'s stream ended before its hello came back"


class PychatMember:
    """A member on pychat (libchat's own client), a connection of its own."""

    def __init__(self, target: str, replay: Optional[int] = None) -> None:
        self.client = pychat.Client(target)
        asked = None if replay is None else [("x-room-replay", str(replay))]
        self.stream = self.client.chat(metadata=asked)
        self.end: Optional[pychat.ChatError] = None  # how the stream failed

    def send(self, name: str, message: str) -> None:
        self.stream.send(name, message, WAIT)

    def recv(self, timeout: float = WAIT) -> Optional[str]:
        """The next line; None once the stream ended (`end` says how)."""
        try:
            return self.stream.recv(timeout)
        except pychat.ChatError as e:
            self.end = e
            return None

    def close(self) -> None:
        self.stream.close()
        self.client.close()


def talk(members: List[Any], names: List[str], rounds: int) -> List[List[str]]:
    """Every member sends `rounds` lines from a thread of its own, all at
    once; returns what each member received of them, in order."""
    seen: List[List[str]] = [[] for _ in members]

    def send(i: int) -> None:
        for k in range(rounds):
            members[i].send(names[i], str(k))

    def receive(i: int) -> None:
        while len(seen[i]) < len(members) * rounds:
            line = members[i].recv(WAIT)
            if line is None:
                return
            if not line.endswith(": hello"):
                seen[i].append(line)

    threads = [threading.Thread(target=f, args=(i,)) for i in range(len(members))
               for f in (send, receive)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 3)
        assert not t.is_alive()
    return seen
