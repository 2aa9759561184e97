// Order per call under any scheduling: a handler that parks its dispatcher
// thread for a few microseconds per message (as an FFI relay to another
// runtime does), a client that pipelines hard, a small receive window so
// reads pause and resume all the time, and the other core kept busy.
#include <time.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include "harness.h"

namespace chat::testing {
namespace {

// Checks the order of on_message per call and answers each message with it.
class SleepyOrderHandler : public Handler {
 public:
  void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view,
                 std::string_view message) override {
    thread_local std::minstd_rand rng{std::random_device{}()};
    timespec ts{0, static_cast<long>(5000 + rng() % 25000)};  // 5..30 us
    nanosleep(&ts, nullptr);
    std::string expected = "m" + std::to_string(NextFor(call->id()));
    if (message != expected && !disorder.exchange(true)) {
      first_disorder = "call " + std::to_string(call->id()) + ": on_message saw " +
                       std::string(message) + ", expected " + expected;
    }
    call->Send(message, kForever);
  }

  std::atomic<bool> disorder{false};
  std::string first_disorder;  // written once, before `disorder` is read true

 private:
  uint64_t NextFor(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    return next_[id]++;
  }
  std::mutex mu_;
  std::map<uint64_t, uint64_t> next_;
};

// Spins on every core but one until destroyed, so the library's threads
// are preempted at awkward moments.
class CpuHog {
 public:
  CpuHog() {
    unsigned n = std::max(1u, std::thread::hardware_concurrency() - 1);
    for (unsigned i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        while (!stop_.load(std::memory_order_relaxed)) {
        }
      });
    }
  }
  ~CpuHog() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

int Runs() {
  const char* env = std::getenv("CHAT_ORDER_RUNS");  // more for a soak
  return env ? std::max(1, std::atoi(env)) : 6;
}

// One stream: sends m0..m(n-1) as fast as the queue takes them and checks
// every reply arrives in order.
std::string PipelineAndCheck(ClientStream& stream, int n) {
  std::string error;
  std::thread reader([&] {
    for (int i = 0; i < n; ++i) {
      std::string reply;
      Status s = stream.Recv(&reply, 20s);
      if (!s.ok()) {
        error = "reply " + std::to_string(i) + ": " + s.message();
        return;
      }
      if (reply != "m" + std::to_string(i)) {
        error = "reply " + std::to_string(i) + ": got " + reply;
        return;
      }
    }
  });
  for (int i = 0; i < n; ++i) {
    Status s = stream.Send("n", "m" + std::to_string(i), 20s);
    if (!s.ok()) {
      stream.Cancel();
      break;
    }
  }
  stream.Complete();
  reader.join();
  return error;
}

class OrderTest : public ChatTest {};

TEST_F(OrderTest, SleepyHandlerKeepsOrderUnderContention) {
  CpuHog hog;
  for (int run = 0; run < Runs(); ++run) {
    auto handler = std::make_shared<SleepyOrderHandler>();
    ServerOptions so;
    so.mode = Mode::kCustom;
    so.handler = handler;
    so.recv_window = 2;  // reads pause and resume on nearly every message
    StartServer(so);
    auto stream = Open();
    std::string error = PipelineAndCheck(*stream, 5000);
    EXPECT_EQ(error, "") << "run " << run;
    EXPECT_FALSE(handler->disorder.load()) << "run " << run << ": " << handler->first_disorder;
    stream->Close();
    int cut = 0;
    ASSERT_TRUE(server_->Stop(1s, &cut).ok());
    if (HasFailure()) break;
  }
}

TEST_F(OrderTest, SeveralStreamsOnTwoDispatchersKeepTheirOwnOrder) {
  CpuHog hog;
  auto handler = std::make_shared<SleepyOrderHandler>();
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = handler;
  so.recv_window = 3;
  so.dispatcher_threads = 2;
  StartServer(so);
  std::vector<std::thread> clients;
  std::vector<std::string> errors(4);
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      auto stream = Open();
      errors[c] = PipelineAndCheck(*stream, 2000);
    });
  }
  for (auto& t : clients) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_FALSE(handler->disorder.load()) << handler->first_disorder;
}

}  // namespace
}  // namespace chat::testing
