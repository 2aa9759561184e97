// GIL and waiting helpers shared by the binding's translation units.
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include <libchat/chat.h>

namespace pychat {

namespace py = pybind11;

// Long waits are cut into slices this long; between slices the GIL is taken
// back and pending signals run, so Ctrl-C interrupts a blocked call.
inline constexpr int64_t kSliceMs = 100;

// True once the interpreter is finalizing: a thread that is not the main one
// must not take the GIL any more (it would be terminated on the spot).
inline bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// Runs `f` (plain C calls: no Python, no exceptions) with the GIL released.
// Not py::gil_scoped_release: its destructor is noexcept, and a thread that
// takes the GIL back during finalization is ended with a forced unwind,
// which must not cross a noexcept frame.
template <class F>
auto without_gil(F&& f) -> decltype(f()) {
  PyThreadState* state = PyEval_SaveThread();
  if constexpr (std::is_void_v<decltype(f())>) {
    f();
    PyEval_RestoreThread(state);
  } else {
    auto result = f();
    PyEval_RestoreThread(state);
    return result;
  }
}

// Runs pending signal handlers (GIL held); raises what they raised.
inline void check_signals() {
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

// A wait budget from a Python timeout in seconds (None: no limit).
class Deadline {
 public:
  explicit Deadline(std::optional<double> timeout_s) {
    if (!timeout_s) return;
    if (!(*timeout_s >= 0.0)) throw py::value_error("timeout must be a number >= 0 or None");
    forever_ = false;
    zero_ = *timeout_s == 0.0;
    double ms = std::min(*timeout_s * 1000.0, 1e11);  // ~3 years: no clock overflow
    end_ = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(ms * 1000.0));
  }

  // Zero timeout: try once, never wait.
  bool zero() const { return zero_; }
  bool expired() const { return !forever_ && Clock::now() >= end_; }
  // How long the next slice may wait: at most kSliceMs, at least 1 ms
  // (0 would mean "do not wait" to the library), 0 for a zero timeout.
  int64_t slice_ms() const {
    if (zero_) return 0;
    if (forever_) return kSliceMs;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end_ - Clock::now()).count();
    return std::clamp<int64_t>(left, 1, kSliceMs);
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool forever_ = true;
  bool zero_ = false;
  Clock::time_point end_{};
};

// Retries `attempt(ms)` (a chat_* call that waits up to ms and returns
// CHAT_ERR_TIMEOUT when nothing happened) in slices without the GIL until it
// returns something else or the deadline passes. Signals are checked between
// slices.
template <class Attempt>
chat_code sliced(const Deadline& deadline, Attempt&& attempt) {
  for (;;) {
    int64_t ms = deadline.slice_ms();
    chat_code rc = without_gil([&] { return attempt(ms); });
    if (rc != CHAT_ERR_TIMEOUT || deadline.zero() || deadline.expired()) return rc;
    check_signals();
  }
}

// The UTF-8 of a str argument, borrowed from the object (which caches it).
// TypeError for a non-str, ValueError for text UTF-8 cannot encode (lone
// surrogates).
std::string_view utf8_arg(py::handle obj, const char* what);

// A str from UTF-8 the library handed out.
py::str to_str(const char* data, size_t len);

}  // namespace pychat
