"""pychat.aio: the asyncio API on libchat's event queue, over real sockets.

No pytest plugin: each test runs its coroutine with asyncio.run under a
deadline (asyncio.wait_for), so a hang fails the test instead of stalling
the suite. Waits are on events and futures, each with a deadline.
"""
from __future__ import annotations

import asyncio
import collections
import gc
import logging
import os
import random
import resource
import threading
import time
import weakref
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, TypeVar

import grpc
import pytest

import chat_pb2
import chat_pb2_grpc
import pychat
import pychat.aio as aio
from conftest import WAIT

SEED = [("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello")]
SEED_REPLIES = ["Sam: Hi", "Ann: Hey", "John: Hello"]
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    """Yields to the loop until `predicate` holds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.002)


def target(server: Any) -> str:
    return f"127.0.0.1:{server.port}"


class Echo:
    """The seed's behaviour as an async handler; keeps what it saw."""

    def __init__(self) -> None:
        self.closes: List[Tuple[int, pychat.StatusCode, str]] = []
        self.closed = asyncio.Event()

    async def on_message(self, call: aio.Call, name: str, message: str) -> None:
        await call.send(f"{name}: {message}")

    async def on_close(self, call: aio.Call, code: pychat.StatusCode, details: str) -> None:
        self.closes.append((call.id, code, details))
        self.closed.set()


async def seed(stream: aio.Stream) -> List[str]:
    for name, message in SEED:
        await stream.send(name, message)
    stream.complete()
    return [reply async for reply in stream]


# ----------------------------------------------------------------------------
# The seed, against every peer


def test_seed_against_the_sync_echo_server() -> None:
    async def main() -> None:
        with pychat.Server("127.0.0.1:0") as server:
            async with aio.Client(target(server)) as client:
                async with client.chat() as stream:
                    assert await seed(stream) == SEED_REPLIES
                    assert stream.code is pychat.StatusCode.OK
                    assert stream.details == ""
    run(main())


def test_seed_aio_client_and_aio_server() -> None:
    async def main() -> None:
        handler = Echo()
        async with aio.Server(handler=handler) as server, aio.Client(target(server)) as client:
            async with client.chat() as stream:
                assert await seed(stream) == SEED_REPLIES
            await asyncio.wait_for(handler.closed.wait(), WAIT)
            assert handler.closes == [(1, pychat.StatusCode.OK, "")]
    run(main())


def test_seed_aio_built_in_echo_server() -> None:
    async def main() -> None:
        async with aio.Server() as server, aio.Client(target(server)) as client:
            assert server.mode == "echo"
            async with client.chat() as stream:
                assert await seed(stream) == SEED_REPLIES
    run(main())


def grpcio_messages(pairs: List[Tuple[str, str]]) -> List[chat_pb2.ChatMessage]:
    return [chat_pb2.ChatMessage(name=n, message=m) for n, m in pairs]


def test_aio_server_against_grpcio_clients() -> None:
    """grpc.aio on the same loop (so the loop is never blocked) and the
    synchronous grpcio stub on an executor thread, at once."""
    async def main() -> None:
        handler = Echo()
        async with aio.Server(handler=handler) as server:
            def sync_client() -> List[str]:
                with grpc.insecure_channel(target(server)) as channel:
                    stub = chat_pb2_grpc.ChatStub(channel)
                    return [r.value for r in stub.chat(iter(grpcio_messages(SEED)), timeout=WAIT)]

            async def aio_client() -> List[str]:
                async with grpc.aio.insecure_channel(target(server)) as channel:
                    stub = chat_pb2_grpc.ChatStub(channel)
                    call = stub.chat(iter(grpcio_messages(SEED)), timeout=WAIT)
                    replies = [r.value async for r in call]
                    assert await call.code() == grpc.StatusCode.OK
                    return replies

            loop = asyncio.get_running_loop()
            got = await asyncio.gather(loop.run_in_executor(None, sync_client), aio_client())
            assert got == [SEED_REPLIES, SEED_REPLIES]
            await until(lambda: len(handler.closes) == 2, what="both on_close")
    run(main())


