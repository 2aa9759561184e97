// A C++ host with its own generated code for chat.proto (chat_proto: its
// chat.pb.cc and chat.grpc.pb.cc) loads libchat.so in the same process.
// Both sit on one libprotobuf.so, whose generated pool takes each .proto
// file once: if libchat.so registered chat.proto as well, protobuf would
// abort while the libraries load, before main ("File already exists in
// database: chat.proto"). Here the host's chat.proto is registered and used,
// and libchat serves and drives /Chat/chat beside it: the seed through the
// C ABI, the host's generated Chat::Stub against libchat's server, and
// libchat's client against the host's own generated Chat::Service.
//
// Registered with add_test, not gtest_discover_tests: discovery runs the
// binary at build time, and a process that aborts while loading must fail
// this test, not the build.
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "capi_pair.h"
#include "chat.grpc.pb.h"
#include <libchat/chat.h>

namespace {

using chat::testing::Drain;
using chat::testing::Send;
using google::protobuf::DescriptorPool;
using google::protobuf::StringValue;

const std::vector<std::pair<std::string, std::string>> kSeed = {
    {"Sam", "Hi"}, {"Ann", "Hey"}, {"John", "Hello"}};
const std::vector<std::string> kSeedReplies = {"Sam: Hi", "Ann: Hey", "John: Hello"};

// Only reached when something is wrong; generous for a busy 2-core machine.
constexpr auto kWait = std::chrono::seconds(10);

// The seed through the C ABI; `target` is the server's "http://host:port".
void RunSeedThroughCApi(const std::string& target) {
  chat_client* client = nullptr;
  ASSERT_EQ(chat_client_create(target.c_str(), nullptr, &client), CHAT_OK) << chat_last_error();
  chat_stream* s = nullptr;
  ASSERT_EQ(chat_client_open(client, nullptr, &s), CHAT_OK) << chat_last_error();
  for (const auto& m : kSeed) EXPECT_EQ(Send(s, m.first, m.second), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end = CHAT_UNKNOWN;
  EXPECT_EQ(Drain(s, &end), kSeedReplies);  // each receive waits at most 10 s
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  chat_code code = CHAT_UNKNOWN;
  ASSERT_EQ(chat_stream_status(s, &code, nullptr, nullptr), CHAT_OK);
  EXPECT_EQ(code, CHAT_OK);
  chat_stream_destroy(s);
  chat_client_destroy(client);
}

// A libchat echo server on an ephemeral loopback port, destroyed with the test.
class LibchatServer : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(chat_server_start("127.0.0.1:0", nullptr, &server_), CHAT_OK) << chat_last_error();
    port_ = std::to_string(chat_server_port(server_));
  }
  void TearDown() override { EXPECT_EQ(chat_server_destroy(server_), CHAT_OK); }
  chat_server* server_ = nullptr;
  std::string port_;
};

TEST(HostProto, HostOwnsChatProtoInTheGeneratedPool) {
  const auto* file = DescriptorPool::generated_pool()->FindFileByName("chat.proto");
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file, ChatMessage::descriptor()->file());
  EXPECT_EQ(DescriptorPool::generated_pool()->FindMessageTypeByName("ChatMessage"),
            ChatMessage::descriptor());
  const auto* service = DescriptorPool::generated_pool()->FindServiceByName("Chat");
  ASSERT_NE(service, nullptr);
  ASSERT_NE(service->FindMethodByName("chat"), nullptr);
  EXPECT_EQ(service->FindMethodByName("chat")->input_type(), ChatMessage::descriptor());
  // The host's messages work as usual beside libchat.
  ChatMessage m;
  m.set_name("Sam");
  m.set_message("Hi");
  ChatMessage back;
  ASSERT_TRUE(back.ParseFromString(m.SerializeAsString()));
  EXPECT_EQ(back.DebugString(), m.DebugString());
}

TEST_F(LibchatServer, SeedThroughTheCApi) { RunSeedThroughCApi("http://127.0.0.1:" + port_); }

TEST_F(LibchatServer, SeedThroughTheHostsGeneratedStub) {
  auto channel = grpc::CreateChannel("127.0.0.1:" + port_, grpc::InsecureChannelCredentials());
  auto stub = Chat::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);  // bounds every call below
  auto stream = stub->chat(&ctx);
  for (const auto& m : kSeed) {
    ChatMessage msg;
    msg.set_name(m.first);
    msg.set_message(m.second);
    EXPECT_TRUE(stream->Write(msg));
  }
  EXPECT_TRUE(stream->WritesDone());
  std::vector<std::string> replies;
  StringValue reply;
  while (stream->Read(&reply)) replies.push_back(reply.value());
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  EXPECT_EQ(replies, kSeedReplies);
}

// The host serves /Chat/chat itself with its generated service (sync API);
// libchat's client is its peer.
class HostEcho final : public Chat::Service {
  grpc::Status chat(grpc::ServerContext*,
                    grpc::ServerReaderWriter<StringValue, ChatMessage>* stream) override {
    ChatMessage m;
    while (stream->Read(&m)) {
      StringValue reply;
      reply.set_value(m.name() + ": " + m.message());
      if (!stream->Write(reply)) break;
    }
    return grpc::Status::OK;
  }
};

TEST(HostProto, LibchatClientAgainstTheHostsGeneratedService) {
  HostEcho service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);
  RunSeedThroughCApi("http://127.0.0.1:" + std::to_string(port));
  server->Shutdown(std::chrono::system_clock::now() + kWait);
  server->Wait();
}

}  // namespace

int main(int argc, char** argv) {
  // Touch the host's generated code first, as a host would at startup.
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  ChatMessage first;
  if (first.GetDescriptor() == nullptr ||
      DescriptorPool::generated_pool()->FindFileByName("chat.proto") == nullptr) {
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
