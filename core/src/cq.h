// The transport's threads: completion queues, each owned and drained by
// exactly one thread. Every stream is pinned to one queue for its whole
// life, so all of its completions run on one thread, in order, and a
// built-in reply is written from the thread that read the message.
//
// Why one thread per queue: gRPC 1.51's callback API shares one queue
// between two threads that hand polling back and forth (about 4.6 context
// switches per ping-pong round trip measured); a queue drained by a single
// thread makes about 0.02 per message and halves the CPU per message.
#pragma once

#include <grpcpp/completion_queue.h>

#include <time.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tsan.h"

namespace chat::internal {

// What a completion queue hands back: gRPC returns the tag pointer given
// when the operation started, and the drain loop calls Complete on it.
class CqTag {
 public:
  virtual void Complete(bool ok) = 0;

 protected:
  ~CqTag() = default;
};

// Passes `tag` to a gRPC operation: everything this thread did before
// happens before the completion runs (for ThreadSanitizer, which cannot see
// through the uninstrumented gRPC; CqThread acquires it).
inline void* Arm(CqTag* tag) {
  ChatTsanRelease(tag);
  return tag;
}

// A tag that calls `Owner::*Method(ok)`: a stream has one per operation kind
// (read, write, finish...), never more than one of each in flight.
template <class Owner, void (Owner::*Method)(bool)>
class OpTag final : public CqTag {
 public:
  explicit OpTag(Owner* owner) : owner_(owner) {}
  void Complete(bool ok) override { (owner_->*Method)(ok); }

 private:
  Owner* const owner_;
};

// Something a queue thread's round of completions put off until the round
// ends (see DeferToRoundEnd).
class RoundEnd {
 public:
  virtual void AtRoundEnd() = 0;

 protected:
  ~RoundEnd() = default;
};

// On a queue thread, inside a round: runs `what` once the round's
// completions have run, on this thread; the caller keeps it alive until
// then. False elsewhere: the caller acts at once.
bool DeferToRoundEnd(RoundEnd* what);

// One queue and the thread that alone drains it.
class CqThread {
 public:
  // Takes the queue (a plain one, or a server's ServerCompletionQueue) and
  // starts draining it, or with `standby` only once Wake() is called (a
  // thread that waits in a queue takes turns as gRPC's poller, which costs
  // hand-offs: see DefaultServerQueueCount); `name` names the thread
  // ("chat-srv-cq0").
  CqThread(std::unique_ptr<grpc::CompletionQueue> cq, const char* name, bool standby = false);
  ~CqThread();  // Shutdown()
  CqThread(const CqThread&) = delete;
  CqThread& operator=(const CqThread&) = delete;

  grpc::CompletionQueue* cq() const { return cq_.get(); }
  bool IsCurrentThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  // A standby thread starts draining its queue. Idempotent.
  void Wake();
  // Shuts the queue down, lets the thread drain what is left and joins it.
  // Idempotent; never called from the queue's own thread.
  void Shutdown();

  // For a watcher on another thread (QueueWatch): how many completions the
  // thread has run, and the CPU time it used (ns, -1 if unknown). A count
  // that stands still while the CPU time grows means the thread is stuck
  // inside gRPC. Not after Shutdown.
  uint64_t completions() const { return completions_.load(std::memory_order_relaxed); }
  int64_t CpuNanos() const;

 private:
  void Run();

  std::unique_ptr<grpc::CompletionQueue> cq_;
  std::thread thread_;
  std::atomic<uint64_t> completions_{0};  // written by the thread only
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool awake_;  // wake_mu_
  clockid_t cpu_clock_{};
  bool has_cpu_clock_ = false;
  bool shut_ = false;
};

// How many queues a server has when the host says 0: one per core, and
// at least two. Only the first drains at first; the others wait on standby
// until QueueWatch (connections.h) wakes one, for a flood of reset streams
// (rapid reset) or for load. Every thread waiting on a queue takes its
// turn as gRPC's poller, so one thread where one suffices costs the least:
// with the grpc-go client on the same 2 cores, 1.7-1.8 µs of CPU per
// message against 2.2-2.3 for two awake, and 4.8-5.0 against 7.1-7.5 with
// 1,000 streams. All awake from the start was the default before, for
// rapid reset: a lone thread parses a whole burst of reset streams before
// it runs the completions that would show it (650 MB of gRPC's backlog in
// the fault test); a second one, woken when the first is stuck, bounds
// that about as well.
int DefaultServerQueueCount();

// How many queues the process's clients share: half the cores, at least
// one. Every thread waiting on a queue takes its turn as gRPC's poller
// (epoll1 has one for the whole process), so an idle queue's thread picks
// up a busy stream's socket and must wake the stream's own thread; and a
// client's own threads (senders, receivers) want cores too. On the 2-core
// benchmark machine one client queue against two gave +15-25% single-stream
// throughput and -23% ping-pong p50, and the same at 1,000 streams.
int DefaultClientQueueCount();

// The queues client streams run on, shared by every Client in the process
// (as gRPC's own threads are) and never shut down: streams may outlive
// their Client, and idle threads blocked in the queue cost nothing.
class ClientQueues {
 public:
  static ClientQueues& Get();
  // The queue for a new stream: round robin over the threads.
  grpc::CompletionQueue* Pick();

 private:
  ClientQueues();
  std::vector<std::unique_ptr<CqThread>> threads_;
  std::atomic<unsigned> next_{0};
};

// Keeps gRPC initialised for the life of the process: starting and
// stopping servers must not shut gRPC down and bring it up again.
void KeepGrpcInitialized();

}  // namespace chat::internal
