// gRPC's rules for custom metadata, checked before gRPC sees it (gRPC
// would drop a bad entry, or fail the whole call, without saying why).
#pragma once

#include <string_view>

#include "chat/status.h"

namespace chat::internal {

// Lower-case letters, digits, '-', '_', '.'; not empty, not "grpc-...".
inline bool IsValidMetadataKey(std::string_view key) {
  if (key.empty() || key.substr(0, 5) == "grpc-") return false;
  for (char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Printable ASCII, or any bytes for a "-bin" key.
inline bool IsValidMetadataValue(std::string_view key, std::string_view value) {
  bool binary = key.size() > 4 && key.substr(key.size() - 4) == "-bin";
  if (binary) return true;
  for (unsigned char c : value) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

inline Status CheckMetadata(std::string_view key, std::string_view value) {
  if (!IsValidMetadataKey(key)) {
    return Status(Code::kBadArgument, "invalid metadata key '" + std::string(key) +
                                          "' (lower-case letters, digits, '-', '_', '.')");
  }
  if (!IsValidMetadataValue(key, value)) {
    return Status(Code::kBadArgument,
                  "metadata value for '" + std::string(key) + "' must be printable ASCII");
  }
  return Status::Ok();
}

}  // namespace chat::internal
