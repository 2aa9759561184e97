#!/usr/bin/python3
"""room_server: a chat room on /Chat/chat, served by a pychat.Handler, until SIGINT/SIGTERM.

    room_server.py [--address HOST:PORT] [--grace-ms N] [--room redis://HOST:PORT --room-name NAME]

The first stdout line is "listening on HOST:PORT" (flushed), as chat_server.py
prints it; the default address is 127.0.0.1:9090 (loopback only).

The room is a pychat.Room: in this process, or with --room and --room-name
the Redis stream room:NAME, shared with every room_server (and chat_server
--room) of that name, so members of different servers, on one machine or
many, are in one room.

Protocol. Each /Chat/chat stream is one connection to the room; every
ChatMessage{name, message} it sends is handled in arrival order, and every
reply is one StringValue:

* A stream becomes a member with its first message, whose `name` becomes the
  member's name for good (the `name` of later messages is ignored). Joining
  sends "* <name> joined" to every member, the new one included.
* A message "/who" is answered to its sender only: "* members: " and the
  names of this server's members, sorted, joined by ", " ("* members: Ann,
  Sam").
* Any other message goes to every member, the sender included, as
  "<name>: <message>". A first message is first the join, then this.
* A member leaves when its stream half-closes (its call then completes OK)
  or ends otherwise (cancelled, deadline, connection lost): the remaining
  members get "* <name> left". A stream that never sent a message is not a
  member and joins and leaves silently.
* Every member sees the room's lines in the same order. A member that does
  not read its replies until its send queue is full (1024 lines or 8 MiB
  waiting, libchat's defaults) is cut by the room: its call fails with
  RESOURCE_EXHAUSTED ("... reads too slowly for the room") and the others
  get "* <name> left". A reader who stalls never stalls the room.
* On Redis, a message the room cannot take (Redis down) fails its sender's
  call with UNAVAILABLE; the others stay.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Dict, Optional

import pychat


class Lobby(pychat.Handler):
    """Who is in the room, by name. Its methods run on the server's
    dispatcher thread; the lock keeps the names right with more than one."""

    def __init__(self, room: pychat.Room) -> None:
        self._room = room
        self._lock = threading.Lock()
        self._names: Dict[int, str] = {}  # call id -> name, members only

    def on_message(self, call: pychat.Call, name: str, message: str) -> None:
        try:
            with self._lock:
                joining = call.id not in self._names
                if joining:
                    self._names[call.id] = name
                name = self._names[call.id]
                who = ", ".join(sorted(self._names.values()))
            if joining:
                self._room.join(call)
                self._room.notice(f"* {name} joined")
            if message == "/who":
                call.send(f"* members: {who}", timeout=0)
            else:
                self._room.publish(name, message)
        except pychat.Unavailable as e:
            call.fail(pychat.StatusCode.UNAVAILABLE, e.details)
        except (pychat.ClosedError, BlockingIOError):
            pass  # the stream has ended, or its queue is full: the room cuts it

    def on_complete(self, call: pychat.Call) -> None:
        self._leave(call)
        call.complete()

    def on_close(self, call: pychat.Call, code: pychat.StatusCode, details: str) -> None:
        self._leave(call)

    def _leave(self, call: pychat.Call) -> None:
        with self._lock:
            name: Optional[str] = self._names.pop(call.id, None)
        if name is None:
            return
        try:
            self._room.leave(call)
        except KeyError:
            pass  # its stream ended: it left by itself
        try:
            self._room.notice(f"* {name} left")
        except pychat.Unavailable:
            pass  # nobody to tell while Redis is away


def main() -> int:
    parser = argparse.ArgumentParser(description="Serves a /Chat/chat room until SIGINT/SIGTERM.")
    parser.add_argument("--address", default="127.0.0.1:9090",
                        help="HOST:PORT (default: %(default)s, loopback only; port 0: any)")
    parser.add_argument("--grace-ms", type=int, default=5000,
                        help="how long open streams may take to finish when stopping")
    parser.add_argument("--room", help="redis://HOST:PORT[/DB]: the room lives on Redis")
    parser.add_argument("--room-name", default="", help="the room's name (with --room)")
    args = parser.parse_args()

    # Blocked before the server starts its threads (they inherit the mask), so
    # SIGINT/SIGTERM stay pending until sigwait takes them, as in chat_server.py.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    try:
        room = pychat.Room(args.room, args.room_name)
        server = pychat.Server(args.address, handler=Lobby(room))
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
    room.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
