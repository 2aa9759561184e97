// The built-in echo server and the client, through the C++ core API.
#include <atomic>
#include <map>
#include <thread>

#include "harness.h"

namespace chat::testing {
namespace {

TEST_F(ChatTest, SeedConversation) {
  StartServer();
  auto stream = Open();
  SendSeed(*stream);
  Status end;
  EXPECT_EQ(Drain(*stream, &end), SeedReplies());
  EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
  EXPECT_TRUE(stream->FinalStatus().ok());
}

TEST_F(ChatTest, TenThousandMessagesInOrderWhileReading) {
  StartServer();
  auto stream = Open();
  constexpr int kCount = 10000;
  std::vector<std::string> replies;
  Status end;
  std::thread reader([&] { replies = Drain(*stream, &end); });
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(stream->Send("n", std::to_string(i), 10s).ok());
  }
  ASSERT_TRUE(stream->Complete().ok());
  reader.join();
  EXPECT_EQ(end.code(), Code::kEndOfStream);
  ASSERT_EQ(replies.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(replies[i], "n: " + std::to_string(i));
}

TEST_F(ChatTest, EmptyStreamEndsCleanly) {
  StartServer();
  auto stream = Open();
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  EXPECT_TRUE(Drain(*stream, &end).empty());
  EXPECT_EQ(end.code(), Code::kEndOfStream);
}

TEST_F(ChatTest, ConcurrentSendersKeepTheirOwnOrder) {
  StartServer();
  auto stream = Open();
  constexpr int kThreads = 4, kEach = 500;
  std::vector<std::string> replies;
  Status end;
  std::thread reader([&] { replies = Drain(*stream, &end); });
  std::vector<std::thread> senders;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!stream->Send("t" + std::to_string(t), std::to_string(i), 10s).ok()) ++failures;
      }
    });
  }
  for (auto& s : senders) s.join();
  ASSERT_TRUE(stream->Complete().ok());
  reader.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(end.code(), Code::kEndOfStream);
  ASSERT_EQ(replies.size(), static_cast<size_t>(kThreads * kEach));
  std::map<std::string, int> next;
  for (const auto& r : replies) {
    auto colon = r.find(": ");
    ASSERT_NE(colon, std::string::npos) << r;
    std::string who = r.substr(0, colon);
    ASSERT_EQ(std::stoi(r.substr(colon + 2)), next[who]) << "out of order for " << who;
    ++next[who];
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next["t" + std::to_string(t)], kEach);
}

TEST_F(ChatTest, ManyStreamsOnOneClient) {
  StartServer();
  std::vector<std::shared_ptr<ClientStream>> streams;
  for (int i = 0; i < 50; ++i) streams.push_back(Open());
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(streams[i]->Send("s" + std::to_string(i), "x", 5s).ok());
    ASSERT_TRUE(streams[i]->Complete().ok());
  }
  for (int i = 0; i < 50; ++i) {
    Status end;
    EXPECT_EQ(Drain(*streams[i], &end), std::vector<std::string>{"s" + std::to_string(i) + ": x"});
    EXPECT_EQ(end.code(), Code::kEndOfStream);
  }
}

TEST_F(ChatTest, UnicodeAndEmptyFieldsRoundTrip) {
  StartServer();
  auto stream = Open();
  ASSERT_TRUE(stream->Send("Zoë", "héllo 🌍", 5s).ok());
  ASSERT_TRUE(stream->Send("", "", 5s).ok());
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  EXPECT_EQ(Drain(*stream, &end), (std::vector<std::string>{"Zoë: héllo 🌍", ": "}));
}

// A client that never reads: echo stops reading once its reply queue is
// full, HTTP/2 flow control stops the client's writes, and the client's own
// queue fills: the sender gets WOULD_BLOCK after a bounded number of sends.
TEST_F(ChatTest, ClientThatNeverReadsHitsTheBoundedQueue) {
  ServerOptions so;
  so.send_queue_limit = 16;
  ClientOptions co;
  co.send_queue_limit = 16;
  co.recv_queue_limit = 16;
  StartServer(so, co);
  auto stream = Open();
  int accepted = SendUntilPushedBack(*stream);
  EXPECT_EQ(stream->Send("slow", "x", kNoWait).code(), Code::kWouldBlock);
  // Nothing was lost: reading now drains every accepted message.
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  auto replies = Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kEndOfStream);
  EXPECT_EQ(replies.size(), static_cast<size_t>(accepted));
}

