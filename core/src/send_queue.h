// A stream's outgoing messages, and the send side that server and client
// streams share (Outbox). gRPC allows one write in flight per stream, so the
// front is the message being written while writing(). Not thread-safe: the
// owning stream guards it with its own mutex. The queue counts its bytes,
// and charges them to the server's account if it has one.
#pragma once

#include <grpcpp/impl/call_op_set.h>  // grpc::WriteOptions
#include <grpcpp/support/byte_buffer.h>

#include <condition_variable>
#include <deque>
#include <mutex>

#include "cancel.h"
#include "chat/status.h"
#include "cq.h"
#include "memory.h"

namespace chat::internal {

class SendQueue {
 public:
  explicit SendQueue(MemoryAccount* account = nullptr) : account_(account) {}
  ~SendQueue() { Uncharge(bytes_); }
  SendQueue(const SendQueue&) = delete;
  SendQueue& operator=(const SendQueue&) = delete;

  size_t size() const { return queue_.size(); }
  size_t bytes() const { return bytes_; }
  bool empty() const { return queue_.empty(); }
  bool writing() const { return writing_; }
  uint64_t sent() const { return sent_; }  // writes completed, ever
  // The bytes of the message in flight (valid while writing()).
  size_t in_flight_bytes() const { return in_flight_bytes_; }

  // Whether a message of `bytes` fits within the limits. An empty queue
  // takes any message, so a budget below the message size never blocks.
  bool HasRoom(size_t limit, size_t byte_limit, size_t bytes) const {
    return queue_.empty() || (queue_.size() < limit && bytes_ + bytes <= byte_limit);
  }
  // Whether the queue is at or over its limits.
  bool Full(size_t limit, size_t byte_limit) const {
    return queue_.size() >= limit || bytes_ >= byte_limit;
  }

  // Queues a message, taking its contents; true when no write is in flight,
  // so the caller must start one (StartWrite). Swapped in: grpc::ByteBuffer
  // has no move constructor, so a std::move would copy it (an allocation
  // and a reference per slice, undone when the original dies).
  bool Push(grpc::ByteBuffer&& message) {
    size_t n = message.Length();
    bytes_ += n;
    if (account_) account_->Charge(n);
    Queued& queued = queue_.emplace_back();
    queued.message.Swap(&message);
    queued.bytes = n;
    return !writing_;
  }

  // Marks the front as in flight and returns it with its write options.
  // Writes carry the buffer hint while more wait behind them, so gRPC puts
  // several in one socket write; the last one goes out plain and flushes,
  // and so does every kMaxHintedWrites-th, so a peer never waits on an
  // endless run of buffered ones. Never the first write: gRPC 1.51 failed
  // a hinted first write of a server stream (the one that carries the
  // initial metadata) once its client had half-closed (seen when the echo
  // reply's write waited for the round's end, Session::AtRoundEnd).
  const grpc::ByteBuffer* StartWrite(grpc::WriteOptions* options) {
    writing_ = true;
    in_flight_bytes_ = queue_.front().bytes;
    *options = grpc::WriteOptions();
    if (queue_.size() > 1 && hinted_run_ < kMaxHintedWrites && sent_ > 0) {
      options->set_buffer_hint();
      ++hinted_run_;
    } else {
      hinted_run_ = 0;
    }
    return &queue_.front().message;
  }

  // The write in flight completed. After a failed write nothing more can be
  // written and everything is dropped. True when more messages wait.
  bool WriteDone(bool ok) {
    if (ok) ++sent_;
    PopFront();
    writing_ = false;
    if (!ok) DropAllButInFlight();
    return !queue_.empty();
  }

  // Drops the queued messages, keeping the one in flight (gRPC still reads
  // it until its write completes).
  void DropAllButInFlight() {
    while (queue_.size() > (writing_ ? 1u : 0u)) {
      size_t n = queue_.back().bytes;
      queue_.pop_back();
      bytes_ -= n;
      Uncharge(n);
    }
  }

 private:
  static constexpr int kMaxHintedWrites = 32;

