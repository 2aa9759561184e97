// Ballerina's deadline header: its gRPC library sends a call's deadline as
// metadata `deadline`, an RFC 3339 timestamp ("2024-05-01T12:00:00.250Z"),
// instead of (or besides) gRPC's grpc-timeout.
#pragma once

#include <chrono>
#include <string_view>

namespace chat::internal {

inline constexpr char kDeadlineHeader[] = "deadline";

// Parses an RFC 3339 date-time: date 'T' (or 't', ' ') time, optional
// fraction of a second, then 'Z' or an offset +hh:mm / -hh:mm. False for
// anything else. A time too far ahead for the clock (after 2255) gives
// time_point::max(): no deadline.
bool ParseRfc3339(std::string_view text, std::chrono::system_clock::time_point* out);

}  // namespace chat::internal
