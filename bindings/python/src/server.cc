// Server, Call and the C callbacks that run a Python handler.
//
// Threads: handler methods run on libchat's dispatcher threads, which take
// the GIL for each callback. Whoever waits for those threads (stop, destroy)
// must therefore release the GIL first, and must not be one of them.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "errors.h"
#include "gil.h"
#include "module.h"
#include "queue.h"

namespace pychat {
namespace {

struct ServerCore;

// The server whose callback this thread is running, if any. Stopping or
// destroying that server from here would wait for this very thread.
thread_local const ServerCore* t_dispatching = nullptr;

// Destroys moved off a dispatcher thread (see Server::~Server); the exit
// hook waits for them, so none is left running while Python finalizes.
std::mutex g_deferred_mu;
std::condition_variable g_deferred_cv;
int g_deferred = 0;

// pychat._metadata.CallMetadata, kept for the life of the process (see
// errors.cc: a static py::object would be released after the interpreter).
PyObject* g_metadata_class = nullptr;
PyObject* g_peer_identity_class = nullptr;  // pychat._security.PeerIdentity, likewise

// bytes for "-bin" keys, str otherwise.
py::object metadata_value(std::string_view key, const char* value, size_t len) {
  bool binary = key.size() > 4 && key.substr(key.size() - 4) == "-bin";
  if (binary) return py::bytes(value, len);
  // gRPC allows only printable ASCII here; latin-1 cannot fail on a stray byte.
  PyObject* s = PyUnicode_DecodeLatin1(value, static_cast<Py_ssize_t>(len), nullptr);
  if (!s) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(s);
}

// The client's metadata of `call`: a CallMetadata over every (key, value)
// pair, in the library's order (sorted by key).
py::object read_metadata(chat_call* call) {
  size_t count = 0;
  chat_code rc = chat_call_metadata_count(call, &count);
  if (rc != CHAT_OK) raise_last(rc);
  return make_call_metadata(count, [call](size_t i, const char** k, size_t* kl, const char** v,
                                          size_t* vl) {
    return chat_call_metadata_at(call, i, k, kl, v, vl);
  });
}

// One server-side stream. Holds a chat_call reference, so the handle stays
// valid for as long as Python keeps the object (calls on it raise
// ClosedError once the stream has ended).
class Call {
 public:
  explicit Call(chat_call* call) : call_(call) { chat_call_ref(call); }
  ~Call() { chat_call_unref(call_); }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  uint64_t id() const { return chat_call_id(call_); }

  // Built on first use and kept: a call's metadata never changes. GIL.
  py::object metadata() {
    if (!metadata_) metadata_ = read_metadata(call_);
    return metadata_;
  }
  std::string peer() const { return chat_call_peer(call_); }

  // Seconds left before the call's deadline, or None when it has none.
  py::object time_left() const {
    int64_t ms = -1;
    chat_code rc = chat_call_time_left(call_, &ms);
    if (rc != CHAT_OK) raise_last(rc);
    if (ms < 0) return py::none();
    return py::float_(static_cast<double>(ms) / 1000.0);
  }
  chat_call* handle() const { return call_; }
  std::string principal() const { return chat_call_principal(call_); }

  // pychat.PeerIdentity(subject, sans) of the client's certificate (mTLS),
  // or None without one. GIL.
  py::object peer_identity() const {
    std::string subject = chat_call_peer_subject(call_);
    size_t count = 0;
    chat_call_peer_san_count(call_, &count);
    if (subject.empty() && count == 0) return py::none();
    py::tuple sans(count);
    for (size_t i = 0; i < count; ++i) {
      const char* san = "";
      chat_call_peer_san(call_, i, &san);
      sans[i] = py::str(san);
    }
    return py::reinterpret_borrow<py::object>(g_peer_identity_class)(subject, sans);
  }

