"""pychat: host and drive the gRPC Chat service (/Chat/chat) through libchat.

    with pychat.Server("127.0.0.1:0") as server:           # the echo server
        with pychat.Client(f"127.0.0.1:{server.port}") as client:
            with client.chat() as stream:
                stream.send("Sam", "Hi")
                stream.complete()
                for reply in stream:                       # "Sam: Hi"
                    print(reply)

See README.md for threads, the GIL, errors and object lifetimes.
"""
from __future__ import annotations

import atexit
import logging
import os
import weakref
from types import TracebackType
from typing import Any, Callable, Iterable, Mapping, Optional, Tuple, Type, TypeVar, Union

from . import _control, _pychat
from ._errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    ChatError,
    ClosedError,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    StatusCode,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from ._metadata import CallMetadata
from ._pychat import Call, Stream, abi_version, library_version
from ._stats import Stats

__all__ = [
    "Server", "Client", "Stream", "Call", "CallMetadata", "Handler", "StatusCode", "ChatError",
    "ClosedError", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    "library_version", "abi_version", "set_log_destination", "Stats",
]

__version__: str = _pychat.HEADER_VERSION  # chat.h's CHAT_VERSION_STRING, the one source

MetadataValue = Union[str, bytes]
Metadata = Union[Mapping[str, MetadataValue], Iterable[Tuple[str, MetadataValue]]]

_F = TypeVar("_F", bound=Callable[..., Any])

_MODES = {"echo": _pychat.MODE_ECHO, "broadcast": _pychat.MODE_BROADCAST,
          "custom": _pychat.MODE_CUSTOM}

# Everything still open when the interpreter exits is closed by _close_all,
# while other threads may still take the GIL: blocked receivers wake up and
# handlers finish before finalization begins.
# pychat.aio adds its native servers and streams.
_live: "weakref.WeakSet[Union[_pychat.Server, _pychat.Client, Stream, _pychat.QueuedStream]]" = \
    weakref.WeakSet()


def _default(method: _F) -> _F:
    """Marks a Handler method as the default: a server skips it when a
    subclass does not override it (see the native handler_method)."""
    method._pychat_default = True  # type: ignore[attr-defined]
    return method


class Handler:
    """Base class for the handler of a custom Server (pychat.Server(address,
    handler=MyHandler())). Override any of the methods; the defaults do what
    a server does for a handler without that method.

    Every method runs on one of the server's dispatcher threads (never the
    thread that created the server), holding the GIL; the methods of one call
    run in order (on_open, on_message..., on_complete, on_close) on one
    thread, those of different calls may run concurrently on different
    threads when dispatcher_threads > 1. A slow method holds up every call of
    its thread. Raising ChatError in a method fails the call with its code;
    any other exception fails it with INTERNAL and goes to
    sys.unraisablehook.

    Subclassing is optional: any object with some of these methods works as
    a handler (duck typing); this class documents and types that protocol.
    """

    @_default
    def on_open(self, call: Call) -> None:
        """A client opened a stream (`call`, the same object in every method
        of this stream). Default: nothing."""

    @_default
    def on_message(self, call: Call, name: str, message: str) -> None:
        """One ChatMessage arrived on `call`. Default: ignored."""

    @_default
    def on_complete(self, call: Call) -> None:
        """The client half-closed: it sends no more. Default: call.complete(),
        ending the stream with OK once the queued replies are written."""
        call.complete()

    @_default
    def on_close(self, call: Call, code: StatusCode, details: str) -> None:
        """The stream ended with `code` and `details` (CANCELLED when the
        client went away); always the last method of a call, and it runs for
        every call that was opened. `call` takes no more sends. Default:
        nothing."""


class Server(_pychat.Server):
    """A Chat server listening on `address` ("127.0.0.1:0" picks a free port).

    mode: "echo" (the default: each message answered "<name>: <message>" on its
    own stream) or "broadcast" (sent to every open stream). With `handler`, a
    Handler (or any object with some of its methods: on_open(call),
    on_message(call, name, message), on_complete(call) and
    on_close(call, code, details)), the handler decides; its methods run on
    the server's dispatcher thread(s). An address it cannot listen on (in
    use, not local) raises OSError.
    """

    def __init__(self, address: str, *, mode: Optional[str] = None,
                 handler: Optional[object] = None, max_message_bytes: Optional[int] = None,
                 send_queue_limit: Optional[int] = None, recv_window: Optional[int] = None,
                 dispatcher_threads: Optional[int] = None,
                 keepalive: Optional[float] = None, send_queue_bytes: Optional[int] = None,
                 recv_window_bytes: Optional[int] = None,
                 max_memory_bytes: Optional[int] = None,
                 completion_queues: Optional[int] = None,
                 compression: Optional[str] = None, max_streams: Optional[int] = None,
                 max_concurrent_streams: Optional[int] = None,
                 max_connection_age: Optional[float] = None,
                 max_connection_age_grace: Optional[float] = None,
                 max_connection_idle: Optional[float] = None) -> None:
        """compression: "gzip" or "deflate" compresses every reply (gRPC
        clients accept both; None or "none": uncompressed). max_streams:
        open streams the server takes (more are refused, ResourceExhausted).
        max_concurrent_streams: HTTP/2 streams per connection (a client
        waits for a slot). max_connection_age / _grace / max_connection_idle:
        seconds, for load balancers (GOAWAY to old or idle connections)."""
        if not isinstance(address, str):
            raise TypeError(f"address must be str, not {type(address).__name__}")
        control = _control.options(
            compression=compression, max_streams=max_streams,
            max_concurrent_streams=max_concurrent_streams,
            max_connection_age=max_connection_age,
            max_connection_age_grace=max_connection_age_grace,
            max_connection_idle=max_connection_idle)
        if mode is None:
            mode = "echo" if handler is None else "custom"
        if mode not in _MODES:
            raise ValueError(f"mode must be 'echo', 'broadcast' or 'custom', not {mode!r}")
        if (handler is None) != (mode != "custom"):
            raise ValueError("a handler goes with mode 'custom' (the default when one is given)")
        super().__init__(address, _MODES[mode], handler, max_message_bytes, send_queue_limit,
                         recv_window, dispatcher_threads, keepalive, send_queue_bytes,
                         recv_window_bytes, max_memory_bytes, completion_queues,
                         control=control)
        self.address = address
        self.mode = mode
        _live.add(self)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        """Stops with 5 s of grace, or none when leaving on an exception."""
        try:
            self.stop(5.0 if exc_type is None else 0.0)
        finally:
            self.close()

    def stats(self) -> Stats:
        """The server's counters (also after stop(); ClosedError once closed)."""
        return Stats(*self._stats())

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"port={self.port}"
        return f"<pychat.Server {self.mode} {self.address!r} {state}>"


