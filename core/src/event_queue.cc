#include "chat/event_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "cancel.h"

namespace chat {
namespace {
// A drain about to sleep first yields for up to this long (see Drain);
// after kYieldMisses waits in a row that this did not save, only every
// kYieldProbe-th wait yields.
constexpr auto kYieldBudget = std::chrono::microseconds(20);
constexpr int kYieldMisses = 4;
constexpr unsigned kYieldProbe = 64;
// How long a drain waits for a write in progress to land (see
// UnsignalLocked): the rest of a write() that woke a thread.
constexpr auto kWriteWait = std::chrono::microseconds(5);
// The most event slots an empty queue keeps allocated (see TakeLocked).
constexpr size_t kKeptCapacity = 4096;
}  // namespace

namespace internal {
std::atomic<void (*)(PayStep)> g_pay_hook_for_test{nullptr};
}  // namespace internal

// The pipe protocol: one byte sits in the pipe while events are pending
// (two when a Wake found the first one not yet written: see Wake), from
// the push that finds the queue empty until the drain that empties it,
// which reads the pipe dry (a host that reads the pipe itself, like Node,
// only ever takes bytes early: it then drains until empty, as chat.h asks).
// The pusher writes the byte after releasing mu_ (see OwedSignals), so
// signal_ follows it:
//   kIdle     nothing owed: the queue is empty (or the pipe not armed)
//   kOwed     a push owes the byte; a drain that empties the queue first
//             takes it back, and the write never happens
//   kWriting  PayOwed is writing it
//   kInPipe   it is in the pipe
// The drain that empties the queue swaps in kIdle and reads the pipe dry
// unless the byte was never written. A byte that lands after that read is
// stale; its writer then fails to move kWriting to kInPipe and cleans up
// under mu_ (or, when newer events are pending, leaves it to the drain that
// empties the queue), so a level-triggered loop is not left spinning on it.
// Until that writer has cleaned up (it may be preempted between its write
// and its cleanup for as long as the scheduler likes: a real-time host
// pinned to its core never lets it run) it counts in late_writers_, and
// every drain that finds the queue empty reads the pipe, so the host reads
// the stale byte at its next wake-up instead of spinning on it.
// Bytes are read only under mu_ while the queue is empty, so never the one
// that pending events need.
// Every access to signal_ and writers_ is sequentially consistent: Close and
// PayOwed pair up through them as in Dekker's algorithm (see Close).
Status EventQueue::Create(std::shared_ptr<EventQueue>* out) {
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    return Status(Code::kSystem,
                  std::string("cannot create the queue's pipe: ") + std::strerror(errno));
  }
  out->reset(new EventQueue(fds[0], fds[1]));
  return Status::Ok();
}

EventQueue::~EventQueue() { Close(); }

int EventQueue::fd() {
  bool owe = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!armed_) {
      armed_ = true;
      owe = !EmptyLocked() && SignalLocked();
    }
  }
  if (owe) PayOwed();  // readable before this returns
  return read_fd_;
}

bool EventQueue::SignalLocked() {
  // Only this thread, holding mu_, may move signal_ away from kIdle.
  if (!armed_ || signal_.load() != kIdle) return false;
  signal_.store(kOwed);
  return true;
}

namespace {
// Counts a thread in PayOwed for as long as it is there, however it leaves.
class CountedIn {
 public:
  explicit CountedIn(std::atomic<int>& count) : count_(count) { count_.fetch_add(1); }
  ~CountedIn() { count_.fetch_sub(1); }
  CountedIn(const CountedIn&) = delete;
  CountedIn& operator=(const CountedIn&) = delete;

 private:
  std::atomic<int>& count_;
};
}  // namespace

