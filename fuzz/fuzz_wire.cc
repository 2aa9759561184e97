// fuzz_wire: arbitrary bytes into the /Chat/chat decoders (core/src/wire.h).
//
// Properties checked on every input:
//  - the decoders never crash, whether the bytes come in one slice or two;
//  - one slice or two, the outcome and the strings are the same;
//  - every decoded string is valid UTF-8, by an independent checker that
//    also has to agree with chat::IsValidUtf8 on the raw input;
//  - whatever decodes re-encodes (EncodeChatMessage / EncodeStringValue /
//    EncodeLine) and decodes again to the same strings.
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <string_view>

#include "chat/status.h"
#include "wire.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_wire: property failed: %s\n", what);
    std::abort();
  }
}

// UTF-8 by code point: decode, then reject overlong forms, surrogates and
// values above U+10FFFF. Written apart from chat::IsValidUtf8 (which works by
// byte ranges) so the two can be compared.
bool ReferenceUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (b < 0x80) { ++i; continue; }
    if ((b & 0xE0) == 0xC0) { n = 2; cp = b & 0x1F; }
    else if ((b & 0xF0) == 0xE0) { n = 3; cp = b & 0x0F; }
    else if ((b & 0xF8) == 0xF0) { n = 4; cp = b & 0x07; }
    else return false;
    if (s.size() - i < n) return false;
    for (size_t k = 1; k < n; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

grpc::ByteBuffer OneSlice(std::string_view bytes) {
  grpc::Slice slice(bytes.data(), bytes.size());
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer TwoSlices(std::string_view bytes, size_t cut) {
  grpc::Slice slices[2] = {grpc::Slice(bytes.data(), cut),
                           grpc::Slice(bytes.data() + cut, bytes.size() - cut)};
  return grpc::ByteBuffer(slices, 2);
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  grpc::Slice joined;
  Check(buffer.DumpToSingleSlice(&joined).ok(), "an encoded buffer dumps to one slice");
  return std::string(reinterpret_cast<const char*>(joined.begin()), joined.size());
}

// DecodeChatMessage into strings (its views live only as long as their slice).
bool DecodeChat(const grpc::ByteBuffer& buffer, std::string* name, std::string* message) {
  grpc::Slice storage;
  std::string_view n, m;
  if (!chat::internal::DecodeChatMessage(buffer, &storage, &n, &m)) return false;
  name->assign(n);
  message->assign(m);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Check(chat::IsValidUtf8(bytes) == ReferenceUtf8(bytes), "IsValidUtf8 agrees with the reference");

  grpc::ByteBuffer one = OneSlice(bytes);
  grpc::ByteBuffer two = TwoSlices(bytes, size ? data[0] % (size + 1) : 0);

  std::string name, message, name2, message2;
  bool chat_ok = DecodeChat(one, &name, &message);
  bool chat_ok2 = DecodeChat(two, &name2, &message2);
  Check(chat_ok == chat_ok2, "ChatMessage: one slice or two, same outcome");
  if (chat_ok) {
    Check(name == name2 && message == message2, "ChatMessage: one slice or two, same strings");
    Check(ReferenceUtf8(name) && ReferenceUtf8(message), "ChatMessage strings are UTF-8");
    grpc::ByteBuffer again = chat::internal::EncodeChatMessage(name, message);
    std::string n, m;
    Check(DecodeChat(again, &n, &m), "re-encoded ChatMessage decodes");
    Check(n == name && m == message, "re-encoded ChatMessage round-trips");
    // The canonical encoding is a fixed point.
    std::string canonical = Flatten(again);
    Check(Flatten(chat::internal::EncodeChatMessage(n, m)) == canonical, "encoding is stable");
    // The echo reply built from it is a StringValue holding "<name>: <message>".
    std::string line;
    Check(chat::internal::DecodeStringValue(chat::internal::EncodeLine(name, message), &line),
          "EncodeLine decodes");
    Check(line == name + ": " + message, "EncodeLine holds <name>: <message>");
  }

  std::string value, value2;
  bool value_ok = chat::internal::DecodeStringValue(one, &value);
  Check(value_ok == chat::internal::DecodeStringValue(two, &value2),
        "StringValue: one slice or two, same outcome");
  if (value_ok) {
    Check(value == value2, "StringValue: one slice or two, same string");
    Check(ReferenceUtf8(value), "StringValue is UTF-8");
    grpc::ByteBuffer again = chat::internal::EncodeStringValue(value);
    std::string v;
    Check(chat::internal::DecodeStringValue(again, &v) && v == value, "StringValue round-trips");
    Check(Flatten(again).size() == chat::internal::StringFieldWireSize(value.size()),
          "StringFieldWireSize matches the encoding");
  }
  return 0;
}
