// Client and Stream.
//
// A stream's handle may be used by several Python threads at once (sends,
// one receiver, cancel), each with the GIL released, and chat_stream_destroy
// must not overlap any of them. Each use is therefore bracketed by
// enter()/leave(); close() marks the stream closed, cancels it so that
// blocked users wake up, and the handle is destroyed once nobody uses it.
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "errors.h"
#include "gil.h"
#include "module.h"
#include "queue.h"

namespace pychat {
namespace {

// Replies taken from the library per chat_stream_recv_batch.
constexpr size_t kBatch = 256;

// Receive batches (kBatch chat_texts, 4 KiB) allocated and not yet freed.
// Tests read it (_recv_buffers) to check that idle streams hold none.
std::atomic<int64_t> g_recv_buffers{0};

// A stream's receive batch: allocated on its first receive, not with the
// stream, since many streams are only ever sent on (10,000 open streams
// would otherwise hold 40 MB of these).
class TextBatch {
 public:
  TextBatch() = default;
  ~TextBatch() { reset(); }
  TextBatch(const TextBatch&) = delete;
  TextBatch& operator=(const TextBatch&) = delete;

  chat_text* get() {
    if (!texts_) {
      texts_ = std::make_unique<chat_text[]>(kBatch);
      g_recv_buffers.fetch_add(1, std::memory_order_relaxed);
    }
    return texts_.get();
  }
  void reset() {
    if (texts_) {
      texts_.reset();
      g_recv_buffers.fetch_sub(1, std::memory_order_relaxed);
    }
  }

 private:
  std::unique_ptr<chat_text[]> texts_;
};

// The server's `which` metadata of `stream`, or None while it has not come.
py::object read_server_metadata(chat_stream* stream, int32_t which) {
  size_t count = 0;
  chat_code rc = chat_stream_metadata_count(stream, which, &count);
  if (rc == CHAT_ERR_BAD_STATE) return py::none();
  if (rc != CHAT_OK) raise_last(rc);
  return make_call_metadata(count, [stream, which](size_t i, const char** k, size_t* kl,
                                                   const char** v, size_t* vl) {
    return chat_stream_metadata_at(stream, which, i, k, kl, v, vl);
  });
}

class Stream;
// The streams this thread is inside an operation of. A close() reached from
// inside one (a signal handler or a finalizer run between slices) must not
// wait for its own thread to leave.
thread_local std::vector<const Stream*> t_using;

class Stream {
 public:
  explicit Stream(chat_stream* handle) : handle_(handle) {}
  ~Stream() { close(); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void send(py::handle name, py::handle message, std::optional<double> timeout) {
    std::string_view n = utf8_arg(name, "name");
    std::string_view m = utf8_arg(message, "message");
    Deadline deadline(timeout);
    Use use(*this);
    // Room in the queue is the common case: no GIL round-trip for it.
    chat_code rc = chat_stream_send(handle_, n.data(), n.size(), m.data(), m.size(), 0);
    if (rc == CHAT_ERR_WOULD_BLOCK && !deadline.zero()) {
      rc = sliced(deadline, [&](int64_t ms) {
        return chat_stream_send(handle_, n.data(), n.size(), m.data(), m.size(), ms);
      });
    }
    if (rc != CHAT_OK) raise_send_error(rc, chat_last_error());
  }

  // Sends (name, message) pairs, converting a chunk of them at a time with
  // the GIL and queueing the chunk without it. Returns how many were queued.
  size_t send_many(const py::iterable& items, std::optional<double> timeout) {
    Deadline deadline(timeout);
    std::vector<std::string> chunk;  // name, message, name, message, ...
    size_t sent = 0;
    py::iterator it = py::iter(items);
    while (it != py::iterator::sentinel()) {
      chunk.clear();
      for (; it != py::iterator::sentinel() && chunk.size() < 2 * kBatch; ++it) {
        py::handle pair = *it;
        if (!PySequence_Check(pair.ptr()) || PyUnicode_Check(pair.ptr()) ||
            PySequence_Size(pair.ptr()) != 2) {
          PyErr_Clear();
          throw py::type_error("send_many() takes an iterable of (name, message) pairs");
        }
        py::object name = py::reinterpret_steal<py::object>(PySequence_GetItem(pair.ptr(), 0));
        py::object message = py::reinterpret_steal<py::object>(PySequence_GetItem(pair.ptr(), 1));
        if (!name || !message) throw py::error_already_set();
        chunk.emplace_back(utf8_arg(name, "name"));
        chunk.emplace_back(utf8_arg(message, "message"));
      }
      // Entered per chunk: the iterable may block, and close() should not
      // wait for it.
      Use use(*this);
      const size_t before = sent;
      size_t i = 0;
      while (i < chunk.size()) {
        std::string error;
        chat_code rc = without_gil([&] {
          for (; i < chunk.size(); i += 2) {
            const std::string& n = chunk[i];
            const std::string& m = chunk[i + 1];
            chat_code r = chat_stream_send(handle_, n.data(), n.size(), m.data(), m.size(),
                                           deadline.slice_ms());
            if (r != CHAT_OK) {
              if (r != CHAT_ERR_TIMEOUT) error = chat_last_error();
              return r;
            }
          }
          return CHAT_OK;
        });
        sent = before + i / 2;
        if (rc == CHAT_OK) break;
        if (rc == CHAT_ERR_TIMEOUT) {
          if (deadline.expired()) raise_code(rc, "send queue stayed full for the whole timeout");
          check_signals();
          continue;
        }
        raise_send_error(rc, error);
      }
    }
    return sent;
  }

  void complete() {
    Use use(*this);
    completed_ = true;
    chat_code rc = chat_stream_complete(handle_);
    if (rc != CHAT_OK) raise_last(rc);
  }

  // Idempotent, also after the stream ended or was closed.
  void cancel() {
    if (closed_) return;
    Use use(*this);
    cancelled_ = true;
    chat_stream_cancel(handle_);
  }

  void close() {
    chat_stream* handle = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
      if (active_ == 0) {
        handle = std::exchange(handle_, nullptr);
      } else {
        chat_stream_cancel(handle_);  // wakes the threads inside
        if (std::find(t_using.begin(), t_using.end(), this) != t_using.end()) {
          orphaned_ = true;  // this thread is inside: the last one out destroys
        }
      }
    }
    buffer_.clear();
    pos_ = 0;
    if (!handle && !orphaned_) {
      without_gil([&] {
        std::unique_lock<std::mutex> lock(mu_);
        idle_.wait(lock, [&] { return active_ == 0; });
        handle = std::exchange(handle_, nullptr);
      });
    }
    if (handle) destroy(handle);
  }

