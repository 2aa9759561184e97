// The event queue (chat_queue_*) over real loopback sockets: order, bounds,
// readiness of the descriptor, WRITABLE, stop and destroy, error details.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "capi_pair.h"
#include <libchat/chat.h>

namespace {

using chat::testing::Recv;
using chat::testing::Send;
using chat::testing::Target;
using chat::testing::Text;
using Clock = std::chrono::steady_clock;

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

// An event copied out of the borrowed batch.
struct Ev {
  int type;
  chat_code code;
  chat_call* call;
  chat_stream* stream;
  void* user_data;
  std::string name, text;
};

// Drains `q` (waiting up to 10 s in all) until `done` says so; returns what
// came, in order.
template <class Done>
std::vector<Ev> DrainUntil(chat_queue* q, Done done, std::vector<Ev> got = {}) {
  auto until = Clock::now() + std::chrono::seconds(10);
  chat_event batch[64];
  while (!done(got) && Clock::now() < until) {
    size_t n = 0;
    EXPECT_EQ(chat_queue_drain(q, 100, batch, 64, &n), CHAT_OK);
    for (size_t i = 0; i < n; ++i) {
      const chat_event& e = batch[i];
      got.push_back(Ev{e.type, e.code, e.call, e.stream, e.user_data, Text(e.name, e.name_len),
                       Text(e.text, e.text_len)});
    }
  }
  return got;
}

size_t CountType(const std::vector<Ev>& evs, int type) {
  size_t n = 0;
  for (const auto& e : evs) n += e.type == type;
  return n;
}

class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(chat_queue_create(&q_), CHAT_OK); }
  void TearDown() override {
    for (auto* s : streams_) chat_stream_destroy(s);
    chat_client_destroy(client_);
    if (server_) {
      EXPECT_EQ(chat_server_destroy(server_), CHAT_OK);
    }
    chat_queue_destroy(q_);
    chat_queue_destroy(server_q_);
  }
  // An echo server, or a custom server on server_q_ when `queued`.
  void Start(bool queued, chat_server_options* so = nullptr, const chat_client_options* co = nullptr) {
    chat_server_options o;
    if (!so) {
      chat_server_options_init(&o, CHAT_SERVER_OPTIONS_VERSION);
      so = &o;
    }
    if (queued) {
      ASSERT_EQ(chat_queue_create(&server_q_), CHAT_OK);
      so->mode = CHAT_MODE_CUSTOM;
      so->queue = server_q_;
    }
    ASSERT_EQ(chat_server_start("127.0.0.1:0", so, &server_), CHAT_OK) << chat_last_error();
    std::string target = Target(server_);
    ASSERT_EQ(chat_client_create(target.c_str(), co, &client_), CHAT_OK) << chat_last_error();
  }
  chat_stream* OpenQueued(void* user_data) {
    chat_stream_options o;
    chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
    o.queue = q_;
    o.user_data = user_data;
    chat_stream* s = nullptr;
    EXPECT_EQ(chat_client_open(client_, &o, &s), CHAT_OK) << chat_last_error();
    streams_.push_back(s);
    return s;
  }
  chat_stream* OpenBlocking() {
    chat_stream* s = nullptr;
    EXPECT_EQ(chat_client_open(client_, nullptr, &s), CHAT_OK);
    streams_.push_back(s);
    return s;
  }
  chat_queue* q_ = nullptr;
  chat_queue* server_q_ = nullptr;
  chat_server* server_ = nullptr;
  chat_client* client_ = nullptr;
  std::vector<chat_stream*> streams_;
};

auto Ended(chat_stream* s) {
  return [s](const std::vector<Ev>& got) {
    for (const auto& e : got) {
      if (e.type == CHAT_EVENT_END && e.stream == s) return true;
    }
    return false;
  };
}

TEST_F(QueueTest, SeedThroughTheQueueInOrderWithItsEnd) {
  Start(false);
  int tag = 7;
  chat_stream* s = OpenQueued(&tag);
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  ASSERT_EQ(Send(s, "Ann", "Hey"), CHAT_OK);
  ASSERT_EQ(Send(s, "John", "Hello"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  const char* text;
  size_t len;
  EXPECT_EQ(chat_stream_recv(s, 0, &text, &len), CHAT_ERR_BAD_STATE);
  auto got = DrainUntil(q_, Ended(s));
  ASSERT_EQ(got.size(), 4u);
  std::vector<std::string> replies;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].type, CHAT_EVENT_REPLY);
    EXPECT_EQ(got[i].stream, s);
    EXPECT_EQ(got[i].user_data, &tag);
    EXPECT_EQ(got[i].call, nullptr);
    replies.push_back(got[i].text);
  }
  EXPECT_EQ(replies, (std::vector<std::string>{"Sam: Hi", "Ann: Hey", "John: Hello"}));
  EXPECT_EQ(got[3].type, CHAT_EVENT_END);
  EXPECT_EQ(got[3].code, CHAT_OK);
  chat_code code;
  ASSERT_EQ(chat_stream_status(s, &code, nullptr, nullptr), CHAT_OK);
  EXPECT_EQ(code, CHAT_OK);
}

