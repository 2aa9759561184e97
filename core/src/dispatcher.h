// A thread that runs host callbacks, so host code never runs inside a gRPC
// completion (a blocking host would starve the transport threads).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace chat::internal {

class Dispatcher {
 public:
  Dispatcher();
  ~Dispatcher();  // runs what is queued, then joins
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Thread-safe. Tasks run one at a time, in the order posted.
  void Post(std::function<void()> task);
  // Runs every task posted so far and stops the thread. Idempotent.
  void Shutdown();
  bool IsCurrentThread() const { return std::this_thread::get_id() == thread_id_.load(); }

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
  // Cleared once joined: a thread started later may get the same id (glibc
  // reuses a joined thread's descriptor), and must not pass for this one.
  std::atomic<std::thread::id> thread_id_;
};

}  // namespace chat::internal
