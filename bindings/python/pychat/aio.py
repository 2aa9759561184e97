"""pychat.aio: the Chat service for asyncio, on libchat's event queue.

    async with pychat.aio.Client(f"127.0.0.1:{port}") as client:
        async with client.chat() as stream:
            await stream.send("Sam", "Hi")
            stream.complete()
            async for reply in stream:                     # "Sam: Hi"
                print(reply)

Everything runs on the event loop's thread: each loop has one libchat event
queue (chat.h, "Event queue") whose descriptor it watches with add_reader;
no thread per stream or call, no polling. A send that finds the send queue
full awaits room (the WRITABLE event); nothing is dropped. See README.md.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
import weakref
from types import TracebackType
from typing import (Any, Callable, Coroutine, Deque, Dict, List, Optional, Tuple, Type,
                    Union)

from . import Metadata, _check_room, _check_switches, _default, _live
from . import Room as _SyncRoom
from . import Client as _SyncClient
from . import _control, _pychat
from ._errors import ChatError, ClosedError, StatusCode, _from_status
from ._metadata import CallMetadata
from ._security import Authenticator, PeerIdentity, Pem, server_security
from ._stats import Stats

__all__ = ["Client", "Stream", "Server", "Call", "Handler", "Room"]

_logger = logging.getLogger("pychat.aio")

_OPEN = _pychat.EVENT_OPEN
_MESSAGE = _pychat.EVENT_MESSAGE
_HALF_CLOSE = _pychat.EVENT_HALF_CLOSE
_CLOSE = _pychat.EVENT_CLOSE
_REPLY = _pychat.EVENT_REPLY
_END = _pychat.EVENT_END
_WRITABLE = _pychat.EVENT_WRITABLE

# Events taken per drain; a drain that returns fewer has emptied the queue.
_BATCH = 256

_MODES = {"echo": _pychat.MODE_ECHO, "broadcast": _pychat.MODE_BROADCAST}


def _pairs(metadata: Optional[Metadata]) -> List[Tuple[str, Union[str, bytes]]]:
    if metadata is None:
        return []
    if isinstance(metadata, collections.abc.Mapping):
        return list(metadata.items())
    return [(key, value) for key, value in metadata]


def _status_error(code: int, details: str) -> ChatError:
    return _from_status(code, details)


# --------------------------------------------------------------------------
# The loop's side: one EventQueue per reader, readers per loop.


class _Target:
    """What a key's events go to: a client stream or a server call."""

    def _event(self, kind: int, a: Any, b: Any) -> None:
        raise NotImplementedError


class _Reader:
    """One EventQueue, watched by its loop with add_reader. Client streams
    share the loop's main reader; a server takes a reader of its own only
    when the main one already serves another server (an OPEN event does not
    tell which server the call came to)."""

    def __init__(self, hub: _Hub) -> None:
        self.hub = hub
        self.queue = _pychat.EventQueue()
        self.fd = self.queue.fileno()
        self.targets: Dict[int, _Target] = {}
        self.server: Optional[Server] = None  # whose calls open here
        self.users = 0
        hub.loop.add_reader(self.fd, self.on_readable)

    def acquire(self) -> None:
        self.users += 1

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.close()

    def close(self) -> None:
        if self.queue.closed:
            return
        self.hub.forget(self)
        try:
            self.hub.loop.remove_reader(self.fd)
        except Exception:  # the loop is gone already
            pass
        self.queue.close()
        self.targets.clear()

    def on_readable(self) -> None:
        """Drains until the queue is empty. Replies, the hot path, are
        handled here; everything else goes to the target's _event."""
        drain = self.queue.drain
        targets = self.targets
        while True:
            events = drain(_BATCH)
            for kind, key, a, b in events:
                target = targets.get(key)
                try:
                    if kind == _REPLY:
                        if target is not None:
                            stream: _StreamCore = target  # type: ignore[assignment]
                            stream.replies.append(a)
                            if stream.waiters:
                                stream.wake()
                    elif target is not None:
                        target._event(kind, a, b)
                    elif kind == _OPEN:
                        self.open(key, a)
                except Exception:  # a bug here must not lose the rest of the batch
                    _logger.exception("pychat.aio: handling event %d of key %d failed", kind, key)
            if len(events) < _BATCH:
                return

    def open(self, key: int, native: _pychat.Call) -> None:
        server = self.server
        if server is None:  # cannot happen: a server's calls end before it goes
            native.fail(StatusCode.UNAVAILABLE, "server is closing")
            return
        self.targets[key] = server._open(key, native)