  void send(py::handle text, std::optional<double> timeout) {
    std::string_view t = utf8_arg(text, "text");
    Deadline deadline(timeout);
    // Room in the queue is the common case: no GIL round-trip for it.
    chat_code rc = chat_call_send(call_, t.data(), t.size(), 0);
    if (rc == CHAT_ERR_WOULD_BLOCK && !deadline.zero()) {
      rc = sliced(deadline, [&](int64_t ms) { return chat_call_send(call_, t.data(), t.size(), ms); });
    }
    if (rc != CHAT_OK) raise_last(rc);
  }

  // For pychat.aio: queues one reply if there is room. False when the send
  // queue is full: a WRITABLE event follows once there is room again.
  bool try_send(py::handle text) {
    std::string_view t = utf8_arg(text, "text");
    chat_code rc = chat_call_send(call_, t.data(), t.size(), 0);
    if (rc == CHAT_OK) return true;
    if (rc == CHAT_ERR_WOULD_BLOCK) return false;
    raise_last(rc);
  }

  // For pychat.aio (its server holds messages until consumed): the handler
  // is done with the `count` oldest messages drained and not yet reported,
  // so their room in the call's window goes back. Never blocks (a lock and
  // perhaps a read started), so the GIL stays held.
  void consumed(size_t count) {
    chat_code rc = chat_call_consumed(call_, count);
    if (rc != CHAT_OK) raise_last(rc);
  }

  // A no-op once the stream has ended: a client may cancel at any moment,
  // and on_complete's natural call.complete() must not turn that into an error.
  void complete() {
    chat_code rc = chat_call_complete(call_);
    if (rc != CHAT_OK && rc != CHAT_ERR_CLOSED) raise_last(rc);
  }

  // Server metadata for the client (see chat_call_add_initial_metadata).
  void add_metadata(bool trailing, const std::string& key, py::handle value) {
    std::string v = PyBytes_Check(value.ptr()) ? value.cast<std::string>()
                                              : std::string(utf8_arg(value, "metadata value"));
    if (key.find('\0') != std::string::npos) {
      throw py::value_error("metadata keys cannot contain NUL characters");
    }
    chat_code rc = trailing ? chat_call_add_trailing_metadata(call_, key.c_str(), v.data(), v.size())
                            : chat_call_add_initial_metadata(call_, key.c_str(), v.data(), v.size());
    if (rc != CHAT_OK) raise_last(rc);
  }

  void fail(int code, py::handle details) {
    // Checked here: an out-of-range chat_code is undefined behaviour in C++.
    if (code < CHAT_CANCELLED || code > CHAT_UNAUTHENTICATED) {
      throw py::value_error("code must be a gRPC error code, CANCELLED (1) to UNAUTHENTICATED (16)");
    }
    std::string_view d = utf8_arg(details, "details");
    chat_code rc = chat_call_fail(call_, static_cast<chat_code>(code), d.data(), d.size());
    if (rc != CHAT_OK) raise_last(rc);
  }

 private:
  chat_call* const call_;
  py::object metadata_;
};

// What the C callbacks need. Deleting it needs the GIL (Python objects).
struct ServerCore {
  chat_server* handle = nullptr;  // null once destroyed; GIL
  int port = -1;
  // The handler's methods, None where it has none. Fixed after start.
  py::object on_open, on_message, on_complete, on_close;
  py::object authenticate;  // None, or authenticate(call, token) -> principal
  // The Python Call of each open call, so every method of one stream gets the
  // same object. Filled on first use, emptied by on_close; GIL.
  std::unordered_map<chat_call*, py::object> calls;
  std::vector<std::thread> stoppers;  // threads running chat_server_stop; GIL
  // The event queue the calls deliver to (pychat.aio), instead of the
  // callbacks. Released after the server is destroyed: it must outlive it.
  std::shared_ptr<QueueHandle> queue;
};

class DispatchScope {
 public:
  explicit DispatchScope(const ServerCore* core) : previous_(t_dispatching) { t_dispatching = core; }
  ~DispatchScope() { t_dispatching = previous_; }
  DispatchScope(const DispatchScope&) = delete;
  DispatchScope& operator=(const DispatchScope&) = delete;

