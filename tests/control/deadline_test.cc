// Deadlines through the C ABI: a handler reads the time its call has left;
// Ballerina's `deadline` header is honoured when grpc-timeout is absent.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "../capi/capi_pair.h"

namespace {

using chat::testing::Drain;
using chat::testing::Recv;
using chat::testing::Send;
using chat::testing::ServerClientPair;

// An RFC 3339 UTC timestamp `from_now` ahead, with milliseconds.
std::string Rfc3339In(std::chrono::milliseconds from_now) {
  auto t = std::chrono::system_clock::now() + from_now;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[80];
  snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

// Replies to each message with the call's time left ("-1" without a
// deadline) and records how each call closed.
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<chat_code> closed;
};

void OnMessage(chat_call* call, const char*, size_t, const char*, size_t, void*) {
  int64_t left = -2;
  chat_call_time_left(call, &left);
  std::string text = std::to_string(left);
  chat_call_send(call, text.data(), text.size(), 5000);
}

void OnClose(chat_call*, chat_code code, const char*, size_t, void* user) {
  auto* seen = static_cast<Seen*>(user);
  std::lock_guard<std::mutex> lock(seen->mu);
  seen->closed.push_back(code);
  seen->cv.notify_all();
}

class DeadlineTest : public ServerClientPair {
 protected:
  void StartCustom() {
    chat_server_options so;
    chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
    so.mode = CHAT_MODE_CUSTOM;
    so.on_message = OnMessage;
    so.on_close = OnClose;
    so.user_data = &seen_;
    Start(&so);
  }
  chat_stream* OpenWith(int64_t deadline_ms, const char* header) {
    chat_stream_options o;
    chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
    o.deadline_ms = deadline_ms;
    chat_metadata md[] = {{"deadline", header}};
    if (header) {
      o.metadata = md;
      o.metadata_count = 1;
    }
    return Open(&o);
  }
  // The handler's time left, as it replied.
  int64_t TimeLeft(chat_stream* s) {
    EXPECT_EQ(Send(s, "n", "m"), CHAT_OK);
    std::string reply;
    EXPECT_EQ(Recv(s, &reply), CHAT_OK);
    return reply.empty() ? -3 : std::stoll(reply);
  }
  Seen seen_;
};

TEST_F(DeadlineTest, NoDeadlineIsMinusOne) {
  StartCustom();
  EXPECT_EQ(TimeLeft(OpenWith(-1, nullptr)), -1);
  // Beyond what the clock counts (2262): as good as none.
  EXPECT_EQ(TimeLeft(OpenWith(-1, "2999-12-31T23:59:59.5Z")), -1);
}

TEST_F(DeadlineTest, GrpcTimeoutIsTheTimeLeft) {
  StartCustom();
  int64_t left = TimeLeft(OpenWith(20000, nullptr));
  EXPECT_GT(left, 15000);
  EXPECT_LE(left, 21000);  // grpc-timeout is rounded up on the wire
}

// The header alone: the handler sees it, and the call ends with
// DEADLINE_EXCEEDED at that time, on both sides.
TEST_F(DeadlineTest, BallerinaDeadlineHeaderEndsTheCallAtItsTime) {
  StartCustom();
  auto start = std::chrono::steady_clock::now();
  std::string header = Rfc3339In(std::chrono::milliseconds(800));
  chat_stream* s = OpenWith(-1, header.c_str());
  int64_t left = TimeLeft(s);
  EXPECT_GT(left, 0);
  EXPECT_LE(left, 800);
  chat_code end;
  Drain(s, &end);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(end, CHAT_DEADLINE_EXCEEDED);
  EXPECT_GE(took, std::chrono::milliseconds(700));  // not before its time (clock granularity)
  EXPECT_LT(took, std::chrono::seconds(5));
  std::unique_lock<std::mutex> lock(seen_.mu);
  ASSERT_TRUE(seen_.cv.wait_for(lock, std::chrono::seconds(10),
                                [&] { return !seen_.closed.empty(); }));
  EXPECT_EQ(seen_.closed[0], CHAT_DEADLINE_EXCEEDED);
}

// grpc-timeout wins over the header: a header already past does not end
// a call that has a gRPC deadline 20 s away.
TEST_F(DeadlineTest, GrpcTimeoutTakesPrecedenceOverTheHeader) {
  StartCustom();
  std::string past = Rfc3339In(std::chrono::milliseconds(-1000));
  chat_stream* s = OpenWith(20000, past.c_str());
  EXPECT_GT(TimeLeft(s), 15000);
  EXPECT_GT(TimeLeft(s), 15000);  // still open, answering
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  Drain(s, &end);
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
}

// Echo mode honours the header too; one in the past ends the call at once,
// an offset form is understood, and a malformed one is refused.
TEST_F(DeadlineTest, EchoServerHonoursTheHeader) {
  Start();
  std::string past = Rfc3339In(std::chrono::milliseconds(-1));
  chat_code end;
  Drain(OpenWith(-1, past.c_str()), &end);
  EXPECT_EQ(end, CHAT_DEADLINE_EXCEEDED);
  Drain(OpenWith(-1, "2001-01-01T02:00:00+02:00"), &end);
  EXPECT_EQ(end, CHAT_DEADLINE_EXCEEDED);
  chat_stream* bad = OpenWith(-1, "tomorrow");
  Drain(bad, &end);
  EXPECT_EQ(end, CHAT_INVALID_ARGUMENT);
  const char* details = nullptr;
  chat_code code;
  ASSERT_EQ(chat_stream_status(bad, &code, &details, nullptr), CHAT_OK);
  EXPECT_NE(std::string(details).find("RFC 3339"), std::string::npos) << details;
  chat_stream* far = OpenWith(-1, "2999-12-31T23:59:59.5Z");
  std::string reply;
  ASSERT_EQ(Send(far, "a", "b"), CHAT_OK);
  ASSERT_EQ(Recv(far, &reply), CHAT_OK);
  EXPECT_EQ(reply, "a: b");
}

TEST(DeadlineArgs, BadArgumentsAreRefused) {
  int64_t ms = 5;
  EXPECT_EQ(chat_call_time_left(nullptr, &ms), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(ms, -1);
}

}  // namespace