class _Hub:
    """The readers of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.main: Optional[_Reader] = None
        self.others: List[_Reader] = []

    def client_reader(self) -> _Reader:
        if self.main is None:
            self.main = _Reader(self)
        return self.main

    def server_reader(self, server: Server) -> _Reader:
        if self.main is None:
            self.main = _Reader(self)
        reader = self.main
        if reader.server is not None:
            reader = _Reader(self)
            self.others.append(reader)
        reader.server = server
        return reader

    def forget(self, reader: _Reader) -> None:
        if reader is self.main:
            self.main = None
        elif reader in self.others:
            self.others.remove(reader)


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub]" = weakref.WeakKeyDictionary()


def _hub() -> _Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = _Hub(loop)
    return hub


# --------------------------------------------------------------------------
# Sends that await room: shared by client streams and server calls.


class _Sender:
    """Orders sends that found the send queue full: each waits for the
    WRITABLE event its refusal caused, in arrival order, and later sends
    queue behind them so that messages go out in the order sent."""

    __slots__ = ("loop", "blocked", "lock", "writable")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.blocked = 0  # sends in wait()
        self.lock: Optional[asyncio.Lock] = None
        self.writable: Optional[asyncio.Future[None]] = None

    def wake(self) -> None:
        """WRITABLE (or the end): the waiting send tries again."""
        w = self.writable
        if w is not None:
            self.writable = None
            if not w.done():
                w.set_result(None)

    async def wait(self, attempt: Callable[[], int]) -> int:
        """Retries `attempt` (0 sent, 1 full, else taken no more) each time
        the queue has room, in turn with other waiting sends. Returns 0 or the
        code that ended it."""
        self.blocked += 1
        try:
            if self.lock is None:
                self.lock = asyncio.Lock()
            async with self.lock:
                while True:
                    # Tried again first: the WRITABLE of an earlier refusal
                    # may have gone to the send before this one.
                    rc = attempt()
                    if rc != 1:
                        return rc
                    w = self.writable
                    if w is None or w.done():
                        w = self.writable = self.loop.create_future()
                    await w
        finally:
            self.blocked -= 1


# --------------------------------------------------------------------------
# Client


class _StreamCore(_Target):
    """A stream's state, reachable from its reader. The Stream the user holds
    refers to it, not the other way round, so a Stream dropped unclosed is
    collected, and its __del__ cancels the call."""

    def __init__(self, reader: _Reader, native: _pychat.QueuedStream) -> None:
        self.reader = reader
        self.loop = reader.hub.loop
        self.native = native
        self.key = native.key
        self.replies: Deque[str] = collections.deque()
        self.waiters: List[asyncio.Future[None]] = []
        self.sender = _Sender(self.loop)
        self.end: Optional[Tuple[int, str]] = None  # the final status
        self.ended: Optional[asyncio.Future[None]] = None  # set at END, made on demand
        self.completed = False  # complete() was called
        self.complete_pending = False  # ... while sends were still waiting for room
        self.cancelled = False
        self.closed = False
        # The server's (initial, trailing) metadata, kept at END.
        self.metadata: Optional[Tuple[Optional[CallMetadata], Optional[CallMetadata]]] = None
        reader.acquire()
        reader.targets[self.key] = self

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _event(self, kind: int, a: Any, b: Any) -> None:
        if kind == _WRITABLE:
            self.sender.wake()
        elif kind == _END:
            self.finish(a, b)

    def server_metadata(self, which: int) -> Optional[CallMetadata]:
        if self.metadata is not None:
            return self.metadata[which]
        if self.closed:
            raise ClosedError("stream is closed")
        return self.native._server_metadata(which)

    def finish(self, code: int, details: str) -> None:
        """The END event: the stream is over and its handle freed."""
        if self.end is None:
            self.end = (code, details)
        self.reader.targets.pop(self.key, None)
        # Kept: the server's metadata is final now, and goes with the handle.
        if not self.native.closed:
            self.metadata = (self.native._server_metadata(0), self.native._server_metadata(1))
        self.native.close()  # the call has ended: nothing to wait for
        self.wake()
        self.sender.wake()
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(None)
        self.reader.release()

    # Sending

    async def send(self, name: str, message: str) -> None:
        if self.completed or self.closed:
            raise ClosedError("stream is closed" if self.closed else "stream was completed")
        if self.end is not None:
            await self.raise_taken_no_more()
        rc = 1
        if self.sender.blocked == 0:
            rc = self.native.try_send(name, message)
            if rc == 0:
                return
        if rc == 1:
            try:
                rc = await self.sender.wait(lambda: self.attempt(name, message))
            finally:  # also when the awaiting task is cancelled
                self.after_blocked_send()
        if rc != 0:
            await self.raise_taken_no_more()

    def attempt(self, name: str, message: str) -> int:
        if self.closed or self.end is not None:
            return 2  # the handle may be freed already
        return self.native.try_send(name, message)

    def after_blocked_send(self) -> None:
        if self.complete_pending and self.sender.blocked == 0:
            self.complete_pending = False
            if not self.closed and self.end is None:
                self.native.complete()

    async def raise_taken_no_more(self) -> None:
        """The library refused a send: say why, as the sync API does."""
        if self.closed:
            raise ClosedError("stream was closed while sending")
        if not self.cancelled and not self.completed and self.end is None:
            # The server ended the call: its status is on its way (END).
            if self.ended is None:
                self.ended = self.loop.create_future()
            await asyncio.shield(self.ended)
        if self.end is not None and self.end[0] != 0 and not self.cancelled:
            raise _status_error(*self.end)
        raise ClosedError("stream was cancelled" if self.cancelled else
                          "stream was completed" if self.completed else "stream has ended")

    def complete(self) -> None:
        if self.closed:
            raise ClosedError("stream is closed")
        if self.cancelled:
            raise ClosedError("stream was cancelled")
        if self.completed or self.end is not None:
            return
        self.completed = True
        if self.sender.blocked:
            self.complete_pending = True  # after the sends waiting for room
        else:
            self.native.complete()

    def cancel(self) -> None:
        if self.closed or self.end is not None or self.cancelled:
            return
        self.cancelled = True
        self.native.cancel()

    def close(self) -> None:
        """Cancels if still open; the handle is freed at its END (at once
        when the call has ended). Waiting receivers get ClosedError."""
        if self.closed:
            return
        self.closed = True
        # Replies still on their way until the END are dropped as they come.
        self.replies = collections.deque(maxlen=0)
        if self.end is None:
            self.native.cancel()  # END follows promptly
        self.wake()
        self.sender.wake()

    def abandon(self) -> None:
        """The Stream was dropped unclosed: close() on the loop's thread."""
        if self.closed:
            return
        if threading.get_ident() == self.reader.hub.thread:
            self.close()
            return
        try:
            self.loop.call_soon_threadsafe(self.close)
        except RuntimeError:  # the loop is closed: free it here, no END will be drained
            self.closed = True
            self.native.close()

    # Receiving

    def take(self) -> str:
        """The oldest reply, now the user's: its room in the stream's
        receive bound (recv_queue_limit / recv_queue_bytes) goes back, so
        libchat reads on. Replies not taken stay counted: the server is
        slowed instead of its replies piling up here."""
        reply = self.replies.popleft()
        self.native.consumed(1)  # a no-op once the stream has ended
        return reply

    async def recv(self, timeout: Optional[float]) -> Optional[str]:
        if self.replies:
            return self.take()
        if timeout is not None and not timeout >= 0:
            raise ValueError("timeout must be a number >= 0 or None")
        deadline = self.loop.time() + timeout if timeout is not None else 0.0
        handle: Optional[asyncio.TimerHandle] = None
        try:
            while True:
                if self.closed:
                    raise ClosedError("stream is closed")
                if self.end is not None:
                    code, details = self.end
                    if code == 0:
                        return None
                    raise _status_error(code, details)
                if timeout == 0:
                    raise TimeoutError("no reply within the timeout")
                w: asyncio.Future[None] = self.loop.create_future()
                self.waiters.append(w)
                if timeout is not None:
                    if handle is not None:
                        handle.cancel()
                    handle = self.loop.call_at(deadline, _expire, self, w)
                try:
                    await w
                except _TimedOut:
                    if self.replies:
                        return self.take()
                    raise TimeoutError("no reply within the timeout") from None
                finally:
                    if not w.done():  # cancelled
                        w.cancel()
                    if w in self.waiters:
                        self.waiters.remove(w)
                if self.replies:
                    return self.take()
        finally:
            if handle is not None:
                handle.cancel()


