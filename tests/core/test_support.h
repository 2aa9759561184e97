// Helpers shared by the core tests: condition waits with deadlines.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace chat::testing {

using namespace std::chrono_literals;

// A thread-safe log that tests wait on: handlers append, the test thread
// waits until a predicate over the log holds or the deadline passes.
class EventLog {
 public:
  void Add(std::string event) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(event));
    }
    cv_.notify_all();
  }
  template <class Pred>
  bool WaitUntil(Pred pred, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(events_); });
  }
  bool WaitForCount(size_t n, std::chrono::milliseconds timeout = 10s) {
    return WaitUntil([n](const std::vector<std::string>& e) { return e.size() >= n; }, timeout);
  }
  bool WaitFor(const std::string& event, std::chrono::milliseconds timeout = 10s) {
    return WaitUntil(
        [&](const std::vector<std::string>& e) {
          for (const auto& x : e) if (x == event) return true;
          return false;
        },
        timeout);
  }
  std::vector<std::string> Snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

// A gate a handler can block on until the test opens it.
class Gate {
 public:
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool Wait(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace chat::testing
