"""grpc.health.v1.Health served by libchat (pychat and the chat_server
example), checked with grpcio's stubs generated from Debian's health.proto."""
import asyncio
import signal
import threading

import grpc
import pytest

import health_pb2
import health_pb2_grpc
import pychat
import pychat.aio
from chat_testing import ServerProcess
from conftest import RPC_TIMEOUT, SERVER_BIN, WAIT

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def check(ch, service):
    return health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT).status


def test_server_and_chat_are_serving_and_others_not_found(serve, grpc_channel):
    ch = grpc_channel(serve(health=True))
    assert check(ch, "") == SERVING
    assert check(ch, "Chat") == SERVING
    with pytest.raises(grpc.RpcError) as e:
        check(ch, "grpc.other.Service")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_off_is_unimplemented(serve, grpc_channel):
    ch = grpc_channel(serve(reflection=True))  # the other switch on: still off
    with pytest.raises(grpc.RpcError) as e:
        check(ch, "")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_watch_sends_the_status_and_unknown_services(serve, grpc_channel, watch):
    ch = grpc_channel(serve(health=True))
    assert watch(ch, "Chat").next() == SERVING
    assert watch(ch, "").next() == SERVING
    unknown = watch(ch, "nope")
    assert unknown.next() == SERVICE_UNKNOWN
    assert not unknown.done.is_set()  # the stream stays open, as the spec asks


def test_health_and_chat_together(serve, grpc_channel, chat_stream):
    ch = grpc_channel(serve(health=True, reflection=True))
    s = chat_stream(ch)
    assert s.echo("Sam", "Hi") == "Sam: Hi"
    assert check(ch, "Chat") == SERVING
    assert s.echo("Ann", "Hey") == "Ann: Hey"
    s.half_close()
    assert s.finish() == grpc.StatusCode.OK


def test_watch_sees_not_serving_while_a_stop_drains(grpc_channel, watch, chat_stream):
    server = pychat.Server("127.0.0.1:0", health=True)
    ch = grpc_channel(f"127.0.0.1:{server.port}")
    w = watch(ch, "Chat")
    assert w.next() == SERVING
    s = chat_stream(ch)
    assert s.echo("Sam", "Hi") == "Sam: Hi"
    cut = []
    stopper = threading.Thread(target=lambda: cut.append(server.stop(grace=RPC_TIMEOUT)))
    stopper.start()
    try:
        assert w.next() == NOT_SERVING
        # Still in the grace: the open chat stream is served, Check agrees.
        assert not cut
        assert check(ch, "") == NOT_SERVING
        assert s.echo("Ann", "Hey") == "Ann: Hey"
        s.half_close()
        assert s.finish() == grpc.StatusCode.OK
    finally:
        stopper.join(RPC_TIMEOUT)
    assert not stopper.is_alive()
    assert cut == [0]
    # The stop ends the watch (gRPC's shutdown cancels it).
    assert w.done.wait(WAIT)
    assert w.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def test_chat_server_health_goes_not_serving_on_sigint(grpc_channel, watch, chat_stream):
    proc = ServerProcess([SERVER_BIN, "--address", "127.0.0.1:0", "--health",
                          "--grace-ms", str(int(RPC_TIMEOUT * 1000))])
    try:
        ch = grpc_channel(proc.target)
        w = watch(ch, "")
        assert w.next() == SERVING
        s = chat_stream(ch)
        assert s.echo("Sam", "Hi") == "Sam: Hi"
        proc.signal(signal.SIGINT)
        assert w.next() == NOT_SERVING
        assert proc.alive()  # the grace holds it for the open stream
        s.half_close()
        assert s.finish() == grpc.StatusCode.OK
        assert proc.wait(WAIT) == 0
    finally:
        proc.kill()


def test_pychat_switches_must_be_bool():
    with pytest.raises(TypeError, match="health must be bool"):
        pychat.Server("127.0.0.1:0", health=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reflection must be bool"):
        pychat.Server("127.0.0.1:0", reflection="yes")  # type: ignore[arg-type]


def test_aio_server_serves_health(grpc_channel):
    async def main():
        async with pychat.aio.Server("127.0.0.1:0", health=True) as server:
            target = f"127.0.0.1:{server.port}"
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: check(grpc_channel(target), "Chat"))

    assert asyncio.run(asyncio.wait_for(main(), RPC_TIMEOUT)) == SERVING


def test_aio_handler_server_serves_health_and_reflection(grpc_channel):
    class Handler:
        async def on_message(self, call, name, message):
            await call.send(f"{name}: {message}")

    async def main():
        async with pychat.aio.Server("127.0.0.1:0", Handler(), health=True,
                                     reflection=True) as server:
            target = f"127.0.0.1:{server.port}"
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: check(grpc_channel(target), ""))

    assert asyncio.run(asyncio.wait_for(main(), RPC_TIMEOUT)) == SERVING
