// Custom handlers (host logic on dispatcher threads) and broadcast.
#include <atomic>
#include <thread>

#include "harness.h"

namespace chat::testing {
namespace {

// Records every event and answers like the seed, but in upper case, so the
// test can tell it apart from the built-in echo.
class RecordingHandler : public Handler {
 public:
  void OnOpen(const std::shared_ptr<ServerCall>& call) override {
    auto it = call->metadata().find("user");
    log.Add("open " + std::to_string(call->id()) + " user=" +
            (it == call->metadata().end() ? "-" : it->second));
    if (greet) call->Send("welcome", kNoWait);
    open_thread = std::this_thread::get_id();
  }
  void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view name,
                 std::string_view message) override {
    log.Add("message " + std::string(name) + " " + std::string(message));
    std::string upper(message);
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    call->Send(std::string(name) + ": " + upper, 5s);
    if (gate) gate->Wait();
  }
  void OnComplete(const std::shared_ptr<ServerCall>& call) override {
    log.Add("complete");
    if (complete_with_failure) {
      call->Fail(Code::kPermissionDenied, "not today");
    } else {
      call->Complete();
    }
  }
  void OnClose(const std::shared_ptr<ServerCall>& call, const Status& status) override {
    closed_call = call;  // before the log entry the test waits on
    log.Add(std::string("close ") + CodeName(status.code()));
  }

  EventLog log;
  bool greet = false;
  bool complete_with_failure = false;
  Gate* gate = nullptr;
  std::thread::id open_thread;
  std::shared_ptr<ServerCall> closed_call;
};

class HandlerTest : public ChatTest {
 protected:
  void StartWith(std::shared_ptr<RecordingHandler> handler, ServerOptions so = {},
                 ClientOptions co = {}) {
    handler_ = std::move(handler);
    so.mode = Mode::kCustom;
    so.handler = handler_;
    StartServer(so, co);
  }
  std::shared_ptr<RecordingHandler> handler_;
};

TEST_F(HandlerTest, EventsArriveInOrderOnADispatcherThread) {
  StartWith(std::make_shared<RecordingHandler>());
  StreamOptions so;
  so.metadata = {{"user", "alice"}};
  auto stream = Open(so);
  ASSERT_TRUE(stream->Send("Sam", "Hi", 5s).ok());
  ASSERT_TRUE(stream->Send("Ann", "Hey", 5s).ok());
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  EXPECT_EQ(Drain(*stream, &end), (std::vector<std::string>{"Sam: HI", "Ann: HEY"}));
  EXPECT_EQ(end.code(), Code::kEndOfStream);
  ASSERT_TRUE(handler_->log.WaitFor("close OK"));
  EXPECT_EQ(handler_->log.Snapshot(),
            (std::vector<std::string>{"open 1 user=alice", "message Sam Hi", "message Ann Hey",
                                      "complete", "close OK"}));
  EXPECT_NE(handler_->open_thread, std::this_thread::get_id());
  // The call outlives the stream as a handle; using it is an error, not a crash.
  EXPECT_TRUE(handler_->closed_call->ended());
  EXPECT_EQ(handler_->closed_call->Send("late", kNoWait).code(), Code::kClosed);
  EXPECT_EQ(handler_->closed_call->Fail(Code::kInternal, "x").code(), Code::kClosed);
}

TEST_F(HandlerTest, ServerSendsBeforeReading) {
  auto handler = std::make_shared<RecordingHandler>();
  handler->greet = true;
  StartWith(handler);
  auto stream = Open();
  std::string reply;
  ASSERT_TRUE(stream->Recv(&reply, 5s).ok());  // nothing sent yet
  EXPECT_EQ(reply, "welcome");
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  EXPECT_TRUE(Drain(*stream, &end).empty());
  EXPECT_EQ(end.code(), Code::kEndOfStream);
}

TEST_F(HandlerTest, FailReachesTheClientWithCodeAndDetails) {
  auto handler = std::make_shared<RecordingHandler>();
  handler->complete_with_failure = true;
  StartWith(handler);
  auto stream = Open();
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kPermissionDenied);
  EXPECT_EQ(end.message(), "not today");
  ASSERT_TRUE(handler->log.WaitFor("close PERMISSION_DENIED"));
}

TEST_F(HandlerTest, ClientCancelIsSeenByTheHandler) {
  StartWith(std::make_shared<RecordingHandler>());
  auto stream = Open();
  ASSERT_TRUE(stream->Send("a", "b", 5s).ok());
  std::string reply;
  ASSERT_TRUE(stream->Recv(&reply, 5s).ok());
  ASSERT_TRUE(stream->Cancel().ok());
  ASSERT_TRUE(handler_->log.WaitFor("close CANCELLED"));
  Status end;
  Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kCancelled);
}

TEST_F(HandlerTest, DeadlineIsSeenByBothSides) {
  StartWith(std::make_shared<RecordingHandler>());
  StreamOptions so;
  so.deadline = 200ms;
  auto stream = Open(so);
  Status end;
  Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kDeadlineExceeded);
  ASSERT_TRUE(handler_->log.WaitUntil([](const std::vector<std::string>& e) {
    return !e.empty() && (e.back() == "close DEADLINE_EXCEEDED" || e.back() == "close CANCELLED");
  }));
}