 private:
  const ServerCore* previous_;
};

py::object call_object(ServerCore* core, chat_call* call) {
  auto it = core->calls.find(call);
  if (it != core->calls.end()) return it->second;
  py::object obj = py::cast(std::make_unique<Call>(call));
  core->calls.emplace(call, obj);
  return obj;
}

// A handler method raised. A ChatError fails the call with its own code and
// details (a deliberate error reply); anything else is a bug in the handler:
// it goes to sys.unraisablehook and the call fails with INTERNAL. `call` is
// null where the stream can no longer be failed (on_close).
void handler_raised(py::error_already_set& e, const py::object& method, chat_call* call,
                    const char* what) {
  if (call && is_chat_error(e)) {
    try {
      py::object exc = e.value();
      int code = exc.attr("code").cast<int>();
      std::string_view details = utf8_arg(exc.attr("details"), "details");
      if (code >= CHAT_CANCELLED && code <= CHAT_UNAUTHENTICATED &&
          chat_call_fail(call, static_cast<chat_code>(code), details.data(), details.size()) !=
              CHAT_ERR_BAD_ARGUMENT) {
        return;  // failed as asked, or the stream had already ended
      }
    } catch (py::error_already_set&) {
      // Not a usable status (OK, bad details...): report the original below.
    }
  }
  std::string reason = std::string(what) + " raised " +
                       reinterpret_cast<PyTypeObject*>(e.type().ptr())->tp_name;
  e.discard_as_unraisable(method);
  if (call) chat_call_fail(call, CHAT_INTERNAL, reason.data(), reason.size());
}

// Runs `body` (a call of `method`) so that nothing escapes into the library.
template <class Body>
void guarded(const py::object& method, chat_call* call, const char* what, Body&& body) {
  try {
    body();
  } catch (py::error_already_set& e) {
    handler_raised(e, method, call, what);
  } catch (const std::exception& ex) {
    PyErr_SetString(PyExc_RuntimeError, ex.what());
    py::error_already_set e;
    handler_raised(e, method, call, what);
  }
}

// The C callbacks. During finalization no thread but the main one may take
// the GIL (it would be ended in the attempt): they then do without Python.
// The exit hook stops every server before that, so this is a last resort.
void cb_open(chat_call* call, void* user_data) {
  auto* core = static_cast<ServerCore*>(user_data);
  if (finalizing()) return;
  py::gil_scoped_acquire gil;
  DispatchScope scope(core);
  guarded(core->on_open, call, "on_open", [&] { core->on_open(call_object(core, call)); });
}

void cb_message(chat_call* call, const char* name, size_t name_len, const char* message,
                size_t message_len, void* user_data) {
  auto* core = static_cast<ServerCore*>(user_data);
  if (core->on_message.is_none()) return;  // a handler without on_message ignores messages
  if (finalizing()) {
    constexpr std::string_view kWhy = "the Python interpreter is shutting down";
    chat_call_fail(call, CHAT_UNAVAILABLE, kWhy.data(), kWhy.size());
    return;
  }
  py::gil_scoped_acquire gil;
  DispatchScope scope(core);
  guarded(core->on_message, call, "on_message", [&] {
    core->on_message(call_object(core, call), to_str(name, name_len), to_str(message, message_len));
  });
}

void cb_complete(chat_call* call, void* user_data) {
  auto* core = static_cast<ServerCore*>(user_data);
  if (finalizing()) {
    chat_call_complete(call);
    return;
  }
  py::gil_scoped_acquire gil;
  DispatchScope scope(core);
  guarded(core->on_complete, call, "on_complete",
          [&] { core->on_complete(call_object(core, call)); });
}

void cb_close(chat_call* call, chat_code code, const char* details, size_t details_len,
              void* user_data) {
  auto* core = static_cast<ServerCore*>(user_data);
  if (finalizing()) return;
  py::gil_scoped_acquire gil;
  DispatchScope scope(core);
  py::object obj;
  if (auto it = core->calls.find(call); it != core->calls.end()) {
    obj = std::move(it->second);
    core->calls.erase(it);
  }
  if (core->on_close.is_none()) return;
  guarded(core->on_close, nullptr, "on_close", [&] {
    if (!obj) obj = py::cast(std::make_unique<Call>(call));
    core->on_close(obj, status_code(code), to_str(details, details_len));
  });
}

// The server's authenticate(call, token): runs on a transport thread. A
// str admits as that principal; None refuses (UNAUTHENTICATED); a ChatError
// (pychat.Unauthenticated, pychat.PermissionDenied...) refuses with its code
// and details; anything else is a bug: sys.unraisablehook, and INTERNAL.
chat_code cb_authenticate(chat_call* call, const char* token, char* message, size_t message_size,
                          void* user_data) {
  auto* core = static_cast<ServerCore*>(user_data);
  auto refuse = [&](chat_code code, std::string_view why) {
    size_t n = std::min(why.size(), message_size - 1);
    std::memcpy(message, why.data(), n);
    message[n] = '\0';
    return code;
  };
  if (finalizing()) return refuse(CHAT_UNAVAILABLE, "the Python interpreter is shutting down");
  py::gil_scoped_acquire gil;
  DispatchScope scope(core);
  try {
    py::object verdict = core->authenticate(py::cast(std::make_unique<Call>(call)),
                                            token ? py::object(py::str(token)) : py::none());
    if (verdict.is_none()) return refuse(CHAT_UNAUTHENTICATED, "unauthenticated");
    if (!py::isinstance<py::str>(verdict)) {
      throw py::type_error("authenticate must return a principal (str) or None");
    }
    std::string_view principal = utf8_arg(verdict, "principal");
    if (principal.find('\0') != std::string_view::npos) {
      throw py::value_error("the principal cannot contain NUL characters");
    }
    chat_call_set_principal(call, std::string(principal).c_str());
    return CHAT_OK;
  } catch (py::error_already_set& e) {
    if (is_chat_error(e)) {
      try {
        py::object exc = e.value();
        int code = exc.attr("code").cast<int>();
        std::string_view details = utf8_arg(exc.attr("details"), "details");
        if (code >= CHAT_CANCELLED && code <= CHAT_UNAUTHENTICATED) {
          return refuse(static_cast<chat_code>(code), details);
        }
      } catch (py::error_already_set&) {
        // Not a usable status: reported below.
      }
    }
    e.discard_as_unraisable(core->authenticate);
  } catch (py::builtin_exception& ex) {  // TypeError, ValueError raised here
    ex.set_error();
    py::error_already_set().discard_as_unraisable(core->authenticate);
  } catch (const std::exception& ex) {
    PyErr_SetString(PyExc_RuntimeError, ex.what());
    py::error_already_set().discard_as_unraisable(core->authenticate);
  }
  return refuse(CHAT_INTERNAL, "the server's authenticator failed");
}

// The handler's method `name`, or None where it has none. A default of
// pychat.Handler not overridden counts as none: its behaviour is what the
// library does without the method, and skipping it spares a GIL round-trip
// per event (per message for on_message).
py::object handler_method(const py::object& handler, const char* name) {
  py::object method = py::getattr(handler, name, py::none());
  if (method.is_none()) return method;
  if (!PyCallable_Check(method.ptr())) {
    throw py::type_error(std::string("handler.") + name + " must be callable");
  }
  py::object func = py::getattr(method, "__func__", py::none());
  if (!func.is_none() && py::bool_(py::getattr(func, "_pychat_default", py::bool_(false)))) {
    return py::none();
  }
  return method;
}

// Stops the server for good and waits for its threads. GIL held on entry;
// not on one of the server's dispatcher threads.
void destroy(ServerCore& core) {
  chat_server* handle = std::exchange(core.handle, nullptr);
  std::vector<std::thread> stoppers = std::move(core.stoppers);
  if (!handle) return;
  std::shared_ptr<QueueHandle> queue = std::move(core.queue);
  without_gil([&] {
    for (auto& t : stoppers) t.join();
    chat_server_destroy(handle);
    queue.reset();  // after the server: the queue must outlive it
  });
  core.calls.clear();  // on_close normally emptied it already
}

// destroy() for a server whose last reference went away on its own
// dispatcher thread: that thread cannot wait for itself, so another does it
// and then frees `core` (taking the GIL).
void destroy_elsewhere(ServerCore* core) {
  chat_server* handle = std::exchange(core->handle, nullptr);
  std::vector<std::thread> stoppers = std::move(core->stoppers);
  {
    std::lock_guard<std::mutex> lock(g_deferred_mu);
    ++g_deferred;
  }
  auto work = [core, handle, stoppers = std::move(stoppers)]() mutable {
    for (auto& t : stoppers) t.join();
    chat_server_destroy(handle);
    if (!finalizing()) {
      PyGILState_STATE state = PyGILState_Ensure();
      delete core;
      PyGILState_Release(state);
    }  // else leaked: its objects belong to an interpreter that is going away
    std::lock_guard<std::mutex> lock(g_deferred_mu);
    --g_deferred;
    g_deferred_cv.notify_all();
  };
  try {
    std::thread(std::move(work)).detach();
  } catch (const std::system_error&) {
    // No thread to spare: leak the server rather than deadlock here.
    std::lock_guard<std::mutex> lock(g_deferred_mu);
    --g_deferred;
  }
}

// The outcome of one chat_server_stop, run on its own thread.
struct StopResult {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  chat_code rc = CHAT_OK;
  int32_t cut = 0;
  std::string error;
};

class Server {
 public:
  Server(const std::string& address, int mode, py::object handler,
         std::optional<int> max_message_bytes, std::optional<int> send_queue_limit,
         std::optional<int> recv_window, std::optional<int> dispatcher_threads,
         std::optional<double> keepalive, std::optional<int64_t> send_queue_bytes,
         std::optional<int64_t> recv_window_bytes, std::optional<int64_t> max_memory_bytes,
         std::optional<int> completion_queues, py::object queue, const py::dict& security,
         bool health, bool reflection, py::dict control, std::optional<std::string> room,
         std::optional<std::string> room_name)
      : core_(std::make_unique<ServerCore>()) {
    chat_server_options o;
    chat_server_options_init(&o, CHAT_SERVER_OPTIONS_VERSION);
    // pychat.Server made the certificates str (PEM text or a path).
    std::string tls_cert, tls_key, tls_ca;
    auto text = [&](const char* key, std::string* slot, const char** field) {
      if (!security.contains(key) || security[key].is_none()) return;
      *slot = security[key].cast<std::string>();
      if (slot->find('\0') != std::string::npos) {
        throw py::value_error(std::string(key) + " cannot contain NUL characters");
      }
      *field = slot->c_str();
    };
    text("tls_cert", &tls_cert, &o.tls_cert_chain);
    text("tls_key", &tls_key, &o.tls_private_key);
    text("tls_ca", &tls_ca, &o.tls_client_ca);
    if (security.contains("client_cert")) o.tls_client_cert = security["client_cert"].cast<int>();
    if (security.contains("authenticate") && !security["authenticate"].is_none()) {
      core_->authenticate = security["authenticate"];
      if (!PyCallable_Check(core_->authenticate.ptr())) {
        throw py::type_error("authenticate must be callable");
      }
      o.authenticate = cb_authenticate;
      o.authenticate_user_data = core_.get();
    }
    // 1.1's control options, by name (pychat.Server checks and converts them).
    for (auto [key, value] : control) {
      std::string name = py::str(key);
      int32_t v = value.cast<int32_t>();
      if (name == "compression") {
        o.compression = v;
      } else if (name == "max_streams") {
        o.max_streams = v;
      } else if (name == "max_concurrent_streams") {
        o.max_concurrent_streams = v;
      } else if (name == "max_connection_age_ms") {
        o.max_connection_age_ms = v;
      } else if (name == "max_connection_age_grace_ms") {
        o.max_connection_age_grace_ms = v;
      } else if (name == "max_connection_idle_ms") {
        o.max_connection_idle_ms = v;
      } else {
        throw py::value_error("unknown control option " + name);
      }
    }
    o.mode = mode;
    if (max_message_bytes) o.max_message_bytes = *max_message_bytes;
    if (send_queue_limit) o.send_queue_limit = *send_queue_limit;
    if (recv_window) o.recv_window = *recv_window;
    if (dispatcher_threads) o.dispatcher_threads = *dispatcher_threads;
    if (send_queue_bytes) o.send_queue_bytes = *send_queue_bytes;
    if (recv_window_bytes) o.recv_window_bytes = *recv_window_bytes;
    if (max_memory_bytes) o.max_memory_bytes = *max_memory_bytes;
    if (completion_queues) o.completion_queues = *completion_queues;
    o.health = health ? 1 : 0;
    o.reflection = reflection ? 1 : 0;
    for (const auto* s : {&room, &room_name}) {
      if (*s && (*s)->find('\0') != std::string::npos) {
        throw py::value_error("room and room_name cannot contain NUL characters");
      }
    }
    if (room) o.room_url = room->c_str();
    if (room_name) o.room_name = room_name->c_str();
    if (keepalive) {
      if (!(*keepalive >= 0.0)) throw py::value_error("keepalive must be >= 0 seconds");
      o.keepalive_ms = static_cast<int32_t>(std::min<int64_t>(to_ms(*keepalive), INT32_MAX));
    }
    if (!queue.is_none()) {
      // pychat.aio: the events go to the queue; no dispatcher threads.
      if (mode != CHAT_MODE_CUSTOM || !handler.is_none()) {
        throw py::value_error("an event queue goes with the custom mode and no handler");
      }
      core_->queue = queue_of(queue);
      o.queue = core_->queue->get();
      // A drained message keeps its room in the call's window until the
      // handler is done with it (Call._consumed): pychat.aio drains at once,
      // so this is what bounds a call whose handler falls behind.
      o.hold_until_consumed = 1;
    } else if (mode == CHAT_MODE_CUSTOM) {
      if (handler.is_none()) throw py::value_error("a custom server needs a handler");
      core_->on_open = handler_method(handler, "on_open");
      core_->on_message = handler_method(handler, "on_message");
      core_->on_complete = handler_method(handler, "on_complete");
      core_->on_close = handler_method(handler, "on_close");
      o.on_open = core_->on_open.is_none() ? nullptr : cb_open;
      o.on_message = cb_message;
      // Without on_complete the library completes the call, as the seed does.
      o.on_complete = core_->on_complete.is_none() ? nullptr : cb_complete;
      o.on_close = cb_close;  // always: it releases the call's Python object
      o.user_data = core_.get();
    } else if (!handler.is_none()) {
      throw py::value_error("a handler needs the custom mode");
    }
    chat_server* handle = nullptr;
    // Callbacks may start before this returns; they wait for the GIL.
    chat_code rc = without_gil([&] { return chat_server_start(address.c_str(), &o, &handle); });
    if (rc != CHAT_OK) raise_last(rc);
    core_->handle = handle;
    core_->port = chat_server_port(handle);
  }

