"""Bearer tokens and the server's authenticate callback: admitted streams
carry a principal, refused ones end with UNAUTHENTICATED or
PERMISSION_DENIED and their message before any handler, echo or broadcast
sees them, and nothing is left behind."""
import asyncio
import os
import sys
import threading
import time

import grpc
import pytest

import chat_pb2
import chat_pb2_grpc
import pychat
import pychat.aio
from chat_testing import wait_until

from test_tls import SEED, SEED_OUT, chat, tls_server

TOKENS = {"good-token": "alice", "other-token": "bob"}


class Authenticator:
    """Admits TOKENS, denies "banned", refuses the rest; records each call."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, call, token):
        with self.lock:
            self.calls.append((token, call.peer, dict(call.metadata)))
        if token == "banned":
            raise pychat.PermissionDenied("banned users may not chat")
        if token == "crash":
            raise RuntimeError("authenticator bug")
        if token == "wrong-type":
            return 42
        if token is None:
            raise pychat.Unauthenticated("a bearer token is required")
        return TOKENS.get(token)  # None: refused, UNAUTHENTICATED


class Recorder(pychat.Handler):
    def __init__(self):
        self.opened = []
        self.closed = []

    def on_open(self, call):
        self.opened.append(call.principal)

    def on_message(self, call, name, message):
        call.send(f"{call.principal} as {name}: {message}")

    def on_close(self, call, code, details):
        self.closed.append(code)


def grpc_chat(port, token=None, scheme="Bearer", messages=SEED):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        metadata = [("authorization", f"{scheme} {token}")] if token else []
        call = stub.chat(iter([chat_pb2.ChatMessage(name=n, message=m) for n, m in messages]),
                         timeout=20, metadata=metadata)
        try:
            return [r.value for r in call], call.code(), call.details()
        except grpc.RpcError as e:
            return [], e.code(), e.details()


REFUSALS = [
    (None, grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required"),
    ("nope", grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
    ("banned", grpc.StatusCode.PERMISSION_DENIED, "banned users may not chat"),
    ("crash", grpc.StatusCode.INTERNAL, "the server's authenticator failed"),
    ("wrong-type", grpc.StatusCode.INTERNAL, "the server's authenticator failed"),
]


def test_custom_mode_principal_and_refusals(monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    auth, handler = Authenticator(), Recorder()
    with pychat.Server("127.0.0.1:0", handler=handler, authenticate=auth) as server:
        replies, code, _ = grpc_chat(server.port, "good-token")
        assert (replies, code) == (["alice as Sam: Hi", "alice as Ann: Hey"], grpc.StatusCode.OK)
        # The scheme is case-insensitive (RFC 7235).
        assert grpc_chat(server.port, "other-token", scheme="bearer")[0][0] == "bob as Sam: Hi"
        for token, want, details in REFUSALS:
            assert grpc_chat(server.port, token) == ([], want, details), token
        # Not a bearer token at all: the authenticator sees None.
        assert grpc_chat(server.port, "dXNlcjpwYXNz", scheme="Basic")[1] == \
            grpc.StatusCode.UNAUTHENTICATED
        # Refused streams never reached the handler and are counted nowhere.
        assert grpc_chat(server.port, "good-token")[1] == grpc.StatusCode.OK
        wait_until(lambda: len(handler.closed) == 3, what="on_close of the admitted streams")
        assert handler.opened == ["alice", "bob", "alice"]
        assert handler.closed == [pychat.StatusCode.OK] * 3
        assert len(auth.calls) == 3 + len(REFUSALS) + 1
        token, peer, metadata = auth.calls[0]
        assert token == "good-token" and peer.startswith("ipv4:127.0.0.1:")
        assert metadata["authorization"] == "Bearer good-token"
        assert server.stop(5.0) == 0
    # The authenticator's bugs went to sys.unraisablehook.
    assert [type(u.exc_value) for u in unraisable] == [RuntimeError, TypeError]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("mode", ["echo", "broadcast"])
def test_builtin_modes_authenticate(mode):
    auth = Authenticator()
    with pychat.Server("127.0.0.1:0", mode=mode, authenticate=auth) as server:
        assert grpc_chat(server.port, "good-token")[:2] == (SEED_OUT, grpc.StatusCode.OK)
        for token, want, details in REFUSALS:
            assert grpc_chat(server.port, token) == ([], want, details), token
        # A member admitted to the room hears nothing of refused streams.
        with pychat.Client(f"127.0.0.1:{server.port}", token="good-token") as client:
            with client.chat(timeout=20) as member:
                member.send("Zed", "first")
                assert member.recv(10) == "Zed: first"
                with client.chat(timeout=20, token="nope") as refused:
                    refused.send("Eve", "let me in")
                    with pytest.raises(pychat.Unauthenticated):
                        refused.recv(10)
                member.send("Zed", "second")
                assert member.recv(10) == "Zed: second"
                member.complete()
                assert list(member) == []
                assert member.code == pychat.StatusCode.OK


def test_pychat_client_tokens_reach_grpcio(grpc_tls_server, certs):
    port, servicer = grpc_tls_server()
    target = f"https://localhost:{port}"
    with pychat.Client(target, tls_ca=certs.path("ca.pem"), token="client-token") as client:
        chat(client)
        chat(client, token="stream-token")
    with pychat.Client(target, tls_ca=certs.path("ca.pem")) as client:
        chat(client)
    assert [auth for auth, _ in servicer.seen] == [
        "Bearer client-token", "Bearer stream-token", None]


def test_token_and_principal_over_tls_end_to_end(certs):
    auth, handler = Authenticator(), Recorder()
    with tls_server(certs, handler=handler, authenticate=auth) as server:
        target = f"https://localhost:{server.port}"
        with pychat.Client(target, tls_ca=certs.path("ca.pem"), token="good-token") as client:
            assert chat(client)[0] == ["alice as Sam: Hi", "alice as Ann: Hey"]
            assert chat(client, token="banned")[1:] == (
                pychat.StatusCode.PERMISSION_DENIED, "banned users may not chat")
            assert chat(client, token="other-token")[0][0] == "bob as Sam: Hi"


def test_authenticate_sees_the_client_certificate(certs):
    subjects = []

    def authenticate(call, token):
        identity = call.peer_identity
        subjects.append(identity.subject)
        if "spiffe://example.org/alice" not in identity.sans:
            raise pychat.PermissionDenied("unknown workload")
        return identity.sans[1]

    handler = Recorder()
    with tls_server(certs, handler=handler, tls_ca=certs.path("ca.pem"),
                    authenticate=authenticate) as server:
        with pychat.Client(f"https://localhost:{server.port}", tls_ca=certs.path("ca.pem"),
                           tls_cert=certs.path("client.pem"),
                           tls_key=certs.path("client.key")) as client:
            assert chat(client)[0][0] == "spiffe://example.org/alice as Sam: Hi"
    assert subjects == ["CN=alice,O=Example"]


def test_plaintext_token_rule():
    # Loopback targets may carry a token in the clear...
    for target in ("127.0.0.1:1", "localhost:1", "[::1]:1", "unix:/tmp/x", "127.1.2.3:1"):
        pychat.Client(target, token="t").close()
    # ...others need TLS or an explicit opt-in.
    for target in ("10.1.2.3:1", "example.com:1", "http://example.com:1"):
        with pytest.raises(ValueError, match="plaintext"):
            pychat.Client(target, token="t")
        pychat.Client(target, token="t", allow_insecure_token=True).close()
        pychat.Client(target.replace("http://", ""), token="t", tls=True).close()
    with pychat.Client("10.1.2.3:1") as client:
        with pytest.raises(ValueError, match="plaintext"):
            client.chat(token="t")
    with pytest.raises(ValueError, match="printable ASCII"):
        pychat.Client("127.0.0.1:1", token="has space")
    with pychat.Client("127.0.0.1:1", token="t") as client:
        with pytest.raises(ValueError, match="authorization"):
            client.chat(metadata={"authorization": "Bearer x"})


def test_aio_server_and_client_authenticate(certs):
    auth = Authenticator()

    class Handler(pychat.aio.Handler):
        async def on_message(self, call, name, message):
            await call.send(f"{call.principal}/{call.peer_identity.subject}: {message}")

    async def main():
        async with pychat.aio.Server(
                "127.0.0.1:0", Handler(), tls_cert=certs.path("server.pem"),
                tls_key=certs.path("server.key"), tls_ca=certs.path("ca.pem"),
                authenticate=auth) as server:
            async with pychat.aio.Client(
                    f"https://localhost:{server.port}", tls_ca=certs.path("ca.pem"),
                    tls_cert=certs.path("client.pem"), tls_key=certs.path("client.key"),
                    token="good-token") as client:
                stream = client.chat(timeout=20)
                await stream.send("Sam", "Hi")
                assert await stream.recv() == "alice/CN=alice,O=Example: Hi"
                stream.complete()
                refused = client.chat(timeout=20, token="banned")
                with pytest.raises(pychat.PermissionDenied, match="banned"):
                    await refused.recv()

    asyncio.run(asyncio.wait_for(main(), 60))


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_failures_leave_nothing_behind(certs):
    """Refused tokens and failed handshakes, many times over: the process's
    descriptors come back to where they were, and the server still serves."""
    auth = Authenticator()
    with tls_server(certs, authenticate=auth, tls_ca=certs.path("ca.pem"),
                    client_cert="request") as server:
        target = f"https://localhost:{server.port}"
        good = dict(tls_ca=certs.path("ca.pem"), token="good-token")
        with pychat.Client(target, **good) as client:
            assert chat(client)[1] == pychat.StatusCode.OK
        baseline = open_fds()
        for _ in range(20):
            with pychat.Client(target, tls_ca=certs.path("ca.pem"), token="nope") as client:
                assert chat(client)[1] == pychat.StatusCode.UNAUTHENTICATED
            with pychat.Client(target, tls_ca=certs.path("other_ca.pem"), token="x") as client:
                assert chat(client)[1] == pychat.StatusCode.UNAVAILABLE
            with pychat.Client(target, tls_ca=certs.path("ca.pem"), token="good-token",
                               tls_cert=certs.path("other_client.pem"),
                               tls_key=certs.path("other_client.key")) as client:
                assert chat(client)[1] == pychat.StatusCode.UNAVAILABLE
        wait_until(lambda: open_fds() <= baseline, what=f"descriptors back to {baseline}")
        with pychat.Client(target, **good) as client:
            assert chat(client)[:2] == (SEED_OUT, pychat.StatusCode.OK)
        assert server.stop(5.0) == 0
