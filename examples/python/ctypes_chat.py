#!/usr/bin/python3
"""ctypes_chat: libchat from Python with ctypes alone (no pychat), on the
event queue: one selector loop over the queue's file descriptor drives both
a custom-mode server and a client stream; no library thread ever runs
Python code (docs/embedding.md explains why that matters).

    ctypes_chat.py [--lib PATH]                       serve on 127.0.0.1:0, run
                                                      the seed against it, print
                                                      the three replies
    ctypes_chat.py --serve HOST:PORT [--grace-ms N]   serve only, until SIGINT or
                                                      SIGTERM; the first stdout
                                                      line is "listening on HOST:PORT"
    ctypes_chat.py --target HOST:PORT                 run the seed against any
                                                      Chat server

The library is --lib, else $CHAT_LIB, else "libchat.so.1" (the loader's
search path). The server answers the seed contract: each message with
"<name>: <message>", and completes the call when the client half-closes.
The seed sends Sam/Hi, Ann/Hey, John/Hello, half-closes and prints each
reply. Exits 0 when the stream (or the server) ended cleanly, 1 otherwise.

The pitfalls, done right here:
  - CDLL, not PyDLL: CDLL releases the GIL around every call, so a call that
    waits (chat_server_stop, chat_set_log_handler) cannot deadlock against a
    library thread that wants the GIL to run a Python callback.
  - argtypes and restype for every function used: without them ctypes
    passes Python ints as C int and truncates 64-bit pointers and sizes.
  - The one callback (the log handler) is a CFUNCTYPE object held by a
    module global, alive as long as the library may call it and no part of
    a reference cycle, and it catches every exception: ctypes prints and
    swallows an exception raised inside a callback.
  - Errors are read per handle (chat_stream_error, chat_call_error...), not
    from the thread-local chat_last_error, which only holds for the thread
    that made the failing call.
  - Destroy order: streams, client, server, then the queue they deliver to.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import os
import selectors
import signal
import socket
import sys
import threading
import time
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_int, c_int32, c_int64,
                    c_size_t, c_uint32, c_uint64, c_void_p)
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

# --------------------------------------------------------------------------
# The C ABI (capi/include/libchat/chat.h), as ctypes sees it.

CHAT_OK = 0
CHAT_RESOURCE_EXHAUSTED = 8
CHAT_ERR_WOULD_BLOCK = 18
CHAT_ERR_CLOSED = 21
CHAT_MODE_CUSTOM = 2
CHAT_LOG_ERROR = 2
CHAT_SERVER_OPTIONS_VERSION = 5
CHAT_STREAM_OPTIONS_VERSION = 4

EVENT_WAKE, EVENT_OPEN, EVENT_MESSAGE, EVENT_HALF_CLOSE, EVENT_CLOSE = 0, 1, 2, 3, 4
EVENT_REPLY, EVENT_END, EVENT_WRITABLE = 5, 6, 7

# Handles are opaque: c_void_p, whose values arrive as int (or None for NULL).
chat_code = c_int  # a C enum
handle = c_void_p

LOG_FN = CFUNCTYPE(None, c_int, c_void_p, c_size_t, c_void_p)


class ServerOptions(Structure):
    """chat_server_options, version 5: every field of that version, in order;
    ctypes pads it as the C compiler does. It must be the header's struct to
    the byte: chat_server_options_init writes all of it, so a shorter one is
    a heap overrun (tests/python/test_ctypes_example.py compares the
    layouts with the C compiler's)."""
    _fields_ = [
        ("version", c_uint32), ("mode", c_int32), ("max_message_bytes", c_int32),
        ("send_queue_limit", c_int32), ("recv_window", c_int32),
        ("dispatcher_threads", c_int32), ("keepalive_ms", c_int32),
        # on_* stay NULL with a queue: plain pointers are enough here
        ("on_open", c_void_p), ("on_message", c_void_p), ("on_complete", c_void_p),
        ("on_close", c_void_p), ("user_data", c_void_p),
        ("send_queue_bytes", c_int64), ("recv_window_bytes", c_int64),
        ("max_memory_bytes", c_int64), ("keepalive_timeout_ms", c_int32),
        ("completion_queues", c_int32), ("queue", handle), ("hold_until_consumed", c_int32),
        # version 5, TLS and authentication: unused here (NULL / 0)
        ("tls_cert_chain", c_char_p), ("tls_private_key", c_char_p),
        ("tls_client_ca", c_char_p), ("tls_client_cert", c_int32),
        ("authenticate", c_void_p), ("authenticate_user_data", c_void_p),
        # version 5, health checking and reflection: unused here (0)
        ("health", c_int32), ("reflection", c_int32),
        # version 5, control: unused here (0)
        ("compression", c_int32), ("max_streams", c_int32), ("max_concurrent_streams", c_int32),
        ("max_connection_age_ms", c_int32), ("max_connection_age_grace_ms", c_int32),
        ("max_connection_idle_ms", c_int32),
        # version 5, room on Redis: unused here (NULL; init sets room_max_len)
        ("room_url", c_char_p), ("room_name", c_char_p), ("room_max_len", c_int64),
    ]


class StreamOptions(Structure):
    """chat_stream_options, version 4."""
    _fields_ = [
        ("version", c_uint32), ("deadline_ms", c_int64), ("metadata", c_void_p),
        ("metadata_count", c_size_t), ("wait_for_ready", c_int32),
        ("metadata_value_lens", c_void_p), ("queue", handle), ("user_data", c_void_p),
        ("hold_until_consumed", c_int32),
        ("token", c_char_p),  # version 4: unused here (NULL)
        ("compression", c_int32),  # version 4, control: unused here (-1: the client's)
    ]


class Event(Structure):
    """chat_event. Its pointers are borrowed until the next drain."""
    _fields_ = [
        ("type", c_int32), ("code", chat_code), ("call", handle), ("stream", handle),
        ("user_data", c_void_p), ("name", c_void_p), ("name_len", c_size_t),
        ("text", c_void_p), ("text_len", c_size_t),
    ]


# name: (restype, argtypes). Every function this program calls is here.
PROTOTYPES: Dict[str, Tuple[Any, List[Any]]] = {
    "chat_version": (c_char_p, []),
    "chat_code_name": (c_char_p, [chat_code]),
    "chat_last_error": (c_char_p, []),
    "chat_set_log_handler": (chat_code, [LOG_FN, c_void_p, c_int]),
    "chat_queue_create": (chat_code, [POINTER(handle)]),
    "chat_queue_fd": (c_int, [handle]),
    "chat_queue_drain": (chat_code, [handle, c_int64, POINTER(Event), c_size_t,
                                     POINTER(c_size_t)]),
    "chat_queue_wake": (chat_code, [handle]),
    "chat_queue_error": (c_size_t, [handle, c_void_p, c_size_t]),
    "chat_queue_destroy": (None, [handle]),
    "chat_server_options_init": (chat_code, [POINTER(ServerOptions), c_uint32]),
    "chat_server_start": (chat_code, [c_char_p, POINTER(ServerOptions), POINTER(handle)]),
    "chat_server_port": (c_int32, [handle]),
    "chat_server_stop": (chat_code, [handle, c_int64, POINTER(c_int32)]),
    "chat_server_error": (c_size_t, [handle, c_void_p, c_size_t]),
    "chat_server_destroy": (chat_code, [handle]),
    "chat_call_id": (c_uint64, [handle]),
    "chat_call_send": (chat_code, [handle, c_char_p, c_size_t, c_int64]),
    "chat_call_complete": (chat_code, [handle]),
    "chat_call_fail": (chat_code, [handle, chat_code, c_char_p, c_size_t]),
    "chat_call_error": (c_size_t, [handle, c_void_p, c_size_t]),
    "chat_client_create": (chat_code, [c_char_p, c_void_p, POINTER(handle)]),
    "chat_client_error": (c_size_t, [handle, c_void_p, c_size_t]),
    "chat_client_destroy": (None, [handle]),
    "chat_stream_options_init": (chat_code, [POINTER(StreamOptions), c_uint32]),
    "chat_client_open": (chat_code, [handle, POINTER(StreamOptions), POINTER(handle)]),
    "chat_stream_send": (chat_code, [handle, c_char_p, c_size_t, c_char_p, c_size_t, c_int64]),
    "chat_stream_complete": (chat_code, [handle]),
    "chat_stream_error": (c_size_t, [handle, c_void_p, c_size_t]),
    "chat_stream_destroy": (None, [handle]),
}


def load(path: str) -> ctypes.CDLL:
    # CDLL: the GIL is released during each call (see the module docstring).
    lib = ctypes.CDLL(path)
    for name, (restype, argtypes) in PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class ChatError(Exception):
    pass


class Chat:
    """The loaded library and the error plumbing around it."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    def code_name(self, code: int) -> str:
        return bytes(self.lib.chat_code_name(code)).decode()

    def handle_error(self, fn_name: str, h: Optional[int]) -> str:
        """The per-handle message (chat_<kind>_error): right even when the
        failing call ran on another thread (asyncio executors, koffi's
        async calls); chat_last_error is the calling thread's only."""
        fn = getattr(self.lib, fn_name)
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            full = int(fn(h, buf, size))
            if full < size:
                return buf.value.decode(errors="replace")
            size = full + 1

    def check(self, rc: int, what: str, error_fn: Optional[str] = None,
              h: Optional[int] = None) -> None:
        if rc == CHAT_OK:
            return
        if error_fn is not None and h is not None:
            detail = self.handle_error(error_fn, h)
        else:  # no handle yet: the thread-local message, read right away on this thread
            detail = bytes(self.lib.chat_last_error()).decode(errors="replace")
        raise ChatError(f"{what}: {self.code_name(rc)}: {detail}")


def text_of(ptr: Optional[int], length: int) -> str:
    """Copies a borrowed (pointer, length) string out before the next drain."""
    if ptr is None or length == 0:
        return ""
    return ctypes.string_at(ptr, length).decode()


# --------------------------------------------------------------------------
# The log handler: gRPC's lines, routed to Python. It runs on gRPC's and the
# library's threads (ctypes takes the GIL for it).


def _log_line(severity: int, message: Optional[int], length: int,
              user_data: Optional[int]) -> None:
    # An exception here would be printed and swallowed by ctypes, and the
    # library would never know: catch everything.
    try:
        sys.stderr.write("libchat: %s\n" % text_of(message, length))
    except BaseException:  # noqa: BLE001 - nothing may leave a callback
        pass


# The callback object: a module global, so that it outlives every call C
# may make (from any thread, until chat_set_log_handler(NULL) returns); a
# CFUNCTYPE object that is freed while C still holds its pointer crashes the
# process on the next log line.
_LOG_CALLBACK = LOG_FN(_log_line)


class LogSink:
    """Routes the library's log lines (gRPC's included) to sys.stderr."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        chat.check(chat.lib.chat_set_log_handler(_LOG_CALLBACK, None, CHAT_LOG_ERROR),
                   "log handler")

    def close(self) -> None:
        """Restores stderr logging. When it returns no call of ours runs or
        will run (it waits for one in progress: CDLL lets that one take the
        GIL meanwhile)."""
        self.chat.lib.chat_set_log_handler(LOG_FN(0), None, CHAT_LOG_ERROR)  # LOG_FN(0): NULL


# --------------------------------------------------------------------------
# The loop: a selector over the queue's descriptor (and whatever else the
# program watches). Each wake-up drains until a drain returns fewer events
# than asked for.


class Loop:
    DRAIN_MAX = 64

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        q = handle()
        chat.check(chat.lib.chat_queue_create(byref(q)), "chat_queue_create")
        self.queue: Optional[int] = q.value
        self.events = (Event * self.DRAIN_MAX)()
        self.selector = selectors.DefaultSelector()
        # The descriptor is the queue's: watch it, never close it.
        self.selector.register(chat.lib.chat_queue_fd(self.queue), selectors.EVENT_READ, None)
        self.handlers: List[Callable[[Event], bool]] = []  # each says whether it took the event
        self.on_wake: Callable[[], None] = lambda: None

    def drain(self) -> None:
        count = c_size_t()
        while True:
            rc = self.chat.lib.chat_queue_drain(self.queue, 0, self.events, self.DRAIN_MAX,
                                                byref(count))
            self.chat.check(rc, "chat_queue_drain", "chat_queue_error", self.queue)
            for i in range(count.value):
                ev = self.events[i]
                if ev.type == EVENT_WAKE:
                    self.on_wake()
                elif not any(h(ev) for h in self.handlers):
                    raise ChatError(f"an event nobody expected (type {ev.type})")
            if count.value < self.DRAIN_MAX:
                return

    def run_until(self, done: Callable[[], bool], deadline: Optional[float]) -> None:
        while not done():
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise ChatError("timed out")
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    self.drain()
                else:
                    key.data()

    def destroy(self) -> None:
        """Last: after every server and stream that delivers here."""
        self.selector.close()
        self.chat.lib.chat_queue_destroy(self.queue)
        self.queue = None


# --------------------------------------------------------------------------
# The server: custom mode on the queue (no callbacks, no dispatcher thread).


class CallState:
    def __init__(self) -> None:
        self.backlog: Deque[bytes] = collections.deque()  # refused replies, oldest first
        self.half_closed = False


class EchoServer:
    BACKLOG_MAX = 4096  # replies waiting beyond the send queue before the call is cut

    def __init__(self, chat: Chat, loop: Loop, address: str) -> None:
        self.chat, self.loop = chat, loop
        self.calls: Dict[int, CallState] = {}  # call handle -> its state, OPEN to CLOSE
        opts = ServerOptions()
        chat.check(chat.lib.chat_server_options_init(byref(opts), CHAT_SERVER_OPTIONS_VERSION),
                   "chat_server_options_init")
        opts.mode = CHAT_MODE_CUSTOM
        opts.queue = loop.queue
        s = handle()
        chat.check(chat.lib.chat_server_start(address.encode(), byref(opts), byref(s)),
                   f"cannot serve {address}")
        self.server: Optional[int] = s.value
        self.port = int(chat.lib.chat_server_port(self.server))
        loop.handlers.append(self.on_event)

    def on_event(self, ev: Event) -> bool:
        if not ev.call:
            return False
        call: int = ev.call
        if ev.type == EVENT_OPEN:
            self.calls[call] = CallState()
            return True
        state = self.calls.get(call)
        if state is None:
            raise ChatError(f"an event (type {ev.type}) for a call that never opened")
        if ev.type == EVENT_MESSAGE:
            reply = ctypes.string_at(ev.name, ev.name_len) + b": " + \
                ctypes.string_at(ev.text, ev.text_len)
            if len(state.backlog) >= self.BACKLOG_MAX:
                self.fail(call, state, "the client does not read its replies")
            else:
                state.backlog.append(reply)
                if len(state.backlog) == 1:
                    self.flush(call, state)
        elif ev.type == EVENT_WRITABLE:
            self.flush(call, state)
        elif ev.type == EVENT_HALF_CLOSE:
            state.half_closed = True
            if not state.backlog:
                self.chat.lib.chat_call_complete(call)
        elif ev.type == EVENT_CLOSE:
            del self.calls[call]  # the handle goes with the next drain
        return True

    def flush(self, call: int, state: CallState) -> None:
        lib = self.chat.lib
        while state.backlog:
            reply = state.backlog[0]
            rc = lib.chat_call_send(call, reply, len(reply), 0)
            if rc == CHAT_ERR_WOULD_BLOCK:
                return  # the call's WRITABLE comes when there is room
            if rc == CHAT_ERR_CLOSED:
                state.backlog.clear()  # the call ended: its CLOSE follows
                return
            if rc != CHAT_OK:
                why = self.chat.handle_error("chat_call_error", call)
                print(f"ctypes_chat: call {lib.chat_call_id(call)}: {self.chat.code_name(rc)}: "
                      f"{why}", file=sys.stderr)
                self.fail(call, state, "reply not sent")
                return
            state.backlog.popleft()
        if state.half_closed:
            lib.chat_call_complete(call)

    def fail(self, call: int, state: CallState, why: str) -> None:
        state.backlog.clear()
        data = why.encode()
        self.chat.lib.chat_call_fail(call, CHAT_RESOURCE_EXHAUSTED, data, len(data))

    def stop(self, grace_ms: int) -> int:
        """Stops the server while the loop goes on serving the open calls,
        which need the loop to finish: chat_server_stop waits up to grace_ms
        for them, so it runs on a thread of its own (CDLL releases the GIL
        there) and wakes the loop when it returns. Returns the calls cut."""
        result: Dict[str, int] = {}

        def stop() -> None:
            cut = c_int32()
            result["rc"] = self.chat.lib.chat_server_stop(self.server, grace_ms, byref(cut))
            result["cut"] = cut.value
            self.chat.lib.chat_queue_wake(self.loop.queue)

        woken: List[bool] = []
        self.loop.on_wake = lambda: woken.append(True)
        stopper = threading.Thread(target=stop, name="chat_server_stop")
        stopper.start()
        self.loop.run_until(lambda: bool(woken), None)  # serving meanwhile
        stopper.join()
        self.chat.check(result["rc"], "chat_server_stop", "chat_server_error", self.server)
        # Every call has ended; their CLOSE events came before the WAKE.
        self.loop.drain()
        return result["cut"]

    def destroy(self) -> bool:
        """After its stop; False if a call never saw its CLOSE."""
        self.chat.lib.chat_server_destroy(self.server)
        self.server = None
        if self.calls:
            print(f"ctypes_chat: {len(self.calls)} call(s) never closed", file=sys.stderr)
        return not self.calls


# --------------------------------------------------------------------------
# The client: one stream on the queue, running the seed.

SEED = [("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello")]


class SeedStream:
    def __init__(self, chat: Chat, loop: Loop, target: str) -> None:
        self.chat, self.loop = chat, loop
        self.stream: Optional[int] = None
        c = handle()
        chat.check(chat.lib.chat_client_create(target.encode(), None, byref(c)),
                   f"client for {target}")
        self.client: Optional[int] = c.value
        opts = StreamOptions()
        chat.check(chat.lib.chat_stream_options_init(byref(opts), CHAT_STREAM_OPTIONS_VERSION),
                   "chat_stream_options_init")
        opts.queue = loop.queue
        s = handle()
        chat.check(chat.lib.chat_client_open(self.client, byref(opts), byref(s)),
                   "chat_client_open", "chat_client_error", self.client)
        self.stream = s.value
        self.to_send: Deque[Tuple[bytes, bytes]] = collections.deque(
            (n.encode(), m.encode()) for n, m in SEED)
        self.replies: List[str] = []
        self.end: Optional[Tuple[int, str]] = None
        loop.handlers.append(self.on_event)
        self.pump()

    def pump(self) -> None:
        """Sends what the stream takes without waiting; half-closes after the
        last message. A refusal is resumed by the stream's WRITABLE."""
        lib = self.chat.lib
        while self.to_send:
            name, message = self.to_send[0]
            rc = lib.chat_stream_send(self.stream, name, len(name), message, len(message), 0)
            if rc == CHAT_ERR_WOULD_BLOCK:
                return
            if rc == CHAT_ERR_CLOSED:
                return  # the stream has ended: its END tells how
            self.chat.check(rc, "chat_stream_send", "chat_stream_error", self.stream)
            self.to_send.popleft()
        self.chat.check(lib.chat_stream_complete(self.stream), "chat_stream_complete",
                        "chat_stream_error", self.stream)

    def on_event(self, ev: Event) -> bool:
        if not ev.stream or ev.stream != self.stream:
            return False
        if ev.type == EVENT_REPLY:
            reply = text_of(ev.text, ev.text_len)
            self.replies.append(reply)
            print(reply, flush=True)
        elif ev.type == EVENT_WRITABLE:
            self.pump()
        elif ev.type == EVENT_END:
            self.end = (ev.code, text_of(ev.text, ev.text_len))
        return True

    def destroy(self) -> None:
        """The stream first, then its client."""
        self.chat.lib.chat_stream_destroy(self.stream)
        self.stream = None
        self.chat.lib.chat_client_destroy(self.client)
        self.client = None


def run_seed(chat: Chat, loop: Loop, target: str, deadline: float) -> int:
    seed = SeedStream(chat, loop, target)
    try:
        loop.run_until(lambda: seed.end is not None, deadline)
    finally:
        seed.destroy()
    assert seed.end is not None
    code, details = seed.end
    if code != CHAT_OK:
        print(f"ctypes_chat: {chat.code_name(code)}: {details}", file=sys.stderr)
        return 1
    return 0


def serve(chat: Chat, loop: Loop, address: str, grace_ms: int) -> int:
    # Block the stop signals while the library starts its threads (they
    # inherit the mask), then unblock them on this thread alone: they reach
    # Python's handler here, which writes them to the wake-up socket the
    # selector watches.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    caught: List[int] = []
    try:
        signal.set_wakeup_fd(wsock.fileno())
        for sig in stop_signals:
            signal.signal(sig, lambda signum, frame: None)  # the byte on wsock is what counts
        loop.selector.register(rsock, selectors.EVENT_READ,
                               lambda: caught.extend(rsock.recv(64)))
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            server = EchoServer(chat, loop, address)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        try:
            host = address.rpartition(":")[0]
            print(f"listening on {host}:{server.port}", flush=True)
            loop.run_until(lambda: bool(caught), None)
            cut = server.stop(grace_ms)
        finally:
            ok = server.destroy()
    finally:
        signal.set_wakeup_fd(-1)
        rsock.close()
        wsock.close()
    name = "SIGINT" if caught[0] == signal.SIGINT else "SIGTERM"
    print(f"ctypes_chat: stopped on {name} ({cut} stream{'' if cut == 1 else 's'} cut)",
          file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", default=os.environ.get("CHAT_LIB", "libchat.so.1"),
                        help="path to libchat.so.1 (default: $CHAT_LIB or the loader's search)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--serve", metavar="HOST:PORT", help="serve only, until SIGINT/SIGTERM")
    mode.add_argument("--target", metavar="HOST:PORT", help="run the seed against this server")
    parser.add_argument("--grace-ms", type=int, default=5000,
                        help="--serve: how long open calls may take to finish when stopping")
    parser.add_argument("--timeout-s", type=float, default=30.0,
                        help="give up on the seed after this long")
    args = parser.parse_args()

    try:
        chat = Chat(load(args.lib))
    except (OSError, AttributeError) as e:  # no such file; a symbol missing (an old library)
        print(f"ctypes_chat: cannot load {args.lib}: {e}", file=sys.stderr)
        return 1
    log = LogSink(chat)
    loop: Optional[Loop] = None
    try:
        loop = Loop(chat)
        deadline = time.monotonic() + args.timeout_s
        if args.serve:
            return serve(chat, loop, args.serve, args.grace_ms)
        if args.target:
            return run_seed(chat, loop, args.target, deadline)
        # Both ends in this process, on one queue and one loop.
        server = EchoServer(chat, loop, "127.0.0.1:0")
        try:
            status = run_seed(chat, loop, f"127.0.0.1:{server.port}", deadline)
            server.stop(0)
        finally:
            if not server.destroy():
                status = 1
        return status
    except ChatError as e:
        print(f"ctypes_chat: {e}", file=sys.stderr)
        return 1
    finally:
        if loop is not None:
            loop.destroy()  # after the streams, clients and servers above
        log.close()


if __name__ == "__main__":
    sys.exit(main())
