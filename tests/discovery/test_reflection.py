"""gRPC server reflection served by libchat (pychat and the chat_server
example), checked with grpcio stubs generated from Debian's reflection.proto;
the descriptors it serves are parsed with the protobuf library into a pool
of the test's own."""
import subprocess

import grpc
import pytest
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

import reflection_pb2
import reflection_pb2_grpc
from conftest import RPC_TIMEOUT

V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]


def ask(ch, *requests, method=None):
    """Sends the requests on one reflection stream; returns the responses."""
    if method is None:
        call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo
    else:  # v1: the same messages under another package
        call = ch.stream_stream(
            method, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    responses = list(call(iter(requests), timeout=RPC_TIMEOUT))
    assert len(responses) == len(requests)
    for request, response in zip(requests, responses):
        assert response.original_request == request
    return responses


def services(ch, **kwargs):
    [r] = ask(ch, reflection_pb2.ServerReflectionRequest(list_services=""), **kwargs)
    return [s.name for s in r.list_services_response.service]


def pool_of(response):
    """A descriptor pool built from the FileDescriptorProtos of a response
    (the file first, then its imports: added imports first)."""
    files = []
    for raw in response.file_descriptor_response.file_descriptor_proto:
        f = descriptor_pb2.FileDescriptorProto()
        f.ParseFromString(raw)
        files.append(f)
    pool = descriptor_pool.DescriptorPool()
    for f in reversed(files):
        pool.Add(f)
    return pool, [f.name for f in files]


def check_chat(pool):
    m = pool.FindMessageTypeByName("ChatMessage")
    assert [(f.name, f.number, f.type) for f in m.fields] == [
        ("name", 1, descriptor.FieldDescriptor.TYPE_STRING),
        ("message", 2, descriptor.FieldDescriptor.TYPE_STRING)]
    chat = pool.FindServiceByName("Chat").FindMethodByName("chat")
    assert chat.input_type.full_name == "ChatMessage"
    assert chat.output_type.full_name == "google.protobuf.StringValue"
    # Python's MethodDescriptor has no streaming flags: read them from the proto.
    proto = descriptor_pb2.MethodDescriptorProto()
    chat.CopyToProto(proto)
    assert proto.client_streaming and proto.server_streaming
    value = pool.FindMessageTypeByName("google.protobuf.StringValue")
    assert [(f.name, f.number) for f in value.fields] == [("value", 1)]
    assert value.file.name == "google/protobuf/wrappers.proto"


def test_lists_chat_and_reflection_and_health_when_on(serve, grpc_channel):
    ch = grpc_channel(serve(health=True, reflection=True))
    assert sorted(services(ch)) == sorted([
        "Chat", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection"])


def test_health_off_is_not_listed(serve, grpc_channel):
    ch = grpc_channel(serve(reflection=True))
    assert "grpc.health.v1.Health" not in services(ch)
    assert "Chat" in services(ch)
    [r] = ask(ch, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.health.v1.Health"))
    assert r.error_response.error_code == NOT_FOUND


@pytest.mark.parametrize("symbol", ["Chat", "Chat.chat", "ChatMessage"])
def test_file_containing_a_chat_symbol_describes_chat(serve, grpc_channel, symbol):
    ch = grpc_channel(serve(reflection=True))
    [r] = ask(ch, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol))
    pool, names = pool_of(r)
    assert names == ["chat.proto", "google/protobuf/wrappers.proto"]
    check_chat(pool)


def test_file_by_filename_and_the_v1_service(serve, grpc_channel):
    ch = grpc_channel(serve(reflection=True))
    assert "Chat" in services(ch, method=V1)
    [chat, wrappers] = ask(
        ch, reflection_pb2.ServerReflectionRequest(file_by_filename="chat.proto"),
        reflection_pb2.ServerReflectionRequest(file_by_filename="google/protobuf/wrappers.proto"),
        method=V1)
    check_chat(pool_of(chat)[0])
    assert pool_of(wrappers)[1] == ["google/protobuf/wrappers.proto"]
    # Each reflection service describes itself, under its own package.
    for name in ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"):
        [r] = ask(ch, reflection_pb2.ServerReflectionRequest(file_containing_symbol=name))
        pool, _ = pool_of(r)
        method = pool.FindServiceByName(name).FindMethodByName("ServerReflectionInfo")
        assert method.input_type.full_name == name.rsplit(".", 1)[0] + ".ServerReflectionRequest"


def test_health_is_described_when_on(serve, grpc_channel):
    ch = grpc_channel(serve(health=True, reflection=True))
    [r] = ask(ch, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.health.v1.Health"))
    pool, names = pool_of(r)
    assert names == ["grpc/health/v1/health.proto"]
    check = pool.FindServiceByName("grpc.health.v1.Health").FindMethodByName("Check")
    assert check.output_type.full_name == "grpc.health.v1.HealthCheckResponse"


def test_unknown_names_and_extensions_are_not_found(serve, grpc_channel):
    ch = grpc_channel(serve(reflection=True))
    responses = ask(
        ch,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="NoSuchMessage"),
        reflection_pb2.ServerReflectionRequest(file_by_filename="no/such.proto"),
        reflection_pb2.ServerReflectionRequest(
            file_containing_extension=reflection_pb2.ExtensionRequest(
                containing_type="ChatMessage", extension_number=100)),
        reflection_pb2.ServerReflectionRequest(all_extension_numbers_of_type="ChatMessage"),
        # and the stream still answers after errors
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="Chat"))
    for r in responses[:4]:
        assert r.WhichOneof("message_response") == "error_response"
        assert r.error_response.error_code == NOT_FOUND
        assert r.error_response.error_message
    check_chat(pool_of(responses[4])[0])


def test_reflection_off_is_unimplemented(serve, grpc_channel):
    ch = grpc_channel(serve(health=True))
    with pytest.raises(grpc.RpcError) as e:
        services(ch)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as e:
        services(ch, method=V1)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_go_lists_checks_and_describes_chat(serve, go_peer):
    """grpc-go's own health and reflection clients, and protobuf-go's
    protodesc building the files served: the path grpcurl takes."""
    target = serve(health=True, reflection=True)
    result = subprocess.run([go_peer, target], capture_output=True, text=True,
                            timeout=RPC_TIMEOUT * 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "services: Chat grpc.health.v1.Health grpc.reflection.v1.ServerReflection "
        "grpc.reflection.v1alpha.ServerReflection",
        'health "": SERVING',
        'health "Chat": SERVING',
        "rpc Chat.chat(stream ChatMessage) returns (stream google.protobuf.StringValue)",
        "field ChatMessage.name 1 string",
        "field ChatMessage.message 2 string",
        "field google.protobuf.StringValue.value 1 string",
    ]
