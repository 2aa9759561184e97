// bench_grpc_client: the raw-gRPC baseline client, written on gRPC C++'s
// callback API the way the gRPC examples are: one ClientBidiReactor per
// stream, one write in flight, the next write started from OnWriteDone
// (never batched, no buffer hint), reads chained from OnReadDone. It also
// opens the 10,000 idle streams for the server memory measurement.
//
//   bench_grpc_client --target HOST:PORT --workload single|pingpong|streams|idle
//                     [--messages N] [--streams S] [--channels C] [--checkpoint K]
//                     [--timeout-s T] [--sync]
//
// Every reply is checked against "bench: <message>" in order. Prints one JSON
// line with the result. Exit codes: 0 ok, 1 wrong reply or failed RPC,
// 2 usage, 3 timed out. With --sync it prints {"sync": "start"} just before
// its clock starts and {"sync": "stop"} once every measured stream has ended,
// and each time waits for a line on stdin (the driver reads the server's CPU
// time then).
//
// idle: opens S streams (spread over C connections), sends one message on
// each and waits for its reply, prints {"ready": true, "streams": S}, then
// waits for a line (or EOF) on stdin before half-closing every stream and
// checking they end OK. With --checkpoint K it first stops the same way once
// K streams are open, so the driver can see how the server grows with them.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench_util.h"
#include "chat.grpc.pb.h"

namespace {

using google::protobuf::StringValue;

// What every stream of one run reports to the main thread.
struct Shared {
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0;      // streams whose OnDone ran
  size_t confirmed = 0; // streams that got the replies they were let send
  std::string error;    // first failure
  int64_t last_reply_ns = 0;

  void Fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    if (error.empty()) error = what;
    cv.notify_all();
  }
};

// One /Chat/chat stream. It may send `total` messages, but only the first
// `allowed` until Allow() raises the limit (the streams workload confirms
// every stream before timing starts); in ping-pong each reply allows the
// next message. A hold keeps OnDone away until the main thread's last
// Allow(), since that starts operations from outside a reaction.
class Stream final : public grpc::ClientBidiReactor<ChatMessage, StringValue> {
 public:
  Stream(Shared* shared, uint64_t total, bool pingpong, bool record_rtt)
      : shared_(shared), total_(total), pingpong_(pingpong), record_rtt_(record_rtt) {
    if (record_rtt) rtt_us_.reserve(total);
  }

  void Start(Chat::Stub* stub, uint64_t allowed) {
    stub->async()->chat(&ctx_, this);
    AddHold();
    Next next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      allowed_ = std::min(allowed, total_);
      send_ns_ = bench_now_ns();
      next = NextLocked();
    }
    Do(next);
    StartRead(&in_);
    StartCall();
  }

  // Raises the send limit to `allowed` and, with `half_close`, half-closes
  // after the last message. Must be called exactly once, from the main thread.
  void Allow(uint64_t allowed, bool half_close) {
    Next next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      allowed_ = std::max(allowed_, std::min(allowed, total_));
      half_close_ = half_close;
      next = NextLocked();
    }
    Do(next);
    RemoveHold();
  }

  void Cancel() { ctx_.TryCancel(); }

  const std::vector<double>& rtt_us() const { return rtt_us_; }

  void OnWriteDone(bool ok) override {
    Next next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) return;  // the call broke; OnDone reports the status
      ++written_;
      next = NextLocked();
    }
    Do(next);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // server finished; OnDone follows
    int64_t now = bench_now_ns();
    const std::string& text = in_.value();
    bool bad = false, confirmed = false, last = false;
    uint64_t index;
    Next next = Next::kNothing;
    {
      std::lock_guard<std::mutex> lock(mu_);
      index = read_;
      if (read_ >= total_ || !bench_reply_ok(read_, text.data(), text.size())) {
        bad = true;
      } else {
        ++read_;
        if (pingpong_) {
          if (record_rtt_) rtt_us_.push_back((now - send_ns_) / 1e3);
          send_ns_ = now;  // the next message is sent "now"
          allowed_ = std::min(read_ + 1, total_);
          next = NextLocked();
        }
        // The streams workload waits until every stream answered the
        // messages it was let send before it lets them send the rest.
        if (!confirmed_ && read_ == allowed_) confirmed = confirmed_ = true;
        last = read_ == total_;
      }
    }
    Do(next);
    if (bad) {
      shared_->Fail("wrong reply #" + std::to_string(index) + ": '" + text + "'");
      ctx_.TryCancel();
      return;
    }
    if (confirmed || last) {
      std::lock_guard<std::mutex> lock(shared_->mu);
      if (last) shared_->last_reply_ns = std::max(shared_->last_reply_ns, now);
      if (confirmed) ++shared_->confirmed;
      shared_->cv.notify_all();
    }
    StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) override {
    uint64_t read;
    {
      std::lock_guard<std::mutex> lock(mu_);
      read = read_;
    }
    if (!status.ok()) {
      shared_->Fail("stream ended with status " + std::to_string(status.error_code()) + ": " +
                    status.error_message());
    } else if (read != total_) {
      shared_->Fail("stream ended OK after " + std::to_string(read) + " of " +
                    std::to_string(total_) + " replies");
    }
    std::lock_guard<std::mutex> lock(shared_->mu);
    ++shared_->done;
    shared_->cv.notify_all();
  }

 private:
  enum class Next { kNothing, kWrite, kWritesDone };

  // One write in flight; the next one starts from OnWriteDone. Decided under
  // the lock, started after it (Do), so no reaction can ever run while this
  // stream's lock is held.
  Next NextLocked() {
    if (writing_) return Next::kNothing;
    if (started_ < allowed_) {
      char msg[BENCH_MSG_LEN + 1];
      bench_message(started_, msg);
      out_.set_name(BENCH_NAME);
      out_.set_message(msg, BENCH_MSG_LEN);
      ++started_;
      writing_ = true;  // out_ stays untouched until OnWriteDone
      return Next::kWrite;
    }
    if (half_close_ && written_ == total_ && !writes_done_) {
      writes_done_ = true;
      return Next::kWritesDone;
    }
    return Next::kNothing;
  }

  void Do(Next next) {
    if (next == Next::kWrite) StartWrite(&out_);
    if (next == Next::kWritesDone) StartWritesDone();
  }

  Shared* const shared_;
  const uint64_t total_;
  const bool pingpong_;
  const bool record_rtt_;
  grpc::ClientContext ctx_;
  std::mutex mu_;  // reactions run on several gRPC threads; Allow on main
  ChatMessage out_;
  StringValue in_;
  uint64_t allowed_ = 0;
  uint64_t started_ = 0;
  uint64_t written_ = 0;
  uint64_t read_ = 0;
  bool writing_ = false;
  bool half_close_ = false;
  bool writes_done_ = false;
  bool confirmed_ = false;
  int64_t send_ns_ = 0;
  std::vector<double> rtt_us_;
};

