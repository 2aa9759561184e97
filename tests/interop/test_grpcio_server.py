"""Our chat_client -> grpcio servers."""
import socket

import grpc
import pytest

import chat_pb2_grpc

SEED_OUT = "Sam: Hi\nAnn: Hey\nJohn: Hello\n"


@pytest.mark.parametrize("form", ["{}", "http://{}"], ids=["host-port", "http-url"])
def test_seed(grpc_echo_server, run_chat_client, form):
    target = form.format(f"127.0.0.1:{grpc_echo_server}")
    rc, out, err = run_chat_client("--target", target)
    assert (rc, out, err) == (0, SEED_OUT, "")


def test_named_lines_from_stdin(grpc_echo_server, run_chat_client):
    rc, out, err = run_chat_client("--target", f"127.0.0.1:{grpc_echo_server}",
                                   "--name", "Bob", stdin="one\ntwo\n")
    assert (rc, out, err) == (0, "Bob: one\nBob: two\n", "")


class DenyingServicer(chat_pb2_grpc.ChatServicer):
    def chat(self, request_iterator, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "no entry")


def test_server_error_status(grpc_server, run_chat_client):
    port = grpc_server(DenyingServicer())
    rc, out, err = run_chat_client("--target", f"127.0.0.1:{port}")
    assert rc == 1
    assert out == ""
    assert err == "chat_client: PERMISSION_DENIED: no entry\n", err


def test_nothing_listening(run_chat_client):
    # A bound but not listening socket: connections are refused, and no
    # other process can take the port while the test runs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        rc, out, err = run_chat_client("--target", f"127.0.0.1:{port}")
    assert rc == 1
    assert out == ""
    assert err.startswith("chat_client: UNAVAILABLE: "), err
