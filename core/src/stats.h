// The live counters behind chat::Stats. Relaxed atomics: each is exact on
// its own, a snapshot is not one instant (open may lag total for a moment),
// and the hot path pays one uncontended add per counter.
#pragma once

#include <atomic>

#include "chat/stats.h"

namespace chat::internal {

class StatsCounters {
 public:
  void Opened() {
    Add(open_, 1);
    Add(total_, 1);
  }
  void Closed() { open_.fetch_sub(1, std::memory_order_relaxed); }
  void Refused() { Add(refused_, 1); }
  void Cut() { Add(cut_, 1); }
  void In(size_t bytes) {
    Add(messages_in_, 1);
    Add(bytes_in_, bytes);
  }
  void Out(size_t bytes) {
    Add(messages_out_, 1);
    Add(bytes_out_, bytes);
  }

  Stats Snapshot() const {
    Stats s;
    s.streams_open = open_.load(std::memory_order_relaxed);
    s.streams_total = total_.load(std::memory_order_relaxed);
    s.streams_refused = refused_.load(std::memory_order_relaxed);
    s.streams_cut = cut_.load(std::memory_order_relaxed);
    s.messages_in = messages_in_.load(std::memory_order_relaxed);
    s.messages_out = messages_out_.load(std::memory_order_relaxed);
    s.bytes_in = bytes_in_.load(std::memory_order_relaxed);
    s.bytes_out = bytes_out_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  static void Add(std::atomic<uint64_t>& c, uint64_t n) { c.fetch_add(n, std::memory_order_relaxed); }

  // Stream counts apart from the message counts: the latter change per
  // message on the transport threads, the former once per stream.
  std::atomic<uint64_t> open_{0}, total_{0}, refused_{0}, cut_{0};
  alignas(64) std::atomic<uint64_t> messages_in_{0}, bytes_in_{0};
  alignas(64) std::atomic<uint64_t> messages_out_{0}, bytes_out_{0};
};

}  // namespace chat::internal
