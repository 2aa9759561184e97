// chat_room_* through the C ABI: a custom server on the event queue joins
// every call to a room and publishes what it lets through; on_line sees
// the room's sequence; bad handles and arguments get plain errors.
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "capi_pair.h"

namespace chat::testing {
namespace {

struct Seen {
  std::mutex mu;
  std::vector<std::string> lines;
  std::atomic<int> busy_publish{-1}, busy_destroy{-1};
};

void OnLine(chat_room* room, const char* line, size_t len, void* ud) {
  auto* seen = static_cast<Seen*>(ud);
  EXPECT_EQ(line[len], '\0');
  {
    std::lock_guard<std::mutex> lock(seen->mu);
    seen->lines.emplace_back(line, len);
  }
  seen->busy_publish = chat_room_publish(room, "x", 1, "y", 1);
  seen->busy_destroy = chat_room_destroy(room);
}

class CApiRoomTest : public ServerClientPair {
 protected:
  void SetUp() override {
    ASSERT_EQ(chat_queue_create(&queue_), CHAT_OK);
    chat_room_options ro;
    ASSERT_EQ(chat_room_options_init(&ro, CHAT_ROOM_OPTIONS_VERSION), CHAT_OK);
    EXPECT_EQ(ro.max_len, 10000);
    ro.on_line = OnLine;
    ro.user_data = &seen_;
    ASSERT_EQ(chat_room_open(&ro, &room_), CHAT_OK) << chat_last_error();
    chat_server_options so;
    chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
    so.mode = CHAT_MODE_CUSTOM;
    so.queue = queue_;
    Start(&so);
    host_ = std::thread([this] { Host(); });
  }
  void TearDown() override {
    ServerClientPair::TearDown();  // the server first: no event after it
    stop_ = true;
    chat_queue_wake(queue_);
    host_.join();
    EXPECT_EQ(chat_room_destroy(room_), CHAT_OK);
    chat_queue_destroy(queue_);
  }
  // The host's loop: joins each call, publishes its messages (except
  // "secret" ones), completes on half-close.
  void Host() {
    chat_event ev[64];
    while (!stop_) {
      size_t n = 0;
      ASSERT_EQ(chat_queue_drain(queue_, -1, ev, 64, &n), CHAT_OK);
      for (size_t i = 0; i < n; ++i) {
        const chat_event& e = ev[i];
        if (e.type == CHAT_EVENT_OPEN) {
          EXPECT_EQ(chat_room_join(room_, e.call, 0), CHAT_OK) << chat_last_error();
          EXPECT_EQ(chat_room_join(room_, e.call, 0), CHAT_ERR_BAD_STATE);
          EXPECT_EQ(chat_room_join(room_, e.call, 1001), CHAT_ERR_BAD_ARGUMENT);
        } else if (e.type == CHAT_EVENT_MESSAGE) {
          if (Text(e.text, e.text_len) == "secret") {
            chat_call_send(e.call, "kept private", 12, 0);
            continue;
          }
          EXPECT_EQ(chat_room_publish(room_, e.name, e.name_len, e.text, e.text_len), CHAT_OK)
              << chat_last_error();
        } else if (e.type == CHAT_EVENT_HALF_CLOSE) {
          EXPECT_EQ(chat_room_leave(room_, e.call), CHAT_OK);
          EXPECT_EQ(chat_room_leave(room_, e.call), CHAT_ERR_MISSING);
          chat_call_complete(e.call);
        }
      }
    }
  }

  chat_queue* queue_ = nullptr;
  chat_room* room_ = nullptr;
  Seen seen_;
  std::atomic<bool> stop_{false};
  std::thread host_;
};

TEST_F(CApiRoomTest, MembersAndOnLineShareOneSequence) {
  chat_stream* a = Open();
  chat_stream* b = Open();
  std::string reply;
  // Each member is in the room once it hears its own hello.
  for (chat_stream* s : {a, b}) {
    ASSERT_EQ(Send(s, "m", "hello"), CHAT_OK);
    while (Recv(s, &reply) == CHAT_OK && reply != "m: hello") {}
    ASSERT_EQ(reply, "m: hello");
  }
  size_t members = 0;
  ASSERT_EQ(chat_room_members(room_, &members), CHAT_OK);
  EXPECT_EQ(members, 2u);
  constexpr int kRounds = 300;
  std::thread sender([&] {
    for (int i = 0; i < kRounds; ++i) ASSERT_EQ(Send(b, "b", std::to_string(i)), CHAT_OK);
  });
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_EQ(Send(a, "a", std::to_string(i)), CHAT_OK);
    if (i == 7) {
      ASSERT_EQ(Send(a, "a", "secret"), CHAT_OK);
    }
  }
  sender.join();
  std::vector<std::string> at_a, at_b;
  bool private_reply = false;
  while (at_a.size() < 2 * kRounds && Recv(a, &reply) == CHAT_OK) {
    if (reply == "kept private") {
      private_reply = true;
    } else if (reply != "m: hello") {
      at_a.push_back(reply);
    }
  }
  while (at_b.size() < 2 * kRounds && Recv(b, &reply) == CHAT_OK) {
    if (reply != "m: hello") at_b.push_back(reply);
  }
  ASSERT_EQ(at_a.size(), 2u * kRounds);
  EXPECT_TRUE(private_reply);
  EXPECT_EQ(at_b, at_a);
  // on_line runs after the members' queues took the line: a member may
  // hear one before the host sees it (the hellos are left out).
  auto host_saw = [&] {
    std::lock_guard<std::mutex> lock(seen_.mu);
    std::vector<std::string> lines;
    for (const auto& line : seen_.lines) {
      if (line != "m: hello") lines.push_back(line);
    }
    return lines;
  };
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
       host_saw().size() < at_a.size() && std::chrono::steady_clock::now() < end;) {
    std::this_thread::yield();
  }
  EXPECT_EQ(host_saw(), at_a);
  EXPECT_EQ(seen_.busy_publish.load(), CHAT_ERR_BUSY);
  EXPECT_EQ(seen_.busy_destroy.load(), CHAT_ERR_BUSY);
  // A member that half-closes leaves (the host's HALF_CLOSE) and ends OK.
  ASSERT_EQ(chat_stream_complete(b), CHAT_OK);
  chat_code end;
  Drain(b, &end);
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  ASSERT_EQ(chat_room_members(room_, &members), CHAT_OK);
  EXPECT_EQ(members, 1u);
}