TEST_F(ChatTest, CallsOnAnEndedStreamReturnCodes) {
  StartServer();
  auto stream = Open();
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  Drain(*stream, &end);
  ASSERT_EQ(end.code(), Code::kEndOfStream);
  EXPECT_EQ(stream->Send("a", "b", kNoWait).code(), Code::kClosed);
  EXPECT_TRUE(stream->Complete().ok());  // idempotent
  EXPECT_EQ(stream->Cancel().code(), Code::kClosed);
  std::string reply;
  EXPECT_EQ(stream->Recv(&reply, kNoWait).code(), Code::kEndOfStream);
  EXPECT_TRUE(stream->Wait(kNoWait).ok());
}

TEST_F(ChatTest, SendAfterCompleteIsClosed) {
  StartServer();
  auto stream = Open();
  ASSERT_TRUE(stream->Complete().ok());
  EXPECT_EQ(stream->Send("a", "b", kNoWait).code(), Code::kClosed);
}

TEST_F(ChatTest, BadInputIsRejectedAndTheStreamSurvives) {
  ClientOptions co;
  co.max_message_bytes = 1024;
  StartServer({}, co);
  auto stream = Open();
  EXPECT_EQ(stream->Send("\xff", "x", kNoWait).code(), Code::kBadArgument);
  EXPECT_EQ(stream->Send("x", "\xc3\x28", kNoWait).code(), Code::kBadArgument);
  EXPECT_EQ(stream->Send("x", "\xed\xa0\x80", kNoWait).code(), Code::kBadArgument);  // surrogate
  EXPECT_EQ(stream->Send("x", "\xe2\x82", kNoWait).code(), Code::kBadArgument);  // truncated
  EXPECT_EQ(stream->Send("x", std::string(2000, 'a'), kNoWait).code(), Code::kTooLarge);
  ASSERT_TRUE(stream->Send("ok", "still here", 5s).ok());
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  EXPECT_EQ(Drain(*stream, &end), std::vector<std::string>{"ok: still here"});
}

TEST_F(ChatTest, OversizedMessageFailsTheStreamNotTheServer) {
  ServerOptions so;
  so.max_message_bytes = 1024;
  StartServer(so);
  auto stream = Open();
  ASSERT_TRUE(stream->Send("big", std::string(4096, 'a'), 5s).ok());
  Status end;
  Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kResourceExhausted) << end.message();
  auto again = Open();
  ASSERT_TRUE(again->Send("small", "ok", 5s).ok());
  ASSERT_TRUE(again->Complete().ok());
  EXPECT_EQ(Drain(*again, &end), std::vector<std::string>{"small: ok"});
}

TEST_F(ChatTest, RecvTimesOutWithoutEndingTheStream) {
  StartServer();
  auto stream = Open();
  std::string reply;
  EXPECT_EQ(stream->Recv(&reply, 50ms).code(), Code::kTimeout);
  EXPECT_EQ(stream->Wait(kNoWait).code(), Code::kTimeout);
  EXPECT_EQ(stream->FinalStatus().code(), Code::kBadState);
  ASSERT_TRUE(stream->Send("a", "b", 5s).ok());
  ASSERT_TRUE(stream->Recv(&reply, 5s).ok());
  EXPECT_EQ(reply, "a: b");
}

