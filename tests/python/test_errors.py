"""Status codes, exceptions, and handler methods that raise."""
from __future__ import annotations

import pickle
import queue
from typing import Any, List

import grpc
import pytest

import pychat
from conftest import WAIT, target, unraisable_hook, wait_until


def test_status_codes_match_grpc() -> None:
    assert [c.name for c in pychat.StatusCode] == [c.name for c in grpc.StatusCode]
    for ours in pychat.StatusCode:
        assert grpc.StatusCode[ours.name].value[0] == ours.value


def test_exception_classes() -> None:
    classes = {
        "CANCELLED": pychat.Cancelled, "UNKNOWN": pychat.Unknown,
        "INVALID_ARGUMENT": pychat.InvalidArgument, "DEADLINE_EXCEEDED": pychat.DeadlineExceeded,
        "NOT_FOUND": pychat.NotFound, "ALREADY_EXISTS": pychat.AlreadyExists,
        "PERMISSION_DENIED": pychat.PermissionDenied,
        "RESOURCE_EXHAUSTED": pychat.ResourceExhausted,
        "FAILED_PRECONDITION": pychat.FailedPrecondition, "ABORTED": pychat.Aborted,
        "OUT_OF_RANGE": pychat.OutOfRange, "UNIMPLEMENTED": pychat.Unimplemented,
        "INTERNAL": pychat.Internal, "UNAVAILABLE": pychat.Unavailable,
        "DATA_LOSS": pychat.DataLoss, "UNAUTHENTICATED": pychat.Unauthenticated,
    }
    for name, cls in classes.items():
        e = cls("why")
        assert isinstance(e, pychat.ChatError)
        assert e.code is pychat.StatusCode[name] and e.details == "why"
        assert str(e) == f"{name}: why"
        again = pickle.loads(pickle.dumps(e))
        assert type(again) is cls and again.code is e.code and again.details == "why"
    generic = pychat.ChatError(pychat.StatusCode.ABORTED, "x")
    assert generic.code is pychat.StatusCode.ABORTED and str(pychat.ChatError(3)) == "INVALID_ARGUMENT"
    assert not issubclass(pychat.ClosedError, pychat.ChatError)
    assert issubclass(pychat.ClosedError, ValueError)


class Raising:
    """Raises from the method named by each message."""

    def __init__(self) -> None:
        self.closes: "queue.Queue[Any]" = queue.Queue()

    def on_message(self, call: pychat.Call, name: str, message: str) -> None:
        if message == "boom":
            raise ZeroDivisionError("handler bug")
        if message == "deny":
            raise pychat.PermissionDenied("not you")
        if message == "bad-chat-error":
            raise pychat.ChatError(pychat.StatusCode.OK, "")
        call.send(f"{name}: {message}")

    def on_close(self, call: pychat.Call, code: pychat.StatusCode, details: str) -> None:
        self.closes.put((code, details))
        if details == "on_message raised ZeroDivisionError":
            raise RuntimeError("on_close bug")


def test_handler_exception_fails_the_stream_and_is_reported() -> None:
    handler = Raising()
    with unraisable_hook() as unraisable, pychat.Server("127.0.0.1:0", handler=handler) as server, \
            pychat.Client(target(server)) as client:
        with client.chat() as stream:
            stream.send("Sam", "fine")
            assert stream.recv(WAIT) == "Sam: fine"
            stream.send("Sam", "boom")
            with pytest.raises(pychat.Internal) as info:
                stream.recv(WAIT)
            assert "ZeroDivisionError" in info.value.details
        assert handler.closes.get(timeout=WAIT) == (pychat.StatusCode.INTERNAL,
                                                    "on_message raised ZeroDivisionError")
        # Both the handler's bug and on_close's reached the hook.
        wait_until(lambda: len(unraisable) == 2, what="two unraisable reports")
        assert unraisable[0][0] is ZeroDivisionError
        assert unraisable[0][2] == handler.on_message
        assert unraisable[1][0] is RuntimeError

        # The server keeps serving.
        with client.chat() as stream:
            stream.send("Ann", "still here")
            stream.complete()
            assert list(stream) == ["Ann: still here"]


def test_chat_error_in_handler_sets_the_status() -> None:
    with unraisable_hook() as unraisable, \
            pychat.Server("127.0.0.1:0", handler=Raising()) as server, \
            pychat.Client(target(server)) as client:
        with client.chat() as stream:
            stream.send("Sam", "deny")
            with pytest.raises(pychat.PermissionDenied, match="not you"):
                stream.recv(WAIT)
        with client.chat() as stream:  # a ChatError that is no error status is a bug
            stream.send("Sam", "bad-chat-error")
            with pytest.raises(pychat.Internal):
                stream.recv(WAIT)
        assert [u[0] for u in unraisable] == [pychat.ChatError]


def test_exception_in_on_open_and_on_complete() -> None:
    class Opener:
        def on_open(self, call: pychat.Call) -> None:
            raise KeyError("open")

        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            pass  # may still run: the message can be on its way already

    class Completer:
        def on_message(self, call: pychat.Call, name: str, message: str) -> None:
            call.send("ok")

        def on_complete(self, call: pychat.Call) -> None:
            raise ValueError("complete")

    with unraisable_hook() as unraisable:
        for handler, method in ((Opener(), "on_open"), (Completer(), "on_complete")):
            with pychat.Server("127.0.0.1:0", handler=handler) as server, \
                    pychat.Client(target(server)) as client, client.chat() as stream:
                # on_open may fail the call before the send is taken: then
                # send() raises it.
                with pytest.raises(pychat.Internal, match=method):
                    stream.send("Sam", "Hi")
                    stream.complete()
                    for _ in stream:
                        pass
        assert [u[0] for u in unraisable] == [KeyError, ValueError]


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:70000", "port 70000 is out of range 0..65535"),
    ("127.0.0.1:65536", "out of range"),
    ("127.0.0.1:99999999999", "out of range"),
    ("127.0.0.1", "address has no port"),
    ("127.0.0.1:-1", "not a decimal number"),
    ("127.0.0.1:80x", "not a decimal number"),
])
def test_malformed_server_address_is_a_value_error(address: str, says: str) -> None:
    # Before, gRPC took these its own way: 70000 listened on 4464, no port on 443.
    with pytest.raises(ValueError, match="bad listen address") as info:
        pychat.Server(address)
    assert says in str(info.value)


@pytest.mark.parametrize("target", ["127.0.0.1:70000", "http://127.0.0.1", "127.0.0.1:0"])
def test_malformed_client_target_is_a_value_error(target: str) -> None:
    with pytest.raises(ValueError, match="bad target"):
        pychat.Client(target)
