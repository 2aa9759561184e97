// The C ABI (chat.h) over real loopback sockets.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <unistd.h>

#include "../core/test_support.h"
#include "capi_pair.h"
#include <libchat/chat.h>

namespace {

using chat::testing::Drain;
using chat::testing::EventLog;
using chat::testing::Gate;
using chat::testing::Recv;
using chat::testing::Send;
using chat::testing::Target;
using chat::testing::Text;


// TCP sockets in LISTEN state (0A) that this process holds: the socket
// inodes behind /proc/self/fd that /proc/self/net/tcp{,6} lists as listening.
int ListeningSockets() {
  std::set<std::string> inodes;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      std::string link = std::string("/proc/self/fd/") + e->d_name;
      char buf[64];
      ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
      if (n <= 0) continue;
      std::string target(buf, static_cast<size_t>(n));
      if (target.rfind("socket:[", 0) == 0 && target.back() == ']') {
        inodes.insert(target.substr(8, target.size() - 9));
      }
    }
    closedir(dir);
  }
  int listening = 0;
  for (const char* table : {"/proc/self/net/tcp", "/proc/self/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
          inode;
      if (state == "0A" && inodes.count(inode)) ++listening;
    }
  }
  return listening;
}

using CApiTest = chat::testing::ServerClientPair;

