"""Message-size limit and file-descriptor exhaustion."""
import resource
import socket
import time

import grpc
import pytest
from google.protobuf import wrappers_pb2

import chat_pb2
import pychat
from conftest import count_fds, wait_until

LIMIT = 65536


def encoded_size(message):
    return chat_pb2.ChatMessage(name="a", message=message).ByteSize()


def body_of_size(size):
    """A message text whose ChatMessage(name="a") encodes to exactly `size` bytes."""
    text = "x" * (size - 6)
    while encoded_size(text) < size:
        text += "x"
    while encoded_size(text) > size:
        text = text[:-1]
    assert encoded_size(text) == size
    return text


def seed_ok(target):
    with pychat.Client(target) as client, client.chat(timeout=5) as s:
        for name, msg in (("Sam", "Hi"), ("Ann", "Hey"), ("John", "Hello")):
            s.send(name, msg, timeout=5)
        s.complete()
        return list(s) == ["Sam: Hi", "Ann: Hey", "John: Hello"]


def test_message_over_the_limit_is_refused_and_server_stays_healthy(fault_server):
    server = fault_server("--mode", "echo", "--max-message-bytes", str(LIMIT))
    with grpc.insecure_channel(server.target) as channel:
        chat = channel.stream_stream(
            "/Chat/chat", request_serializer=chat_pb2.ChatMessage.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString)
        over = chat_pb2.ChatMessage(name="a", message=body_of_size(LIMIT + 1))
        with pytest.raises(grpc.RpcError) as e:
            list(chat(iter([over]), timeout=10))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        at = body_of_size(LIMIT)
        replies = list(chat(iter([chat_pb2.ChatMessage(name="a", message=at)]), timeout=10))
        assert [r.value for r in replies] == [f"a: {at}"]
    assert seed_ok(server.target)


# gRPC 1.51's own listener gives up on the first accept4 error other than
# EAGAIN/EINTR (tcp_server_posix.cc on_read logs "Failed accept4" and never
# re-arms), so libchat accepts connections itself (core/src/listener.cc):
# out of descriptors it logs once, backs off and accepts again once
# descriptors are free.
LOW_NOFILE = 64
EMFILE_LOG = "cannot accept connections"


def low_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_NOFILE, hard))


def exhaust(server, count=LOW_NOFILE + 16):
    """Opens raw TCP connections until the server runs out of descriptors,
    then closes them and waits until its fds are back under half the limit.
    True if the server said it could not accept."""
    socks = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        hit = wait_until(lambda: EMFILE_LOG in server.err.text() or
                         count_fds(server.pid) >= LOW_NOFILE - 1, what="fds used up")
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: count_fds(server.pid) < LOW_NOFILE // 2, what="server fds released")
    return hit


def test_after_emfile_the_server_accepts_again(fault_server):
    server = fault_server("--mode", "echo", preexec_fn=low_nofile)
    assert seed_ok(server.target)
    exhaust(server)
    assert wait_until(lambda: EMFILE_LOG in server.err.text(),
                      what="the server's EMFILE line on stderr")
    # Descriptors are free again: new connections are served again.
    assert seed_ok(server.target)
    assert "Failed accept4" not in server.err.text()  # gRPC's listener is not in play


def test_raise_nofile_avoids_emfile(fault_server):
    server = fault_server("--mode", "echo", "--raise-nofile", preexec_fn=low_nofile)
    with open(f"/proc/{server.pid}/limits") as f:
        soft = next(int(line.split()[3]) for line in f if line.startswith("Max open files"))
    assert soft > LOW_NOFILE
    exhaust(server)
    assert EMFILE_LOG not in server.err.text()
    assert seed_ok(server.target)