TEST_F(QueueTest, DescriptorIsReadableExactlyWhileEventsArePending) {
  Start(false);
  int fd = chat_queue_fd(q_);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(chat_queue_fd(nullptr), -1);
  EXPECT_FALSE(Readable(fd, 0));
  chat_event ev[4];
  size_t n = 99;
  auto t0 = Clock::now();
  ASSERT_EQ(chat_queue_drain(q_, 0, ev, 4, &n), CHAT_OK);
  EXPECT_EQ(n, 0u);
  ASSERT_EQ(chat_queue_drain(q_, 50, ev, 4, &n), CHAT_OK);  // a wait that runs out
  EXPECT_EQ(n, 0u);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(50));
  chat_stream* s = OpenQueued(nullptr);
  ASSERT_EQ(Send(s, "a", "1"), CHAT_OK);
  ASSERT_TRUE(Readable(fd, 10000));
  ASSERT_EQ(chat_queue_drain(q_, 0, ev, 4, &n), CHAT_OK);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(Text(ev[0].text, ev[0].text_len), "a: 1");
  EXPECT_FALSE(Readable(fd, 0));  // drained to empty: the pipe was read dry
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  ASSERT_TRUE(Readable(fd, 10000));
  ASSERT_EQ(chat_queue_drain(q_, 0, ev, 4, &n), CHAT_OK);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(ev[0].type, CHAT_EVENT_END);
  EXPECT_FALSE(Readable(fd, 0));
}

// The descriptor is armed by its first chat_queue_fd: events already
// pending then make it readable at once.
TEST_F(QueueTest, TheFirstAskForTheDescriptorArmsIt) {
  ASSERT_EQ(chat_queue_wake(q_), CHAT_OK);
  int fd = chat_queue_fd(q_);
  EXPECT_TRUE(Readable(fd, 0));
  chat_event ev[4];
  size_t n = 0;
  ASSERT_EQ(chat_queue_drain(q_, 0, ev, 4, &n), CHAT_OK);
  EXPECT_EQ(n, 1u);
  EXPECT_FALSE(Readable(fd, 0));
  ASSERT_EQ(chat_queue_wake(q_), CHAT_OK);
  EXPECT_TRUE(Readable(fd, 0));
}

TEST_F(QueueTest, WakeEndsAWaitAndCoalesces) {
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the drain block first
    EXPECT_EQ(chat_queue_wake(q_), CHAT_OK);
  });
  chat_event ev[4];
  size_t n = 0;
  ASSERT_EQ(chat_queue_drain(q_, -1, ev, 4, &n), CHAT_OK);
  waker.join();
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(ev[0].type, CHAT_EVENT_WAKE);
  EXPECT_EQ(ev[0].stream, nullptr);
  EXPECT_EQ(chat_queue_wake(q_), CHAT_OK);
  EXPECT_EQ(chat_queue_wake(q_), CHAT_OK);
  EXPECT_TRUE(Readable(chat_queue_fd(q_), 0));
  ASSERT_EQ(chat_queue_drain(q_, 0, ev, 4, &n), CHAT_OK);
  EXPECT_EQ(n, 1u);  // two wakes, one event
  EXPECT_EQ(chat_queue_wake(nullptr), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_queue_drain(q_, 0, nullptr, 4, &n), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_queue_drain(q_, 0, ev, 0, &n), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_queue_create(nullptr), CHAT_ERR_BAD_ARGUMENT);
}

