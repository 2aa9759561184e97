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
// The host also links its own health.proto code and gRPC's reflection
// library (its reflection.proto code), and turns on, for the whole process,
// gRPC's default health service and reflection plugin: libchat's health and
// reflection, served from descriptors of its own, load and answer beside
// them, and those process-wide switches do not take libchat's server over.
//
// Registered with add_test, not gtest_discover_tests: discovery runs the
// binary at build time, and a process that aborts while loading must fail
// this test, not the build.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "capi_pair.h"
#include "chat.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
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

// gRPC's reflection library has no public header for its messages: reach
// them through the generated pool it registered them in.
std::unique_ptr<google::protobuf::Message> NewGenerated(const std::string& type) {
  const auto* d = DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (!d) return nullptr;
  return std::unique_ptr<google::protobuf::Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(d)->New());
}

// One request on a reflection stream, through the host's generated types;
// the response as protobuf's text format ("" if there was none).
std::string AskReflection(const std::string& target, const std::string& request_text) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  // What generated code does for a bidi method, on raw bytes.
  grpc::internal::RpcMethod method(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      grpc::internal::RpcMethod::BIDI_STREAMING);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel.get(), method, &ctx));
  auto request = NewGenerated("grpc.reflection.v1alpha.ServerReflectionRequest");
  auto response = NewGenerated("grpc.reflection.v1alpha.ServerReflectionResponse");
  if (!request || !response) return "";
  if (!google::protobuf::TextFormat::ParseFromString(request_text, request.get())) return "";
  grpc::Slice out(request->SerializeAsString());
  grpc::ByteBuffer in;
  std::string text;
  if (stream->Write(grpc::ByteBuffer(&out, 1)) && stream->WritesDone() && stream->Read(&in)) {
    grpc::Slice bytes;
    if (in.DumpToSingleSlice(&bytes).ok() &&
        response->ParseFromArray(bytes.begin(), static_cast<int>(bytes.size()))) {
      text = response->ShortDebugString();
    }
  }
  grpc::Status status = stream->Finish();
  return status.ok() ? text : "";
}

// gRPC's error lines, while a test listens.
std::mutex log_mu;
std::vector<std::string> log_errors;
void CollectErrors(chat_log_severity severity, const char* message, size_t len, void*) {
  std::lock_guard<std::mutex> lock(log_mu);
  if (severity >= CHAT_LOG_ERROR) log_errors.emplace_back(message, len);
}

TEST(HostProto, LibchatHealthAndReflectionBesideTheHostsOwn) {
  // Had gRPC's default health service or reflection plugin joined libchat's
  // server, it would log "duplicate registration for <method>".
  ASSERT_EQ(chat_set_log_handler(CollectErrors, nullptr, CHAT_LOG_ERROR), CHAT_OK);
  chat_server_options so;
  ASSERT_EQ(chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION), CHAT_OK);
  so.health = 1;
  so.reflection = 1;
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_OK) << chat_last_error();
  const std::string target = "127.0.0.1:" + std::to_string(chat_server_port(server));
  RunSeedThroughCApi("http://" + target);

  // libchat's health, through the host's generated stub: gRPC's default
  // service would not know "Chat".
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  for (const char* service : {"", "Chat"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kWait);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = health->Check(&ctx, request, &response);
    ASSERT_TRUE(status.ok()) << service << ": " << status.error_code() << " "
                             << status.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kWait);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("nope");
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_EQ(health->Check(&ctx, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  }

  // libchat's reflection (gRPC's plugin would list no Chat, and describe
  // it from the host's pool), read with the host's generated types.
  std::string services = AskReflection(target, "list_services: \"\"");
  EXPECT_NE(services.find("service { name: \"Chat\" }"), std::string::npos) << services;
  EXPECT_NE(services.find("service { name: \"grpc.health.v1.Health\" }"), std::string::npos)
      << services;
  std::string chat_file = AskReflection(target, "file_containing_symbol: \"ChatMessage\"");
  EXPECT_NE(chat_file.find("file_descriptor_response"), std::string::npos) << chat_file;
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);

  // The host's own servers keep gRPC's default health service: it answers
  // "" and knows no "Chat" (libchat changed no process-wide setting).
  HostEcho echo;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&echo);
  std::unique_ptr<grpc::Server> host_server = builder.BuildAndStart();
  ASSERT_NE(host_server, nullptr);
  auto host_health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  for (const char* service : {"", "Chat"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kWait);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = host_health->Check(&ctx, request, &response);
    EXPECT_EQ(status.error_code(), *service ? grpc::StatusCode::NOT_FOUND : grpc::StatusCode::OK);
  }
  host_server->Shutdown(std::chrono::system_clock::now() + kWait);
  host_server->Wait();
  ASSERT_EQ(chat_set_log_handler(nullptr, nullptr, CHAT_LOG_ERROR), CHAT_OK);
  std::lock_guard<std::mutex> lock(log_mu);
  EXPECT_TRUE(log_errors.empty()) << log_errors.front();
}

// A Watch sees NOT_SERVING as soon as a stop begins, while an open chat
// stream holds the stop in its grace; the stop then ends the Watch.
TEST(HostProto, LibchatHealthWatchSeesTheStop) {
  chat_server_options so;
  ASSERT_EQ(chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION), CHAT_OK);
  so.health = 1;
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_OK) << chat_last_error();
  const std::string target = "127.0.0.1:" + std::to_string(chat_server_port(server));
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("Chat");
  auto watch = health->Watch(&ctx, request);
  grpc::health::v1::HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  chat_client* client = nullptr;
  ASSERT_EQ(chat_client_create(("http://" + target).c_str(), nullptr, &client), CHAT_OK);
  chat_stream* s = nullptr;
  ASSERT_EQ(chat_client_open(client, nullptr, &s), CHAT_OK);
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  std::string reply;
  ASSERT_EQ(chat::testing::Recv(s, &reply), CHAT_OK);
  int32_t cut = -1;
  chat_code stopped = CHAT_UNKNOWN;
  std::thread stopper([&] { stopped = chat_server_stop(server, 10000, &cut); });
  EXPECT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);  // lets the stop finish within its grace
  stopper.join();
  EXPECT_EQ(stopped, CHAT_OK);
  EXPECT_EQ(cut, 0);
  EXPECT_FALSE(watch->Read(&update));
  grpc::Status status = watch->Finish();
  EXPECT_TRUE(status.error_code() == grpc::StatusCode::UNAVAILABLE ||
              status.error_code() == grpc::StatusCode::CANCELLED)
      << status.error_code() << " " << status.error_message();
  chat_stream_destroy(s);
  chat_client_destroy(client);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
}

}  // namespace

int main(int argc, char** argv) {
  // Touch the host's generated code first, as a host would at startup.
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  ChatMessage first;
  grpc::health::v1::HealthCheckRequest health_first;
  if (first.GetDescriptor() == nullptr || health_first.GetDescriptor() == nullptr ||
      DescriptorPool::generated_pool()->FindFileByName("chat.proto") == nullptr ||
      DescriptorPool::generated_pool()->FindFileByName("grpc/health/v1/health.proto") == nullptr) {
    return 1;
  }
  // The process-wide switches a host may use for its own servers.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  if (!NewGenerated("grpc.reflection.v1alpha.ServerReflectionRequest")) return 1;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
