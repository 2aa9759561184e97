#!/usr/bin/python3
"""chat_client: drives /Chat/chat.

    chat_client.py [--target TARGET] [--name NAME] [--deadline-ms N]

TARGET is host:port or http://host:port (default localhost:9090).
Without --name it runs the seed: sends Sam/Hi, Ann/Hey, John/Hello,
half-closes and prints each reply as it arrives, read on another thread.
With --name it is an interactive chat: each stdin line is sent from NAME,
replies are printed as they arrive, end of input half-closes.
Exits 0 when the stream ends OK; otherwise prints the status on stderr
and exits 1. The Python twin of chat_client.c.
"""
from __future__ import annotations

import argparse
import sys
import threading
from typing import List

import pychat

SEED = (("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello"))


def read_replies(stream: pychat.Stream, errors: List[pychat.ChatError]) -> None:
    """Prints replies until the stream ends; keeps an error end in `errors`."""
    try:
        for reply in stream:
            print(reply, flush=True)
    except pychat.ChatError as e:
        errors.append(e)


def main() -> int:
    parser = argparse.ArgumentParser(description="Drives /Chat/chat.")
    parser.add_argument("--target", default="localhost:9090", help="HOST:PORT or http://HOST:PORT")
    parser.add_argument("--name", help="chat interactively from NAME, one message per stdin line")
    parser.add_argument("--deadline-ms", type=int, default=-1, help="the call's deadline")
    args = parser.parse_args()

    try:
        client = pychat.Client(args.target)
    except ValueError as e:
        print(f"chat_client: {e}", file=sys.stderr)
        return 1
    with client:
        timeout = args.deadline_ms / 1000.0 if args.deadline_ms >= 0 else None
        with client.chat(timeout=timeout) as stream:
            errors: List[pychat.ChatError] = []
            reader = threading.Thread(target=read_replies, args=(stream, errors))
            reader.start()
            try:
                if args.name is None:
                    for name, message in SEED:
                        stream.send(name, message)
                else:
                    # Undecodable input becomes lone surrogates, which send() rejects.
                    sys.stdin.reconfigure(errors="surrogateescape")  # type: ignore[attr-defined]
                    for line in sys.stdin:
                        try:
                            stream.send(args.name, line.removesuffix("\n"))
                        except pychat.ClosedError:
                            raise
                        except ValueError as e:
                            print(f"chat_client: not sent: {e}", file=sys.stderr)
                stream.complete()
            except (pychat.ChatError, pychat.ClosedError):
                pass  # the stream has ended: its status tells why
            while reader.is_alive():  # in slices, so Ctrl-C is seen (see chat_server.py)
                reader.join(0.1)
            if errors:
                print(f"chat_client: {errors[0].code.name}: {errors[0].details}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