// The seed contract served from the queue: OPEN, MESSAGE..., HALF_CLOSE,
// CLOSE, in order; the call carries the host's pointer.
TEST_F(QueueTest, QueuedServerSeesEachCallsEventsInOrder) {
  int server_mark = 0;
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.user_data = &server_mark;
  Start(true, &so);
  chat_stream* s = OpenBlocking();
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  ASSERT_EQ(Send(s, "Ann", "Hey"), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  int mine = 0;
  chat_call* call = nullptr;
  std::vector<Ev> got = DrainUntil(server_q_, [&](const std::vector<Ev>& evs) {
    for (const auto& e : evs) {
      if (e.type == CHAT_EVENT_OPEN && !call) {
        call = e.call;
        EXPECT_EQ(e.user_data, &server_mark);  // the server's, until the call has its own
        EXPECT_EQ(chat_call_set_user_data(call, &mine), CHAT_OK);
      }
      if (e.type == CHAT_EVENT_HALF_CLOSE) return true;
    }
    return false;
  });
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].type, CHAT_EVENT_OPEN);
  EXPECT_EQ(got[1].type, CHAT_EVENT_MESSAGE);
  EXPECT_EQ(got[1].name, "Sam");
  EXPECT_EQ(got[1].text, "Hi");
  EXPECT_EQ(got[2].name, "Ann");
  EXPECT_EQ(got[3].type, CHAT_EVENT_HALF_CLOSE);
  for (const auto& e : got) EXPECT_EQ(e.call, call);
  EXPECT_EQ(chat_call_user_data(call), &mine);
  for (size_t i = 1; i <= 2; ++i) {
    std::string line = got[i].name + ": " + got[i].text;
    ASSERT_EQ(chat_call_send(call, line.data(), line.size(), 0), CHAT_OK);
  }
  ASSERT_EQ(chat_call_complete(call), CHAT_OK);
  got = DrainUntil(server_q_, [](const std::vector<Ev>& evs) { return !evs.empty(); });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, CHAT_EVENT_CLOSE);
  EXPECT_EQ(got[0].code, CHAT_OK);
  EXPECT_EQ(got[0].user_data, &mine);
  EXPECT_EQ(chat_call_id(got[0].call), 1u);  // still valid until the next drain
  chat_code end;
  EXPECT_EQ(chat::testing::Drain(s, &end), (std::vector<std::string>{"Sam: Hi", "Ann: Hey"}));
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
}

