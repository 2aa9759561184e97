"""Stats through pychat (sync and aio) and chat_server --stats."""
from __future__ import annotations

import asyncio
import os
import re
import signal

import pytest

import pychat
import pychat.aio
from chat_testing import WAIT, ServerProcess, wait_until

SERVER_BIN = os.environ.get("CHAT_SERVER_BIN", "chat_server")


def test_server_and_client_stats_count_the_same_traffic() -> None:
    with pychat.Server("127.0.0.1:0") as server, \
            pychat.Client(f"127.0.0.1:{server.port}") as client:
        assert server.stats() == pychat.Stats(0, 0, 0, 0, 0, 0, 0, 0)
        with client.chat(timeout=WAIT) as stream:
            for i in range(10):
                stream.send("Sam", f"message {i}")
            stream.complete()
            assert len(list(stream)) == 10
        st = wait_until(lambda: (s := server.stats()).streams_open == 0 and s,
                        what="the server to count the stream closed")
        cl = client.stats()
        assert isinstance(st, pychat.Stats) and isinstance(cl, pychat.Stats)
        assert (st.streams_total, st.messages_in, st.messages_out) == (1, 10, 10)
        assert (cl.streams_total, cl.streams_open, cl.messages_in, cl.messages_out) == (1, 0, 10, 10)
        # Encoded ChatMessage{name, message} and StringValue: tag + length per field.
        assert st.bytes_in == cl.bytes_out == 10 * (2 + len("Sam") + 2 + len("message 0"))
        assert st.bytes_out == cl.bytes_in == 10 * (2 + len("Sam: message 0"))
    with pytest.raises(pychat.ClosedError):
        server.stats()
    with pytest.raises(pychat.ClosedError):
        client.stats()


def test_aio_server_and_client_stats() -> None:
    async def main() -> None:
        async with pychat.aio.Server("127.0.0.1:0") as server:
            async with pychat.aio.Client(f"127.0.0.1:{server.port}") as client:
                stream = client.chat(timeout=WAIT)
                await stream.send("Ann", "Hi")
                assert await asyncio.wait_for(stream.recv(), WAIT) == "Ann: Hi"
                assert server.stats().streams_open == 1
                assert client.stats().messages_in == 1
                stream.complete()
                assert await stream.recv(timeout=WAIT) is None  # the end
                assert client.stats().streams_open == 0
    asyncio.run(main())


def test_chat_server_prints_stats_periodically() -> None:
    with ServerProcess([SERVER_BIN, "--address", "127.0.0.1:0", "--stats", "1"]) as proc:
        with pychat.Client(proc.target) as client, client.chat(timeout=WAIT) as stream:
            stream.send("Sam", "Hi")
            assert stream.recv(timeout=WAIT) == "Sam: Hi"
            # Printed every second: one that saw the open stream comes.
            while "streams_open=1 " not in (line := proc.err.next(timeout=WAIT)):
                pass
            assert re.search(r"streams_total=1 .*messages_in=1 messages_out=1 ", line), line
        err = proc.stop(signal.SIGINT)
        last = err.strip().splitlines()[-1]
        assert re.fullmatch(r"chat_server: stats streams_open=0 streams_total=1 streams_refused=0 "
                            r"streams_cut=0 messages_in=1 messages_out=1 bytes_in=\d+ "
                            r"bytes_out=\d+", last), last


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_chat_server_refuses_a_bad_stats_period(value: str) -> None:
    with ServerProcess([SERVER_BIN, "--address", "127.0.0.1:0", "--stats", value]) as proc:
        assert proc.first_line is None
        assert proc.wait() == 2
