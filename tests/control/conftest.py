"""Helpers for the control suite: a TCP relay that counts the bytes each
way (what compression saves is seen on the socket, not taken on trust) and
a grpcio Chat server (the independent peer)."""
from __future__ import annotations

import socket
import threading
from concurrent import futures
from typing import Any, Iterator, List, Optional

import grpc
import pytest
from google.protobuf import wrappers_pb2

import chat_pb2
import chat_pb2_grpc
from chat_testing import WAIT


class CountingProxy:
    """Relays 127.0.0.1:port to `upstream` ("127.0.0.1:PORT"), counting the
    bytes sent up (client to server) and down."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.target = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._up = 0
        self._down = 0
        self.connections = 0
        self.server_closed = 0  # connections the server side ended
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return  # closed
            up = socket.create_connection(self._upstream, timeout=WAIT)
            up.settimeout(None)
            with self._lock:
                self.connections += 1
                self._sockets += [down, up]
            self._spawn(self._pump, down, up, True)
            self._spawn(self._pump, up, down, False)

    def _pump(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    if upward:
                        self._up += len(data)
                    else:
                        self._down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        if not upward:
            with self._lock:
                self.server_closed += 1
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def up(self) -> int:
        with self._lock:
            return self._up

    @property
    def down(self) -> int:
        with self._lock:
            return self._down

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (Linux)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(WAIT)


@pytest.fixture
def proxy() -> Iterator[Any]:
    """Factory: proxy(upstream) -> CountingProxy, closed after the test."""
    made: List[CountingProxy] = []

    def make(upstream: str) -> CountingProxy:
        p = CountingProxy(upstream)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


class EchoServicer(chat_pb2_grpc.ChatServicer):
    """grpcio's echo: "<name>: <message>" per message. `seen` gets each
    call's invocation metadata."""

    def __init__(self) -> None:
        self.seen: List[Any] = []

    def chat(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        self.seen.append(dict(context.invocation_metadata()))
        for m in request_iterator:
            yield wrappers_pb2.StringValue(value=f"{m.name}: {m.message}")


@pytest.fixture
def grpcio_server() -> Iterator[Any]:
    """Factory: grpcio_server(servicer=None, compression=None, options=())
    -> (server, "127.0.0.1:PORT")."""
    servers: List[grpc.Server] = []

    def start(servicer: Optional[Any] = None, compression: Optional[Any] = None,
              options: Any = ()) -> Any:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                             compression=compression, options=list(options))
        chat_pb2_grpc.add_ChatServicer_to_server(servicer or EchoServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return server, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0).wait(WAIT)