void EventQueue::PayOwed() {
  CountedIn writing(writers_);  // before signal_ is read: see Close
  int s = kOwed;
  // Any PayOwed may pay what any push owes: they only ever owe one byte.
  if (signal_.compare_exchange_strong(s, kWriting)) {
    auto hook = internal::g_pay_hook_for_test.load(std::memory_order_relaxed);
    if (hook) hook(internal::PayStep::kBeforeWrite);
    WriteByte();
    if (hook) hook(internal::PayStep::kAfterWrite);
    s = kWriting;
    if (!signal_.compare_exchange_strong(s, kInPipe)) {
      // A drain emptied the queue while this wrote, maybe reading the pipe
      // before the byte landed.
      // Whether that drain read it is unknown, so this byte cannot stand
      // for a newer push's.
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) {
        // Close reads nothing more; it closes the pipe once this is out.
      } else if (signal_.load() == kIdle) {
        ReadDry();  // the queue is empty: every byte in the pipe is stale
      } else {
        stale_ = true;  // events are pending: the drain that empties the queue reads it
      }
      // The drain's exchange that failed this CAS counted it. Each exchange
      // that finds kWriting is paid back by exactly one failed CAS, though
      // maybe another writer's: a late writer whose kWriting was swapped out
      // succeeds if a newer writer's kWriting is in by then, and the newer
      // one fails here instead, after the late byte landed.
      --late_writers_;
    }
  }
}

namespace {
thread_local internal::OwedSignals* t_owed = nullptr;
// The queues an OwedSignals has room for before Add allocates: a round of
// completions usually pushes to one queue.
constexpr size_t kOwedReserve = 8;
}  // namespace

void EventQueue::Announce(bool owe, bool notify) noexcept {
  // A debt that cannot be recorded is paid now: with signal_ kOwed, the
  // pending events' byte would never be written, and the host not woken
  // for them nor for any later push (they find kOwed).
  if (t_owed && t_owed->Add(this)) return;
  pending_.store(true, std::memory_order_release);
  if (notify) cv_.notify_one();
  if (owe) PayOwed();
}

void EventQueue::Settle() {
  // Only a hint for a yielding drain: storing it late, after a drain took
  // the events, costs that drain one look under mu_.
  pending_.store(true, std::memory_order_release);
  // A drain that waited when an event of this round was pushed waits
  // still, and counts in waiters_ (one that came later found the event).
  if (waiters_.load() > 0) cv_.notify_one();
  PayOwed();
}

namespace internal {
OwedSignals::OwedSignals() : previous_(t_owed) {
  queues_.reserve(kOwedReserve);  // may throw: before this is the thread's
  t_owed = this;
}
OwedSignals::~OwedSignals() {
  Pay();
  t_owed = previous_;
}
void OwedSignals::Pay() {
  // One at a time from the back: releasing a queue may end up pushing to
  // another (its dropped events release calls), which owes again.
  while (!queues_.empty()) {
    std::shared_ptr<EventQueue> q = std::move(queues_.back());
    queues_.pop_back();
    q->Settle();
  }
}
bool OwedSignals::Add(EventQueue* queue) noexcept {
  for (const auto& q : queues_) {
    if (q.get() == queue) return true;
  }
  try {
    // The room is reserved: this allocates only past kOwedReserve queues.
    queues_.push_back(queue->shared_from_this());
    return true;
  } catch (...) {  // std::bad_alloc
    return false;
  }
}
}  // namespace internal

void EventQueue::UnsignalLocked() {
  pending_.store(false, std::memory_order_relaxed);
  int s = signal_.load();
  if (s == kIdle && !stale_) {  // stays so: only mu_'s holder moves it
    // Nothing to read: a poll that finds nothing makes no system call.
    // The exception: while a late writer has not cleaned up, its byte may
    // have landed after the read of the drain that swapped its kWriting
    // out, and a level-triggered host would spin on it until the writer
    // runs again; so every drain that ends empty reads the pipe (one read,
    // in that window only). Never once closed: the descriptor may be
    // closed, even reused.
    if (late_writers_ > 0 && !closed_) ReadDry();
    return;
  }
  // A host woken by the write usually gets here before its writer returned
  // from write(), often having preempted it on the same core: yield to it
  // for a moment, so that this read takes the byte and the writer has
  // nothing to clean up (a lock and a second read, on the library's
  // thread). Bounded: a writer that is slower is left to clean up.
  if (s == kWriting) {
    auto until = std::chrono::steady_clock::now() + kWriteWait;
    do {
      std::this_thread::yield();
      s = signal_.load();
    } while (s == kWriting && std::chrono::steady_clock::now() < until);
  }
  s = signal_.exchange(kIdle);
  // A writer that is still writing finds kIdle, and cleans up once it has.
  if (s == kWriting) ++late_writers_;
  // kOwed: now never written; only a stale byte may be there (a late
  // writer's, too). Close gets here with closed_ set, before it closes the
  // pipe.
  if (s == kInPipe || s == kWriting || stale_ || late_writers_ > 0) ReadDry();
  stale_ = false;
}

