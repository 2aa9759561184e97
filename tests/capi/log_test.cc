// chat_set_log_handler: gRPC's own log lines reach the host's callback.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bad_request.h"
#include <libchat/chat.h>

namespace {

struct Captured {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<chat_log_severity, std::string>> lines;
  chat_code set_from_inside = CHAT_OK;
};

void Capture(chat_log_severity severity, const char* message, size_t len, void* ud) {
  auto* c = static_cast<Captured*>(ud);
  chat_code busy = chat_set_log_handler(nullptr, nullptr, CHAT_LOG_ERROR);
  std::lock_guard<std::mutex> lock(c->mu);
  c->set_from_inside = busy;
  c->lines.emplace_back(severity, std::string(message, len));
  c->cv.notify_all();
}

// A request with content-type text/plain to a fresh server: gRPC 1.51 logs
// (ERROR, BAD_REQUEST_LOG_LINE) while it parses the headers, on one of its
// threads. Returns once the server answered the request, which it does only
// after parsing them: by then the line was logged or dropped.
void SendBadRequest() {
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", nullptr, &server), CHAT_OK);
  int fd = bad_request_send(static_cast<int>(chat_server_port(server)));
  EXPECT_GE(fd, 0);
  if (fd >= 0) {
    EXPECT_EQ(bad_request_await_reply(fd, 10000), 0);
    close(fd);
  }
  chat_server_destroy(server);
}

size_t CountLocked(const Captured& c) {
  size_t n = 0;
  for (const auto& [severity, text] : c.lines) {
    n += severity == CHAT_LOG_ERROR && text.find(BAD_REQUEST_LOG_LINE) != std::string::npos;
  }
  return n;
}

size_t BadRequestErrors(Captured& c) {
  std::lock_guard<std::mutex> lock(c.mu);
  return CountLocked(c);
}

// The count once it reaches `n`, or after 10 s.
size_t WaitForBadRequestErrors(Captured& c, size_t n) {
  std::unique_lock<std::mutex> lock(c.mu);
  c.cv.wait_for(lock, std::chrono::seconds(10), [&] { return CountLocked(c) >= n; });
  return CountLocked(c);
}

TEST(CApiLog, GrpcLogLinesReachTheHandler) {
  Captured c;
  ASSERT_EQ(chat_set_log_handler(Capture, &c, CHAT_LOG_ERROR), CHAT_OK);
  SendBadRequest();
  EXPECT_EQ(WaitForBadRequestErrors(c, 1), 1u);
  {
    std::lock_guard<std::mutex> lock(c.mu);
    ASSERT_FALSE(c.lines.empty());
    const std::string& line = c.lines[0].second;
    EXPECT_NE(line.find(BAD_REQUEST_LOG_LINE), std::string::npos) << line;
    EXPECT_NE(line.find("hpack_parser.cc:"), std::string::npos) << line;  // "file:line: text"
    EXPECT_EQ(c.set_from_inside, CHAT_ERR_BUSY);  // and the handler stayed
  }
  // "Drop everything": the callback is not called any more.
  ASSERT_EQ(chat_set_log_handler(Capture, &c, CHAT_LOG_NONE), CHAT_OK);
  SendBadRequest();
  EXPECT_EQ(BadRequestErrors(c), 1u);
  ASSERT_EQ(chat_set_log_handler(Capture, &c, CHAT_LOG_ERROR), CHAT_OK);
  SendBadRequest();
  EXPECT_EQ(WaitForBadRequestErrors(c, 2), 2u);
  // Back to the default (stderr); unknown severities are refused.
  EXPECT_EQ(chat_set_log_handler(nullptr, nullptr, CHAT_LOG_ERROR), CHAT_OK);
  SendBadRequest();
  EXPECT_EQ(BadRequestErrors(c), 2u);
  int raw = 7;
  chat_log_severity bad;
  static_assert(sizeof bad == sizeof raw, "enum is int-sized");
  std::memcpy(&bad, &raw, sizeof bad);
  EXPECT_EQ(chat_set_log_handler(Capture, &c, bad), CHAT_ERR_BAD_ARGUMENT);
}

}  // namespace
