"""Client streams: volume, order, concurrency, timeouts, cancel, misuse."""
from __future__ import annotations

import threading
import time
from typing import Dict, List

import pytest

import pychat
from conftest import WAIT, target

N = 10_000


def test_10000_messages_in_order(client: pychat.Client) -> None:
    with client.chat() as stream:
        def send() -> None:
            for i in range(N):
                stream.send("n", str(i))
            stream.complete()

        sender = threading.Thread(target=send)
        sender.start()
        replies = list(stream)
        sender.join(WAIT)
    assert replies == [f"n: {i}" for i in range(N)]
    assert stream.code is pychat.StatusCode.OK


def test_send_many_in_order(client: pychat.Client) -> None:
    with client.chat() as stream:
        got: List[str] = []
        reader = threading.Thread(target=lambda: got.extend(stream))
        reader.start()
        assert stream.send_many((("n", str(i)) for i in range(N))) == N
        assert stream.send_many([]) == 0
        assert stream.send_many([["list", "pair"]]) == 1
        stream.complete()
        reader.join(WAIT)
    assert got == [f"n: {i}" for i in range(N)] + ["list: pair"]


def test_send_many_bad_items(client: pychat.Client) -> None:
    with client.chat() as stream:
        with pytest.raises(TypeError, match="pairs"):
            stream.send_many(["ab"])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="pairs"):
            stream.send_many([("a", "b", "c")])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="surrogate"):
            stream.send_many([("a", "\ud800")])
        with pytest.raises(TypeError, match="must be str"):
            stream.send_many([("a", 1)])  # type: ignore[list-item]


def test_concurrent_senders(client: pychat.Client) -> None:
    threads, per_thread = 4, 1000
    with client.chat() as stream:
        barrier = threading.Barrier(threads)

        def send(t: int) -> None:
            barrier.wait(WAIT)
            for i in range(per_thread):
                stream.send(f"t{t}", str(i))

        senders = [threading.Thread(target=send, args=(t,)) for t in range(threads)]
        for s in senders:
            s.start()
        got: Dict[str, List[int]] = {f"t{t}": [] for t in range(threads)}
        for _ in range(threads * per_thread):
            reply = stream.recv(WAIT)
            assert reply is not None
            name, number = reply.split(": ")
            got[name].append(int(number))
        for s in senders:
            s.join(WAIT)
        stream.complete()
        assert stream.recv(WAIT) is None
    for numbers in got.values():
        assert numbers == list(range(per_thread))  # each sender's order is kept


def test_concurrent_receivers(client: pychat.Client) -> None:
    with client.chat() as stream:
        got: List[str] = []
        lock = threading.Lock()

        def drain() -> None:
            for reply in stream:
                with lock:
                    got.append(reply)

        readers = [threading.Thread(target=drain) for _ in range(3)]
        for r in readers:
            r.start()
        stream.send_many(("n", str(i)) for i in range(3000))
        stream.complete()
        for r in readers:
            r.join(WAIT)
            assert not r.is_alive()
    assert sorted(got) == sorted(f"n: {i}" for i in range(3000))


def test_recv_timeout(client: pychat.Client) -> None:
    with client.chat() as stream:
        with pytest.raises(TimeoutError):
            stream.recv(0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            stream.recv(0.25)
        took = time.monotonic() - started
        assert 0.2 <= took < 0.25 + 2.0
        stream.send("Sam", "Hi")
        assert stream.recv(WAIT) == "Sam: Hi"  # the stream is still fine
        with pytest.raises(ValueError, match="timeout"):
            stream.recv(-1)


def test_cancel(client: pychat.Client) -> None:
    with client.chat() as stream:
        stream.send("Sam", "Hi")
        assert stream.recv(WAIT) == "Sam: Hi"
        stream.cancel()
        stream.cancel()  # idempotent
        with pytest.raises(pychat.Cancelled):
            stream.recv(WAIT)
        assert stream.code is pychat.StatusCode.CANCELLED
        with pytest.raises(pychat.ClosedError):
            stream.send("Sam", "again")


def test_cancel_wakes_a_blocked_receiver(client: pychat.Client) -> None:
    with client.chat() as stream:
        outcome: List[BaseException] = []

        def blocked() -> None:
            try:
                stream.recv()
            except BaseException as e:
                outcome.append(e)

        reader = threading.Thread(target=blocked)
        reader.start()
        stream.send("Sam", "Hi")  # proves the reader runs: it takes this reply...
        reader.join(WAIT)
        reader = threading.Thread(target=blocked)
        reader.start()  # ...and this one blocks for good
        stream.cancel()
        reader.join(WAIT)
        assert not reader.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], pychat.Cancelled)