TEST(CApiRoom, BadHandlesAndArgumentsAreRefusedPlainly) {
  chat_room_options ro;
  EXPECT_EQ(chat_room_options_init(nullptr, 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_room_options_init(&ro, 99), CHAT_ERR_BAD_ARGUMENT);
  ASSERT_EQ(chat_room_options_init(&ro, CHAT_ROOM_OPTIONS_VERSION), CHAT_OK);
  chat_room* room = nullptr;
  EXPECT_EQ(chat_room_open(nullptr, &room), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_room_open(&ro, nullptr), CHAT_ERR_BAD_ARGUMENT);
  ro.url = "redis://127.0.0.1:1";  // no name
  EXPECT_EQ(chat_room_open(&ro, &room), CHAT_ERR_BAD_ARGUMENT);
  ro.name = "lobby";
  ro.url = "http://127.0.0.1:1";
  EXPECT_EQ(chat_room_open(&ro, &room), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_last_error()).find("redis://"), std::string::npos);
  ro.url = nullptr;
  ro.max_len = 0;
  EXPECT_EQ(chat_room_open(&ro, &room), CHAT_ERR_BAD_ARGUMENT);
  ro.max_len = 5;
  ASSERT_EQ(chat_room_open(&ro, &room), CHAT_OK);

  EXPECT_EQ(chat_room_publish(nullptr, "a", 1, "b", 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_room_publish(room, nullptr, 1, "b", 1), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_room_publish(room, "a", 1, "\xff", 1), CHAT_ERR_BAD_ARGUMENT);
  char buf[128];
  EXPECT_GT(chat_room_error(room, buf, sizeof buf), 0u);
  EXPECT_NE(std::string(buf).find("UTF-8"), std::string::npos) << buf;
  EXPECT_EQ(chat_room_publish(room, "a", 1, "no members", 10), CHAT_OK);
  EXPECT_EQ(chat_room_notice(room, "a notice", 8), CHAT_OK);
  EXPECT_EQ(chat_room_notice(room, nullptr, 3), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_room_join(room, nullptr, 0), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_room_leave(room, nullptr), CHAT_ERR_BAD_ARGUMENT);
  size_t members = 7;
  EXPECT_EQ(chat_room_members(nullptr, &members), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(members, 0u);
  EXPECT_EQ(chat_room_members(room, nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_room_members(room, &members), CHAT_OK);
  EXPECT_EQ(members, 0u);
  EXPECT_EQ(chat_room_destroy(room), CHAT_OK);
  EXPECT_EQ(chat_room_destroy(nullptr), CHAT_OK);
}

struct AuthJoin {
  chat_room* room = nullptr;
  std::atomic<int> rc{-1};
};

chat_code JoinWhileAuthenticating(chat_call* call, const char*, char*, size_t, void* ud) {
  auto* a = static_cast<AuthJoin*>(ud);
  a->rc = chat_room_join(a->room, call, 0);
  return CHAT_OK;
}

TEST(CApiRoom, ACallStillInAuthenticateCannotJoin) {
  AuthJoin a;
  chat_room_options ro;
  chat_room_options_init(&ro, CHAT_ROOM_OPTIONS_VERSION);
  ASSERT_EQ(chat_room_open(&ro, &a.room), CHAT_OK);
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.authenticate = JoinWhileAuthenticating;
  so.authenticate_user_data = &a;
  chat_server* server = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_OK) << chat_last_error();
  chat_client* client = nullptr;
  ASSERT_EQ(chat_client_create(Target(server).c_str(), nullptr, &client), CHAT_OK);
  chat_stream* s = nullptr;
  ASSERT_EQ(chat_client_open(client, nullptr, &s), CHAT_OK);
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  std::string reply;
  ASSERT_EQ(Recv(s, &reply), CHAT_OK);  // the echo server admitted it
  EXPECT_EQ(reply, "Sam: Hi");
  EXPECT_EQ(a.rc.load(), CHAT_ERR_BAD_STATE);
  size_t members = 9;
  EXPECT_EQ(chat_room_members(a.room, &members), CHAT_OK);
  EXPECT_EQ(members, 0u);
  // Closing is thread-safe and leaves the handle valid until destroy.
  EXPECT_EQ(chat_room_close(a.room), CHAT_OK);
  EXPECT_EQ(chat_room_close(a.room), CHAT_OK);
  EXPECT_EQ(chat_room_publish(a.room, "a", 1, "b", 1), CHAT_ERR_CLOSED);
  chat_stream_destroy(s);
  chat_client_destroy(client);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);
  EXPECT_EQ(chat_room_destroy(a.room), CHAT_OK);
}

}  // namespace
}  // namespace chat::testing
