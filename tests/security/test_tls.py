"""TLS and mTLS between libchat (through pychat) and grpcio, both ways, and
the failures: wrong CA, expired certificate, wrong host name, missing client
certificate. Each fails with its status, and the server keeps serving."""
import os
import subprocess
import sys

import grpc
import pytest

import pychat

SEED = [("Sam", "Hi"), ("Ann", "Hey")]
SEED_OUT = ["Sam: Hi", "Ann: Hey"]


def tls_server(certs, cert="server", **kwargs):
    return pychat.Server("127.0.0.1:0", tls_cert=certs.path(f"{cert}.pem"),
                         tls_key=certs.path(f"{cert}.key"), **kwargs)


def chat(client, messages=SEED, **kwargs):
    """Runs one stream to its end: (replies, code, details)."""
    replies = []
    with client.chat(timeout=20, **kwargs) as stream:
        try:
            for name, message in messages:  # fails too once the stream has ended
                stream.send(name, message)
            stream.complete()
            replies.extend(stream)
        except pychat.ChatError as e:
            return replies, e.code, e.details
        return replies, stream.code, stream.details


def test_grpcio_client_to_libchat_tls_server(certs, grpc_tls_chat):
    with tls_server(certs) as server:
        replies, code, _ = grpc_tls_chat(server.port, SEED)
        assert (replies, code) == (SEED_OUT, grpc.StatusCode.OK)


@pytest.mark.parametrize("form", ["path", "bytes", "str"])
def test_libchat_client_to_grpcio_tls_server(certs, grpc_tls_server, form):
    port, _ = grpc_tls_server()
    ca = {"path": certs.path("ca.pem"), "bytes": certs.read("ca.pem"),
          "str": certs.read("ca.pem").decode()}[form]
    with pychat.Client(f"https://localhost:{port}", tls_ca=ca) as client:
        assert chat(client) == (SEED_OUT, pychat.StatusCode.OK, "")


def test_libchat_to_libchat_tls_with_pem_text(certs):
    with pychat.Server("127.0.0.1:0", tls_cert=certs.read("server.pem"),
                       tls_key=certs.read("server.key")) as server:
        with pychat.Client(f"https://127.0.0.1:{server.port}", tls_ca=certs.read("ca.pem")) as c:
            assert chat(c)[:2] == (SEED_OUT, pychat.StatusCode.OK)


def test_plaintext_client_cannot_talk_to_tls_server(certs):
    with tls_server(certs) as server:
        with pychat.Client(f"127.0.0.1:{server.port}") as client:
            assert chat(client)[1] == pychat.StatusCode.UNAVAILABLE
        with pychat.Client(f"https://localhost:{server.port}", tls_ca=certs.path("ca.pem")) as c:
            assert chat(c)[:2] == (SEED_OUT, pychat.StatusCode.OK)


class Identities(pychat.Handler):
    def __init__(self):
        self.identities = []

    def on_message(self, call, name, message):
        self.identities.append(call.peer_identity)
        call.send(f"{name}: {message}")


def test_mtls_grpcio_client_to_libchat(certs, grpc_tls_chat):
    handler = Identities()
    with tls_server(certs, handler=handler, tls_ca=certs.path("ca.pem")) as server:
        replies, code, _ = grpc_tls_chat(server.port, SEED, client="client")
        assert (replies, code) == (SEED_OUT, grpc.StatusCode.OK)
        identity = handler.identities[0]
        assert identity.subject == "CN=alice,O=Example"
        assert identity.sans == ("alice.example", "spiffe://example.org/alice")
        # Missing, or from a CA the server does not trust: no connection.
        for client in (None, "other_client"):
            replies, code, _ = grpc_tls_chat(server.port, SEED, client=client)
            assert (replies, code) == ([], grpc.StatusCode.UNAVAILABLE), client
        # The server still serves.
        assert grpc_tls_chat(server.port, SEED, client="client")[1] == grpc.StatusCode.OK
        assert len(handler.identities) == 4  # two messages per admitted stream


