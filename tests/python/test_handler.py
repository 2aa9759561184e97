"""Custom handlers: the four methods, their order, threads, metadata, calls."""
from __future__ import annotations

import queue
import threading
from typing import Any, List, Set, Tuple

import pytest

import pychat
from conftest import WAIT, Recorder, target, wait_until


def test_four_methods_in_order() -> None:
    rec = Recorder()
    with pychat.Server("127.0.0.1:0", handler=rec) as server, pychat.Client(target(server)) as c:
        with c.chat() as stream:
            stream.send("Sam", "Hi")
            stream.send("Ann", "Hey")
            stream.complete()
            assert list(stream) == ["Sam: Hi", "Ann: Hey"]
        assert rec.closed.wait(WAIT)
        call_id = rec.log[0][1]
        assert rec.log == [
            ("open", call_id),
            ("message", call_id, "Sam", "Hi"),
            ("message", call_id, "Ann", "Hey"),
            ("complete", call_id),
            ("close", call_id, pychat.StatusCode.OK, ""),
        ]
        # One dispatcher thread, not the test's.
        assert len(set(rec.threads)) == 1 and rec.threads[0] != threading.get_ident()
        # The same Call object throughout, usable after the stream ended.
        call = rec.calls[0]
        assert call.id == call_id
        assert call.peer.startswith("ipv4:127.0.0.1:")
        with pytest.raises(pychat.ClosedError):
            call.send("late")


def test_close_code_for_cancel_and_deadline() -> None:
    rec = Recorder(expect_closes=2)
    with pychat.Server("127.0.0.1:0", handler=rec) as server, pychat.Client(target(server)) as c:
        with c.chat() as stream:
            stream.send("Sam", "Hi")
            assert stream.recv(WAIT) == "Sam: Hi"
            stream.cancel()
            with pytest.raises(pychat.Cancelled):
                stream.recv(WAIT)
        with c.chat(timeout=1.0) as stream:  # the reply comes first, even under load
            stream.send("Sam", "Hi")
            assert stream.recv(WAIT) == "Sam: Hi"
            with pytest.raises(pychat.DeadlineExceeded):
                stream.recv(WAIT)
        assert rec.closed.wait(WAIT)
    codes = [e[2] for e in rec.log if e[0] == "close"]
    # The server reports DEADLINE_EXCEEDED only when its own copy of the
    # deadline has passed; the client's RST_STREAM often arrives first (libchat
    # then reports CANCELLED): either is the client going away.
    assert codes[0] is pychat.StatusCode.CANCELLED
    assert codes[1] in (pychat.StatusCode.DEADLINE_EXCEEDED, pychat.StatusCode.CANCELLED)


def test_metadata() -> None:
    seen: "queue.Queue[Tuple[Any, ...]]" = queue.Queue()

    class Handler:
        # Runs on the dispatcher thread: it only records, the test thread checks.
        def on_open(self, call: pychat.Call) -> None:
            md = call.metadata
            try:
                md["absent"]
                missing_raises = False
            except KeyError:
                missing_raises = True
            seen.put((md["x-user"], md.get("X-User"), md.get("x-blob-bin"), md.get("absent"),
                      md.get("absent", "dflt"), "x-user" in md, "absent" in md, 3 in md,
                      list(md), len(md), list(md.keys()), md.all_items(), missing_raises))

        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            pass

    with pychat.Server("127.0.0.1:0", handler=Handler()) as server, \
            pychat.Client(target(server)) as client:
        with client.chat(metadata={"x-user": "sam", "x-blob-bin": b"\x01\xff"}) as stream:
            (user, user_any_case, blob, absent, dflt, has_user, has_absent, has_int,
             keys, length, key_view, items, missing_raises) = seen.get(timeout=WAIT)
            assert (user, user_any_case, blob, absent, dflt) == ("sam", "sam", b"\x01\xff", None,
                                                                 "dflt")
            assert (has_user, has_absent, has_int, missing_raises) == (True, False, False, True)
            # A full mapping: gRPC adds its own keys (user-agent...), ours are there.
            assert keys == sorted(keys) == key_view and length == len(keys)
            assert {"x-user", "x-blob-bin"} <= set(keys)
            assert ("x-user", "sam") in items and ("x-blob-bin", b"\x01\xff") in items
            stream.cancel()
        # Pairs work too; bad keys are refused before anything is sent.
        with client.chat(metadata=[("x-user", "ann")]) as stream:
            assert seen.get(timeout=WAIT)[0] == "ann"
        with pytest.raises(ValueError, match="metadata key"):
            client.chat(metadata={"Bad Key": "v"})
        with pytest.raises(ValueError, match="printable ASCII"):
            client.chat(metadata={"x-user": "tab\there"})
        # Binary values keep their NULs; text values refuse them.
        with client.chat(metadata={"x-user": "bin", "x-blob-bin": b"\x00a\x00"}) as stream:
            got = seen.get(timeout=WAIT)
            assert (got[0], got[2]) == ("bin", b"\x00a\x00")
        with pytest.raises(ValueError, match="printable ASCII"):
            client.chat(metadata={"x-user": "a\x00b"})
        with pytest.raises(ValueError, match="NUL"):
            client.chat(metadata={"x-a\x00b": "v"})