def test_grpcio_sees_the_handlers_errors_and_metadata() -> None:
    seen: List[Any] = []

    class Gate:
        def on_open(self, call: aio.Call) -> None:  # plain functions work too
            seen.append(call.metadata.get("x-user"))

        def on_message(self, call: aio.Call, name: str, message: str) -> Optional[Awaitable[None]]:
            if name != "Sam":
                raise pychat.PermissionDenied(f"{name} is not welcome")
            return call.send(f"welcome {name}: {message}")  # awaited for it

    async def main() -> None:
        async with aio.Server(handler=Gate()) as server, \
                grpc.aio.insecure_channel(target(server)) as channel:
            stub = chat_pb2_grpc.ChatStub(channel)
            call = stub.chat(iter(grpcio_messages([("Sam", "Hi")])), timeout=WAIT,
                             metadata=(("x-user", "sam"),))
            assert [r.value async for r in call] == ["welcome Sam: Hi"]
            assert seen == ["sam"]
            call = stub.chat(iter(grpcio_messages([("Eve", "Hi")])), timeout=WAIT)
            with pytest.raises(grpc.RpcError) as info:
                [r async for r in call]
            assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert info.value.details() == "Eve is not welcome"
    run(main())


# ----------------------------------------------------------------------------
# Handlers: order per call, concurrency across calls, errors


@pytest.mark.parametrize("round_", range(5))
def test_order_per_call_under_a_slow_async_handler(round_: int) -> None:
    """40 calls x 25 messages, each on_message sleeping a random moment:
    every call sees open, its messages in order, complete, close, one method
    at a time; different calls run at once."""
    calls, per_call = 40, 25
    rng = random.Random(round_)

    class Slow:
        def __init__(self) -> None:
            self.log: Dict[int, List[Any]] = {}
            self.busy: Dict[int, bool] = {}
            self.running = 0
            self.most_running = 0
            self.overlaps = 0

        async def step(self, call: aio.Call, event: Any) -> None:
            if self.busy.get(call.id):
                self.overlaps += 1
            self.busy[call.id] = True
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.log.setdefault(call.id, []).append(event)
            await asyncio.sleep(rng.random() * 0.002)
            self.running -= 1
            self.busy[call.id] = False

        async def on_open(self, call: aio.Call) -> None:
            await self.step(call, "open")

        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            await self.step(call, int(message))
            await call.send(f"{name}: {message}")

        async def on_complete(self, call: aio.Call) -> None:
            await self.step(call, "complete")
            call.complete()

        async def on_close(self, call: aio.Call, code: pychat.StatusCode, details: str) -> None:
            await self.step(call, ("close", code))

    async def main() -> None:
        handler = Slow()
        async with aio.Server(handler=handler) as server, aio.Client(target(server)) as client:
            async def one(stream: aio.Stream) -> List[str]:
                for i in range(per_call):
                    await stream.send("n", str(i))
                stream.complete()
                return [r async for r in stream]

            streams = [client.chat() for _ in range(calls)]
            results = await asyncio.gather(*(one(s) for s in streams))
            assert all(r == [f"n: {i}" for i in range(per_call)] for r in results)
            await until(lambda: len(handler.log) == calls and
                        all(log[-1] == ("close", pychat.StatusCode.OK) for log in handler.log.values()),
                        what="every on_close")
        want = ["open", *range(per_call), "complete", ("close", pychat.StatusCode.OK)]
        assert all(log == want for log in handler.log.values())
        assert handler.overlaps == 0
        assert handler.most_running > 1, "calls did not run concurrently"
    run(main())


def test_handler_exceptions_fail_the_call_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Buggy:
        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            if message == "boom":
                raise KeyError(message)
            if message == "deny":
                raise pychat.ResourceExhausted("no more")
            await call.send(message)

    async def main() -> None:
        async with aio.Server(handler=Buggy()) as server, aio.Client(target(server)) as client:
            async with client.chat() as stream:
                await stream.send("n", "ok")
                await stream.send("n", "boom")
                assert await stream.recv(WAIT) == "ok"
                with pytest.raises(pychat.Internal) as info:
                    await stream.recv(WAIT)
                assert info.value.details == "on_message raised KeyError"
            async with client.chat() as stream:
                await stream.send("n", "deny")
                with pytest.raises(pychat.ResourceExhausted) as exhausted:
                    await stream.recv(WAIT)
                assert exhausted.value.details == "no more"
            # The server goes on serving.
            async with client.chat() as stream:
                await stream.send("n", "still here")
                assert await stream.recv(WAIT) == "still here"

    with caplog.at_level(logging.ERROR, logger="pychat.aio"):
        run(main())
    errors = [r for r in caplog.records if r.name == "pychat.aio"]
    assert len(errors) == 1, errors
    assert "on_message raised KeyError" in errors[0].getMessage()
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is KeyError


