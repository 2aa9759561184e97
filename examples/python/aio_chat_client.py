#!/usr/bin/python3
"""aio_chat_client: drives /Chat/chat with pychat.aio.

    aio_chat_client.py [--target TARGET] [--name NAME] [--deadline-ms N]

The same command line and output as chat_client.py (and chat_client.c).
TARGET is host:port or http://host:port (default localhost:9090). Without
--name it runs the seed: sends Sam/Hi, Ann/Hey, John/Hello, half-closes and
prints each reply as it arrives. With --name it is an interactive chat: each
stdin line is sent from NAME, replies are printed as they arrive, end of
input half-closes; if the stream ends first it stops reading stdin at once.
Exits 0 when the stream ends OK; otherwise prints the status on stderr and
exits 1. One asyncio loop, no threads of its own: the replies are read by a
task, stdin is watched with loop.add_reader.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import List, Optional

import pychat
import pychat.aio

SEED = (("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello"))


async def read_replies(stream: pychat.aio.Stream, errors: List[pychat.ChatError],
                       ended: asyncio.Future[None]) -> None:
    """Prints replies until the stream ends; keeps an error end in `errors`,
    then sets `ended`, which stops chat_lines."""
    try:
        async for reply in stream:
            print(reply, flush=True)
    except pychat.ChatError as e:
        errors.append(e)
    finally:
        ended.set_result(None)


async def send_input(stream: pychat.aio.Stream, name: str, line: bytes) -> None:
    # Undecodable input becomes lone surrogates, which send() rejects.
    text = line.decode(sys.stdin.encoding or "utf-8", "surrogateescape").removesuffix("\r")
    try:
        await stream.send(name, text)
    except pychat.ClosedError:
        raise
    except ValueError as e:
        print(f"chat_client: not sent: {e}", file=sys.stderr)


async def read_stdin(fd: int, ended: asyncio.Future[None]) -> Optional[bytes]:
    """The next chunk of stdin (b"" at its end), or None once the stream has
    ended, whichever comes first."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    try:
        loop.add_reader(fd, lambda: None if ready.done() else ready.set_result(None))
    except PermissionError:  # a regular file, which epoll refuses: reads never block
        return None if ended.done() else os.read(fd, 65536)
    try:
        await asyncio.wait([ready, ended], return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(fd)
    return None if ended.done() else os.read(fd, 65536)


async def chat_lines(stream: pychat.aio.Stream, name: str, ended: asyncio.Future[None]) -> None:
    """Sends each stdin line from `name` until end of input or the end of the
    stream, whichever comes first."""
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        chunk = await read_stdin(stdin, ended)
        if chunk is None:
            return  # the stream has ended: nothing more to send
        if not chunk:  # end of input: a last unterminated line goes too
            if pending:
                await send_input(stream, name, pending)
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            await send_input(stream, name, line)


async def run(args: argparse.Namespace) -> int:
    try:
        client = pychat.aio.Client(args.target)
    except ValueError as e:
        print(f"chat_client: {e}", file=sys.stderr)
        return 1
    async with client:
        timeout = args.deadline_ms / 1000.0 if args.deadline_ms >= 0 else None
        async with client.chat(timeout=timeout) as stream:
            errors: List[pychat.ChatError] = []
            ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            reader = asyncio.create_task(read_replies(stream, errors, ended))
            try:
                if args.name is None:
                    for name, message in SEED:
                        await stream.send(name, message)
                else:
                    await chat_lines(stream, args.name, ended)
                stream.complete()
            except (pychat.ChatError, pychat.ClosedError):
                pass  # the stream has ended: its status tells why
            await reader
            if errors:
                print(f"chat_client: {errors[0].code.name}: {errors[0].details}", file=sys.stderr)
                return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Drives /Chat/chat.")
    parser.add_argument("--target", default="localhost:9090", help="HOST:PORT or http://HOST:PORT")
    parser.add_argument("--name", help="chat interactively from NAME, one message per stdin line")
    parser.add_argument("--deadline-ms", type=int, default=-1, help="the call's deadline")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
