"""Our chat_client -> grpcio servers."""
import socket
from concurrent import futures

import grpc
import pytest

import chat_pb2
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


def test_malformed_reply_is_an_error_not_the_end(run_chat_client):
    """A server that sends bytes which are not a valid StringValue (invalid
    UTF-8): the client must report it, not end as if the stream were done."""
    def chat(request_iterator, context):
        yield b"\x0a\x02ok"          # StringValue{value="ok"}
        yield b"\x0a\x02\xff\xfe"   # value is not UTF-8
        yield b"\x0a\x05after"

    handler = grpc.method_handlers_generic_handler("Chat", {
        "chat": grpc.stream_stream_rpc_method_handler(
            chat, request_deserializer=chat_pb2.ChatMessage.FromString,
            response_serializer=lambda raw: raw)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        rc, out, err = run_chat_client("--target", f"127.0.0.1:{port}")
    finally:
        server.stop(grace=None)
    assert (rc, out) == (1, "ok\n")
    assert err.startswith("chat_client: INTERNAL: "), err
    assert "UTF-8" in err
