// Huge timeouts through the C ABI: every int64_t value behaves as
// documented, and one too large for a clock (INT64_MAX ms and anything above
// about 9.2e12 ms) means "no practical limit", never "already expired".
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "capi_pair.h"
#include <libchat/chat.h>

namespace {

using namespace std::chrono_literals;

constexpr int64_t kHuge[] = {INT64_MAX, INT64_MAX / 2, 10000000000000LL /* 1e13 */};

// How long the other side takes before it does what a waiter waits for.
constexpr auto kLater = 100ms;

using chat::testing::Send;

class HugeTimeouts : public chat::testing::ServerClientPair,
                     public ::testing::WithParamInterface<int64_t> {};

TEST_P(HugeTimeouts, RecvWaitsForALateReply) {
  Start();
  chat_stream* s = Open();
  std::thread later([&] {
    std::this_thread::sleep_for(kLater);  // the reply must be waited for
    EXPECT_EQ(Send(s, "late", "reply"), CHAT_OK);
  });
  const char* text = nullptr;
  size_t len = 0;
  chat_code rc = chat_stream_recv(s, GetParam(), &text, &len);
  later.join();
  ASSERT_EQ(rc, CHAT_OK) << chat_code_name(rc);
  EXPECT_EQ(std::string(text, len), "late: reply");
}

TEST_P(HugeTimeouts, RecvBatchWaitsForALateReply) {
  Start();
  chat_stream* s = Open();
  std::thread later([&] {
    std::this_thread::sleep_for(kLater);
    EXPECT_EQ(Send(s, "late", "batch"), CHAT_OK);
  });
  chat_text out[4];
  size_t n = 0;
  chat_code rc = chat_stream_recv_batch(s, GetParam(), out, 4, &n);
  later.join();
  ASSERT_EQ(rc, CHAT_OK) << chat_code_name(rc);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(std::string(out[0].data, out[0].len), "late: batch");
}

TEST_P(HugeTimeouts, WaitWaitsForTheEnd) {
  Start();
  chat_stream* s = Open();
  std::thread later([&] {
    std::this_thread::sleep_for(kLater);
    EXPECT_EQ(chat_stream_complete(s), CHAT_OK);
  });
  chat_code rc = chat_stream_wait(s, GetParam());
  later.join();
  ASSERT_EQ(rc, CHAT_OK) << chat_code_name(rc);
  chat_code code = CHAT_INTERNAL;
  ASSERT_EQ(chat_stream_status(s, &code, nullptr, nullptr), CHAT_OK);
  EXPECT_EQ(code, CHAT_OK);
}

TEST_P(HugeTimeouts, StreamDeadlineIsNoPracticalLimit) {
  Start();
  chat_stream_options so;
  chat_stream_options_init(&so, CHAT_STREAM_OPTIONS_VERSION);
  so.deadline_ms = GetParam();
  chat_stream* s = Open(&so);
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  const char* text = nullptr;
  size_t len = 0;
  ASSERT_EQ(chat_stream_recv(s, 5000, &text, &len), CHAT_OK);
  EXPECT_EQ(std::string(text, len), "Sam: Hi");
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  EXPECT_EQ(chat_stream_recv(s, 5000, &text, &len), CHAT_END_OF_STREAM);
  chat_code code = CHAT_INTERNAL;
  const char* details = nullptr;
  ASSERT_EQ(chat_stream_status(s, &code, &details, nullptr), CHAT_OK);
  EXPECT_EQ(code, CHAT_OK) << details;
}

// Sends (each try waiting up to 200 ms) until three tries in a row time
// out: the queues are then full and stay full, rather than merely slow to
// drain (HTTP/2 windows can still open for a while, more so under a
// sanitizer). Returns TIMEOUT then, or the first other error.
template <class Send>
chat_code FillUntilStuck(Send send) {
  int stuck = 0;
  for (int i = 0; i < 100000 && stuck < 3; ++i) {
    chat_code rc = send();
    if (rc == CHAT_ERR_TIMEOUT) {
      ++stuck;
    } else if (rc == CHAT_OK) {
      stuck = 0;
    } else {
      return rc;
    }
  }
  return stuck >= 3 ? CHAT_ERR_TIMEOUT : CHAT_OK;
}

// Receives until `wanted` arrives (true) or the stream ends or stalls for
// 10 s (false).
bool ReceiveUntil(chat_stream* s, const std::string& wanted) {
  const char* text;
  size_t len;
  while (chat_stream_recv(s, 10000, &text, &len) == CHAT_OK) {
    if (std::string(text, len) == wanted) return true;
  }
  return false;
}

// A client that does not read fills the echo server's queue, then its own;
// a send with a huge timeout then waits until the client reads again.
TEST_P(HugeTimeouts, StreamSendWaitsForRoom) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.send_queue_limit = 4;
  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  co.send_queue_limit = 4;
  co.recv_queue_limit = 4;
  Start(&so, &co);
  chat_stream* s = Open();
  const std::string payload(16384, 'z');
  chat_code rc = FillUntilStuck([&] { return Send(s, "n", payload, 200); });
  ASSERT_EQ(rc, CHAT_ERR_TIMEOUT);  // full, and staying full
  auto send = std::async(std::launch::async, [&] { return Send(s, "n", "last", GetParam()); });
  ASSERT_EQ(send.wait_for(kLater), std::future_status::timeout) << "returned "
                                                                << chat_code_name(send.get());
  // Reading makes room: the waiting send goes through, and its message
  // comes back last. (The sender may be slow to report: its message is
  // what tells that it went through.)
  EXPECT_TRUE(ReceiveUntil(s, "n: last"));
  EXPECT_EQ(send.get(), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  const char* text;
  size_t len;
  EXPECT_EQ(chat_stream_recv(s, 10000, &text, &len), CHAT_END_OF_STREAM);
}

// The server side of the same: a call whose client does not read.
struct Kept {
  std::atomic<chat_call*> call{nullptr};
};

void KeepCall(chat_call* call, void* ud) {
  chat_call_ref(call);
  static_cast<Kept*>(ud)->call.store(call);
}
void IgnoreMessage(chat_call*, const char*, size_t, const char*, size_t, void*) {}

TEST_P(HugeTimeouts, CallSendWaitsForRoom) {
  Kept kept;
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.mode = CHAT_MODE_CUSTOM;
  so.send_queue_limit = 4;
  so.on_open = KeepCall;
  so.on_message = IgnoreMessage;
  so.user_data = &kept;
  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  co.recv_queue_limit = 4;
  Start(&so, &co);
  chat_stream* s = Open();
  ASSERT_EQ(Send(s, "hello", "server"), CHAT_OK);  // makes the call start
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!kept.call.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  chat_call* call = kept.call.load();
  ASSERT_NE(call, nullptr);
  const std::string payload(16384, 'y');
  chat_code rc =
      FillUntilStuck([&] { return chat_call_send(call, payload.data(), payload.size(), 200); });
  ASSERT_EQ(rc, CHAT_ERR_TIMEOUT);
  auto send = std::async(std::launch::async, [&] {
    return chat_call_send(call, "last", 4, GetParam());
  });
  ASSERT_EQ(send.wait_for(kLater), std::future_status::timeout) << "returned "
                                                                << chat_code_name(send.get());
  EXPECT_TRUE(ReceiveUntil(s, "last"));
  EXPECT_EQ(send.get(), CHAT_OK);
  ASSERT_EQ(chat_call_complete(call), CHAT_OK);
  const char* text;
  size_t len;
  EXPECT_EQ(chat_stream_recv(s, 10000, &text, &len), CHAT_END_OF_STREAM);
  chat_call_unref(call);
}

TEST_P(HugeTimeouts, StopWithoutOpenCallsReturnsAtOnce) {
  Start();
  auto t0 = std::chrono::steady_clock::now();
  int32_t cut = -1;
  ASSERT_EQ(chat_server_stop(server_, GetParam(), &cut), CHAT_OK);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(cut, 0);
}

TEST_P(HugeTimeouts, StopWaitsForAnOpenCallInsteadOfCuttingIt) {
  Start();
  chat_stream* s = Open();
  ASSERT_EQ(Send(s, "a", "b"), CHAT_OK);
  const char* text;
  size_t len;
  ASSERT_EQ(chat_stream_recv(s, 5000, &text, &len), CHAT_OK);  // the call is open
  int32_t cut = -1;
  auto stop = std::async(std::launch::async, [&] { return chat_server_stop(server_, GetParam(), &cut); });
  ASSERT_EQ(stop.wait_for(kLater), std::future_status::timeout) << "cut " << (stop.get(), cut);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);  // the call ends by itself
  ASSERT_EQ(stop.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(stop.get(), CHAT_OK);
  EXPECT_EQ(cut, 0);
  EXPECT_EQ(chat_stream_recv(s, 5000, &text, &len), CHAT_END_OF_STREAM);
}

INSTANTIATE_TEST_SUITE_P(CApi, HugeTimeouts, ::testing::ValuesIn(kHuge));

}  // namespace
