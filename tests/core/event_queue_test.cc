// The event queue's pipe protocol under contention: pushers write the byte
// outside the queue's lock (at once, or later through OwedSignals, as the
// completion threads do) while a level-triggered host drains. No wake-up may
// be lost, and once everything is drained and every pusher has returned, the
// pipe must be empty (a stale byte would keep a level-triggered loop
// spinning).
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <memory>
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

}  // namespace
}  // namespace chat