void EventQueue::WriteByte() {
  char byte = 1;
  // Non-blocking: a full pipe (impossible with a few bytes at a time) or an
  // interrupted call leaves it signalled anyway.
  while (::write(write_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
}

void EventQueue::ReadDry() {
  // One read takes what a pipe holds up to the buffer's size, so a short
  // one leaves it empty: no second read to meet EAGAIN (a system call per
  // wake-up saved). Only a full buffer may have left bytes behind.
  char buf[64];
  for (;;) {
    ssize_t n = ::read(read_fd_, buf, sizeof buf);
    if (n == static_cast<ssize_t>(sizeof buf)) continue;
    if (n < 0 && errno == EINTR) continue;
    break;  // short, or EAGAIN: empty (the host may have read it already)
  }
}

bool EventQueue::Push(Event event) {
  bool owe, notify;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) {
      lock.unlock();
      if (dropped_) dropped_(event);
      return false;
    }
    events_.push_back(std::move(event));
    owe = SignalLocked();
    notify = waiters_.load() > 0;
  }
  // Outside mu_: the drainer this wakes must not find it held.
  Announce(owe, notify);
  return true;
}

void EventQueue::Wake() {
  bool notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || wake_pending_) return;
    wake_pending_ = true;
    events_.emplace_back();  // kWake
    // chat.h promises the descriptor readable once this returns, so the
    // byte is written here, under mu_, never left to a PayOwed another
    // thread may win and then be held off in (a completion round's, or a
    // pusher's). Only mu_'s holder moves signal_ away from kIdle, and
    // drains read the pipe under mu_: no read can come between.
    if (armed_) {
      int s = signal_.load();
      if (s == kIdle) {
        WriteByte();
        signal_.store(kInPipe);  // a PayOwed that comes later finds it paid
      } else if (s != kInPipe) {
        // Owed by a round that pays when it ends, or being written by a
        // thread the scheduler may hold off: one more byte, stale once it
        // lands, so the drain that empties the queue reads the pipe dry.
        WriteByte();
        stale_ = true;
      }
    }
    notify = waiters_.load() > 0;
  }
  pending_.store(true, std::memory_order_release);
  if (notify) cv_.notify_one();
}

bool EventQueue::ShouldYield() {
  if (yield_misses_ < kYieldMisses) return true;
  return ++yield_skips_ % kYieldProbe == 0;
}

Status EventQueue::Drain(std::vector<Event>* out, size_t max, Timeout timeout) {
  if (max == 0) return Status(Code::kBadArgument, "max must be at least 1");
  size_t first = out->size();
  bool wait = timeout != kNoWait;
  // A half-close the client's cancel caused is filtered out, as the
  // dispatcher does: the call's CLOSE (CANCELLED) follows. Filtered events
  // must not count against `max`: a drain that returns fewer than asked
  // for promises an empty queue (hosts that read the pipe themselves stop
  // there, and the pipe is only signalled again once the queue was empty).
  // So take again until `max` are out or the queue is empty.
  for (;;) {
    size_t from = out->size();
    size_t want = max - (from - first);
    bool more;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (wait && EmptyLocked() && !closed_ && ShouldYield()) {
        // Events often come in bursts: before sleeping, give the CPU to
        // the library's threads for a few microseconds and look again,
        // which saves a sleep and a wake-up when the next event is near.
        // Adaptive, as the client's receive is: after a few misses in a
        // row it sleeps at once, probing again only now and then.
        lock.unlock();
        auto until = std::chrono::steady_clock::now() + kYieldBudget;
        bool caught = false;
        while (!caught && std::chrono::steady_clock::now() < until) {
          std::this_thread::yield();
          caught = pending_.load(std::memory_order_acquire);
        }
        lock.lock();
        yield_misses_ = caught ? 0 : yield_misses_ + 1;
      }
      if (wait && EmptyLocked() && !closed_) {
        ++waiters_;
        auto ready = [&] { return !EmptyLocked() || closed_; };
        internal::AllowCancel cancellable;
        if (timeout < Timeout::zero()) {
          cv_.wait(lock, ready);
        } else {
          cv_.wait_for(lock, Bounded(timeout), ready);
        }
        --waiters_;
      }
      TakeLocked(out, want);
      if (EmptyLocked()) UnsignalLocked();
      more = !EmptyLocked();
    }
    // Outside the lock: giving room back may restart reads, which push.
    GiveBack(out, from, /*closing=*/false);
    for (size_t i = from; i < out->size(); ++i) {
      Event& e = (*out)[i];
      if (e.type == EventType::kHalfClose && e.source && e.source->Cancelled()) {
        out->erase(out->begin() + static_cast<std::ptrdiff_t>(i));
        --i;
      }
    }
    // Only the first round waits (a wait that ends with only a stale
    // half-close returns nothing, like one that ran out).
    wait = false;
    if (!more || out->size() - first >= max) break;
  }
  return Status::Ok();
}