class _TimedOut(Exception):
    """Internal: a recv's timer fired."""


def _expire(core: _StreamCore, w: asyncio.Future[None]) -> None:
    if not w.done():
        w.set_exception(_TimedOut())
    if w in core.waiters:
        core.waiters.remove(w)


class Stream:
    """One /Chat/chat call of an asyncio Client (client.chat()).

    Use it from the loop's thread only. `async with` closes it (cancelling
    the call if it is still open); so does dropping it unclosed."""

    __slots__ = ("_core", "__weakref__")

    def __init__(self, core: _StreamCore) -> None:
        self._core = core

    def send(self, name: str, message: str) -> Coroutine[Any, Any, None]:
        """Queues one ChatMessage. When the send queue is full it waits for
        room (never blocking the loop, never dropping). Sends go out in the
        order they were awaited. ClosedError after complete(), cancel() or
        close(); after the server ended the call, its ChatError."""
        return self._core.send(name, message)

    def complete(self) -> None:
        """Half-closes once the messages sent (and those still awaiting room)
        are written; replies keep arriving. Idempotent."""
        self._core.complete()

    def cancel(self) -> None:
        """Cancels the call: recv raises Cancelled after the replies that came
        before. Idempotent."""
        self._core.cancel()

    def close(self) -> None:
        """Cancels the call if it is still open and frees it (at once when it
        has ended). Idempotent; later use raises ClosedError."""
        self._core.close()

    def recv(self, timeout: Optional[float] = None) -> Coroutine[Any, Any, Optional[str]]:
        """The next reply (str), or None once the server completed and every
        reply was taken. Raises the ChatError of an error end (after the
        replies before it), TimeoutError when `timeout` seconds pass first."""
        return self._core.recv(timeout)

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> str:
        core = self._core
        if core.replies:
            return core.take()
        reply = await core.recv(None)
        if reply is None:
            raise StopAsyncIteration
        return reply

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._core.close()

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is not None and not core.closed:
            core.abandon()

    @property
    def code(self) -> Optional[StatusCode]:
        """The final StatusCode once the call has ended, else None."""
        end = self._core.end
        return StatusCode(end[0]) if end is not None else None

    @property
    def details(self) -> Optional[str]:
        """The final status details once the call has ended, else None."""
        end = self._core.end
        return end[1] if end is not None else None

    @property
    def closed(self) -> bool:
        return self._core.closed

    @property
    def initial_metadata(self) -> Optional[CallMetadata]:
        """The server's initial metadata, or None until the first reply (or
        the end) has come."""
        return self._core.server_metadata(0)

    @property
    def trailing_metadata(self) -> Optional[CallMetadata]:
        """The server's trailing metadata, or None until the call has ended."""
        return self._core.server_metadata(1)

    def __repr__(self) -> str:
        core = self._core
        state = "closed" if core.closed else "open" if core.end is None else "ended"
        code = "" if core.end is None else " " + StatusCode(core.end[0]).name
        return f"<pychat.aio.Stream {state}{code}>"


