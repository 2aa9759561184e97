// What the C ABI suites share: an echo (or configured) server and a client
// for it on 127.0.0.1 with an ephemeral port, destroyed after each test,
// and small send/receive helpers.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <libchat/chat.h>

namespace chat::testing {

// "127.0.0.1:PORT" for a server started on 127.0.0.1:0.
inline std::string Target(const chat_server* server) {
  return "127.0.0.1:" + std::to_string(chat_server_port(server));
}

// A text the library lent (reply, event name or text); null is empty.
inline std::string Text(const char* p, size_t n) { return p ? std::string(p, n) : std::string(); }

inline chat_code Send(chat_stream* s, const std::string& name, const std::string& msg,
                      int64_t timeout_ms = 5000) {
  return chat_stream_send(s, name.data(), name.size(), msg.data(), msg.size(), timeout_ms);
}

// One reply into *out; returns the receive's code.
inline chat_code Recv(chat_stream* s, std::string* out, int64_t timeout_ms = 5000) {
  const char* text;
  size_t len;
  chat_code rc = chat_stream_recv(s, timeout_ms, &text, &len);
  if (rc == CHAT_OK) out->assign(text, len);
  return rc;
}

// Receives until the stream ends; *end gets the terminal code.
inline std::vector<std::string> Drain(chat_stream* s, chat_code* end) {
  std::vector<std::string> out;
  for (;;) {
    const char* text;
    size_t len;
    chat_code rc = chat_stream_recv(s, 10000, &text, &len);
    if (rc != CHAT_OK) {
      *end = rc;
      return out;
    }
    out.emplace_back(text, len);
  }
}

class ServerClientPair : public ::testing::Test {
 protected:
  // The client uses Ballerina's URL form of the target.
  void Start(const chat_server_options* so = nullptr, const chat_client_options* co = nullptr) {
    ASSERT_EQ(chat_server_start("127.0.0.1:0", so, &server_), CHAT_OK) << chat_last_error();
    std::string target = "http://" + Target(server_);
    ASSERT_EQ(chat_client_create(target.c_str(), co, &client_), CHAT_OK) << chat_last_error();
  }
  // A stream destroyed with the test.
  chat_stream* Open(const chat_stream_options* opts = nullptr) {
    chat_stream* s = nullptr;
    EXPECT_EQ(chat_client_open(client_, opts, &s), CHAT_OK) << chat_last_error();
    streams_.push_back(s);
    return s;
  }
  void TearDown() override {
    for (auto* s : streams_) chat_stream_destroy(s);
    chat_client_destroy(client_);
    EXPECT_EQ(chat_server_destroy(server_), CHAT_OK);
  }
  chat_server* server_ = nullptr;
  chat_client* client_ = nullptr;
  std::vector<chat_stream*> streams_;
};

}  // namespace chat::testing
