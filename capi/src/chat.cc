// The C ABI: thin extern "C" entry points over the C++ core. Each entry
// point validates its arguments, runs inside Guard (no exception crosses),
// and records a thread-local message on failure.
#include <libchat/chat.h>

#include <cxxabi.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "chat/client.h"
#include "chat/event_queue.h"
#include "chat/log.h"
#include "chat/room.h"
#include "chat/server.h"
#include "chat/status.h"

namespace {

// chat_code and the core's Code are one table (CHAT_CODE_TABLE): every
// entry must match by number, and nothing may lie past the table's end.
// A code prints as chat.h names it, without CHAT_ and ERR_.
constexpr bool NamedAlike(const char* c, const char* name) {
  if (c[0] == 'E' && c[1] == 'R' && c[2] == 'R' && c[3] == '_') c += 4;
  for (; *c && *c == *name; ++c, ++name) {
  }
  return *c == *name;
}
#define CHAT_CODE_CHECK(core, c, number, name)                       \
  static_assert(static_cast<int>(chat::Code::core) == CHAT_##c &&    \
                    CHAT_##c == (number) && NamedAlike(#c, name),    \
                "chat_code CHAT_" #c " differs from the core's table");
CHAT_CODE_TABLE(CHAT_CODE_CHECK)
#undef CHAT_CODE_CHECK
static_assert(chat::kMaxCode == CHAT_ERR_LIBRARY_BUG, "the last code of the table changed");
static_assert(sizeof(chat_code) == sizeof(int32_t), "chat_code must stay 32 bits");
static_assert(CHAT_COMPRESSION_NONE == static_cast<int>(chat::Compression::kNone) &&
                  CHAT_COMPRESSION_DEFLATE == static_cast<int>(chat::Compression::kDeflate) &&
                  CHAT_COMPRESSION_GZIP == static_cast<int>(chat::Compression::kGzip),
              "CHAT_COMPRESSION_* are gRPC's numbers, as chat::Compression");

thread_local std::string t_last_error;

// A handle's own copy of its last failure (chat_*_error), for hosts whose
// calls on one handle hop between threads.
class ErrorSlot {
 public:
  void Set(const std::string& message) const {  // const: failures on const handles count too
    std::lock_guard<std::mutex> lock(mu_);
    message_ = message;
  }
  size_t CopyTo(char* buf, size_t size) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (buf && size > 0) {
      size_t n = message_.size() < size - 1 ? message_.size() : size - 1;
      std::memcpy(buf, message_.data(), n);
      buf[n] = '\0';
    }
    return message_.size();
  }

 private:
  mutable std::mutex mu_;
  mutable std::string message_;
};

chat_code Fail(chat_code code, std::string message) {
  t_last_error = std::move(message);
  return code;
}

chat_code FromStatus(const chat::Status& s) {
  if (!s.ok()) t_last_error = s.message();
  return static_cast<chat_code>(s.code());
}

// Records a failure found while handling another (out of memory): itself
// never throws; the message is lost only if even that allocation fails.
chat_code FailQuietly(chat_code code, const char* prefix, const char* what) noexcept {
  try {
    t_last_error = std::string(prefix) + what;
  } catch (...) {
    t_last_error.clear();  // never allocates
  }
  return code;
}

// Runs `body` so that no exception escapes into C.
chat_code Caught() noexcept {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return FailQuietly(CHAT_ERR_NO_MEMORY, "out of memory", "");
  } catch (const std::system_error& e) {  // no thread (std::thread) or the like
    return FailQuietly(CHAT_ERR_SYSTEM, "the system refused a resource: ", e.what());
  } catch (const std::exception& e) {
    return FailQuietly(CHAT_ERR_LIBRARY_BUG, "internal error: ", e.what());
  } catch (...) {
    return FailQuietly(CHAT_ERR_LIBRARY_BUG, "internal error", "");
  }
}

// The guard of every entry point that does not wait: no exception leaves,
// and thread cancellation is held off while it runs (a write() or close()
// deep inside is a cancellation point), so these are truly noexcept.
// Disabling cancellation is a thread-local store, no system call.
template <class F>
chat_code Guard(F&& body) noexcept {
  int state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
  chat_code rc;
  try {
    rc = body();
  } catch (...) {
    rc = Caught();
  }
  pthread_setcancelstate(state, nullptr);
  return rc;
}

// The guard of the calls that wait (chat.h lists them under "Thread
// cancellation"): cancellation is held off here too, and the core opens it
// again only for the waits themselves (AllowCancel, core/src/cancel.h), where
// the library's state is consistent. The forced unwind of pthread_exit /
// pthread_cancel from there goes on unwinding until the thread ends
// (swallowing it aborts the process): that is why these entry points are not
// noexcept, as unwinding through a noexcept frame calls std::terminate. No
// other exception leaves them.
template <class F>
chat_code GuardWaiting(F&& body) {
  struct Held {
    int old;
    Held() { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old); }
    ~Held() { pthread_setcancelstate(old, nullptr); }  // on the unwind too
  } held;
  try {
    return body();
  } catch (abi::__forced_unwind&) {
    throw;
  } catch (...) {
    return Caught();
  }
}

// Guard for entry points that return a value instead of a chat_code:
// `fallback` if anything was thrown.
template <class T, class F>
T GuardValue(T fallback, F&& body) noexcept {
  T value = fallback;
  Guard([&]() -> chat_code {
    value = body();
    return CHAT_OK;
  });
  return value;
}

chat::Timeout Ms(int64_t ms) { return chat::Timeout(ms < 0 ? -1 : ms); }

// A chat_code from the caller may hold any int; reading it as the C++ enum
// when it is outside the enumerators is undefined behaviour, so look at its
// bytes as an integer first.
int32_t RawCode(const chat_code& code) {  // by reference: no enum load
  int32_t raw;
  std::memcpy(&raw, &code, sizeof raw);
  return raw;
}

// Text arguments: NULL only with length 0.
bool TextOk(const char* p, size_t len) { return p != nullptr || len == 0; }
std::string_view View(const char* p, size_t len) { return len ? std::string_view(p, len) : std::string_view(); }

// Handles carry a tag so that a wrong or destroyed pointer is caught when its
// memory still holds the old value (best effort; a freed handle stays a bug).
constexpr uint32_t kServerTag = 0x43535256;  // "CSRV"
constexpr uint32_t kCallTag = 0x4343414c;    // "CCAL"
constexpr uint32_t kClientTag = 0x43434c49;  // "CCLI"
constexpr uint32_t kStreamTag = 0x43535452;  // "CSTR"
constexpr uint32_t kQueueTag = 0x43515545;   // "CQUE"
constexpr uint32_t kRoomTag = 0x43524f4d;    // "CROM"

}  // namespace

struct chat_call {
  uint32_t tag = kCallTag;
  std::shared_ptr<chat::ServerCall> impl;
  // The handle given to a running authenticate: where chat_call_set_principal
  // writes (under principal_mu), and why sends are refused. Null otherwise.
  std::mutex principal_mu;
  std::string* principal_out = nullptr;
  std::atomic<bool> authenticating{false};
  // The library's own until on_close returns, or until the drain after the
  // one that handed out its CLOSE event.
  std::atomic<int> refs{1};
  std::atomic<void*> user_data{nullptr};
  ErrorSlot error;
};

struct chat_server {
  uint32_t tag = kServerTag;
  std::unique_ptr<chat::Server> impl;
  ErrorSlot error;
};

