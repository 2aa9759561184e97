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
  for (auto p : parts) {
    // An empty view may have no data at all (a decoded empty field):
    // memcpy must not see its null pointer.
    if (!p.empty()) out = CodedOutputStream::WriteRawToArray(p.data(), static_cast<int>(p.size()), out);
  }
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

// Reads string fields 1 and 2 of a message as views into `storage`,
// skipping any other field as protobuf does. Read with protobuf's stream
// reader rather than a generated parser: on invalid UTF-8 the generated
// parser also logs to stderr, and a library must not write to its host's
// stderr because a peer misbehaved. Views, not copies: the echo server
// encodes its reply straight from the received bytes.
bool DecodeFields(const grpc::ByteBuffer& buffer, grpc::Slice* storage, std::string_view* field1,
                  std::string_view* field2) {
  if (!Bytes(buffer, storage)) return false;
  const uint8_t* data = storage->begin();
  CodedInputStream in(data, static_cast<int>(storage->size()));
  *field1 = {};
  if (field2) *field2 = {};
  while (uint32_t tag = in.ReadTag()) {
    std::string_view* target = nullptr;
    if (tag == kTagField1) target = field1;
    if (tag == kTagField2) target = field2;
    if (target) {
      uint32_t n;
      if (!in.ReadVarint32(&n)) return false;
      int at = in.CurrentPosition();
      // A length past the end (or past INT_MAX, negative here) fails Skip.
      if (!in.Skip(static_cast<int>(n))) return false;
      *target = std::string_view(reinterpret_cast<const char*>(data) + at, n);
      if (!IsValidUtf8(*target)) return false;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage();
}

bool DecodeChatMessage(const grpc::ByteBuffer& buffer, grpc::Slice* storage,
                       std::string_view* name, std::string_view* message) {
  return DecodeFields(buffer, storage, name, message);
}

bool DecodeStringValue(const grpc::ByteBuffer& buffer, std::string* value) {
  grpc::Slice storage;
  std::string_view view;
  if (!DecodeFields(buffer, &storage, &view, nullptr)) return false;
  value->assign(view);
  return true;
}

}  // namespace chat::internal
