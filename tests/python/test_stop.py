"""Stopping servers: grace, cut counts, handlers, and stop from odd places."""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, List

import pytest

import pychat
from conftest import WAIT, Recorder, target


def open_streams(client: pychat.Client, n: int) -> List[pychat.Stream]:
    """n streams the server has certainly accepted (each got a reply)."""
    streams = []
    for i in range(n):
        stream = client.chat()
        stream.send(f"s{i}", "hi")
        assert stream.recv(WAIT) == f"s{i}: hi"
        streams.append(stream)
    return streams


def test_stop_cuts_open_streams_after_the_grace() -> None:
    server = pychat.Server("127.0.0.1:0")
    with pychat.Client(target(server)) as client:
        streams = open_streams(client, 3)
        started = time.monotonic()
        assert server.stop(0.5) == 3
        took = time.monotonic() - started
        assert 0.45 <= took < 0.5 + 3.0
        for stream in streams:
            with pytest.raises(pychat.Unavailable):
                stream.recv(WAIT)
            assert stream.code is pychat.StatusCode.UNAVAILABLE
            stream.close()
        assert server.stop(1.0) == 0  # stopping again
        assert not server.closed
        server.close()
        assert server.closed and server.stop() == 0 and server.port > 0


def test_streams_that_finish_in_the_grace_are_not_cut() -> None:
    with pychat.Server("127.0.0.1:0") as server, pychat.Client(target(server)) as client:
        streams = open_streams(client, 3)
        result: "queue.Queue[int]" = queue.Queue()
        stopper = threading.Thread(target=lambda: result.put(server.stop(WAIT)))
        stopper.start()
        for stream in streams:  # all of them finish: the stop returns early
            stream.complete()
            assert list(stream) == []
            assert stream.code is pychat.StatusCode.OK
        assert result.get(timeout=WAIT) == 0
        stopper.join(WAIT)


def test_stop_waits_for_running_handlers() -> None:
    """Handlers need the GIL; stop() must release it while it waits."""
    entered, release = threading.Event(), threading.Event()
    done: List[str] = []

    class Slow:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            entered.set()
            release.wait(WAIT)
            with pytest.raises(pychat.ClosedError):  # cut while we waited
                call.send("late reply")
            done.append(message)

    server = pychat.Server("127.0.0.1:0", handler=Slow())
    with pychat.Client(target(server)) as client, client.chat() as stream:
        stream.send("Sam", "Hi")
        assert entered.wait(WAIT)
        seen: "queue.Queue[BaseException]" = queue.Queue()

        def release_once_cut() -> None:
            # The client sees the cut only after the server made it, so the
            # handler's late send must then fail.
            try:
                for _ in stream:
                    pass
            except BaseException as e:
                seen.put(e)
            release.set()

        threading.Thread(target=release_once_cut).start()
        assert server.stop(0.0) == 1
        assert done == ["Hi"]  # the handler ran to its end before stop returned
        assert isinstance(seen.get(timeout=WAIT), pychat.Unavailable)
    server.close()


def test_close_with_a_thread_blocked_in_recv() -> None:
    server = pychat.Server("127.0.0.1:0")
    with pychat.Client(target(server)) as client, client.chat() as stream:
        errors: "queue.Queue[BaseException]" = queue.Queue()

        def blocked() -> None:
            try:
                stream.recv()
            except BaseException as e:
                errors.put(e)

        stream.send("Sam", "Hi")
        assert stream.recv(WAIT) == "Sam: Hi"
        reader = threading.Thread(target=blocked)
        reader.start()
        server.close()  # no grace
        assert isinstance(errors.get(timeout=WAIT), pychat.Unavailable)
        reader.join(WAIT)


def test_stop_and_close_refused_inside_own_handler() -> None:
    outcome: "queue.Queue[Any]" = queue.Queue()
    box: List[pychat.Server] = []

    class StopMe:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            for attempt in (box[0].stop, box[0].close):
                try:
                    attempt()
                    outcome.put("no error")
                except RuntimeError as e:
                    outcome.put(e)
            call.complete()

    with pychat.Server("127.0.0.1:0", handler=StopMe()) as server, \
            pychat.Client(target(server)) as client, client.chat() as stream:
        box.append(server)
        stream.send("Sam", "stop please")
        for _ in range(2):
            e = outcome.get(timeout=WAIT)
            assert isinstance(e, RuntimeError) and "own handler" in str(e)
        assert list(stream) == []
        assert not server.closed


def test_stop_from_another_servers_handler() -> None:
    """Only a server's own handler is refused; another server can be stopped."""
    victim = pychat.Server("127.0.0.1:0")
    cuts: "queue.Queue[int]" = queue.Queue()

    class Stopper:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            cuts.put(victim.stop(0.0))
            call.complete()

    with pychat.Server("127.0.0.1:0", handler=Stopper()) as server, \
            pychat.Client(target(server)) as client, client.chat() as stream:
        stream.send("Sam", "stop the other one")
        assert cuts.get(timeout=WAIT) == 0
        assert list(stream) == []
    victim.close()


def test_server_context_manager_stops() -> None:
    rec = Recorder()
    with pychat.Server("127.0.0.1:0", handler=rec) as server:
        client = pychat.Client(target(server))
        stream = client.chat()
        stream.send("Sam", "Hi")
        assert stream.recv(WAIT) == "Sam: Hi"
        with pytest.raises(KeyError):
            with server:  # leaving on an exception: no grace
                raise KeyError("leave")
    assert server.closed
    assert rec.closed.wait(WAIT)
    assert rec.log[-1][2] is pychat.StatusCode.UNAVAILABLE
    with pytest.raises(pychat.Unavailable):
        stream.recv(WAIT)
    stream.close()
    client.close()


def test_bad_grace() -> None:
    with pychat.Server("127.0.0.1:0") as server:
        with pytest.raises(ValueError, match="grace"):
            server.stop(-1)