  bool closed() const { return closed_; }

  // A reply; None once the stream ended OK and every reply was taken.
  py::object recv(std::optional<double> timeout) {
    if (closed_) raise_closed("stream is closed");
    if (pos_ < buffer_.size()) return take();
    Deadline deadline(timeout);
    for (;;) {
      if (end_) {
        if (end_code_ == CHAT_END_OF_STREAM) return py::none();
        raise_code(end_code_, end_details_);
      }
      std::string error;
      chat_code rc = fetch(deadline, &error);
      if (closed_) raise_closed("stream was closed while receiving");
      if (pos_ < buffer_.size()) return take();
      switch (rc) {
        case CHAT_OK: break;  // another receiver took them first
        case CHAT_ERR_TIMEOUT:
          if (deadline.zero() || deadline.expired()) raise_code(rc, "no reply within the timeout");
          check_signals();
          break;
        case CHAT_END_OF_STREAM:
          end_ = true;
          end_code_ = rc;
          break;
        default: {
          if (rc < CHAT_CANCELLED || rc > CHAT_UNAUTHENTICATED) raise_code(rc, error);
          end_ = true;
          end_code_ = rc;
          auto status = final_status();
          end_details_ = status ? status->second : error;
        }
      }
    }
  }

  py::object next() {
    py::object reply = recv(std::nullopt);
    if (reply.is_none()) throw py::stop_iteration();
    return reply;
  }

  py::object code() {
    auto status = final_status();
    return status ? status_code(status->first) : py::none();
  }

