// Message compression (gRPC's grpc-encoding), numbered as gRPC numbers it.
#pragma once

namespace chat {

enum class Compression : int {
  kNone = 0,
  kDeflate = 1,
  kGzip = 2,
};

inline bool IsCompression(int value) { return value >= 0 && value <= 2; }

}  // namespace chat
