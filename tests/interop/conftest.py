"""Fixtures for the grpcio <-> libchat interoperability suite.

grpcio (Debian's python3-grpcio) is the independent peer: it talks to our
chat_server, and hosts servers that our chat_client talks to. Nothing here
sleeps to synchronise: every wait is on a condition with a deadline, every
grpcio call carries a timeout, and every process, channel, stream and server
a test starts is torn down by its fixture even when the test fails.
"""
import os
import queue
import subprocess
import threading
import time
from concurrent import futures

import grpc
import pytest
from google.protobuf import wrappers_pb2

import chat_pb2
import chat_pb2_grpc
from chat_testing import ServerProcess
from grpc_testing import grpc_channel  # noqa: F401  (a fixture)

SERVER_BIN = os.environ.get("CHAT_SERVER_BIN")
CLIENT_BIN = os.environ.get("CHAT_CLIENT_BIN")

# Generous bounds: they only matter when something hangs, and the machine
# may be busy with parallel builds.
RPC_TIMEOUT = 20.0
WAIT = 10.0

_CLOSE = object()  # tells a request iterator to return, i.e. half-close


def pytest_configure(config):
    for name, value in (("CHAT_SERVER_BIN", SERVER_BIN), ("CHAT_CLIENT_BIN", CLIENT_BIN)):
        if not value or not os.access(value, os.X_OK):
            raise pytest.UsageError(f"{name} must name the built executable (run through ctest)")


class ChatServerProcess(ServerProcess):
    """A running chat_server; `port` is the one it reported on its first line."""

    def __init__(self, *args):
        super().__init__([SERVER_BIN, "--address", "127.0.0.1:0", *args])
        _ = self.port  # fails now, with its stderr, unless it listens

    def stderr_text(self):
        """All of stderr: call it once the process has exited."""
        return self.err.rest()


@pytest.fixture
def chat_server():
    """Factory: chat_server(*args) starts our server on 127.0.0.1:0."""
    started = []

    def start(*args):
        server = ChatServerProcess(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def echo_server(chat_server):
    return chat_server("--mode", "echo")


class Stream:
    """One grpcio bidi stream driven from the test thread.

    Requests go through a queue (so the test decides when to send and when
    to half-close); replies are read on a thread into a queue so every
    receive has a deadline. `code`/`details` hold the final status.
    """

    def __init__(self, multicallable, timeout):
        self._requests = queue.Queue()
        self._replies = queue.Queue()
        self._done = threading.Event()
        self.code = None
        self.details = None
        self.started = time.monotonic()
        self.call = multicallable(self._request_iter(), timeout=timeout)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _request_iter(self):
        while True:
            item = self._requests.get()
            if item is _CLOSE:
                return
            yield item

    def _read(self):
        try:
            for reply in self.call:
                self._replies.put(reply.value)
            self.code, self.details = self.call.code(), self.call.details()
        except grpc.RpcError as e:
            self.code, self.details = e.code(), e.details()
        finally:
            self._done.set()

    def send(self, name, message):
        self._requests.put(chat_pb2.ChatMessage(name=name, message=message))

    def send_raw(self, request):
        """Queues a request as is (for streams with a custom serializer)."""
        self._requests.put(request)

    def half_close(self):
        self._requests.put(_CLOSE)

    def cancel(self):
        self.call.cancel()

    def recv(self, timeout=WAIT):
        """The next reply; fails the test if none arrives in time or the stream ended."""
        try:
            item = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no reply within {timeout}s (final status {self.code})")
        return item

    def recv_n(self, n, timeout=WAIT):
        deadline = time.monotonic() + timeout
        return [self.recv(max(0.0, deadline - time.monotonic())) for _ in range(n)]

    def pending(self):
        """Replies received but not yet taken (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self._replies.get_nowait())
            except queue.Empty:
                return out

    def finish(self, timeout=WAIT):
        """Waits for the end of the stream; returns its status code."""
        if not self._done.wait(timeout):
            raise AssertionError(f"stream still open after {timeout}s")
        return self.code

    def close(self):
        # Returning from the request iterator lets grpcio's sender thread end.
        self.half_close()
        self.call.cancel()
        self._done.wait(WAIT)


@pytest.fixture
def open_stream():
    """Factory: open_stream(channel, method=None, timeout=RPC_TIMEOUT) -> Stream.

    `method` is a grpcio stream_stream multicallable; default /Chat/chat
    through the generated stub."""
    streams = []

    def open_(channel, method=None, timeout=RPC_TIMEOUT):
        if method is None:
            method = chat_pb2_grpc.ChatStub(channel).chat
        stream = Stream(method, timeout)
        streams.append(stream)
        return stream

    yield open_
    for stream in streams:
        stream.close()


@pytest.fixture
def run_stream(open_stream):
    """run_stream(channel, [(name, message), ...]) sends all, half-closes and
    returns (replies, code, details) once the stream has ended."""

    def run(channel, messages, timeout=RPC_TIMEOUT):
        stream = open_stream(channel, timeout=timeout)
        for name, message in messages:
            stream.send(name, message)
        stream.half_close()
        code = stream.finish(timeout)
        return stream.pending(), code, stream.details

    return run


class EchoServicer(chat_pb2_grpc.ChatServicer):
    """The echo behaviour of the Ballerina example, in grpcio."""

    def chat(self, request_iterator, context):
        for m in request_iterator:
            yield wrappers_pb2.StringValue(value=f"{m.name}: {m.message}")


@pytest.fixture
def grpc_server():
    """Factory: grpc_server(servicer) serves it in-process; returns the port."""
    servers = []

    def serve(servicer):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        chat_pb2_grpc.add_ChatServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        assert port > 0
        server.start()
        servers.append(server)
        return port

    yield serve
    for server in servers:
        server.stop(grace=None).wait(WAIT)


@pytest.fixture
def grpc_echo_server(grpc_server):
    return grpc_server(EchoServicer())


@pytest.fixture
def run_chat_client():
    """run_chat_client(*args, stdin="") runs our chat_client to completion and
    returns (exit code, stdout, stderr); killed if it outlives `timeout`."""
    procs = []

    def run(*args, stdin="", timeout=RPC_TIMEOUT):
        proc = subprocess.Popen([CLIENT_BIN, *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"chat_client {args} still running after {timeout}s; "
                                 f"stdout {out!r}, stderr {err!r}")
        return proc.returncode, out, err

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
