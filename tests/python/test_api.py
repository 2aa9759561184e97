"""pychat's 1.0 surface: StatusCode printing, CallMetadata as a Mapping, the
Handler base classes, OSError for a server that cannot bind, and no receive
buffer for a stream that never receives. Real servers on 127.0.0.1 port 0,
real clients; waits have deadlines."""
from __future__ import annotations

import asyncio
import collections.abc
import ctypes
import gc
import inspect
import queue
import threading
from typing import Any, Awaitable, List, Tuple, TypeVar

import grpc
import pytest

import pychat
import pychat.aio as aio
from conftest import WAIT, target

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


# ----------------------------------------------------------------------------
# StatusCode


def test_status_code_prints_like_grpc() -> None:
    assert len(pychat.StatusCode) == len(grpc.StatusCode) == 17
    for code in pychat.StatusCode:
        theirs = grpc.StatusCode[code.name]
        assert theirs.value[0] == code.value  # same wire number
        assert str(code) == str(theirs) == f"StatusCode.{code.name}"
        assert format(code) == f"{code}" == "%s" % code == str(theirs)
        assert f"{code:>40}" == f"{str(theirs):>40}"
        assert repr(code) == f"<StatusCode.{code.name}: {code.value}>"
    # Still an IntEnum: equal to its wire number, int() is that number.
    assert pychat.StatusCode.PERMISSION_DENIED == 7 and int(pychat.StatusCode.NOT_FOUND) == 5
    assert pychat.StatusCode(14) is pychat.StatusCode.UNAVAILABLE
    assert str(pychat.NotFound("x")) == "NOT_FOUND: x"


def test_status_code_names_are_the_librarys() -> None:
    # One table: the library's chat_code_name() names each gRPC code.
    for number in range(0, 17):
        assert pychat.StatusCode(number).name == pychat._pychat._code_name(number)
    # Library codes (17..29) are local outcomes, never a StatusCode.
    for number in range(17, 30):
        assert pychat._pychat._code_name(number) != "UNRECOGNIZED"
        with pytest.raises(ValueError):
            pychat.StatusCode(number)
    assert pychat._pychat._code_name(27) == "CANNOT_LISTEN"
    assert pychat._pychat._code_name(30) == "UNRECOGNIZED"


# ----------------------------------------------------------------------------
# CallMetadata

SENT = [("x-tag", "a"), ("x-user", "sam"), ("x-tag", "b"), ("x-blob-bin", b"\x00\xff")]


def check_metadata(md: Any) -> None:
    assert isinstance(md, collections.abc.Mapping) and isinstance(md, pychat.CallMetadata)
    assert md["x-tag"] == "a" and md["X-Tag"] == "a"  # the first value; case-insensitive
    assert md.get_all("x-tag") == ["a", "b"] and md.get_all("absent") == []
    assert md["x-blob-bin"] == b"\x00\xff" and md.get("absent") is None
    assert ("x-tag", "a") in md.all_items() and ("x-tag", "b") in md.all_items()
    keys = list(md)
    assert keys == sorted(keys) and len(md) == len(keys) == len(set(keys))
    assert {"x-tag", "x-user", "x-blob-bin"} <= set(md.keys())
    assert dict(md)["x-user"] == "sam" and md == dict(md.items())
    assert "x-user" in md and "absent" not in md and 3 not in md
    with pytest.raises(KeyError):
        md["absent"]
    with pytest.raises(TypeError):
        md["x-user"] = "eve"
    with pytest.raises(TypeError):
        del md["x-user"]


def test_call_metadata_is_a_mapping() -> None:
    seen: "queue.Queue[Tuple[Any, bool, BaseException | None]]" = queue.Queue()

    class Handler(pychat.Handler):
        def on_open(self, call: pychat.Call) -> None:
            md = call.metadata
            try:  # checked here, on the dispatcher thread, while the call is open
                check_metadata(md)
                error = None
            except BaseException as e:  # reported to the test thread
                error = e
            seen.put((md, call.metadata is md, error))

    with pychat.Server("127.0.0.1:0", handler=Handler()) as server, \
            pychat.Client(target(server)) as client, client.chat(metadata=SENT) as stream:
        md, same, error = seen.get(timeout=WAIT)
        if error is not None:
            raise error
        assert same  # one snapshot per call
        stream.cancel()
    check_metadata(md)  # still readable after the call ended


