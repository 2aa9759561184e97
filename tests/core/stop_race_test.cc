// Stop racing the streams' own completions: no gRPC operation may start on
// a completion queue after it was shut down (gRPC 1.51 asserts in
// grpc_call_start_batch, "grpc_cq_begin_op(cq_, notify_tag)", and aborts).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <vector>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "harness.h"

namespace chat::testing {
namespace {

// Queues more than a peer that does not read lets through, then completes:
// the OK status waits behind a write stuck on HTTP/2 flow control.
class StuckHandler : public Handler {
 public:
  void OnOpen(const std::shared_ptr<ServerCall>& call) override {
    const std::string big(32 * 1024, 'x');
    for (int i = 0; i < 8; ++i) call->Send(big, kNoWait);
    call->Complete();
    {
      std::lock_guard<std::mutex> lock(mu);
      ++completed;
    }
    cv.notify_all();
  }
  void OnMessage(const std::shared_ptr<ServerCall>&, std::string_view, std::string_view) override {}
  bool WaitCompleted(int n, std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return completed >= n; });
  }

  std::mutex mu;
  std::condition_variable cv;
  int completed = 0;
};

// Raw gRPC streams that open and never read. No BDP probing: the stream
// window stays at 64 KiB, so the server's writes get stuck for sure.
class SilentPeers {
 public:
  SilentPeers(int port, int connections, int streams) {
    for (int c = 0; c < connections; ++c) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("test.connection", c);  // one connection each
      stubs_.push_back(std::make_unique<Stub>(grpc::CreateCustomChannel(
          "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args)));
    }
    drain_ = std::thread([this] {
      void* tag;
      bool ok;
      while (cq_.Next(&tag, &ok)) {
      }
    });
    for (int i = 0; i < streams; ++i) {
      auto call = std::make_unique<Call>();
      call->rw = stubs_[i % stubs_.size()]->PrepareCall(&call->ctx, "/Chat/chat", &cq_);
      call->rw->StartCall(call.get());
      calls_.push_back(std::move(call));
    }
  }
  ~SilentPeers() {
    for (auto& call : calls_) {
      call->ctx.TryCancel();
      call->rw->Finish(&call->status, call.get());
    }
    cq_.Shutdown();
    drain_.join();
  }

 private:
  using Stub = grpc::TemplatedGenericStub<grpc::ByteBuffer, grpc::ByteBuffer>;
  struct Call {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> rw;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Stub>> stubs_;
  grpc::CompletionQueue cq_;
  std::thread drain_;
  std::vector<std::unique_ptr<Call>> calls_;  // declared last: freed first
};

// Each round: many streams whose Finish is held back by a stuck write when
// Stop runs. gRPC's shutdown fails those writes, and each failed write
// starts the Finish on the stream's queue thread. If Stop shuts the queue
// down before that thread is through with them, the Finish starts on a
// shut-down queue and the process aborts. New streams keep
// arriving meanwhile, so accepts race the shutdown too. (With the queue's
// thread starved on purpose, hundreds of its completions run after the
// queue's shutdown; none may start an operation.)
TEST(StopRace, NoOperationStartsAfterQueueShutdown) {
  constexpr int kRounds = 2;
  constexpr int kStreams = 400;
  for (int round = 0; round < kRounds; ++round) {
    auto handler = std::make_shared<StuckHandler>();
    ServerOptions so;
    so.mode = Mode::kCustom;
    so.handler = handler;
    so.completion_queues = 1;
    std::unique_ptr<Server> server;
    ASSERT_TRUE(Server::Start(so, &server).ok());
    {
      SilentPeers peers(server->port(), 4, kStreams);
      ASSERT_TRUE(handler->WaitCompleted(kStreams, std::chrono::seconds(30)));
      int cut = -1;
      std::atomic<bool> stopped{false};
      std::thread flood([&] {
        std::vector<std::unique_ptr<SilentPeers>> more;
        while (!stopped.load() && more.size() < 200) {
          more.push_back(std::make_unique<SilentPeers>(server->port(), 1, 20));
        }
      });
      ASSERT_TRUE(server->Stop(Timeout::zero(), &cut).ok());  // aborts on the bug
      stopped = true;
      flood.join();
      // The completed streams whose writes were stuck are cut by the stop
      // (with the streams of the flood it admitted before it began), not
      // left for gRPC's shutdown to cancel after the flush second.
      EXPECT_GE(cut, kStreams);
    }
  }
}

// Counts what the handler sees and never ends a stream itself.
class CountingHandler : public Handler {
 public:
  void OnOpen(const std::shared_ptr<ServerCall>&) override { ++opens; }
  void OnMessage(const std::shared_ptr<ServerCall>&, std::string_view, std::string_view) override {}
  void OnComplete(const std::shared_ptr<ServerCall>&) override {}
  void OnClose(const std::shared_ptr<ServerCall>&, const Status& status) override {
    ++closes;
    if (status.code() == Code::kUnavailable) ++unavailable;
  }
  std::atomic<int> opens{0}, closes{0}, unavailable{0};
};

// Streams keep arriving while Stop runs. Each one is either refused before
// the handler sees it, or open when the stop cuts what is left and so
// counted in `cut` and closed UNAVAILABLE: none may slip in between and be
// ended by gRPC's shutdown instead, unseen by the count.
TEST(StopRace, EveryStreamTheHandlerSawIsCutByTheStop) {
  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    auto handler = std::make_shared<CountingHandler>();
    ServerOptions so;
    so.mode = Mode::kCustom;
    so.handler = handler;
    std::unique_ptr<Server> server;
    ASSERT_TRUE(Server::Start(so, &server).ok());
    std::atomic<bool> stopped{false};
    std::vector<std::unique_ptr<SilentPeers>> peers;  // outlive the stop
    std::thread flood([&] {
      while (!stopped.load() && peers.size() < 300) {
        peers.push_back(std::make_unique<SilentPeers>(server->port(), 1, 10));
      }
    });
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (handler->opens.load() < 50 && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
    int opened = handler->opens.load();
    int cut = -1;
    Status stop = server->Stop(Timeout::zero(), &cut);
    stopped = true;
    flood.join();  // before any ASSERT returns: a joinable thread's destructor aborts
    ASSERT_GE(opened, 50) << "round " << round;
    ASSERT_TRUE(stop.ok()) << stop.message();
    // Stop returns once every handler event ran.
    EXPECT_EQ(cut, handler->opens.load()) << "round " << round;
    EXPECT_EQ(handler->closes.load(), handler->opens.load()) << "round " << round;
    EXPECT_EQ(handler->unavailable.load(), handler->opens.load()) << "round " << round;
    peers.clear();
  }
}


// Raw gRPC streams to the discovery services (health, reflection), opened
// one after another on a queue of their own: each sends one request and
// waits for the first reply, then stays open (the server holds a read or a
// watch for it) until the peers are destroyed.
class DiscoveryPeers {
 public:
  static constexpr char kReflection[] =
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
  static constexpr char kWatch[] = "/grpc.health.v1.Health/Watch";
  static constexpr char kCheck[] = "/grpc.health.v1.Health/Check";

  DiscoveryPeers(int port, int connections) {
    for (int c = 0; c < connections; ++c) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("test.connection", c);  // one connection each
      stubs_.push_back(std::make_unique<Stub>(grpc::CreateCustomChannel(
          "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args)));
    }
  }
  ~DiscoveryPeers() {
    for (auto& call : calls_) {
      call->ctx.TryCancel();
      call->rw->Finish(&call->status, call.get());
    }
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  // Opens a stream on `method`, sends `request` (then half-closes, for the
  // health methods, as their clients do) and, when `await_reply`, waits for
  // the first reply. False when the server did not answer (it stops).
  bool Open(const char* method, const std::string& request, bool await_reply) {
    auto call = std::make_unique<Call>();
    call->rw = stubs_[calls_.size() % stubs_.size()]->PrepareCall(&call->ctx, method, &cq_);
    Call* c = call.get();
    calls_.push_back(std::move(call));
    c->rw->StartCall(c);  // its batch is the writes': they wait for it
    if (!Wait(1)) return false;
    grpc::Slice slice(request);
    if (method == std::string(kReflection)) {
      c->rw->Write(grpc::ByteBuffer(&slice, 1), c);
    } else {
      c->rw->WriteLast(grpc::ByteBuffer(&slice, 1), grpc::WriteOptions(), c);
    }
    if (!await_reply) return Wait(1);
    c->rw->Read(&c->reply, c);
    return Wait(2);
  }

 private:
  // Waits for `ops` completions (a call's, whatever their order); false if
  // one failed or did not come within 10 s (the destructor cancels it).
  bool Wait(int ops) {
    bool all_ok = true;
    for (; ops > 0; --ops) {
      void* tag;
      bool ok;
      if (cq_.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + std::chrono::seconds(10)) !=
          grpc::CompletionQueue::GOT_EVENT) {
        return false;
      }
      all_ok = all_ok && ok;
    }
    return all_ok;
  }

  using Stub = grpc::TemplatedGenericStub<grpc::ByteBuffer, grpc::ByteBuffer>;
  struct Call {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> rw;
    grpc::ByteBuffer reply;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Stub>> stubs_;
  grpc::CompletionQueue cq_;
  std::vector<std::unique_ptr<Call>> calls_;
};

// ServerReflectionRequest{list_services: ""}; HealthCheckRequest{} (the
// server as a whole).
const std::string kListServices("\x3a\x00", 2);
const std::string kHealthRequest;

// The health and reflection calls, as the streams, run on the first queue
// and start operations from their completions: a reflection stream's read
// that gRPC's shutdown fails starts the Finish, an accept that came just
// before the shutdown starts a read, a write or a Finish. Stop must not
// shut that queue down before they are all through (the process aborts in
// grpc_call_start_batch, "grpc_cq_begin_op(cq_, notify_tag)", as
// StopRace.NoOperationStartsAfterQueueShutdown says). Hundreds of open
// reflection streams and watches make the queue's thread busy with their
// failed reads after the shutdown; a flood of new calls races the accepts.
TEST(StopRace, DiscoveryCallsEndBeforeTheirQueueShutsDown) {
  constexpr int kRounds = 3;
  constexpr int kReflectionStreams = 300;
  constexpr int kWatches = 100;
  for (int round = 0; round < kRounds; ++round) {
    ServerOptions so;
    so.completion_queues = 1;
    so.health = true;
    so.reflection = true;
    std::unique_ptr<Server> server;
    ASSERT_TRUE(Server::Start(so, &server).ok());
    DiscoveryPeers peers(server->port(), 4);
    for (int i = 0; i < kReflectionStreams; ++i) {
      ASSERT_TRUE(peers.Open(DiscoveryPeers::kReflection, kListServices, true)) << i;
    }
    for (int i = 0; i < kWatches; ++i) {
      ASSERT_TRUE(peers.Open(DiscoveryPeers::kWatch, kHealthRequest, true)) << i;
    }
    std::atomic<bool> stopped{false};
    std::thread flood([&] {
      DiscoveryPeers more(server->port(), 2);
      for (int i = 0; !stopped.load() && i < 3000; ++i) {
        const char* method = i % 3 == 0   ? DiscoveryPeers::kReflection
                             : i % 3 == 1 ? DiscoveryPeers::kWatch
                                          : DiscoveryPeers::kCheck;
        if (!more.Open(method, i % 3 == 0 ? kListServices : kHealthRequest, false)) break;
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    int cut = -1;
    Status stop = server->Stop(Timeout::zero(), &cut);  // aborts on the bug
    stopped = true;
    flood.join();
    ASSERT_TRUE(stop.ok()) << stop.message();
    EXPECT_EQ(cut, 0);  // no chat stream was open
  }
}

}  // namespace
}  // namespace chat::testing
