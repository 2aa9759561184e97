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

import pychat


def main() -> int:
    parser = argparse.ArgumentParser(description="Serves /Chat/chat until SIGINT/SIGTERM.")
    parser.add_argument("--address", default="127.0.0.1:9090", help="HOST:PORT (port 0: any)")
    parser.add_argument("--mode", choices=("echo", "broadcast"), default="echo")
    parser.add_argument("--grace-ms", type=int, default=5000,
                        help="how long open streams may take to finish when stopping")
    args = parser.parse_args()

    # Blocked before the server starts its threads (they inherit the mask), so
    # SIGINT/SIGTERM stay pending until sigwait below takes them, as in chat_server.c.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    try:
        server = pychat.Server(args.address, mode=args.mode)
    except (pychat.ChatError, ValueError, OSError) as e:
        print(f"chat_server: {e}", file=sys.stderr)
        return 1

    # The host part as given and the port actually bound.
    host = args.address.rpartition(":")[0] if ":" in args.address else args.address
    print(f"listening on {host}:{server.port}", flush=True)

    sig = signal.sigwait(stop_signals)
    cut = server.stop(args.grace_ms / 1000.0)
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    print(f"chat_server: stopped on {name} ({cut} stream{'' if cut == 1 else 's'} cut)",
          file=sys.stderr)
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
