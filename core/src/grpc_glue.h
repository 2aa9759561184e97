// Small pieces shared by the server and client reactors.
#pragma once

#include <grpcpp/impl/call_op_set.h>  // grpc::WriteOptions
#include <grpcpp/support/status.h>

#include "chat/status.h"

namespace chat::internal {

inline Status FromGrpc(const grpc::Status& s) {
  return Status(static_cast<Code>(s.error_code()), s.error_message());
}

inline grpc::Status ToGrpc(const Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}

// Writes with the buffer hint let gRPC put several messages in one socket
// write; every this many hinted writes one goes out plain, so a peer never
// waits on an endless run of buffered ones.
inline constexpr int kMaxHintedWrites = 32;

// The options for writing the front of a per-stream send queue that holds
// `queued` messages: hinted while more wait behind it, plain for the last
// one (it flushes the batch) and after kMaxHintedWrites hinted ones.
inline grpc::WriteOptions NextWriteOptions(size_t queued, int* hinted_run) {
  grpc::WriteOptions options;
  if (queued > 1 && *hinted_run < kMaxHintedWrites) {
    options.set_buffer_hint();
    ++*hinted_run;
  } else {
    *hinted_run = 0;
  }
  return options;
}

// Drops queued messages, keeping the front while it is the write in flight
// (gRPC still reads it until OnWriteDone).
template <class Queue>
void DropAllButInFlight(Queue* queue, bool writing) {
  while (queue->size() > (writing ? 1u : 0u)) queue->pop_back();
}

// Keeps gRPC's process-wide callback queue from being restarted (client.cc).
void KeepCallbackQueueAlive();

}  // namespace chat::internal
