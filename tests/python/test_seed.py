"""The seed conversation and the basic shape of the API."""
from __future__ import annotations

import threading

import pytest

import pychat
from conftest import WAIT, target

SEED = [("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello")]
SEED_REPLIES = ["Sam: Hi", "Ann: Hey", "John: Hello"]


def test_seed_through_context_managers() -> None:
    with pychat.Server("127.0.0.1:0") as server:
        assert server.port > 0
        with pychat.Client(target(server)) as client:
            with client.chat() as stream:
                for name, message in SEED:
                    stream.send(name, message)
                stream.complete()
                assert list(stream) == SEED_REPLIES
                assert stream.code is pychat.StatusCode.OK
                assert stream.details == ""
            assert stream.closed
        assert client.closed
    assert server.closed


def test_seed_replies_read_on_another_thread(client: pychat.Client) -> None:
    replies = []
    with client.chat() as stream:
        reader = threading.Thread(target=lambda: replies.extend(stream))
        reader.start()
        for name, message in SEED:
            stream.send(name, message)
        stream.complete()
        reader.join(WAIT)
        assert not reader.is_alive()
    assert replies == SEED_REPLIES


def test_http_url_target(echo_server: pychat.Server) -> None:
    with pychat.Client(f"http://127.0.0.1:{echo_server.port}/") as client, client.chat() as stream:
        stream.send("Sam", "Hi")
        stream.complete()
        assert stream.recv(WAIT) == "Sam: Hi"
        assert stream.recv(WAIT) is None
        assert stream.recv(WAIT) is None  # the end stays the end


def test_status_is_none_until_the_end(client: pychat.Client) -> None:
    with client.chat() as stream:
        assert stream.code is None and stream.details is None
        stream.send("Sam", "Hi")
        assert stream.recv(WAIT) == "Sam: Hi"
        assert stream.code is None  # the server waits for the half-close
        stream.complete()
        assert stream.recv(WAIT) is None
        assert stream.code is pychat.StatusCode.OK
    assert stream.code is pychat.StatusCode.OK  # kept after close


def test_unicode_round_trip(client: pychat.Client) -> None:
    name, message = "Zoë", "héllo ✓ 🐍 \x00 end"
    with client.chat() as stream:
        stream.send(name, message)
        stream.complete()
        assert list(stream) == [f"{name}: {message}"]


def test_empty_strings(client: pychat.Client) -> None:
    with client.chat() as stream:
        stream.send("", "")
        stream.complete()
        assert list(stream) == [": "]


def test_many_streams_on_one_client(client: pychat.Client) -> None:
    streams = [client.chat() for _ in range(20)]
    for i, stream in enumerate(streams):
        stream.send(f"n{i}", "m")
        stream.complete()
    for i, stream in enumerate(streams):
        assert list(stream) == [f"n{i}: m"]
        stream.close()


def test_versions() -> None:
    assert pychat.library_version() == pychat._pychat.HEADER_VERSION
    assert pychat.abi_version() == 1


def test_reprs(echo_server: pychat.Server, client: pychat.Client) -> None:
    assert f"port={echo_server.port}" in repr(echo_server)
    assert repr(client).startswith("<pychat.Client")
    with client.chat() as stream:
        assert repr(stream) == "<pychat.Stream open>"
        stream.complete()
        assert list(stream) == []
        assert repr(stream) == "<pychat.Stream ended OK>"
    assert repr(stream) == "<pychat.Stream closed OK>"


def test_server_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        pychat.Server("127.0.0.1:0", mode="shout")
    with pytest.raises(ValueError, match="handler"):
        pychat.Server("127.0.0.1:0", mode="broadcast", handler=object())
    with pytest.raises(ValueError, match="handler"):
        pychat.Server("127.0.0.1:0", mode="custom")
    with pytest.raises(TypeError, match="callable"):
        pychat.Server("127.0.0.1:0", handler=type("H", (), {"on_message": 3})())
    with pytest.raises(ValueError, match="positive"):
        pychat.Server("127.0.0.1:0", send_queue_limit=0)


def test_address_in_use_raises_oserror(echo_server: pychat.Server) -> None:
    # A local failure, as socket.bind reports it: not a gRPC status.
    with pytest.raises(OSError, match="Address already in use") as info:
        pychat.Server(target(echo_server))
    assert not isinstance(info.value, pychat.ChatError)


def test_client_arguments() -> None:
    with pytest.raises(ValueError, match="https"):
        pychat.Client("https://127.0.0.1")  # no port
    with pytest.raises(ValueError):
        pychat.Client("")
    with pytest.raises(TypeError):
        pychat.Client(b"127.0.0.1:1")  # type: ignore[arg-type]


def test_unreachable_server_is_unavailable() -> None:
    with pychat.Server("127.0.0.1:0") as server:
        port = server.port
    with pychat.Client(f"127.0.0.1:{port}") as client, client.chat() as stream:
        try:
            stream.send("Sam", "Hi")  # opening never blocks: this may be queued...
        except pychat.Unavailable:
            pass  # ...or the failure may already be known
        with pytest.raises(pychat.Unavailable):
            stream.recv(WAIT)
        assert stream.code is pychat.StatusCode.UNAVAILABLE
        with pytest.raises(pychat.Unavailable):  # a send now says why it cannot
            stream.send("Sam", "again")


def test_closed_client_cannot_open_but_its_streams_work(echo_server: pychat.Server) -> None:
    client = pychat.Client(target(echo_server))
    stream = client.chat()
    client.close()
    client.close()  # idempotent
    with pytest.raises(pychat.ClosedError):
        client.chat()
    stream.send("Sam", "Hi")
    stream.complete()
    assert list(stream) == ["Sam: Hi"]
    stream.close()
