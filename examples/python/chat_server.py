#!/usr/bin/python3
"""chat_server: serves /Chat/chat (echo or broadcast) until SIGINT/SIGTERM.

    chat_server.py [--address HOST:PORT] [--mode echo|broadcast] [--grace-ms N]

The first stdout line is "listening on HOST:PORT" (flushed), so scripts
started with port 0 can learn the port. The Python twin of chat_server.c.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import List, Optional

import pychat


def main() -> int:
    parser = argparse.ArgumentParser(description="Serves /Chat/chat until SIGINT/SIGTERM.")
    parser.add_argument("--address", default="127.0.0.1:9090", help="HOST:PORT (port 0: any)")
    parser.add_argument("--mode", choices=("echo", "broadcast"), default="echo")
    parser.add_argument("--grace-ms", type=int, default=5000,
                        help="how long open streams may take to finish when stopping")
    args = parser.parse_args()

    # Installed before the server exists, so an early signal still stops it
    # cleanly instead of raising KeyboardInterrupt somewhere.
    stop = threading.Event()
    received: List[int] = []

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        server = pychat.Server(args.address, mode=args.mode)
    except (pychat.ChatError, ValueError) as e:
        print(f"chat_server: {e}", file=sys.stderr)
        return 1

    # The host part as given and the port actually bound.
    host = args.address.rpartition(":")[0] if ":" in args.address else args.address
    print(f"listening on {host}:{server.port}", flush=True)

    # In slices: the signal may land on one of gRPC's threads, and then only
    # a main thread that wakes up runs the handler (a bare wait() could
    # sleep through it).
    while not stop.wait(0.1):
        pass
    cut = server.stop(args.grace_ms / 1000.0)
    name = "SIGINT" if received[0] == signal.SIGINT else "SIGTERM"
    print(f"chat_server: stopped on {name} ({cut} stream{'' if cut == 1 else 's'} cut)",
          file=sys.stderr)
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