struct chat_client {
  uint32_t tag = kClientTag;
  std::unique_ptr<chat::Client> impl;
  ErrorSlot error;
};

struct chat_queue {
  uint32_t tag = kQueueTag;
  std::shared_ptr<chat::EventQueue> impl;
  std::vector<chat::Event> batch;  // what the last drain handed out
  std::vector<chat_call*> closed;  // calls whose CLOSE it handed out: unref next drain
  ErrorSlot error;
};

struct chat_room {
  uint32_t tag = kRoomTag;
  std::shared_ptr<chat::Room> impl;
  ErrorSlot error;
};

struct chat_stream {
  uint32_t tag = kStreamTag;
  std::shared_ptr<chat::ClientStream> impl;
  std::shared_ptr<chat::EventQueue> queue;  // or null
  ErrorSlot error;
  std::string reply;                  // what the last recv handed out
  std::vector<std::string> batch;     // what the last recv_batch handed out
  std::mutex status_mu;               // chat_stream_status is thread-safe
  chat::Status final_status;          // kept for chat_stream_status's details
  bool have_final = false;
};

namespace {

template <class H>
bool Live(const H* h, uint32_t tag) { return h != nullptr && h->tag == tag; }

chat_code BadHandle(const char* what) {
  return Fail(CHAT_ERR_BAD_ARGUMENT, std::string("not a valid ") + what + " handle");
}

// Runs an entry point on a handle: Guard, plus the handle's own copy of the
// message when it fails (a handle that is not valid has no slot).
// kWaits: the entry point waits (GuardWaiting), else Guard.
template <bool kWaits = false, class H, class F>
chat_code OnHandle(H* h, uint32_t tag, F&& body) noexcept(!kWaits) {
  chat_code rc;
  if constexpr (kWaits) {
    rc = GuardWaiting(std::forward<F>(body));
  } else {
    rc = Guard(std::forward<F>(body));
  }
  if (rc != CHAT_OK && Live(h, tag)) {
    Guard([&]() -> chat_code {  // copying the message allocates
      h->error.Set(t_last_error);
      return CHAT_OK;
    });
  }
  return rc;
}

template <class H>
size_t CopyError(const H* h, uint32_t tag, char* buf, size_t size) noexcept {
  if (buf && size > 0) buf[0] = '\0';
  return GuardValue<size_t>(0, [&] { return Live(h, tag) ? h->error.CopyTo(buf, size) : 0; });
}

// Adapts the C callbacks to the core's Handler. Runs on dispatcher threads.
class CHandler final : public chat::Handler {
 public:
  explicit CHandler(const chat_server_options& o)
      : on_open_(o.on_open), on_message_(o.on_message), on_complete_(o.on_complete),
        on_close_(o.on_close), user_data_(o.user_data) {}

  void OnOpen(const std::shared_ptr<chat::ServerCall>& call) override {
    auto* handle = new chat_call;
    handle->impl = call;
    call->set_host_data(handle);
    if (on_open_) on_open_(handle, user_data_);
  }
  void OnMessage(const std::shared_ptr<chat::ServerCall>& call, std::string_view name,
                 std::string_view message) override {
    on_message_(Handle(call), name.data(), name.size(), message.data(), message.size(),
                user_data_);
  }
  void OnComplete(const std::shared_ptr<chat::ServerCall>& call) override {
    if (on_complete_) {
      on_complete_(Handle(call), user_data_);
    } else {
      call->Complete();
    }
  }
  void OnClose(const std::shared_ptr<chat::ServerCall>& call, const chat::Status& status) override {
    chat_call* handle = Handle(call);
    if (on_close_) {
      on_close_(handle, static_cast<chat_code>(status.code()), status.message().c_str(),
                status.message().size(), user_data_);
    }
    chat_call_unref(handle);  // the library's reference
  }

 private:
  static chat_call* Handle(const std::shared_ptr<chat::ServerCall>& call) {
    return static_cast<chat_call*>(call->host_data());
  }

  chat_on_open_fn on_open_;
  chat_on_message_fn on_message_;
  chat_on_complete_fn on_complete_;
  chat_on_close_fn on_close_;
  void* user_data_;
};

// Sending on a call still being authenticated would start gRPC operations
// on a stream the server has not admitted.
chat_code RefuseWhileAuthenticating() {
  return Fail(CHAT_ERR_BAD_STATE, "the call is being authenticated: it takes no replies yet");
}

// Adapts a C authenticate callback to the core's Authenticator. Runs on a
// transport thread; the handle lives until the callback returns (or the
// host's last chat_call_unref).
chat::Status CAuthenticate(chat_authenticate_fn fn, void* user_data,
                           const std::shared_ptr<chat::ServerCall>& call, const std::string* token,
                           std::string* principal) {
  constexpr size_t kMessageSize = 1024;
  auto* handle = new chat_call;
  handle->impl = call;
  handle->principal_out = principal;
  handle->authenticating = true;
  char message[kMessageSize] = "";
  chat_code rc = fn(handle, token ? token->c_str() : nullptr, message, kMessageSize, user_data);
  {
    std::lock_guard<std::mutex> lock(handle->principal_mu);
    handle->principal_out = nullptr;
    handle->authenticating = false;
  }
  chat_call_unref(handle);
  message[kMessageSize - 1] = '\0';
  int32_t raw = RawCode(rc);
  if (raw == CHAT_OK) return chat::Status::Ok();
  if (raw < 1 || raw > chat::kMaxGrpcCode) {
    return chat::Status(chat::Code::kInternal, "the server's authenticator failed");
  }
  std::string text(message);
  if (!chat::IsValidUtf8(text)) text.clear();
  if (text.empty()) {
    text = raw == CHAT_PERMISSION_DENIED ? "permission denied"
           : raw == CHAT_UNAUTHENTICATED ? "unauthenticated"
                                         : "refused by the server's authenticator";
  }
  return chat::Status(static_cast<chat::Code>(raw), text);
}

// Option structs are append-only; a caller built against version N fills
// the fields of version N, and its struct may be no larger than that. So
// the library writes (init) and reads (start, create, open) only the first
// OptionsSize bytes, and takes the defaults for the rest.
bool KnownVersion(uint32_t v, uint32_t newest) { return v >= 1 && v <= newest; }

// The size of each options struct as `version` laid it out.
size_t OptionsSize(const chat_server_options*, uint32_t version) {
  switch (version) {
    case 1: return offsetof(chat_server_options, send_queue_bytes);
    case 2: return offsetof(chat_server_options, completion_queues);
    case 3: return offsetof(chat_server_options, queue);
    case 4: return offsetof(chat_server_options, tls_cert_chain);
    default: return sizeof(chat_server_options);
  }
}
size_t OptionsSize(const chat_client_options*, uint32_t version) {
  switch (version) {
    case 1: return offsetof(chat_client_options, send_queue_bytes);
    case 2: return offsetof(chat_client_options, tls);
    default: return sizeof(chat_client_options);
  }
}
size_t OptionsSize(const chat_stream_options*, uint32_t version) {
  switch (version) {
    case 1: return offsetof(chat_stream_options, metadata_value_lens);
    case 2: return offsetof(chat_stream_options, queue);
    case 3: return offsetof(chat_stream_options, token);
    default: return sizeof(chat_stream_options);
  }
}

// The check every function taking an options struct makes first.
chat_code CheckOptionsVersion(uint32_t version, const char* init_function, uint32_t newest) {
  if (KnownVersion(version, newest)) return CHAT_OK;
  return Fail(CHAT_ERR_BAD_ARGUMENT, std::string("opts->version is not a known options version "
                                                 "(call ") + init_function + ")");
}

// Copies the caller's struct into `out`, which holds the newest version's
// defaults: only the bytes the caller's version has.
template <class Options>
chat_code ReadOptions(const Options* opts, uint32_t newest, const char* init_function,
                      Options* out) {
  if (!opts) return CHAT_OK;
  if (chat_code rc = CheckOptionsVersion(opts->version, init_function, newest); rc != CHAT_OK) {
    return rc;
  }
  std::memcpy(static_cast<void*>(out), opts, OptionsSize(opts, opts->version));
  return CHAT_OK;
}

}  // namespace