  ~Server() {
    if (!core_->handle) return;
    if (t_dispatching == core_.get()) {
      destroy_elsewhere(core_.release());
      return;
    }
    destroy(*core_);
  }

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return core_->port; }
  bool closed() const { return core_->handle == nullptr; }

  int stop(double grace) {
    if (!(grace >= 0.0)) throw py::value_error("grace must be >= 0 seconds");
    refuse_in_own_handler("stop");
    if (!core_->handle) return 0;
    auto result = std::make_shared<StopResult>();
    // On a thread of its own so this one can wake up for signals (Ctrl-C)
    // while the stop runs; destroy() joins it.
    core_->stoppers.emplace_back([handle = core_->handle, ms = to_ms(grace), result] {
      int32_t cut = 0;
      chat_code rc = chat_server_stop(handle, ms, &cut);
      std::lock_guard<std::mutex> lock(result->mu);
      result->rc = rc;
      result->cut = cut;
      if (rc != CHAT_OK) result->error = chat_last_error();
      result->done = true;
      result->cv.notify_all();
    });
    for (;;) {
      bool done = without_gil([&] {
        std::unique_lock<std::mutex> lock(result->mu);
        return result->cv.wait_for(lock, std::chrono::milliseconds(kSliceMs),
                                   [&] { return result->done; });
      });
      if (done) break;
      check_signals();
    }
    if (result->rc != CHAT_OK) raise_code(result->rc, result->error);
    return result->cut;
  }

