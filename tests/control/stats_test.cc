// Stats through the C ABI: chat_server_stats / chat_client_stats count
// streams, messages and their bytes over real sockets.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "../capi/capi_pair.h"

namespace {

using chat::testing::Drain;
using chat::testing::Recv;
using chat::testing::Send;
using chat::testing::ServerClientPair;

chat_stats ServerStats(const chat_server* server) {
  chat_stats s;
  s.version = CHAT_STATS_VERSION;
  EXPECT_EQ(chat_server_stats(server, &s), CHAT_OK) << chat_last_error();
  return s;
}

chat_stats ClientStats(const chat_client* client) {
  chat_stats s;
  s.version = CHAT_STATS_VERSION;
  EXPECT_EQ(chat_client_stats(client, &s), CHAT_OK) << chat_last_error();
  return s;
}

// Polls `cond` until it holds or 10 s pass.
bool Eventually(const std::function<bool()>& cond) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// The protobuf size of a string field of `n` bytes (n < 128): tag, length, bytes.
uint64_t Field(size_t n) { return 2 + n; }

class StatsTest : public ServerClientPair {};

TEST_F(StatsTest, CountStreamsMessagesAndBytesOnBothSides) {
  Start();
  chat_stream* s = Open();
  const std::vector<std::pair<std::string, std::string>> sent = {
      {"Sam", "Hi"}, {"Ann", "Hey there"}, {"John", ""}};
  uint64_t out_bytes = 0, in_bytes = 0;
  for (const auto& [name, msg] : sent) {
    ASSERT_EQ(Send(s, name, msg), CHAT_OK);
    // An empty string field is not encoded at all (proto3).
    out_bytes += Field(name.size()) + (msg.empty() ? 0 : Field(msg.size()));
    in_bytes += Field(name.size() + 2 + msg.size());  // "<name>: <message>"
  }
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end).size(), sent.size());
  EXPECT_EQ(end, CHAT_END_OF_STREAM);

  ASSERT_TRUE(Eventually([&] { return ServerStats(server_).streams_open == 0; }));
  chat_stats srv = ServerStats(server_);
  EXPECT_EQ(srv.version, CHAT_STATS_VERSION);
  EXPECT_EQ(srv.streams_total, 1u);
  EXPECT_EQ(srv.streams_refused, 0u);
  EXPECT_EQ(srv.streams_cut, 0u);
  EXPECT_EQ(srv.messages_in, 3u);
  EXPECT_EQ(srv.messages_out, 3u);
  EXPECT_EQ(srv.bytes_in, out_bytes);
  EXPECT_EQ(srv.bytes_out, in_bytes);

  chat_stats cli = ClientStats(client_);
  EXPECT_EQ(cli.streams_open, 0u);
  EXPECT_EQ(cli.streams_total, 1u);
  EXPECT_EQ(cli.streams_refused, 0u);
  EXPECT_EQ(cli.streams_cut, 0u);
  EXPECT_EQ(cli.messages_out, 3u);
  EXPECT_EQ(cli.messages_in, 3u);
  EXPECT_EQ(cli.bytes_out, out_bytes);
  EXPECT_EQ(cli.bytes_in, in_bytes);
}

TEST_F(StatsTest, OpenStreamsAreCountedWhileOpen) {
  Start();
  std::vector<chat_stream*> streams;
  for (int i = 0; i < 3; ++i) {
    chat_stream* s = Open();
    std::string reply;
    ASSERT_EQ(Send(s, "n", "m"), CHAT_OK);
    ASSERT_EQ(Recv(s, &reply), CHAT_OK);  // admitted and answered
    streams.push_back(s);
  }
  EXPECT_EQ(ServerStats(server_).streams_open, 3u);
  EXPECT_EQ(ServerStats(server_).streams_total, 3u);
  EXPECT_EQ(ClientStats(client_).streams_open, 3u);
  ASSERT_EQ(chat_stream_cancel(streams[0]), CHAT_OK);
  ASSERT_EQ(chat_stream_wait(streams[0], 10000), CHAT_OK);
  EXPECT_EQ(ClientStats(client_).streams_open, 2u);
  EXPECT_EQ(ClientStats(client_).streams_cut, 0u);  // its own cancel is no cut
  ASSERT_TRUE(Eventually([&] { return ServerStats(server_).streams_open == 2; }));
}