// recv_window counts messages not yet drained: a host that does not drain
// holds the client back (HTTP/2 flow control), and nothing is lost.
TEST_F(QueueTest, QueuedServerWindowCountsUndrainedMessages) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.recv_window = 4;
  Start(true, &so);
  chat_stream* s = OpenBlocking();
  constexpr int kMessages = 50;
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(Send(s, "n", std::to_string(i)), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  // Give the server time to read more than its window if it would; a
  // correct server has at most OPEN + 4 messages pending however long.
  ASSERT_TRUE(Readable(chat_queue_fd(server_q_), 10000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  chat_event ev[128];
  size_t n = 0;
  ASSERT_EQ(chat_queue_drain(server_q_, 0, ev, 128, &n), CHAT_OK);
  EXPECT_LE(n, 5u);
  std::vector<Ev> first;
  for (size_t i = 0; i < n; ++i) first.push_back(Ev{ev[i].type, ev[i].code, ev[i].call, nullptr, nullptr,
                                                    Text(ev[i].name, ev[i].name_len),
                                                    Text(ev[i].text, ev[i].text_len)});
  auto got = DrainUntil(server_q_, [](const std::vector<Ev>& evs) {
    return CountType(evs, CHAT_EVENT_HALF_CLOSE) == 1;
  }, first);
  ASSERT_EQ(CountType(got, CHAT_EVENT_MESSAGE), static_cast<size_t>(kMessages));
  int next = 0;
  for (const auto& e : got) {
    if (e.type == CHAT_EVENT_MESSAGE) {
      EXPECT_EQ(e.text, std::to_string(next++));
    }
  }
  chat_call_complete(got[0].call);
}

// hold_until_consumed: drained messages and replies keep their room until
// the host reports them consumed, so a host that drains everything at once
// still holds its peer back; nothing is lost.
TEST_F(QueueTest, HeldMessagesAndRepliesKeepTheirRoomUntilConsumed) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.recv_window = 2;
  so.hold_until_consumed = 1;
  Start(true, &so);
  chat_stream* s = OpenBlocking();
  constexpr int kMessages = 20;
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(Send(s, "n", std::to_string(i)), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  auto messages = [](const std::vector<Ev>& evs) { return CountType(evs, CHAT_EVENT_MESSAGE); };
  auto got = DrainUntil(server_q_, [&](const std::vector<Ev>& evs) { return messages(evs) == 2; });
  ASSERT_EQ(messages(got), 2u);
  chat_call* call = got[0].call;
  // However long the host drains, a held window lets no third message in.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  chat_event ev[64];
  size_t n = 0;
  ASSERT_EQ(chat_queue_drain(server_q_, 0, ev, 64, &n), CHAT_OK);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(chat_call_consumed(call, 3), CHAT_ERR_BAD_ARGUMENT);  // only 2 held
  EXPECT_EQ(chat_call_consumed(call, 0), CHAT_OK);
  EXPECT_EQ(chat_call_consumed(call, 2), CHAT_OK);
  // Consumed one by one, the rest come, in order.
  size_t seen = got.size();
  got = DrainUntil(server_q_, [&](const std::vector<Ev>& evs) {
    for (; seen < evs.size(); ++seen) {
      if (evs[seen].type == CHAT_EVENT_MESSAGE) {
        EXPECT_EQ(chat_call_consumed(call, 1), CHAT_OK);
      }
    }
    return CountType(evs, CHAT_EVENT_HALF_CLOSE) == 1;
  }, got);
  ASSERT_EQ(messages(got), static_cast<size_t>(kMessages));
  int next = 0;
  for (const auto& e : got) {
    if (e.type == CHAT_EVENT_MESSAGE) {
      EXPECT_EQ(e.text, std::to_string(next++));
    }
  }
  // The client side: a stream holding its replies reads no more than
  // recv_queue_limit of them until they are consumed.
  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  co.recv_queue_limit = 2;
  chat_client* client = nullptr;
  std::string target = Target(server_);
  ASSERT_EQ(chat_client_create(target.c_str(), &co, &client), CHAT_OK);
  chat_stream_options o;
  chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
  o.queue = q_;
  o.hold_until_consumed = 1;
  chat_stream* held = nullptr;
  ASSERT_EQ(chat_client_open(client, &o, &held), CHAT_OK);
  ASSERT_EQ(Send(held, "x", "y"), CHAT_OK);
  got = DrainUntil(server_q_, [&](const std::vector<Ev>& evs) { return messages(evs) == 1; });
  chat_call* server_call = got[0].call;
  for (int i = 0; i < kMessages; ++i) {
    std::string r = std::to_string(i);
    ASSERT_EQ(chat_call_send(server_call, r.data(), r.size(), 0), CHAT_OK);
  }
  ASSERT_EQ(chat_call_complete(server_call), CHAT_OK);
  auto replies = [](const std::vector<Ev>& evs) { return CountType(evs, CHAT_EVENT_REPLY); };
  got = DrainUntil(q_, [&](const std::vector<Ev>& evs) { return replies(evs) == 2; });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(chat_queue_drain(q_, 0, ev, 64, &n), CHAT_OK);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(chat_stream_consumed(held, 3), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_stream_consumed(held, 2), CHAT_OK);
  seen = got.size();
  got = DrainUntil(q_, [&](const std::vector<Ev>& evs) {
    for (; seen < evs.size(); ++seen) {
      if (evs[seen].type == CHAT_EVENT_REPLY) {
        EXPECT_EQ(chat_stream_consumed(held, 1), CHAT_OK);
      }
    }
    return CountType(evs, CHAT_EVENT_END) == 1;
  }, got);
  EXPECT_EQ(replies(got), static_cast<size_t>(kMessages));
  EXPECT_EQ(got.back().type, CHAT_EVENT_END);
  chat_stream_destroy(held);
  chat_client_destroy(client);
  // Without hold_until_consumed there is nothing to report.
  EXPECT_EQ(chat_stream_consumed(s, 1), CHAT_ERR_BAD_STATE);
}

// A refused send earns one WRITABLE once there is room, on both sides.
TEST_F(QueueTest, WritableFollowsARefusedSendOnServerAndClient) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.send_queue_limit = 2;
  so.recv_window = 1;
  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  co.send_queue_limit = 2;
  co.recv_queue_limit = 1;
  Start(true, &so, &co);
  chat_stream* s = OpenQueued(nullptr);
  const std::string big(256 * 1024, 'x');  // a few fill every HTTP/2 window
  // Client side: the server host does not drain, so the client's sends
  // back up until one is refused.
  int sent = 0;
  chat_code rc;
  while ((rc = Send(s, "n", big, 0)) == CHAT_OK && sent < 100) ++sent;
  ASSERT_EQ(rc, CHAT_ERR_WOULD_BLOCK) << "sent " << sent;
  char err[8];
  EXPECT_EQ(chat_stream_error(s, err, sizeof err), std::strlen("send queue is full"));
  EXPECT_EQ(std::string(err), "send qu");  // truncated, terminated
  // The server host drains: the client's queue moves and WRITABLE comes.
  chat_call* call = nullptr;
  int messages = 0;
  auto got = DrainUntil(q_, [&](const std::vector<Ev>& evs) {
    chat_event ev[16];
    size_t n = 0;
    chat_queue_drain(server_q_, 10, ev, 16, &n);
    for (size_t i = 0; i < n; ++i) {
      if (ev[i].type == CHAT_EVENT_OPEN) call = ev[i].call, chat_call_ref(call);
      messages += ev[i].type == CHAT_EVENT_MESSAGE;
    }
    return CountType(evs, CHAT_EVENT_WRITABLE) > 0;
  });
  ASSERT_EQ(CountType(got, CHAT_EVENT_WRITABLE), 1u);
  EXPECT_EQ(got.back().stream, s);
  ASSERT_EQ(Send(s, "n", big, 0), CHAT_OK);
  ASSERT_NE(call, nullptr);
  // Server side: the client's stream reads nothing (its queue is never
  // drained past one reply), so the server's replies back up.
  int replies = 0;
  while ((rc = chat_call_send(call, big.data(), big.size(), 0)) == CHAT_OK && replies < 100) ++replies;
  ASSERT_EQ(rc, CHAT_ERR_WOULD_BLOCK) << "replies " << replies;
  char cerr[64];
  EXPECT_GT(chat_call_error(call, cerr, sizeof cerr), 0u);
  EXPECT_EQ(std::string(cerr), "send queue is full");
  bool writable = false;
  DrainUntil(q_, [&](const std::vector<Ev>&) {  // the client reads: the server's queue moves
    chat_event ev[16];
    size_t n = 0;
    chat_queue_drain(server_q_, 10, ev, 16, &n);
    for (size_t i = 0; i < n; ++i) {
      if (ev[i].type == CHAT_EVENT_WRITABLE) {
        EXPECT_EQ(ev[i].call, call);
        writable = true;
      }
    }
    return writable;
  });
  EXPECT_TRUE(writable);
  EXPECT_EQ(chat_call_send(call, "ok", 2, 0), CHAT_OK);
  chat_call_unref(call);
}

TEST_F(QueueTest, StopDoesNotWaitForTheHostAndTheCloseComesLast) {
  Start(true);
  chat_stream* s = OpenBlocking();
  ASSERT_EQ(Send(s, "a", "1"), CHAT_OK);
  ASSERT_TRUE(Readable(chat_queue_fd(server_q_), 10000));  // OPEN is in; nobody drains
  int32_t cut = -1;
  ASSERT_EQ(chat_server_stop(server_, 0, &cut), CHAT_OK);
  EXPECT_EQ(cut, 1);
  auto got = DrainUntil(server_q_, [](const std::vector<Ev>& evs) {
    return CountType(evs, CHAT_EVENT_CLOSE) == 1;
  });
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got.front().type, CHAT_EVENT_OPEN);
  EXPECT_EQ(got.back().type, CHAT_EVENT_CLOSE);
  EXPECT_EQ(got.back().code, CHAT_UNAVAILABLE);
  chat_code end;
  chat::testing::Drain(s, &end);
  EXPECT_EQ(end, CHAT_UNAVAILABLE);
}

