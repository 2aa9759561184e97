// Compression options through the C ABI: checked, and a gzip round trip
// between libchat's client and server (the bytes on the wire are counted
// in test_compression.py).
#include <gtest/gtest.h>

#include <string>

#include "../capi/capi_pair.h"

namespace {

using chat::testing::Drain;
using chat::testing::Send;
using chat::testing::ServerClientPair;

class CompressionTest : public ServerClientPair {};

TEST_F(CompressionTest, UnknownAlgorithmsAreBadArguments) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  EXPECT_EQ(so.compression, CHAT_COMPRESSION_NONE);
  so.compression = 3;
  chat_server* server = nullptr;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_last_error()).find("CHAT_COMPRESSION_"), std::string::npos);

  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  EXPECT_EQ(co.compression, CHAT_COMPRESSION_NONE);
  co.compression = -1;
  chat_client* client = nullptr;
  EXPECT_EQ(chat_client_create("127.0.0.1:1", &co, &client), CHAT_ERR_BAD_ARGUMENT);

  Start();
  chat_stream_options o;
  chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
  EXPECT_EQ(o.compression, -1);  // the client's
  o.compression = 9;
  chat_stream* s = nullptr;
  EXPECT_EQ(chat_client_open(client_, &o, &s), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(s, nullptr);
}

TEST_F(CompressionTest, GzipBothWaysRoundTrips) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.compression = CHAT_COMPRESSION_GZIP;
  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  co.compression = CHAT_COMPRESSION_GZIP;
  Start(&so, &co);
  chat_stream_options o;
  chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
  o.compression = CHAT_COMPRESSION_DEFLATE;  // this stream's own
  for (const chat_stream_options* opts : {static_cast<const chat_stream_options*>(nullptr),
                                          static_cast<const chat_stream_options*>(&o)}) {
    chat_stream* s = Open(opts);
    std::string big(100000, 'z');
    ASSERT_EQ(Send(s, "n", big), CHAT_OK);
    ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
    chat_code end;
    auto replies = Drain(s, &end);
    EXPECT_EQ(end, CHAT_END_OF_STREAM);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0], "n: " + big);
  }
}

}  // namespace