class Client(_pychat.Client):
    """A client of the Chat service at `target`: "host:port", "http://host:port"
    or a gRPC target ("dns:///host:port", "unix:/path"). It connects lazily, on
    the first stream, with one HTTP/2 connection per client. close() frees it;
    streams already opened stay usable."""

    def __init__(self, target: str, *, max_message_bytes: Optional[int] = None,
                 send_queue_limit: Optional[int] = None,
                 recv_queue_limit: Optional[int] = None,
                 send_queue_bytes: Optional[int] = None,
                 recv_queue_bytes: Optional[int] = None,
                 keepalive: Optional[float] = None,
                 compression: Optional[str] = None) -> None:
        """keepalive: seconds between HTTP/2 pings while streams are open, so
        a dead or frozen server ends them with UNAVAILABLE (None: off; at
        least 1.0 against libchat servers). compression: "gzip" or "deflate"
        compresses every stream's messages (chat() may choose per stream)."""
        if not isinstance(target, str):
            raise TypeError(f"target must be str, not {type(target).__name__}")
        control = _control.options(compression=compression)
        super().__init__(target, max_message_bytes, send_queue_limit, recv_queue_limit,
                         send_queue_bytes, recv_queue_bytes, keepalive, control=control)
        _live.add(self)

    def chat(self, timeout: Optional[float] = None, metadata: Optional[Metadata] = None, *,
             wait_for_ready: bool = False, compression: Optional[str] = None) -> Stream:
        """Opens a /Chat/chat stream. Never blocks: a server that cannot be
        reached ends the stream with UNAVAILABLE (seen by recv), unless
        wait_for_ready. timeout: the call's deadline in seconds (DEADLINE_EXCEEDED
        when it passes). metadata: str values, bytes for keys ending in "-bin".
        compression: this stream's ("none", "deflate", "gzip"; None: the client's)."""
        if metadata is None:
            pairs = []
        elif isinstance(metadata, Mapping):
            pairs = list(metadata.items())
        else:
            pairs = [(key, value) for key, value in metadata]
        stream = self._open(timeout, pairs, wait_for_ready, _control.compression(compression))
        _live.add(stream)
        return stream

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def stats(self) -> Stats:
        """The counters of every stream this client opened (ClosedError once closed)."""
        return Stats(*self._stats())

    def __repr__(self) -> str:
        return f"<pychat.Client {self.target!r}{' closed' if self.closed else ''}>"


def _close_all() -> None:
    live = list(_live)
    # Streams first: threads blocked on them wake up and leave. Then servers,
    # which run their last handler calls now, while that is still possible.
    kinds: Tuple[type, ...] = (Stream, _pychat.QueuedStream, _pychat.Server, _pychat.Client)
    for kind in kinds:
        for obj in live:
            if isinstance(obj, kind):
                try:
                    obj.close()
                except Exception:  # a close that fails must not stop the others
                    pass
    _pychat._wait_deferred(10.0)


atexit.register(_close_all)


_LOG_DESTINATIONS = ("logging", "stderr", "none")


def set_log_destination(destination: str = "logging",
                        level: Optional[Union[int, str]] = None) -> None:
    """Where libchat's log lines (gRPC's own included) go, from `level` up.

    "logging" (the default from import): the "pychat" logger, with gRPC's
    DEBUG/INFO/ERROR as logging.DEBUG/INFO/ERROR. "stderr": gRPC's own
    writer, as without pychat. "none": dropped. `level` is a logging level
    (int or name); None: from GRPC_VERBOSITY if set, else ERROR. Process-wide,
    like gRPC's log function: it also catches grpcio's lines in this process.
    """
    if destination not in _LOG_DESTINATIONS:
        raise ValueError(f"destination must be 'logging', 'stderr' or 'none', not {destination!r}")
    if level is None:
        level = {"DEBUG": logging.DEBUG, "INFO": logging.INFO}.get(
            os.environ.get("GRPC_VERBOSITY", "").upper(), logging.ERROR)
    if isinstance(level, str):
        named = logging.getLevelName(level.upper())
        if not isinstance(named, int):
            raise ValueError(f"unknown logging level {level!r}")
        level = named
    severity = 0 if level <= logging.DEBUG else 1 if level <= logging.INFO else 2
    if destination == "none":
        severity = 3
    _pychat._set_log_destination(destination == "logging", severity)


set_log_destination("logging")
