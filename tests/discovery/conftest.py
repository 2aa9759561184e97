"""Fixtures for health checking and server reflection, checked with grpcio
clients built from the same Debian health.proto and reflection.proto that
libchat embeds. The servers are pychat's (sync and aio) and the chat_server
example (--health, --reflection). Every grpcio call carries a timeout and
every wait a deadline."""
import os
import queue
import threading

import grpc
import pytest

import chat_pb2
import chat_pb2_grpc
import health_pb2
import health_pb2_grpc
import pychat
from chat_testing import ServerProcess
from grpc_testing import grpc_channel  # noqa: F401  (a fixture)

SERVER_BIN = os.environ.get("CHAT_SERVER_BIN")
RPC_TIMEOUT = 20.0
WAIT = 10.0


def pytest_addoption(parser):
    parser.addoption("--go-peer", default=None,
                     help="grpc-go's health and reflection client (tests/discovery/go)")


@pytest.fixture
def go_peer(request):
    path = request.config.getoption("--go-peer")
    if not path:
        pytest.skip("no grpc-go peer built (go or Debian's grpc-go missing)")
    return path


def pytest_configure(config):
    if not SERVER_BIN or not os.access(SERVER_BIN, os.X_OK):
        raise pytest.UsageError("CHAT_SERVER_BIN must name the built chat_server (run through ctest)")


@pytest.fixture(params=["pychat", "chat_server"])
def serve(request):
    """Factory: serve(health=..., reflection=...) starts a server, a
    pychat.Server or the chat_server example, and returns its target."""
    stop = []

    def start(health=False, reflection=False):
        if request.param == "pychat":
            server = pychat.Server("127.0.0.1:0", health=health, reflection=reflection)
            stop.append(lambda: server.stop(grace=0))
            return f"127.0.0.1:{server.port}"
        flags = (["--health"] if health else []) + (["--reflection"] if reflection else [])
        proc = ServerProcess([SERVER_BIN, "--address", "127.0.0.1:0", *flags])
        stop.append(proc.kill)
        return proc.target

    yield start
    for s in stop:
        s()


class Watch:
    """A health Watch stream read on a thread, so each update has a deadline."""

    def __init__(self, ch, service):
        self.updates = queue.Queue()
        self.call = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
        self.code = None
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self.call:
                self.updates.put(r.status)
            self.code = self.call.code()
        except grpc.RpcError as e:
            self.code = e.code()
        finally:
            self.done.set()

    def next(self, timeout=WAIT):
        try:
            return self.updates.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no health update within {timeout}s (ended: {self.code})")

    def close(self):
        self.call.cancel()
        self.done.wait(WAIT)


@pytest.fixture
def watch():
    """Factory: watch(channel, service) opens a Watch stream."""
    watches = []

    def open_(ch, service):
        w = Watch(ch, service)
        watches.append(w)
        return w

    yield open_
    for w in watches:
        w.close()


class ChatStream:
    """An open /Chat/chat stream from grpcio: the test sends, receives and
    half-closes when it chooses."""

    def __init__(self, ch):
        self._requests = queue.Queue()
        self.call = chat_pb2_grpc.ChatStub(ch).chat(iter(self._requests.get, None),
                                                    timeout=RPC_TIMEOUT)

    def echo(self, name, message):
        self._requests.put(chat_pb2.ChatMessage(name=name, message=message))
        return next(self.call).value

    def half_close(self):
        self._requests.put(None)

    def finish(self):
        """Drains the stream to its end; returns its final code."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as e:
            return e.code()
        return self.call.code()

    def close(self):
        self.half_close()
        self.call.cancel()


@pytest.fixture
def chat_stream():
    streams = []

    def open_(ch):
        s = ChatStream(ch)
        streams.append(s)
        return s

    yield open_
    for s in streams:
        s.close()
