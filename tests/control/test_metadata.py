"""Server metadata over the wire: a pychat handler sets initial and
trailing metadata that pychat and grpcio clients read; pychat reads a
grpcio server's."""
from __future__ import annotations

import asyncio
import queue
from typing import Any, Iterator, List

import grpc
import pytest
from google.protobuf import wrappers_pb2

import chat_pb2
import chat_pb2_grpc
import pychat
import pychat.aio
from chat_testing import WAIT


class Tagging(pychat.Handler):
    """Echoes, with initial metadata set in on_open and trailing metadata
    in on_complete. `errors` gets what the too-late additions raised."""

    def __init__(self) -> None:
        self.errors: "queue.Queue[BaseException]" = queue.Queue()

    def on_open(self, call: pychat.Call) -> None:
        call.add_initial_metadata("x-room", "lobby")
        call.add_initial_metadata("x-token-bin", b"\x00\xff")

    def on_message(self, call: pychat.Call, name: str, message: str) -> None:
        call.send(f"{name}: {message}")
        try:
            call.add_initial_metadata("x-late", "no")
        except BaseException as e:  # noqa: BLE001 - checked by the test
            self.errors.put(e)

    def on_complete(self, call: pychat.Call) -> None:
        call.add_trailing_metadata("x-messages", "counted")
        call.complete()
        try:
            call.add_trailing_metadata("x-late", "no")
        except BaseException as e:  # noqa: BLE001
            self.errors.put(e)


def test_pychat_client_reads_a_pychat_handlers_metadata() -> None:
    handler = Tagging()
    with pychat.Server("127.0.0.1:0", handler=handler) as server, \
            pychat.Client(f"127.0.0.1:{server.port}") as client, \
            client.chat(timeout=WAIT) as stream:
        assert stream.initial_metadata is None and stream.trailing_metadata is None
        stream.send("Sam", "Hi")
        assert stream.recv(timeout=WAIT) == "Sam: Hi"
        initial = stream.initial_metadata
        assert isinstance(initial, pychat.CallMetadata)
        assert initial.all_items() == [("x-room", "lobby"), ("x-token-bin", b"\x00\xff")]
        assert stream.trailing_metadata is None
        stream.complete()
        assert stream.recv(timeout=WAIT) is None
        assert stream.trailing_metadata is not None
        assert stream.trailing_metadata["x-messages"] == "counted"
        assert "x-late" not in stream.trailing_metadata
    late_initial = handler.errors.get(timeout=WAIT)
    assert isinstance(late_initial, RuntimeError) and "before the first send" in str(late_initial)
    late_trailing = handler.errors.get(timeout=WAIT)
    assert isinstance(late_trailing, RuntimeError) and "completed" in str(late_trailing)


def test_bad_metadata_is_refused_in_the_handler() -> None:
    results: "queue.Queue[Any]" = queue.Queue()

    class Bad(pychat.Handler):
        def on_open(self, call: pychat.Call) -> None:
            for key, value in (("Upper", "v"), ("grpc-x", "v"), ("x-ok", "tab\there")):
                try:
                    call.add_initial_metadata(key, value)
                    results.put(None)
                except ValueError as e:
                    results.put(e)

        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            pass

    with pychat.Server("127.0.0.1:0", handler=Bad()) as server, \
            pychat.Client(f"127.0.0.1:{server.port}") as client, \
            client.chat(timeout=WAIT) as stream:
        stream.complete()
        assert stream.recv(timeout=WAIT) is None
        errors = [results.get(timeout=WAIT) for _ in range(3)]
        assert all(isinstance(e, ValueError) for e in errors), errors
        assert "invalid metadata key 'Upper'" in str(errors[0])
        assert "printable ASCII" in str(errors[2])


def test_grpcio_client_reads_libchat_servers_metadata() -> None:
    with pychat.Server("127.0.0.1:0", handler=Tagging()) as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = chat_pb2_grpc.ChatStub(channel).chat(
            iter([chat_pb2.ChatMessage(name="Ann", message="Hey")]), timeout=WAIT)
        assert [r.value for r in call] == ["Ann: Hey"]
        assert dict(call.initial_metadata()) == {"x-room": "lobby", "x-token-bin": b"\x00\xff"}
        assert dict(call.trailing_metadata())["x-messages"] == "counted"
        assert call.code() == grpc.StatusCode.OK


class MetadataServicer(chat_pb2_grpc.ChatServicer):
    def chat(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        context.send_initial_metadata((("x-from", "grpcio"), ("x-n-bin", b"\x01")))
        n = 0
        for m in request_iterator:
            n += 1
            yield wrappers_pb2.StringValue(value=f"{m.name}: {m.message}")
        context.set_trailing_metadata((("x-count", str(n)),))


def test_pychat_client_reads_a_grpcio_servers_metadata(grpcio_server: Any) -> None:
    _, target = grpcio_server(MetadataServicer())
    with pychat.Client(target) as client, client.chat(timeout=WAIT) as stream:
        stream.send("a", "1")
        stream.send("b", "2")
        stream.complete()
        assert list(stream) == ["a: 1", "b: 2"]
        assert stream.initial_metadata == {"x-from": "grpcio", "x-n-bin": b"\x01"}
        assert stream.trailing_metadata is not None
        assert stream.trailing_metadata["x-count"] == "2"


def test_aio_server_and_client_metadata() -> None:
    class Handler(pychat.aio.Handler):
        async def on_open(self, call: pychat.aio.Call) -> None:
            call.add_initial_metadata("x-aio", "yes")

        async def on_message(self, call: pychat.aio.Call, name: str, message: str) -> None:
            await call.send(f"{name}: {message}")

        async def on_complete(self, call: pychat.aio.Call) -> None:
            call.add_trailing_metadata("x-bye", "now")
            call.complete()

    async def main() -> None:
        async with pychat.aio.Server("127.0.0.1:0", Handler()) as server:
            async with pychat.aio.Client(f"127.0.0.1:{server.port}") as client:
                stream = client.chat(timeout=WAIT)
                assert stream.initial_metadata is None
                await stream.send("Zed", "yo")
                assert await stream.recv(timeout=WAIT) == "Zed: yo"
                assert stream.initial_metadata == {"x-aio": "yes"}
                stream.complete()
                assert await stream.recv(timeout=WAIT) is None
                assert stream.trailing_metadata == {"x-bye": "now"}
                stream.close()
                assert stream.initial_metadata == {"x-aio": "yes"}  # kept
                open_one = client.chat(timeout=WAIT)
                open_one.close()
                with pytest.raises(pychat.ClosedError):
                    open_one.initial_metadata
    asyncio.run(main())
