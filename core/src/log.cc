// The process-wide log sink. gRPC calls Trampoline for every line it logs
// (gpr_set_log_function is global), on whatever thread logged it; the
// library's own lines go through gpr_log too, so one path serves both.
#include "chat/log.h"

#include <grpc/support/log.h>

#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>

// gRPC's own stderr writer: exported by libgpr but declared only in an
// internal header. Restored when the host asks for the default again.
void gpr_default_log(gpr_log_func_args* args);

namespace chat {
namespace {

struct Sink {
  LogFn fn = nullptr;  // nullptr: gRPC's default (stderr)
  void* user_data = nullptr;
  LogSeverity min = LogSeverity::kError;
};

// Readers (log calls) share the lock for the whole call of the sink, so the
// setter's exclusive lock both swaps fn and user_data as one pair and waits
// for the calls in flight. Leaked on purpose: gRPC threads may log while the
// process runs its exit handlers.
struct State {
  std::shared_mutex mu;
  Sink sink;
};
State& GetState() {
  static State* state = new State;
  return *state;
}

// Set while this thread runs the host's sink: a line logged from inside it
// is dropped (no recursion, and no self-deadlock on the lock).
thread_local bool t_in_sink = false;

struct InSink {
  InSink() { t_in_sink = true; }
  ~InSink() { t_in_sink = false; }  // also on a forced unwind through the sink
};

const char* Basename(const char* path) {
  if (!path) return "?";
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

void Trampoline(gpr_log_func_args* args) {
  if (t_in_sink) return;
  State& st = GetState();
  std::shared_lock<std::shared_mutex> lock(st.mu);
  auto severity = static_cast<LogSeverity>(args->severity);
  if (st.sink.min == LogSeverity::kNone || severity < st.sink.min) return;
  if (!st.sink.fn) {
    gpr_default_log(args);
    return;
  }
  std::string text = std::string(Basename(args->file)) + ":" + std::to_string(args->line) +
                     ": " + (args->message ? args->message : "");
  InSink in;
  st.sink.fn(severity, text.c_str(), text.size(), st.sink.user_data);
}

}  // namespace

bool InLogSink() { return t_in_sink; }

bool SetLogSink(LogFn fn, void* user_data, LogSeverity min) {
  if (t_in_sink) return false;
  State& st = GetState();
  {
    // gRPC's verbosity is set under the same lock, so concurrent setters
    // cannot leave it out of step with the sink.
    std::unique_lock<std::shared_mutex> lock(st.mu);
    st.sink = Sink{fn, user_data, min};
    gpr_set_log_verbosity(min == LogSeverity::kNone ? GPR_LOG_SEVERITY_ERROR
                                                    : static_cast<gpr_log_severity>(min));
  }
  static std::once_flag installed;
  std::call_once(installed, [] { gpr_set_log_function(Trampoline); });
  return true;
}

}  // namespace chat