def test_close_wakes_a_blocked_receiver(client: pychat.Client) -> None:
    stream = client.chat()
    outcome: List[BaseException] = []
    entered = threading.Event()

    def blocked() -> None:
        entered.set()
        try:
            stream.recv()
        except BaseException as e:
            outcome.append(e)

    reader = threading.Thread(target=blocked)
    reader.start()
    assert entered.wait(WAIT)
    stream.close()  # waits for the reader to leave, then frees the stream
    reader.join(WAIT)
    assert not reader.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], pychat.ClosedError)
    assert stream.code is pychat.StatusCode.CANCELLED


def test_deadline() -> None:
    class Silent:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            pass

    with pychat.Server("127.0.0.1:0", handler=Silent()) as server, \
            pychat.Client(target(server)) as client:
        with client.chat(timeout=0.3) as stream:
            stream.send("Sam", "Hi")
            started = time.monotonic()
            with pytest.raises(pychat.DeadlineExceeded) as info:
                for _ in stream:
                    pass
            assert time.monotonic() - started < 0.3 + 3.0
            assert info.value.code is pychat.StatusCode.DEADLINE_EXCEEDED
            assert isinstance(info.value, pychat.ChatError)
            assert stream.code is pychat.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(ValueError, match="timeout"):
            client.chat(timeout=-1)


def test_closed_stream(client: pychat.Client) -> None:
    stream = client.chat()
    stream.send("Sam", "Hi")
    stream.complete()
    with pytest.raises(pychat.ClosedError, match="half-closed"):
        stream.send("Sam", "again")
    stream.complete()  # idempotent
    stream.close()
    stream.close()  # idempotent
    assert stream.closed
    for use in (lambda: stream.send("a", "b"), lambda: stream.recv(), lambda: next(stream),
                stream.complete, lambda: stream.send_many([("a", "b")])):
        with pytest.raises(pychat.ClosedError):
            use()
    stream.cancel()  # a no-op once closed
    assert isinstance(pychat.ClosedError("x"), ValueError)


def test_bad_text(client: pychat.Client) -> None:
    with client.chat() as stream:
        with pytest.raises(ValueError, match="message is not valid text.*surrogate"):
            stream.send("Sam", "bad \udc80 text")
        with pytest.raises(ValueError, match="name is not valid text"):
            stream.send("\ud800", "x")
        with pytest.raises(TypeError, match="message must be str, not bytes"):
            stream.send("Sam", b"Hi")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="name must be str, not NoneType"):
            stream.send(None, "Hi")  # type: ignore[arg-type]
        stream.send("Sam", "still fine")
        stream.complete()
        assert list(stream) == ["Sam: still fine"]


def test_oversized_message(client: pychat.Client) -> None:
    big = "x" * (4 << 20)
    with client.chat() as stream:
        with pytest.raises(ValueError, match="exceeds the maximum message size"):
            stream.send("Sam", big)
        stream.send("Sam", "x" * ((4 << 20) - 100))  # just under the limit goes through
        stream.complete()
        reply = stream.recv(WAIT)
        assert reply is not None and len(reply) == 5 + (4 << 20) - 100
        assert stream.recv(WAIT) is None


def test_full_send_queue_times_out() -> None:
    """A server that stops reading: the client's queue fills, sends time out."""
    release = threading.Event()

    class Stuck:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            release.wait(WAIT)

    chunk = "x" * (1 << 20)
    with pychat.Server("127.0.0.1:0", handler=Stuck(), recv_window=1) as server, \
            pychat.Client(target(server), send_queue_limit=2) as client, \
            client.chat() as stream:
        deadline = time.monotonic() + WAIT
        with pytest.raises(TimeoutError):
            while time.monotonic() < deadline:  # HTTP/2 flow control fills up first
                stream.send("Sam", chunk, timeout=0.2)
        with pytest.raises(BlockingIOError):
            stream.send("Sam", chunk, timeout=0)
        with pytest.raises(TimeoutError):
            stream.send_many([("Sam", chunk)], timeout=0.2)
        release.set()
        stream.cancel()