extern "C" {

const char* chat_version(void) noexcept { return CHAT_VERSION_STRING; }
int32_t chat_version_number(void) noexcept { return CHAT_VERSION_NUMBER; }
int32_t chat_abi_version(void) noexcept { return CHAT_ABI_VERSION; }

const char* chat_code_name(chat_code code) noexcept {
  int32_t raw = RawCode(code);
  if (raw < 0 || raw > chat::kMaxCode) return "UNRECOGNIZED";
  return chat::CodeName(static_cast<chat::Code>(raw));
}

const char* chat_last_error(void) noexcept { return t_last_error.c_str(); }

/* ---- logging ---- */

namespace {
// The host's pair, read only inside the sink (under the core's lock).
struct CLogHandler {
  chat_log_fn fn;
  void* user_data;
};

void CLogSink(chat::LogSeverity severity, const char* message, size_t len, void* user_data) {
  auto* h = static_cast<CLogHandler*>(user_data);
  h->fn(static_cast<chat_log_severity>(severity), message, len, h->user_data);
}
}  // namespace

chat_code chat_set_log_handler(chat_log_fn fn, void* user_data, chat_log_severity min_severity) noexcept {
  return Guard([&]() -> chat_code {
    int32_t raw;
    std::memcpy(&raw, &min_severity, sizeof raw);  // any int a C caller may pass
    if (raw < CHAT_LOG_DEBUG || raw > CHAT_LOG_NONE) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "min_severity is not a chat_log_severity");
    }
    auto min = static_cast<chat::LogSeverity>(raw);
    if (chat::InLogSink()) {  // before setter_mu: its holder may be waiting for us
      return Fail(CHAT_ERR_BUSY, "chat_set_log_handler called from the log callback");
    }
    // The pair is handed to the core by pointer, so it is swapped as one
    // under the core's lock: two slots, the one not in use gets the new pair.
    static CLogHandler slots[2];
    static int next = 0;
    static std::mutex setter_mu;  // one setter at a time owns the slots
    std::lock_guard<std::mutex> lock(setter_mu);
    bool ok;
    if (fn) {
      CLogHandler* slot = &slots[next];
      *slot = CLogHandler{fn, user_data};  // not in use: the core holds the other
      ok = chat::SetLogSink(CLogSink, slot, min);
      if (ok) next ^= 1;
    } else {
      ok = chat::SetLogSink(nullptr, nullptr, min);
    }
    if (!ok) return Fail(CHAT_ERR_BUSY, "chat_set_log_handler called from the log callback");
    return CHAT_OK;
  });
}

/* ---- server ---- */

chat_code chat_server_options_init(chat_server_options* opts, uint32_t version) noexcept {
  return Guard([&]() -> chat_code {
    if (!opts) return Fail(CHAT_ERR_BAD_ARGUMENT, "opts is NULL");
    if (!KnownVersion(version, CHAT_SERVER_OPTIONS_VERSION)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "unknown options version");
    }
    chat::ServerOptions d;
    chat_server_options o;
    std::memset(&o, 0, sizeof o);
    o.version = version;
    o.mode = CHAT_MODE_ECHO;
    o.max_message_bytes = static_cast<int32_t>(d.max_message_bytes);
    o.send_queue_limit = static_cast<int32_t>(d.send_queue_limit);
    o.recv_window = static_cast<int32_t>(d.recv_window);
    o.dispatcher_threads = d.dispatcher_threads;
    o.keepalive_ms = d.keepalive_ms;
    o.send_queue_bytes = static_cast<int64_t>(d.send_queue_bytes);
    o.recv_window_bytes = static_cast<int64_t>(d.recv_window_bytes);
    o.max_memory_bytes = static_cast<int64_t>(d.max_memory_bytes);
    o.keepalive_timeout_ms = d.keepalive_timeout_ms;
    o.completion_queues = d.completion_queues;
    o.compression = static_cast<int32_t>(d.compression);
    o.room_max_len = static_cast<int64_t>(d.room_max_len);
    std::memcpy(static_cast<void*>(opts), &o, OptionsSize(opts, version));
    return CHAT_OK;
  });
}

