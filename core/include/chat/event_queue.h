// An event queue: servers and client streams deliver their events to it,
// and the host drains it on a thread of its own, woken by one readable file
// descriptor (a pipe, so every event loop can watch it). The C ABI's
// chat_queue and pychat.aio sit on it. capi/include/libchat/chat.h documents the
// promises (order, bounds, threads) for both.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <condition_variable>
#include <string>
#include <vector>

#include "chat/status.h"

namespace chat {

class ServerCall;
class EventQueue;

namespace internal {
// What an event came from: told when its events leave the queue, so the
// room they took in its window is given back (and reading resumes).
class EventSource {
 public:
  virtual ~EventSource() = default;
  // `count` events carrying `bytes` of text were drained (or consumed).
  virtual void Drained(size_t count, size_t bytes) = 0;
  // A source that keeps the room of a drained event until the host says it
  // consumed it (hold_until_consumed) is told of each drained event here
  // instead, in order; Consumed() then gives the room back.
  virtual bool HoldsUntilConsumed() const { return false; }
  virtual void Held(size_t bytes) { (void)bytes; }
  // True when a half-close event is stale: the call was cancelled since.
  virtual bool Cancelled() const { return false; }
};
}  // namespace internal

// The numbers are the C ABI's chat_event_type.
enum class EventType : int32_t {
  kWake = 0,       // EventQueue::Wake
  kOpen = 1,       // server: a call opened
  kMessage = 2,    // server: name, text
  kHalfClose = 3,  // server: the client sends no more
  kClose = 4,      // server: the call ended (code, text = details); its last event
  kReply = 5,      // client: text
  kEnd = 6,        // client: the stream ended (code, text = details); its last event
  kWritable = 7,   // a refused send would find room now
};

struct Event {
  EventType type = EventType::kWake;
  std::shared_ptr<ServerCall> call;  // server events
  void* tag = nullptr;               // client events: StreamOptions::tag
  void* user_data = nullptr;         // StreamOptions::user_data, ServerOptions::queue_user_data
  Code code = Code::kOk;             // kClose, kEnd
  std::string name;                  // kMessage
  std::string text;                  // kMessage, kReply; kClose, kEnd: details
  // Window accounting (kMessage, kReply): who to give `credit` bytes back to.
  std::shared_ptr<internal::EventSource> source;
  size_t credit = 0;
};

namespace internal {
// The wake-ups that pushes on this thread owe (the pipe's byte, a waiting
// or yielding drain's), collected while an instance is the thread's
// current one and made by Pay(): a completion queue's thread pushes under
// its stream's lock, and a host woken at once would find that lock (and
// the queue's) still held, sleep on it, and cost the pusher a futex wake
// on top; and a host woken once per round of completions drains them all
// at once.
class OwedSignals {
 public:
  // Becomes this thread's current one until destroyed, which pays what it
  // holds and makes the one it replaced current again: they nest, as
  // scopes do. Destroy it on the thread that made it, the innermost first.
  OwedSignals();
  ~OwedSignals();
  OwedSignals(const OwedSignals&) = delete;
  OwedSignals& operator=(const OwedSignals&) = delete;
  void Pay();
  bool Owes() const { return !queues_.empty(); }

 private:
  friend class chat::EventQueue;
  // Records that `queue` is to be settled at Pay; false when it cannot be.
  bool Add(EventQueue* queue) noexcept;
  std::vector<std::shared_ptr<EventQueue>> queues_;
  OwedSignals* const previous_;
};

// Tests only: when set, a pipe write calls it just before write() and just
// after (before it tells whether a drain took the events meanwhile), on
// the writing thread, so a test can hold a writer in either place.
enum class PayStep { kBeforeWrite, kAfterWrite };
extern std::atomic<void (*)(PayStep)> g_pay_hook_for_test;
}  // namespace internal

class EventQueue : public std::enable_shared_from_this<EventQueue> {
 public:
  // kSystem when no pipe can be made (no descriptors left).
  static Status Create(std::shared_ptr<EventQueue>* out);
  ~EventQueue();
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  // The read end of the pipe: readable while events are pending. The pipe
  // is written only once a host asked for it: one that waits in Drain
  // instead saves a system call per wake-up (the first call arms it).
  int fd();

