"""Fixtures for the security suite: certificates made at run time with
openssl (make_certs.sh, the one generator the C++ tests use too), grpcio
peers with TLS, and a count of the process's descriptors for leak checks."""
import os
import pathlib
import subprocess
from concurrent import futures

import grpc
import pytest
from google.protobuf import wrappers_pb2

import chat_pb2
import chat_pb2_grpc

HERE = pathlib.Path(__file__).resolve().parent
WAIT = 10.0
RPC_TIMEOUT = 20.0


class Certs:
    """Paths of the files make_certs.sh wrote, and their text."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.dir = directory

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run(["sh", str(HERE / "make_certs.sh"), str(directory)], check=True,
                   timeout=60, capture_output=True)
    return Certs(directory)


class EchoServicer(chat_pb2_grpc.ChatServicer):
    """grpcio's echo; records each stream's bearer token and client subject."""

    def __init__(self):
        self.seen = []

    def chat(self, request_iterator, context):
        metadata = dict(context.invocation_metadata())
        auth = context.auth_context()
        subject = auth.get("x509_common_name", [b""])[0].decode()
        self.seen.append((metadata.get("authorization"), subject))
        for m in request_iterator:
            yield wrappers_pb2.StringValue(value=f"{m.name}: {m.message}")


@pytest.fixture
def grpc_tls_server(certs):
    """Factory: grpc_tls_server(cert="server", require_client_cert=False) ->
    (port, servicer): grpcio serving echo over TLS on 127.0.0.1."""
    servers = []

    def serve(cert="server", require_client_cert=False):
        servicer = EchoServicer()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        chat_pb2_grpc.add_ChatServicer_to_server(servicer, server)
        creds = grpc.ssl_server_credentials(
            [(certs.read(f"{cert}.key"), certs.read(f"{cert}.pem"))],
            root_certificates=certs.read("ca.pem") if require_client_cert else None,
            require_client_auth=require_client_cert)
        port = server.add_secure_port("127.0.0.1:0", creds)
        assert port > 0
        server.start()
        servers.append(server)
        return port, servicer

    yield serve
    for server in servers:
        server.stop(grace=None).wait(WAIT)


@pytest.fixture
def grpc_tls_chat(certs):
    """Factory: grpc_tls_chat(port, messages, ca="ca", client=None,
    server_name=None, metadata=()) runs one grpcio stream over TLS to
    localhost:port and returns (replies, code, details)."""
    channels = []

    def run(port, messages, ca="ca", client=None, server_name=None, metadata=()):
        creds = grpc.ssl_channel_credentials(
            root_certificates=certs.read(f"{ca}.pem"),
            private_key=certs.read(f"{client}.key") if client else None,
            certificate_chain=certs.read(f"{client}.pem") if client else None)
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(f"localhost:{port}", creds, options=options)
        channels.append(channel)
        stub = chat_pb2_grpc.ChatStub(channel)
        requests = iter([chat_pb2.ChatMessage(name=n, message=m) for n, m in messages])
        call = stub.chat(requests, timeout=RPC_TIMEOUT, metadata=list(metadata))
        try:
            replies = [r.value for r in call]
            return replies, call.code(), call.details()
        except grpc.RpcError as e:
            return [], e.code(), e.details()

    yield run
    for channel in channels:
        channel.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
