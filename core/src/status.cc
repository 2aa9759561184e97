#include "chat/status.h"

namespace chat {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kCancelled: return "CANCELLED";
    case Code::kUnknown: return "UNKNOWN";
    case Code::kInvalidArgument: return "INVALID_ARGUMENT";
    case Code::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case Code::kNotFound: return "NOT_FOUND";
    case Code::kAlreadyExists: return "ALREADY_EXISTS";
    case Code::kPermissionDenied: return "PERMISSION_DENIED";
    case Code::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case Code::kFailedPrecondition: return "FAILED_PRECONDITION";
    case Code::kAborted: return "ABORTED";
    case Code::kOutOfRange: return "OUT_OF_RANGE";
    case Code::kUnimplemented: return "UNIMPLEMENTED";
    case Code::kInternal: return "INTERNAL";
    case Code::kUnavailable: return "UNAVAILABLE";
    case Code::kDataLoss: return "DATA_LOSS";
    case Code::kUnauthenticated: return "UNAUTHENTICATED";
    case Code::kBadArgument: return "BAD_ARGUMENT";
    case Code::kWouldBlock: return "WOULD_BLOCK";
    case Code::kTimeout: return "TIMEOUT";
    case Code::kEndOfStream: return "END_OF_STREAM";
    case Code::kClosed: return "CLOSED";
    case Code::kBusy: return "BUSY";
    case Code::kNoMemory: return "NO_MEMORY";
    case Code::kTooLarge: return "TOO_LARGE";
    case Code::kBadState: return "BAD_STATE";
  }
  return "UNRECOGNIZED";
}

// Follows the Unicode well-formedness table (no overlongs, no surrogates,
// nothing above U+10FFFF), the same rule protobuf applies to proto3 strings.
bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) { ++p; continue; }
    int extra;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) { extra = 1; }
    else if (c == 0xE0) { extra = 2; lo = 0xA0; }
    else if (c == 0xED) { extra = 2; hi = 0x9F; }
    else if (c >= 0xE1 && c <= 0xEF) { extra = 2; }
    else if (c == 0xF0) { extra = 3; lo = 0x90; }
    else if (c == 0xF4) { extra = 3; hi = 0x8F; }
    else if (c >= 0xF1 && c <= 0xF3) { extra = 3; }
    else { return false; }
    if (end - p <= extra) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (int i = 2; i <= extra; ++i) {
      if (p[i] < 0x80 || p[i] > 0xBF) return false;
    }
    p += extra + 1;
  }
  return true;
}

}  // namespace chat
