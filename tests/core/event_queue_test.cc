// The event queue's pipe protocol under contention: pushers write the byte
// outside the queue's lock (at once, or later through OwedSignals, as the
// completion threads do) while a level-triggered host drains. No wake-up may
// be lost, and once everything is drained and every pusher has returned, the
// pipe must be empty (a stale byte would keep a level-triggered loop
// spinning).
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "chat/event_queue.h"

namespace chat {
namespace {

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

// Pusher `id` numbers its events in `tag` (id) and `credit` (sequence).
void PushAll(const std::shared_ptr<EventQueue>& q, int id, size_t count, bool owed) {
  std::unique_ptr<internal::OwedSignals> debts;
  if (owed) debts = std::make_unique<internal::OwedSignals>();
  for (size_t i = 0; i < count; ++i) {
    Event e;
    e.type = EventType::kReply;
    e.tag = reinterpret_cast<void*>(static_cast<intptr_t>(id + 1));
    e.credit = i;
    ASSERT_TRUE(q->Push(std::move(e)));
    // Pay now and then, so some bytes are written long after their push
    // (a drain may take the events first) and some right after it.
    if (debts && i % 3 == 0) debts->Pay();
    if (i % 64 == 0) std::this_thread::yield();
  }
}

TEST(EventQueuePipe, NoLostWakeupAndNoStaleByteUnderContention) {
  constexpr int kPushers = 4;
  constexpr size_t kEach = 20000;
  for (int round = 0; round < 20; ++round) {
    std::shared_ptr<EventQueue> q;
    ASSERT_TRUE(EventQueue::Create(&q).ok());
    int fd = q->fd();
    std::vector<std::thread> pushers;
    for (int p = 0; p < kPushers; ++p) {
      pushers.emplace_back(PushAll, q, p, kEach, p % 2 == 0);
    }
    std::vector<size_t> next(kPushers, 0);
    size_t got = 0;
    std::vector<Event> batch;
    while (got < kPushers * kEach) {
      // Level-triggered, as an epoll host: a lost byte shows as a wait that
      // runs out with events pending.
      ASSERT_TRUE(Readable(fd, 10000)) << "no wake-up with " << got << " events taken";
      do {
        batch.clear();
        ASSERT_TRUE(q->Drain(&batch, 7, kNoWait).ok());
        for (const Event& e : batch) {
          size_t id = reinterpret_cast<intptr_t>(e.tag) - 1;
          ASSERT_LT(id, next.size());
          ASSERT_EQ(e.credit, next[id]++);  // each pusher's order is kept
          ++got;
        }
      } while (batch.size() == 7);
    }
    for (auto& t : pushers) t.join();
    batch.clear();
    ASSERT_TRUE(q->Drain(&batch, 7, kNoWait).ok());
    EXPECT_TRUE(batch.empty());
    EXPECT_FALSE(Readable(fd, 0)) << "a stale byte is left in the pipe (round " << round << ")";
  }
}


// Holds a pipe writer (the thread that set t_hold) at the PayOwed steps the
// test has not released yet, through internal::g_pay_hook_for_test.
thread_local bool t_hold = false;

class WriterGate {
 public:
  WriterGate() {
    current_ = this;
    internal::g_pay_hook_for_test.store(&Hook);
  }
  ~WriterGate() {
    ReleaseAll();
    if (writer_.joinable()) writer_.join();
    internal::g_pay_hook_for_test.store(nullptr);
    current_ = nullptr;
  }

  // Pushes one event on a thread of its own, with no OwedSignals: its
  // PayOwed runs at once, and is held at the first step.
  void PushHeld(const std::shared_ptr<EventQueue>& q) {
    writer_ = std::thread([q] {
      t_hold = true;
      Event e;
      e.type = EventType::kReply;
      q->Push(std::move(e));
    });
  }
  void WaitAt(internal::PayStep step) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return reached_ == static_cast<int>(step); });
  }
  void Release(internal::PayStep step) {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = static_cast<int>(step);
    cv_.notify_all();
  }
  void ReleaseAll() { Release(internal::PayStep::kAfterWrite); }
  void Join() { writer_.join(); }

 private:
  static void Hook(internal::PayStep step) {
    if (!t_hold) return;
    WriterGate& g = *current_;
    std::unique_lock<std::mutex> lock(g.mu_);
    g.reached_ = static_cast<int>(step);
    g.cv_.notify_all();
    g.cv_.wait(lock, [&] { return g.released_ >= static_cast<int>(step); });
  }

  static WriterGate* current_;
  std::mutex mu_;
  std::condition_variable cv_;
  int reached_ = -1;
  int released_ = -1;
  std::thread writer_;
};
WriterGate* WriterGate::current_ = nullptr;

