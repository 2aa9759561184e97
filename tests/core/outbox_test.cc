// The send queue's wait for room (core/src/send_queue.h): a sender that
// found the queue full goes on once it is half empty, or at the end of its
// timeout if a slot is free by then, and hears at once that the stream ended.
#include <gtest/gtest.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "send_queue.h"

namespace chat::internal {
namespace {

using std::chrono::milliseconds;

grpc::ByteBuffer Message() {
  grpc::Slice s(std::string(10, 'x'));
  return grpc::ByteBuffer(&s, 1);
}

// An Outbox of `limit` messages, filled; the front one is "in flight".
struct Full {
  explicit Full(size_t limit) : out(limit, 1 << 20) {
    for (size_t i = 0; i < limit; ++i) out.queue().Push(Message());
    grpc::WriteOptions options;
    out.queue().StartWrite(&options);
  }
  // One write completes and the next starts, as a stream does; returns
  // whether the stream would wake its waiting senders.
  bool CompleteOne() {
    std::lock_guard<std::mutex> lock(mu);
    bool more = out.queue().WriteDone(true);
    if (more) {
      grpc::WriteOptions options;
      out.queue().StartWrite(&options);
    }
    return out.WakesSenders(false);
  }
  std::mutex mu;
  Outbox out;
  bool ended = false;  // under mu
};

TEST(Outbox, AFullQueueRefusesWithoutWaitingAndAFreeSlotIsTakenAtOnce) {
  Full f(4);
  std::unique_lock<std::mutex> lock(f.mu);
  auto closed = [&] { return f.ended; };
  EXPECT_EQ(f.out.WaitForRoom(lock, kNoWait, 10, closed).code(), Code::kWouldBlock);
  lock.unlock();
  f.CompleteOne();
  lock.lock();
  EXPECT_TRUE(f.out.WaitForRoom(lock, kNoWait, 10, closed).ok());
}

TEST(Outbox, AWaitingSenderIsWokenOnlyOnceTheQueueIsHalfEmpty) {
  Full f(8);
  bool waiting = false;           // under f.mu
  size_t queued_at_return = 0;    // under f.mu
  std::thread sender([&] {
    std::unique_lock<std::mutex> lock(f.mu);
    waiting = true;  // the lock is held until the wait lets it go
    EXPECT_TRUE(f.out.WaitForRoom(lock, Timeout(-1), 10, [&] { return f.ended; }).ok());
    queued_at_return = f.out.queue().size();
  });
  for (;;) {  // until the sender is inside its wait
    std::lock_guard<std::mutex> lock(f.mu);
    if (waiting) break;
  }
  // 8 queued: the writes that leave 7, 6 and 5 do not wake it; 4 does. A
  // wake-up it was not owed (spurious) finds room, but not half, and waits on.
  EXPECT_FALSE(f.CompleteOne());
  EXPECT_FALSE(f.CompleteOne());
  EXPECT_FALSE(f.CompleteOne());
  f.out.NotifyRoom();
  EXPECT_TRUE(f.CompleteOne());
  f.out.NotifyRoom();
  sender.join();
  EXPECT_EQ(queued_at_return, 4u);
}

TEST(Outbox, ATimedWaitThatEndsWithAFreeSlotSucceeds) {
  Full f(8);
  {
    std::unique_lock<std::mutex> lock(f.mu);
    EXPECT_EQ(f.out.WaitForRoom(lock, milliseconds(20), 10, [] { return false; }).code(),
              Code::kTimeout);
  }
  bool waiting = false;  // under f.mu
  std::thread sender([&] {
    std::unique_lock<std::mutex> lock(f.mu);
    waiting = true;
    // A slot frees while it waits, but the queue never gets to half: it is
    // not woken, and takes the slot when its time is up.
    EXPECT_TRUE(f.out.WaitForRoom(lock, milliseconds(50), 10, [] { return false; }).ok());
    EXPECT_EQ(f.out.queue().size(), 7u);
  });
  for (;;) {
    std::lock_guard<std::mutex> lock(f.mu);
    if (waiting) break;
  }
  EXPECT_FALSE(f.CompleteOne());
  sender.join();
}

TEST(Outbox, AWaitingSenderHearsTheEndAtOnce) {
  Full f(8);
  std::thread sender([&] {
    std::unique_lock<std::mutex> lock(f.mu);
    EXPECT_TRUE(f.out.WaitForRoom(lock, Timeout(-1), 10, [&] { return f.ended; }).ok());
    EXPECT_TRUE(f.ended);
  });
  {
    std::lock_guard<std::mutex> lock(f.mu);
    f.ended = true;
    EXPECT_TRUE(f.out.WakesSenders(true));
  }
  f.out.NotifyRoom();
  sender.join();
}

}  // namespace
}  // namespace chat::internal