class Client:
    """An asyncio client of the Chat service at `target` ("host:port",
    "http://host:port" or a gRPC target), bound to the running event loop.
    Options as pychat.Client. It connects lazily, one HTTP/2 connection per
    client. `async with` closes it; streams already opened stay usable."""

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
        self._hub = _hub()
        self._native: Optional[_SyncClient] = _SyncClient(
            target, max_message_bytes=max_message_bytes, send_queue_limit=send_queue_limit,
            recv_queue_limit=recv_queue_limit, send_queue_bytes=send_queue_bytes,
            recv_queue_bytes=recv_queue_bytes, keepalive=keepalive, tls=tls, tls_ca=tls_ca,
            tls_cert=tls_cert, tls_key=tls_key, tls_server_name=tls_server_name, token=token,
            allow_insecure_token=allow_insecure_token, compression=compression)
        self.target = target
        # Held while open, so streams opened one after another reuse the queue.
        self._reader: Optional[_Reader] = self._hub.client_reader()
        self._reader.acquire()

    def chat(self, timeout: Optional[float] = None, metadata: Optional[Metadata] = None, *,
             wait_for_ready: bool = False, token: Optional[str] = None,
             compression: Optional[str] = None) -> Stream:
        """Opens a /Chat/chat stream; never blocks. timeout: the call's
        deadline in seconds (DeadlineExceeded). metadata: a mapping or pairs,
        str values, bytes for keys ending in "-bin". token: this stream's
        bearer token instead of the client's. compression: as
        pychat.Client.chat."""
        if self._native is None or self._reader is None:
            raise ClosedError("client is closed")
        reader = self._reader
        native = self._native._open_queued(reader.queue, timeout, _pairs(metadata),
                                           wait_for_ready, token,
                                           _control.compression(compression))
        _live.add(native)
        return Stream(_StreamCore(reader, native))

    async def close(self) -> None:
        """Frees the client (off the loop: it may wait for a connection
        attempt). Streams already opened stay usable. Idempotent."""
        native, self._native = self._native, None
        reader, self._reader = self._reader, None
        if native is not None:
            await asyncio.get_running_loop().run_in_executor(None, native.close)
        if reader is not None:
            reader.release()

    @property
    def closed(self) -> bool:
        return self._native is None

    def stats(self) -> Stats:
        """As pychat.Client.stats."""
        if self._native is None:
            raise ClosedError("client is closed")
        return self._native.stats()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<pychat.aio.Client {self.target!r}{' closed' if self.closed else ''}>"