TEST_F(QueueTest, DestroyedStreamsLeaveNoEventsAndPendingCallsAreReleased) {
  Start(true);
  chat_stream* s = OpenQueued(nullptr);
  ASSERT_EQ(Send(s, "a", "1"), CHAT_OK);
  // The server host answers, then the client stream is destroyed undrained.
  auto got = DrainUntil(server_q_, [](const std::vector<Ev>& evs) {
    return CountType(evs, CHAT_EVENT_MESSAGE) == 1;
  });
  ASSERT_EQ(chat_call_send(got[0].call, "r", 1, 0), CHAT_OK);
  ASSERT_TRUE(Readable(chat_queue_fd(q_), 10000));
  chat_stream_destroy(s);
  streams_.clear();
  chat_event ev[8];
  size_t n = 9;
  ASSERT_EQ(chat_queue_drain(q_, 0, ev, 8, &n), CHAT_OK);
  EXPECT_EQ(n, 0u);
  // The server's queue still holds this call's CLOSE: destroying the server
  // and then the queue undrained releases it (LeakSanitizer checks).
  ASSERT_EQ(chat_server_destroy(server_), CHAT_OK);
  server_ = nullptr;
}

// Destroying a queue before what delivers to it drops their events; the
// servers and streams go on (no deadlock, no leak) and end as usual.
TEST_F(QueueTest, AQueueDestroyedFirstDropsEventsAndBreaksNothing) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.recv_window = 2;
  Start(true, &so);
  chat_stream* queued = OpenQueued(nullptr);
  chat_stream* blocking = OpenBlocking();
  ASSERT_EQ(Send(queued, "a", "1"), CHAT_OK);
  ASSERT_EQ(Send(blocking, "b", "1"), CHAT_OK);
  auto got = DrainUntil(server_q_, [](const std::vector<Ev>& evs) {
    return CountType(evs, CHAT_EVENT_MESSAGE) == 2;
  });
  for (const auto& e : got) {
    if (e.type == CHAT_EVENT_MESSAGE) {
      ASSERT_EQ(chat_call_send(e.call, "r", 1, 0), CHAT_OK);
    }
  }
  ASSERT_TRUE(Readable(chat_queue_fd(q_), 10000));
  chat_queue_destroy(server_q_);
  chat_queue_destroy(q_);
  server_q_ = q_ = nullptr;
  // Far more than the window: a dropped message must not hold its room.
  for (int i = 0; i < 20; ++i) ASSERT_EQ(Send(blocking, "b", std::to_string(i)), CHAT_OK);
  ASSERT_EQ(chat_stream_complete(blocking), CHAT_OK);
  const char* text;
  size_t len;
  ASSERT_EQ(chat_stream_recv(blocking, 10000, &text, &len), CHAT_OK);  // sent before
  int32_t cut = 0;
  ASSERT_EQ(chat_server_stop(server_, 0, &cut), CHAT_OK);
  EXPECT_EQ(cut, 2);
  EXPECT_EQ(chat_stream_wait(queued, 10000), CHAT_OK);
  chat_code code;
  ASSERT_EQ(chat_stream_status(queued, &code, nullptr, nullptr), CHAT_OK);
  // Cut by the stop: UNAVAILABLE, or CANCELLED when the reply was still on
  // its way at the cut (chat_server_stop says why).
  EXPECT_TRUE(code == CHAT_UNAVAILABLE || code == CHAT_CANCELLED) << chat_code_name(code);
}

