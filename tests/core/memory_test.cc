// Every queue is bounded in bytes as well as in count, and a server bounds
// what all its streams hold together.
#include <malloc.h>

#include <stdexcept>
#include <thread>

#include "harness.h"

namespace chat::testing {
namespace {

constexpr size_t kMiB = 1u << 20;

// An echo client that never reads 1 MiB replies: with counts alone (1024
// per queue) the server would hold about a gigabyte; with 2 MiB budgets on
// each of the four queues, plus HTTP/2 windows, the sender is pushed back
// after a handful of messages. Nothing is lost.
TEST_F(ChatTest, ByteBudgetsPushBackOnBigMessages) {
  ServerOptions so;
  so.send_queue_bytes = 2 * kMiB;
  ClientOptions co;
  co.send_queue_bytes = 2 * kMiB;
  co.recv_queue_bytes = 2 * kMiB;
  StartServer(so, co);
  auto stream = Open();
  int accepted = SendUntilPushedBack(*stream, kMiB, 200);
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, 40) << "the byte budgets did not push back";
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  auto replies = Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kEndOfStream);
  EXPECT_EQ(replies.size(), static_cast<size_t>(accepted));
}

// One message larger than a whole budget still passes: an empty queue
// takes any message up to max_message_bytes.
TEST_F(ChatTest, AMessageLargerThanTheBudgetStillPasses) {
  ServerOptions so;
  so.send_queue_bytes = 1024;
  ClientOptions co;
  co.send_queue_bytes = 1024;
  co.recv_queue_bytes = 1024;
  StartServer(so, co);
  auto stream = Open();
  const std::string big(256 * 1024, 'x');
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(stream->Send("n", big, 5s).ok());
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  auto replies = Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kEndOfStream);
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[2], "n: " + big);
}

// A handler that holds messages (all, or those named "hold") until the
// gate opens.
class GatedHandler : public Handler {
 public:
  void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view name,
                 std::string_view) override {
    if (!only_named_hold || name == "hold") gate.Wait(20s);
    call->Send(std::string(name), kForever);
  }
  Gate gate;
  bool only_named_hold = false;
};

// The server's bound: a custom handler that does not keep up lets messages
// pile up in the receive window (8 MiB per stream by default); with a 3 MiB
// bound the server stops reading and refuses new streams with
// RESOURCE_EXHAUSTED, and recovers once the handler catches up.
TEST_F(ChatTest, ServerMemoryBoundRefusesNewStreamsUntilMemoryIsReleased) {
  auto handler = std::make_shared<GatedHandler>();
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = handler;
  so.max_memory_bytes = 3 * kMiB;
  StartServer(so);
  auto heavy = Open();
  int accepted = SendUntilPushedBack(*heavy, kMiB, 200);
  EXPECT_LT(accepted, 40) << "the server's bound did not stop reading";

  // Over the bound: a new stream is refused at once.
  auto refused = Open();
  refused->Send("Sam", "Hi", kNoWait);  // may already see the refusal
  std::string reply;
  Status s = refused->Recv(&reply, 10s);
  EXPECT_EQ(s.code(), Code::kResourceExhausted) << s.message();

  // The handler catches up: memory is released, reads resume, and new
  // streams are served again.
  handler->gate.Open();
  ASSERT_TRUE(heavy->Complete().ok());
  Status end;
  auto replies = Drain(*heavy, &end);
  EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
  EXPECT_EQ(replies.size(), static_cast<size_t>(accepted));
  auto fresh = Open();
  ASSERT_TRUE(fresh->Send("Ann", "Hey", 5s).ok());
  ASSERT_TRUE(fresh->Complete().ok());
  EXPECT_EQ(Drain(*fresh, &end), std::vector<std::string>{"Ann"});
  EXPECT_EQ(end.code(), Code::kEndOfStream);
}

