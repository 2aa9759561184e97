#!/usr/bin/python3
"""room_server: a chat room on /Chat/chat, served by a pychat.Handler, until SIGINT/SIGTERM.

    room_server.py [--address HOST:PORT] [--grace-ms N]

The first stdout line is "listening on HOST:PORT" (flushed), as chat_server.py
prints it; the default address is 127.0.0.1:9090 (loopback only).

Protocol. Each /Chat/chat stream is one connection to the room; every
ChatMessage{name, message} it sends is handled in arrival order, and every
reply is one StringValue:

* A stream becomes a member with its first message, whose `name` becomes the
  member's name for good (the `name` of later messages is ignored). Joining
  sends "* <name> joined" to every member, the new one included.
* A message "/who" is answered to its sender only: "* members: " and the
  members' names, sorted, joined by ", " ("* members: Ann, Sam").
* Any other message goes to every member, the sender included, as
  "<name>: <message>". A first message is first the join, then this.
* A member leaves when its stream half-closes (its call then completes OK)
  or ends otherwise (cancelled, deadline, connection lost): the remaining
  members get "* <name> left". A stream that never sent a message is not a
  member and joins and leaves silently.
* Every member sees the room's lines in the same order. A member that does
  not read its replies until its send queue is full (1024 lines or 8 MiB
  waiting, libchat's defaults) is dropped: its call fails with
  RESOURCE_EXHAUSTED "too slow: send queue full" and the others get
  "* <name> left". A reader who stalls never stalls the room.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Dict, Set

import pychat


class Room(pychat.Handler):
    """The room. Its methods run on the server's dispatcher thread; the lock
    keeps it correct with more than one (dispatcher_threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: Dict[int, pychat.Call] = {}  # call id -> call
        self._names: Dict[int, str] = {}
        # Dropped members whose stream has not closed yet: a message of
        # theirs still being delivered must not make them join again.
        self._gone: Set[int] = set()

    def on_message(self, call: pychat.Call, name: str, message: str) -> None:
        with self._lock:
            if call.id in self._gone:
                return
            if call.id not in self._members:
                self._members[call.id] = call
                self._names[call.id] = name
                self._broadcast(f"* {name} joined")
            if message == "/who":
                names = ", ".join(sorted(self._names.values()))
                self._send(call, f"* members: {names}")
            else:
                self._broadcast(f"{self._names[call.id]}: {message}")

    def on_complete(self, call: pychat.Call) -> None:
        with self._lock:
            self._leave(call.id)
        call.complete()

    def on_close(self, call: pychat.Call, code: pychat.StatusCode, details: str) -> None:
        with self._lock:
            self._gone.discard(call.id)
            self._leave(call.id)

    # With the lock held.

    def _leave(self, call_id: int) -> None:
        if self._members.pop(call_id, None) is not None:
            self._broadcast(f"* {self._names.pop(call_id)} left")

    def _broadcast(self, line: str) -> None:
        dropped = [call_id for call_id, member in list(self._members.items())
                   if not self._send(member, line)]
        for call_id in dropped:
            self._gone.add(call_id)
            self._leave(call_id)

    def _send(self, call: pychat.Call, line: str) -> bool:
        """Queues `line` without waiting: False if the member was dropped
        (its send queue is full) or its stream has just ended."""
        try:
            call.send(line, timeout=0)
            return True
        except BlockingIOError:
            call.fail(pychat.StatusCode.RESOURCE_EXHAUSTED, "too slow: send queue full")
            return False
        except pychat.ClosedError:
            return False  # its on_close is on the way


def main() -> int:
    parser = argparse.ArgumentParser(description="Serves a /Chat/chat room until SIGINT/SIGTERM.")
    parser.add_argument("--address", default="127.0.0.1:9090",
                        help="HOST:PORT (default: %(default)s, loopback only; port 0: any)")
    parser.add_argument("--grace-ms", type=int, default=5000,
                        help="how long open streams may take to finish when stopping")
    args = parser.parse_args()

    # Blocked before the server starts its threads (they inherit the mask), so
    # SIGINT/SIGTERM stay pending until sigwait takes them, as in chat_server.py.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    try:
        server = pychat.Server(args.address, handler=Room())
    except (pychat.ChatError, ValueError, OSError) as e:
        print(f"room_server: {e}", file=sys.stderr)
        return 1

    host = args.address.rpartition(":")[0] if ":" in args.address else args.address
    print(f"listening on {host}:{server.port}", flush=True)

    sig = signal.sigwait(stop_signals)
    cut = server.stop(args.grace_ms / 1000.0)
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    print(f"room_server: stopped on {name} ({cut} stream{'' if cut == 1 else 's'} cut)",
          file=sys.stderr)
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