// Destroying a stream while another thread drains: the drain never reads
// the stream handle (AddressSanitizer saw a use-after-free here).
TEST_F(QueueTest, DestroyingStreamsWhileAnotherThreadDrains) {
  Start(false);
  std::atomic<bool> stop{false};
  std::thread drainer([&] {
    chat_event ev[64];
    while (!stop.load()) {
      size_t n = 0;
      chat_queue_drain(q_, 5, ev, 64, &n);
    }
  });
  int tag = 0;
  for (int i = 0; i < 300; ++i) {
    chat_stream_options o;
    chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
    o.queue = q_;
    o.user_data = &tag;
    chat_stream* s = nullptr;
    ASSERT_EQ(chat_client_open(client_, &o, &s), CHAT_OK);
    ASSERT_EQ(Send(s, "a", "b"), CHAT_OK);
    ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
    ASSERT_EQ(chat_stream_wait(s, 10000), CHAT_OK);
    chat_stream_destroy(s);
  }
  stop = true;
  drainer.join();
}

// A connection may hold at most max_memory_bytes / 2 / 16 KiB streams at
// once; the server asks for half that (MAX_CONCURRENT_STREAMS), so a client
// opening more on one connection waits for slots instead of losing the
// connection.
TEST_F(QueueTest, MoreStreamsThanAConnectionMayHoldWaitForSlots) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.max_memory_bytes = 16 << 20;  // 512 streams per connection, 256 asked for
  Start(false, &so);
  constexpr int kStreams = 700;
  std::vector<chat_stream*> open;
  for (int i = 0; i < kStreams; ++i) open.push_back(OpenQueued(nullptr));
  for (auto* s : open) ASSERT_EQ(Send(s, "s", "m"), CHAT_OK);
  for (auto* s : open) ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
  std::map<chat_stream*, std::string> ends;
  size_t seen = 0;
  DrainUntil(q_, [&](const std::vector<Ev>& evs) {
    for (; seen < evs.size(); ++seen) {
      if (evs[seen].type == CHAT_EVENT_END) {
        ends[evs[seen].stream] = std::string(chat_code_name(evs[seen].code)) + " " + evs[seen].text;
      }
    }
    return ends.size() == open.size();
  });
  ASSERT_EQ(ends.size(), open.size());
  for (auto& [s, end] : ends) ASSERT_EQ(end, "OK ") << "stream " << s;
}