  // The server's initial or trailing metadata; None until it has come.
  py::object server_metadata(int32_t which) {
    py::object& cached = which == CHAT_METADATA_TRAILING ? trailing_md_ : initial_md_;
    if (!cached.is_none()) return cached;
    Use use(*this);
    cached = read_server_metadata(handle_, which);
    return cached;
  }

  py::object details() {
    auto status = final_status();
    return status ? py::object(to_str(status->second.data(), status->second.size())) : py::none();
  }

 private:
  // Brackets one use of handle_ (GIL held on both ends). ClosedError once
  // the stream is closed.
  class Use {
   public:
    explicit Use(Stream& s) : s_(s) { s_.enter(); }
    ~Use() { s_.leave(); }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    Stream& s_;
  };

  void enter() {
    bool closed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed = closed_;
      if (!closed) ++active_;
    }
    if (closed) raise_closed("stream is closed");
    t_using.push_back(this);
  }

  void leave() {
    t_using.erase(std::find(t_using.rbegin(), t_using.rend(), this).base() - 1);
    chat_stream* handle = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ > 0 || !closed_) return;
      if (orphaned_) {
        handle = std::exchange(handle_, nullptr);
      } else {
        idle_.notify_all();
      }
    }
    if (handle) destroy(handle);
  }

  // Cancels if still open, keeps the final status, frees the handle (which
  // nobody else uses any more). GIL held on entry.
  void destroy(chat_stream* handle) {
    without_gil([&] {
      chat_stream_cancel(handle);
      chat_stream_wait(handle, -1);  // bounded: a cancelled call ends promptly
      chat_code code = CHAT_OK;
      const char* details = nullptr;
      size_t len = 0;
      if (chat_stream_status(handle, &code, &details, &len) == CHAT_OK) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!have_status_) {
          have_status_ = true;
          code_ = code;
          details_.assign(details, len);
        }
      }
      chat_stream_destroy(handle);
    });
    texts_.reset();  // nobody receives any more: the stream is closed and idle
  }

  // Takes replies that are there, waiting up to one slice for the first.
  // Returns the library's result; *error gets its message on failure.
  chat_code fetch(const Deadline& deadline, std::string* error) {
    Use use(*this);
    size_t n = 0;
    // One receiver at a time (and texts_ is shared): the lock is taken
    // without the GIL when it has to wait, since its holder may need the GIL.
    std::unique_lock<std::mutex> lock(recv_mu_, std::try_to_lock);
    chat_code rc =
        lock ? chat_stream_recv_batch(handle_, 0, texts_.get(), kBatch, &n) : CHAT_ERR_TIMEOUT;
    if (rc == CHAT_ERR_TIMEOUT && !deadline.zero()) {
      int64_t ms = deadline.slice_ms();
      rc = without_gil([&] {
        if (!lock) lock.lock();
        return chat_stream_recv_batch(handle_, ms, texts_.get(), kBatch, &n);
      });
    }
    if (rc != CHAT_OK) {
      *error = chat_last_error();
      return rc;
    }
    if (pos_ == buffer_.size()) {
      buffer_.clear();
      pos_ = 0;
    }
    buffer_.reserve(buffer_.size() + n);
    const chat_text* texts = texts_.get();
    for (size_t i = 0; i < n; ++i) buffer_.push_back(to_str(texts[i].data, texts[i].len));
    return rc;
  }

  py::object take() {
    py::object reply = std::move(buffer_[pos_++]);
    if (pos_ == buffer_.size()) {
      buffer_.clear();
      pos_ = 0;
    }
    return reply;
  }

  // The final status once the call has ended. A copy: Python code (which
  // may reenter this stream) runs only after mu_ is released.
  std::optional<std::pair<chat_code, std::string>> final_status() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!have_status_ && handle_) {
      chat_code code = CHAT_OK;
      const char* details = nullptr;
      size_t len = 0;
      if (chat_stream_status(handle_, &code, &details, &len) == CHAT_OK) {
        have_status_ = true;
        code_ = code;
        details_.assign(details, len);
      }
    }
    if (!have_status_) return std::nullopt;
    return std::make_pair(code_, details_);
  }

  // The error for a failed send (inside a Use): ClosedError, unless the
  // call ended with an error this side did not ask for, which then says why.
  [[noreturn]] void raise_send_error(chat_code rc, const std::string& error) {
    if (closed_) raise_closed("stream was closed while sending");
    if (rc == CHAT_ERR_CLOSED && !cancelled_ && !completed_) {
      // The library refuses sends as soon as it knows the call is over, a
      // moment before the final status is there: give it that moment.
      sliced(Deadline(1.0), [&](int64_t ms) { return chat_stream_wait(handle_, ms); });
      auto status = final_status();
      if (status && status->first != CHAT_OK) raise_code(status->first, status->second);
    }
    raise_code(rc, error);
  }

  std::mutex mu_;                // guards the members up to recv_mu_
  std::condition_variable idle_;  // active_ dropped to 0
  chat_stream* handle_;
  int active_ = 0;               // threads inside an operation
  bool closed_ = false;          // written with mu_ and the GIL held
  bool orphaned_ = false;        // closed from inside: the last leave() destroys
  bool have_status_ = false;     // code_ and details_ hold the final status
  chat_code code_ = CHAT_OK;
  std::string details_;

  std::mutex recv_mu_;
  TextBatch texts_;              // the last batch, borrowed from the library

  bool cancelled_ = false;  // cancel() was called; GIL
  bool completed_ = false;  // complete() was called; GIL
  py::object initial_md_ = py::none();   // the server's, once come; GIL
  py::object trailing_md_ = py::none();

  // Replies converted but not yet returned, and how recv() ended; GIL.
  std::vector<py::object> buffer_;
  size_t pos_ = 0;
  bool end_ = false;
  chat_code end_code_ = CHAT_OK;
  std::string end_details_;
};