  void close() {
    refuse_in_own_handler("close");
    destroy(*core_);
  }

  py::tuple stats() const {
    if (!core_->handle) raise_closed("server is closed");
    chat_stats s;
    s.version = CHAT_STATS_VERSION;
    chat_code rc = chat_server_stats(core_->handle, &s);
    if (rc != CHAT_OK) raise_last(rc);
    return stats_tuple(s);
  }

 private:
  void refuse_in_own_handler(const char* what) const {
    if (t_dispatching == core_.get()) {
      throw std::runtime_error(std::string("Server.") + what +
                               "() cannot run inside this server's own handler (it would wait "
                               "for itself); call it from another thread");
    }
  }

  std::unique_ptr<ServerCore> core_;
};

bool wait_deferred(double timeout) {
  return without_gil([&] {
    std::unique_lock<std::mutex> lock(g_deferred_mu);
    return g_deferred_cv.wait_for(lock, std::chrono::milliseconds(to_ms(timeout)),
                                  [] { return g_deferred == 0; });
  });
}

}  // namespace

chat_call* call_handle(py::handle call) {
  if (!py::isinstance<Call>(call)) throw py::type_error("expected a pychat.Call");
  return call.cast<Call&>().handle();
}

py::object make_call_metadata(size_t count, const MetadataEntry& entry) {
  py::list items;
  for (size_t i = 0; i < count; ++i) {
    const char *key, *value;
    size_t key_len, value_len;
    chat_code rc = entry(i, &key, &key_len, &value, &value_len);
    if (rc != CHAT_OK) raise_last(rc);
    items.append(py::make_tuple(to_str(key, key_len),
                                metadata_value({key, key_len}, value, value_len)));
  }
  return py::reinterpret_borrow<py::object>(g_metadata_class)(items);
}

