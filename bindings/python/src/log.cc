// libchat's log lines (gRPC's included) into Python's logging.
//
// The C callback may run on any thread, gRPC's own included, possibly while
// gRPC holds its locks and while some Python thread holds the GIL and waits
// in libchat for those locks. So it never takes the GIL: it queues the line
// (bounded) and a drainer thread of ours takes the GIL to hand the lines to
// logging.getLogger("pychat"). During finalization nothing takes the GIL:
// lines go raw to stderr instead.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "gil.h"
#include "module.h"

namespace pychat {
namespace {

constexpr size_t kMaxQueued = 1000;

struct Record {
  chat_log_severity severity;
  std::string text;
};

struct LogQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Record> records;
  size_t dropped = 0;
  bool drainer = false;
};

LogQueue& queue() {
  static LogQueue* q = new LogQueue;  // leaked: the drainer never stops
  return *q;
}

void write_stderr(const std::string& text) {
  std::string line = "pychat: " + text + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

int python_level(chat_log_severity severity) {
  switch (severity) {
    case CHAT_LOG_DEBUG: return 10;
    case CHAT_LOG_INFO: return 20;
    default: return 40;
  }
}

void drain() {
  LogQueue& q = queue();
  for (;;) {
    std::deque<Record> batch;
    size_t dropped;
    {
      std::unique_lock<std::mutex> lock(q.mu);
      q.cv.wait(lock, [&] { return !q.records.empty() || q.dropped > 0; });
      batch.swap(q.records);
      dropped = std::exchange(q.dropped, 0);
    }
    if (finalizing()) {
      for (const auto& r : batch) write_stderr(r.text);
      continue;
    }
    PyGILState_STATE state = PyGILState_Ensure();
    try {
      py::object log = py::module_::import("logging").attr("getLogger")("pychat").attr("log");
      for (const auto& r : batch) {
        PyObject* text = PyUnicode_DecodeUTF8(r.text.data(), static_cast<Py_ssize_t>(r.text.size()),
                                              "replace");
        if (!text) throw py::error_already_set();
        log(python_level(r.severity), "%s", py::reinterpret_steal<py::object>(text));
      }
      if (dropped) log(30, "%d log lines dropped: they came faster than logging took them", dropped);
    } catch (py::error_already_set& e) {
      e.restore();
      PyErr_Clear();  // a logging handler that raises loses its lines, nothing more
    }
    PyGILState_Release(state);
  }
}

// Called with the queue's lock held.
void start_drainer_locked(LogQueue& q) {
  // Every signal blocked, so the process's signals go to the threads that
  // expect them (the main thread in chat_server.py).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  try {
    std::thread(drain).detach();
    q.drainer = true;
  } catch (const std::system_error&) {
    // no thread: lines wait in the queue (bounded) until one can be started
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void on_log(chat_log_severity severity, const char* message, size_t len, void*) {
  if (finalizing()) {
    write_stderr(std::string(message, len));
    return;
  }
  LogQueue& q = queue();
  {
    std::lock_guard<std::mutex> lock(q.mu);
    if (q.records.size() >= kMaxQueued) {
      ++q.dropped;
    } else {
      q.records.push_back(Record{severity, std::string(message, len)});
    }
    if (!q.drainer) start_drainer_locked(q);
  }
  q.cv.notify_one();
}

void set_log_destination(bool to_logging, int min_severity) {
  if (min_severity < CHAT_LOG_DEBUG || min_severity > CHAT_LOG_NONE) {
    throw py::value_error("min_severity must be 0..3");
  }
  auto min = static_cast<chat_log_severity>(min_severity);
  chat_code rc = without_gil(
      [&] { return chat_set_log_handler(to_logging ? on_log : nullptr, nullptr, min); });
  if (rc != CHAT_OK) throw std::runtime_error(chat_last_error());
}

}  // namespace

void define_log(py::module_& m) {
  m.def("_set_log_destination", &set_log_destination, py::arg("to_logging"),
        py::arg("min_severity"),
        "Routes libchat's log lines to logging (True) or stderr (False), from min_severity "
        "(0 DEBUG, 1 INFO, 2 ERROR, 3 none).");
}

}  // namespace pychat
