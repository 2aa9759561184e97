// Small pieces shared by the server and client reactors.
#pragma once

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

// Keeps gRPC's process-wide callback queue from being restarted (client.cc).
void KeepCallbackQueueAlive();

}  // namespace chat::internal
