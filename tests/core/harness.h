// A server plus a client on 127.0.0.1 with an ephemeral port.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "chat/client.h"
#include "chat/server.h"
#include "test_support.h"

namespace chat::testing {

class ChatTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}, ClientOptions client_options = {}) {
    options.address = "127.0.0.1:0";
    Status s = Server::Start(options, &server_);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_GT(server_->port(), 0);
    s = Client::Create("127.0.0.1:" + std::to_string(server_->port()), client_options, &client_);
    ASSERT_TRUE(s.ok()) << s.message();
  }

  std::shared_ptr<ClientStream> Open(StreamOptions options = {}) {
    std::shared_ptr<ClientStream> stream;
    Status s = client_->Open(options, &stream);
    EXPECT_TRUE(s.ok()) << s.message();
    return stream;
  }

  // Sends the Ballerina seed (Sam/Hi, Ann/Hey, John/Hello) and half-closes.
  static void SendSeed(ClientStream& stream) {
    ASSERT_TRUE(stream.Send("Sam", "Hi", std::chrono::seconds(5)).ok());
    ASSERT_TRUE(stream.Send("Ann", "Hey", std::chrono::seconds(5)).ok());
    ASSERT_TRUE(stream.Send("John", "Hello", std::chrono::seconds(5)).ok());
    ASSERT_TRUE(stream.Complete().ok());
  }
  static std::vector<std::string> SeedReplies() { return {"Sam: Hi", "Ann: Hey", "John: Hello"}; }

  // Receives until the stream ends; `end` gets the terminal result
  // (kEndOfStream for a clean end).
  static std::vector<std::string> Drain(ClientStream& stream, Status* end,
                                        Timeout per_reply = std::chrono::seconds(10)) {
    std::vector<std::string> replies;
    for (;;) {
      std::string reply;
      Status s = stream.Recv(&reply, per_reply);
      if (!s.ok()) {
        *end = s;
        return replies;
      }
      replies.push_back(std::move(reply));
    }
  }

  // Sends `size`-byte messages until a send waits 300 ms in vain, i.e. the
  // bounded queues and HTTP/2 flow control push back. Returns how many were
  // accepted; fails the test if it never pushes back within `bound`
  // messages (the queues plus HTTP/2 windows of a few MB).
  static int SendUntilPushedBack(ClientStream& stream, size_t size = 1024, int bound = 100000) {
    const std::string payload(size, 'p');
    for (int accepted = 0; accepted < bound; ++accepted) {
      Status s = stream.Send("slow", payload, std::chrono::milliseconds(300));
      if (!s.ok()) {
        EXPECT_EQ(s.code(), Code::kTimeout) << s.message();
        return accepted;
      }
    }
    ADD_FAILURE() << "never pushed back after " << bound << " messages";
    return bound;
  }

  void TearDown() override {
    if (server_) {
      int cut = 0;
      server_->Stop(std::chrono::milliseconds(250), &cut);
    }
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
};

}  // namespace chat::testing