// Several streams paused by the server's bound all resume when memory is
// released, not just the one that released it.
TEST_F(ChatTest, EveryStreamPausedByTheServerBoundResumes) {
  auto handler = std::make_shared<GatedHandler>();
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = handler;
  so.max_memory_bytes = 2 * kMiB;
  so.dispatcher_threads = 2;
  ClientOptions co;
  co.send_queue_bytes = 512 * 1024;
  StartServer(so, co);
  constexpr int kStreams = 4, kMaxMessages = 400;
  std::vector<std::shared_ptr<ClientStream>> streams;
  for (int i = 0; i < kStreams; ++i) streams.push_back(Open());
  // Every stream is admitted before memory fills up.
  for (auto& st : streams) ASSERT_TRUE(st->Send("warm", "", 5s).ok());
  const std::string payload(256 * 1024, 'm');
  EventLog pushed_back;
  std::vector<std::thread> senders;
  std::vector<int> sent(kStreams, 0);
  for (int k = 0; k < kStreams; ++k) {
    // Each sends until it is held up (HTTP/2 windows take several MiB
    // first), then once more, which must go through once memory is freed.
    senders.emplace_back([&, k] {
      auto& st = streams[k];
      for (int i = 0; i < kMaxMessages; ++i) {
        Status s = st->Send("m", payload, std::chrono::milliseconds(300));
        if (s.code() == Code::kTimeout) {
          pushed_back.Add("pushed back");
          if (st->Send("m", payload, 20s).ok()) ++sent[k];
          break;
        }
        if (!s.ok()) break;
        ++sent[k];
      }
      st->Complete();
    });
  }
  // Every sender is held up by the server's bound before the handler runs.
  EXPECT_TRUE(pushed_back.WaitForCount(kStreams, 20s));
  handler->gate.Open();
  for (auto& t : senders) t.join();
  for (int k = 0; k < kStreams; ++k) {
    Status end;
    auto replies = Drain(*streams[k], &end);
    EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
    EXPECT_LT(sent[k], kMaxMessages) << "stream " << k << " was never held up";
    EXPECT_EQ(replies.size(), static_cast<size_t>(sent[k] + 1));  // + the warm-up
  }
}

// Probes with new streams until one is refused for memory (or 10 s pass).
bool WaitUntilOverBoundWith(Client& client) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::shared_ptr<ClientStream> probe;
    if (!client.Open({}, &probe).ok()) return false;
    // A refusal comes at once; an admitted probe may sit behind the held
    // handler, so it is not waited for.
    std::string reply;
    Status s = probe->Recv(&reply, 200ms);
    probe->Close();
    if (s.code() == Code::kResourceExhausted) return true;
  }
  return false;
}

// A stream with nothing of its own queued, paused only because another
// stream holds the server's memory, is resumed when that memory is freed.
TEST_F(ChatTest, AStreamPausedByAnotherStreamsMemoryResumes) {
  auto handler = std::make_shared<GatedHandler>();
  handler->only_named_hold = true;
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = handler;
  so.max_memory_bytes = 2 * kMiB;
  so.dispatcher_threads = 2;  // call 1 (held) and call 2 (free) on different threads
  StartServer(so);
  auto holder = Open();
  auto other = Open();
  ASSERT_TRUE(other->Send("free", "0", 5s).ok());
  std::string reply;
  ASSERT_TRUE(other->Recv(&reply, 5s).ok());  // both streams are admitted
  const std::string payload(512 * 1024, 'h');
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(holder->Send("hold", payload, 5s).ok());
  ASSERT_TRUE(WaitUntilOverBoundWith(*client_)) << "the held messages never filled the server's memory";
  // "free" messages are answered one by one at most until the held memory
  // is released.
  ASSERT_TRUE(other->Send("free", "1", 5s).ok());
  ASSERT_TRUE(other->Send("free", "2", 5s).ok());
  ASSERT_TRUE(other->Complete().ok());
  handler->gate.Open();
  Status end;
  auto replies = Drain(*other, &end, 10s);
  EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
  EXPECT_EQ(replies.size(), 2u);
  ASSERT_TRUE(holder->Complete().ok());
  EXPECT_EQ(Drain(*holder, &end).size(), 6u);
  EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
}

class ThrowingHandler : public Handler {
 public:
  void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view name,
                 std::string_view) override {
    if (name == "boom") throw std::runtime_error("handler bug");
    call->Send(std::string(name), 5s);
  }
};

// A handler that throws (a bug, logged) must not leave its message's bytes
// charged: the server would stay over its bound and refuse everyone.
TEST_F(ChatTest, AThrowingHandlerReleasesItsMessagesMemory) {
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = std::make_shared<ThrowingHandler>();
  so.max_memory_bytes = kMiB;
  StartServer(so);
  auto bad = Open();
  ASSERT_TRUE(bad->Send("boom", std::string(kMiB, 'x'), 5s).ok());
  ASSERT_TRUE(bad->Complete().ok());
  std::string reply;
  Status end = bad->Recv(&reply, 5s);  // the half-close is still read
  EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
  auto fresh = Open();
  ASSERT_TRUE(fresh->Send("Ann", "Hey", 5s).ok());
  Status s = fresh->Recv(&reply, 5s);
  EXPECT_TRUE(s.ok()) << CodeName(s.code()) << ": " << s.message();
}