// A new queue, its descriptor armed, with one push whose writer `gate`
// holds before its write.
void HoldAWriter(WriterGate& gate, std::shared_ptr<EventQueue>* q, int* fd) {
  ASSERT_TRUE(EventQueue::Create(q).ok());
  *fd = (*q)->fd();
  gate.PushHeld(*q);
  gate.WaitAt(internal::PayStep::kBeforeWrite);
}

// What a level-triggered host (epoll) does while the queue is empty: each
// time the descriptor is readable, drain without waiting. Returns how many
// wake-ups found nothing, up to `limit` (a spinning host).
int EmptyWakeups(const std::shared_ptr<EventQueue>& q, int fd, int limit) {
  int empty = 0;
  std::vector<Event> batch;
  while (empty < limit && Readable(fd, 0)) {
    batch.clear();
    EXPECT_TRUE(q->Drain(&batch, 8, kNoWait).ok());
    EXPECT_TRUE(batch.empty());
    ++empty;
  }
  return empty;
}

// A writer starts its write, a drain takes the event and gives up waiting
// for the byte (finding the pipe still empty), then the byte lands and the
// writer is preempted before it can see that the drain took its event and
// clean up. Until it runs again, the host must not spin on that byte: the
// next drain reads it.
TEST(EventQueuePipe, LateByteAfterAnEmptyingDrainIsRead) {
  WriterGate gate;
  std::shared_ptr<EventQueue> q;
  int fd;
  ASSERT_NO_FATAL_FAILURE(HoldAWriter(gate, &q, &fd));
  std::vector<Event> batch;
  ASSERT_TRUE(q->Drain(&batch, 8, kNoWait).ok());
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_FALSE(Readable(fd, 0));

  gate.Release(internal::PayStep::kBeforeWrite);
  gate.WaitAt(internal::PayStep::kAfterWrite);
  ASSERT_TRUE(Readable(fd, 0)) << "the late byte is in the pipe";
  EXPECT_EQ(EmptyWakeups(q, fd, 100), 1) << "a level-triggered host spins on the late byte";

  gate.ReleaseAll();
  gate.Join();
  EXPECT_FALSE(Readable(fd, 0));
  // The writer is done: a poll that finds nothing is quiet again.
  batch.clear();
  ASSERT_TRUE(q->Drain(&batch, 8, kNoWait).ok());
  EXPECT_TRUE(batch.empty());
  EXPECT_FALSE(Readable(fd, 0));
}

// The same late byte, but a newer push (whose write is still owed: it was
// made on a thread with an OwedSignals) comes before the next drain, which
// empties the queue and takes the owed write back: it reads the late byte.
TEST(EventQueuePipe, LateByteBesideAnOwedWriteIsRead) {
  WriterGate gate;
  std::shared_ptr<EventQueue> q;
  int fd;
  ASSERT_NO_FATAL_FAILURE(HoldAWriter(gate, &q, &fd));
  std::vector<Event> batch;
  ASSERT_TRUE(q->Drain(&batch, 8, kNoWait).ok());
  ASSERT_EQ(batch.size(), 1u);
  gate.Release(internal::PayStep::kBeforeWrite);
  gate.WaitAt(internal::PayStep::kAfterWrite);
  ASSERT_TRUE(Readable(fd, 0));
  {
    internal::OwedSignals owed;
    Event e;
    e.type = EventType::kReply;
    ASSERT_TRUE(q->Push(std::move(e)));
    batch.clear();
    ASSERT_TRUE(q->Drain(&batch, 8, kNoWait).ok());
    ASSERT_EQ(batch.size(), 1u);
    EXPECT_FALSE(Readable(fd, 0)) << "the drain that emptied the queue left the late byte";
  }  // pays nothing: the drain took the write back
  EXPECT_EQ(EmptyWakeups(q, fd, 100), 0);
  gate.ReleaseAll();
  gate.Join();
  EXPECT_FALSE(Readable(fd, 0));
}


// chat_queue_wake promises a readable descriptor when it returns, also
// while another thread's byte is only on its way: held between its claim
// and its write here (the scheduler may hold a writer off that long).
TEST(EventQueuePipe, WakeIsReadableWhileAnotherWriterIsHeld) {
  WriterGate gate;
  std::shared_ptr<EventQueue> q;
  int fd;
  ASSERT_NO_FATAL_FAILURE(HoldAWriter(gate, &q, &fd));
  q->Wake();
  EXPECT_TRUE(Readable(fd, 0)) << "a wake left its byte to a writer that has not written";
  gate.ReleaseAll();
  gate.Join();
  std::vector<Event> batch;
  ASSERT_TRUE(q->Drain(&batch, 8, kNoWait).ok());
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[1].type, EventType::kWake);
  EXPECT_FALSE(Readable(fd, 0)) << "the drain that emptied the queue left a byte";
}