def test_missing_methods_have_seed_defaults() -> None:
    class OnlyMessages:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            call.send(message.upper())

    class Nothing:
        pass

    with pychat.Server("127.0.0.1:0", handler=OnlyMessages()) as server, \
            pychat.Client(target(server)) as client, client.chat() as stream:
        stream.send("Sam", "hi")
        stream.complete()  # no on_complete: the library completes
        assert list(stream) == ["HI"]
    with pychat.Server("127.0.0.1:0", handler=Nothing()) as server, \
            pychat.Client(target(server)) as client, client.chat() as stream:
        stream.send("Sam", "hi")  # no on_message: ignored
        stream.complete()
        assert list(stream) == []
        assert stream.code is pychat.StatusCode.OK


def test_calls_kept_and_used_from_other_threads() -> None:
    """Broadcast-style code: calls outlive the handler method that saw them."""
    opened: "queue.Queue[pychat.Call]" = queue.Queue()

    class Keep:
        def on_open(self, call: pychat.Call) -> None:
            opened.put(call)

        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            pass

        def on_complete(self, call: pychat.Call) -> None:
            pass  # the test's thread completes it

    with pychat.Server("127.0.0.1:0", handler=Keep()) as server, \
            pychat.Client(target(server)) as client:
        with client.chat() as stream:
            stream.send("Sam", "Hi")  # the call exists once the server sees it
            call = opened.get(timeout=WAIT)
            for i in range(100):
                call.send(f"push {i}")
            assert [stream.recv(WAIT) for _ in range(100)] == [f"push {i}" for i in range(100)]
            call.complete()
            call.complete()  # idempotent
            assert stream.recv(WAIT) is None
            with pytest.raises(pychat.ClosedError):
                call.fail(pychat.StatusCode.INTERNAL, "too late")
    # The server is gone; the Call object still answers, with ClosedError.
    assert call.id >= 1
    with pytest.raises(pychat.ClosedError):
        call.send("after the server")


def test_fail_with_a_code() -> None:
    class Refuse:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            call.send("first")
            call.fail(pychat.StatusCode.PERMISSION_DENIED, f"{name} may not talk")

    with pychat.Server("127.0.0.1:0", handler=Refuse()) as server, \
            pychat.Client(target(server)) as client, client.chat() as stream:
        stream.send("Sam", "Hi")
        assert stream.recv(WAIT) == "first"
        with pytest.raises(pychat.PermissionDenied) as info:
            stream.recv(WAIT)
        assert info.value.details == "Sam may not talk"
        assert info.value.code is pychat.StatusCode.PERMISSION_DENIED
        assert stream.code is pychat.StatusCode.PERMISSION_DENIED
        assert stream.details == "Sam may not talk"
        with pytest.raises(pychat.PermissionDenied):  # the error end stays
            next(stream)


def test_call_argument_errors() -> None:
    errors: "queue.Queue[List[BaseException]]" = queue.Queue()

    class Bad:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            caught: List[BaseException] = []
            for attempt in (lambda: call.send(b"bytes"), lambda: call.send("\udc80"),
                            lambda: call.send("x" * (4 << 20)),
                            lambda: call.fail(pychat.StatusCode.OK, ""),
                            lambda: call.fail(99, ""), lambda: call.send("x", timeout=-1)):
                try:
                    attempt()
                except Exception as e:
                    caught.append(e)
            errors.put(caught)
            call.complete()

    with pychat.Server("127.0.0.1:0", handler=Bad()) as server, \
            pychat.Client(target(server)) as client, client.chat() as stream:
        stream.send("Sam", "Hi")
        caught = errors.get(timeout=WAIT)
        assert [type(e) for e in caught] == [TypeError, ValueError, ValueError, ValueError,
                                             ValueError, ValueError]
        assert "surrogate" in str(caught[1])
        assert "exceeds the maximum message size" in str(caught[2])
        assert stream.recv(WAIT) is None


def test_several_dispatcher_threads() -> None:
    """Four dispatcher threads run handlers of different calls at once: each
    on_message stays in until one is in on every thread. With fewer threads,
    or handlers run one at a time, that never happens and the test fails."""
    threads = 4
    inside: Set[int] = set()
    lock = threading.Lock()
    all_in = threading.Event()

    class Overlapping(Recorder):
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            me = threading.get_ident()
            with lock:
                inside.add(me)
                if len(inside) == threads:
                    all_in.set()
            all_in.wait(WAIT)  # bounded: a failing run still ends
            with lock:
                inside.discard(me)
            super().on_message(call, name, message)

    # Call ids are consecutive and each call keeps to dispatcher id % 4, so
    # 8 calls give every thread two.
    rec = Overlapping(expect_closes=8)
    with pychat.Server("127.0.0.1:0", handler=rec, dispatcher_threads=threads) as server, \
            pychat.Client(target(server)) as client:
        streams = [client.chat() for _ in range(8)]
        for i, s in enumerate(streams):
            s.send(f"n{i}", "m")
            s.complete()
        assert all_in.wait(WAIT), f"handlers never ran on {threads} threads at once"
        for i, s in enumerate(streams):
            assert list(s) == [f"n{i}: m"]
            s.close()
        assert rec.closed.wait(WAIT)
    wait_until(lambda: len(rec.log) == 8 * 4, what="all events")
    assert len(set(rec.threads)) == threads