struct Args {
  std::string target;
  std::string workload;
  uint64_t messages = 10000;
  size_t streams = 1000;
  size_t channels = 1;
  size_t checkpoint = 0;  // idle: also stop after this many streams
  int timeout_s = 60;
  bool sync = false;
};

// --sync: tell the driver where the measured interval starts or ends and
// wait until it has sampled the server.
void SyncPoint(const Args& a, const char* what) {
  if (!a.sync) return;
  std::printf("{\"sync\": \"%s\"}\n", what);
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);
}

std::shared_ptr<grpc::Channel> Connect(const std::string& target, int timeout_s) {
  grpc::ChannelArguments args;
  // A connection of its own per channel, so several channels spread the
  // idle streams over several connections.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(timeout_s))) {
    std::fprintf(stderr, "bench_grpc_client: cannot connect to %s\n", target.c_str());
    std::printf("{\"error\": \"cannot connect\"}\n");
    std::fflush(stdout);
    _exit(1);
  }
  return channel;
}

// Waits until `pred` holds, a stream failed or the run's deadline passed;
// exits the process on failure (skipping destructors of live reactors).
template <typename Pred>
void WaitOrDie(Shared* shared, std::chrono::steady_clock::time_point deadline, Pred pred,
               const char* what) {
  std::unique_lock<std::mutex> lock(shared->mu);
  bool ok = shared->cv.wait_until(lock, deadline, [&] { return pred() || !shared->error.empty(); });
  if (!shared->error.empty()) {
    std::fprintf(stderr, "bench_grpc_client: %s\n", shared->error.c_str());
    std::printf("{\"error\": \"wrong reply or failed stream\"}\n");
    std::fflush(stdout);
    _exit(1);
  }
  if (!ok) {
    std::fprintf(stderr, "bench_grpc_client: timed out waiting for %s\n", what);
    std::printf("{\"error\": \"timeout\"}\n");
    std::fflush(stdout);
    _exit(3);
  }
}

// Runs `count` round trips on one stream; returns sorted round-trip times.
std::vector<double> PingPong(Chat::Stub* stub, uint64_t count,
                             std::chrono::steady_clock::time_point deadline) {
  Shared shared;
  auto* s = new Stream(&shared, count, /*pingpong=*/true, /*record_rtt=*/true);
  s->Start(stub, 1);
  s->Allow(1, /*half_close=*/true);
  WaitOrDie(&shared, deadline, [&] { return shared.done == 1; }, "ping-pong");
  std::vector<double> rtt = s->rtt_us();
  delete s;
  std::sort(rtt.begin(), rtt.end());
  return rtt;
}