  // Appends up to `max` events to *out, oldest first, waiting up to
  // `timeout` for the first (kForever: until one comes; Wake ends it).
  // Returns OK also when none came. One drainer at a time.
  Status Drain(std::vector<Event>* out, size_t max, Timeout timeout);
  // Queues one kWake event unless one is pending. Thread-safe, never blocks.
  void Wake();
  // Drops what is pending and every later event (their window room is
  // given back); `dropped` sees each dropped event first (the C ABI frees
  // handles there), and closes the pipe (fd() is then stale), though
  // streams may still hold the queue. Idempotent.
  void Close(const std::function<void(Event&)>& dropped = nullptr);
  // Drops the pending events whose tag is `tag` (a destroyed client stream).
  void Purge(void* tag);

  // For the library's streams: queues one event; false when the queue is
  // closed and the event was dropped (its room is not given back: the
  // caller, which may hold its own lock, must not count it). Thread-safe,
  // never blocks, never calls back into the event's source. The drainer's
  // wake-up it may owe (the pipe's byte, a waiting Drain's) happens after
  // mu_ is released: at once, or, on a thread with an
  // internal::OwedSignals, when that pays.
  bool Push(Event event);

 private:
  friend class internal::OwedSignals;
  EventQueue(int read_fd, int write_fd) : read_fd_(read_fd), write_fd_(write_fd) {}
  // Under mu_: true when the caller owes the pipe write (PayOwed).
  bool SignalLocked();
  // After mu_ is released: the write SignalLocked asked for, unless a drain
  // took the events first.
  void PayOwed();
  // After a push released mu_: the drainer's wake-up (the yielding
  // drain's hint, the waiting one's notify, the pipe's byte when `owe`),
  // now, or all of it when this thread's OwedSignals pays (now too when it
  // has no room left and none can be had).
  void Announce(bool owe, bool notify) noexcept;
  // What OwedSignals pays: the wake-up of a round's pushes.
  void Settle();
  bool ShouldYield();  // under mu_
  unsigned yield_skips_ = 0;
  void UnsignalLocked();
  void WriteByte();
  void ReadDry();
  // `closing`: the host will never see them, so held sources get their
  // room back too.
  static void GiveBack(std::vector<Event>* events, size_t from, bool closing);

  const int read_fd_;
  const int write_fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  // The pending events are events_[head_..]: a drain that takes them all
  // swaps the vector out (no event moved under mu_, nothing freed), one
  // that takes fewer advances head_ (see TakeLocked).
  std::vector<Event> events_;
  size_t head_ = 0;
  bool EmptyLocked() const { return head_ == events_.size(); }
  void TakeLocked(std::vector<Event>* out, size_t want);
  bool armed_ = false;      // fd() was asked for: the pipe is kept
  // The pipe's byte for the pending events, written outside mu_ (see
  // event_queue.cc). Moves from kIdle only under mu_, back to kIdle only
  // under mu_ (the drain that empties the queue, Purge, Close).
  enum Signal : int { kIdle, kOwed, kWriting, kInPipe };
  std::atomic<int> signal_{kIdle};
  std::atomic<int> writers_{0};  // threads in PayOwed: Close waits for them
  bool stale_ = false;  // a stale byte may sit beside the pending events' own
  // Writers whose kWriting a drain swapped out and that have not cleaned up
  // yet (under mu_): their byte may land after that drain's read.
  int late_writers_ = 0;
  // events_ is not empty, read without mu_: a hint, late (see Settle).
  std::atomic<bool> pending_{false};
  int yield_misses_ = 0;    // Drain's waits in a row that yielding did not save
  bool wake_pending_ = false;
  bool closed_ = false;
  std::atomic<int> waiters_{0};  // changed under mu_; Settle reads it without
  std::function<void(Event&)> dropped_;
};

}  // namespace chat
