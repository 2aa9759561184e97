#!/usr/bin/python3
"""aio_chat_server: serves /Chat/chat (echo or broadcast) with pychat.aio
until SIGINT/SIGTERM.

    aio_chat_server.py [--address HOST:PORT] [--mode echo|broadcast] [--grace-ms N]

The same command line and output as chat_server.py (and chat_server.c):
the first stdout line is "listening on HOST:PORT" (flushed). Here the echo
and the broadcast are async handlers running on one asyncio loop, which
also takes the stop signals (loop.add_signal_handler).
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Set, Union

import pychat
import pychat.aio


class Echo:
    """The seed: each message answered "<name>: <message>" on its own stream;
    the stream completes when the client half-closes (the default
    on_complete)."""

    async def on_message(self, call: pychat.aio.Call, name: str, message: str) -> None:
        await call.send(f"{name}: {message}")


class Broadcast:
    """Each message goes to every open stream, as "<name>: <message>"."""

    def __init__(self) -> None:
        self.members: Set[pychat.aio.Call] = set()

    def on_open(self, call: pychat.aio.Call) -> None:
        self.members.add(call)

    async def on_message(self, call: pychat.aio.Call, name: str, message: str) -> None:
        text = f"{name}: {message}"
        for member in list(self.members):
            try:
                await member.send(text)  # waits while that member's queue is full
            except pychat.ClosedError:
                pass  # it ended meanwhile

    def on_close(self, call: pychat.aio.Call, code: pychat.StatusCode, details: str) -> None:
        self.members.discard(call)


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[signal.Signals] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: None if stopped.done() else stopped.set_result(s))

    handler: Union[Echo, Broadcast] = Echo() if args.mode == "echo" else Broadcast()
    try:
        server = pychat.aio.Server(args.address, handler=handler)
    except (pychat.ChatError, ValueError, OSError) as e:
        print(f"chat_server: {e}", file=sys.stderr)
        return 1

    # The host part as given and the port actually bound.
    host = args.address.rpartition(":")[0] if ":" in args.address else args.address
    print(f"listening on {host}:{server.port}", flush=True)

    sig = await stopped
    cut = await server.stop(args.grace_ms / 1000.0)
    await server.close()
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    print(f"chat_server: stopped on {name} ({cut} stream{'' if cut == 1 else 's'} cut)",
          file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Serves /Chat/chat until SIGINT/SIGTERM.")
    parser.add_argument("--address", default="127.0.0.1:9090", help="HOST:PORT (port 0: any)")
    parser.add_argument("--mode", choices=("echo", "broadcast"), default="echo")
    parser.add_argument("--grace-ms", type=int, default=5000,
                        help="how long open streams may take to finish when stopping")
    args = parser.parse_args()
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
