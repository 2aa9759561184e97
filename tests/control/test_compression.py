"""Compression, seen on the socket: a relay counts the bytes each way. A
message of 64 KB of one letter shrinks to a few hundred bytes with gzip, so
"compressed" is a wire of less than a tenth of the payload, "not
compressed" one of more than the payload."""
from __future__ import annotations

import os
import subprocess
from typing import Any, List, Optional, Tuple

import grpc
import pytest

import chat_pb2
import chat_pb2_grpc
import pychat
import pychat.aio
from chat_testing import WAIT, ServerProcess, run

SERVER_BIN = os.environ.get("CHAT_SERVER_BIN", "chat_server")
CLIENT_BIN = os.environ.get("CHAT_CLIENT_BIN", "chat_client")

BIG = "a" * 65536
N = 4
PAYLOAD = N * len(BIG)


def grpcio_chat(target: str, compression: Optional[grpc.Compression] = None) -> List[str]:
    """N big messages from a grpcio client; the replies."""
    with grpc.insecure_channel(target, compression=compression) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        requests = [chat_pb2.ChatMessage(name="g", message=BIG) for _ in range(N)]
        return [r.value for r in stub.chat(iter(requests), timeout=WAIT * 2)]


def pychat_chat(client: pychat.Client, compression: Optional[str] = None) -> List[str]:
    with client.chat(timeout=WAIT * 2, compression=compression) as stream:
        for _ in range(N):
            stream.send("p", BIG)
        stream.complete()
        return list(stream)


def compressed(n: int) -> bool:
    return n < PAYLOAD // 10


def test_grpcio_gzip_client_and_libchat_server_default(proxy: Any) -> None:
    with pychat.Server("127.0.0.1:0", compression="gzip") as server:
        relay = proxy(f"127.0.0.1:{server.port}")
        assert grpcio_chat(relay.target, grpc.Compression.Gzip) == [f"g: {BIG}"] * N
        assert compressed(relay.up), relay.up      # grpcio compressed its messages
        assert compressed(relay.down), relay.down  # and the server its replies


def test_uncompressed_is_seen_as_such(proxy: Any) -> None:
    with pychat.Server("127.0.0.1:0") as server:
        relay = proxy(f"127.0.0.1:{server.port}")
        assert grpcio_chat(relay.target) == [f"g: {BIG}"] * N
        assert relay.up > PAYLOAD and relay.down > PAYLOAD


def test_libchat_gzip_client_and_grpcio_server(proxy: Any, grpcio_server: Any) -> None:
    _, target = grpcio_server(compression=grpc.Compression.Gzip)
    relay = proxy(target)
    with pychat.Client(relay.target, compression="gzip") as client:
        assert pychat_chat(client) == [f"p: {BIG}"] * N
    assert compressed(relay.up), relay.up      # libchat compressed its messages
    assert compressed(relay.down), relay.down  # and read grpcio's compressed replies


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_per_stream_compression_overrides_the_client(proxy: Any, algorithm: str) -> None:
    with pychat.Server("127.0.0.1:0") as server:
        relay = proxy(f"127.0.0.1:{server.port}")
        with pychat.Client(relay.target) as plain:
            before = relay.up
            assert pychat_chat(plain, compression=algorithm) == [f"p: {BIG}"] * N
            assert compressed(relay.up - before), relay.up - before
        with pychat.Client(relay.target, compression=algorithm) as packed:
            before = relay.up
            pychat_chat(packed)
            assert compressed(relay.up - before)
            before = relay.up
            pychat_chat(packed, compression="none")
            assert relay.up - before > PAYLOAD


def test_aio_client_and_server_compress(proxy: Any) -> None:
    import asyncio

    async def main() -> Tuple[int, int]:
        async with pychat.aio.Server("127.0.0.1:0", compression="gzip") as server:
            relay = proxy(f"127.0.0.1:{server.port}")
            async with pychat.aio.Client(relay.target, compression="gzip") as client:
                stream = client.chat(timeout=WAIT)
                for _ in range(N):
                    await stream.send("a", BIG)
                stream.complete()
                replies = [r async for r in stream]
                assert replies == [f"a: {BIG}"] * N
            return relay.up, relay.down

    up, down = asyncio.run(main())
    assert compressed(up) and compressed(down), (up, down)


def test_bad_compression_values_are_refused() -> None:
    with pytest.raises(ValueError, match="compression"):
        pychat.Server("127.0.0.1:0", compression="zstd")
    with pytest.raises(ValueError, match="compression"):
        pychat.Client("127.0.0.1:1", compression="lz4")
    with pychat.Client("127.0.0.1:1") as client:
        with pytest.raises(ValueError, match="compression"):
            client.chat(compression="brotli")


def test_example_flags(proxy: Any) -> None:
    """chat_server --compression gzip compresses replies to a grpcio client;
    chat_client --compression gzip compresses what it sends."""
    with ServerProcess([SERVER_BIN, "--address", "127.0.0.1:0", "--compression", "gzip"]) as srv:
        relay = proxy(srv.target)
        assert grpcio_chat(relay.target) == [f"g: {BIG}"] * N
        assert relay.up > PAYLOAD and compressed(relay.down), (relay.up, relay.down)

        relay2 = proxy(srv.target)
        line = "b" * 65536
        done = run([CLIENT_BIN, "--target", relay2.target, "--name", "c", "--compression", "gzip"],
                   input=line + "\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"c: {line}\n"
        assert relay2.up < len(line) // 10 and relay2.down < len(line) // 10
    bad = run([CLIENT_BIN, "--compression", "zstd"])
    assert bad.returncode == 2 and "usage" in bad.stderr
    bad = run([SERVER_BIN, "--compression", "zstd"])
    assert bad.returncode == 2 and "usage" in bad.stderr
