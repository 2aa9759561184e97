// Result codes and status shared by the whole library.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace chat {

// gRPC's status codes keep their numbers (0..16); the library's own codes
// follow. The C ABI (chat.h) mirrors these numbers one to one.
enum class Code : int32_t {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
  // Library codes: local outcomes of a call, never sent on the wire.
  kBadArgument = 17,  // NULL or malformed argument, invalid UTF-8, bad address
  kWouldBlock = 18,   // send queue full and the caller asked not to wait
  kTimeout = 19,      // a local wait ran out (not the RPC deadline)
  kEndOfStream = 20,  // no more replies: the stream ended with OK
  kClosed = 21,       // the stream, call or server has ended or is closing
  kBusy = 22,         // refused because it would deadlock (own callback)
  kNoMemory = 23,
  kTooLarge = 24,     // message larger than the configured maximum
  kBadState = 25,     // not valid in the object's current state
};

inline constexpr int32_t kMaxGrpcCode = 16;
inline constexpr int32_t kMaxCode = 25;

// Upper-case name of a code ("OK", "DEADLINE_EXCEEDED", "WOULD_BLOCK"), or
// "UNRECOGNIZED" for a number outside the enum.
const char* CodeName(Code code);
inline bool IsGrpcCode(int32_t c) { return c >= 0 && c <= kMaxGrpcCode; }

class Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// A wait budget: negative means "no limit", zero means "do not wait".
using Timeout = std::chrono::milliseconds;
inline constexpr Timeout kNoWait{0};
inline constexpr Timeout kForever{-1};

// The longest wait the library schedules: 100 years. Any longer budget, up to
// INT64_MAX ms, means "no practical limit" and is cut to this before it meets
// a clock: now() + INT64_MAX ms overflows the clocks' nanosecond counts and
// would land in the past (an immediate timeout). Every wait, deadline and
// grace period goes through Bounded() before it is added to a now().
inline constexpr Timeout kLongestWait = std::chrono::hours(24 * 365 * 100);
inline constexpr Timeout Bounded(Timeout t) { return t > kLongestWait ? kLongestWait : t; }

// True when `text` is well-formed UTF-8 (proto3 string fields must be).
bool IsValidUtf8(std::string_view text);

}  // namespace chat
