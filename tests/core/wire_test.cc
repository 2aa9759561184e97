// The /Chat/chat message codec (core/src/wire.h) against protobuf's own
// generated classes, so our encoding is exactly the contract's.
#include <gtest/gtest.h>
#include <google/protobuf/wrappers.pb.h>
#include <grpcpp/support/slice.h>

#include "chat.pb.h"
#include "wire.h"

namespace chat::internal {
namespace {

std::string Bytes(const grpc::ByteBuffer& b) {
  grpc::Slice s;
  EXPECT_TRUE(b.DumpToSingleSlice(&s).ok());
  return std::string(reinterpret_cast<const char*>(s.begin()), s.size());
}

grpc::ByteBuffer Buffer(const std::string& bytes) {
  grpc::Slice s(bytes);
  return grpc::ByteBuffer(&s, 1);
}

// DecodeChatMessage into strings (its views live only as long as their slice).
bool DecodeChat(const grpc::ByteBuffer& buffer, std::string* name, std::string* message) {
  grpc::Slice storage;
  std::string_view n, m;
  if (!DecodeChatMessage(buffer, &storage, &n, &m)) return false;
  name->assign(n);
  message->assign(m);
  return true;
}

TEST(Wire, EncodingsParseWithProtobuf) {
  ChatMessage m;
  ASSERT_TRUE(m.ParseFromString(Bytes(EncodeChatMessage("Zoë", "héllo"))));
  EXPECT_EQ(m.name(), "Zoë");
  EXPECT_EQ(m.message(), "héllo");
  google::protobuf::StringValue v;
  ASSERT_TRUE(v.ParseFromString(Bytes(EncodeLine("Sam", "Hi"))));
  EXPECT_EQ(v.value(), "Sam: Hi");
  ASSERT_TRUE(v.ParseFromString(Bytes(EncodeStringValue(std::string(300, 'x')))));
  EXPECT_EQ(v.value().size(), 300u);  // two-byte length varint
  EXPECT_EQ(Bytes(EncodeChatMessage("", "")), "");  // proto3: empty strings not sent
  // An empty field decodes to a view without data; encoding it copies
  // nothing from it (UBSan flags a memcpy from a null pointer).
  ASSERT_TRUE(v.ParseFromString(Bytes(EncodeLine(std::string_view(), "x"))));
  EXPECT_EQ(v.value(), ": x");
  ASSERT_TRUE(v.ParseFromString(Bytes(EncodeLine("a", std::string_view()))));
  EXPECT_EQ(v.value(), "a: ");
}

TEST(Wire, DecodesWhatProtobufEncodes) {
  ChatMessage m;
  m.set_name("Ann");
  m.set_message(std::string(200, 'y'));
  std::string name, message;
  ASSERT_TRUE(DecodeChat(Buffer(m.SerializeAsString()), &name, &message));
  EXPECT_EQ(name, "Ann");
  EXPECT_EQ(message, std::string(200, 'y'));
  std::string value;
  ASSERT_TRUE(DecodeStringValue(Buffer(""), &value));  // all defaults
  EXPECT_EQ(value, "");
}

TEST(Wire, SkipsUnknownFieldsAndKeepsTheLastValue) {
  // field 3 varint 150, field 1 "a", field 9 bytes "zz", field 1 "b"
  std::string bytes = std::string("\x18\x96\x01", 3) + "\x0a\x01" "a" + "\x4a\x02" "zz" +
                      "\x0a\x01" "b";
  std::string name, message;
  ASSERT_TRUE(DecodeChat(Buffer(bytes), &name, &message));
  EXPECT_EQ(name, "b");
  EXPECT_EQ(message, "");
}

TEST(Wire, RejectsInvalidUtf8AndTruncation) {
  std::string name, message;
  EXPECT_FALSE(DecodeChat(Buffer("\x0a\x02\xff\xfe"), &name, &message));
  EXPECT_FALSE(DecodeChat(Buffer("\x12\x03\xed\xa0\x80"), &name, &message));  // surrogate
  EXPECT_FALSE(DecodeChat(Buffer("\x0a\x05" "ab"), &name, &message));         // short
  EXPECT_FALSE(DecodeChat(Buffer("\x0a"), &name, &message));
  EXPECT_FALSE(DecodeChat(Buffer("\x0a\xff\xff\xff\xff\x0f" "ab"), &name, &message));  // 2^32-1
  std::string value;
  EXPECT_FALSE(DecodeStringValue(Buffer("\x0a\x01\x80"), &value));
}

}  // namespace
}  // namespace chat::internal
