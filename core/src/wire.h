// The two messages of /Chat/chat, to and from gRPC byte buffers.
//
// The method is registered raw (ByteBuffer in and out) so that parsing is
// ours: gRPC's typed API reports a message it cannot parse (e.g. invalid
// UTF-8) exactly like the end of the stream, which would silently drop data.
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <string>
#include <string_view>

namespace chat::internal {

// google.protobuf.StringValue{value = "<name>: <message>"}, built in place.
grpc::ByteBuffer EncodeLine(std::string_view name, std::string_view message);
// google.protobuf.StringValue{value = text}.
grpc::ByteBuffer EncodeStringValue(std::string_view text);
// ChatMessage{name, message}.
grpc::ByteBuffer EncodeChatMessage(std::string_view name, std::string_view message);

// False when the bytes are not a valid message (bad encoding, or a string
// field that is not UTF-8, which proto3 forbids). `name` and `message` view
// the bytes `storage` keeps (the buffer's own slice when it has one).
bool DecodeChatMessage(const grpc::ByteBuffer& buffer, grpc::Slice* storage,
                       std::string_view* name, std::string_view* message);
bool DecodeStringValue(const grpc::ByteBuffer& buffer, std::string* value);

// Serialized size of a proto3 string field holding `n` bytes (tag, length,
// bytes; an empty string is not sent), for checking the size limit up front.
size_t StringFieldWireSize(size_t n);

}  // namespace chat::internal