// A stream attached to an event queue (pychat.aio): its replies, its end
// and WRITABLE are events of that queue, under `key`. Nothing here waits
// but close(), which frees the handle (bounded: a cancelled call ends
// promptly, an ended one at once).
class QueuedStream {
 public:
  QueuedStream(chat_stream* handle, std::shared_ptr<QueueHandle> queue, uint64_t key)
      : queue_(std::move(queue)), handle_(handle), key_(key) {}
  ~QueuedStream() { close(); }
  QueuedStream(const QueuedStream&) = delete;
  QueuedStream& operator=(const QueuedStream&) = delete;

  uint64_t key() const { return key_; }
  bool closed() const { return handle_ == nullptr; }

  // 0: queued; 1: the send queue is full (a WRITABLE event follows once it
  // has room); 2: the stream takes no more (completed, cancelled or ended:
  // its END event tells how). Raises for bad arguments.
  int try_send(py::handle name, py::handle message) {
    std::string_view n = utf8_arg(name, "name");
    std::string_view m = utf8_arg(message, "message");
    if (!handle_) raise_closed("stream is closed");
    chat_code rc = chat_stream_send(handle_, n.data(), n.size(), m.data(), m.size(), 0);
    switch (rc) {
      case CHAT_OK: return 0;
      case CHAT_ERR_WOULD_BLOCK: return 1;
      case CHAT_ERR_CLOSED: return 2;
      default: raise_last(rc);
    }
  }

  // False if the stream takes no more (cancelled or ended).
  bool complete() {
    if (!handle_) raise_closed("stream is closed");
    chat_code rc = chat_stream_complete(handle_);
    if (rc == CHAT_OK) return true;
    if (rc == CHAT_ERR_CLOSED) return false;
    raise_last(rc);
  }

  void cancel() {
    if (handle_) chat_stream_cancel(handle_);
  }

  py::object server_metadata(int32_t which) {
    if (!handle_) raise_closed("stream is closed");
    return read_server_metadata(handle_, which);
  }

  // The stream holds its replies until consumed: the user took the `count`
  // oldest drained and not yet reported, so their room goes back (reading
  // resumes). Never blocks: the GIL stays held. A no-op once closed.
  void consumed(size_t count) {
    if (!handle_ || count == 0) return;
    chat_code rc = chat_stream_consumed(handle_, count);
    if (rc != CHAT_OK) raise_last(rc);
  }

