// Server metadata through the C ABI: a handler adds initial and trailing
// metadata, the client reads both; additions that come too late or are
// malformed are refused with a clear code.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../capi/capi_pair.h"

namespace {

using chat::testing::Drain;
using chat::testing::Recv;
using chat::testing::Send;
using chat::testing::ServerClientPair;
using chat::testing::Text;

using Entries = std::multimap<std::string, std::string>;

// What the handler saw when it tried the additions that must fail.
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<chat_code> codes;
  void Add(chat_code c) {
    {
      std::lock_guard<std::mutex> lock(mu);
      codes.push_back(c);
    }
    cv.notify_all();
  }
  // The handler's last addition may still run after the client saw the end.
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return codes.size() >= n; });
  }
};

chat_code AddInitial(chat_call* call, const std::string& k, const std::string& v) {
  return chat_call_add_initial_metadata(call, k.c_str(), v.data(), v.size());
}
chat_code AddTrailing(chat_call* call, const std::string& k, const std::string& v) {
  return chat_call_add_trailing_metadata(call, k.c_str(), v.data(), v.size());
}

void OnOpen(chat_call* call, void* user) {
  auto* seen = static_cast<Seen*>(user);
  seen->Add(AddInitial(call, "x-greeting", "hello"));
  seen->Add(AddInitial(call, "x-raw-bin", std::string("\0\1\2", 3)));
  seen->Add(AddInitial(call, "Bad-Key", "v"));           // upper case
  seen->Add(AddInitial(call, "grpc-status", "0"));       // reserved
  seen->Add(AddInitial(call, "x-ctl", "line\nbreak"));   // not printable
  seen->Add(AddTrailing(call, "x-early", "set in on_open"));
}

void OnMessage(chat_call* call, const char* name, size_t name_len, const char* msg,
               size_t msg_len, void* user) {
  auto* seen = static_cast<Seen*>(user);
  std::string line = Text(name, name_len) + ": " + Text(msg, msg_len);
  chat_call_send(call, line.data(), line.size(), 5000);
  seen->Add(AddInitial(call, "x-late", "after a send"));  // too late
}

void OnComplete(chat_call* call, void* user) {
  auto* seen = static_cast<Seen*>(user);
  seen->Add(AddTrailing(call, "x-count", "1"));
  chat_call_complete(call);
  seen->Add(AddTrailing(call, "x-after", "complete"));  // too late
}

Entries Read(chat_stream* s, int32_t which) {
  Entries out;
  size_t n = 0;
  EXPECT_EQ(chat_stream_metadata_count(s, which, &n), CHAT_OK) << chat_last_error();
  for (size_t i = 0; i < n; ++i) {
    const char *k, *v;
    size_t kl, vl;
    EXPECT_EQ(chat_stream_metadata_at(s, which, i, &k, &kl, &v, &vl), CHAT_OK);
    out.emplace(Text(k, kl), Text(v, vl));
  }
  return out;
}

class MetadataTest : public ServerClientPair {
 protected:
  void StartCustom() {
    chat_server_options so;
    chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
    so.mode = CHAT_MODE_CUSTOM;
    so.on_open = OnOpen;
    so.on_message = OnMessage;
    so.on_complete = OnComplete;
    so.user_data = &seen_;
    Start(&so);
  }
  Seen seen_;
};

TEST_F(MetadataTest, TheClientReadsInitialAndTrailingMetadata) {
  StartCustom();
  chat_stream* s = Open();
  size_t n;
  // Nothing has come from the server yet.
  EXPECT_EQ(chat_stream_metadata_count(s, CHAT_METADATA_INITIAL, &n), CHAT_ERR_BAD_STATE);
  EXPECT_EQ(chat_stream_metadata_count(s, CHAT_METADATA_TRAILING, &n), CHAT_ERR_BAD_STATE);
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  std::string reply;
  ASSERT_EQ(Recv(s, &reply), CHAT_OK);
  EXPECT_EQ(reply, "Sam: Hi");
  Entries initial = Read(s, CHAT_METADATA_INITIAL);
  EXPECT_EQ(initial, (Entries{{"x-greeting", "hello"}, {"x-raw-bin", std::string("\0\1\2", 3)}}));
  EXPECT_EQ(chat_stream_metadata_count(s, CHAT_METADATA_TRAILING, &n), CHAT_ERR_BAD_STATE);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  Drain(s, &end);
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  EXPECT_EQ(Read(s, CHAT_METADATA_TRAILING), (Entries{{"x-early", "set in on_open"}, {"x-count", "1"}}));
  EXPECT_EQ(Read(s, CHAT_METADATA_INITIAL), initial);  // unchanged

  ASSERT_TRUE(seen_.WaitFor(9));
  std::lock_guard<std::mutex> lock(seen_.mu);
  EXPECT_EQ(seen_.codes, (std::vector<chat_code>{
                             CHAT_OK, CHAT_OK, CHAT_ERR_BAD_ARGUMENT, CHAT_ERR_BAD_ARGUMENT,
                             CHAT_ERR_BAD_ARGUMENT, CHAT_OK,  // on_open
                             CHAT_ERR_BAD_STATE,              // initial after a send
                             CHAT_OK, CHAT_ERR_BAD_STATE}));  // trailing before / after complete
}

// A call completed without a reply still carries its initial metadata
// (with the status).
TEST_F(MetadataTest, InitialMetadataComesWithTheStatusWhenThereIsNoReply) {
  StartCustom();
  chat_stream* s = Open();
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_TRUE(Drain(s, &end).empty());
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  EXPECT_EQ(Read(s, CHAT_METADATA_INITIAL).count("x-greeting"), 1u);
  EXPECT_EQ(Read(s, CHAT_METADATA_TRAILING).count("x-count"), 1u);
}

TEST_F(MetadataTest, BadArgumentsAreRefused) {
  StartCustom();
  chat_stream* s = Open();
  size_t n;
  const char *k, *v;
  size_t kl, vl;
  EXPECT_EQ(chat_stream_metadata_count(s, 2, &n), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_metadata_count(s, CHAT_METADATA_INITIAL, nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_metadata_count(nullptr, CHAT_METADATA_INITIAL, &n), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_add_initial_metadata(nullptr, "k", "v", 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_add_trailing_metadata(nullptr, "k", "v", 1), CHAT_ERR_BAD_ARGUMENT);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  ASSERT_EQ(chat_stream_wait(s, 10000), CHAT_OK);
  EXPECT_EQ(chat_stream_metadata_at(s, CHAT_METADATA_INITIAL, 99, &k, &kl, &v, &vl),
            CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_metadata_at(s, CHAT_METADATA_INITIAL, 0, nullptr, &kl, &v, &vl),
            CHAT_ERR_BAD_ARGUMENT);
  char err[128];
  EXPECT_GT(chat_stream_error(s, err, sizeof err), 0u);
}

}  // namespace