void EventQueue::TakeLocked(std::vector<Event>* out, size_t want) {
  size_t n = std::min(want, events_.size() - head_);
  if (n == 0) return;
  if (head_ == 0 && n == events_.size() && out->empty()) {
    // All of them into an empty batch: swap the storage, so the events
    // are moved nowhere under mu_ (out's old, cleared storage comes back).
    out->swap(events_);
    wake_pending_ = false;
  } else {
    auto first = events_.begin() + static_cast<std::ptrdiff_t>(head_);
    auto last = first + static_cast<std::ptrdiff_t>(n);
    for (auto it = first; it != last; ++it) {
      if (it->type == EventType::kWake) wake_pending_ = false;
    }
    out->insert(out->end(), std::make_move_iterator(first), std::make_move_iterator(last));
    head_ += n;
    if (head_ < events_.size() && head_ < events_.size() - head_) return;
    // Half or more taken: drop the taken ones, moving the rest (no more
    // than were taken) to the front. Amortized: a move per event at most.
    events_.erase(events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  // A backlog's storage is not kept once it is gone.
  if (events_.empty() && events_.capacity() > kKeptCapacity) std::vector<Event>().swap(events_);
}

// Gives the window room of events[from..] back to their sources, one call
// per run of events from the same source (a drain usually takes many
// messages of one stream at once).
void EventQueue::GiveBack(std::vector<Event>* events, size_t from, bool closing) {
  internal::EventSource* run = nullptr;
  size_t count = 0, bytes = 0;
  for (size_t i = from; i < events->size(); ++i) {
    Event& e = (*events)[i];
    if (e.type != EventType::kMessage && e.type != EventType::kReply) continue;
    if (!e.source) continue;
    if (!closing && e.source->HoldsUntilConsumed()) {
      e.source->Held(e.credit);
      continue;
    }
    if (e.source.get() != run) {
      if (run) run->Drained(count, bytes);
      run = e.source.get();
      count = bytes = 0;
    }
    ++count;
    bytes += e.credit;
  }
  if (run) run->Drained(count, bytes);
}

void EventQueue::Close(const std::function<void(Event&)>& dropped) {
  std::vector<Event> pending;
  bool closing = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (dropped) dropped_ = dropped;
    if (!closed_) {
      closed_ = closing = true;
      TakeLocked(&pending, events_.size());
      UnsignalLocked();
    }
  }
  if (closing) {
    // Pushes and wakes stop at closed_, and signal_ stays kIdle, so only a
    // PayOwed that moved it to kWriting before may still write: it counted
    // itself in writers_ before reading signal_, and signal_ was set to
    // kIdle before writers_ is read here, so if it is not counted yet it
    // will find kIdle. The wait is as short as one write(). A host that
    // destroyed its queue (chat_queue_destroy) must not find its
    // descriptor open for as long as some stream or server still holds
    // the queue.
    while (writers_.load() > 0) std::this_thread::yield();
    ::close(read_fd_);
    ::close(write_fd_);
  }
  cv_.notify_all();
  if (dropped_) {
    for (auto& e : pending) dropped_(e);
  }
  GiveBack(&pending, 0, /*closing=*/true);
}

void EventQueue::Purge(void* tag) {
  if (!tag) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto first = events_.begin() + static_cast<std::ptrdiff_t>(head_);
  events_.erase(std::remove_if(first, events_.end(), [&](const Event& e) { return e.tag == tag; }),
                events_.end());
  if (EmptyLocked()) {
    events_.clear();
    head_ = 0;
    UnsignalLocked();
  }
}

}  // namespace chat