py::object make_call(chat_call* call) { return py::cast(std::make_unique<Call>(call)); }

void define_server(py::module_& m) {
  g_metadata_class =
      py::object(py::module_::import("pychat._metadata").attr("CallMetadata")).release().ptr();
  g_peer_identity_class =
      py::object(py::module_::import("pychat._security").attr("PeerIdentity")).release().ptr();
  m.attr("MODE_ECHO") = CHAT_MODE_ECHO;
  m.attr("MODE_BROADCAST") = CHAT_MODE_BROADCAST;
  m.attr("MODE_CUSTOM") = CHAT_MODE_CUSTOM;

  py::class_<Call>(m, "Call", "One server-side stream, as handed to handler methods.")
      .def_property_readonly("id", &Call::id, "Unique within the server, from 1 in arrival order.")
      .def_property_readonly("peer", &Call::peer, "The client's address (\"ipv4:127.0.0.1:41234\").")
      .def_property_readonly("principal", &Call::principal,
                             "What the server's authenticate admitted the stream as (\"\" "
                             "without one).")
      .def_property_readonly("peer_identity", &Call::peer_identity,
                             "The client certificate's pychat.PeerIdentity(subject, sans) on a "
                             "TLS server that asked for one; None without a certificate.")
      .def_property_readonly("metadata", &Call::metadata,
                             "The metadata the client sent: a pychat.CallMetadata (a read-only "
                             "Mapping of each key's first value; get_all(key) for every value).")
      .def_property_readonly("time_left", &Call::time_left,
                             "Seconds left before the call's deadline (grpc-timeout, or "
                             "Ballerina's deadline header), 0.0 once passed; None without one.")
      .def("send", &Call::send, py::arg("text"), py::arg("timeout") = py::none(),
           "Queues one reply. Waits while the send queue is full (timeout in seconds, None: no "
           "limit; TimeoutError, or BlockingIOError for 0). ClosedError once the stream ended.")
      .def("complete", &Call::complete,
           "Ends the stream with OK once queued replies are written. Idempotent; a no-op once "
           "the stream has ended.")
      .def("fail", &Call::fail, py::arg("code"), py::arg("details") = "",
           "Ends the stream with a StatusCode (not OK) and details; queued replies are dropped.")
      .def("add_initial_metadata",
           [](Call& c, const std::string& k, py::handle v) { c.add_metadata(false, k, v); },
           py::arg("key"), py::arg("value"),
           "Adds metadata sent with the first reply: call before the first send (in on_open).")
      .def("add_trailing_metadata",
           [](Call& c, const std::string& k, py::handle v) { c.add_metadata(true, k, v); },
           py::arg("key"), py::arg("value"),
           "Adds metadata sent with the status: call before complete() or fail().")
      .def("_try_send", &Call::try_send, py::arg("text"),
           "Queues one reply if the send queue has room; False if it is full (for pychat.aio: "
           "a WRITABLE event follows).")
      .def("_consumed", &Call::consumed, py::arg("count") = 1,
           "For pychat.aio: done with the `count` oldest messages drained from the event "
           "queue and not yet reported; their room in the call's window goes back.")
      .def("__repr__", [](const Call& c) {
        return "<pychat.Call id=" + std::to_string(c.id()) + " peer='" + c.peer() + "'>";
      });

  py::class_<Server>(m, "Server", "A running Chat server (native part; use pychat.Server).")
      .def(py::init<const std::string&, int, py::object, std::optional<int>, std::optional<int>,
                    std::optional<int>, std::optional<int>, std::optional<double>,
                    std::optional<int64_t>, std::optional<int64_t>, std::optional<int64_t>,
                    std::optional<int>, py::object, const py::dict&, bool, bool, py::dict,
                    std::optional<std::string>, std::optional<std::string>>(),
           py::arg("address"), py::arg("mode"), py::arg("handler"), py::arg("max_message_bytes"),
           py::arg("send_queue_limit"), py::arg("recv_window"), py::arg("dispatcher_threads"),
           py::arg("keepalive"), py::arg("send_queue_bytes"), py::arg("recv_window_bytes"),
           py::arg("max_memory_bytes"), py::arg("completion_queues"),
           py::arg("queue") = py::none(), py::arg("security") = py::dict(),
           py::arg("health") = false, py::arg("reflection") = false,
           py::arg("control") = py::dict(), py::arg("room") = py::none(),
           py::arg("room_name") = py::none())
      .def_property_readonly("port", &Server::port)
      .def_property_readonly("closed", &Server::closed)
      .def("stop", &Server::stop, py::arg("grace") = 5.0,
           "Stops accepting streams, lets open ones finish for `grace` seconds, then cuts the "
           "rest with UNAVAILABLE. Returns how many were cut. 0 if already stopped.")
      .def("close", &Server::close, "Stops with no grace (if running) and frees the server.")
      .def("_stats", &Server::stats, "The counters, in pychat.Stats's field order.");

  m.def("_wait_deferred", &wait_deferred, py::arg("timeout"),
        "Waits until servers dropped inside their own handler are destroyed.");
}

}  // namespace pychat