TEST_F(ChatTest, RecvBatchTakesWhatIsThere) {
  StartServer();
  auto stream = Open();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(stream->Send("b", std::to_string(i), 5s).ok());
  ASSERT_TRUE(stream->Complete().ok());
  std::vector<std::string> all;
  for (;;) {
    std::vector<std::string> batch;
    Status s = stream->RecvBatch(&batch, 4, 5s);
    if (!s.ok()) {
      EXPECT_EQ(s.code(), Code::kEndOfStream);
      break;
    }
    EXPECT_GE(batch.size(), 1u);
    EXPECT_LE(batch.size(), 4u);
    all.insert(all.end(), batch.begin(), batch.end());
  }
  ASSERT_EQ(all.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(all[i], "b: " + std::to_string(i));
}

TEST_F(ChatTest, ClientCancelEndsWithCancelled) {
  StartServer();
  auto stream = Open();
  ASSERT_TRUE(stream->Send("a", "1", 5s).ok());
  std::string reply;
  ASSERT_TRUE(stream->Recv(&reply, 5s).ok());
  ASSERT_TRUE(stream->Cancel().ok());
  EXPECT_TRUE(stream->Cancel().ok());  // idempotent
  Status end;
  Drain(*stream, &end);
  EXPECT_EQ(end.code(), Code::kCancelled);
  EXPECT_EQ(stream->Send("a", "2", kNoWait).code(), Code::kClosed);
  EXPECT_EQ(stream->Complete().code(), Code::kClosed);
}

TEST_F(ChatTest, CancelWakesABlockedReceiver) {
  StartServer();
  auto stream = Open();
  Status end;
  std::thread reader([&] {
    std::string reply;
    end = stream->Recv(&reply, kForever);
  });
  ASSERT_TRUE(stream->Send("a", "1", 5s).ok());  // the reader takes this one
  std::string unused;
  ASSERT_TRUE(stream->Cancel().ok());
  reader.join();
  // Either the reply won the race or the cancel did; both are fine, neither hangs.
  EXPECT_TRUE(end.ok() || end.code() == Code::kCancelled) << end.message();
}

TEST_F(ChatTest, DeadlineExceeded) {
  StartServer();
  StreamOptions so;
  so.deadline = 1s;  // room for the reply to come first on a loaded machine
  auto stream = Open(so);
  ASSERT_TRUE(stream->Send("a", "b", 5s).ok());
  Status end;
  auto replies = Drain(*stream, &end);
  EXPECT_EQ(replies, std::vector<std::string>{"a: b"});
  EXPECT_EQ(end.code(), Code::kDeadlineExceeded);
}

TEST_F(ChatTest, UnreachableServerIsUnavailable) {
  std::unique_ptr<Client> client;
  ASSERT_TRUE(Client::Create("http://127.0.0.1:1", {}, &client).ok());
  std::shared_ptr<ClientStream> stream;
  ASSERT_TRUE(client->Open({}, &stream).ok());
  std::string reply;
  EXPECT_EQ(stream->Recv(&reply, 10s).code(), Code::kUnavailable);
}

TEST_F(ChatTest, ClientTargetsAndMetadataAreValidated) {
  std::unique_ptr<Client> client;
  EXPECT_EQ(Client::Create("", {}, &client).code(), Code::kBadArgument);
  EXPECT_EQ(Client::Create("https://example", {}, &client).code(), Code::kBadArgument);
  ASSERT_TRUE(Client::Create("127.0.0.1:1", {}, &client).ok());
  std::shared_ptr<ClientStream> stream;
  StreamOptions so;
  so.metadata = {{"Bad Key", "v"}};
  EXPECT_EQ(client->Open(so, &stream).code(), Code::kBadArgument);
  so.metadata = {{"grpc-timeout", "1"}};
  EXPECT_EQ(client->Open(so, &stream).code(), Code::kBadArgument);
  so.metadata = {{"key", "line\nbreak"}};
  EXPECT_EQ(client->Open(so, &stream).code(), Code::kBadArgument);
}

TEST_F(ChatTest, AddressInUseIsAnError) {
  StartServer();
  ServerOptions so;
  so.address = "127.0.0.1:" + std::to_string(server_->port());
  std::unique_ptr<Server> second;
  EXPECT_EQ(Server::Start(so, &second).code(), Code::kCannotListen);
  // Malformed is the caller's mistake, not the network's.
  so.address = "not an address";
  EXPECT_EQ(Server::Start(so, &second).code(), Code::kBadArgument);
  so.address = "127.0.0.1:70000";
  EXPECT_EQ(Server::Start(so, &second).code(), Code::kBadArgument);
  EXPECT_EQ(second, nullptr);
}

TEST_F(ChatTest, StopIsIdempotentAndClosesTheDoor) {
  StartServer();
  int cut = -1;
  ASSERT_TRUE(server_->Stop(1s, &cut).ok());
  EXPECT_EQ(cut, 0);
  ASSERT_TRUE(server_->Stop(1s, &cut).ok());
  auto stream = Open();
  std::string reply;
  EXPECT_EQ(stream->Recv(&reply, 10s).code(), Code::kUnavailable);
}

TEST_F(ChatTest, StopWithOnlyAnIdleConnectionReturnsAtOnce) {
  StartServer();
  auto stream = Open();  // connects, then ends: the connection stays, idle
  ASSERT_TRUE(stream->Complete().ok());
  Status end;
  Drain(*stream, &end);
  ASSERT_EQ(end.code(), Code::kEndOfStream);
  auto t0 = std::chrono::steady_clock::now();
  int cut = -1;
  ASSERT_TRUE(server_->Stop(5s, &cut).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);  // not the 5 s grace
  EXPECT_EQ(cut, 0);
}

TEST_F(ChatTest, StreamsOpenedWhileStoppingAreRefusedNotCut) {
  StartServer();
  auto open = Open();
  ASSERT_TRUE(open->Send("o", "1", 5s).ok());
  std::string reply;
  ASSERT_TRUE(open->Recv(&reply, 5s).ok());
  int cut = -1;
  std::thread stopper([&] { server_->Stop(1s, &cut); });
  // Once stopping, a new stream is refused; keep trying until one is.
  Status late_end;
  for (int i = 0; i < 200; ++i) {
    auto late = Open();
    late->Complete();
    std::string r;
    late_end = late->Recv(&r, 5s);
    if (late_end.code() == Code::kUnavailable) break;
  }
  EXPECT_EQ(late_end.code(), Code::kUnavailable) << late_end.message();
  stopper.join();
  EXPECT_EQ(cut, 1);  // only the stream open before the stop
}

TEST_F(ChatTest, StopWithOpenStreamsCutsThemWithinGrace) {
  StartServer();
  std::vector<std::shared_ptr<ClientStream>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(Open());
    ASSERT_TRUE(open.back()->Send("p", std::to_string(i), 5s).ok());
    std::string reply;
    ASSERT_TRUE(open.back()->Recv(&reply, 5s).ok());  // the stream is really open
  }
  // A stream that completes during the grace period is not cut.
  auto finishing = Open();
  ASSERT_TRUE(finishing->Send("f", "x", 5s).ok());
  std::string reply;
  ASSERT_TRUE(finishing->Recv(&reply, 5s).ok());

  auto t0 = std::chrono::steady_clock::now();
  int cut = -1;
  std::thread stopper([&] { server_->Stop(500ms, &cut); });
  ASSERT_TRUE(finishing->Complete().ok());
  stopper.join();
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(cut, 3);
  EXPECT_LT(took, 5s);  // grace plus a wide margin: it must not hang
  for (auto& s : open) {
    Status end;
    Drain(*s, &end);
    EXPECT_TRUE(end.code() == Code::kUnavailable || end.code() == Code::kCancelled)
        << CodeName(end.code()) << " " << end.message();
  }
  Status end;
  Drain(*finishing, &end);
  EXPECT_EQ(end.code(), Code::kEndOfStream);
}

}  // namespace
}  // namespace chat::testing