TEST_F(QueueTest, OptionsAreCheckedAndOldVersionsAreNotOverrun) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.queue = q_;
  chat_server* server = nullptr;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);  // echo
  so.mode = CHAT_MODE_CUSTOM;
  so.on_close = [](chat_call*, chat_code, const char*, size_t, void*) {};
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);  // callbacks
  EXPECT_EQ(server, nullptr);

  alignas(chat_server_options) unsigned char sbuf[sizeof(chat_server_options)];
  std::memset(sbuf, 0xAB, sizeof sbuf);
  auto* v3 = reinterpret_cast<chat_server_options*>(sbuf);
  ASSERT_EQ(chat_server_options_init(v3, 3), CHAT_OK);
  for (size_t i = offsetof(chat_server_options, queue); i < sizeof sbuf; ++i) {
    ASSERT_EQ(sbuf[i], 0xAB) << "byte " << i;
  }
  ASSERT_EQ(chat_server_start("127.0.0.1:0", v3, &server), CHAT_OK) << chat_last_error();
  std::string target = Target(server);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);

  alignas(chat_stream_options) unsigned char tbuf[sizeof(chat_stream_options)];
  std::memset(tbuf, 0xAB, sizeof tbuf);
  auto* v2 = reinterpret_cast<chat_stream_options*>(tbuf);
  ASSERT_EQ(chat_stream_options_init(v2, 2), CHAT_OK);
  for (size_t i = offsetof(chat_stream_options, queue); i < sizeof tbuf; ++i) {
    ASSERT_EQ(tbuf[i], 0xAB) << "byte " << i;
  }
  Start(false);
  chat_stream* s = nullptr;
  ASSERT_EQ(chat_client_open(client_, v2, &s), CHAT_OK);  // the 0xAB queue is not read
  streams_.push_back(s);
  ASSERT_EQ(Send(s, "a", "b"), CHAT_OK);
  std::string reply;
  ASSERT_EQ(Recv(s, &reply, 10000), CHAT_OK);
  EXPECT_EQ(reply, "a: b");

  chat_stream_options bad;
  chat_stream_options_init(&bad, CHAT_STREAM_OPTIONS_VERSION);
  bad.queue = reinterpret_cast<chat_queue*>(&bad);  // not a queue
  EXPECT_EQ(chat_client_open(client_, &bad, &s), CHAT_ERR_BAD_ARGUMENT);
  char msg[64];
  EXPECT_GT(chat_client_error(client_, msg, sizeof msg), 0u);
  EXPECT_STREQ(msg, "not a valid chat_queue handle");
  EXPECT_EQ(chat_stream_error(nullptr, msg, sizeof msg), 0u);
  EXPECT_STREQ(msg, "");
  EXPECT_EQ(chat_server_error(server_, nullptr, 0), 0u);  // nothing failed on it
}

// Order and exactly-once ends under contention: many streams of one queue
// against a queued server drained by another thread, repeated.
TEST_F(QueueTest, ManyStreamsKeepTheirOrderAndEndOnceUnderContention) {
  Start(true);
  std::atomic<bool> stop{false};
  std::thread host([&] {
    chat_event ev[64];
    while (!stop.load()) {
      size_t n = 0;
      chat_queue_drain(server_q_, 20, ev, 64, &n);
      for (size_t i = 0; i < n; ++i) {
        if (ev[i].type == CHAT_EVENT_MESSAGE) {
          std::string line = Text(ev[i].name, ev[i].name_len) + ": " + Text(ev[i].text, ev[i].text_len);
          EXPECT_EQ(chat_call_send(ev[i].call, line.data(), line.size(), -1), CHAT_OK);
        } else if (ev[i].type == CHAT_EVENT_HALF_CLOSE) {
          EXPECT_EQ(chat_call_complete(ev[i].call), CHAT_OK);
        }
      }
    }
  });
  constexpr int kStreams = 100, kMessages = 30, kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    std::map<chat_stream*, int> next, ends;
    std::vector<chat_stream*> open;
    for (int i = 0; i < kStreams; ++i) open.push_back(OpenQueued(nullptr));
    for (int m = 0; m < kMessages; ++m) {
      for (auto* s : open) ASSERT_EQ(Send(s, "s", std::to_string(m), -1), CHAT_OK);
    }
    for (auto* s : open) ASSERT_EQ(chat_stream_complete(s), CHAT_OK);
    size_t seen = 0;
    DrainUntil(q_, [&](const std::vector<Ev>& evs) {
      for (; seen < evs.size(); ++seen) {
        const Ev& e = evs[seen];
        if (e.type == CHAT_EVENT_REPLY) {
          EXPECT_EQ(ends[e.stream], 0) << "reply after the end";
          EXPECT_EQ(e.text, "s: " + std::to_string(next[e.stream]++));
        } else if (e.type == CHAT_EVENT_END) {
          EXPECT_EQ(e.code, CHAT_OK);
          ++ends[e.stream];
        }
      }
      bool all = ends.size() == open.size();
      for (auto& [s, n] : ends) all = all && n == 1;
      return all;
    });
    ASSERT_EQ(ends.size(), open.size()) << "round " << round;
    for (auto* s : open) {
      EXPECT_EQ(next[s], kMessages);
      EXPECT_EQ(ends[s], 1);
    }
    for (auto* s : open) chat_stream_destroy(s);
    streams_.clear();
  }
  stop = true;
  host.join();
}