// The same while the byte is owed by a completion round (an OwedSignals)
// that pays only when it ends.
TEST(EventQueuePipe, WakeIsReadableWhileARoundOwesTheByte) {
  std::shared_ptr<EventQueue> q;
  ASSERT_TRUE(EventQueue::Create(&q).ok());
  int fd = q->fd();
  std::mutex mu;
  std::condition_variable cv;
  int step = 0;  // 1: pushed, owing; 2: woken, may pay
  std::thread round([&] {
    internal::OwedSignals owed;
    ASSERT_TRUE(q->Push(Event{}));
    std::unique_lock<std::mutex> lock(mu);
    step = 1;
    cv.notify_all();
    cv.wait(lock, [&] { return step == 2; });
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return step == 1; });
  }
  EXPECT_FALSE(Readable(fd, 0)) << "owed, not paid yet";
  q->Wake();
  EXPECT_TRUE(Readable(fd, 0)) << "a wake left its byte to a round that has not ended";
  {
    std::lock_guard<std::mutex> lock(mu);
    step = 2;
    cv.notify_all();
  }
  round.join();
  std::vector<Event> batch;
  ASSERT_TRUE(q->Drain(&batch, 8, kNoWait).ok());
  EXPECT_EQ(batch.size(), 2u);
  EXPECT_FALSE(Readable(fd, 0)) << "the drain that emptied the queue left a byte";
}

// OwedSignals nest: the inner one pays its own debts when it goes, and the
// outer one is this thread's again (a push then still waits for it).
TEST(EventQueuePipe, OwedSignalsNest) {
  std::shared_ptr<EventQueue> a, b;
  ASSERT_TRUE(EventQueue::Create(&a).ok());
  ASSERT_TRUE(EventQueue::Create(&b).ok());
  int fa = a->fd(), fb = b->fd();
  {
    internal::OwedSignals outer;
    {
      internal::OwedSignals inner;
      ASSERT_TRUE(a->Push(Event{}));
      EXPECT_FALSE(Readable(fa, 0)) << "owed to the inner one";
    }
    EXPECT_TRUE(Readable(fa, 0)) << "the inner one paid when it went";
    ASSERT_TRUE(b->Push(Event{}));
    EXPECT_FALSE(Readable(fb, 0)) << "owed to the outer one, current again";
  }
  EXPECT_TRUE(Readable(fb, 0));
}

// Drains that take fewer events than are pending, pushes in between and a
// purge of one stream's events keep the rest in order.
TEST(EventQueue, PartialDrainsAndPurgeKeepTheOrder) {
  std::shared_ptr<EventQueue> q;
  ASSERT_TRUE(EventQueue::Create(&q).ok());
  void* const a = reinterpret_cast<void*>(1);
  void* const b = reinterpret_cast<void*>(2);
  size_t pushed = 0;
  auto push = [&](size_t n) {
    for (size_t i = 0; i < n; ++i, ++pushed) {
      Event e;
      e.type = EventType::kReply;
      e.tag = pushed % 2 ? b : a;
      e.credit = pushed;
      ASSERT_TRUE(q->Push(std::move(e)));
    }
  };
  std::vector<size_t> got;
  auto drain = [&](size_t max) {
    std::vector<Event> batch;
    EXPECT_TRUE(q->Drain(&batch, max, kNoWait).ok());
    for (const Event& e : batch) got.push_back(e.credit);
    return batch.size();
  };
  push(10);
  EXPECT_EQ(drain(3), 3u);  // 0 1 2
  push(4);                  // 10..13 behind the seven left
  q->Purge(b);              // drops the odd ones left: 3 5 7 9 11 13
  EXPECT_EQ(drain(2), 2u);  // 4 6
  push(1);                  // 14
  while (drain(4) > 0) {
  }
  EXPECT_EQ(got, (std::vector<size_t>{0, 1, 2, 4, 6, 8, 10, 12, 14}));
}

// A push on a thread with an OwedSignals wakes a drain that waits for it
// when the OwedSignals pays.
TEST(EventQueue, OwedWakeReachesAWaitingDrain) {
  std::shared_ptr<EventQueue> q;
  ASSERT_TRUE(EventQueue::Create(&q).ok());
  std::vector<Event> batch;
  std::thread drainer([&] { ASSERT_TRUE(q->Drain(&batch, 8, kForever).ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it wait
  {
    internal::OwedSignals owed;
    ASSERT_TRUE(q->Push(Event{}));
  }
  drainer.join();
  EXPECT_EQ(batch.size(), 1u);
}

}  // namespace
}  // namespace chat