TEST(CApiBasics, VersionsAndCodeNames) {
  EXPECT_STREQ(chat_version(), CHAT_VERSION_STRING);
  EXPECT_EQ(chat_version_number(), CHAT_VERSION_NUMBER);
  EXPECT_EQ(chat_abi_version(), CHAT_ABI_VERSION);
  EXPECT_STREQ(chat_code_name(CHAT_OK), "OK");
  EXPECT_STREQ(chat_code_name(CHAT_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
  EXPECT_STREQ(chat_code_name(CHAT_UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_STREQ(chat_code_name(CHAT_ERR_WOULD_BLOCK), "WOULD_BLOCK");
  EXPECT_STREQ(chat_code_name(CHAT_ERR_BAD_STATE), "BAD_STATE");
  EXPECT_STREQ(chat_code_name(CHAT_END_OF_STREAM), "END_OF_STREAM");
  EXPECT_STREQ(chat_code_name(CHAT_ERR_LIBRARY_BUG), "LIBRARY_BUG");
  for (int raw : {999, -1, 30, 0x7fffffff}) {
    chat_code c;
    std::memcpy(&c, &raw, sizeof c);  // any int a C caller may pass
    EXPECT_STREQ(chat_code_name(c), "UNRECOGNIZED") << raw;
  }
  for (int c = 0; c <= CHAT_ERR_LIBRARY_BUG; ++c) {
    EXPECT_STRNE(chat_code_name(static_cast<chat_code>(c)), "UNRECOGNIZED") << c;
  }
}

TEST(CApiBasics, OptionsInitRejectsUnknownVersions) {
  chat_server_options so;
  chat_client_options co;
  chat_stream_options to;
  EXPECT_EQ(chat_server_options_init(&so, 0), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_server_options_init(&so, 99), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION + 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_options_init(&to, 0), CHAT_ERR_BAD_ARGUMENT);
  ASSERT_EQ(chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION), CHAT_OK);
  EXPECT_EQ(so.mode, CHAT_MODE_ECHO);
  EXPECT_GT(so.max_message_bytes, 0);
  ASSERT_EQ(chat_stream_options_init(&to, CHAT_STREAM_OPTIONS_VERSION), CHAT_OK);
  EXPECT_LT(to.deadline_ms, 0);
  // A struct the caller never initialised is refused, not misread.
  chat_server_options garbage;
  std::memset(&garbage, 0, sizeof garbage);
  chat_server* server = nullptr;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &garbage, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(server, nullptr);
  EXPECT_NE(std::string(chat_last_error()).find("version"), std::string::npos);
}

// Every function given NULL where a handle or required pointer goes returns
// its documented code (or the documented neutral value) and never crashes.
TEST(CApiBasics, NullArgumentsEverywhere) {
  const char* text;
  size_t len;
  chat_code code;
  chat_text batch[2];
  size_t count;
  chat_server* server = reinterpret_cast<chat_server*>(0x1);  // must be overwritten
  EXPECT_EQ(chat_server_options_init(nullptr, 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_client_options_init(nullptr, 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_options_init(nullptr, 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_server_start(nullptr, nullptr, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(server, nullptr);
  EXPECT_EQ(chat_server_start("127.0.0.1:0", nullptr, nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_server_port(nullptr), -1);
  EXPECT_EQ(chat_server_stop(nullptr, 0, nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_server_destroy(nullptr), CHAT_OK);
  EXPECT_EQ(chat_call_id(nullptr), 0u);
  EXPECT_STREQ(chat_call_peer(nullptr), "");
  EXPECT_EQ(chat_call_metadata(nullptr, "k", &text, &len), CHAT_ERR_BAD_ARGUMENT);
  size_t md_count = 9;
  EXPECT_EQ(chat_call_metadata_count(nullptr, &md_count), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(md_count, 0u);
  EXPECT_EQ(chat_call_metadata_at(nullptr, 0, &text, &len, &text, &len), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_send(nullptr, "x", 1, 0), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_complete(nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_fail(nullptr, CHAT_INTERNAL, "x", 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_ref(nullptr), CHAT_ERR_BAD_ARGUMENT);
  chat_call_unref(nullptr);
  chat_client* client = reinterpret_cast<chat_client*>(0x1);
  EXPECT_EQ(chat_client_create(nullptr, nullptr, &client), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(client, nullptr);
  EXPECT_EQ(chat_client_create("127.0.0.1:1", nullptr, nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_client_create("", nullptr, &client), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_client_create("https://h", nullptr, &client), CHAT_ERR_BAD_ARGUMENT);
  chat_client_destroy(nullptr);
  chat_stream* stream = nullptr;
  EXPECT_EQ(chat_client_open(nullptr, nullptr, &stream), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_send(nullptr, "a", 1, "b", 1, 0), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_complete(nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_cancel(nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_recv(nullptr, 0, &text, &len), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_recv_batch(nullptr, 0, batch, 2, &count), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_wait(nullptr, 0), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_status(nullptr, &code, nullptr, nullptr), CHAT_ERR_BAD_ARGUMENT);
  chat_stream_destroy(nullptr);
  EXPECT_STRNE(chat_last_error(), "");
}

TEST_F(CApiTest, NullPointersOnLiveHandles) {
  Start();
  chat_stream* s = Open();
  chat_stream* out = nullptr;
  EXPECT_EQ(chat_client_open(client_, nullptr, nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_send(s, nullptr, 3, "b", 1, 0), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_send(s, "a", 1, nullptr, 2, 0), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_recv(s, 0, nullptr, nullptr), CHAT_ERR_BAD_ARGUMENT);
  chat_text batch[1];
  size_t count = 7;
  EXPECT_EQ(chat_stream_recv_batch(s, 0, batch, 0, &count), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(count, 0u);
  EXPECT_EQ(chat_stream_recv_batch(s, 0, nullptr, 1, &count), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_status(s, nullptr, nullptr, nullptr), CHAT_ERR_BAD_ARGUMENT);
  chat_code code;
  EXPECT_EQ(chat_stream_status(s, &code, nullptr, nullptr), CHAT_ERR_BAD_STATE);  // still open
  EXPECT_EQ(chat_server_stop(server_, -1, nullptr), CHAT_ERR_BAD_ARGUMENT);
  chat_stream_options bad_md;
  chat_stream_options_init(&bad_md, CHAT_STREAM_OPTIONS_VERSION);
  bad_md.metadata_count = 1;  // metadata left NULL
  EXPECT_EQ(chat_client_open(client_, &bad_md, &out), CHAT_ERR_BAD_ARGUMENT);
  chat_metadata md[] = {{"Upper", "v"}};
  bad_md.metadata = md;
  EXPECT_EQ(chat_client_open(client_, &bad_md, &out), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(out, nullptr);
  // Zero-length text may come with a NULL pointer.
  ASSERT_EQ(chat_stream_send(s, nullptr, 0, nullptr, 0, 5000), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), std::vector<std::string>{": "});
}

TEST_F(CApiTest, SeedConversation) {
  Start();
  chat_stream* s = Open();
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  ASSERT_EQ(Send(s, "Ann", "Hey"), CHAT_OK);
  ASSERT_EQ(Send(s, "John", "Hello"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), (std::vector<std::string>{"Sam: Hi", "Ann: Hey", "John: Hello"}));
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  chat_code code = CHAT_UNKNOWN;
  const char* details = nullptr;
  size_t details_len = 99;
  ASSERT_EQ(chat_stream_status(s, &code, &details, &details_len), CHAT_OK);
  EXPECT_EQ(code, CHAT_OK);
  EXPECT_EQ(details_len, 0u);
  // Calls on the ended stream: documented codes, no crash, no block.
  EXPECT_EQ(Send(s, "late", "x", 0), CHAT_ERR_CLOSED);
  EXPECT_EQ(chat_stream_cancel(s), CHAT_ERR_CLOSED);
  EXPECT_EQ(chat_stream_complete(s), CHAT_OK);
  const char* text;
  size_t len;
  EXPECT_EQ(chat_stream_recv(s, 0, &text, &len), CHAT_END_OF_STREAM);
  EXPECT_EQ(chat_stream_wait(s, 0), CHAT_OK);
}

// The ABI's part of batch receive: at most `max` texts a call, at least one
// on OK, in order across calls, and the end code. Echo order over 10,000
// messages is core's (echo_test.cc, TenThousandMessagesInOrderWhileReading).
TEST_F(CApiTest, BatchReceiveFillsAtMostMaxInOrder) {
  Start();
  chat_stream* s = Open();
  constexpr int kCount = 1000;
  std::vector<std::string> replies;
  chat_code end = CHAT_OK;
  std::thread reader([&] {
    chat_text batch[64];
    for (;;) {
      size_t n = 0;
      chat_code rc = chat_stream_recv_batch(s, 10000, batch, 64, &n);
      if (rc != CHAT_OK) {
        end = rc;
        return;
      }
      EXPECT_GE(n, 1u);
      EXPECT_LE(n, 64u);
      for (size_t i = 0; i < n; ++i) replies.emplace_back(batch[i].data, batch[i].len);
    }
  });
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(Send(s, "m", std::to_string(i), 10000), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  reader.join();
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  ASSERT_EQ(replies.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(replies[i], "m: " + std::to_string(i));
}

// The codes and chat_last_error for a refused send and a too-large message;
// which texts are refused is core's (echo_test.cc, BadInputIsRejectedAndTheStreamSurvives).
TEST_F(CApiTest, InvalidUtf8AndOversizeAreRejected) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.max_message_bytes = 64;
  Start(&so);
  chat_stream* s = Open();
  EXPECT_EQ(chat_stream_send(s, "\xff", 1, "x", 1, 0), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_last_error()).find("UTF-8"), std::string::npos) << chat_last_error();
  // The server's limit: the stream fails with RESOURCE_EXHAUSTED.
  ASSERT_EQ(Send(s, "big", std::string(500, 'a')), CHAT_OK);
  chat_code end;
  Drain(s, &end);
  EXPECT_EQ(end, CHAT_RESOURCE_EXHAUSTED);
}

TEST_F(CApiTest, DeadlineAndMetadata) {
  Start();
  chat_stream_options so;
  chat_stream_options_init(&so, CHAT_STREAM_OPTIONS_VERSION);
  so.deadline_ms = 1000;  // room for the reply to come first on a loaded machine
  chat_metadata md[] = {{"user", "alice"}, {"trace-bin", "\x01\x02"}};
  so.metadata = md;
  so.metadata_count = 2;
  chat_stream* s = Open(&so);
  ASSERT_EQ(Send(s, "a", "b"), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), std::vector<std::string>{"a: b"});
  EXPECT_EQ(end, CHAT_DEADLINE_EXCEEDED);
  chat_code code;
  ASSERT_EQ(chat_stream_status(s, &code, nullptr, nullptr), CHAT_OK);
  EXPECT_EQ(code, CHAT_DEADLINE_EXCEEDED);
}

// Server and client options at version 1 (before the byte budgets): init(1)
// writes nothing past the version-1 fields and start/create read nothing
// past them (the 0xAB bytes would be absurd budgets if they were read).
TEST_F(CApiTest, Version1ServerAndClientOptionsAreNeitherOverrunNorOverread) {
  const size_t server_v1 = offsetof(chat_server_options, send_queue_bytes);
  alignas(chat_server_options) unsigned char sbuf[sizeof(chat_server_options)];
  std::memset(sbuf, 0xAB, sizeof sbuf);
  auto* so = reinterpret_cast<chat_server_options*>(sbuf);
  ASSERT_EQ(chat_server_options_init(so, 1), CHAT_OK);
  for (size_t i = server_v1; i < sizeof sbuf; ++i) ASSERT_EQ(sbuf[i], 0xAB) << "byte " << i;
  EXPECT_EQ(so->version, 1u);
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", so, &server), CHAT_OK) << chat_last_error();

  const size_t client_v1 = offsetof(chat_client_options, send_queue_bytes);
  alignas(chat_client_options) unsigned char cbuf[sizeof(chat_client_options)];
  std::memset(cbuf, 0xAB, sizeof cbuf);
  auto* co = reinterpret_cast<chat_client_options*>(cbuf);
  ASSERT_EQ(chat_client_options_init(co, 1), CHAT_OK);
  for (size_t i = client_v1; i < sizeof cbuf; ++i) ASSERT_EQ(cbuf[i], 0xAB) << "byte " << i;
  std::string target = Target(server);
  chat_client* client = nullptr;
  ASSERT_EQ(chat_client_create(target.c_str(), co, &client), CHAT_OK) << chat_last_error();
  chat_stream* s = nullptr;
  ASSERT_EQ(chat_client_open(client, nullptr, &s), CHAT_OK);
  ASSERT_EQ(Send(s, "a", "b"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), std::vector<std::string>{"a: b"});
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  chat_stream_destroy(s);
  chat_client_destroy(client);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
}

// Version 2 (before completion_queues): neither overrun by init nor
// overread by start (0xAB bytes would be an out-of-range queue count).
TEST(CApiBasics, Version2ServerOptionsAreNeitherOverrunNorOverread) {
  const size_t server_v2 = offsetof(chat_server_options, completion_queues);
  alignas(chat_server_options) unsigned char sbuf[sizeof(chat_server_options)];
  std::memset(sbuf, 0xAB, sizeof sbuf);
  auto* so = reinterpret_cast<chat_server_options*>(sbuf);
  ASSERT_EQ(chat_server_options_init(so, 2), CHAT_OK);
  for (size_t i = server_v2; i < sizeof sbuf; ++i) ASSERT_EQ(sbuf[i], 0xAB) << "byte " << i;
  EXPECT_EQ(so->keepalive_timeout_ms, 10000);
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", so, &server), CHAT_OK) << chat_last_error();
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
}

// The versions before 1.1 (server 4, client 2, stream 3; TLS, tokens,
// health, reflection and control came after): init
// writes nothing past them and start / create / open read nothing past
// them (0xAB bytes would be wild certificate and token pointers).
TEST(CApiBasics, OptionsBeforeTlsAreNeitherOverrunNorOverread) {
  alignas(chat_server_options) unsigned char sbuf[sizeof(chat_server_options)];
  std::memset(sbuf, 0xAB, sizeof sbuf);
  auto* so = reinterpret_cast<chat_server_options*>(sbuf);
  ASSERT_EQ(chat_server_options_init(so, 4), CHAT_OK);
  for (size_t i = offsetof(chat_server_options, tls_cert_chain); i < sizeof sbuf; ++i) {
    ASSERT_EQ(sbuf[i], 0xAB) << "byte " << i;
  }
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", so, &server), CHAT_OK) << chat_last_error();

  alignas(chat_client_options) unsigned char cbuf[sizeof(chat_client_options)];
  std::memset(cbuf, 0xAB, sizeof cbuf);
  auto* co = reinterpret_cast<chat_client_options*>(cbuf);
  ASSERT_EQ(chat_client_options_init(co, 2), CHAT_OK);
  for (size_t i = offsetof(chat_client_options, tls); i < sizeof cbuf; ++i) {
    ASSERT_EQ(cbuf[i], 0xAB) << "byte " << i;
  }
  std::string target = Target(server);
  chat_client* client = nullptr;
  ASSERT_EQ(chat_client_create(target.c_str(), co, &client), CHAT_OK) << chat_last_error();

  alignas(chat_stream_options) unsigned char tbuf[sizeof(chat_stream_options)];
  std::memset(tbuf, 0xAB, sizeof tbuf);
  auto* to = reinterpret_cast<chat_stream_options*>(tbuf);
  ASSERT_EQ(chat_stream_options_init(to, 3), CHAT_OK);
  for (size_t i = offsetof(chat_stream_options, token); i < sizeof tbuf; ++i) {
    ASSERT_EQ(tbuf[i], 0xAB) << "byte " << i;
  }
  chat_stream* s = nullptr;
  ASSERT_EQ(chat_client_open(client, to, &s), CHAT_OK) << chat_last_error();
  ASSERT_EQ(Send(s, "a", "b"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), std::vector<std::string>{"a: b"});
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  chat_stream_destroy(s);
  chat_client_destroy(client);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
}

// Version 5: health and reflection default to off and take 0 or 1.
TEST(CApiBasics, HealthAndReflectionTakeZeroOrOne) {
  chat_server_options so;
  std::memset(&so, 0xAB, sizeof so);
  ASSERT_EQ(chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION), CHAT_OK);
  EXPECT_EQ(so.health, 0);
  EXPECT_EQ(so.reflection, 0);
  chat_server* server = nullptr;
  for (int32_t bad : {2, -1}) {
    so.health = bad;
    EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
    EXPECT_NE(std::string(chat_last_error()).find("health and reflection"), std::string::npos)
        << chat_last_error();
    EXPECT_EQ(server, nullptr);
    so.health = 1;
    so.reflection = bad;
    EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
    EXPECT_EQ(server, nullptr);
    so.reflection = 0;
  }
  so.health = 1;
  so.reflection = 1;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_OK) << chat_last_error();
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
}

// The names of this process's threads that start with `prefix`.
int ThreadsNamed(const std::string& prefix) {
  int n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return -1;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind(prefix, 0) == 0) ++n;
  }
  closedir(dir);
  return n;
}

// Version 3: completion_queues sets the server's transport threads; their
// number does not grow with the streams.
TEST(CApiBasics, CompletionQueuesSetTheTransportThreads) {
  chat_server_options so;
  ASSERT_EQ(chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION), CHAT_OK);
  EXPECT_EQ(so.completion_queues, 0);
  chat_server* server = nullptr;
  for (int bad : {-1, 257}) {
    so.completion_queues = bad;
    EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT) << bad;
    EXPECT_EQ(server, nullptr);
  }
  int before = ThreadsNamed("chat-srv-cq");
  so.completion_queues = 3;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_OK) << chat_last_error();
  EXPECT_EQ(ThreadsNamed("chat-srv-cq"), before + 3);
  std::string target = Target(server);
  chat_client* client = nullptr;
  ASSERT_EQ(chat_client_create(target.c_str(), nullptr, &client), CHAT_OK);
  std::vector<chat_stream*> streams(200);
  for (auto*& s : streams) {
    ASSERT_EQ(chat_client_open(client, nullptr, &s), CHAT_OK);
    ASSERT_EQ(Send(s, "n", "m"), CHAT_OK);
  }
  for (auto* s : streams) {
    const char* reply;
    size_t len;
    ASSERT_EQ(chat_stream_recv(s, 5000, &reply, &len), CHAT_OK) << chat_last_error();
    EXPECT_EQ(Text(reply, len), "n: m");
  }
  EXPECT_EQ(ThreadsNamed("chat-srv-cq"), before + 3);  // 200 open streams, same threads
  for (auto* s : streams) chat_stream_destroy(s);
  chat_client_destroy(client);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
  EXPECT_EQ(ThreadsNamed("chat-srv-cq"), before);  // joined by the stop
}

TEST(CApiBasics, Version2OptionsHaveByteBudgetsAndAreChecked) {
  chat_server_options so;
  ASSERT_EQ(chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION), CHAT_OK);
  EXPECT_EQ(so.send_queue_bytes, 8 << 20);
  EXPECT_EQ(so.recv_window_bytes, 8 << 20);
  EXPECT_EQ(so.max_memory_bytes, 256 << 20);
  EXPECT_EQ(so.keepalive_timeout_ms, 10000);
  chat_client_options co;
  ASSERT_EQ(chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION), CHAT_OK);
  EXPECT_EQ(co.send_queue_bytes, 8 << 20);
  EXPECT_EQ(co.recv_queue_bytes, 8 << 20);
  EXPECT_EQ(co.keepalive_ms, 0);
  chat_server* server = nullptr;
  so.max_memory_bytes = 0;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  so.max_memory_bytes = 1 << 20;
  so.send_queue_bytes = -1;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(server, nullptr);
  chat_client* client = nullptr;
  co.recv_queue_bytes = 0;
  EXPECT_EQ(chat_client_create("127.0.0.1:1", &co, &client), CHAT_ERR_BAD_ARGUMENT);
  co.recv_queue_bytes = 1 << 20;
  co.keepalive_ms = 500;  // below the 1000 ms servers accept
  EXPECT_EQ(chat_client_create("127.0.0.1:1", &co, &client), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(client, nullptr);
}

// A program built against the version-1 header has a shorter
// chat_stream_options: init(1) must not write past it, and open must not
// read the version-2 field that is not there.
TEST_F(CApiTest, Version1StreamOptionsAreNeitherOverrunNorOverread) {
  Start();
  const size_t v1_size = offsetof(chat_stream_options, metadata_value_lens);
  alignas(chat_stream_options) unsigned char buf[sizeof(chat_stream_options)];
  std::memset(buf, 0xAB, sizeof buf);
  auto* so = reinterpret_cast<chat_stream_options*>(buf);
  ASSERT_EQ(chat_stream_options_init(so, 1), CHAT_OK);
  for (size_t i = v1_size; i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << "byte " << i;
  EXPECT_EQ(so->version, 1u);
  EXPECT_EQ(so->deadline_ms, -1);
  chat_metadata md[] = {{"user", "alice"}};
  so->metadata = md;
  so->metadata_count = 1;  // the 0xAB bytes after the struct would be a wild pointer
  chat_stream* s = Open(so);
  ASSERT_EQ(Send(s, "a", "b"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), std::vector<std::string>{"a: b"});
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  chat_stream_options unknown;
  EXPECT_EQ(chat_stream_options_init(&unknown, CHAT_STREAM_OPTIONS_VERSION + 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_options_init(&unknown, 0), CHAT_ERR_BAD_ARGUMENT);
}

TEST_F(CApiTest, CancelMidStream) {
  Start();
  chat_stream* s = Open();
  ASSERT_EQ(Send(s, "a", "1"), CHAT_OK);
  std::string reply;
  ASSERT_EQ(Recv(s, &reply), CHAT_OK);
  EXPECT_EQ(reply, "a: 1");
  ASSERT_EQ(chat_stream_cancel(s), CHAT_OK);
  EXPECT_EQ(chat_stream_cancel(s), CHAT_OK);
  chat_code end;
  Drain(s, &end);
  EXPECT_EQ(end, CHAT_CANCELLED);
  EXPECT_EQ(Send(s, "a", "2", 0), CHAT_ERR_CLOSED);
}

TEST_F(CApiTest, ClientThatNeverReadsGetsWouldBlock) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.send_queue_limit = 8;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server_), CHAT_OK);
  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  co.send_queue_limit = 8;
  co.recv_queue_limit = 8;
  std::string target = Target(server_);
  ASSERT_EQ(chat_client_create(target.c_str(), &co, &client_), CHAT_OK);
  chat_stream* s = Open();
  const std::string payload(2048, 'z');
  int accepted = 0;
  chat_code rc = CHAT_OK;
  for (; accepted < 100000; ++accepted) {
    rc = Send(s, "n", payload, 200);
    if (rc != CHAT_OK) break;
  }
  EXPECT_EQ(rc, CHAT_ERR_TIMEOUT);
  EXPECT_EQ(Send(s, "n", payload, 0), CHAT_ERR_WOULD_BLOCK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end).size(), static_cast<size_t>(accepted));
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
}

// --- custom handlers through C callbacks ---

struct Host {
  EventLog log;
  std::atomic<chat_call*> kept{nullptr};
  std::thread::id callback_thread;
  chat_server* server = nullptr;
  chat_code stop_from_callback = CHAT_OK;
  chat_code destroy_from_callback = CHAT_OK;
  bool fail_on_complete = false;
  std::mutex mu;
  std::string trace_bin;  // the "trace-bin" value on_open saw; mu
};

void OnOpen(chat_call* call, void* ud) {
  auto* h = static_cast<Host*>(ud);
  h->callback_thread = std::this_thread::get_id();
  const char* v;
  size_t n;
  std::string user = chat_call_metadata(call, "user", &v, &n) == CHAT_OK ? Text(v, n) : "-";
  EXPECT_EQ(chat_call_metadata(call, "missing", &v, &n), CHAT_ERR_MISSING);
  if (chat_call_metadata(call, "trace-bin", &v, &n) == CHAT_OK) {
    std::lock_guard<std::mutex> lock(h->mu);
    h->trace_bin.assign(v, n);
  }
  // Enumeration sees the same entry (gRPC adds its own, e.g. user-agent).
  size_t count = 0;
  EXPECT_EQ(chat_call_metadata_count(call, &count), CHAT_OK);
  bool seen_user = false;
  for (size_t i = 0; i < count; ++i) {
    const char *k, *val;
    size_t kl, vl;
    ASSERT_EQ(chat_call_metadata_at(call, i, &k, &kl, &val, &vl), CHAT_OK);
    if (Text(k, kl) == "user") seen_user = Text(val, vl) == user;
  }
  EXPECT_TRUE(user == "-" || seen_user);
  const char *k, *val;
  size_t kl, vl;
  EXPECT_EQ(chat_call_metadata_at(call, count, &k, &kl, &val, &vl), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_metadata_at(call, 0, nullptr, &kl, &val, &vl), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_metadata_count(call, nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_call_peer(call)).find("127.0.0.1"), std::string::npos);
  chat_call_ref(call);  // kept past on_close for the test thread
  chat_call_unref(h->kept.exchange(call));  // one kept call at a time
  h->log.Add("open " + std::to_string(chat_call_id(call)) + " " + user);
}

void OnMessage(chat_call* call, const char* name, size_t name_len, const char* msg, size_t msg_len,
               void* ud) {
  auto* h = static_cast<Host*>(ud);
  std::string line = "[" + Text(name, name_len) + "] " + Text(msg, msg_len);
  EXPECT_EQ(chat_call_send(call, line.data(), line.size(), 1000), CHAT_OK);
  if (Text(msg, msg_len) == "stop") {
    int32_t cut;
    h->stop_from_callback = chat_server_stop(h->server, 0, &cut);
    h->destroy_from_callback = chat_server_destroy(h->server);
  }
  h->log.Add("message " + Text(msg, msg_len));
}

void OnComplete(chat_call* call, void* ud) {
  auto* h = static_cast<Host*>(ud);
  h->log.Add("complete");
  if (h->fail_on_complete) {
    EXPECT_EQ(chat_call_fail(call, CHAT_OK, "x", 1), CHAT_ERR_BAD_ARGUMENT);
    EXPECT_EQ(chat_call_fail(call, static_cast<chat_code>(17), "x", 1), CHAT_ERR_BAD_ARGUMENT);
    int out_of_range[] = {99, -1};
    for (int raw : out_of_range) {
      chat_code c;
      std::memcpy(&c, &raw, sizeof c);  // as a C caller may pass any int
      EXPECT_EQ(chat_call_fail(call, c, "x", 1), CHAT_ERR_BAD_ARGUMENT);
    }
    EXPECT_EQ(chat_call_fail(call, CHAT_ABORTED, "\xff", 1), CHAT_ERR_BAD_ARGUMENT);
    EXPECT_EQ(chat_call_fail(call, CHAT_ABORTED, "gave up", 7), CHAT_OK);
  } else {
    chat_code first = chat_call_complete(call);
    // CLOSED only when the client cancelled rather than half-closed.
    EXPECT_TRUE(first == CHAT_OK || first == CHAT_ERR_CLOSED) << chat_code_name(first);
    // Idempotent: OK again, unless a client cancel landed in between.
    chat_code second = chat_call_complete(call);
    EXPECT_TRUE(second == first || second == CHAT_ERR_CLOSED) << chat_code_name(second);
  }
}

void OnClose(chat_call* call, chat_code code, const char* details, size_t len, void* ud) {
  auto* h = static_cast<Host*>(ud);
  h->log.Add(std::string("close ") + chat_code_name(code) + " " + Text(details, len));
}

class CApiHandlerTest : public CApiTest {
 protected:
  void StartCustom(bool with_complete = true) {
    chat_server_options so;
    chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
    so.mode = CHAT_MODE_CUSTOM;
    so.on_open = OnOpen;
    so.on_message = OnMessage;
    so.on_complete = with_complete ? OnComplete : nullptr;
    so.on_close = OnClose;
    so.user_data = &host_;
    Start(&so);
    host_.server = server_;
  }
  void TearDown() override {
    CApiTest::TearDown();
    chat_call_unref(host_.kept.load());  // valid even after the server is gone
  }
  Host host_;
};

TEST_F(CApiHandlerTest, CallbacksInOrderOnALibraryThread) {
  StartCustom();
  chat_stream_options so;
  chat_stream_options_init(&so, CHAT_STREAM_OPTIONS_VERSION);
  chat_metadata md[] = {{"user", "bob"}};
  so.metadata = md;
  so.metadata_count = 1;
  chat_stream* s = Open(&so);
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  ASSERT_TRUE(host_.log.WaitFor("message Hi"));
  // Any thread may send on a call it holds a reference to.
  chat_call* call = host_.kept;
  ASSERT_EQ(chat_call_send(call, "from the host", 13, 1000), CHAT_OK);
  EXPECT_EQ(chat_call_send(call, "\xc0\xaf", 2, 0), CHAT_ERR_BAD_ARGUMENT);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), (std::vector<std::string>{"[Sam] Hi", "from the host"}));
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  ASSERT_TRUE(host_.log.WaitFor("close OK "));
  EXPECT_EQ(host_.log.Snapshot(),
            (std::vector<std::string>{"open 1 bob", "message Hi", "complete", "close OK "}));
  EXPECT_NE(host_.callback_thread, std::this_thread::get_id());
  // The referenced handle outlives the call: every function reports CLOSED.
  EXPECT_EQ(chat_call_id(call), 1u);
  EXPECT_EQ(chat_call_send(call, "late", 4, 0), CHAT_ERR_CLOSED);
  EXPECT_EQ(chat_call_fail(call, CHAT_INTERNAL, "x", 1), CHAT_ERR_CLOSED);
}

TEST_F(CApiHandlerTest, BinaryMetadataValuesKeepTheirNuls) {
  StartCustom();
  const char blob[] = {'\0', 'a', '\0', '\xff'};
  chat_metadata md[] = {{"user", "bob"}, {"trace-bin", blob}};
  size_t lens[] = {3, sizeof blob};
  chat_stream_options so;
  ASSERT_EQ(chat_stream_options_init(&so, CHAT_STREAM_OPTIONS_VERSION), CHAT_OK);
  EXPECT_EQ(so.metadata_value_lens, nullptr);
  so.metadata = md;
  so.metadata_count = 2;
  so.metadata_value_lens = lens;
  chat_stream* s = Open(&so);
  ASSERT_TRUE(host_.log.WaitFor("open 1 bob"));
  {
    std::lock_guard<std::mutex> lock(host_.mu);
    EXPECT_EQ(host_.trace_bin, std::string(blob, sizeof blob));
  }
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  Drain(s, &end);
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  // Outside "-bin" values a NUL is refused, not cut short.
  chat_metadata text[] = {{"user", "a\0b"}};
  size_t text_lens[] = {3};
  so.metadata = text;
  so.metadata_count = 1;
  so.metadata_value_lens = text_lens;
  chat_stream* refused = nullptr;
  EXPECT_EQ(chat_client_open(client_, &so, &refused), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(refused, nullptr);
}

TEST_F(CApiHandlerTest, NullOnCompleteCompletesLikeTheSeed) {
  StartCustom(/*with_complete=*/false);
  chat_stream* s = Open();
  ASSERT_EQ(Send(s, "Ann", "Hey"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), std::vector<std::string>{"[Ann] Hey"});
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
}

TEST_F(CApiHandlerTest, FailCarriesCodeAndDetails) {
  host_.fail_on_complete = true;
  StartCustom();
  chat_stream* s = Open();
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  Drain(s, &end);
  EXPECT_EQ(end, CHAT_ABORTED);
  chat_code code;
  const char* details;
  size_t len;
  ASSERT_EQ(chat_stream_status(s, &code, &details, &len), CHAT_OK);
  EXPECT_EQ(code, CHAT_ABORTED);
  EXPECT_EQ(Text(details, len), "gave up");
  ASSERT_TRUE(host_.log.WaitFor("close ABORTED gave up"));
}

TEST_F(CApiHandlerTest, ClientCancelReachesOnClose) {
  StartCustom();
  chat_stream* s = Open();
  ASSERT_EQ(Send(s, "a", "b"), CHAT_OK);
  ASSERT_TRUE(host_.log.WaitFor("message b"));
  ASSERT_EQ(chat_stream_cancel(s), CHAT_OK);
  ASSERT_TRUE(host_.log.WaitUntil([](const std::vector<std::string>& e) {
    return !e.empty() && e.back().rfind("close CANCELLED", 0) == 0;
  }));
}

TEST_F(CApiHandlerTest, StopAndDestroyFromACallbackAreRefused) {
  StartCustom();
  chat_stream* s = Open();
  ASSERT_EQ(Send(s, "a", "stop"), CHAT_OK);
  ASSERT_TRUE(host_.log.WaitFor("message stop"));
  EXPECT_EQ(host_.stop_from_callback, CHAT_ERR_BUSY);
  EXPECT_EQ(host_.destroy_from_callback, CHAT_ERR_BUSY);
  // The server still works.
  ASSERT_EQ(Send(s, "a", "after"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(s, &end), (std::vector<std::string>{"[a] stop", "[a] after"}));
}

TEST_F(CApiHandlerTest, StopCutsOpenCallsAndRunsEveryOnClose) {
  StartCustom();
  chat_stream* a = Open();
  chat_stream* b = Open();
  ASSERT_EQ(Send(a, "a", "x"), CHAT_OK);
  ASSERT_EQ(Send(b, "b", "y"), CHAT_OK);
  ASSERT_TRUE(host_.log.WaitFor("message x"));
  ASSERT_TRUE(host_.log.WaitFor("message y"));
  auto t0 = std::chrono::steady_clock::now();
  int32_t cut = -1;
  ASSERT_EQ(chat_server_stop(server_, 300, &cut), CHAT_OK);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(cut, 2);
  // stop returned: both on_close callbacks have already run.
  int closes = 0;
  for (const auto& e : host_.log.Snapshot()) closes += e.rfind("close ", 0) == 0;
  EXPECT_EQ(closes, 2);
  int32_t again = -1;
  EXPECT_EQ(chat_server_stop(server_, 0, &again), CHAT_OK);
  EXPECT_EQ(again, 0);
}

TEST(CApiServer, CallbacksOnlyInCustomModeAndBadAddressesFail) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.mode = CHAT_MODE_CUSTOM;
  chat_server* server = nullptr;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  so.mode = 7;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  // Callbacks in echo or broadcast mode would never run: refused, not ignored.
  for (int32_t mode : {CHAT_MODE_ECHO, CHAT_MODE_BROADCAST}) {
    chat_server_options cb;
    chat_server_options_init(&cb, CHAT_SERVER_OPTIONS_VERSION);
    cb.mode = mode;
    cb.on_close = [](chat_call*, chat_code, const char*, size_t, void*) {};
    EXPECT_EQ(chat_server_start("127.0.0.1:0", &cb, &server), CHAT_ERR_BAD_ARGUMENT) << mode;
    EXPECT_NE(std::string(chat_last_error()).find("CHAT_MODE_CUSTOM"), std::string::npos);
  }
  so.mode = CHAT_MODE_ECHO;
  so.send_queue_limit = 0;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_server_start("nonsense", nullptr, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(server, nullptr);
  ASSERT_EQ(chat_server_start("127.0.0.1:0", nullptr, &server), CHAT_OK);
  std::string taken = Target(server);
  chat_server* second = nullptr;
  EXPECT_EQ(chat_server_start(taken.c_str(), nullptr, &second), CHAT_ERR_CANNOT_LISTEN);
  EXPECT_NE(std::string(chat_last_error()).find("listen"), std::string::npos);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
}

TEST(CApiServer, RoomOptionsAreChecked) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  EXPECT_EQ(so.room_url, nullptr);
  EXPECT_EQ(so.room_max_len, 10000);
  so.mode = CHAT_MODE_BROADCAST;
  so.room_name = "lobby";
  chat_server* server = nullptr;
  for (const char* url : {"127.0.0.1:6379", "redis://127.0.0.1", "redis://h:99999", "redis://h:1/db"}) {
    so.room_url = url;
    EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT) << url;
    EXPECT_NE(std::string(chat_last_error()).find("redis://HOST:PORT"), std::string::npos);
  }
  so.room_url = "redis://127.0.0.1:6379";
  so.room_name = nullptr;  // one without the other
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  so.room_name = "lobby";
  so.mode = CHAT_MODE_ECHO;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  so.mode = CHAT_MODE_BROADCAST;
  so.room_max_len = 0;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(server, nullptr);
}

TEST(CApiServer, MalformedAddressesAreRejectedAndBindNothing) {
  // The counter sees a real listener, so "no more than before" means something.
  int before = ListeningSockets();
  chat_server* good = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", nullptr, &good), CHAT_OK) << chat_last_error();
  EXPECT_GT(ListeningSockets(), before);
  ASSERT_EQ(chat_server_destroy(good), CHAT_OK);
  EXPECT_EQ(ListeningSockets(), before);

  struct Case {
    const char* address;
    const char* says;
  } cases[] = {
      {"127.0.0.1:70000", "port 70000 is out of range 0..65535"},
      {"127.0.0.1:65536", "out of range"},
      {"127.0.0.1:99999999999", "out of range"},
      {"127.0.0.1", "address has no port"},
      {"127.0.0.1:-1", "not a decimal number"},
      {"127.0.0.1:80x", "not a decimal number"},
      {"[::1]:65536", "out of range"},
      {"::1:0", "brackets"},
  };
  for (const auto& c : cases) {
    chat_server* server = reinterpret_cast<chat_server*>(0x1);
    chat_code rc = chat_server_start(c.address, nullptr, &server);
    EXPECT_EQ(rc, CHAT_ERR_BAD_ARGUMENT) << c.address << " -> port " << chat_server_port(server);
    EXPECT_NE(std::string(chat_last_error()).find(c.says), std::string::npos)
        << c.address << ": " << chat_last_error();
    if (rc == CHAT_OK) {
      chat_server_destroy(server);  // the old behaviour: listening somewhere
    } else {
      EXPECT_EQ(server, nullptr) << c.address;
    }
    EXPECT_EQ(ListeningSockets(), before) << c.address;
  }
}

TEST(CApiClient, MalformedTargetsAreRejected) {
  for (const char* target : {"127.0.0.1:70000", "127.0.0.1", "http://127.0.0.1:65536/",
                             "127.0.0.1:80x", "http://127.0.0.1", "dns:///localhost",
                             "ipv4:127.0.0.1:99999"}) {
    chat_client* client = reinterpret_cast<chat_client*>(0x1);
    EXPECT_EQ(chat_client_create(target, nullptr, &client), CHAT_ERR_BAD_ARGUMENT) << target;
    EXPECT_EQ(client, nullptr) << target;
    EXPECT_NE(std::string(chat_last_error()).find("port"), std::string::npos) << chat_last_error();
    if (client != nullptr) chat_client_destroy(client);
  }
  for (const char* target : {"127.0.0.1:1", "http://127.0.0.1:1/", "localhost:1",
                             "dns:///localhost:1", "ipv4:127.0.0.1:1", "ipv6:[::1]:1",
                             "unix:/nonexistent/chat.sock"}) {
    chat_client* client = nullptr;
    EXPECT_EQ(chat_client_create(target, nullptr, &client), CHAT_OK) << target << ": "
                                                                      << chat_last_error();
    chat_client_destroy(client);
  }
}

TEST(CApiServer, BroadcastThroughTheCApi) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.mode = CHAT_MODE_BROADCAST;
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_OK);
  std::string target = Target(server);
  chat_client* client = nullptr;
  ASSERT_EQ(chat_client_create(target.c_str(), nullptr, &client), CHAT_OK);
  chat_stream *a = nullptr, *b = nullptr;
  ASSERT_EQ(chat_client_open(client, nullptr, &a), CHAT_OK);
  ASSERT_EQ(chat_client_open(client, nullptr, &b), CHAT_OK);
  auto wait_line = [](chat_stream* s, const std::string& want) {
    const char* t;
    size_t n;
    while (chat_stream_recv(s, 5000, &t, &n) == CHAT_OK) {
      if (Text(t, n) == want) return true;
    }
    return false;
  };
  ASSERT_EQ(Send(b, "Bo", "in"), CHAT_OK);
  ASSERT_TRUE(wait_line(b, "Bo: in"));  // b is registered
  ASSERT_EQ(Send(a, "Al", "hi all"), CHAT_OK);
  EXPECT_TRUE(wait_line(a, "Al: hi all"));
  EXPECT_TRUE(wait_line(b, "Al: hi all"));
  ASSERT_EQ(chat_stream_complete(a), CHAT_OK);
  EXPECT_TRUE(wait_line(b, "Al left the chat"));
  chat_stream_destroy(a);
  chat_stream_destroy(b);
  chat_client_destroy(client);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
}

// Destroying a stream that is still open cancels it and returns promptly;
// destroying the client first leaves its streams usable.
TEST(CApiLifetime, DestroyOrderIsFree) {
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", nullptr, &server), CHAT_OK);
  std::string target = Target(server);
  chat_client* client = nullptr;
  ASSERT_EQ(chat_client_create(target.c_str(), nullptr, &client), CHAT_OK);
  chat_stream *open = nullptr, *kept = nullptr;
  ASSERT_EQ(chat_client_open(client, nullptr, &open), CHAT_OK);
  ASSERT_EQ(chat_client_open(client, nullptr, &kept), CHAT_OK);
  ASSERT_EQ(Send(open, "a", "b"), CHAT_OK);
  chat_stream_destroy(open);
  chat_client_destroy(client);
  ASSERT_EQ(Send(kept, "k", "v"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(kept), CHAT_OK);
  chat_code end;
  EXPECT_EQ(Drain(kept, &end), std::vector<std::string>{"k: v"});
  chat_stream_destroy(kept);
  // A server destroyed with open streams ends them.
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
}

}  // namespace
