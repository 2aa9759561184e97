#!/usr/bin/python3
"""chat_client: drives /Chat/chat.

    chat_client.py [--target TARGET] [--name NAME] [--deadline-ms N]

TARGET is host:port or http://host:port (default localhost:9090).
Without --name it runs the seed: sends Sam/Hi, Ann/Hey, John/Hello,
half-closes and prints each reply as it arrives, read on another thread.
With --name it is an interactive chat: each stdin line is sent from NAME,
replies are printed as they arrive, end of input half-closes. If the
stream ends first (the server went away, a deadline passed) it stops
reading stdin at once.
Exits 0 when the stream ends OK; otherwise prints the status on stderr
and exits 1. The Python twin of chat_client.c.
"""
from __future__ import annotations

import argparse
import os
import select
import sys
import threading
from typing import List

import pychat

SEED = (("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello"))


def read_replies(stream: pychat.Stream, errors: List[pychat.ChatError], ended_fd: int) -> None:
    """Prints replies until the stream ends; keeps an error end in `errors`.
    Writes a byte to `ended_fd` at the end, which wakes chat_lines."""
    try:
        for reply in stream:
            print(reply, flush=True)
    except pychat.ChatError as e:
        errors.append(e)
    finally:
        os.write(ended_fd, b"x")


def send_input(stream: pychat.Stream, name: str, line: bytes) -> None:
    # Undecodable input becomes lone surrogates, which send() rejects.
    text = line.decode(sys.stdin.encoding or "utf-8", "surrogateescape").removesuffix("\r")
    try:
        stream.send(name, text)
    except pychat.ClosedError:
        raise
    except ValueError as e:
        print(f"chat_client: not sent: {e}", file=sys.stderr)


def chat_lines(stream: pychat.Stream, name: str, ended_fd: int) -> None:
    """Sends each stdin line from `name` until end of input or the end of the
    stream, whichever comes first: select() waits on stdin and on the reader's
    pipe together, so a stream that ends while stdin is quiet is noticed at
    once. stdin is read with os.read, so no line can sit in a buffer select()
    does not see."""
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        readable, _, _ = select.select([stdin, ended_fd], [], [])
        if ended_fd in readable:
            return  # the stream has ended: nothing more to send
        chunk = os.read(stdin, 65536)
        if not chunk:  # end of input: a last unterminated line goes too
            if pending:
                send_input(stream, name, pending)
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            send_input(stream, name, line)


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
            ended_read, ended_write = os.pipe()
            reader = threading.Thread(target=read_replies, args=(stream, errors, ended_write))
            reader.start()
            try:
                if args.name is None:
                    for name, message in SEED:
                        stream.send(name, message)
                else:
                    chat_lines(stream, args.name, ended_read)
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
