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
from ._security import Authenticator, PeerIdentity, Pem, client_security, server_security
from ._stats import Stats

__all__ = [
    "Server", "Client", "Stream", "Call", "CallMetadata", "Handler", "StatusCode", "ChatError",
    "ClosedError", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    "library_version", "abi_version", "set_log_destination", "PeerIdentity",
    "Stats", "Room",
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
_live: "weakref.WeakSet[Union[_pychat.Server, _pychat.Client, Stream, _pychat.QueuedStream, _pychat.Room]]" = \
    weakref.WeakSet()


def _check_switches(**switches: object) -> None:
    # bool only: 1 or "yes" would pass pybind11's conversion silently.
    for name, value in switches.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be bool, not {type(value).__name__}")


def _check_room(room: object, room_name: object) -> None:
    # str only: pybind11 would take bytes too; the URL itself is checked by
    # the library (BadArgument).
    for name, value in (("room", room), ("room_name", room_name)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be str, not {type(value).__name__}")


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

    TLS: tls_cert and tls_key (PEM text as str or bytes, or a file's path)
    make it a TLS server; tls_ca (likewise) asks clients for a certificate
    chaining to it, client_cert "require" (the default with tls_ca) or
    "request" (verified when sent). call.peer_identity then gives the
    client certificate's subject and SANs.

    authenticate(call, token): runs before a stream opens (before on_open,
    before any echo or broadcast reply) on a transport thread, so keep it
    quick. token: the client's bearer token, None without one. Return a str
    (the principal, then call.principal) to admit; None refuses with
    UNAUTHENTICATED; raise pychat.Unauthenticated("why") or
    pychat.PermissionDenied("why") (any ChatError) to refuse with that
    status. Any other exception goes to sys.unraisablehook and refuses with
    INTERNAL. `call` offers peer, metadata and peer_identity; it takes no
    sends.

    health=True serves grpc.health.v1.Health ("" and "Chat" SERVING, then
    NOT_SERVING from the moment stop() begins); reflection=True serves gRPC
    server reflection, so grpcurl-style tools list and describe Chat.

    room="redis://HOST:PORT[/DB]" with room_name="lobby" (mode "broadcast"):
    the room is a Redis stream shared by every server naming it, and all
    their members see one order. While Redis cannot take a message, its
    sender's stream ends with UNAVAILABLE ("room unavailable: ...").
    """

    def __init__(self, address: str, *, mode: Optional[str] = None,
                 handler: Optional[object] = None, max_message_bytes: Optional[int] = None,
                 send_queue_limit: Optional[int] = None, recv_window: Optional[int] = None,
                 dispatcher_threads: Optional[int] = None,
                 keepalive: Optional[float] = None, send_queue_bytes: Optional[int] = None,
                 recv_window_bytes: Optional[int] = None,
                 max_memory_bytes: Optional[int] = None,
                 completion_queues: Optional[int] = None, tls_cert: Optional[Pem] = None,
                 tls_key: Optional[Pem] = None, tls_ca: Optional[Pem] = None,
                 client_cert: Optional[str] = None,
                 authenticate: Optional[Authenticator] = None, health: bool = False,
                 reflection: bool = False,
                 compression: Optional[str] = None, max_streams: Optional[int] = None,
                 max_concurrent_streams: Optional[int] = None,
                 max_connection_age: Optional[float] = None,
                 max_connection_age_grace: Optional[float] = None,
                 max_connection_idle: Optional[float] = None, room: Optional[str] = None,
                 room_name: Optional[str] = None) -> None:
        """compression: "gzip" or "deflate" compresses every reply (gRPC
        clients accept both; None or "none": uncompressed). max_streams:
        open streams the server takes (more are refused, ResourceExhausted).
        max_concurrent_streams: HTTP/2 streams per connection (a client
        waits for a slot). max_connection_age / _grace / max_connection_idle:
        seconds, for load balancers (GOAWAY to old or idle connections)."""
        if not isinstance(address, str):
            raise TypeError(f"address must be str, not {type(address).__name__}")
        security = server_security(tls_cert, tls_key, tls_ca, client_cert, authenticate)
        _check_switches(health=health, reflection=reflection)
        control = _control.options(
            compression=compression, max_streams=max_streams,
            max_concurrent_streams=max_concurrent_streams,
            max_connection_age=max_connection_age,
            max_connection_age_grace=max_connection_age_grace,
            max_connection_idle=max_connection_idle)
        _check_room(room, room_name)
        if mode is None:
            mode = "echo" if handler is None else "custom"
        if mode not in _MODES:
            raise ValueError(f"mode must be 'echo', 'broadcast' or 'custom', not {mode!r}")
        if (handler is None) != (mode != "custom"):
            raise ValueError("a handler goes with mode 'custom' (the default when one is given)")
        super().__init__(address, _MODES[mode], handler, max_message_bytes, send_queue_limit,
                         recv_window, dispatcher_threads, keepalive, send_queue_bytes,
                         recv_window_bytes, max_memory_bytes, completion_queues,
                         security=security, health=health,
                         reflection=reflection, control=control,
                         room=room, room_name=room_name)
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
    or a gRPC target ("dns:///host:port", "unix:/path"), or "https://host:port"
    for TLS. It connects lazily, on the first stream, with one HTTP/2
    connection per client. close() frees it; streams already opened stay
    usable.

    TLS (with https://, tls=True, or any tls_* option): tls_ca, the roots the
    server must chain to (None: the system's, or $GRPC_DEFAULT_SSL_ROOTS_FILE_PATH);
    tls_cert and tls_key, a client certificate (mTLS); each PEM text (str or
    bytes) or a file's path. tls_server_name: the name to verify instead of
    the target's host. token: a bearer token sent on every stream
    ("authorization: Bearer <token>"; chat(token=...) overrides it), refused
    (ValueError) over plaintext to a host that is not loopback unless
    allow_insecure_token."""

    def __init__(self, target: str, *, max_message_bytes: Optional[int] = None,
                 send_queue_limit: Optional[int] = None,
                 recv_queue_limit: Optional[int] = None,
                 send_queue_bytes: Optional[int] = None,
                 recv_queue_bytes: Optional[int] = None,
                 keepalive: Optional[float] = None, tls: bool = False,
                 tls_ca: Optional[Pem] = None, tls_cert: Optional[Pem] = None,
                 tls_key: Optional[Pem] = None, tls_server_name: Optional[str] = None,
                 token: Optional[str] = None, allow_insecure_token: bool = False,
                 compression: Optional[str] = None) -> None:
        """keepalive: seconds between HTTP/2 pings while streams are open, so
        a dead or frozen server ends them with UNAVAILABLE (None: off; at
        least 1.0 against libchat servers). compression: "gzip" or "deflate"
        compresses every stream's messages (chat() may choose per stream)."""
        if not isinstance(target, str):
            raise TypeError(f"target must be str, not {type(target).__name__}")
        security = client_security(tls, tls_ca, tls_cert, tls_key, tls_server_name, token,
                                   allow_insecure_token)
        control = _control.options(compression=compression)
        super().__init__(target, max_message_bytes, send_queue_limit, recv_queue_limit,
                         send_queue_bytes, recv_queue_bytes, keepalive, security=security,
                         control=control)
        _live.add(self)

    def chat(self, timeout: Optional[float] = None, metadata: Optional[Metadata] = None, *,
             wait_for_ready: bool = False, token: Optional[str] = None,
             compression: Optional[str] = None) -> Stream:
        """Opens a /Chat/chat stream. Never blocks: a server that cannot be
        reached ends the stream with UNAVAILABLE (seen by recv), unless
        wait_for_ready. timeout: the call's deadline in seconds (DEADLINE_EXCEEDED
        when it passes). metadata: str values, bytes for keys ending in "-bin".
        token: this stream's bearer token instead of the client's.
        compression: this stream's ("none", "deflate", "gzip"; None: the client's)."""
        if metadata is None:
            pairs = []
        elif isinstance(metadata, Mapping):
            pairs = list(metadata.items())
        else:
            pairs = [(key, value) for key, value in metadata]
        stream = self._open(timeout, pairs, wait_for_ready, token,
                            _control.compression(compression))
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


class Room(_pychat.Room):
    """A room: every line published reaches all its members in one order.

    A custom server's handler decides who joins and what is published, so
    it can authenticate, filter or rewrite and still share one room, in
    this process (url None) or across servers and machines on Redis
    (url "redis://HOST:PORT[/DB]", name naming the stream "room:<name>")::

        room = pychat.Room("redis://127.0.0.1:6379", "lobby")

        class Lobby(pychat.Handler):
            def on_open(self, call):
                room.join(call, replay=10)    # the last 10 lines first
            def on_message(self, call, name, message):
                if "spam" not in message:
                    room.publish(name, message)

    publish(name, message) sends "<name>: <message>" (notice(text) the text
    alone) to every member: in this process before it returns; on Redis
    once Redis acknowledged it, waiting for one round trip (2 s at most),
    and raising pychat.Unavailable while Redis cannot take it. A member
    whose send queue is full is cut with RESOURCE_EXHAUSTED. join(call,
    replay=0) makes a call a member (replay: on Redis, the last lines first,
    0..1000); it leaves with leave(call) or when its stream ends. members is
    the number of members whose streams are open. on_line(line), if given,
    sees every line in the room's order, on the publisher's thread (in this
    process) or the room's reader thread (Redis); it must not publish to,
    join or close this room (RuntimeError). close() (or leaving a with
    block) stops the room; members' streams stay open. In pychat.aio
    handlers, publishing to a room on Redis blocks the loop for that round
    trip: hand it to an executor where that matters.
    """

    def __init__(self, url: Optional[str] = None, name: str = "", *,
                 max_len: Optional[int] = None,
                 on_line: Optional[Callable[[str], None]] = None) -> None:
        super().__init__(url, name, max_len, on_line)
        self.url = url
        _live.add(self)

    def join(self, call: Any, replay: int = 0) -> None:
        super().join(getattr(call, "_native", call), replay)  # a pychat.aio.Call too

    def leave(self, call: Any) -> None:
        super().leave(getattr(call, "_native", call))

    def __enter__(self) -> Room:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()


def _close_all() -> None:
    live = list(_live)
    # Rooms first: their readers stop calling on_line. Then streams: threads
    # blocked on them wake up and leave. Then servers, which run their last
    # handler calls now, while that is still possible.
    kinds: Tuple[type, ...] = (_pychat.Room, Stream, _pychat.QueuedStream, _pychat.Server,
                               _pychat.Client)
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