# ----------------------------------------------------------------------------
# Backpressure: sends await room (WRITABLE), nothing is dropped


def test_client_send_awaits_room_and_drops_nothing() -> None:
    """A sync server whose handler is held up stops reading (recv_window 2),
    so flow control and the client's send queue (2 messages) fill: sends
    must wait, the loop must keep running, and once the handler goes on
    every message arrives, in order. (50 MB: more than the socket buffers
    and HTTP/2 windows, which gRPC grows on loopback, can hold.)"""
    count, size = 800, 64 * 1024
    gate = threading.Event()
    got: List[str] = []
    trouble: List[Any] = []
    t0 = time.monotonic()

    class Held:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            opened = gate.wait(WAIT)
            got.append(message[:8])
            try:
                call.send(message[:8])
            except Exception as e:
                trouble.append((message[:8], opened, repr(e), time.monotonic() - t0))

    async def main() -> None:
        with pychat.Server("127.0.0.1:0", handler=Held(), recv_window=2) as server:
            async with aio.Client(target(server), send_queue_limit=2) as client:
                async with client.chat() as stream:
                    sent = 0

                    async def sender() -> None:
                        nonlocal sent
                        for i in range(count):
                            await stream.send("n", f"{i:08d}" + "x" * size)
                            sent += 1
                        stream.complete()

                    task = asyncio.create_task(sender())
                    ticks = await stalled(lambda: sent, task)
                    assert sent < count and ticks > 10
                    gate.set()
                    replies = [r async for r in stream]
                    await task
        assert not trouble, (trouble, len(replies), time.monotonic() - t0)
        assert replies == [f"{i:08d}" for i in range(count)]
        assert got == replies
    try:
        run(main())
    finally:
        gate.set()


async def stalled(progress: Callable[[], int], task: "asyncio.Task[None]",
                  quiet: float = 0.3) -> int:
    """Waits until `progress()` has not moved for `quiet` seconds while the
    loop keeps ticking (returns the ticks); fails if `task` finished first
    (nothing ever had to wait)."""
    ticks = 0
    last, since = -1, time.monotonic()
    deadline = since + WAIT
    while time.monotonic() - since < quiet:
        await asyncio.sleep(0.01)
        ticks += 1
        assert time.monotonic() < deadline, "progress never stalled"
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        assert not task.done(), "every send found room: no backpressure"
    return ticks


def test_server_send_awaits_room_and_drops_nothing() -> None:
    """A sync client that does not read yet (recv_queue_limit 2): the call's
    send queue (2 replies) fills, so call.send waits for WRITABLE while the
    loop runs on; then the client reads everything, in order."""
    count, size = 800, 64 * 1024  # more than sockets and HTTP/2 windows hold
    sent: List[int] = []

    class Flood:
        async def on_open(self, call: aio.Call) -> None:
            for i in range(count):
                await call.send(f"{i:08d}" + "y" * size)
                sent.append(i)
            call.complete()

    async def main() -> None:
        async with aio.Server(handler=Flood(), send_queue_limit=2) as server:
            with pychat.Client(target(server), recv_queue_limit=2) as client, \
                    client.chat() as stream:
                await until(lambda: len(sent) > 0, what="a first reply sent")
                call_task = next(iter(server._calls.values()))._task
                assert call_task is not None
                await stalled(lambda: len(sent), call_task)
                assert len(sent) < count
                loop = asyncio.get_running_loop()
                replies = await loop.run_in_executor(None, lambda: [r[:8] for r in stream])
                assert replies == [f"{i:08d}" for i in range(count)]
                assert stream.code is pychat.StatusCode.OK
    run(main())


