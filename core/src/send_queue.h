// A stream's outgoing messages. gRPC allows one write in flight per stream,
// so the front is the message being written while writing(). Not
// thread-safe: the owning reactor guards it with its own mutex.
#pragma once

#include <grpcpp/impl/call_op_set.h>  // grpc::WriteOptions
#include <grpcpp/support/byte_buffer.h>

#include <deque>

namespace chat::internal {

class SendQueue {
 public:
  size_t size() const { return queue_.size(); }
  bool empty() const { return queue_.empty(); }
  bool writing() const { return writing_; }

  // Queues a message; true when no write is in flight, so the caller must
  // start one (StartWrite).
  bool Push(grpc::ByteBuffer message) {
    queue_.push_back(std::move(message));
    return !writing_;
  }

  // Marks the front as in flight and returns it with its write options.
  // Writes carry the buffer hint while more wait behind them, so gRPC puts
  // several in one socket write; the last one goes out plain and flushes,
  // and so does every kMaxHintedWrites-th, so a peer never waits on an
  // endless run of buffered ones.
  const grpc::ByteBuffer* StartWrite(grpc::WriteOptions* options) {
    writing_ = true;
    *options = grpc::WriteOptions();
    if (queue_.size() > 1 && hinted_run_ < kMaxHintedWrites) {
      options->set_buffer_hint();
      ++hinted_run_;
    } else {
      hinted_run_ = 0;
    }
    return &queue_.front();
  }

  // The write in flight completed. After a failed write nothing more can be
  // written and everything is dropped. True when more messages wait.
  bool WriteDone(bool ok) {
    queue_.pop_front();
    writing_ = false;
    if (!ok) queue_.clear();
    return !queue_.empty();
  }

  // Drops the queued messages, keeping the one in flight (gRPC still reads
  // it until its write completes).
  void DropAllButInFlight() {
    while (queue_.size() > (writing_ ? 1u : 0u)) queue_.pop_back();
  }

 private:
  static constexpr int kMaxHintedWrites = 32;

  std::deque<grpc::ByteBuffer> queue_;
  bool writing_ = false;
  int hinted_run_ = 0;
};

}  // namespace chat::internal