int Run(const Args& a) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.timeout_s);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<Chat::Stub>> stubs;
  size_t nchan = a.workload == "idle" ? std::max<size_t>(1, a.channels) : 1;
  for (size_t i = 0; i < nchan; ++i) {
    channels.push_back(Connect(a.target, a.timeout_s));
    stubs.push_back(Chat::NewStub(channels.back()));
  }
  Chat::Stub* stub = stubs[0].get();

  if (a.workload == "pingpong") {
    PingPong(stub, 200, deadline);  // warm-up: connection, allocator, caches
    SyncPoint(a, "start");
    std::vector<double> rtt = PingPong(stub, a.messages, deadline);
    SyncPoint(a, "stop");
    double sum = 0;
    for (double v : rtt) sum += v;
    std::printf("{\"workload\": \"pingpong\", \"round_trips\": %llu, \"p50_us\": %.2f, "
                "\"p99_us\": %.2f, \"mean_us\": %.2f}\n",
                static_cast<unsigned long long>(rtt.size()),
                bench_percentile(rtt.data(), rtt.size(), 50),
                bench_percentile(rtt.data(), rtt.size(), 99), sum / rtt.size());
    return 0;
  }

  if (a.workload == "single") {
    PingPong(stub, 200, deadline);
    Shared shared;
    auto* s = new Stream(&shared, a.messages, false, false);
    SyncPoint(a, "start");
    int64_t t0 = bench_now_ns();
    s->Start(stub, a.messages);
    s->Allow(a.messages, /*half_close=*/true);
    WaitOrDie(&shared, deadline, [&] { return shared.done == 1; }, "the stream");
    SyncPoint(a, "stop");
    double secs = (shared.last_reply_ns - t0) / 1e9;
    delete s;
    std::printf("{\"workload\": \"single\", \"messages\": %llu, \"seconds\": %.6f, "
                "\"msgs_per_s\": %.1f}\n",
                static_cast<unsigned long long>(a.messages), secs, a.messages / secs);
    return 0;
  }

  if (a.workload == "streams" || a.workload == "idle") {
    bool idle = a.workload == "idle";
    // idle: one message each; streams: one confirming message, then the
    // measured `messages` more.
    uint64_t total = idle ? 1 : a.messages + 1;
    Shared shared;
    std::vector<Stream*> streams;
    streams.reserve(a.streams);
    // idle: stop at each checkpoint (and at the end) until the driver has
    // measured the server and sends a line on stdin.
    std::vector<size_t> stops;
    if (idle && a.checkpoint > 0 && a.checkpoint < a.streams) stops.push_back(a.checkpoint);
    stops.push_back(a.streams);
    for (size_t upto : stops) {
      while (streams.size() < upto) {
        size_t i = streams.size();
        streams.push_back(new Stream(&shared, total, false, false));
        streams.back()->Start(stubs[i % stubs.size()].get(), 1);
      }
      WaitOrDie(&shared, deadline, [&] { return shared.confirmed == upto; },
                "every stream's first reply");
      if (!idle) break;
      std::printf("{\"ready\": true, \"streams\": %zu, \"channels\": %zu}\n", upto, nchan);
      std::fflush(stdout);
      std::string line;
      std::getline(std::cin, line);  // the driver has measured the server
    }
    if (idle) {
      for (Stream* s : streams) s->Allow(total, /*half_close=*/true);
      WaitOrDie(&shared, deadline, [&] { return shared.done == a.streams; }, "streams to close");
      for (Stream* s : streams) delete s;
      std::printf("{\"workload\": \"idle\", \"closed\": %zu}\n", a.streams);
      return 0;
    }
    shared.last_reply_ns = 0;
    SyncPoint(a, "start");
    int64_t t0 = bench_now_ns();
    for (Stream* s : streams) s->Allow(total, /*half_close=*/true);
    WaitOrDie(&shared, deadline, [&] { return shared.done == a.streams; }, "the streams");
    SyncPoint(a, "stop");
    double secs = (shared.last_reply_ns - t0) / 1e9;
    for (Stream* s : streams) delete s;
    uint64_t n = a.messages * a.streams;
    std::printf("{\"workload\": \"streams\", \"streams\": %zu, \"messages_per_stream\": %llu, "
                "\"seconds\": %.6f, \"msgs_per_s\": %.1f}\n",
                a.streams, static_cast<unsigned long long>(a.messages), secs, n / secs);
    return 0;
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the driver
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--sync") {
      a.sync = true;
      continue;
    }
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!v) {
      a.workload.clear();
      break;
    }
    if (k == "--target") a.target = v;
    else if (k == "--workload") a.workload = v;
    else if (k == "--messages") a.messages = std::strtoull(v, nullptr, 10);
    else if (k == "--streams") a.streams = std::strtoull(v, nullptr, 10);
    else if (k == "--channels") a.channels = std::strtoull(v, nullptr, 10);
    else if (k == "--checkpoint") a.checkpoint = std::strtoull(v, nullptr, 10);
    else if (k == "--timeout-s") a.timeout_s = std::atoi(v);
    else {
      a.workload.clear();
      break;
    }
    ++i;
  }
  bool known = a.workload == "single" || a.workload == "pingpong" || a.workload == "streams" ||
               a.workload == "idle";
  if (a.target.empty() || !known || a.messages == 0 || a.streams == 0 || a.timeout_s <= 0) {
    std::fprintf(stderr,
                 "usage: %s --target HOST:PORT --workload single|pingpong|streams|idle "
                 "[--messages N] [--streams S] [--channels C] [--checkpoint K] [--timeout-s T] [--sync]\n",
                 argv[0]);
    return 2;
  }
  int rc = Run(a);
  std::fflush(stdout);
  return rc;
}
