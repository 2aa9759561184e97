// Result codes and status shared by the whole library.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace chat {

// The one table of result codes: the core's enum, the names and the C
// ABI's chat_code (checked against it at compile time in capi/src/chat.cc)
// all come from it. Columns: core name, chat.h name after CHAT_, number,
// printed name. gRPC's status codes keep their numbers (0..16) and are used
// only for what a peer or the transport reported; the library's own codes
// (17..) are local outcomes of a call and never travel on the wire.
#define CHAT_CODE_TABLE(X)                                                    \
  X(kOk, OK, 0, "OK")                                                         \
  X(kCancelled, CANCELLED, 1, "CANCELLED")                                    \
  X(kUnknown, UNKNOWN, 2, "UNKNOWN")                                          \
  X(kInvalidArgument, INVALID_ARGUMENT, 3, "INVALID_ARGUMENT")                \
  X(kDeadlineExceeded, DEADLINE_EXCEEDED, 4, "DEADLINE_EXCEEDED")             \
  X(kNotFound, NOT_FOUND, 5, "NOT_FOUND")                                     \
  X(kAlreadyExists, ALREADY_EXISTS, 6, "ALREADY_EXISTS")                      \
  X(kPermissionDenied, PERMISSION_DENIED, 7, "PERMISSION_DENIED")             \
  X(kResourceExhausted, RESOURCE_EXHAUSTED, 8, "RESOURCE_EXHAUSTED")          \
  X(kFailedPrecondition, FAILED_PRECONDITION, 9, "FAILED_PRECONDITION")       \
  X(kAborted, ABORTED, 10, "ABORTED")                                         \
  X(kOutOfRange, OUT_OF_RANGE, 11, "OUT_OF_RANGE")                            \
  X(kUnimplemented, UNIMPLEMENTED, 12, "UNIMPLEMENTED")                       \
  X(kInternal, INTERNAL, 13, "INTERNAL")                                      \
  X(kUnavailable, UNAVAILABLE, 14, "UNAVAILABLE")                             \
  X(kDataLoss, DATA_LOSS, 15, "DATA_LOSS")                                    \
  X(kUnauthenticated, UNAUTHENTICATED, 16, "UNAUTHENTICATED")                 \
  X(kBadArgument, ERR_BAD_ARGUMENT, 17, "BAD_ARGUMENT")                       \
  X(kWouldBlock, ERR_WOULD_BLOCK, 18, "WOULD_BLOCK")                          \
  X(kTimeout, ERR_TIMEOUT, 19, "TIMEOUT")                                     \
  X(kEndOfStream, END_OF_STREAM, 20, "END_OF_STREAM")                         \
  X(kClosed, ERR_CLOSED, 21, "CLOSED")                                        \
  X(kBusy, ERR_BUSY, 22, "BUSY")                                              \
  X(kNoMemory, ERR_NO_MEMORY, 23, "NO_MEMORY")                                \
  X(kTooLarge, ERR_TOO_LARGE, 24, "TOO_LARGE")                                \
  X(kBadState, ERR_BAD_STATE, 25, "BAD_STATE")                                \
  X(kMissing, ERR_MISSING, 26, "MISSING")                                     \
  X(kCannotListen, ERR_CANNOT_LISTEN, 27, "CANNOT_LISTEN")                    \
  X(kSystem, ERR_SYSTEM, 28, "SYSTEM")                                        \
  X(kLibraryBug, ERR_LIBRARY_BUG, 29, "LIBRARY_BUG")

enum class Code : int32_t {
#define CHAT_CODE_ENUM(core, c, number, name) core = number,
  CHAT_CODE_TABLE(CHAT_CODE_ENUM)
#undef CHAT_CODE_ENUM
};

inline constexpr int32_t kMaxGrpcCode = 16;
#define CHAT_CODE_COUNT_ONE(core, c, number, name) +1
inline constexpr int32_t kMaxCode = 0 CHAT_CODE_TABLE(CHAT_CODE_COUNT_ONE) - 1;  // numbered 0..
#undef CHAT_CODE_COUNT_ONE

// Upper-case name of a code ("OK", "DEADLINE_EXCEEDED", "WOULD_BLOCK"), or
// "UNRECOGNIZED" for a number outside the table.
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
