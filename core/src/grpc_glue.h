// Small pieces shared by the server and client streams.
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

}  // namespace chat::internal
