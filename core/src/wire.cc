#include "wire.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpc/slice.h>
#include <grpcpp/support/slice.h>

#include <initializer_list>

#include "chat/status.h"

namespace chat::internal {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;

constexpr uint32_t kTagField1 = (1 << 3) | 2;  // field 1, length-delimited
constexpr uint32_t kTagField2 = (2 << 3) | 2;

// One string field whose bytes are the concatenation of `parts`.
size_t FieldSize(std::initializer_list<std::string_view> parts) {
  size_t n = 0;
  for (auto p : parts) n += p.size();
  return StringFieldWireSize(n);
}

uint8_t* WriteField(uint32_t tag, std::initializer_list<std::string_view> parts, uint8_t* out) {
  size_t n = 0;
  for (auto p : parts) n += p.size();
  if (n == 0) return out;  // proto3 leaves empty strings off the wire
  out = CodedOutputStream::WriteTagToArray(tag, out);
  out = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(n), out);
  for (auto p : parts) out = CodedOutputStream::WriteRawToArray(p.data(), static_cast<int>(p.size()), out);
  return out;
}

// Hands a freshly allocated slice to a ByteBuffer without another copy.
template <class Fill>
grpc::ByteBuffer Build(size_t size, Fill fill) {
  grpc_slice raw = grpc_slice_malloc(size);
  fill(GRPC_SLICE_START_PTR(raw));
  grpc::Slice slice(raw, grpc::Slice::STEAL_REF);
  return grpc::ByteBuffer(&slice, 1);
}

// A view of the buffer's bytes; `storage` keeps a joined copy alive when the
// message arrived in several slices.
bool Bytes(const grpc::ByteBuffer& buffer, grpc::Slice* storage) {
  if (buffer.TrySingleSlice(storage).ok()) return true;
  return buffer.DumpToSingleSlice(storage).ok();
}

}  // namespace

size_t StringFieldWireSize(size_t n) {
  if (n == 0) return 0;
  return 1 + CodedOutputStream::VarintSize32(static_cast<uint32_t>(n)) + n;
}

grpc::ByteBuffer EncodeLine(std::string_view name, std::string_view message) {
  std::initializer_list<std::string_view> parts = {name, ": ", message};
  return Build(FieldSize(parts), [&](uint8_t* out) { WriteField(kTagField1, parts, out); });
}

grpc::ByteBuffer EncodeStringValue(std::string_view text) {
  return Build(StringFieldWireSize(text.size()),
               [&](uint8_t* out) { WriteField(kTagField1, {text}, out); });
}

grpc::ByteBuffer EncodeChatMessage(std::string_view name, std::string_view message) {
  return Build(StringFieldWireSize(name.size()) + StringFieldWireSize(message.size()),
               [&](uint8_t* out) {
                 out = WriteField(kTagField1, {name}, out);
                 WriteField(kTagField2, {message}, out);
               });
}

// Reads string fields 1 and 2 of a message, skipping any other field as
// protobuf does. Read with protobuf's stream reader rather than a generated
// parser: on invalid UTF-8 the generated parser also logs to stderr, and a
// library must not write to its host's stderr because a peer misbehaved.
bool DecodeFields(const grpc::ByteBuffer& buffer, std::string* field1, std::string* field2) {
  grpc::Slice bytes;
  if (!Bytes(buffer, &bytes)) return false;
  CodedInputStream in(bytes.begin(), static_cast<int>(bytes.size()));
  field1->clear();
  if (field2) field2->clear();
  while (uint32_t tag = in.ReadTag()) {
    std::string* target = nullptr;
    if (tag == kTagField1) target = field1;
    if (tag == kTagField2) target = field2;
    if (target) {
      if (!WireFormatLite::ReadString(&in, target) || !IsValidUtf8(*target)) return false;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage();
}

bool DecodeChatMessage(const grpc::ByteBuffer& buffer, std::string* name, std::string* message) {
  return DecodeFields(buffer, name, message);
}

bool DecodeStringValue(const grpc::ByteBuffer& buffer, std::string* value) {
  return DecodeFields(buffer, value, nullptr);
}

}  // namespace chat::internal