def test_a_slow_async_handler_slows_its_client_and_loses_nothing() -> None:
    """The server holds each message against its call's window until its
    on_message has finished. While the handler is held up, what waits for it
    in Python stays at recv_window, libchat stops reading and the client's
    sends wait (HTTP/2 flow control); released, nothing has failed and every
    message arrives, in order."""
    window, count, size = 8, 600, 32 * 1024  # ~19 MiB: more than sockets and windows hold
    gate = asyncio.Event()
    seen: List[int] = []

    class Slow:
        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            await gate.wait()
            await asyncio.sleep(0)  # a coroutine that yields even once the gate is open
            seen.append(int(message[:8]))

        async def on_complete(self, call: aio.Call) -> None:
            await call.send(str(len(seen)))
            call.complete()

    async def main() -> None:
        async with aio.Server(handler=Slow(), recv_window=window) as server, \
                aio.Client(target(server), send_queue_limit=4) as client:
            async with client.chat() as stream:
                sent = 0

                async def sender() -> None:
                    nonlocal sent
                    for i in range(count):
                        await stream.send("n", f"{i:08d}" + "x" * (size - 8))
                        sent += 1
                    stream.complete()

                task = asyncio.create_task(sender())
                await until(lambda: len(server._calls) == 1, what="the call")
                call = next(iter(server._calls.values()))

                def held() -> int:  # messages drained and not yet consumed
                    return sum(e[0] == "on_message" for e in call._inbox) + \
                        (call._task is not None)

                most = [0]
                event = call._event

                def watched(kind: int, a: Any, b: Any) -> None:
                    event(kind, a, b)
                    most[0] = max(most[0], held())
                call._event = watched  # type: ignore[method-assign]

                await until(lambda: held() == window, what="the call's window to fill")
                await stalled(lambda: sent, task)  # fails if every send found room
                assert held() == window, "a message came in past the window"
                assert sent < count
                gate.set()
                await asyncio.wait_for(task, WAIT)
                assert await stream.recv(WAIT) == str(count)
                assert await stream.recv(WAIT) is None
                assert stream.code is pychat.StatusCode.OK
                assert most[0] <= window, f"{most[0]} messages waited in Python"
            assert seen == list(range(count))
    run(main())


def test_replies_nobody_reads_stay_in_libchat_and_slow_the_server() -> None:
    """A stream holds each reply against recv_queue_limit until it is taken:
    a client that does not read has at most that many buffered in Python,
    the server's sends wait; then reading gets every reply, in order."""
    limit, count, size = 16, 600, 32 * 1024
    sent: List[int] = []

    class Flood:
        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            for i in range(count):
                await call.send(f"{i:08d}" + "x" * (size - 8))
                sent.append(i)
            call.complete()

    class Watched(collections.deque):  # type: ignore[type-arg]
        most = 0

        def append(self, x: Any) -> None:
            super().append(x)
            Watched.most = max(Watched.most, len(self))

    async def main() -> None:
        async with aio.Server(handler=Flood(), send_queue_limit=4) as server, \
                aio.Client(target(server), recv_queue_limit=limit) as client:
            async with client.chat() as stream:
                core = stream._core
                core.replies = Watched()
                await stream.send("n", "go")
                stream.complete()
                await until(lambda: any(c._task is not None for c in server._calls.values()),
                            what="the handler to start")
                call_task = next(iter(server._calls.values()))._task
                assert call_task is not None
                await until(lambda: len(core.replies) == limit, what="the stream's bound to fill")
                await stalled(lambda: len(sent), call_task)  # fails if every send found room
                assert len(core.replies) == limit, "a reply came in past recv_queue_limit"
                assert len(sent) < count
                replies = [r[:8] async for r in stream]
                assert replies == [f"{i:08d}" for i in range(count)]
                assert stream.code is pychat.StatusCode.OK
                assert Watched.most <= limit, f"{Watched.most} replies waited in Python"
    run(main())


def test_concurrent_sends_on_one_stream_keep_their_order() -> None:
    async def main() -> None:
        with pychat.Server("127.0.0.1:0") as server:
            async with aio.Client(target(server), send_queue_limit=1) as client:
                async with client.chat() as stream:
                    # Started in this order; most find the queue full.
                    tasks = [asyncio.create_task(stream.send("n", str(i))) for i in range(300)]
                    await asyncio.sleep(0)  # each ran up to its first wait
                    assert stream._core.sender.blocked > 0
                    # Half-closes after the sends still waiting for room.
                    stream.complete()
                    with pytest.raises(pychat.ClosedError):
                        await stream.send("n", "after complete()")
                    await asyncio.gather(*tasks)
                    assert [r async for r in stream] == [f"n: {i}" for i in range(300)]
    run(main())