def test_aio_call_metadata_is_a_mapping() -> None:
    async def main() -> None:
        got: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()

        class Handler(aio.Handler):
            async def on_open(self, call: aio.Call) -> None:
                got.set_result(call.metadata)

        async with aio.Server(handler=Handler()) as server, \
                aio.Client(target(server)) as client:
            async with client.chat(metadata=SENT):
                check_metadata(await asyncio.wait_for(got, WAIT))
    run(main())


def test_call_metadata_from_pairs() -> None:
    md = pychat.CallMetadata([("X-A", "1"), ("x-a", "2")])
    assert md["x-a"] == "1" and md.get_all("X-A") == ["1", "2"] and len(md) == 1
    assert repr(md) == "CallMetadata([('x-a', '1'), ('x-a', '2')])"
    # Only ASCII letters fold: KELVIN SIGN is not "k".
    assert "\u212a" not in pychat.CallMetadata([("k", "v")])


# ----------------------------------------------------------------------------
# Handler base classes

PROTOCOL = {
    "on_open": ["self", "call"],
    "on_message": ["self", "call", "name", "message"],
    "on_complete": ["self", "call"],
    "on_close": ["self", "call", "code", "details"],
}


@pytest.mark.parametrize("base", [pychat.Handler, aio.Handler])
def test_handler_matches_the_protocol(base: type) -> None:
    methods = {name: list(inspect.signature(getattr(base, name)).parameters)
               for name in vars(base) if name.startswith("on_")}
    assert methods == PROTOCOL
    for name in PROTOCOL:
        assert "thread" in (inspect.getdoc(base) or "")
        assert inspect.getdoc(getattr(base, name))
        assert inspect.iscoroutinefunction(getattr(base, name)) == (base is aio.Handler)


def test_aio_defaults_are_skipped_like_missing_methods() -> None:
    # A default not overridden costs nothing per event: the server treats it
    # as absent (the sync server does the same in its native handler_method).
    class Only(aio.Handler):
        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            pass

    for name in PROTOCOL:
        assert aio._method(aio.Handler(), name) is None
        assert (aio._method(Only(), name) is None) == (name != "on_message")


def test_handler_subclass_serves_with_the_defaults() -> None:
    main_thread = threading.get_ident()
    closes: "queue.Queue[Tuple[pychat.StatusCode, int]]" = queue.Queue()

    class Echo(pychat.Handler):
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            call.send(f"{name}: {message} ({threading.get_ident() != main_thread})")

        def on_close(self, call: pychat.Call, code: pychat.StatusCode, details: str) -> None:
            closes.put((code, threading.get_ident()))

    with pychat.Server("127.0.0.1:0", handler=Echo()) as server, \
            pychat.Client(target(server)) as client:
        with client.chat() as stream:
            stream.send("Sam", "Hi")
            stream.complete()
            # The default on_complete completed the call: the stream ends OK.
            assert list(stream) == ["Sam: Hi (True)"]
            assert stream.code is pychat.StatusCode.OK
        code, thread = closes.get(timeout=WAIT)
        assert code is pychat.StatusCode.OK and thread != main_thread


def test_handler_base_alone_ignores_messages_and_completes() -> None:
    with pychat.Server("127.0.0.1:0", handler=pychat.Handler()) as server, \
            pychat.Client(target(server)) as client, client.chat() as stream:
        stream.send("Sam", "Hi")
        stream.complete()
        assert stream.recv(WAIT) is None and stream.code is pychat.StatusCode.OK


def test_handler_super_on_complete_completes() -> None:
    completes: List[int] = []

    class Counting(pychat.Handler):
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            call.send(message)

        def on_complete(self, call: pychat.Call) -> None:
            completes.append(call.id)
            call.send("bye")
            super().on_complete(call)

    with pychat.Server("127.0.0.1:0", handler=Counting()) as server, \
            pychat.Client(target(server)) as client, client.chat() as stream:
        stream.send("Sam", "Hi")
        stream.complete()
        assert list(stream) == ["Hi", "bye"] and stream.code is pychat.StatusCode.OK
    assert completes == [1]


def test_aio_handler_subclass() -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        closed: "asyncio.Future[Tuple[pychat.StatusCode, bool]]" = \
            asyncio.get_running_loop().create_future()

        class Echo(aio.Handler):
            async def on_message(self, call: aio.Call, name: str, message: str) -> None:
                await call.send(f"{name}: {message}")

            async def on_close(self, call: aio.Call, code: pychat.StatusCode,
                               details: str) -> None:
                closed.set_result((code, threading.get_ident() == loop_thread))

        async with aio.Server(handler=Echo()) as server, aio.Client(target(server)) as client:
            async with client.chat() as stream:
                await stream.send("Sam", "Hi")
                stream.complete()
                assert [r async for r in stream] == ["Sam: Hi"]
                assert stream.code is pychat.StatusCode.OK
            assert await asyncio.wait_for(closed, WAIT) == (pychat.StatusCode.OK, True)
        # The bare base class: messages ignored, the call completed OK.
        async with aio.Server(handler=aio.Handler()) as server, \
                aio.Client(target(server)) as client, client.chat() as stream:
            await stream.send("Sam", "Hi")
            stream.complete()
            assert await stream.recv(WAIT) is None and stream.code is pychat.StatusCode.OK
    run(main())