  // Cancels if still open and frees the handle; its pending events are
  // dropped from the queue. Idempotent.
  void close() {
    chat_stream* handle = std::exchange(handle_, nullptr);
    if (!handle) return;
    std::shared_ptr<QueueHandle> queue = std::move(queue_);
    auto destroy = [&] {
      chat_stream_destroy(handle);
      queue.reset();  // after the stream: the queue must outlive it
    };
    if (PyGILState_Check()) {
      without_gil(destroy);
    } else {
      destroy();
    }
  }

 private:
  std::shared_ptr<QueueHandle> queue_;  // outlives handle_; null once closed
  chat_stream* handle_;                 // GIL
  const uint64_t key_;
};

class Client {
 public:
  Client(const std::string& target, std::optional<int> max_message_bytes,
         std::optional<int> send_queue_limit, std::optional<int> recv_queue_limit,
         std::optional<int64_t> send_queue_bytes, std::optional<int64_t> recv_queue_bytes,
         std::optional<double> keepalive, const py::dict& security,
         py::dict control)
      : target_(target) {
    chat_client_options o;
    chat_client_options_init(&o, CHAT_CLIENT_OPTIONS_VERSION);
    // pychat.Client made every value a str (PEM text or a path) or a bool.
    std::string tls_ca, tls_cert, tls_key, server_name, token;
    auto text = [&](const char* key, std::string* slot, const char** field) {
      if (!security.contains(key) || security[key].is_none()) return;
      *slot = security[key].cast<std::string>();
      if (slot->find('\0') != std::string::npos) {
        throw py::value_error(std::string(key) + " cannot contain NUL characters");
      }
      *field = slot->c_str();
    };
    text("tls_ca", &tls_ca, &o.tls_root_certs);
    text("tls_cert", &tls_cert, &o.tls_cert_chain);
    text("tls_key", &tls_key, &o.tls_private_key);
    text("tls_server_name", &server_name, &o.tls_server_name);
    text("token", &token, &o.token);
    if (security.contains("tls")) o.tls = security["tls"].cast<bool>() ? 1 : 0;
    if (security.contains("allow_insecure_token")) {
      o.allow_insecure_token = security["allow_insecure_token"].cast<bool>() ? 1 : 0;
    }
    // 1.1's control options, by name (pychat.Client checks and converts them).
    for (auto [key, value] : control) {
      std::string name = py::str(key);
      if (name == "compression") {
        o.compression = value.cast<int32_t>();
      } else {
        throw py::value_error("unknown control option " + name);
      }
    }
    if (max_message_bytes) o.max_message_bytes = *max_message_bytes;
    if (send_queue_limit) o.send_queue_limit = *send_queue_limit;
    if (recv_queue_limit) o.recv_queue_limit = *recv_queue_limit;
    if (send_queue_bytes) o.send_queue_bytes = *send_queue_bytes;
    if (recv_queue_bytes) o.recv_queue_bytes = *recv_queue_bytes;
    if (keepalive) {
      if (!(*keepalive >= 0.0)) throw py::value_error("keepalive must be >= 0 seconds");
      o.keepalive_ms = static_cast<int32_t>(std::min<int64_t>(to_ms(*keepalive), INT32_MAX));
    }
    chat_code rc = chat_client_create(target.c_str(), &o, &handle_);
    if (rc != CHAT_OK) raise_last(rc);
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Opening never blocks: connection problems end the stream (UNAVAILABLE).
  std::unique_ptr<Stream> open(std::optional<double> timeout,
                               const std::vector<std::pair<std::string, py::object>>& metadata,
                               bool wait_for_ready, const std::optional<std::string>& token,
                               std::optional<int> compression) {
    return std::make_unique<Stream>(
        open_handle(timeout, metadata, wait_for_ready, compression, nullptr, 0, token));
  }

  // The same, attached to `queue` (pychat.aio).
  std::unique_ptr<QueuedStream> open_queued(
      py::handle queue, std::optional<double> timeout,
      const std::vector<std::pair<std::string, py::object>>& metadata, bool wait_for_ready,
      const std::optional<std::string>& token, std::optional<int> compression) {
    std::shared_ptr<QueueHandle> q = queue_of(queue);
    uint64_t key = q->next_key();
    chat_stream* stream =
        open_handle(timeout, metadata, wait_for_ready, compression, q->get(), key, token);
    return std::make_unique<QueuedStream>(stream, std::move(q), key);
  }

  // Streams already opened stay usable.
  void close() {
    chat_client* handle = std::exchange(handle_, nullptr);
    if (handle) without_gil([&] { chat_client_destroy(handle); });
  }

  bool closed() const { return handle_ == nullptr; }
  const std::string& target() const { return target_; }

  py::tuple stats() const {
    if (!handle_) raise_closed("client is closed");
    chat_stats s;
    s.version = CHAT_STATS_VERSION;
    chat_code rc = chat_client_stats(handle_, &s);
    if (rc != CHAT_OK) raise_last(rc);
    return stats_tuple(s);
  }

 private:
  chat_stream* open_handle(std::optional<double> timeout,
                           const std::vector<std::pair<std::string, py::object>>& metadata,
                           bool wait_for_ready, std::optional<int> compression,
                           chat_queue* queue, uint64_t queue_key,
                           const std::optional<std::string>& token) {
    if (!handle_) raise_closed("client is closed");
    chat_stream_options o;
    chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
    if (token) {
      if (token->find('\0') != std::string::npos) {
        throw py::value_error("token cannot contain NUL characters");
      }
      o.token = token->c_str();
    }
    if (timeout) {
      if (!(*timeout >= 0.0)) throw py::value_error("timeout must be a number >= 0 or None");
      o.deadline_ms = std::llround(std::min(*timeout * 1000.0, 1e11));
    }
    std::vector<std::string> values;
    values.reserve(metadata.size());
    for (const auto& [key, value] : metadata) {
      if (PyBytes_Check(value.ptr())) {
        values.push_back(value.cast<std::string>());
      } else {
        values.emplace_back(utf8_arg(value, "metadata value"));
      }
      // Keys are C strings; values go with their lengths, so "-bin" values
      // may hold NULs (the library refuses them in other values).
      if (key.find('\0') != std::string::npos) {
        throw py::value_error("metadata keys cannot contain NUL characters");
      }
    }
    std::vector<chat_metadata> entries(metadata.size());
    std::vector<size_t> lens(metadata.size());
    for (size_t i = 0; i < metadata.size(); ++i) {
      entries[i] = chat_metadata{metadata[i].first.c_str(), values[i].c_str()};
      lens[i] = values[i].size();
    }
    o.metadata = entries.data();
    o.metadata_count = entries.size();
    o.metadata_value_lens = lens.data();
    o.wait_for_ready = wait_for_ready ? 1 : 0;
    if (compression) o.compression = *compression;
    o.queue = queue;
    // Queued streams (pychat.aio) keep each drained reply counting against
    // recv_queue_limit / recv_queue_bytes until the user takes it
    // (QueuedStream.consumed): unread replies stay bounded.
    o.hold_until_consumed = queue ? 1 : 0;
    o.user_data = reinterpret_cast<void*>(static_cast<uintptr_t>(queue_key));
    chat_stream* stream = nullptr;
    chat_code rc = chat_client_open(handle_, &o, &stream);
    if (rc != CHAT_OK) raise_last(rc);
    return stream;
  }

  chat_client* handle_ = nullptr;  // GIL
  std::string target_;
};

}  // namespace

