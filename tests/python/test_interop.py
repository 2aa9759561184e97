"""pychat against independent peers in the same process: grpcio (with
stubs generated from the same chat.proto) on either side."""
from __future__ import annotations

import queue
from concurrent import futures
from typing import Any, Iterator, List, Tuple

import grpc
import pytest
from google.protobuf import wrappers_pb2

import chat_pb2
import chat_pb2_grpc
import pychat
from conftest import WAIT, target

SEED = [("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello")]
SEED_REPLIES = ["Sam: Hi", "Ann: Hey", "John: Hello"]


def messages(pairs: List[Tuple[str, str]]) -> Iterator[chat_pb2.ChatMessage]:
    for name, message in pairs:
        yield chat_pb2.ChatMessage(name=name, message=message)


# grpcio channels are closed before the server stops: an open one makes the
# stop wait for its whole grace period even with no call left (see README).


def test_grpcio_client_against_pychat_echo() -> None:
    with pychat.Server("127.0.0.1:0") as server, grpc.insecure_channel(target(server)) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        replies = stub.chat(messages(SEED), timeout=WAIT)
        assert [r.value for r in replies] == SEED_REPLIES


def test_grpcio_client_against_pychat_handler() -> None:
    seen: "queue.Queue[Any]" = queue.Queue()

    class Gate:
        def on_open(self, call: pychat.Call) -> None:
            seen.put(call.metadata.get("x-user"))

        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            if name != "Sam":
                call.fail(pychat.StatusCode.PERMISSION_DENIED, f"{name} is not welcome")
            else:
                call.send(f"welcome {name}: {message}")

    with pychat.Server("127.0.0.1:0", handler=Gate()) as server, \
            grpc.insecure_channel(target(server)) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        replies = stub.chat(messages([("Sam", "Hi")]), timeout=WAIT,
                            metadata=(("x-user", "sam"),))
        assert [r.value for r in replies] == ["welcome Sam: Hi"]
        assert seen.get(timeout=WAIT) == "sam"
        with pytest.raises(grpc.RpcError) as info:
            list(stub.chat(messages([("Eve", "Hi")]), timeout=WAIT))
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == "Eve is not welcome"


class GrpcioEcho(chat_pb2_grpc.ChatServicer):
    """The seed's echo server, written with grpcio; "abort" fails the call."""

    def __init__(self) -> None:
        self.metadata: "queue.Queue[Any]" = queue.Queue()

    def chat(self, request_iterator: Any, context: Any) -> Iterator[wrappers_pb2.StringValue]:
        self.metadata.put(dict(context.invocation_metadata()))
        for m in request_iterator:
            if m.message == "abort":
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "no more")
            yield wrappers_pb2.StringValue(value=f"{m.name}: {m.message}")


@pytest.fixture
def grpcio_server() -> Iterator[Tuple[str, GrpcioEcho]]:
    servicer = GrpcioEcho()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    chat_pb2_grpc.add_ChatServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None).wait(WAIT)


def test_pychat_client_against_grpcio_server(grpcio_server: Tuple[str, GrpcioEcho]) -> None:
    address, servicer = grpcio_server
    with pychat.Client(address) as client:
        with client.chat(metadata={"x-user": "sam", "x-blob-bin": b"\x00a\x00\xff"}) as stream:
            stream.send_many(SEED)
            stream.complete()
            assert list(stream) == SEED_REPLIES
            assert stream.code is pychat.StatusCode.OK
        seen = servicer.metadata.get(timeout=WAIT)
        assert seen["x-user"] == "sam"
        assert seen["x-blob-bin"] == b"\x00a\x00\xff"  # NULs and all
        with client.chat() as stream:
            stream.send("Sam", "Hi")
            stream.send("Sam", "abort")
            assert stream.recv(WAIT) == "Sam: Hi"
            with pytest.raises(pychat.ResourceExhausted) as info:
                stream.recv(WAIT)
            assert info.value.details == "no more"


def test_pychat_client_and_server_next_to_grpcio(grpcio_server: Tuple[str, GrpcioEcho]) -> None:
    """All four combinations at once, 1,000 messages each way."""
    address, _ = grpcio_server
    pairs = [("n", str(i)) for i in range(1000)]
    wanted = [f"n: {i}" for i in range(1000)]
    with pychat.Server("127.0.0.1:0") as server, grpc.insecure_channel(target(server)) as channel, \
            pychat.Client(address) as to_grpcio, pychat.Client(target(server)) as to_pychat:
        stub = chat_pb2_grpc.ChatStub(channel)
        grpcio_replies = stub.chat(messages(pairs), timeout=WAIT)
        streams = [to_grpcio.chat(), to_pychat.chat()]
        for stream in streams:
            stream.send_many(pairs)
            stream.complete()
        assert [r.value for r in grpcio_replies] == wanted
        for stream in streams:
            assert list(stream) == wanted
            stream.close()