chat_code chat_server_start(const char* address, const chat_server_options* opts,
                            chat_server** out) noexcept {
  return Guard([&]() -> chat_code {
    if (out) *out = nullptr;
    if (!address || !out) return Fail(CHAT_ERR_BAD_ARGUMENT, "address and out are required");
    chat_server_options o;
    chat_server_options_init(&o, CHAT_SERVER_OPTIONS_VERSION);
    if (chat_code rc = ReadOptions(opts, CHAT_SERVER_OPTIONS_VERSION, "chat_server_options_init", &o);
        rc != CHAT_OK) {
      return rc;
    }
    if (o.mode < CHAT_MODE_ECHO || o.mode > CHAT_MODE_CUSTOM) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "unknown mode");
    }
    if (o.max_message_bytes <= 0 || o.send_queue_limit <= 0 || o.recv_window <= 0 ||
        o.dispatcher_threads <= 0 || o.keepalive_ms < 0 || o.send_queue_bytes <= 0 ||
        o.recv_window_bytes <= 0 || o.max_memory_bytes <= 0 || o.keepalive_timeout_ms <= 0) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "limits and thread counts must be positive");
    }
    if (o.completion_queues < 0 || o.completion_queues > 256) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "completion_queues must be 0 (the default count) to 256");
    }
    chat::ServerOptions so;
    so.address = address;
    so.max_message_bytes = static_cast<size_t>(o.max_message_bytes);
    so.send_queue_limit = static_cast<size_t>(o.send_queue_limit);
    so.recv_window = static_cast<size_t>(o.recv_window);
    so.dispatcher_threads = o.dispatcher_threads;
    so.keepalive_ms = o.keepalive_ms;
    so.keepalive_timeout_ms = o.keepalive_timeout_ms;
    so.send_queue_bytes = static_cast<size_t>(o.send_queue_bytes);
    so.recv_window_bytes = static_cast<size_t>(o.recv_window_bytes);
    so.max_memory_bytes = static_cast<size_t>(o.max_memory_bytes);
    so.completion_queues = o.completion_queues;
    if (o.tls_client_cert < CHAT_CLIENT_CERT_NONE || o.tls_client_cert > CHAT_CLIENT_CERT_REQUIRE) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "tls_client_cert is not a CHAT_CLIENT_CERT_* value");
    }
    so.tls_cert_chain = o.tls_cert_chain ? o.tls_cert_chain : "";
    so.tls_private_key = o.tls_private_key ? o.tls_private_key : "";
    so.tls_client_ca = o.tls_client_ca ? o.tls_client_ca : "";
    so.client_cert = o.tls_client_cert == CHAT_CLIENT_CERT_REQUIRE   ? chat::ClientCertMode::kRequire
                     : o.tls_client_cert == CHAT_CLIENT_CERT_REQUEST ? chat::ClientCertMode::kRequest
                                                                     : chat::ClientCertMode::kNone;
    if (o.authenticate) {
      so.authenticate = [fn = o.authenticate, ud = o.authenticate_user_data](
                            const std::shared_ptr<chat::ServerCall>& call, const std::string* token,
                            std::string* principal) {
        return CAuthenticate(fn, ud, call, token, principal);
      };
    }
    if ((o.health != 0 && o.health != 1) || (o.reflection != 0 && o.reflection != 1)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "health and reflection must be 0 (off) or 1 (on)");
    }
    so.health = o.health == 1;
    so.reflection = o.reflection == 1;
    if (!chat::IsCompression(o.compression)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "compression must be a CHAT_COMPRESSION_* value");
    }
    so.compression = static_cast<chat::Compression>(o.compression);
    if (o.max_streams < 0 || o.max_concurrent_streams < 0 || o.max_connection_age_ms < 0 ||
        o.max_connection_age_grace_ms < 0 || o.max_connection_idle_ms < 0) {
      return Fail(CHAT_ERR_BAD_ARGUMENT,
                  "max_streams, max_concurrent_streams and the connection ages must be >= 0");
    }
    so.max_streams = o.max_streams;
    so.max_concurrent_streams = o.max_concurrent_streams;
    so.max_connection_age_ms = o.max_connection_age_ms;
    so.max_connection_age_grace_ms = o.max_connection_age_grace_ms;
    so.max_connection_idle_ms = o.max_connection_idle_ms;
    if (o.room_max_len <= 0) return Fail(CHAT_ERR_BAD_ARGUMENT, "room_max_len must be positive");
    so.room_url = o.room_url ? o.room_url : "";
    so.room_name = o.room_name ? o.room_name : "";
    so.room_max_len = static_cast<size_t>(o.room_max_len);
    bool callbacks = o.on_open || o.on_message || o.on_complete || o.on_close;
    if (o.mode != CHAT_MODE_CUSTOM && callbacks) {  // they would never run
      return Fail(CHAT_ERR_BAD_ARGUMENT,
                  "callbacks need CHAT_MODE_CUSTOM (echo and broadcast run none)");
    }
    if (o.queue) {
      if (!Live(o.queue, kQueueTag)) return BadHandle("chat_queue");
      if (o.mode != CHAT_MODE_CUSTOM) {
        return Fail(CHAT_ERR_BAD_ARGUMENT, "an event queue needs CHAT_MODE_CUSTOM");
      }
      if (callbacks) {
        return Fail(CHAT_ERR_BAD_ARGUMENT,
                    "a server on an event queue takes no callbacks (set on_* to NULL)");
      }
    }
    switch (o.mode) {
      case CHAT_MODE_ECHO: so.mode = chat::Mode::kEcho; break;
      case CHAT_MODE_BROADCAST: so.mode = chat::Mode::kBroadcast; break;
      default:
        so.mode = chat::Mode::kCustom;
        if (o.queue) {
          so.queue = o.queue->impl;
          so.queue_user_data = o.user_data;
          so.hold_until_consumed = o.hold_until_consumed != 0;
        } else {
          if (!o.on_message) return Fail(CHAT_ERR_BAD_ARGUMENT, "custom mode needs on_message");
          so.handler = std::make_shared<CHandler>(o);
        }
    }
    auto server = std::make_unique<chat_server>();
    chat::Status s = chat::Server::Start(so, &server->impl);
    if (!s.ok()) return FromStatus(s);
    *out = server.release();
    return CHAT_OK;
  });
}

int32_t chat_server_port(const chat_server* server) noexcept {
  return GuardValue<int32_t>(-1, [&] {
    return Live(server, kServerTag) && server->impl ? server->impl->port() : -1;
  });
}

chat_code chat_server_stop(chat_server* server, int64_t grace_ms, int32_t* cut) {
  return OnHandle<true>(server, kServerTag, [&]() -> chat_code {
    if (cut) *cut = 0;
    if (!Live(server, kServerTag)) return BadHandle("chat_server");
    if (grace_ms < 0) return Fail(CHAT_ERR_BAD_ARGUMENT, "grace_ms must be >= 0");
    int n = 0;
    chat::Status s = server->impl->Stop(chat::Timeout(grace_ms), &n);
    if (cut) *cut = n;
    return FromStatus(s);
  });
}

chat_code chat_server_destroy(chat_server* server) noexcept {
  return OnHandle(server, kServerTag, [&]() -> chat_code {
    if (!server) return CHAT_OK;
    if (!Live(server, kServerTag)) return BadHandle("chat_server");
    int cut = 0;
    chat::Status s = server->impl->Stop(chat::kNoWait, &cut);
    if (s.code() == chat::Code::kBusy) return FromStatus(s);
    server->tag = 0;
    delete server;
    return CHAT_OK;
  });
}

/* ---- calls ---- */

uint64_t chat_call_id(const chat_call* call) noexcept {
  return GuardValue<uint64_t>(0, [&] { return Live(call, kCallTag) ? call->impl->id() : 0; });
}

const char* chat_call_peer(const chat_call* call) noexcept {
  return GuardValue<const char*>("", [&] {
    return Live(call, kCallTag) ? call->impl->peer().c_str() : "";
  });
}

chat_code chat_call_metadata(const chat_call* call, const char* key, const char** value,
                             size_t* len) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (!key || !value || !len) return Fail(CHAT_ERR_BAD_ARGUMENT, "key, value and len are required");
    const auto& md = call->impl->metadata();
    auto it = md.find(key);
    if (it == md.end()) return Fail(CHAT_ERR_MISSING, std::string("no metadata '") + key + "'");
    *value = it->second.c_str();
    *len = it->second.size();
    return CHAT_OK;
  });
}

chat_code chat_call_metadata_count(const chat_call* call, size_t* count) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (count) *count = 0;
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (!count) return Fail(CHAT_ERR_BAD_ARGUMENT, "count is NULL");
    *count = call->impl->metadata().size();
    return CHAT_OK;
  });
}

chat_code chat_call_metadata_at(const chat_call* call, size_t index, const char** key,
                                size_t* key_len, const char** value, size_t* value_len) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (!key || !key_len || !value || !value_len) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "key, key_len, value and value_len are required");
    }
    const auto& md = call->impl->metadata();
    if (index >= md.size()) return Fail(CHAT_ERR_BAD_ARGUMENT, "metadata index out of range");
    auto it = std::next(md.begin(), static_cast<std::ptrdiff_t>(index));
    *key = it->first.c_str();
    *key_len = it->first.size();
    *value = it->second.c_str();
    *value_len = it->second.size();
    return CHAT_OK;
  });
}

const char* chat_call_peer_subject(const chat_call* call) noexcept {
  return GuardValue<const char*>("", [&] {
    return Live(call, kCallTag) ? call->impl->peer_identity().subject.c_str() : "";
  });
}

chat_code chat_call_peer_san_count(const chat_call* call, size_t* count) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (count) *count = 0;
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (!count) return Fail(CHAT_ERR_BAD_ARGUMENT, "count is NULL");
    *count = call->impl->peer_identity().sans.size();
    return CHAT_OK;
  });
}

chat_code chat_call_peer_san(const chat_call* call, size_t index, const char** san) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (!san) return Fail(CHAT_ERR_BAD_ARGUMENT, "san is NULL");
    const auto& sans = call->impl->peer_identity().sans;
    if (index >= sans.size()) return Fail(CHAT_ERR_BAD_ARGUMENT, "SAN index out of range");
    *san = sans[index].c_str();
    return CHAT_OK;
  });
}