# --------------------------------------------------------------------------
# Server


class Call(_Target):
    """One server-side stream, as handed to a pychat.aio handler. The same
    object in every method of the stream; use it from the loop's thread."""

    def __init__(self, server: Server, key: int, native: _pychat.Call) -> None:
        self._server = server
        self._key = key
        self._native = native
        self._sender = _Sender(server._loop)
        self._inbox: Deque[Tuple[str, Callable[..., Any], Tuple[Any, ...]]] = collections.deque()
        self._task: Optional[asyncio.Task[None]] = None
        self._end: Optional[Tuple[int, str]] = None
        self._given_up = False  # a handler method raised: only on_close still runs
        self._done = False

    @property
    def id(self) -> int:
        """Unique within the server, from 1 in arrival order."""
        return self._native.id

    @property
    def peer(self) -> str:
        """The client's address ("ipv4:127.0.0.1:41234")."""
        return self._native.peer

    @property
    def metadata(self) -> CallMetadata:
        """The client's metadata: a read-only mapping, keys lower-case."""
        return self._native.metadata

    @property
    def principal(self) -> str:
        """What the server's authenticate admitted the stream as ("" without one)."""
        return self._native.principal

    @property
    def peer_identity(self) -> Optional[PeerIdentity]:
        """The client certificate's subject and SANs (mTLS); None without one."""
        return self._native.peer_identity

    @property
    def time_left(self) -> Optional[float]:
        """Seconds left before the call's deadline (the client's grpc-timeout,
        or Ballerina's deadline header, which the server enforces), 0.0 once
        passed; None when it has none."""
        return self._native.time_left

    @property
    def ended(self) -> bool:
        """True once the stream has ended (its on_close is due or has run)."""
        return self._end is not None

    async def send(self, text: str) -> None:
        """Queues one reply; when the send queue is full, waits for room
        (never blocking the loop). ClosedError once the stream has ended."""
        sender = self._sender
        if sender.blocked == 0 and self._native._try_send(text):
            return
        native = self._native
        rc = await sender.wait(lambda: 0 if native._try_send(text) else 1)
        assert rc == 0  # _try_send raises ClosedError when the stream is over

    def complete(self) -> None:
        """Ends the stream with OK once the queued replies are written.
        Idempotent; a no-op once the stream has ended."""
        self._native.complete()

    def fail(self, code: Union[StatusCode, int], details: str = "") -> None:
        """Ends the stream with `code` (not OK) and `details`; queued replies
        are dropped."""
        self._native.fail(code, details)

    def add_initial_metadata(self, key: str, value: Union[str, bytes]) -> None:
        """Adds metadata sent with the first reply: call it before the first
        send (in on_open, say). bytes for keys ending in "-bin"."""
        self._native.add_initial_metadata(key, value)

    def add_trailing_metadata(self, key: str, value: Union[str, bytes]) -> None:
        """Adds metadata sent with the status: call it before complete() or fail()."""
        self._native.add_trailing_metadata(key, value)

    def __repr__(self) -> str:
        return f"<pychat.aio.Call id={self.id} peer={self.peer!r}>"

    # Events, in order, from the reader.

    def _event(self, kind: int, a: Any, b: Any) -> None:
        server = self._server
        if kind == _MESSAGE:
            if server._on_message is not None and not self._given_up:
                self._post("on_message", server._on_message, (self, a, b))
            else:
                self._consumed("on_message")  # ignored: done with it at once
        elif kind == _WRITABLE:
            self._sender.wake()
        elif kind == _HALF_CLOSE:
            if server._on_complete is not None:
                self._post("on_complete", server._on_complete, (self,))
            else:
                self._post("on_complete", Call.complete, (self,))
        elif kind == _CLOSE:
            self._end = (a, b)
            self._sender.wake()  # a send waiting for room gets ClosedError
            server._reader_targets_pop(self._key)
            if server._on_close is not None:
                self._post("on_close", server._on_close, (self, StatusCode(a), b))
            self._post("", _finished, (self,))

    def _consumed(self, what: str) -> None:
        """Done with a method of the stream: if it was an on_message (run,
        raised, skipped or cancelled), its message goes back to the call's
        window. The server holds each drained message until then
        (hold_until_consumed), so what waits here for a busy handler stays
        within recv_window / recv_window_bytes and the client is slowed.
        Methods finish in order, so this is always the oldest held."""
        if what == "on_message":
            try:
                self._native._consumed(1)
            except Exception:  # a bug, not the handler's: keep the call going
                _logger.exception("pychat.aio: call %d: reporting a message consumed failed",
                                  self.id)

    def _post(self, what: str, method: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        """Runs the method now if the call is idle (plain functions complete
        here; a coroutine continues in a task), else after the ones before."""
        if self._task is not None or self._inbox:
            self._inbox.append((what, method, args))
            return
        if self._given_up and what in ("on_message", "on_complete"):
            self._consumed(what)
            return
        try:
            result = method(*args)
        except Exception as e:
            self._consumed(what)
            self._raised(what, e)
            return
        if result is not None and inspect.isawaitable(result):
            self._task = self._server._loop.create_task(self._run(what, result))
        else:
            self._consumed(what)

    async def _run(self, what: str, first: Any) -> None:
        running = what  # the method in progress, reported consumed when it ends
        try:
            try:
                await first
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._consumed(running)
                running = ""
                self._raised(what, e)
            self._consumed(running)
            running = ""
            while self._inbox:
                what, method, args = self._inbox.popleft()
                if self._given_up and what in ("on_message", "on_complete"):
                    self._consumed(what)
                    continue
                running = what
                try:
                    result = method(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self._consumed(running)
                    running = ""
                    self._raised(what, e)
                self._consumed(running)
                running = ""
        except asyncio.CancelledError:
            # The server stopped and this method outlived the grace: only
            # on_close (plain functions run; coroutines are not awaited) and
            # the bookkeeping remain.
            self._consumed(running)
            for what, method, args in self._inbox:
                self._consumed(what)
                if what in ("on_close", ""):
                    try:
                        result = method(*args)
                        if asyncio.iscoroutine(result):
                            result.close()
                    except Exception as e:
                        self._raised(what, e)
            self._inbox.clear()
        finally:
            self._task = None

    def _raised(self, what: str, e: Exception) -> None:
        """A handler method raised. A ChatError fails the call with its code
        (a deliberate error reply). ClosedError on a call that has ended is
        the client's doing (it cancelled, the server cut it). Anything else is
        logged, and the call fails with INTERNAL."""
        if what == "on_close":
            _logger.error("pychat.aio handler: on_close raised %s", type(e).__name__,
                          exc_info=e)
            return
        self._given_up = True
        if isinstance(e, ChatError) and e.code != StatusCode.OK:
            try:
                self._native.fail(e.code, e.details)
            except ClosedError:
                pass
            return
        if isinstance(e, ClosedError) and self._end is not None:
            _logger.debug("pychat.aio handler: %s raised ClosedError on an ended call", what)
            return
        _logger.error("pychat.aio handler: %s raised %s", what, type(e).__name__, exc_info=e)
        try:
            self._native.fail(StatusCode.INTERNAL, f"{what} raised {type(e).__name__}")
        except ClosedError:
            pass


def _finished(call: Call) -> None:
    call._done = True
    call._server._call_done(call)


def _method(handler: object, name: str) -> Optional[Callable[..., Any]]:
    method = getattr(handler, name, None)
    if method is not None and not callable(method):
        raise TypeError(f"handler.{name} must be callable")
    # A Handler default not overridden does what a missing method does;
    # skipping it spares a task per message.
    if getattr(getattr(method, "__func__", None), "_pychat_default", False):
        return None
    return method


class Handler:
    """Base class for the handler of a pychat.aio Server
    (pychat.aio.Server(address, handler=MyHandler())). Override any of the
    methods, as coroutine functions (async def); the defaults do what the
    server does for a handler without that method.

    Every method runs on the event loop's thread, the one that created the
    server. The methods of one call run one at a time and in order
    (on_open, on_message..., on_complete, on_close): the next starts when
    the previous one's coroutine is done; different calls run concurrently.
    A message counts against its call's receive window until its on_message
    is done. Raising ChatError fails the call with its code; any other
    exception is logged (logger "pychat.aio") and fails it with INTERNAL.

    Subclassing is optional: any object with some of these methods, coroutine
    functions or plain ones, works as a handler (duck typing); this class
    documents and types that protocol.
    """

    @_default
    async def on_open(self, call: Call) -> None:
        """A client opened a stream (`call`, the same object in every method
        of this stream). Default: nothing."""

    @_default
    async def on_message(self, call: Call, name: str, message: str) -> None:
        """One ChatMessage arrived on `call`. Default: ignored."""

    @_default
    async def on_complete(self, call: Call) -> None:
        """The client half-closed: it sends no more. Default: call.complete(),
        ending the stream with OK once the queued replies are written."""
        call.complete()

    @_default
    async def on_close(self, call: Call, code: StatusCode, details: str) -> None:
        """The stream ended with `code` and `details` (CANCELLED when the
        client went away); always the last method of a call. `call` takes no
        more sends. Default: nothing."""


class Server:
    """A Chat server on the running event loop, listening on `address`
    ("127.0.0.1:0" picks a free port).

    With `handler`, a pychat.aio.Handler, or any object with some of these
    methods, each a coroutine function or a plain function:

        async def on_open(self, call): ...
        async def on_message(self, call, name, message): ...   # missing: ignored
        async def on_complete(self, call): call.complete()     # missing: this
        async def on_close(self, call, code, details): ...     # always last

    they run on the loop, one at a time per call and in order (open,
    messages, complete, close), different calls concurrently. Without a
    handler, mode "echo" (the default) or "broadcast" runs in libchat itself.
    Other options as pychat.Server (there are no dispatcher threads), TLS,
    health, reflection, room and authenticate included: authenticate stays a
    plain function (it runs on a transport thread before the stream opens)
    and gets a pychat.Call.
    An address it cannot listen on (in use, not local) raises OSError.

    Flow control: a message counts against its call's recv_window (messages)
    and recv_window_bytes until its on_message has finished (returned, its
    coroutine done, or raised), not only until the loop took it from libchat.
    So a handler that falls behind holds at most that much of its call here;
    libchat stops reading the call and HTTP/2 flow control slows the client's
    sends, and nothing fails. `async with` stops the server (5 s of grace,
    none when leaving on an exception)."""

    def __init__(self, address: str = "127.0.0.1:0", handler: Optional[object] = None, *,
                 mode: Optional[str] = None, max_message_bytes: Optional[int] = None,
                 send_queue_limit: Optional[int] = None, recv_window: Optional[int] = None,
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
        if handler is not None and mode not in (None, "custom"):
            raise ValueError("a handler goes with mode 'custom' (the default when one is given)")
        if handler is None and mode not in (None, *_MODES):
            raise ValueError(f"mode must be 'echo' or 'broadcast' without a handler, not {mode!r}")
        self._loop = asyncio.get_running_loop()
        self.address = address
        self.mode = "custom" if handler is not None else (mode or "echo")
        self._on_open = _method(handler, "on_open")
        self._on_message = _method(handler, "on_message")
        self._on_complete = _method(handler, "on_complete")
        self._on_close = _method(handler, "on_close")
        self._calls: Dict[int, Call] = {}  # open, or their handler methods still running
        self._idle: Optional[asyncio.Future[None]] = None  # set when _calls empties
        self._reader: Optional[_Reader] = None
        self._stopping: Optional[asyncio.Future[int]] = None
        options = (max_message_bytes, send_queue_limit, recv_window, None, keepalive,
                   send_queue_bytes, recv_window_bytes, max_memory_bytes, completion_queues)
        if handler is None:
            self._native: Optional[_pychat.Server] = _pychat.Server(
                address, _MODES[self.mode], None, *options, security=security, health=health,
                reflection=reflection, control=control, room=room,
                room_name=room_name)
        else:
            reader = _hub().server_reader(self)
            reader.acquire()
            try:
                self._native = _pychat.Server(address, _pychat.MODE_CUSTOM, None, *options,
                                              queue=reader.queue, security=security,
                                              health=health, reflection=reflection,
                                              control=control,
                                              room=room, room_name=room_name)
            except BaseException:
                reader.server = None
                reader.release()
                raise
            self._reader = reader
        _live.add(self._native)
        self._port = self._native.port

    @property
    def port(self) -> int:
        return self._port

    @property
    def closed(self) -> bool:
        return self._native is None

    def stats(self) -> Stats:
        """As pychat.Server.stats."""
        if self._native is None:
            raise ClosedError("server is closed")
        return Stats(*self._native._stats())

    async def stop(self, grace: float = 5.0) -> int:
        """Stops accepting streams, lets open ones finish for `grace` seconds,
        then cuts the rest with UNAVAILABLE; returns how many it cut (0 when
        already stopped). The loop keeps serving meanwhile (the stop runs on
        the default executor). Returns once every call's on_close has run;
        handler methods still running `grace` seconds after the calls ended
        are cancelled."""
        if not grace >= 0:
            raise ValueError("grace must be >= 0 seconds")
        if self._stopping is not None:
            await asyncio.shield(self._stopping)
            return 0
        native = self._native
        if native is None:
            return 0
        self._stopping = self._loop.create_future()
        try:
            cut = await self._loop.run_in_executor(None, native.stop, grace)
            # Every call has ended: their CLOSE events are queued. Let the
            # handlers finish, then cancel what is left.
            if self._calls:
                self._idle = self._loop.create_future()
                done, _ = await asyncio.wait([self._idle], timeout=max(grace, 0.1))
                if not done:
                    for call in list(self._calls.values()):
                        if call._task is not None:
                            call._task.cancel()
                    await asyncio.wait([self._idle], timeout=5.0)
            self._stopping.set_result(cut)
            return cut
        except BaseException as e:
            self._stopping.set_exception(e)
            self._stopping.exception()  # retrieved: a failed stop is raised here
            raise

    async def close(self) -> None:
        """Stops with no grace (if running) and frees the server."""
        await self.stop(0.0)
        native, self._native = self._native, None
        if native is not None:
            native.close()  # stopped: nothing left to wait for
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.server = None
            reader.release()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.stop(5.0 if exc_type is None else 0.0)
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"port={self._port}"
        return f"<pychat.aio.Server {self.mode} {self.address!r} {state}>"

    # From the reader and the calls.

    def _open(self, key: int, native: _pychat.Call) -> Call:
        call = Call(self, key, native)
        self._calls[key] = call
        if self._on_open is not None:
            call._post("on_open", self._on_open, (call,))
        return call

    def _reader_targets_pop(self, key: int) -> None:
        if self._reader is not None:
            self._reader.targets.pop(key, None)

    def _call_done(self, call: Call) -> None:
        self._calls.pop(call._key, None)
        if not self._calls and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)


class Room:
    """pychat.Room for asyncio handlers (see pychat.Room): publish, notice
    and join are coroutines. A room in this process runs them at once; a
    room on Redis in the loop's default executor, so the loop never waits
    for Redis's round trip. on_line runs on a library thread, not the loop:
    hand what it sees over with loop.call_soon_threadsafe."""

    def __init__(self, url: Optional[str] = None, name: str = "", *,
                 max_len: Optional[int] = None,
                 on_line: Optional[Callable[[str], None]] = None) -> None:
        self._room = _SyncRoom(url, name, max_len=max_len, on_line=on_line)

    async def _run(self, fn: Callable[..., None], *args: Any) -> None:
        if self._room.url is None:
            fn(*args)
        else:
            await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def publish(self, name: str, message: str) -> None:
        await self._run(self._room.publish, name, message)

    async def notice(self, text: str) -> None:
        await self._run(self._room.notice, text)

    async def join(self, call: Call, replay: int = 0) -> None:
        await self._run(self._room.join, call, replay)

    def leave(self, call: Call) -> None:
        self._room.leave(call)

    @property
    def members(self) -> int:
        return self._room.members

    async def close(self) -> None:
        """Stops the room (a publish to Redis in flight finishes first)."""
        await self._run(self._room.close)

    async def __aenter__(self) -> Room:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.close()
