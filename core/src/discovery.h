// What health checking (health.cc) and server reflection (reflection.cc)
// share: what they need of their server, the descriptors they serve, and a
// small codec for their messages.
//
// Both are registered with the server as raw async services (ByteBuffer in
// and out, methods added by name, no generated code): gRPC routes their
// methods to them and everything else to the chat server's generic
// service, so they stay apart from the chat streams, and a stop's grace
// does not wait for a health Watch. Nothing here is process-wide: no
// generated code registers in protobuf's pool (a host may link its own
// health.pb.cc or grpc++_reflection), and no gRPC plugin or global switch
// touches the host's other servers.
#pragma once

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/byte_buffer.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace chat::internal {

// The server's accounting of the services' calls, each from its request
// until it is freed: a service asks for a call only while the server
// accepts them, and the server's stop waits for every one to end before it
// shuts its queues down (ServerImpl::Stop says why). Not just until the
// request comes back: a call's completions start operations on the queue
// (a read that the shutdown failed starts the Finish), and one started
// after the queue's shutdown aborts the process.
class RequestGate {
 public:
  virtual bool BeginCall() = 0;  // false once the server stops accepting
  // The call is over and freed (or its request failed: no call came). The
  // last thing its code does on the queue's thread.
  virtual void EndCall() = 0;

 protected:
  ~RequestGate() = default;
};

// Ends a health or reflection call whose last operation is back: frees it,
// then lets the server shut the queue down (EndCall comes last, as `call`
// and what it owns must be gone before the queue is).
template <class Call>
void FreeCall(Call* call, RequestGate* gate) {
  delete call;
  gate->EndCall();
}

// chat.proto, google/protobuf/wrappers.proto, the health and the reflection
// protos, embedded at build time (core/CMakeLists.txt) and parsed once into
// a DescriptorPool of our own: built on first use, then read-only and
// shared by every server of the process.
class Descriptors {
 public:
  static const Descriptors& Get();

  // The file declaring `symbol` (a full name: "Chat", "Chat.chat",
  // "ChatMessage", "google.protobuf.StringValue"), or the file named
  // `name`; null when there is none.
  const google::protobuf::FileDescriptor* FileContainingSymbol(const std::string& symbol) const;
  const google::protobuf::FileDescriptor* FileByName(const std::string& name) const;
  // `file` and everything it imports, transitively, `file` first.
  static std::vector<const google::protobuf::FileDescriptor*> WithImports(
      const google::protobuf::FileDescriptor* file);
  // The serialized FileDescriptorProto of a file of this pool.
  const std::string& Serialized(const google::protobuf::FileDescriptor* file) const;

 private:
  Descriptors();
  google::protobuf::DescriptorPool pool_;
  std::map<std::string, std::string> serialized_;  // by file name
};

// The messages are read and written with protobuf's wire-format
// primitives, as wire.cc does for chat's: no DynamicMessage, whose parser
// logs to the host's stderr when a peer sends a string that is not UTF-8.
// Their field numbers are fixed by the protos' wire contract, and the tests
// check them against grpcio stubs generated from the same files.
struct Field {
  uint32_t number = 0;
  uint64_t varint = 0;  // varint fields
  std::string bytes;    // length-delimited fields (strings, bytes, messages)
};
// The varint and length-delimited fields of a message, in order (others
// skipped); false when the bytes are not a valid message.
bool ParseFields(const grpc::ByteBuffer& buffer, std::vector<Field>* fields);
bool ParseFields(std::string_view bytes, std::vector<Field>* fields);

class FieldWriter {
 public:
  FieldWriter& Bytes(uint32_t number, std::string_view value);  // also strings and messages
  FieldWriter& Varint(uint32_t number, uint64_t value);
  const std::string& bytes() const { return out_; }
  grpc::ByteBuffer Buffer() const;

 private:
  std::string out_;
};

}  // namespace chat::internal