void define_client(py::module_& m) {
  m.def("_recv_buffers", [] { return g_recv_buffers.load(std::memory_order_relaxed); },
        "For tests: receive batches held by sync streams (allocated at their first receive).");
  py::class_<Stream>(m, "Stream", "One /Chat/chat call, opened with Client.chat().")
      .def("send", &Stream::send, py::arg("name"), py::arg("message"),
           py::arg("timeout") = py::none(),
           "Queues one ChatMessage. Waits while the send queue is full (timeout in seconds, "
           "None: no limit; TimeoutError, or BlockingIOError for 0).")
      .def("send_many", &Stream::send_many, py::arg("items"), py::arg("timeout") = py::none(),
           "Queues each (name, message) pair in order, releasing the GIL once per chunk. "
           "Returns how many were queued.")
      .def("complete", &Stream::complete,
           "Half-closes: no more messages; replies keep arriving.")
      .def("cancel", &Stream::cancel, "Cancels the call; replies already received stay readable.")
      .def("close", &Stream::close,
           "Cancels the call if still open and frees it. Idempotent; later use raises ClosedError.")
      .def("recv", &Stream::recv, py::arg("timeout") = py::none(),
           "The next reply (str), or None once the server completed and every reply was taken. "
           "Raises the ChatError of an error end, TimeoutError when the timeout passes.")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &Stream::next)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](Stream& s, const py::args&) { s.close(); })
      .def_property_readonly("code", &Stream::code,
                             "The final StatusCode once the call has ended, else None.")
      .def_property_readonly("details", &Stream::details,
                             "The final status details once the call has ended, else None.")
      .def_property_readonly("closed", &Stream::closed)
      .def_property_readonly(
          "initial_metadata",
          [](Stream& s) { return s.server_metadata(CHAT_METADATA_INITIAL); },
          "The server's initial metadata (CallMetadata), or None until the first reply or the end.")
      .def_property_readonly(
          "trailing_metadata",
          [](Stream& s) { return s.server_metadata(CHAT_METADATA_TRAILING); },
          "The server's trailing metadata (CallMetadata), or None until the stream has ended.")
      .def("__repr__", [](Stream& s) {
        py::object code = s.code();
        return std::string("<pychat.Stream ") +
               (s.closed() ? "closed" : code.is_none() ? "open" : "ended") +
               (code.is_none() ? std::string() : " " + py::str(code.attr("name")).cast<std::string>()) +
               ">";
      });

  py::class_<QueuedStream>(m, "QueuedStream",
                           "A /Chat/chat call whose replies, end and WRITABLE are events of an "
                           "EventQueue (opened with Client._open_queued; use pychat.aio).")
      .def_property_readonly("key", &QueuedStream::key, "The key its events carry.")
      .def("try_send", &QueuedStream::try_send, py::arg("name"), py::arg("message"),
           "Queues one ChatMessage if there is room: 0 queued, 1 send queue full (a WRITABLE "
           "event follows), 2 the stream takes no more (see its END event).")
      .def("complete", &QueuedStream::complete,
           "Half-closes once the queued messages are written; False if the stream takes no "
           "more.")
      .def("cancel", &QueuedStream::cancel, "Cancels the call (END follows with CANCELLED).")
      .def("consumed", &QueuedStream::consumed, py::arg("count") = 1,
           "Done with the `count` oldest replies drained and not yet reported: their room in "
           "the receive bound goes back. A no-op once closed.")
      .def("close", &QueuedStream::close,
           "Cancels if still open and frees the call; its pending events are dropped.")
      .def_property_readonly("closed", &QueuedStream::closed)
      .def("_server_metadata", &QueuedStream::server_metadata, py::arg("which"),
           "The server's initial (0) or trailing (1) metadata, or None until it has come.");

  py::class_<Client>(m, "Client", "A connection to a Chat server (native part; use pychat.Client).")
      .def(py::init<const std::string&, std::optional<int>, std::optional<int>, std::optional<int>,
                    std::optional<int64_t>, std::optional<int64_t>, std::optional<double>,
                    const py::dict&, py::dict>(),
           py::arg("target"), py::arg("max_message_bytes"), py::arg("send_queue_limit"),
           py::arg("recv_queue_limit"), py::arg("send_queue_bytes"), py::arg("recv_queue_bytes"),
           py::arg("keepalive"), py::arg("security") = py::dict(),
           py::arg("control") = py::dict())
      .def("_open", &Client::open, py::arg("timeout"), py::arg("metadata"),
           py::arg("wait_for_ready"), py::arg("token") = py::none(),
           py::arg("compression") = py::none())
      .def("_open_queued", &Client::open_queued, py::arg("queue"), py::arg("timeout"),
           py::arg("metadata"), py::arg("wait_for_ready"), py::arg("token") = py::none(),
           py::arg("compression") = py::none())
      .def("close", &Client::close, "Frees the client; streams already opened stay usable.")
      .def("_stats", &Client::stats, "The counters, in pychat.Stats's field order.")
      .def_property_readonly("closed", &Client::closed)
      .def_property_readonly("target", &Client::target);
}

}  // namespace pychat