chat_code chat_call_set_principal(chat_call* call, const char* principal) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (!principal) return Fail(CHAT_ERR_BAD_ARGUMENT, "principal is NULL");
    if (!chat::IsValidUtf8(principal)) return Fail(CHAT_ERR_BAD_ARGUMENT, "principal is not valid UTF-8");
    std::lock_guard<std::mutex> lock(call->principal_mu);
    if (!call->principal_out) {
      return Fail(CHAT_ERR_BAD_STATE, "a principal is set only from inside authenticate");
    }
    *call->principal_out = principal;
    return CHAT_OK;
  });
}

const char* chat_call_principal(const chat_call* call) noexcept {
  return GuardValue<const char*>("", [&] {
    return Live(call, kCallTag) ? call->impl->principal().c_str() : "";
  });
}

chat_code chat_call_send(chat_call* call, const char* text, size_t len, int64_t timeout_ms) {
  return OnHandle<true>(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (call->authenticating) return RefuseWhileAuthenticating();
    if (!TextOk(text, len)) return Fail(CHAT_ERR_BAD_ARGUMENT, "text is NULL");
    return FromStatus(call->impl->Send(View(text, len), Ms(timeout_ms)));
  });
}

chat_code chat_call_complete(chat_call* call) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (call->authenticating) return RefuseWhileAuthenticating();
    return FromStatus(call->impl->Complete());
  });
}

chat_code chat_call_fail(chat_call* call, chat_code code, const char* details, size_t details_len) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (call->authenticating) return RefuseWhileAuthenticating();
    if (!TextOk(details, details_len)) return Fail(CHAT_ERR_BAD_ARGUMENT, "details is NULL");
    int32_t raw = RawCode(code);
    if (raw < 1 || raw > chat::kMaxGrpcCode) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "fail needs a gRPC error code (1..16)");
    }
    return FromStatus(call->impl->Fail(static_cast<chat::Code>(raw), View(details, details_len)));
  });
}

chat_code chat_call_ref(chat_call* call) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    call->refs.fetch_add(1, std::memory_order_relaxed);
    return CHAT_OK;
  });
}

void chat_call_unref(chat_call* call) noexcept {
  Guard([&]() -> chat_code {
    if (Live(call, kCallTag) && call->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      call->tag = 0;
      delete call;
    }
    return CHAT_OK;
  });
}

/* ---- client ---- */

chat_code chat_client_options_init(chat_client_options* opts, uint32_t version) noexcept {
  return Guard([&]() -> chat_code {
    if (!opts) return Fail(CHAT_ERR_BAD_ARGUMENT, "opts is NULL");
    if (!KnownVersion(version, CHAT_CLIENT_OPTIONS_VERSION)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "unknown options version");
    }
    chat::ClientOptions d;
    chat_client_options o;
    std::memset(&o, 0, sizeof o);
    o.version = version;
    o.max_message_bytes = static_cast<int32_t>(d.max_message_bytes);
    o.send_queue_limit = static_cast<int32_t>(d.send_queue_limit);
    o.recv_queue_limit = static_cast<int32_t>(d.recv_queue_limit);
    o.send_queue_bytes = static_cast<int64_t>(d.send_queue_bytes);
    o.recv_queue_bytes = static_cast<int64_t>(d.recv_queue_bytes);
    o.keepalive_ms = d.keepalive_ms;
    o.keepalive_timeout_ms = d.keepalive_timeout_ms;
    o.compression = static_cast<int32_t>(d.compression);
    std::memcpy(static_cast<void*>(opts), &o, OptionsSize(opts, version));
    return CHAT_OK;
  });
}

chat_code chat_client_create(const char* target, const chat_client_options* opts,
                             chat_client** out) noexcept {
  return Guard([&]() -> chat_code {
    if (out) *out = nullptr;
    if (!target || !out) return Fail(CHAT_ERR_BAD_ARGUMENT, "target and out are required");
    chat_client_options o;
    chat_client_options_init(&o, CHAT_CLIENT_OPTIONS_VERSION);
    if (chat_code rc = ReadOptions(opts, CHAT_CLIENT_OPTIONS_VERSION, "chat_client_options_init", &o);
        rc != CHAT_OK) {
      return rc;
    }
    if (o.max_message_bytes <= 0 || o.send_queue_limit <= 0 || o.recv_queue_limit <= 0 ||
        o.send_queue_bytes <= 0 || o.recv_queue_bytes <= 0 || o.keepalive_timeout_ms <= 0) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "limits must be positive");
    }
    chat::ClientOptions co;
    co.max_message_bytes = static_cast<size_t>(o.max_message_bytes);
    co.send_queue_limit = static_cast<size_t>(o.send_queue_limit);
    co.recv_queue_limit = static_cast<size_t>(o.recv_queue_limit);
    co.send_queue_bytes = static_cast<size_t>(o.send_queue_bytes);
    co.recv_queue_bytes = static_cast<size_t>(o.recv_queue_bytes);
    co.keepalive_ms = o.keepalive_ms;
    co.keepalive_timeout_ms = o.keepalive_timeout_ms;
    co.tls = o.tls != 0;
    co.tls_root_certs = o.tls_root_certs ? o.tls_root_certs : "";
    co.tls_cert_chain = o.tls_cert_chain ? o.tls_cert_chain : "";
    co.tls_private_key = o.tls_private_key ? o.tls_private_key : "";
    co.tls_server_name = o.tls_server_name ? o.tls_server_name : "";
    co.token = o.token ? o.token : "";
    co.allow_insecure_token = o.allow_insecure_token != 0;
    if (!chat::IsCompression(o.compression)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "compression must be a CHAT_COMPRESSION_* value");
    }
    co.compression = static_cast<chat::Compression>(o.compression);
    auto client = std::make_unique<chat_client>();
    chat::Status s = chat::Client::Create(target, co, &client->impl);
    if (!s.ok()) return FromStatus(s);
    *out = client.release();
    return CHAT_OK;
  });
}

void chat_client_destroy(chat_client* client) noexcept {
  Guard([&]() -> chat_code {
    if (!Live(client, kClientTag)) return CHAT_OK;
    client->tag = 0;
    delete client;
    return CHAT_OK;
  });
}

chat_code chat_stream_options_init(chat_stream_options* opts, uint32_t version) noexcept {
  return Guard([&]() -> chat_code {
    if (!opts) return Fail(CHAT_ERR_BAD_ARGUMENT, "opts is NULL");
    if (!KnownVersion(version, CHAT_STREAM_OPTIONS_VERSION)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "unknown options version");
    }
    std::memset(opts, 0, OptionsSize(opts, version));
    opts->version = version;
    opts->deadline_ms = -1;
    if (version >= 4) opts->compression = -1;
    return CHAT_OK;
  });
}

