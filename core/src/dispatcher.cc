#include "dispatcher.h"

#include <cxxabi.h>

#include <grpc/support/log.h>

#include <exception>

namespace chat::internal {

Dispatcher::Dispatcher() : thread_([this] { Run(); }) { thread_id_ = thread_.get_id(); }

Dispatcher::~Dispatcher() { Shutdown(); }

void Dispatcher::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Dispatcher::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable() && !IsCurrentThread()) {
    thread_.join();
    thread_id_ = std::thread::id();
  }
}

void Dispatcher::Run() {
  std::deque<std::function<void()>> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      batch.swap(tasks_);          // one lock round-trip per batch, not per task
    }
    for (auto& task : batch) {
      // Tasks wrap host callbacks, which must not throw; a stray exception
      // must still not take the process down from a library thread.
      try {
        task();
      } catch (abi::__forced_unwind&) {
        // pthread_exit or pthread_cancel is ending this thread (CPython does
        // that to a thread that wants the GIL during finalization). It must
        // unwind to the end: swallowing it aborts the process.
        throw;
      } catch (const std::exception& e) {
        // Through gRPC's log, so the host's log handler sees it.
        gpr_log(GPR_ERROR, "libchat: handler threw: %s", e.what());
      } catch (...) {
        gpr_log(GPR_ERROR, "libchat: handler threw a non-standard exception");
      }
    }
    batch.clear();
  }
}

}  // namespace chat::internal
