"""Deadlines from Python: Call.time_left, and Ballerina's `deadline`
header from a grpcio client (no grpc-timeout) ending the call with
DEADLINE_EXCEEDED at its time."""
from __future__ import annotations

import asyncio
import datetime
import queue
import time
from typing import Any, Optional

import grpc
import pytest

import chat_pb2
import chat_pb2_grpc
import pychat
import pychat.aio
from chat_testing import WAIT


def rfc3339_in(seconds: float) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class TimeLeft(pychat.Handler):
    def __init__(self) -> None:
        self.closed: "queue.Queue[Any]" = queue.Queue()

    def on_message(self, call: pychat.Call, name: str, message: str) -> None:
        call.send(repr(call.time_left))

    def on_close(self, call: pychat.Call, code: pychat.StatusCode, details: str) -> None:
        self.closed.put(code)


def test_time_left_follows_grpc_timeout_and_the_header() -> None:
    handler = TimeLeft()
    with pychat.Server("127.0.0.1:0", handler=handler) as server, \
            pychat.Client(f"127.0.0.1:{server.port}") as client:
        with client.chat() as stream:
            stream.send("a", "b")
            assert stream.recv(timeout=WAIT) == "None"
        with client.chat(timeout=30.0) as stream:
            stream.send("a", "b")
            assert 25.0 < float(stream.recv(timeout=WAIT)) <= 31.0  # grpc-timeout rounds up
        start = time.monotonic()
        with client.chat(metadata={"deadline": rfc3339_in(0.8)}) as stream:
            stream.send("a", "b")
            assert 0.0 < float(stream.recv(timeout=WAIT)) <= 0.8
            with pytest.raises(pychat.DeadlineExceeded):
                stream.recv(timeout=WAIT)
        assert 0.7 <= time.monotonic() - start < 5.0
    codes = [handler.closed.get(timeout=WAIT) for _ in range(3)]
    assert codes[2] == pychat.StatusCode.DEADLINE_EXCEEDED


def test_grpcio_client_with_the_deadline_header() -> None:
    with pychat.Server("127.0.0.1:0") as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        requests: "queue.Queue[Optional[Any]]" = queue.Queue()

        def request_iter() -> Any:
            while (r := requests.get()) is not None:
                yield r

        start = time.monotonic()
        # No timeout= : grpcio sends no grpc-timeout, only the header.
        call = chat_pb2_grpc.ChatStub(channel).chat(
            request_iter(), metadata=(("deadline", rfc3339_in(0.8)),))
        requests.put(chat_pb2.ChatMessage(name="Ann", message="Hi"))
        assert next(call).value == "Ann: Hi"
        with pytest.raises(grpc.RpcError) as e:
            next(call)
        requests.put(None)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.7 <= time.monotonic() - start < 5.0


def test_aio_call_time_left() -> None:
    class Handler(pychat.aio.Handler):
        async def on_message(self, call: pychat.aio.Call, name: str, message: str) -> None:
            await call.send(repr(call.time_left))

    async def main() -> None:
        async with pychat.aio.Server("127.0.0.1:0", Handler()) as server:
            async with pychat.aio.Client(f"127.0.0.1:{server.port}") as client:
                stream = client.chat(timeout=30.0)
                await stream.send("a", "b")
                assert 25.0 < float(await stream.recv(timeout=WAIT) or "0") <= 31.0
                stream.close()
    asyncio.run(main())