chat_code chat_client_open(chat_client* client, const chat_stream_options* opts,
                           chat_stream** out) noexcept {
  return OnHandle(client, kClientTag, [&]() -> chat_code {
    if (out) *out = nullptr;
    if (!Live(client, kClientTag)) return BadHandle("chat_client");
    if (!out) return Fail(CHAT_ERR_BAD_ARGUMENT, "out is NULL");
    chat::StreamOptions so;
    if (opts) {
      if (chat_code rc = CheckOptionsVersion(opts->version, "chat_stream_options_init",
                                             CHAT_STREAM_OPTIONS_VERSION);
          rc != CHAT_OK) {
        return rc;
      }
      const size_t* lens = opts->version >= 2 ? opts->metadata_value_lens : nullptr;
      so.deadline = Ms(opts->deadline_ms);
      so.wait_for_ready = opts->wait_for_ready != 0;
      if (opts->version >= 4 && opts->compression != -1) {
        if (!chat::IsCompression(opts->compression)) {
          return Fail(CHAT_ERR_BAD_ARGUMENT,
                      "compression must be -1 (the client's) or a CHAT_COMPRESSION_* value");
        }
        so.compression = static_cast<chat::Compression>(opts->compression);
      }
      if (opts->version >= 3 && opts->queue) {
        if (!Live(opts->queue, kQueueTag)) return BadHandle("chat_queue");
        so.queue = opts->queue->impl;
      }
      if (opts->version >= 4 && opts->token) so.token = opts->token;
      if (opts->metadata_count > 0 && !opts->metadata) {
        return Fail(CHAT_ERR_BAD_ARGUMENT, "metadata is NULL but metadata_count is not 0");
      }
      for (size_t i = 0; i < opts->metadata_count; ++i) {
        const chat_metadata& m = opts->metadata[i];
        if (!m.key || !m.value) return Fail(CHAT_ERR_BAD_ARGUMENT, "metadata key or value is NULL");
        so.metadata.emplace_back(m.key, lens ? std::string(m.value, lens[i]) : std::string(m.value));
      }
    }
    auto stream = std::make_unique<chat_stream>();
    if (so.queue) {
      stream->queue = so.queue;
      so.tag = stream.get();  // the queue's events name the handle
      so.user_data = opts->user_data;
      so.hold_until_consumed = opts->hold_until_consumed != 0;
    }
    chat::Status s = client->impl->Open(so, &stream->impl);
    if (!s.ok()) return FromStatus(s);
    *out = stream.release();
    return CHAT_OK;
  });
}

chat_code chat_stream_send(chat_stream* stream, const char* name, size_t name_len,
                           const char* message, size_t message_len, int64_t timeout_ms) {
  return OnHandle<true>(stream, kStreamTag, [&]() -> chat_code {
    if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
    if (!TextOk(name, name_len) || !TextOk(message, message_len)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "name or message is NULL");
    }
    return FromStatus(
        stream->impl->Send(View(name, name_len), View(message, message_len), Ms(timeout_ms)));
  });
}

chat_code chat_stream_complete(chat_stream* stream) noexcept {
  return OnHandle(stream, kStreamTag, [&]() -> chat_code {
    if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
    return FromStatus(stream->impl->Complete());
  });
}

chat_code chat_stream_cancel(chat_stream* stream) noexcept {
  return OnHandle(stream, kStreamTag, [&]() -> chat_code {
    if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
    return FromStatus(stream->impl->Cancel());
  });
}

chat_code chat_stream_recv(chat_stream* stream, int64_t timeout_ms, const char** text,
                           size_t* len) {
  return OnHandle<true>(stream, kStreamTag, [&]() -> chat_code {
    if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
    if (!text || !len) return Fail(CHAT_ERR_BAD_ARGUMENT, "text and len are required");
    chat::Status s = stream->impl->Recv(&stream->reply, Ms(timeout_ms));
    if (!s.ok()) return FromStatus(s);
    *text = stream->reply.c_str();
    *len = stream->reply.size();
    return CHAT_OK;
  });
}

chat_code chat_stream_recv_batch(chat_stream* stream, int64_t timeout_ms, chat_text* out,
                                 size_t max, size_t* count) {
  return OnHandle<true>(stream, kStreamTag, [&]() -> chat_code {
    if (count) *count = 0;
    if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
    if (!out || !count || max == 0) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "out and count are required and max must be > 0");
    }
    stream->batch.clear();
    chat::Status s = stream->impl->RecvBatch(&stream->batch, max, Ms(timeout_ms));
    if (!s.ok()) return FromStatus(s);
    for (size_t i = 0; i < stream->batch.size(); ++i) {
      out[i].data = stream->batch[i].c_str();
      out[i].len = stream->batch[i].size();
    }
    *count = stream->batch.size();
    return CHAT_OK;
  });
}

chat_code chat_stream_wait(chat_stream* stream, int64_t timeout_ms) {
  return OnHandle<true>(stream, kStreamTag, [&]() -> chat_code {
    if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
    return FromStatus(stream->impl->Wait(Ms(timeout_ms)));
  });
}

chat_code chat_stream_status(chat_stream* stream, chat_code* code, const char** details,
                             size_t* details_len) noexcept {
  return OnHandle(stream, kStreamTag, [&]() -> chat_code {
    if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
    if (!code) return Fail(CHAT_ERR_BAD_ARGUMENT, "code is NULL");
    std::lock_guard<std::mutex> lock(stream->status_mu);
    if (!stream->have_final) {
      chat::Status s = stream->impl->FinalStatus();
      if (s.code() == chat::Code::kBadState) return FromStatus(s);
      stream->final_status = std::move(s);
      stream->have_final = true;
    }
    *code = static_cast<chat_code>(stream->final_status.code());
    if (details) *details = stream->final_status.message().c_str();
    if (details_len) *details_len = stream->final_status.message().size();
    return CHAT_OK;
  });
}

void chat_stream_destroy(chat_stream* stream) noexcept {
  Guard([&]() -> chat_code {
    if (!Live(stream, kStreamTag)) return CHAT_OK;
    stream->impl->Close();
    stream->tag = 0;
    delete stream;
    return CHAT_OK;
  });
}

chat_code chat_call_set_user_data(chat_call* call, void* user_data) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    call->user_data.store(user_data, std::memory_order_release);
    return CHAT_OK;
  });
}

void* chat_call_user_data(const chat_call* call) noexcept {
  return Live(call, kCallTag) ? call->user_data.load(std::memory_order_acquire) : nullptr;
}

chat_code chat_call_consumed(chat_call* call, size_t count) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    return FromStatus(call->impl->Consumed(count));
  });
}

chat_code chat_stream_consumed(chat_stream* stream, size_t count) noexcept {
  return OnHandle(stream, kStreamTag, [&]() -> chat_code {
    if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
    return FromStatus(stream->impl->Consumed(count));
  });
}

/* ---- error details per handle ---- */

size_t chat_server_error(const chat_server* server, char* buf, size_t size) noexcept {
  return CopyError(server, kServerTag, buf, size);
}
size_t chat_call_error(const chat_call* call, char* buf, size_t size) noexcept {
  return CopyError(call, kCallTag, buf, size);
}
size_t chat_client_error(const chat_client* client, char* buf, size_t size) noexcept {
  return CopyError(client, kClientTag, buf, size);
}
size_t chat_stream_error(const chat_stream* stream, char* buf, size_t size) noexcept {
  return CopyError(stream, kStreamTag, buf, size);
}
size_t chat_queue_error(const chat_queue* queue, char* buf, size_t size) noexcept {
  return CopyError(queue, kQueueTag, buf, size);
}

/* ---- event queue ---- */

chat_code chat_queue_create(chat_queue** out) noexcept {
  return Guard([&]() -> chat_code {
    if (!out) return Fail(CHAT_ERR_BAD_ARGUMENT, "out is NULL");
    *out = nullptr;
    auto queue = std::make_unique<chat_queue>();
    chat::Status s = chat::EventQueue::Create(&queue->impl);
    if (!s.ok()) return FromStatus(s);
    *out = queue.release();
    return CHAT_OK;
  });
}