# ----------------------------------------------------------------------------
# A server that cannot bind


def test_aio_address_in_use_raises_oserror() -> None:
    async def main() -> None:
        async with aio.Server() as first:
            for handler in (None, aio.Handler()):  # libchat's echo, then the event queue
                with pytest.raises(OSError, match="Address already in use") as info:
                    aio.Server(target(first), handler=handler)
                assert not isinstance(info.value, pychat.ChatError)
                assert type(info.value) is OSError
            # The failed server gave its reader back: another one starts.
            async with aio.Server(handler=aio.Handler()) as second:
                assert second.port != first.port
    run(main())


def test_sync_address_in_use_oserror_with_handler() -> None:
    with pychat.Server("127.0.0.1:0") as first:
        with pytest.raises(OSError, match="Address already in use") as info:
            pychat.Server(target(first), handler=pychat.Handler())
        assert type(info.value) is OSError


# ----------------------------------------------------------------------------
# No receive buffer for a stream until it receives

STREAMS = 2000
CLIENTS = 8  # below each connection's concurrent stream bound


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _heap_bytes() -> int:
    """Bytes malloc has handed out and not got back, over all arenas (glibc):
    C++ allocations included, which tracemalloc does not see."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    gc.collect()
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _sync_cost(port: int) -> float:
    """Heap bytes per open sync stream that has sent one message."""
    clients = [pychat.Client(f"127.0.0.1:{port}") for _ in range(CLIENTS)]
    try:
        for c in clients:  # connected, and one-time allocations done
            with c.chat() as s:
                s.send("warm", "up")
                assert s.recv(WAIT) == "warm: up"
        before = _heap_bytes()
        streams = [clients[i % CLIENTS].chat() for i in range(STREAMS)]
        for s in streams:
            s.send("Sam", "Hi")
        cost = (_heap_bytes() - before) / STREAMS
        for s in streams:
            s.close()
        return cost
    finally:
        for c in clients:
            c.close()


async def _aio_cost(port: int) -> float:
    """The same for pychat.aio streams, which never had a receive batch."""
    clients = [aio.Client(f"127.0.0.1:{port}") for _ in range(CLIENTS)]
    try:
        for c in clients:
            async with c.chat() as s:
                await s.send("warm", "up")
                assert await s.recv(WAIT) == "warm: up"
        before = _heap_bytes()
        streams = [clients[i % CLIENTS].chat() for i in range(STREAMS)]
        for s in streams:
            await s.send("Sam", "Hi")
        cost = (_heap_bytes() - before) / STREAMS
        for s in streams:
            s.close()
        return cost
    finally:
        for c in clients:
            await c.close()


def test_no_receive_buffer_until_a_stream_receives(echo_server: pychat.Server) -> None:
    held = pychat._pychat._recv_buffers
    base = held()
    clients = [pychat.Client(target(echo_server)) for _ in range(CLIENTS)]
    try:
        streams = [clients[i % CLIENTS].chat() for i in range(STREAMS)]
        for s in streams:
            s.send("Sam", "Hi")
        assert held() == base  # open and sending: no batch yet
        assert streams[0].recv(WAIT) == "Sam: Hi"
        assert streams[1].recv(WAIT) == "Sam: Hi"
        assert held() == base + 2  # one per stream that received
        streams[0].close()
        assert held() == base + 1  # freed with the stream
        for s in streams:
            s.close()
        assert held() == base
    finally:
        for c in clients:
            c.close()


def test_idle_streams_cost_no_receive_buffer_in_the_heap(echo_server: pychat.Server) -> None:
    # The counter above cannot see a buffer that comes back as a member of
    # the stream; the heap can. A sync stream costs what an aio stream costs
    # (the library's share is the same), within noise, where a 4 KiB batch
    # per stream (kBatch chat_texts) would add 4096 bytes.
    sync = _sync_cost(echo_server.port)
    asynchronous = run(_aio_cost(echo_server.port))
    assert sync - asynchronous < 2048, (sync, asynchronous)
