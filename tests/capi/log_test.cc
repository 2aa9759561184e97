// chat_set_log_handler: gRPC's own log lines reach the host's callback.
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "chat.h"

namespace {

struct Captured {
  std::mutex mu;
  std::vector<std::pair<chat_log_severity, std::string>> lines;
  chat_code set_from_inside = CHAT_OK;
};

void Capture(chat_log_severity severity, const char* message, size_t len, void* ud) {
  auto* c = static_cast<Captured*>(ud);
  chat_code busy = chat_set_log_handler(nullptr, nullptr, CHAT_LOG_ERROR);
  std::lock_guard<std::mutex> lock(c->mu);
  c->set_from_inside = busy;
  c->lines.emplace_back(severity, std::string(message, len));
}

// A second server on a port in use fails, and gRPC 1.51 logs why (ERROR,
// "No address added out of total 1 resolved ...") on the calling thread.
chat_code BindTwice() {
  chat_server* first = nullptr;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", nullptr, &first), CHAT_OK);
  std::string taken = "127.0.0.1:" + std::to_string(chat_server_port(first));
  chat_server* second = nullptr;
  chat_code rc = chat_server_start(taken.c_str(), nullptr, &second);
  chat_server_destroy(second);
  chat_server_destroy(first);
  return rc;
}

size_t BindErrors(Captured& c) {
  std::lock_guard<std::mutex> lock(c.mu);
  size_t n = 0;
  for (const auto& [severity, text] : c.lines) {
    n += severity == CHAT_LOG_ERROR && text.find("No address added") != std::string::npos;
  }
  return n;
}

TEST(CApiLog, GrpcLogLinesReachTheHandler) {
  Captured c;
  ASSERT_EQ(chat_set_log_handler(Capture, &c, CHAT_LOG_ERROR), CHAT_OK);
  EXPECT_EQ(BindTwice(), CHAT_UNAVAILABLE);
  EXPECT_EQ(BindErrors(c), 1u);
  {
    std::lock_guard<std::mutex> lock(c.mu);
    ASSERT_FALSE(c.lines.empty());
    EXPECT_NE(c.lines[0].second.find("chttp2_server.cc:"), std::string::npos) << c.lines[0].second;
    EXPECT_EQ(c.set_from_inside, CHAT_ERR_BUSY);  // and the handler stayed
  }
  // "Drop everything": the callback is not called any more.
  ASSERT_EQ(chat_set_log_handler(Capture, &c, CHAT_LOG_NONE), CHAT_OK);
  EXPECT_EQ(BindTwice(), CHAT_UNAVAILABLE);
  EXPECT_EQ(BindErrors(c), 1u);
  ASSERT_EQ(chat_set_log_handler(Capture, &c, CHAT_LOG_ERROR), CHAT_OK);
  EXPECT_EQ(BindTwice(), CHAT_UNAVAILABLE);
  EXPECT_EQ(BindErrors(c), 2u);
  // Back to the default (stderr); unknown severities are refused.
  EXPECT_EQ(chat_set_log_handler(nullptr, nullptr, CHAT_LOG_ERROR), CHAT_OK);
  EXPECT_EQ(BindTwice(), CHAT_UNAVAILABLE);
  EXPECT_EQ(BindErrors(c), 2u);
  int raw = 7;
  chat_log_severity bad;
  static_assert(sizeof bad == sizeof raw, "enum is int-sized");
  std::memcpy(&bad, &raw, sizeof bad);
  EXPECT_EQ(chat_set_log_handler(Capture, &c, bad), CHAT_ERR_BAD_ARGUMENT);
}

}  // namespace