  void PopFront() {
    size_t n = queue_.front().bytes;
    queue_.pop_front();
    bytes_ -= n;
    Uncharge(n);
  }
  void Uncharge(size_t n) {
    if (account_ && n) account_->Release(n);
  }

  // A message with its length, read once: ByteBuffer::Length walks the
  // buffer's slices, which are cold again by the time the write starts and
  // ends (with 1,000 streams grpc_byte_buffer_length, then called four
  // times per echoed message, took 1.8% of the server's CPU samples).
  struct Queued {
    grpc::ByteBuffer message;
    size_t bytes = 0;
  };

  MemoryAccount* const account_;  // outlives the queue, or null
  std::deque<Queued> queue_;
  size_t bytes_ = 0;
  uint64_t sent_ = 0;
  size_t in_flight_bytes_ = 0;
  bool writing_ = false;
  int hinted_run_ = 0;
};

// The send side of one stream, server or client: the bounded queue, the
// wait for room in it, and the start of each write. Every method runs under
// the owning stream's mutex (`lock` is that mutex, held).
class Outbox {
 public:
  Outbox(size_t limit, size_t byte_limit, MemoryAccount* account = nullptr)
      : limit_(limit), byte_limit_(byte_limit), queue_(account) {}

  SendQueue& queue() { return queue_; }
  const SendQueue& queue() const { return queue_; }
  // At or over its limits: a built-in server stops reading until it drains.
  bool Full() const { return queue_.Full(limit_, byte_limit_); }
  // At most half full: when a sender refused for a full queue hears it may
  // go on (an event queue's WRITABLE). Waiting for half, not for the first
  // free slot, makes one wake-up per half queue instead of one per write.
  bool LowWater() const { return queue_.size() <= limit_ / 2 && queue_.bytes() <= byte_limit_ / 2; }
  // Nothing queued and nothing in flight: the last write-side operation
  // (a server's Finish, a client's WritesDone) may go.
  bool Drained() const { return queue_.empty() && !queue_.writing(); }

  // Waits up to `timeout` for room for `bytes`, giving up at once when
  // `closed()` becomes true (the caller then reports why). kWouldBlock with
  // kNoWait (which asks without waiting, and so without the system call a
  // condition variable's wait_for makes), kTimeout after a positive timeout.
  // A sender that finds the queue full waits for it to be half empty
  // (LowWater), not for the first free slot: writes then wake it once per
  // half queue, not once per write (a context switch per message, measured
  // with a blocking sender). A timed wait that ends with room is a success.
  template <class Closed>
  Status WaitForRoom(std::unique_lock<std::mutex>& lock, Timeout timeout, size_t bytes,
                     Closed closed) {
    auto room = [&] { return closed() || queue_.HasRoom(limit_, byte_limit_, bytes); };
    if (room()) return Status::Ok();
    if (timeout == kNoWait) return Status(Code::kWouldBlock, "send queue is full");
    auto half = [&] { return room() && (closed() || LowWater()); };
    AllowCancel cancellable;
    if (timeout < Timeout::zero()) {
      room_cv_.wait(lock, half);
    } else if (!room_cv_.wait_for(lock, Bounded(timeout), half) && !room()) {
      return Status(Code::kTimeout, "send queue stayed full for the whole timeout");
    }
    return Status::Ok();
  }
  // Wakes senders waiting for room (when the stream ends, or after a write
  // that WakesSenders: outside the lock, so they do not find it held).
  void NotifyRoom() { room_cv_.notify_all(); }
  // After a write completed, under the lock: whether waiting senders can go
  // on (their wait's condition), or must hear that the stream broke or
  // ends (`ending`).
  bool WakesSenders(bool ending) const { return ending || LowWater(); }

  // Starts writing the front message on `stream` (a gRPC async reader-
  // writer), completing on `tag`. Call only when !queue().writing().
  template <class Stream>
  void StartWrite(Stream* stream, CqTag* tag) {
    grpc::WriteOptions options;
    const grpc::ByteBuffer* message = queue_.StartWrite(&options);
    stream->Write(*message, options, Arm(tag));
  }

 private:
  const size_t limit_;
  const size_t byte_limit_;
  SendQueue queue_;
  std::condition_variable room_cv_;
};

}  // namespace chat::internal