def test_mtls_request_mode_admits_clients_without_certificate(certs, grpc_tls_chat):
    handler = Identities()
    with tls_server(certs, handler=handler, tls_ca=certs.path("ca.pem"),
                    client_cert="request") as server:
        assert grpc_tls_chat(server.port, SEED)[1] == grpc.StatusCode.OK
        assert handler.identities[0] is None
        assert grpc_tls_chat(server.port, SEED, client="client")[1] == grpc.StatusCode.OK
        assert handler.identities[-1].subject == "CN=alice,O=Example"
        # A certificate that is sent must verify.
        assert grpc_tls_chat(server.port, SEED, client="other_client")[1] == \
            grpc.StatusCode.UNAVAILABLE


def test_mtls_libchat_client_to_grpcio(certs, grpc_tls_server):
    port, servicer = grpc_tls_server(require_client_cert=True)
    target = f"https://localhost:{port}"
    with pychat.Client(target, tls_ca=certs.path("ca.pem"), tls_cert=certs.path("client.pem"),
                       tls_key=certs.path("client.key")) as client:
        assert chat(client)[:2] == (SEED_OUT, pychat.StatusCode.OK)
    assert servicer.seen == [(None, "alice")]
    with pychat.Client(target, tls_ca=certs.path("ca.pem")) as client:
        assert chat(client)[:2] == ([], pychat.StatusCode.UNAVAILABLE)
    assert len(servicer.seen) == 1


def test_wrong_ca(certs, grpc_tls_chat, grpc_tls_server):
    with tls_server(certs) as server:
        assert grpc_tls_chat(server.port, SEED, ca="other_ca")[:2] == \
            ([], grpc.StatusCode.UNAVAILABLE)
        with pychat.Client(f"https://localhost:{server.port}",
                           tls_ca=certs.path("other_ca.pem")) as client:
            assert chat(client)[:2] == ([], pychat.StatusCode.UNAVAILABLE)
        assert grpc_tls_chat(server.port, SEED)[1] == grpc.StatusCode.OK
    port, _ = grpc_tls_server()
    with pychat.Client(f"https://localhost:{port}", tls_ca=certs.path("other_ca.pem")) as client:
        assert chat(client)[:2] == ([], pychat.StatusCode.UNAVAILABLE)


def test_expired_server_certificate(certs, grpc_tls_chat, grpc_tls_server):
    with tls_server(certs, cert="expired") as server:
        assert grpc_tls_chat(server.port, SEED)[:2] == ([], grpc.StatusCode.UNAVAILABLE)
        with pychat.Client(f"https://localhost:{server.port}",
                           tls_ca=certs.path("ca.pem")) as client:
            assert chat(client)[:2] == ([], pychat.StatusCode.UNAVAILABLE)
    port, _ = grpc_tls_server(cert="expired")
    with pychat.Client(f"https://localhost:{port}", tls_ca=certs.path("ca.pem")) as client:
        assert chat(client)[:2] == ([], pychat.StatusCode.UNAVAILABLE)


def test_expired_client_certificate_is_refused(certs, grpc_tls_chat):
    # expired.pem carries serverAuth only and is out of date: either way no
    # server that verifies clients takes it.
    with tls_server(certs, tls_ca=certs.path("ca.pem")) as server:
        assert grpc_tls_chat(server.port, SEED, client="expired")[:2] == \
            ([], grpc.StatusCode.UNAVAILABLE)
        assert grpc_tls_chat(server.port, SEED, client="client")[1] == grpc.StatusCode.OK


def test_wrong_host_name(certs, grpc_tls_chat):
    with tls_server(certs, cert="wronghost") as server:
        assert grpc_tls_chat(server.port, SEED)[:2] == ([], grpc.StatusCode.UNAVAILABLE)
        target = f"https://localhost:{server.port}"
        with pychat.Client(target, tls_ca=certs.path("ca.pem")) as client:
            assert chat(client)[:2] == ([], pychat.StatusCode.UNAVAILABLE)
        # The override names what the certificate carries.
        with pychat.Client(target, tls_ca=certs.path("ca.pem"),
                           tls_server_name="other.example") as client:
            assert chat(client)[:2] == (SEED_OUT, pychat.StatusCode.OK)
        assert grpc_tls_chat(server.port, SEED, server_name="other.example")[1] == \
            grpc.StatusCode.OK


