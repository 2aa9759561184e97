// Where gRPC's log lines and the library's own go: a process-wide sink.
#pragma once

#include <cstddef>

namespace chat {

// gRPC's gpr severities, in order, plus "nothing".
enum class LogSeverity { kDebug = 0, kInfo = 1, kError = 2, kNone = 3 };

using LogFn = void (*)(LogSeverity severity, const char* message, size_t len, void* user_data);

// Sends every log line at or above `min` to `fn` (nullptr: gRPC's default,
// stderr); kNone drops all. Process-wide: gRPC's log function is global.
// Returns when no call of the previous sink is running any more. Returns
// false (and changes nothing) when called from inside the sink itself.
bool SetLogSink(LogFn fn, void* user_data, LogSeverity min);

// True on a thread that is running the sink right now.
bool InLogSink();

}  // namespace chat