// A slow handler: the server stops reading after recv_window messages, the
// client's queue fills and its sender gets WOULD_BLOCK; once the handler
// resumes, every accepted message arrives (nothing lost).
TEST_F(HandlerTest, SlowHandlerPushesBackOnTheClient) {
  Gate gate;
  auto handler = std::make_shared<RecordingHandler>();
  handler->gate = &gate;
  ServerOptions so;
  so.recv_window = 4;
  ClientOptions co;
  co.send_queue_limit = 8;
  StartWith(handler, so, co);
  auto stream = Open();
  int accepted = SendUntilPushedBack(*stream);
  gate.Open();
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  auto replies = Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kEndOfStream);
  EXPECT_EQ(replies.size(), static_cast<size_t>(accepted));
}

class StopFromHandler : public Handler {
 public:
  void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view, std::string_view) override {
    int cut = 0;
    result = server->Stop(0ms, &cut);
    log.Add("stopped");
    call->Complete();
  }
  Server* server = nullptr;
  Status result;
  EventLog log;
};

TEST_F(ChatTest, StopFromInsideAHandlerIsRefused) {
  auto handler = std::make_shared<StopFromHandler>();
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = handler;
  StartServer(so);
  handler->server = server_.get();
  auto stream = Open();
  ASSERT_TRUE(stream->Send("a", "b", 5s).ok());
  ASSERT_TRUE(handler->log.WaitFor("stopped"));
  EXPECT_EQ(handler->result.code(), Code::kBusy);
}

TEST_F(ChatTest, CustomModeNeedsAHandler) {
  ServerOptions so;
  so.mode = Mode::kCustom;
  std::unique_ptr<Server> server;
  EXPECT_EQ(Server::Start(so, &server).code(), Code::kBadArgument);
}

TEST_F(ChatTest, BroadcastReachesEveryStreamAndAnnouncesLeavers) {
  ServerOptions so;
  so.mode = Mode::kBroadcast;
  StartServer(so);
  auto a = Open(), b = Open(), c = Open();
  // Each says hello; once everyone has seen all three, the room is complete.
  ASSERT_TRUE(a->Send("A", "hello", 5s).ok());
  ASSERT_TRUE(b->Send("B", "hello", 5s).ok());
  ASSERT_TRUE(c->Send("C", "hello", 5s).ok());
  // Until every stream is registered, early hellos may miss late joiners,
  // so wait for each stream's own hello, then talk.
  auto wait_for = [](ClientStream& s, const std::string& line) {
    std::string reply;
    while (s.Recv(&reply, 5s).ok()) {
      if (reply == line) return true;
    }
    return false;
  };
  ASSERT_TRUE(wait_for(*a, "A: hello"));
  ASSERT_TRUE(wait_for(*b, "B: hello"));
  ASSERT_TRUE(wait_for(*c, "C: hello"));
  ASSERT_TRUE(a->Send("A", "ping", 5s).ok());
  for (auto* s : {a.get(), b.get(), c.get()}) ASSERT_TRUE(wait_for(*s, "A: ping"));
  ASSERT_TRUE(c->Complete().ok());
  Status end;
  Drain(*c, &end);
  EXPECT_EQ(end.code(), Code::kEndOfStream);
  ASSERT_TRUE(wait_for(*a, "C left the chat"));
  ASSERT_TRUE(wait_for(*b, "C left the chat"));
}

TEST_F(ChatTest, BroadcastWithOneClientEqualsEcho) {
  ServerOptions so;
  so.mode = Mode::kBroadcast;
  StartServer(so);
  auto stream = Open();
  SendSeed(*stream);
  Status end;
  EXPECT_EQ(Drain(*stream, &end), SeedReplies());
  EXPECT_EQ(end.code(), Code::kEndOfStream);
}

TEST_F(ChatTest, BroadcastCutsAMemberThatNeverReads) {
  ServerOptions so;
  so.mode = Mode::kBroadcast;
  so.send_queue_limit = 8;
  ClientOptions co;
  co.recv_queue_limit = 4;
  StartServer(so, co);
  auto talker = Open(), sleeper = Open();
  std::string reply;
  // The talker is in the room once it hears its own hello; then it hears
  // Zed's, which the sleeper can only send from inside the room.
  ASSERT_TRUE(talker->Send("T", "hello", 5s).ok());
  ASSERT_TRUE(talker->Recv(&reply, 5s).ok());
  ASSERT_EQ(reply, "T: hello");
  ASSERT_TRUE(sleeper->Send("Zed", "here", 5s).ok());
  while (talker->Recv(&reply, 5s).ok() && reply != "Zed: here") {}
  ASSERT_EQ(reply, "Zed: here");
  // The talker waits for each of its own lines before the next one, so it
  // keeps up with the room; only the sleeper falls behind.
  const std::string payload(8192, 'x');
  bool zed_left = false;
  for (int i = 0; i < 20000 && !zed_left; ++i) {
    ASSERT_TRUE(talker->Send("T", payload, 5s).ok());
    while (talker->Recv(&reply, 5s).ok()) {
      if (reply == "Zed left the chat") zed_left = true;
      if (reply.rfind("T: ", 0) == 0) break;
    }
  }
  EXPECT_TRUE(zed_left);
  // The sleeper was reset: it reads what it had buffered, then CANCELLED.
  Status end;
  Drain(*sleeper, &end);
  EXPECT_EQ(end.code(), Code::kCancelled) << end.message();
}

}  // namespace
}  // namespace chat::testing
