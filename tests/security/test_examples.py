"""The C examples' TLS and token flags: chat_server with --tls-* and
--token, driven by chat_client with --tls-* and --token, and by grpcio."""
import grpc
import pytest

import chat_pb2
import chat_pb2_grpc
from chat_testing import ServerProcess, program, run

SERVER = program("CHAT_SERVER_BIN", "chat_server")
CLIENT = program("CHAT_CLIENT_BIN", "chat_client")
SEED_OUT = "Sam: Hi\nAnn: Hey\nJohn: Hello\n"


@pytest.fixture
def server(certs):
    """Factory: server(*flags) starts examples/chat_server on 127.0.0.1:0."""
    started = []

    def start(*flags):
        process = ServerProcess([SERVER, "--address", "127.0.0.1:0", *flags])
        _ = process.port  # it listens, or the test fails with its stderr
        started.append(process)
        return process

    yield start
    for process in started:
        if process.alive():
            process.stop()


def client(port, *flags, host="localhost"):
    return run([CLIENT, "--target", f"https://{host}:{port}", *flags])


def failed_with(done, start):
    """The client exited 1 and its last stderr line (gRPC may log the TLS
    failure above it) reports the status."""
    last = done.stderr.splitlines()[-1] if done.stderr else ""
    return done.returncode == 1 and done.stdout == "" and last.startswith(start)


def tls_flags(certs):
    return ["--tls-cert", certs.path("server.pem"), "--tls-key", certs.path("server.key")]


def test_tls_server_and_client(certs, server):
    port = server(*tls_flags(certs)).port
    done = client(port, "--tls-ca", certs.path("ca.pem"))
    assert (done.returncode, done.stdout, done.stderr) == (0, SEED_OUT, "")
    # The system's roots do not hold the test CA.
    done = client(port)
    assert failed_with(done, "chat_client: UNAVAILABLE: "), done.stderr
    assert "certificate verify failed" in done.stderr
    # --tls-server-name: the name the certificate must carry.
    done = client(port, "--tls-ca", certs.path("ca.pem"), "--tls-server-name", "other.example")
    assert failed_with(done, "chat_client: UNAVAILABLE: "), done.stderr
    done = client(port, "--tls-ca", certs.path("ca.pem"), "--tls-server-name", "localhost",
                  host="127.0.0.1")
    assert (done.returncode, done.stdout) == (0, SEED_OUT)


def test_required_client_certificate(certs, server):
    port = server(*tls_flags(certs), "--tls-ca", certs.path("ca.pem"),
                  "--require-client-cert").port
    done = client(port, "--tls-ca", certs.path("ca.pem"))
    assert failed_with(done, "chat_client: UNAVAILABLE: "), done.stderr
    done = client(port, "--tls-ca", certs.path("ca.pem"), "--tls-cert", certs.path("client.pem"),
                  "--tls-key", certs.path("client.key"))
    assert (done.returncode, done.stdout, done.stderr) == (0, SEED_OUT, "")


def test_token(certs, server):
    port = server(*tls_flags(certs), "--token", "s3cret").port
    ca = ["--tls-ca", certs.path("ca.pem")]
    done = client(port, *ca, "--token", "s3cret")
    assert (done.returncode, done.stdout, done.stderr) == (0, SEED_OUT, "")
    done = client(port, *ca, "--token", "s3cres")
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "chat_client: UNAUTHENTICATED: the bearer token is not valid\n")
    done = client(port, *ca)
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "chat_client: UNAUTHENTICATED: a bearer token is required\n")
    # grpcio with the token, and the server still serves.
    creds = grpc.ssl_channel_credentials(root_certificates=certs.read("ca.pem"))
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        call = chat_pb2_grpc.ChatStub(channel).chat(
            iter([chat_pb2.ChatMessage(name="Zed", message="hi")]), timeout=20,
            metadata=[("authorization", "Bearer s3cret")])
        assert [r.value for r in call] == ["Zed: hi"]


def test_token_over_plaintext(server):
    port = server("--token", "s3cret").port
    done = run([CLIENT, "--target", f"127.0.0.1:{port}", "--token", "s3cret"])
    assert (done.returncode, done.stdout, done.stderr) == (0, SEED_OUT, "")
    # Not to a host that is not loopback: refused before anything is sent.
    done = run([CLIENT, "--target", "192.0.2.1:9", "--token", "s3cret"])
    assert done.returncode == 1 and "plaintext" in done.stderr, done.stderr


def test_bad_flags(certs):
    done = run([SERVER, "--address", "127.0.0.1:0", "--tls-cert", "/no/such.pem",
                "--tls-key", certs.path("server.key")])
    assert done.returncode == 1
    assert done.stderr.startswith("chat_server: BAD_ARGUMENT: ") and "/no/such.pem" in done.stderr
    done = run([SERVER, "--address", "127.0.0.1:0", *tls_flags(certs), "--require-client-cert"])
    assert done.returncode == 1 and "BAD_ARGUMENT" in done.stderr
    done = run([CLIENT, "--target", "http://localhost:9", "--tls-ca", certs.path("ca.pem")])
    assert done.returncode == 1 and "https://" in done.stderr