// A client's cancel also ends the server's reads: the HALF_CLOSE that
// queues then is stale by the time it is drained, and the drain filters it
// out. It must not count against `max`: a host that reads the pipe itself
// (Node) drains until a drain comes back short, and the pipe is signalled
// again only once the queue was empty. A short drain with the CLOSE still
// pending left it unreadable for ever.
TEST_F(QueueTest, AStaleHalfCloseDoesNotCutADrainShort) {
  Start(true);
  int fd = chat_queue_fd(server_q_);
  for (int attempt = 0; attempt < 5; ++attempt) {
    chat_stream* s = OpenBlocking();
    ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
    DrainUntil(server_q_, [](const std::vector<Ev>& evs) {
      return CountType(evs, CHAT_EVENT_MESSAGE) == 1;
    });
    ASSERT_EQ(chat_stream_cancel(s), CHAT_OK);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // HALF_CLOSE?, CLOSE queued
    ASSERT_TRUE(Readable(fd, 0));
    char byte[16];
    ASSERT_GT(read(fd, byte, sizeof byte), 0);  // as Node's socket does
    chat_event e;
    size_t n = 0;
    int closes = 0;
    do {
      ASSERT_EQ(chat_queue_drain(server_q_, 0, &e, 1, &n), CHAT_OK);
      closes += n == 1 && e.type == CHAT_EVENT_CLOSE;
    } while (n == 1);
    // The drain came back short: nothing may be pending unless the
    // descriptor says so.
    if (!Readable(fd, 0)) {
      ASSERT_EQ(chat_queue_drain(server_q_, 0, &e, 1, &n), CHAT_OK);
      EXPECT_EQ(n, 0u) << "attempt " << attempt << ": event " << e.type
                       << " pending behind a short drain, descriptor unreadable";
    }
    EXPECT_EQ(closes, 1) << "attempt " << attempt;
  }
}

// chat_queue_destroy closes the descriptor, as chat_queue_fd says, also
// while a stream still holds the queue (it then only drops its events).
TEST_F(QueueTest, DestroyingTheQueueClosesItsDescriptorAtOnce) {
  Start(false);
  chat_stream* s = OpenQueued(nullptr);
  ASSERT_EQ(Send(s, "Sam", "Hi"), CHAT_OK);
  int fd = chat_queue_fd(q_);
  struct stat before, after;
  ASSERT_EQ(fstat(fd, &before), 0);
  chat_queue_destroy(q_);
  q_ = nullptr;
  // Closed, or the number already reused for something else.
  bool closed = fstat(fd, &after) != 0 || after.st_ino != before.st_ino;
  EXPECT_TRUE(closed) << "descriptor " << fd << " still open after chat_queue_destroy";
}

}  // namespace

// A host that fails a call whose client stopped reading (its send was just
// refused) sees the call close promptly: the write stuck behind the client
// is reset (after 200 ms) rather than waited for until a deadline.
TEST_F(QueueTest, FailingACallWhoseClientStoppedReadingClosesIt) {
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.send_queue_limit = 2;
  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  co.recv_queue_limit = 1;
  Start(true, &so, &co);
  chat_stream* s = OpenQueued(nullptr);  // its queue is never drained
  ASSERT_EQ(Send(s, "n", "hi"), CHAT_OK);
  chat_call* call = nullptr;
  DrainUntil(server_q_, [&](const std::vector<Ev>& evs) {
    for (const auto& e : evs) {
      if (e.type == CHAT_EVENT_OPEN) call = e.call;
    }
    return call != nullptr;
  });
  ASSERT_NE(call, nullptr);
  ASSERT_EQ(chat_call_ref(call), CHAT_OK);
  const std::string big(256 * 1024, 'x');  // a few fill every HTTP/2 window
  chat_code rc;
  int sent = 0;
  // Until the queue stays full for 200 ms: every window to the client is
  // full by then, and the write in flight cannot complete.
  while ((rc = chat_call_send(call, big.data(), big.size(), 200)) == CHAT_OK && sent < 100) ++sent;
  ASSERT_EQ(rc, CHAT_ERR_TIMEOUT) << "sent " << sent;
  ASSERT_EQ(chat_call_fail(call, CHAT_RESOURCE_EXHAUSTED, "too slow", 8), CHAT_OK);
  auto got = DrainUntil(server_q_, [](const std::vector<Ev>& evs) {
    return CountType(evs, CHAT_EVENT_CLOSE) == 1;
  });
  ASSERT_EQ(CountType(got, CHAT_EVENT_CLOSE), 1u) << "the failed call never closed";
  EXPECT_EQ(got.back().code, CHAT_RESOURCE_EXHAUSTED);
  EXPECT_EQ(got.back().text, "too slow");
  chat_call_unref(call);
}
