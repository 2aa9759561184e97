// bench_grpc_server: the raw-gRPC baseline echo server for the benchmark.
//
// Written the way gRPC's callback examples are: one ServerBidiReactor per
// stream, one write in flight, the next write started from OnWriteDone, no
// buffer hint and no batching. Reading continues while a write is in flight
// (replies wait in a per-stream queue, reading pauses at kQueueLimit like
// libchat's default send_queue_limit), so the baseline pipelines as well as a
// straightforward reactor can; it differs from libchat mainly in coalescing.
//
//   bench_grpc_server [--address 127.0.0.1:0]
//
// Prints one JSON line {"port": N, "pid": P} once listening; stops when its
// stdin reaches EOF (the driver closes it, or dies) or on SIGTERM/SIGINT.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "chat.grpc.pb.h"

namespace {

using google::protobuf::StringValue;

constexpr size_t kQueueLimit = 1024;

class EchoReactor final : public grpc::ServerBidiReactor<ChatMessage, StringValue> {
 public:
  EchoReactor() { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    Ops ops;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      if (!ok) {  // client half-closed (or the call broke): finish once drained
        read_closed_ = true;
        MaybeFinishLocked(&ops);
      } else {
        std::string line;
        line.reserve(in_.name().size() + 2 + in_.message().size());
        line.append(in_.name()).append(": ").append(in_.message());
        out_.emplace_back();
        out_.back().set_value(std::move(line));
        if (!writing_) {
          writing_ = true;
          ops.write = &out_.front();
        }
        if (out_.size() < kQueueLimit) {
          ops.read = true;
        } else {
          read_paused_ = true;
        }
      }
    }
    Run(ops);
  }

  void OnWriteDone(bool ok) override {
    Ops ops;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out_.pop_front();
      writing_ = false;
      if (!ok) {
        out_.clear();
        broken_ = true;
      } else if (!out_.empty()) {
        writing_ = true;
        ops.write = &out_.front();
      }
      if (read_paused_ && !broken_) {
        read_paused_ = false;
        ops.read = true;
      }
      MaybeFinishLocked(&ops);
    }
    Run(ops);
  }

  void OnDone() override { delete this; }

 private:
  // Operations are decided under the lock and started after it, so no
  // reaction ever runs while the lock is held.
  struct Ops {
    const StringValue* write = nullptr;  // a deque element stays put until popped
    bool read = false;
    bool finish = false;
    grpc::Status status;
  };

  void Run(const Ops& ops) {
    if (ops.write) StartWrite(ops.write);
    if (ops.read) StartRead(&in_);
    if (ops.finish) Finish(ops.status);
  }

  void MaybeFinishLocked(Ops* ops) {
    if (finished_ || writing_ || read_paused_ || ops->read) return;
    if (!(read_closed_ && out_.empty()) && !broken_) return;
    finished_ = true;
    ops->finish = true;
    ops->status = broken_ ? grpc::Status::CANCELLED : grpc::Status::OK;
  }

  std::mutex mu_;  // OnReadDone and OnWriteDone may run on different threads
  ChatMessage in_;
  std::deque<StringValue> out_;  // front() is the write in flight
  bool writing_ = false;
  bool read_paused_ = false;
  bool read_closed_ = false;
  bool broken_ = false;
  bool finished_ = false;
};

class EchoService final : public Chat::CallbackService {
  grpc::ServerBidiReactor<ChatMessage, StringValue>* chat(grpc::CallbackServerContext*) override {
    return new EchoReactor();
  }
};

}  // namespace

int main(int argc, char** argv) {
  // Never outlive the driver, even if it is killed with SIGKILL.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::string address = "127.0.0.1:0";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
      address = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--address HOST:PORT]\n", argv[0]);
      return 2;
    }
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before gRPC creates threads

  EchoService service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "bench_grpc_server: cannot listen on %s\n", address.c_str());
    return 1;
  }
  std::printf("{\"port\": %d, \"pid\": %d}\n", port, static_cast<int>(getpid()));
  std::fflush(stdout);

  // Whichever comes first: stdin EOF or a stop signal.
  std::thread stdin_watch([] {
    char buf[256];
    while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
    }
    kill(getpid(), SIGTERM);
  });
  stdin_watch.detach();
  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  return 0;
}