// A stop's deadline cuts the open streams: the server counts them cut; the
// client counts them cut too (they had replies). A stream opened after the
// stop finds no listener: refused on the client.
TEST_F(StatsTest, StopCutsAndRefusalsAreCounted) {
  Start();
  for (int i = 0; i < 2; ++i) {
    chat_stream* s = Open();
    std::string reply;
    ASSERT_EQ(Send(s, "n", "m"), CHAT_OK);
    ASSERT_EQ(Recv(s, &reply), CHAT_OK);
  }
  int32_t cut = 0;
  ASSERT_EQ(chat_server_stop(server_, 0, &cut), CHAT_OK);
  EXPECT_EQ(cut, 2);
  chat_stats srv = ServerStats(server_);  // still readable after the stop
  EXPECT_EQ(srv.streams_cut, 2u);
  EXPECT_EQ(srv.streams_open, 0u);
  for (chat_stream* s : streams_) ASSERT_EQ(chat_stream_wait(s, 10000), CHAT_OK);
  EXPECT_EQ(ClientStats(client_).streams_cut, 2u);

  chat_stream* late = Open();
  ASSERT_EQ(chat_stream_wait(late, 10000), CHAT_OK);
  chat_code code;
  ASSERT_EQ(chat_stream_status(late, &code, nullptr, nullptr), CHAT_OK);
  EXPECT_EQ(code, CHAT_UNAVAILABLE);
  chat_stats cli = ClientStats(client_);
  EXPECT_EQ(cli.streams_refused, 1u);
  EXPECT_EQ(cli.streams_cut, 2u);
  EXPECT_EQ(cli.streams_open, 0u);
  EXPECT_EQ(cli.streams_total, 3u);
}

TEST_F(StatsTest, BadArgumentsAreRefusedAndTheStructIsNotOverrun) {
  Start();
  chat_stats s;
  EXPECT_EQ(chat_server_stats(server_, nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_server_stats(nullptr, &s), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_client_stats(nullptr, &s), CHAT_ERR_BAD_ARGUMENT);
  s.version = 0;
  EXPECT_EQ(chat_server_stats(server_, &s), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_last_error()).find("CHAT_STATS_VERSION"), std::string::npos);
  s.version = CHAT_STATS_VERSION + 1;
  EXPECT_EQ(chat_client_stats(client_, &s), CHAT_ERR_BAD_ARGUMENT);
  char err[256];
  EXPECT_GT(chat_client_error(client_, err, sizeof err), 0u);

  // Version 1 writes exactly sizeof(chat_stats) bytes.
  unsigned char buf[sizeof(chat_stats) + 32];
  std::memset(buf, 0xAB, sizeof buf);
  chat_stats v1;
  std::memset(&v1, 0, sizeof v1);
  v1.version = 1;
  std::memcpy(buf, &v1, sizeof v1);
  ASSERT_EQ(chat_server_stats(server_, reinterpret_cast<chat_stats*>(buf)), CHAT_OK);
  for (size_t i = sizeof(chat_stats); i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << i;
}

}  // namespace

namespace {

// max_streams: the stream beyond is refused with RESOURCE_EXHAUSTED and
// counted on both sides; negative limits are bad arguments.
TEST_F(StatsTest, MaxStreamsRefusalsAreCounted) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.max_streams = -1;
  chat_server* bad = nullptr;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &bad), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_last_error()).find("max_streams"), std::string::npos);
  so.max_streams = 0;
  so.max_connection_idle_ms = -5;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &bad), CHAT_ERR_BAD_ARGUMENT);
  so.max_connection_idle_ms = 0;
  so.max_streams = 1;
  Start(&so);
  chat_stream* one = Open();
  std::string reply;
  ASSERT_EQ(Send(one, "a", "b"), CHAT_OK);
  ASSERT_EQ(Recv(one, &reply), CHAT_OK);
  chat_stream* two = Open();
  chat_code end;
  Drain(two, &end);
  EXPECT_EQ(end, CHAT_RESOURCE_EXHAUSTED);
  chat_stats srv = ServerStats(server_);
  EXPECT_EQ(srv.streams_refused, 1u);
  EXPECT_EQ(srv.streams_total, 1u);
  EXPECT_EQ(ClientStats(client_).streams_refused, 1u);
}

}  // namespace