namespace chat::testing {
namespace {

// Servers and clients come and go in sequence, as in a host that restarts
// its server or reconnects: gRPC's shared callback queue must not be torn
// down and restarted underneath (that aborts gRPC 1.51 now and then).
TEST(Lifecycle, ServersAndClientsComeAndGo) {
  for (int round = 0; round < 60; ++round) {
    std::unique_ptr<Server> server;
    ServerOptions so;
    so.address = "127.0.0.1:0";
    ASSERT_TRUE(Server::Start(so, &server).ok());
    std::unique_ptr<Client> client;
    ASSERT_TRUE(Client::Create("127.0.0.1:" + std::to_string(server->port()), {}, &client).ok());
    std::shared_ptr<ClientStream> stream;
    ASSERT_TRUE(client->Open({}, &stream).ok());
    ASSERT_TRUE(stream->Send("r", std::to_string(round), 5s).ok());
    ASSERT_TRUE(stream->Complete().ok());
    std::string reply;
    ASSERT_TRUE(stream->Recv(&reply, 5s).ok());
    ASSERT_EQ(reply, "r: " + std::to_string(round));
    stream->Close();
    stream.reset();
    client.reset();
    int cut = 0;
    ASSERT_TRUE(server->Stop(0ms, &cut).ok());
  }
}

}  // namespace
}  // namespace chat::testing