def test_tls_for_other_target_forms(certs):
    with tls_server(certs) as server:
        for target, kwargs in ((f"localhost:{server.port}", {"tls": True}),
                               (f"dns:///localhost:{server.port}", {})):
            with pychat.Client(target, tls_ca=certs.path("ca.pem"), **kwargs) as client:
                assert chat(client)[:2] == (SEED_OUT, pychat.StatusCode.OK), target
    with pytest.raises(ValueError, match="http://"):
        pychat.Client("http://localhost:1", tls_ca=certs.path("ca.pem"))


def test_tls_server_address_forms(certs):
    """Port 0 reports the port picked; a port in use is refused (gRPC would
    share it through SO_REUSEPORT by default)."""
    for address, host in (("[::1]:0", "[::1]"), ("localhost:0", "localhost")):
        with pychat.Server(address, tls_cert=certs.path("server.pem"),
                           tls_key=certs.path("server.key")) as server:
            assert server.port > 0
            with pychat.Client(f"https://{host}:{server.port}", tls_ca=certs.path("ca.pem"),
                               tls_server_name="localhost") as client:
                assert chat(client)[:2] == (SEED_OUT, pychat.StatusCode.OK), address
    with tls_server(certs) as server:
        with pytest.raises(OSError, match="cannot listen"):
            pychat.Server(f"127.0.0.1:{server.port}", tls_cert=certs.path("server.pem"),
                          tls_key=certs.path("server.key"))
        with pychat.Client(f"https://127.0.0.1:{server.port}", tls_ca=certs.path("ca.pem")) as c:
            assert chat(c)[:2] == (SEED_OUT, pychat.StatusCode.OK)


def test_tls_server_on_a_unix_socket(certs, tmp_path):
    path = tmp_path / "tls.sock"
    with pychat.Server(f"unix:{path}", tls_cert=certs.path("server.pem"),
                       tls_key=certs.path("server.key")) as server:
        assert server.port == 1
        with pychat.Client(f"unix:{path}", tls_ca=certs.path("ca.pem"),
                           tls_server_name="localhost") as client:
            assert chat(client)[:2] == (SEED_OUT, pychat.StatusCode.OK)


def test_default_roots_come_from_grpc_default_ssl_roots_file_path(certs):
    """Without tls_ca the client trusts gRPC's default roots: the system's
    bundle, or the file GRPC_DEFAULT_SSL_ROOTS_FILE_PATH names (read once per
    process, hence a child process)."""
    with tls_server(certs) as server:
        code = ("import pychat, sys\n"
                f"c = pychat.Client('https://localhost:{server.port}')\n"
                "s = c.chat(timeout=20); s.send('a', 'b'); s.complete()\n"
                "print(list(s))\n")
        env = dict(os.environ, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=certs.path("ca.pem"))
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, "['a: b']\n"), done.stderr
        # The system's bundle does not hold the test CA.
        env.pop("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1 and "Unavailable" in done.stderr, done.stderr


def test_bad_certificate_arguments(certs, tmp_path):
    with pytest.raises(ValueError, match="/no/such/cert.pem"):
        pychat.Server("127.0.0.1:0", tls_cert="/no/such/cert.pem", tls_key=certs.path("server.key"))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ValueError, match="holds no PEM"):
        pychat.Server("127.0.0.1:0", tls_cert=str(not_pem), tls_key=certs.path("server.key"))
    with pytest.raises(ValueError, match="both"):
        pychat.Server("127.0.0.1:0", tls_cert=certs.path("server.pem"))
    with pytest.raises(ValueError, match="TLS server"):
        pychat.Server("127.0.0.1:0", tls_ca=certs.path("ca.pem"))
    with pytest.raises(ValueError, match="client_cert"):
        pychat.Server("127.0.0.1:0", tls_cert=certs.path("server.pem"),
                      tls_key=certs.path("server.key"), client_cert="always")
    with pytest.raises(ValueError, match="no PEM"):
        pychat.Client("https://localhost:1", tls_ca=b"not a certificate")
    with pytest.raises(ValueError, match="/no/such/ca.pem"):
        pychat.Client("https://localhost:1", tls_ca="/no/such/ca.pem")
    with pytest.raises(ValueError, match="key"):
        pychat.Client("https://localhost:1", tls_cert=certs.path("client.pem"))
    # A key that does not match its certificate: gRPC refuses to listen.
    with pytest.raises(OSError):
        pychat.Server("127.0.0.1:0", tls_cert=certs.path("server.pem"),
                      tls_key=certs.path("client.key"))