# ----------------------------------------------------------------------------
# Cancellation, deadlines, timeouts


def test_cancel() -> None:
    async def main() -> None:
        handler = Echo()
        async with aio.Server(handler=handler) as server, aio.Client(target(server)) as client:
            stream = client.chat()
            await stream.send("Sam", "Hi")
            assert await stream.recv(WAIT) == "Sam: Hi"
            await stream.send("Sam", "again")
            await until(lambda: stream._core.replies, what="the second reply")
            stream.cancel()
            stream.cancel()  # idempotent
            assert await stream.recv(WAIT) == "Sam: again"  # received before the cancel
            with pytest.raises(pychat.Cancelled):
                await stream.recv(WAIT)
            assert stream.code is pychat.StatusCode.CANCELLED
            with pytest.raises(pychat.ClosedError):
                await stream.send("Sam", "late")
            await asyncio.wait_for(handler.closed.wait(), WAIT)
            assert handler.closes[0][1] is pychat.StatusCode.CANCELLED
            stream.close()
    run(main())


def test_cancelling_the_task_that_awaits_leaves_the_stream_usable() -> None:
    async def main() -> None:
        with pychat.Server("127.0.0.1:0") as server:
            async with aio.Client(target(server)) as client, client.chat() as stream:
                waiting = asyncio.create_task(stream.recv())
                await asyncio.sleep(0)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                await stream.send("Sam", "Hi")
                assert await stream.recv(WAIT) == "Sam: Hi"
                with pytest.raises(TimeoutError):
                    await stream.recv(timeout=0.05)
                with pytest.raises(TimeoutError):
                    await stream.recv(timeout=0)
                await stream.send("Ann", "Hey")
                assert await stream.recv(WAIT) == "Ann: Hey"
    run(main())


def test_deadline() -> None:
    class Silent:
        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            pass  # never answers, never completes

        def on_complete(self, call: aio.Call) -> None:
            pass

        def on_close(self, call: aio.Call, code: pychat.StatusCode, details: str) -> None:
            closes.append(code)

    closes: List[pychat.StatusCode] = []

    async def main() -> None:
        async with aio.Server(handler=Silent()) as server, aio.Client(target(server)) as client:
            stream = client.chat(timeout=0.3)
            started = time.monotonic()
            await stream.send("Sam", "Hi")
            with pytest.raises(pychat.DeadlineExceeded):
                await stream.recv(WAIT)
            assert 0.25 <= time.monotonic() - started < WAIT
            await until(lambda: bool(closes), what="on_close")
            # Whichever side's timer fired first.
            assert closes[0] in (pychat.StatusCode.DEADLINE_EXCEEDED, pychat.StatusCode.CANCELLED)
            with pytest.raises(pychat.DeadlineExceeded):
                await stream.send("Sam", "late")
            stream.close()
    run(main())


def test_a_server_error_reaches_a_waiting_send() -> None:
    """A send waiting for room when the server fails the call raises the
    call's error (after the END arrives), like the sync API."""
    class Refuse:
        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            await asyncio.sleep(0.1)
            call.fail(pychat.StatusCode.ABORTED, "go away")

    async def main() -> None:
        async with aio.Server(handler=Refuse(), recv_window=1) as server, \
                aio.Client(target(server), send_queue_limit=1) as client:
            async with client.chat() as stream:
                with pytest.raises(pychat.Aborted) as info:
                    for _ in range(10_000):
                        await stream.send("n", "z" * 65536)
                assert info.value.details == "go away"
    run(main())


# ----------------------------------------------------------------------------
# Stopping


def test_stop_with_grace_lets_open_calls_finish() -> None:
    async def main() -> None:
        handler = Echo()
        server = aio.Server(handler=handler)
        async with aio.Client(target(server)) as client:
            stream = client.chat()
            await stream.send("Sam", "Hi")
            assert await stream.recv(WAIT) == "Sam: Hi"
            stopping = asyncio.create_task(server.stop(grace=WAIT))
            await asyncio.sleep(0.05)
            assert not stopping.done()
            # The loop still serves the open call during the stop.
            await stream.send("Ann", "Hey")
            assert await stream.recv(WAIT) == "Ann: Hey"
            stream.complete()
            assert await stream.recv(WAIT) is None
            assert await stopping == 0
            assert handler.closes == [(1, pychat.StatusCode.OK, "")]
            # Refused once stopped.
            async with client.chat() as late:
                with pytest.raises(pychat.Unavailable):
                    await late.recv(WAIT)
        await server.close()
        assert server.closed
    run(main())