// A handler holding a message keeps the server over its bound while it
// pushes replies to another stream that is paused by the bound: that
// stream must wait for memory once, not once per reply written (each wait
// is a callback kept until memory is released).
TEST_F(ChatTest, AStreamPausedByTheBoundWaitsForMemoryOnce) {
  class Holding : public Handler {
   public:
    void OnOpen(const std::shared_ptr<ServerCall>& call) override {
      std::lock_guard<std::mutex> lock(mu);
      if (call->metadata().count("pushed")) pushed = call;
    }
    void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view name,
                   std::string_view) override {
      if (name == "hold") gate.Wait(60s);
      call->Send(std::string(name), 5s);
    }
    std::mutex mu;
    std::shared_ptr<ServerCall> pushed;
    Gate gate;
  };
  auto handler = std::make_shared<Holding>();
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = handler;
  so.max_memory_bytes = kMiB;
  so.dispatcher_threads = 2;
  StartServer(so);
  auto holder = Open();
  StreamOptions po;
  po.metadata = {{"pushed", "1"}};
  auto pushed = Open(po);
  std::string reply;
  ASSERT_TRUE(pushed->Send("free", "0", 5s).ok());
  ASSERT_TRUE(pushed->Recv(&reply, 5s).ok());
  ASSERT_TRUE(holder->Send("hold", std::string(kMiB, 'h'), 5s).ok());
  ASSERT_TRUE(WaitUntilOverBoundWith(*client_));
  ASSERT_TRUE(pushed->Send("free", "1", 5s).ok());  // read, then its next read waits
  ASSERT_TRUE(pushed->Recv(&reply, 5s).ok());
  std::shared_ptr<ServerCall> call;
  {
    std::lock_guard<std::mutex> lock(handler->mu);
    call = handler->pushed;
  }
  ASSERT_TRUE(call);
  constexpr int kPushes = 50000;
  std::thread reader([&] {
    std::string r;
    for (int i = 0; i < kPushes; ++i) {
      if (!pushed->Recv(&r, 10s).ok()) return;
    }
  });
  auto heap = [] {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
  };
  size_t before = heap();
  for (int i = 0; i < kPushes; ++i) ASSERT_TRUE(call->Send("n", 10s).ok());
  reader.join();
  size_t after = heap();
  EXPECT_LT(after > before ? after - before : 0, kMiB) << "a wait registered per write";
  handler->gate.Open();
  ASSERT_TRUE(holder->Recv(&reply, 10s).ok());
  ASSERT_TRUE(pushed->Send("free", "2", 5s).ok());
  ASSERT_TRUE(pushed->Recv(&reply, 10s).ok());
  EXPECT_EQ(reply, "free");
}

// An echo server over its bound because of clients that never read cuts
// the one holding the most replies (RESOURCE_EXHAUSTED), like a room cuts a
// slow member, so clients that do read keep being served.
TEST_F(ChatTest, OverTheBoundAnEchoServerCutsItsSlowestReader) {
  ServerOptions so;
  so.max_memory_bytes = 4 * kMiB;
  so.send_queue_bytes = 2 * kMiB;
  ClientOptions co;
  co.recv_queue_bytes = 256 * 1024;
  StartServer(so, co);
  constexpr int kSlow = 4;
  std::vector<std::shared_ptr<ClientStream>> slow;
  std::vector<std::thread> senders;
  const std::string payload(256 * 1024, 's');
  for (int i = 0; i < kSlow; ++i) slow.push_back(Open());
  for (auto& st : slow) {
    senders.emplace_back([&st, &payload] {
      for (int i = 0; i < 200; ++i) {
        if (!st->Send("slow", payload, 2s).ok()) return;  // pushed back, or cut
      }
    });
  }
  for (auto& t : senders) t.join();
  // The slow readers filled the server; a reading client is still served.
  for (int round = 0; round < 3; ++round) {
    auto fast = Open();
    SendSeed(*fast);
    Status end;
    EXPECT_EQ(Drain(*fast, &end), SeedReplies()) << "round " << round;
    EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
  }
  // And some slow readers, not all, were cut: reading them now, a cut one
  // ends after the replies it had, CANCELLED when the server reset it under
  // a stuck write, RESOURCE_EXHAUSTED when the cut found no write in flight
  // (a reply waiting for its round's end) and the status could go out; the
  // others end OK after every echo.
  int cut = 0;
  for (auto& st : slow) {
    st->Complete();
    Status end;
    Drain(*st, &end);
    if (end.code() == Code::kCancelled || end.code() == Code::kResourceExhausted) ++cut;
    else EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
  }
  EXPECT_GE(cut, 1);
  EXPECT_LT(cut, kSlow) << "every slow reader was cut, not just the slowest";
}

}  // namespace
}  // namespace chat::testing