int chat_queue_fd(const chat_queue* queue) noexcept {
  return GuardValue<int>(-1, [&] { return Live(queue, kQueueTag) ? queue->impl->fd() : -1; });
}

namespace {
// A server event's call handle: made when its OPEN is drained (the host's
// thread, before any other event of the call), the library's reference
// dropped at the drain after the one that hands out its CLOSE.
chat_call* CallHandle(const std::shared_ptr<chat::ServerCall>& call) {
  auto* handle = static_cast<chat_call*>(call->host_data());
  if (!handle) {
    handle = new chat_call;
    handle->impl = call;
    call->set_host_data(handle);
  }
  return handle;
}

// The queue's CLOSE events that no drain will hand out: release their
// calls' handles. Stateless: it runs after the chat_queue is gone too.
void DropEvent(chat::Event& e) {
  if (e.type != chat::EventType::kClose || !e.call) return;
  if (auto* handle = static_cast<chat_call*>(e.call->host_data())) chat_call_unref(handle);
}
}  // namespace

chat_code chat_queue_drain(chat_queue* queue, int64_t timeout_ms, chat_event* out, size_t max,
                           size_t* count) {
  return OnHandle<true>(queue, kQueueTag, [&]() -> chat_code {
    if (count) *count = 0;
    if (!Live(queue, kQueueTag)) return BadHandle("chat_queue");
    if (!out || !count || max == 0) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "out and count are required and max must be > 0");
    }
    for (chat_call* call : queue->closed) chat_call_unref(call);
    queue->closed.clear();
    queue->batch.clear();
    chat::Status s = queue->impl->Drain(&queue->batch, max, Ms(timeout_ms));
    if (!s.ok()) return FromStatus(s);
    size_t n = 0;
    for (chat::Event& e : queue->batch) {
      chat_event& c = out[n++];
      c.type = static_cast<int32_t>(e.type);
      c.code = static_cast<chat_code>(e.code);
      c.call = nullptr;
      c.stream = nullptr;
      c.user_data = nullptr;
      c.name = nullptr;
      c.name_len = 0;
      c.text = nullptr;
      c.text_len = 0;
      if (e.call) {
        c.call = CallHandle(e.call);
        c.user_data = c.call->user_data.load(std::memory_order_acquire);
        if (!c.user_data) c.user_data = e.user_data;  // the server's
        if (e.type == chat::EventType::kClose) queue->closed.push_back(c.call);
      } else if (e.tag) {
        // Not dereferenced: another thread may be destroying the stream.
        c.stream = static_cast<chat_stream*>(e.tag);
        c.user_data = e.user_data;
      }
      switch (e.type) {
        case chat::EventType::kMessage:
          c.name = e.name.c_str();
          c.name_len = e.name.size();
          [[fallthrough]];
        case chat::EventType::kReply:
        case chat::EventType::kClose:
        case chat::EventType::kEnd:
          c.text = e.text.c_str();
          c.text_len = e.text.size();
          break;
        default: break;
      }
    }
    *count = n;
    return CHAT_OK;
  });
}

chat_code chat_queue_wake(chat_queue* queue) noexcept {
  return OnHandle(queue, kQueueTag, [&]() -> chat_code {
    if (!Live(queue, kQueueTag)) return BadHandle("chat_queue");
    queue->impl->Wake();
    return CHAT_OK;
  });
}

void chat_queue_destroy(chat_queue* queue) noexcept {
  Guard([&]() -> chat_code {
    if (!Live(queue, kQueueTag)) return CHAT_OK;
    for (chat_call* call : queue->closed) chat_call_unref(call);
    queue->closed.clear();
    queue->batch.clear();
    // Servers and streams still running hold the core queue: it lives on,
    // closed, dropping what they push (and releasing those calls' handles).
    queue->impl->Close(DropEvent);
    queue->tag = 0;
    delete queue;
    return CHAT_OK;
  });
}

}  // extern "C"

/* ---- stats ---- */

namespace {

size_t StatsSize(uint32_t version) { return version == 1 ? sizeof(chat_stats) : 0; }

chat_code FillStats(const chat::Stats& in, chat_stats* out) {
  chat_stats s;
  std::memset(&s, 0, sizeof s);
  s.version = out->version;
  s.streams_open = in.streams_open;
  s.streams_total = in.streams_total;
  s.streams_refused = in.streams_refused;
  s.streams_cut = in.streams_cut;
  s.messages_in = in.messages_in;
  s.messages_out = in.messages_out;
  s.bytes_in = in.bytes_in;
  s.bytes_out = in.bytes_out;
  std::memcpy(static_cast<void*>(out), &s, StatsSize(out->version));
  return CHAT_OK;
}

chat_code CheckStats(const chat_stats* stats) {
  if (!stats) return Fail(CHAT_ERR_BAD_ARGUMENT, "stats is NULL");
  if (!KnownVersion(stats->version, CHAT_STATS_VERSION)) {
    return Fail(CHAT_ERR_BAD_ARGUMENT,
                "stats->version is not a known stats version (set it to CHAT_STATS_VERSION)");
  }
  return CHAT_OK;
}

}  // namespace

chat_code chat_server_stats(const chat_server* server, chat_stats* stats) noexcept {
  return OnHandle(server, kServerTag, [&]() -> chat_code {
    if (!Live(server, kServerTag)) return BadHandle("chat_server");
    if (chat_code rc = CheckStats(stats); rc != CHAT_OK) return rc;
    return FillStats(server->impl->stats(), stats);
  });
}

chat_code chat_client_stats(const chat_client* client, chat_stats* stats) noexcept {
  return OnHandle(client, kClientTag, [&]() -> chat_code {
    if (!Live(client, kClientTag)) return BadHandle("chat_client");
    if (chat_code rc = CheckStats(stats); rc != CHAT_OK) return rc;
    return FillStats(client->impl->stats(), stats);
  });
}

/* ---- server metadata ---- */

namespace {

template <class Add>
chat_code AddCallMetadata(chat_call* call, const char* key, const char* value, size_t value_len,
                          Add add) {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (!key || (!value && value_len > 0)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "key is NULL, or value is NULL with value_len > 0");
    }
    return FromStatus(add(*call->impl, std::string_view(key),
                          std::string_view(value ? value : "", value_len)));
  });
}

// The server's `which` metadata of a stream, or a failure code.
chat_code StreamMetadata(chat_stream* stream, int32_t which, const chat::Metadata** md) {
  if (!Live(stream, kStreamTag)) return BadHandle("chat_stream");
  if (which != CHAT_METADATA_INITIAL && which != CHAT_METADATA_TRAILING) {
    return Fail(CHAT_ERR_BAD_ARGUMENT, "which must be CHAT_METADATA_INITIAL or _TRAILING");
  }
  return FromStatus(stream->impl->ServerMetadata(which == CHAT_METADATA_TRAILING, md));
}

}  // namespace

chat_code chat_call_add_initial_metadata(chat_call* call, const char* key, const char* value,
                                         size_t value_len) noexcept {
  return AddCallMetadata(call, key, value, value_len,
                         [](chat::ServerCall& c, std::string_view k, std::string_view v) {
                           return c.AddInitialMetadata(k, v);
                         });
}

chat_code chat_call_add_trailing_metadata(chat_call* call, const char* key, const char* value,
                                          size_t value_len) noexcept {
  return AddCallMetadata(call, key, value, value_len,
                         [](chat::ServerCall& c, std::string_view k, std::string_view v) {
                           return c.AddTrailingMetadata(k, v);
                         });
}

