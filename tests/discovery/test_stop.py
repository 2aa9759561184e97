"""A stop while health and reflection calls are open, again and again: gRPC's
shutdown cancels them, and their completions start operations of their own
(a reflection stream's failed read starts its Finish). The server must let
them end before it shuts its completion queues down: an operation started
on a queue already shut down aborts the process (gRPC's "grpc_cq_begin_op"
assertion), which took down the whole pytest run when the grpc-go peer's
reflection stream, left open as it exits, was still being cancelled when
the fixture stopped the server."""
import queue
import signal

import grpc

import health_pb2
import pychat
import reflection_pb2
import reflection_pb2_grpc
from chat_testing import ServerProcess
from conftest import RPC_TIMEOUT, SERVER_BIN

ROUNDS = 10
STREAMS = 3
ENDED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class ReflectionStream:
    """A reflection stream answered once and left open, as grpc-go's client
    leaves it: the server holds a read for it until a stop ends it."""

    def __init__(self, ch):
        self._requests = queue.Queue()
        self.call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter(self._requests.get, None), timeout=RPC_TIMEOUT)
        self._requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))
        assert next(self.call).list_services_response.service

    def finish(self):
        """The stream's end, once the server is gone: its code."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as e:
            return e.code()
        finally:
            self._requests.put(None)  # the request thread ends
        return self.call.code()


def open_calls(ch, watch):
    streams = [ReflectionStream(ch) for _ in range(STREAMS)]
    w = watch(ch, "")
    assert w.next() == health_pb2.HealthCheckResponse.SERVING
    return streams, w


def test_pychat_stops_with_reflection_streams_and_watches_open(grpc_channel, watch):
    for _ in range(ROUNDS):
        server = pychat.Server("127.0.0.1:0", health=True, reflection=True)
        streams, w = open_calls(grpc_channel(f"127.0.0.1:{server.port}"), watch)
        assert server.stop(grace=0) == 0  # aborted here, before the fix
        for s in streams:
            assert s.finish() in ENDED
        assert w.done.wait(RPC_TIMEOUT)
        assert w.code in ENDED


def test_chat_server_stops_with_reflection_streams_and_watches_open(grpc_channel, watch):
    for _ in range(ROUNDS // 2):
        proc = ServerProcess([SERVER_BIN, "--address", "127.0.0.1:0", "--health", "--reflection"])
        try:
            streams, _ = open_calls(grpc_channel(proc.target), watch)
            proc.stop(signal.SIGINT)  # exits 0, not SIGABRT's -6
            for s in streams:
                assert s.finish() in ENDED
        finally:
            proc.kill()