@pytest.mark.parametrize("grace", [0.0, 0.2])
def test_stop_cuts_calls_still_open(grace: float) -> None:
    async def main() -> None:
        handler = Echo()
        async with aio.Server(handler=handler) as server, aio.Client(target(server)) as client:
            streams = [client.chat() for _ in range(5)]
            for s in streams:
                await s.send("Sam", "Hi")
                assert await s.recv(WAIT) == "Sam: Hi"
            started = time.monotonic()
            assert await server.stop(grace) == 5
            assert time.monotonic() - started >= grace * 0.9
            # stop returns after every on_close has run.
            assert sorted(c[0] for c in handler.closes) == [1, 2, 3, 4, 5]
            assert all(c[1] is pychat.StatusCode.UNAVAILABLE for c in handler.closes)
            for s in streams:
                with pytest.raises(pychat.Unavailable):
                    await s.recv(WAIT)
                s.close()
            assert await server.stop(grace) == 0  # again: nothing
    run(main())


def test_stop_cancels_handlers_that_outlive_their_calls() -> None:
    class Stuck:
        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            entered.append(call.id)
            await asyncio.Event().wait()  # forever

        def on_close(self, call: aio.Call, code: pychat.StatusCode, details: str) -> None:
            closes.append(code)

    entered: List[int] = []
    closes: List[pychat.StatusCode] = []

    async def main() -> None:
        async with aio.Server(handler=Stuck()) as server, aio.Client(target(server)) as client:
            async with client.chat() as stream:
                await stream.send("n", "m")
                await until(lambda: bool(entered), what="the handler to be stuck")
                assert await server.stop(0.1) == 1
                assert closes == [pychat.StatusCode.UNAVAILABLE]
    run(main())


# ----------------------------------------------------------------------------
# Scale and idleness


def test_a_thousand_concurrent_streams_from_one_loop() -> None:
    async def main() -> None:
        handler = Echo()
        async with aio.Server(handler=handler) as server, aio.Client(target(server)) as client:
            async def one(i: int) -> None:
                async with client.chat() as stream:
                    for k in range(3):
                        await stream.send(f"c{i}", str(k))
                    stream.complete()
                    assert [r async for r in stream] == [f"c{i}: {k}" for k in range(3)]

            await asyncio.gather(*(one(i) for i in range(1000)))
            await until(lambda: len(handler.closes) == 1000, what="1,000 on_close")
            assert all(c[1] is pychat.StatusCode.OK for c in handler.closes)
    run(main(), timeout=120)


def test_idle_cpu_is_near_zero_with_200_open_streams() -> None:
    """200 streams open on an aio server and an aio client in this process,
    each confirmed with one reply; then nothing happens. The process's CPU
    time over that second must stay near 0: no polling, no thread per
    stream. (A loop that spun on the queue's descriptor would burn ~100%.)"""
    async def main() -> None:
        async with aio.Server(handler=Echo()) as server, aio.Client(target(server)) as client:
            streams = [client.chat() for _ in range(200)]
            for s in streams:
                await s.send("n", "m")
            for s in streams:
                assert await s.recv(WAIT) == "n: m"
            threads = len(os.listdir("/proc/self/task"))
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(1.0)  # the measured idle interval
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            assert cpu / wall < 0.05, f"{cpu / wall:.1%} of a core while idle"
            assert len(os.listdir("/proc/self/task")) <= threads + 2  # not one per stream
            for s in streams:
                s.complete()
            for s in streams:
                assert await s.recv(WAIT) is None
    run(main())