chat_code chat_stream_metadata_count(chat_stream* stream, int32_t which, size_t* count) noexcept {
  return OnHandle(stream, kStreamTag, [&]() -> chat_code {
    if (count) *count = 0;
    if (!count) return Fail(CHAT_ERR_BAD_ARGUMENT, "count is NULL");
    const chat::Metadata* md = nullptr;
    if (chat_code rc = StreamMetadata(stream, which, &md); rc != CHAT_OK) return rc;
    *count = md->size();
    return CHAT_OK;
  });
}

chat_code chat_stream_metadata_at(chat_stream* stream, int32_t which, size_t index,
                                  const char** key, size_t* key_len, const char** value,
                                  size_t* value_len) noexcept {
  return OnHandle(stream, kStreamTag, [&]() -> chat_code {
    if (!key || !key_len || !value || !value_len) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "key, key_len, value and value_len are required");
    }
    const chat::Metadata* md = nullptr;
    if (chat_code rc = StreamMetadata(stream, which, &md); rc != CHAT_OK) return rc;
    if (index >= md->size()) return Fail(CHAT_ERR_BAD_ARGUMENT, "metadata index out of range");
    const auto& [k, v] = (*md)[index];
    *key = k.c_str();
    *key_len = k.size();
    *value = v.c_str();
    *value_len = v.size();
    return CHAT_OK;
  });
}

/* ---- deadlines ---- */

chat_code chat_call_time_left(const chat_call* call, int64_t* ms_left) noexcept {
  return OnHandle(call, kCallTag, [&]() -> chat_code {
    if (ms_left) *ms_left = -1;
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (!ms_left) return Fail(CHAT_ERR_BAD_ARGUMENT, "ms_left is NULL");
    chat::Timeout left = call->impl->TimeLeft();
    *ms_left = left < chat::Timeout::zero() ? -1 : static_cast<int64_t>(left.count());
    return CHAT_OK;
  });
}

/* ---- rooms ---- */

namespace {
// The rooms whose on_line runs on this thread (chat_room_destroy refuses
// them): a room's on_line may publish to another room, whose on_line then
// runs inside it.
thread_local std::vector<const chat_room*> t_rooms_on_line;

bool OnLineOf(const chat_room* room) {
  return std::find(t_rooms_on_line.begin(), t_rooms_on_line.end(), room) != t_rooms_on_line.end();
}
}  // namespace

chat_code chat_room_options_init(chat_room_options* opts, uint32_t version) noexcept {
  return Guard([&]() -> chat_code {
    if (!opts) return Fail(CHAT_ERR_BAD_ARGUMENT, "opts is NULL");
    if (!KnownVersion(version, CHAT_ROOM_OPTIONS_VERSION)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "unknown options version");
    }
    std::memset(opts, 0, sizeof *opts);
    opts->version = version;
    opts->max_len = static_cast<int64_t>(chat::RoomOptions().max_len);
    return CHAT_OK;
  });
}

chat_code chat_room_open(const chat_room_options* opts, chat_room** out) noexcept {
  return Guard([&]() -> chat_code {
    if (!out) return Fail(CHAT_ERR_BAD_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (!opts) return Fail(CHAT_ERR_BAD_ARGUMENT, "opts is NULL");
    if (chat_code rc = CheckOptionsVersion(opts->version, "chat_room_options_init",
                                           CHAT_ROOM_OPTIONS_VERSION);
        rc != CHAT_OK) {
      return rc;
    }
    if (opts->max_len <= 0) return Fail(CHAT_ERR_BAD_ARGUMENT, "max_len must be positive");
    auto room = std::make_unique<chat_room>();
    chat::RoomOptions ro;
    ro.url = opts->url ? opts->url : "";
    ro.name = opts->name ? opts->name : "";
    ro.max_len = static_cast<size_t>(opts->max_len);
    if (chat_on_line_fn on_line = opts->on_line) {
      chat_room* handle = room.get();
      void* user_data = opts->user_data;
      ro.on_line = [handle, on_line, user_data](std::string_view line) {
        struct Scope {  // also when the thread is unwound (pthread_exit)
          explicit Scope(const chat_room* r) { t_rooms_on_line.push_back(r); }
          ~Scope() { t_rooms_on_line.pop_back(); }
        } scope(handle);
        on_line(handle, line.data(), line.size(), user_data);  // data() is NUL-terminated
      };
    }
    chat::Status s = chat::Room::Open(ro, &room->impl);
    if (!s.ok()) return FromStatus(s);
    *out = room.release();
    return CHAT_OK;
  });
}

chat_code chat_room_publish(chat_room* room, const char* name, size_t name_len, const char* message,
                            size_t message_len) noexcept {
  return OnHandle(room, kRoomTag, [&]() -> chat_code {
    if (!Live(room, kRoomTag)) return BadHandle("chat_room");
    if (!TextOk(name, name_len) || !TextOk(message, message_len)) {
      return Fail(CHAT_ERR_BAD_ARGUMENT, "name or message is NULL");
    }
    return FromStatus(room->impl->Publish(View(name, name_len), View(message, message_len)));
  });
}

chat_code chat_room_notice(chat_room* room, const char* text, size_t len) noexcept {
  return OnHandle(room, kRoomTag, [&]() -> chat_code {
    if (!Live(room, kRoomTag)) return BadHandle("chat_room");
    if (!TextOk(text, len)) return Fail(CHAT_ERR_BAD_ARGUMENT, "text is NULL");
    return FromStatus(room->impl->Notice(View(text, len)));
  });
}

chat_code chat_room_join(chat_room* room, chat_call* call, uint32_t replay) noexcept {
  return OnHandle(room, kRoomTag, [&]() -> chat_code {
    if (!Live(room, kRoomTag)) return BadHandle("chat_room");
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    if (call->authenticating) return RefuseWhileAuthenticating();  // not admitted yet
    return FromStatus(room->impl->Join(call->impl, replay));
  });
}

chat_code chat_room_leave(chat_room* room, chat_call* call) noexcept {
  return OnHandle(room, kRoomTag, [&]() -> chat_code {
    if (!Live(room, kRoomTag)) return BadHandle("chat_room");
    if (!Live(call, kCallTag)) return BadHandle("chat_call");
    return FromStatus(room->impl->Leave(*call->impl));
  });
}

chat_code chat_room_members(const chat_room* room, size_t* count) noexcept {
  return OnHandle(room, kRoomTag, [&]() -> chat_code {
    if (count) *count = 0;
    if (!Live(room, kRoomTag)) return BadHandle("chat_room");
    if (!count) return Fail(CHAT_ERR_BAD_ARGUMENT, "count is NULL");
    *count = room->impl->members();
    return CHAT_OK;
  });
}

chat_code chat_room_close(chat_room* room) noexcept {
  return OnHandle(room, kRoomTag, [&]() -> chat_code {
    if (!Live(room, kRoomTag)) return BadHandle("chat_room");
    room->impl->Close();
    return CHAT_OK;
  });
}

size_t chat_room_error(const chat_room* room, char* buf, size_t size) noexcept {
  return CopyError(room, kRoomTag, buf, size);
}

chat_code chat_room_destroy(chat_room* room) noexcept {
  return OnHandle(room, kRoomTag, [&]() -> chat_code {
    if (!room) return CHAT_OK;
    if (!Live(room, kRoomTag)) return BadHandle("chat_room");
    if (OnLineOf(room)) return Fail(CHAT_ERR_BUSY, "cannot destroy a room from its own on_line");
    room->impl->Close();
    room->tag = 0;
    delete room;
    return CHAT_OK;
  });
}
