// The bytes a server's streams hold queued, against the server's bound.
// Streams charge what they queue and release what leaves; one that finds
// the server over its bound pauses reading and waits here to be resumed.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace chat::internal {

class MemoryAccount {
 public:
  explicit MemoryAccount(size_t limit) : limit_(limit) {}

  // Sequentially consistent on purpose: a stream that registers as a waiter
  // and a stream that releases must not both miss each other (see below).
  void Charge(size_t n) { held_.fetch_add(n); }
  void Release(size_t n) { held_.fetch_sub(n); }
  bool Over() const { return held_.load() >= limit_; }
  size_t held() const { return held_.load(); }

  // Registers `resume` to run once memory is below the bound. Returns false
  // (and registers nothing) when it already is, so the caller need not wait.
  bool WaitForRoom(std::function<void()> resume) {
    std::lock_guard<std::mutex> lock(mu_);
    // Announce first, then look: a Release that this look misses comes
    // after the announcement, so its WakeIfRoom sees it.
    has_waiters_.store(true);
    if (!Over()) {
      has_waiters_.store(!waiters_.empty());
      return false;
    }
    waiters_.push_back(std::move(resume));
    return true;
  }

  // Runs the waiters if memory is below the bound. Call it with no lock
  // held, after releasing: a waiter takes its own stream's lock.
  void WakeIfRoom() {
    if (!has_waiters_.load() || Over()) return;
    std::vector<std::function<void()>> ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (Over()) return;
      ready.swap(waiters_);
      has_waiters_.store(false);
    }
    for (auto& resume : ready) resume();
  }

  // Forgets every waiter (the server is stopping).
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    waiters_.clear();
    has_waiters_.store(false);
  }

 private:
  const size_t limit_;
  std::atomic<size_t> held_{0};
  std::mutex mu_;
  std::vector<std::function<void()>> waiters_;
  std::atomic<bool> has_waiters_{false};
};

}  // namespace chat::internal