# ----------------------------------------------------------------------------
# Lifetimes


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_dropped_stream_is_cancelled_and_freed() -> None:
    async def main() -> None:
        handler = Echo()
        async with aio.Server(handler=handler) as server, aio.Client(target(server)) as client:
            stream = client.chat()
            await stream.send("Sam", "Hi")
            assert await stream.recv(WAIT) == "Sam: Hi"
            core = weakref.ref(stream._core)
            reader = stream._core.reader
            del stream
            gc.collect()
            await asyncio.wait_for(handler.closed.wait(), WAIT)
            assert handler.closes[0][1] is pychat.StatusCode.CANCELLED
            await until(lambda: core() is None or core().key not in reader.targets,  # type: ignore[union-attr]
                        what="the stream to leave its queue")
    run(main())


def test_shutdown_removes_the_reader_and_closes_the_queue() -> None:
    async def main() -> None:
        before = open_fds()
        loop = asyncio.get_running_loop()
        handler = Echo()
        async with aio.Server(handler=handler) as server:
            async with aio.Client(target(server)) as client:
                hub = aio._hubs[loop]
                assert hub.main is not None
                fd = hub.main.fd
                assert fd in loop._selector.get_map()  # type: ignore[attr-defined]
                async with client.chat() as stream:
                    assert await seed(stream) == SEED_REPLIES
        assert hub.main is None and not hub.others
        assert fd not in loop._selector.get_map()  # type: ignore[attr-defined]
        gc.collect()
        await until(lambda: open_fds() <= before, what="the queue's descriptors to close")
    run(main())


def test_two_servers_and_clients_on_one_loop() -> None:
    """An OPEN does not say which server it came to, so a second server on
    the loop takes a queue of its own; both serve their own handler."""
    class Tagged(Echo):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        async def on_message(self, call: aio.Call, name: str, message: str) -> None:
            await call.send(f"{self.tag} {name}: {message}")

    async def main() -> None:
        async with aio.Server(handler=Tagged("a")) as a, aio.Server(handler=Tagged("b")) as b:
            async with aio.Client(target(a)) as ca, aio.Client(target(b)) as cb:
                for client, tag in ((ca, "a"), (cb, "b"), (ca, "a")):
                    async with client.chat() as stream:
                        await stream.send("Sam", "Hi")
                        assert await stream.recv(WAIT) == f"{tag} Sam: Hi"
    run(main())


def test_closed_objects_refuse_use() -> None:
    async def main() -> None:
        with pychat.Server("127.0.0.1:0") as server:
            client = aio.Client(target(server))
            stream = client.chat()
            stream.close()
            stream.close()
            with pytest.raises(pychat.ClosedError):
                await stream.send("a", "b")
            with pytest.raises(pychat.ClosedError):
                await stream.recv()
            with pytest.raises(pychat.ClosedError):
                stream.complete()
            await client.close()
            await client.close()
            with pytest.raises(pychat.ClosedError):
                client.chat()
            async with aio.Client(target(server)) as other, other.chat() as fresh:
                with pytest.raises(TypeError):
                    await fresh.send("a", 1)  # type: ignore[arg-type]
                with pytest.raises(ValueError):
                    await fresh.send("a", "\udc00")  # UTF-8 cannot encode it
    run(main())


def test_metadata_and_peer_reach_the_handler() -> None:
    seen: List[Any] = []

    class Look:
        async def on_open(self, call: aio.Call) -> None:
            seen.append((call.id, call.peer.startswith("ipv4:127.0.0.1:"),
                         call.metadata.get("x-user"), call.metadata.get("x-blob-bin")))
            call.complete()

    async def main() -> None:
        async with aio.Server(handler=Look()) as server, aio.Client(target(server)) as client:
            async with client.chat(metadata={"x-user": "sam", "x-blob-bin": b"\x00\xff"}) as s:
                assert await s.recv(WAIT) is None
        assert seen == [(1, True, "sam", b"\x00\xff")]
    run(main())


def test_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        aio.Client("127.0.0.1:1")
    with pytest.raises(RuntimeError):
        aio.Server()


def test_rlimit_is_not_the_limit() -> None:
    """(Sanity for the 1,000-stream test: streams share one connection and
    one queue, so descriptors do not grow per stream.)"""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def main() -> None:
        with pychat.Server("127.0.0.1:0") as server:
            async with aio.Client(target(server)) as client:
                before = open_fds()
                streams = [client.chat() for _ in range(300)]
                for s in streams:
                    await s.send("n", "m")
                for s in streams:
                    assert await s.recv(WAIT) == "n: m"
                assert open_fds() - before < 10
                for s in streams:
                    s.close()
    run(main())
