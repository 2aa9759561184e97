// fuzz_capi: short programs of C ABI calls against live servers and clients.
//
// Once per process: three servers on 127.0.0.1:0 and one client for each:
// an echo server, a CHAT_MODE_CUSTOM server with callbacks, and a
// CHAT_MODE_CUSTOM server on an event queue of its own (the "server
// queue"), plus one more queue for client streams (the "client queue").
// Each input is read as a program of operations on up to kSlots streams
// (open, open on the client queue, send, complete, cancel, recv,
// recv_batch, wait, status, destroy), drains of both queues (the server
// queue's events are acted on as the input says: reply, reply several,
// complete, fail with allowed and refused codes, invalid UTF-8, user data,
// ref/unref, keep a reference for later, join or leave an in-process room
// or say the message to it), wakes, per-handle error reads
// with small buffers, a short-lived queue, a short-lived queued server
// (once per input), plus calls on NULL handles, options structs with bad
// versions, chat_code_name with any int, and malformed addresses and
// targets. Every wait is at most kMaxWaitMs, so an
// input takes a few milliseconds; the program ends by destroying every
// stream it opened and draining both queues until they are quiet (bounded),
// so nothing it started leaks into the next input.
//
// The callback server's callbacks act on the first bytes of each message
// (reply, reply several, complete, fail with some code, fail with a code
// that is not allowed, reply with invalid UTF-8, ref/unref); so does the
// queued server for a MESSAGE event when the input says "natural".
//
// Checked: every return code is one that chat.h documents for the function;
// chat_last_error() is never NULL, and a handle's chat_*_error copy equals
// it after a failed call on that handle; a received reply is valid UTF-8;
// CHAT_END_OF_STREAM and final codes come only once the stream has ended (its
// status is known, and END means status OK); recv_batch counts are within
// bounds. The queue: drained counts are within 0..max; a queued stream's
// recv is CHAT_ERR_BAD_STATE; per stream no REPLY after its END, at most one
// END, whose code and details are chat_stream_status's (known by then);
// WRITABLE only after a send of its stream or call was refused
// (WOULD_BLOCK/TIMEOUT), never more than refusals, never after the end;
// per server call the first event is OPEN, MESSAGEs come before its
// HALF_CLOSE, nothing after its CLOSE, user_data is what
// chat_call_set_user_data set, calls on an ended call are CLOSED; every
// call closes after its client stream is destroyed; events carry exactly
// the fields their type has; a WAKE is readable on the descriptor at once,
// comes at most once per batch and never more often than asked (a room's
// refusal to queue a line never promises one), and a drain
// that returns fewer events than asked has taken a pending WAKE; the client
// queue holds nothing but a WAKE once every stream is destroyed.
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>

#include "address.h"
#include "c_shim.h"
#include <libchat/chat.h>
#include "chat/status.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kSlots = 4;
constexpr int64_t kMaxWaitMs = 50;
constexpr size_t kServerMaxBytes = 4096;  // echo and queued servers' message limit
constexpr size_t kClientMaxBytes = 2048;  // the custom servers' clients' limit
constexpr size_t kBigText = kClientMaxBytes - 48;  // a text every peer takes
constexpr size_t kMaxBatch = 8;           // events per drain
constexpr size_t kMaxHeld = 8;            // call references kept across drains
// A call still open this long after every stream of its input was destroyed
// never closed: a CLOSE was lost.
constexpr auto kOrphanLimit = std::chrono::seconds(10);

enum Server { kEcho = 0, kCustom = 1, kQueued = 2, kServers = 3 };

[[noreturn]] void Violation(const char* what, int rc) {
  std::fprintf(stderr, "fuzz_capi: contract violated: %s (got %d %s, last error: %s)\n", what, rc,
               fuzz_code_name(rc), chat_last_error());
  std::abort();
}

void Expect(bool ok, const char* what, int rc = CHAT_OK) {
  if (!ok) Violation(what, rc);
}

bool In(chat_code rc, std::initializer_list<chat_code> allowed) {
  for (chat_code c : allowed) {
    if (c == rc) return true;
  }
  return false;
}

bool IsGrpcFailure(chat_code rc) { return rc >= CHAT_CANCELLED && rc <= CHAT_UNAUTHENTICATED; }

// A code read out of a struct the library filled: look at it as an int
// first (an out-of-range enum load is undefined in C++).
int32_t Raw(const chat_code& code) {
  int32_t raw;
  std::memcpy(&raw, &code, sizeof raw);
  return raw;
}

bool IsGrpcCode(int32_t raw) { return raw >= CHAT_OK && raw <= CHAT_UNAUTHENTICATED; }

// Every failure leaves a message.
chat_code Checked(chat_code rc, std::initializer_list<chat_code> allowed, const char* what) {
  if (!In(rc, allowed)) Violation(what, rc);
  if (rc != CHAT_OK) Expect(chat_last_error() != nullptr, "chat_last_error is not NULL", rc);
  return rc;
}

// --- Per-handle error details.

size_t ErrorOf(const chat_stream* h, char* b, size_t n) { return chat_stream_error(h, b, n); }
size_t ErrorOf(const chat_call* h, char* b, size_t n) { return chat_call_error(h, b, n); }
size_t ErrorOf(const chat_client* h, char* b, size_t n) { return chat_client_error(h, b, n); }
size_t ErrorOf(const chat_server* h, char* b, size_t n) { return chat_server_error(h, b, n); }
size_t ErrorOf(const chat_queue* h, char* b, size_t n) { return chat_queue_error(h, b, n); }
size_t ErrorOf(const chat_room* h, char* b, size_t n) { return chat_room_error(h, b, n); }

// The handle's copy of its last failure, read whole.
template <class H>
std::string FullError(const H* h) {
  size_t len = ErrorOf(h, nullptr, 0);
  std::string full(len + 1, '\x7f');
  Expect(ErrorOf(h, full.data(), full.size()) == len, "chat_*_error: the same length twice");
  Expect(full[len] == '\0', "chat_*_error: the copy is NUL-terminated");
  full.resize(len);
  return full;
}

// Right after a call on `h` failed: its copy is chat_last_error's message
// (which, a C string, ends at the first NUL: a peer's status details may
// hold U+0000, which the handle's copy keeps, with its full length).
template <class H>
void ExpectErrorIsLast(const H* h, const char* what) {
  std::string last = chat_last_error();
  std::string full = FullError(h);
  bool same = full == last || (full.size() > last.size() && full[last.size()] == '\0' &&
                               full.compare(0, last.size(), last) == 0);
  if (!same) Violation(what, CHAT_OK);
}

template <class H>
chat_code CheckedOn(const H* h, chat_code rc, std::initializer_list<chat_code> allowed,
                    const char* what) {
  Checked(rc, allowed, what);
  if (rc != CHAT_OK) ExpectErrorIsLast(h, "a failed call's message is also the handle's");
  return rc;
}

// A read with a buffer of `size` (0..7) bytes: the full length comes back
// whatever the size, and the buffer holds a NUL-terminated prefix; bytes
// past `size` are untouched.
template <class H>
void ErrorRead(const H* h, uint8_t b) {
  std::string full = FullError(h);
  if (!full.empty() && std::memchr(full.data(), '\0', full.size()) == nullptr) {
    Expect(std::strlen(full.c_str()) == full.size(), "chat_*_error: length is strlen");
  }
  size_t size = b % 8;
  char buf[8];
  std::memset(buf, 0x5A, sizeof buf);
  size_t r = ErrorOf(h, (size == 0 && (b & 8)) ? nullptr : buf, size);
  Expect(r == full.size(), "chat_*_error returns the full length, whatever the buffer");
  size_t copied = size ? std::min(full.size(), size - 1) : 0;
  if (size > 0) {
    Expect(std::memcmp(buf, full.data(), copied) == 0, "chat_*_error copies a prefix");
    Expect(buf[copied] == '\0', "chat_*_error NUL-terminates a short buffer");
  }
  for (size_t i = size; i < sizeof buf; ++i) {
    Expect(buf[i] == 0x5A, "chat_*_error writes nothing past size");
  }
}

// --- Server calls: the callback server's (st == nullptr, on its dispatcher
// threads) and the queued server's (with the state the fuzzer tracks, on the
// fuzzing thread).

struct CallState {
  chat_call* call = nullptr;  // NULL: a free row of g_calls
  uint64_t id = 0;
  void* user_data = nullptr;  // what chat_call_set_user_data set
  int phase = 0;              // 0 open, 1 half-closed, 2 CLOSE drained
  int32_t close_code = CHAT_OK;
  bool completed = false;     // a chat_call_complete returned OK
  bool failed = false;        // a chat_call_fail returned OK ...
  int32_t fail_code = 0;      // ... with this code
  bool lib_released = false;  // a drain came after the one that gave its CLOSE
  int held = 0;               // references the fuzzer holds (kept in g_held)
  uint64_t refusals = 0, writables = 0;
  bool orphan = false;        // still open at the end of an input ...
  Clock::time_point orphaned; // ... since then
  bool ended() const { return phase == 2 || completed || failed; }
};

int g_tokens[4];  // user data values

bool MaybeTooLarge(size_t len, size_t max) { return len + 8 > max; }

void CallSend(chat_call* call, CallState* st, const char* text, size_t len, int64_t timeout) {
  chat_code rc = chat_call_send(call, text, len, timeout);
  if (!text && len) {
    Checked(rc, {CHAT_ERR_BAD_ARGUMENT}, "chat_call_send NULL with a length");
  } else if (!chat::IsValidUtf8({text, len})) {
    Checked(rc, {CHAT_ERR_BAD_ARGUMENT}, "chat_call_send invalid UTF-8");
  } else {
    Checked(rc, {CHAT_OK, timeout == 0 ? CHAT_ERR_WOULD_BLOCK : CHAT_ERR_TIMEOUT, CHAT_ERR_CLOSED,
                 CHAT_ERR_TOO_LARGE},
            "chat_call_send");
    if (st) {
      if (len > kServerMaxBytes) Expect(rc == CHAT_ERR_TOO_LARGE, "oversized reply is TOO_LARGE", rc);
      if (!MaybeTooLarge(len, kServerMaxBytes)) {
        Expect(rc != CHAT_ERR_TOO_LARGE, "a reply within the limit is not TOO_LARGE", rc);
      }
      if (rc != CHAT_ERR_TOO_LARGE && st->ended()) {
        Expect(rc == CHAT_ERR_CLOSED, "send on a completed, failed or closed call is CLOSED", rc);
      }
      if (rc == CHAT_ERR_WOULD_BLOCK || rc == CHAT_ERR_TIMEOUT) ++st->refusals;
    }
  }
  if (rc != CHAT_OK) ExpectErrorIsLast(call, "chat_call_error after a failed send");
}

void CallComplete(chat_call* call, CallState* st) {
  chat_code rc = chat_call_complete(call);
  Checked(rc, {CHAT_OK, CHAT_ERR_CLOSED}, "chat_call_complete");
  if (st) {
    if (st->failed) Expect(rc == CHAT_ERR_CLOSED, "complete after a fail is CLOSED", rc);
    if (st->phase == 2 && st->close_code != CHAT_OK) {
      Expect(rc == CHAT_ERR_CLOSED, "complete after an end with an error is CLOSED", rc);
    }
    if (st->phase == 2 && st->close_code == CHAT_OK) {
      Expect(rc == CHAT_OK, "complete after an OK end is OK (idempotent)", rc);
    }
    if (rc == CHAT_OK) st->completed = true;
  }
  if (rc != CHAT_OK) ExpectErrorIsLast(call, "chat_call_error after a failed complete");
}

// `raw` may be any int: allowed are 1..16.
void CallFail(chat_call* call, CallState* st, int32_t raw, const char* details, size_t len) {
  chat_code rc = fuzz_call_fail(call, raw, details, len);
  if (raw < 1 || raw > CHAT_UNAUTHENTICATED) {
    Checked(rc, {CHAT_ERR_BAD_ARGUMENT}, "chat_call_fail with a code outside 1..16");
  } else if ((!details && len) || !chat::IsValidUtf8({details, len})) {
    Checked(rc, {CHAT_ERR_BAD_ARGUMENT}, "chat_call_fail with bad details");
  } else {
    Checked(rc, {CHAT_OK, CHAT_ERR_CLOSED}, "chat_call_fail");
    if (st) {
      if (st->ended()) Expect(rc == CHAT_ERR_CLOSED, "fail on an ended call is CLOSED", rc);
      if (rc == CHAT_OK) {
        st->failed = true;
        st->fail_code = raw;
      }
    }
  }
  if (rc != CHAT_OK) ExpectErrorIsLast(call, "chat_call_error after a failed fail");
}

void CheckMetadata(chat_call* call) {
  const char* v;
  size_t n;
  chat_code rc = chat_call_metadata(call, "x-open", &v, &n);
  Checked(rc, {CHAT_OK, CHAT_ERR_MISSING}, "chat_call_metadata");
  size_t count = 0;
  Checked(chat_call_metadata_count(call, &count), {CHAT_OK}, "chat_call_metadata_count");
  for (size_t i = 0; i <= count; ++i) {
    const char *key, *value;
    size_t kl, vl;
    chat_code r = chat_call_metadata_at(call, i, &key, &kl, &value, &vl);
    Checked(r, {i < count ? CHAT_OK : CHAT_ERR_BAD_ARGUMENT}, "chat_call_metadata_at");
  }
}

// on_open, or the natural answer to OPEN: fail when the metadata asks it.
void ActOnOpen(chat_call* call, CallState* st) {
  const char* v;
  size_t n;
  if (chat_call_metadata(call, "x-open", &v, &n) == CHAT_OK && n > 0 && v[0] == 'f') {
    CallFail(call, st, CHAT_PERMISSION_DENIED, "no", 2);
  }
  CheckMetadata(call);
}

// The message's first bytes say what to do.
void ActOnMessage(chat_call* call, CallState* st, const char* message, size_t message_len) {
  char op = message_len ? message[0] : 'e';
  unsigned char arg = message_len > 1 ? static_cast<unsigned char>(message[1]) : 0;
  switch (op) {
    case 'c': CallComplete(call, st); break;
    case 'f': CallFail(call, st, 1 + arg % 16, message, message_len); break;
    case 'z':  // codes chat_call_fail must refuse
      CallFail(call, st, (arg & 1) ? 0 : 17 + arg % 100, "x", 1);
      break;
    case 'u':  // invalid UTF-8 is refused
      CallSend(call, st, "\xff\xfe", 2, 0);
      CallFail(call, st, CHAT_INTERNAL, "\xc0", 1);
      break;
    case 'm':
      for (int i = 0; i < 1 + arg % 8; ++i) CallSend(call, st, message, message_len, 0);
      break;
    case 'r':
      Checked(chat_call_ref(call), {CHAT_OK}, "chat_call_ref");
      chat_call_unref(call);
      break;
    case 'n': CallSend(call, st, nullptr, arg, 0); break;
    default: CallSend(call, st, message, message_len, 0);
  }
  Expect(chat_call_id(call) > 0, "chat_call_id > 0");
  Expect(chat_call_peer(call) != nullptr, "chat_call_peer not NULL");
}

// --- The callback server.

void OnOpen(chat_call* call, void*) { ActOnOpen(call, nullptr); }

void OnMessage(chat_call* call, const char* name, size_t name_len, const char* message,
               size_t message_len, void*) {
  Expect(chat::IsValidUtf8({name, name_len}) && chat::IsValidUtf8({message, message_len}),
         "on_message strings are UTF-8");
  ActOnMessage(call, nullptr, message, message_len);
}

void OnComplete(chat_call* call, void*) { CallComplete(call, nullptr); }

void OnClose(chat_call*, chat_code code, const char*, size_t, void*) {
  Expect(IsGrpcCode(Raw(code)), "on_close code is a gRPC code", code);
}

// --- The world: started once, never destroyed (the process exits when
// libFuzzer is done).

struct QueueState {
  chat_queue* q = nullptr;
  int fd = -1;
  bool wake_pending = false;  // woken, and no WAKE drained since
  uint64_t wakes = 0, wake_events = 0;
};

struct World {
  chat_server* servers[kServers] = {};
  chat_client* clients[kServers] = {};
  QueueState server_q, client_q;
  chat_room* room = nullptr;  // in this process; the queued server's calls join it
};

// The room's on_line: every line is valid UTF-8, and the room refuses to be
// published to or destroyed from it.
void OnRoomLine(chat_room* room, const char* line, size_t len, void*) {
  Expect(line[len] == '\0', "on_line's line is NUL-terminated");
  Expect(chat::IsValidUtf8({line, len}), "on_line's line is valid UTF-8");
  Checked(chat_room_publish(room, "x", 1, "y", 1), {CHAT_ERR_BUSY}, "chat_room_publish from on_line");
  Checked(chat_room_destroy(room), {CHAT_ERR_BUSY}, "chat_room_destroy from on_line");
}

chat_client* Connect(chat_server* server, int32_t max_bytes) {
  std::string target = "127.0.0.1:" + std::to_string(chat_server_port(server));
  chat_client_options o;
  chat_client_options_init(&o, CHAT_CLIENT_OPTIONS_VERSION);
  o.max_message_bytes = max_bytes;
  o.send_queue_limit = 8;
  o.recv_queue_limit = 8;
  chat_client* c = nullptr;
  if (chat_client_create(target.c_str(), &o, &c) != CHAT_OK) Violation("client", CHAT_UNKNOWN);
  return c;
}

void MakeQueue(QueueState* qs) {
  if (chat_queue_create(&qs->q) != CHAT_OK) Violation("chat_queue_create", CHAT_UNKNOWN);
  qs->fd = chat_queue_fd(qs->q);
  Expect(qs->fd >= 0, "chat_queue_fd of a queue is a descriptor");
}

World& TheWorld() {
  static World* w = [] {
    auto* world = new World;
    MakeQueue(&world->server_q);
    MakeQueue(&world->client_q);
    chat_server_options so;
    chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
    so.max_message_bytes = kServerMaxBytes;
    so.send_queue_limit = 8;
    so.keepalive_ms = 0;
    if (chat_server_start("127.0.0.1:0", &so, &world->servers[kEcho]) != CHAT_OK) {
      Violation("echo server", CHAT_UNKNOWN);
    }
    so.mode = CHAT_MODE_CUSTOM;
    so.recv_window = 4;
    so.queue = world->server_q.q;  // no callbacks
    if (chat_server_start("127.0.0.1:0", &so, &world->servers[kQueued]) != CHAT_OK) {
      Violation("queued server", CHAT_UNKNOWN);
    }
    so.queue = nullptr;
    so.max_message_bytes = 4 << 20;
    so.on_open = OnOpen;
    so.on_message = OnMessage;
    so.on_complete = OnComplete;
    so.on_close = OnClose;
    if (chat_server_start("127.0.0.1:0", &so, &world->servers[kCustom]) != CHAT_OK) {
      Violation("custom server", CHAT_UNKNOWN);
    }
    // The echo server's client may send more than its server takes; the
    // queued server may reply more than its client takes.
    world->clients[kEcho] = Connect(world->servers[kEcho], 2 * kServerMaxBytes);
    world->clients[kCustom] = Connect(world->servers[kCustom], kClientMaxBytes);
    world->clients[kQueued] = Connect(world->servers[kQueued], kClientMaxBytes);
    chat_room_options ro;
    chat_room_options_init(&ro, CHAT_ROOM_OPTIONS_VERSION);
    ro.on_line = OnRoomLine;
    if (chat_room_open(&ro, &world->room) != CHAT_OK) Violation("room", CHAT_UNKNOWN);
    return world;
  }();
  return *w;
}

// Reads the input byte by byte; past the end everything is 0.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool done() const { return p_ >= end_; }
  uint8_t Byte() { return p_ < end_ ? *p_++ : 0; }
  int64_t SmallWait() {  // mostly 0..3 ms, sometimes up to kMaxWaitMs
    uint8_t b = Byte();
    if (b < 0xF0) return b % 4;
    return b % (kMaxWaitMs + 1);
  }
  std::string_view Bytes(size_t n) {
    size_t have = static_cast<size_t>(end_ - p_);
    if (n > have) n = have;
    std::string_view s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

struct Slot {
  chat_stream* stream = nullptr;
  int client = 0;
  bool ended = false;      // a recv returned END or a final code, or END was drained
  bool saw_end = false;    // ... and it was END
  // On the client queue:
  bool queued = false;
  void* user_data = nullptr;  // its chat_stream_options.user_data
  bool end_event = false;     // its END was drained
  uint64_t refusals = 0, writables = 0;
};

// Global: a queued stream's user_data is its slot.
Slot g_slots[kSlots];

// The queued server's calls, from their OPEN until the handle is gone (the
// drain after the one that gave their CLOSE, or the fuzzer's last
// reference); kept across inputs like the server. Fixed storage: nothing
// the fuzzer allocates outlives an input (libFuzzer takes a run with more
// mallocs than frees for a possible leak and runs it again under
// LeakSanitizer, which is slow).
constexpr size_t kMaxCalls = 512;
CallState g_calls[kMaxCalls];

CallState* FindCall(const chat_call* call) {
  for (CallState& st : g_calls) {
    if (st.call && st.call == call) return &st;
  }
  return nullptr;
}

CallState* AddCall(chat_call* call) {
  for (CallState& st : g_calls) {
    if (!st.call) {
      st = CallState{};
      st.call = call;
      return &st;
    }
  }
  Violation("more queued server calls open than the fuzzer ever opens streams", kMaxCalls);
}

void ForgetCall(CallState* st) { *st = CallState{}; }

chat_call* g_held[kMaxHeld];  // references the fuzzer took (one entry each)
size_t g_nheld = 0;

// A text argument: raw input bytes (maybe invalid UTF-8), empty, NULL with a
// length, NULL with none, or a large valid text.
struct Text {
  const char* data;
  size_t len;
  bool null_with_len = false;
};

Text MakeText(Input& in, std::string& storage) {
  uint8_t kind = in.Byte();
  switch (kind % 8) {
    case 0: return {"", 0};
    case 1: return {nullptr, 0};
    case 2: return {nullptr, 1u + kind / 8, true};
    case 3: {
      size_t sizes[3] = {kServerMaxBytes + 1, kClientMaxBytes + 1, kBigText};
      storage.assign(sizes[kind / 8 % 3], 'a');
      return {storage.data(), storage.size()};
    }
    default: {
      std::string_view b = in.Bytes(in.Byte() % 24);
      storage.assign(b.data(), b.size());
      return {storage.data(), storage.size()};
    }
  }
}

// `extended` (op 15): a second byte says which server, whether the stream
// goes to the client queue, with which user_data, or with a queue pointer
// that is not a queue.
void OpenStream(World& w, Input& in, Slot& slot, bool extended) {
  uint8_t flags = in.Byte();
  uint8_t where = extended ? in.Byte() : 0;
  slot = Slot{};
  slot.client = extended ? std::min(where & 3, 2) : (flags & 1);
  chat_stream_options o;
  chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
  chat_metadata md[2] = {{"x-open", "fail"}, {"x-bin", "a\0b"}};
  size_t lens[2] = {4, 3};
  bool bad = false;
  if (flags & 2) o.deadline_ms = in.SmallWait();
  if (flags & 4) {
    o.metadata = md;
    o.metadata_count = (flags & 8) ? 2 : 1;
    if (flags & 16) {
      o.metadata_value_lens = lens;
    } else if (flags & 8) {
      md[1].key = "Bad Key";
      bad = true;
    }
    if (!(in.Byte() & 1)) {
      md[0].value = "ok";
      lens[0] = 2;
    }
  }
  if (flags & 32) o.wait_for_ready = 1;
  bool want_queue = (where & 4) != 0;
  bool bogus_queue = (where & 8) != 0;
  void* user_data = (where & 16) ? nullptr : &slot;
  if (want_queue) o.queue = w.client_q.q;
  if (bogus_queue) o.queue = reinterpret_cast<chat_queue*>(&o);  // not a queue
  o.user_data = user_data;
  if (flags & 64) {
    o.version = in.Byte() % 5;  // 0 and 4 are unknown versions
    if (o.version == 0 || o.version > CHAT_STREAM_OPTIONS_VERSION) bad = true;
    if (o.version == 1) o.metadata_value_lens = nullptr;  // not read
  }
  bool reads_queue = !(flags & 128) && o.version >= 3 && o.version <= CHAT_STREAM_OPTIONS_VERSION;
  if (bogus_queue && reads_queue) bad = true;
  chat_client* client = w.clients[slot.client];
  chat_stream* s = reinterpret_cast<chat_stream*>(0x1);
  chat_code rc = chat_client_open(client, (flags & 128) ? nullptr : &o, &s);
  if (flags & 128) bad = false;
  CheckedOn(client, rc, {bad ? CHAT_ERR_BAD_ARGUMENT : CHAT_OK}, "chat_client_open");
  if (rc != CHAT_OK) {
    Expect(s == nullptr, "failed open sets *out to NULL", rc);
    slot.stream = nullptr;
  } else {
    Expect(s != nullptr, "open gives a stream");
    slot.stream = s;
    slot.queued = want_queue && !bogus_queue && reads_queue;
    slot.user_data = user_data;
  }
}

void AfterFinal(Slot& slot, chat_code rc) {
  // END / a final code: the stream's status is known and agrees.
  chat_code code = CHAT_UNKNOWN;
  const char* details = nullptr;
  size_t details_len = 0;
  Checked(chat_stream_status(slot.stream, &code, &details, &details_len), {CHAT_OK},
          "status after the end");
  if (rc == CHAT_END_OF_STREAM) {
    Expect(code == CHAT_OK, "END only after an OK end", code);
  } else {
    Expect(code == rc, "final code of recv is the status code", code);
  }
  Expect(details != nullptr, "status details not NULL");
  Checked(chat_stream_wait(slot.stream, 0), {CHAT_OK}, "wait after the end");
  slot.ended = true;
  slot.saw_end = rc == CHAT_END_OF_STREAM;
}

const std::initializer_list<chat_code> kRecvCodes = {
    CHAT_OK, CHAT_END_OF_STREAM, CHAT_ERR_TIMEOUT, CHAT_CANCELLED, CHAT_UNKNOWN, CHAT_INVALID_ARGUMENT,
    CHAT_DEADLINE_EXCEEDED, CHAT_NOT_FOUND, CHAT_ALREADY_EXISTS, CHAT_PERMISSION_DENIED,
    CHAT_RESOURCE_EXHAUSTED, CHAT_FAILED_PRECONDITION, CHAT_ABORTED, CHAT_OUT_OF_RANGE,
    CHAT_UNIMPLEMENTED, CHAT_INTERNAL, CHAT_UNAVAILABLE, CHAT_DATA_LOSS, CHAT_UNAUTHENTICATED};

void Recv(Input& in, Slot& slot, bool batch) {
  int64_t wait = in.SmallWait();
  chat_code rc;
  if (batch) {
    chat_text out[4];
    size_t max = in.Byte() % 5;
    size_t count = 99;
    rc = chat_stream_recv_batch(slot.stream, wait, out, max, &count);
    if (max == 0) {  // room for nothing is refused
      CheckedOn(slot.stream, rc, {CHAT_ERR_BAD_ARGUMENT}, "recv_batch with max 0");
      return;
    }
    if (slot.queued) {
      CheckedOn(slot.stream, rc, {CHAT_ERR_BAD_STATE}, "recv_batch on a queued stream");
      Expect(count == 0, "a refused recv_batch sets *count to 0");
      return;
    }
    CheckedOn(slot.stream, rc, kRecvCodes, "chat_stream_recv_batch");
    if (rc == CHAT_OK) {
      Expect(count >= 1 && count <= max, "recv_batch count in 1..max");
      for (size_t i = 0; i < count; ++i) {
        Expect(chat::IsValidUtf8({out[i].data, out[i].len}), "batch reply is UTF-8");
      }
    }
  } else {
    const char* text = nullptr;
    size_t len = 0;
    rc = chat_stream_recv(slot.stream, wait, &text, &len);
    if (slot.queued) {
      CheckedOn(slot.stream, rc, {CHAT_ERR_BAD_STATE}, "recv on a queued stream");
      return;
    }
    CheckedOn(slot.stream, rc, kRecvCodes, "chat_stream_recv");
    if (rc == CHAT_OK) {
      Expect(text != nullptr && text[len] == '\0', "reply is NUL-terminated");
      Expect(chat::IsValidUtf8({text, len}), "reply is UTF-8");
    }
  }
  if (rc == CHAT_OK) {
    Expect(!slot.ended, "no reply after the end", rc);
  } else if (rc == CHAT_END_OF_STREAM || IsGrpcFailure(rc)) {
    if (slot.ended) {
      Expect(slot.saw_end == (rc == CHAT_END_OF_STREAM), "the end does not change", rc);
    }
    AfterFinal(slot, rc);
  }
}

void Send(Input& in, Slot& slot) {
  std::string a, b;
  Text name = MakeText(in, a);
  Text message = MakeText(in, b);
  int64_t wait = in.SmallWait();
  chat_code rc =
      chat_stream_send(slot.stream, name.data, name.len, message.data, message.len, wait);
  if (name.null_with_len || message.null_with_len) {
    CheckedOn(slot.stream, rc, {CHAT_ERR_BAD_ARGUMENT}, "send NULL with a length");
    return;
  }
  bool utf8 = chat::IsValidUtf8({name.data, name.len}) &&
              chat::IsValidUtf8({message.data, message.len});
  if (!utf8) {
    CheckedOn(slot.stream, rc, {CHAT_ERR_BAD_ARGUMENT}, "send invalid UTF-8");
    return;
  }
  CheckedOn(slot.stream, rc,
            {CHAT_OK, CHAT_ERR_TOO_LARGE, CHAT_ERR_WOULD_BLOCK, CHAT_ERR_TIMEOUT, CHAT_ERR_CLOSED},
            "chat_stream_send");
  Expect(rc != (wait == 0 ? CHAT_ERR_TIMEOUT : CHAT_ERR_WOULD_BLOCK),
         "WOULD_BLOCK exactly for timeout 0, TIMEOUT for a wait", rc);
  if (slot.client != kEcho && name.len + message.len > kClientMaxBytes) {
    Expect(rc == CHAT_ERR_TOO_LARGE || rc == CHAT_ERR_CLOSED, "oversized send is TOO_LARGE", rc);
  }
  if (rc == CHAT_ERR_WOULD_BLOCK || rc == CHAT_ERR_TIMEOUT) ++slot.refusals;
}

// --- The queues.

// What every event says about itself, whatever the queue.
void CheckEventShape(const chat_event& e, bool server_queue) {
  int32_t code = Raw(e.code);
  Expect(e.type >= CHAT_EVENT_WAKE && e.type <= CHAT_EVENT_WRITABLE, "event type is a chat_event_type",
         e.type);
  if (e.type == CHAT_EVENT_WAKE) {
    Expect(!e.call && !e.stream && !e.user_data, "WAKE has no call, stream or user_data");
  } else if (server_queue) {
    Expect(e.type == CHAT_EVENT_OPEN || e.type == CHAT_EVENT_MESSAGE ||
               e.type == CHAT_EVENT_HALF_CLOSE || e.type == CHAT_EVENT_CLOSE ||
               e.type == CHAT_EVENT_WRITABLE,
           "the server queue has only server events", e.type);
    Expect(e.call && !e.stream, "a server event has a call and no stream");
  } else {
    Expect(e.type == CHAT_EVENT_REPLY || e.type == CHAT_EVENT_END || e.type == CHAT_EVENT_WRITABLE,
           "the client queue has only client events", e.type);
    Expect(!e.call && e.stream, "a client event has a stream and no call");
  }
  bool final = e.type == CHAT_EVENT_CLOSE || e.type == CHAT_EVENT_END;
  if (final) {
    Expect(IsGrpcCode(code), "CLOSE and END codes are gRPC codes", code);
  } else {
    Expect(code == CHAT_OK, "only CLOSE and END carry a code", code);
  }
  if (e.type == CHAT_EVENT_MESSAGE) {
    Expect(e.name && e.name[e.name_len] == '\0', "MESSAGE name is NUL-terminated");
    Expect(chat::IsValidUtf8({e.name, e.name_len}), "MESSAGE name is UTF-8");
  } else {
    Expect(!e.name && e.name_len == 0, "only MESSAGE has a name");
  }
  if (e.type == CHAT_EVENT_MESSAGE || e.type == CHAT_EVENT_REPLY || final) {
    Expect(e.text && e.text[e.text_len] == '\0', "event text is NUL-terminated");
    Expect(chat::IsValidUtf8({e.text, e.text_len}), "event text is UTF-8");
  } else {
    Expect(!e.text && e.text_len == 0, "this event type has no text", e.type);
  }
}

// FUZZ_CAPI_TRACE=1 in the environment prints every drained event, and
// FUZZ_CAPI_TIME=1 the time each operation and each input took (to read what
// led to a violation, or where the time goes, when reproducing an input).
const bool g_trace = std::getenv("FUZZ_CAPI_TRACE") != nullptr;
const bool g_time = std::getenv("FUZZ_CAPI_TIME") != nullptr;

void Trace(const char* queue, const chat_event* ev, size_t n, size_t max, int64_t wait) {
  if (!g_trace) return;
  static const char* const kNames[] = {"WAKE",  "OPEN",  "MESSAGE", "HALF_CLOSE",
                                       "CLOSE", "REPLY", "END",     "WRITABLE"};
  std::fprintf(stderr, "drain %s (max %zu, wait %lld ms): %zu event(s)\n", queue, max,
               static_cast<long long>(wait), n);
  for (size_t i = 0; i < n; ++i) {
    const chat_event& e = ev[i];
    bool known = e.type >= 0 && e.type <= 7;
    std::fprintf(stderr, "  %s call %llu stream %p user_data %p code %d text %zu bytes\n",
                 known ? kNames[e.type] : "?", static_cast<unsigned long long>(chat_call_id(e.call)),
                 static_cast<void*>(e.stream), e.user_data, Raw(e.code), e.text_len);
  }
}

// A drain's result against what the fuzzer knows of the queue's WAKE.
void CheckWakes(QueueState& qs, const chat_event* ev, size_t n, size_t max, bool was_pending) {
  size_t wakes = 0;
  for (size_t i = 0; i < n; ++i) wakes += ev[i].type == CHAT_EVENT_WAKE;
  Expect(wakes <= 1, "at most one WAKE per drain (wakes coalesce)");
  if (wakes) {
    Expect(was_pending, "a WAKE only after chat_queue_wake");
    qs.wake_pending = false;
    ++qs.wake_events;
    Expect(qs.wake_events <= qs.wakes, "no more WAKEs than wakes");
  }
  // Fewer than asked for means the queue was emptied: chat_queue_fd tells a
  // host that reads the descriptor to drain until then, and no more. So a
  // WAKE pending before such a drain is in it.
  if (was_pending && n < max) {
    Expect(wakes == 1, "a drain that returned fewer events than asked left a WAKE pending");
  }
}

void Wake(QueueState& qs) {
  Checked(chat_queue_wake(qs.q), {CHAT_OK}, "chat_queue_wake");
  ++qs.wakes;
  qs.wake_pending = true;
  pollfd p{qs.fd, POLLIN, 0};
  Expect(poll(&p, 1, 0) == 1 && (p.revents & POLLIN), "the descriptor is readable after a wake");
  Expect(chat_queue_fd(qs.q) == qs.fd, "chat_queue_fd does not change");
}

Slot* SlotOf(const chat_stream* stream) {
  for (Slot& s : g_slots) {
    if (s.stream && s.stream == stream) return &s;
  }
  return nullptr;
}

// The client queue. Returns the number of events.
size_t DrainClient(World& w, int64_t wait, size_t max) {
  QueueState& qs = w.client_q;
  chat_event ev[kMaxBatch + 1];
  std::memset(ev, 0, sizeof ev);
  ev[max].type = -7;  // a sentinel past max
  size_t n = 12345;
  bool was_pending = qs.wake_pending;
  CheckedOn(qs.q, chat_queue_drain(qs.q, wait, ev, max, &n), {CHAT_OK}, "chat_queue_drain (client)");
  Trace("client", ev, n, max, wait);
  Expect(n <= max, "drained count <= max");
  Expect(ev[max].type == -7, "drain writes no event past max");
  CheckWakes(qs, ev, n, max, was_pending);
  for (size_t i = 0; i < n; ++i) {
    const chat_event& e = ev[i];
    CheckEventShape(e, false);
    if (e.type == CHAT_EVENT_WAKE) continue;
    Slot* s = SlotOf(e.stream);
    Expect(s != nullptr, "a client event names a stream that is open (not destroyed)");
    Expect(s->queued, "a client event names a stream opened on this queue");
    Expect(e.user_data == s->user_data, "a client event's user_data is its stream's");
    Expect(!s->end_event, "nothing after a stream's END", e.type);
    switch (e.type) {
      case CHAT_EVENT_REPLY: break;
      case CHAT_EVENT_WRITABLE:
        ++s->writables;
        Expect(s->writables <= s->refusals, "a stream's WRITABLE comes only after a refused send");
        break;
      case CHAT_EVENT_END: {
        s->end_event = true;
        chat_code code = CHAT_UNKNOWN;
        const char* details = nullptr;
        size_t details_len = 0;
        Checked(chat_stream_status(s->stream, &code, &details, &details_len), {CHAT_OK},
                "chat_stream_status once END is out");
        Expect(code == Raw(e.code), "END's code is chat_stream_status's", Raw(e.code));
        Expect(details && std::string_view(details, details_len) ==
                              std::string_view(e.text, e.text_len),
               "END's text is chat_stream_status's details");
        Checked(chat_stream_wait(s->stream, 0), {CHAT_OK}, "wait after END");
        s->ended = true;
        s->saw_end = code == CHAT_OK;
        break;
      }
    }
  }
  return n;
}

// chat_call_set_user_data's values: NULL or one of the tokens.
void* Token(uint8_t b) { return b % 5 ? &g_tokens[b % 5 - 1] : nullptr; }

void Hold(chat_call* call, CallState* st) {
  if (g_nheld >= kMaxHeld) return;
  Checked(chat_call_ref(call), {CHAT_OK}, "chat_call_ref (held)");
  g_held[g_nheld++] = call;
  ++st->held;
}

void Release(size_t i) {
  chat_call* call = g_held[i];
  g_held[i] = g_held[--g_nheld];
  CallState* st = FindCall(call);
  Expect(st != nullptr, "a held call is tracked");
  chat_call_unref(call);
  if (--st->held == 0 && st->lib_released) ForgetCall(st);  // freed now
}

// The input's word on a queued server call; `e` is the event it comes with
// (NULL for a held call). `natural`: no input, answer as the seed does.
// The room: the call joins (or is refused), leaves, or says its message (or
// a notice) to every member.
void RoomOp(chat_room* room, chat_call* call, uint8_t b, const char* text, size_t len) {
  switch (b % 4) {
    case 0: {
      uint32_t replay = b / 4 % 2 ? 0 : 1001;  // above the most: refused
      chat_code rc = chat_room_join(room, call, replay);
      CheckedOn(room, rc, {CHAT_OK, CHAT_ERR_CLOSED, CHAT_ERR_BAD_STATE, CHAT_ERR_BAD_ARGUMENT},
                "chat_room_join");
      Expect(replay <= 1000 || rc == CHAT_ERR_BAD_ARGUMENT, "a replay above 1000 is refused");
      break;
    }
    case 1:
      CheckedOn(room, chat_room_leave(room, call), {CHAT_OK, CHAT_ERR_MISSING}, "chat_room_leave");
      break;
    case 2: {
      chat_code rc = chat_room_publish(room, "room", 4, text, len);
      CheckedOn(room, rc, {CHAT_OK, CHAT_ERR_BAD_ARGUMENT}, "chat_room_publish");
      Expect((rc == CHAT_OK) == (text != nullptr && chat::IsValidUtf8({text, len})),
             "a room publishes exactly the valid UTF-8");
      break;
    }
    default: {
      size_t members = 99;
      Checked(chat_room_members(room, &members), {CHAT_OK}, "chat_room_members");
      CheckedOn(room, chat_room_notice(room, text, len), {CHAT_OK, CHAT_ERR_BAD_ARGUMENT},
                "chat_room_notice");
    }
  }
}

void ActOnCall(chat_call* call, CallState* st, const chat_event* e, Input& in, bool natural) {
  uint8_t a = natural ? 0 : in.Byte();
  const char* text = "r";
  size_t len = 1;
  if (e && e->type == CHAT_EVENT_MESSAGE) text = e->text, len = e->text_len;
  switch (a % 17) {
    case 0:  // natural
      if (!e) break;
      if (e->type == CHAT_EVENT_OPEN) ActOnOpen(call, st);
      if (e->type == CHAT_EVENT_MESSAGE) ActOnMessage(call, st, text, len);
      if (e->type == CHAT_EVENT_HALF_CLOSE) CallComplete(call, st);
      break;
    case 1: break;
    case 2: CallSend(call, st, text, len, 0); break;
    case 3: {
      int k = 1 + in.Byte() % 12;
      for (int i = 0; i < k; ++i) CallSend(call, st, text, len, 0);
      break;
    }
    case 4: CallComplete(call, st); break;
    case 5: CallFail(call, st, 1 + in.Byte() % 16, text, len); break;
    case 6: {  // codes that must be refused
      uint8_t b = in.Byte();
      int32_t raw = (b & 1) ? 0 : (b & 2) ? -1 - b : 17 + b % 100;
      CallFail(call, st, raw, "x", 1);
      break;
    }
    case 7:
      CallSend(call, st, "\xed\xa0\x80", 3, 0);  // a surrogate
      CallFail(call, st, CHAT_ABORTED, "\xff", 1);
      CallFail(call, st, CHAT_ABORTED, nullptr, 1);
      break;
    case 8: {
      void* ud = Token(in.Byte());
      Checked(chat_call_set_user_data(call, ud), {CHAT_OK}, "chat_call_set_user_data");
      Expect(chat_call_user_data(call) == ud, "chat_call_user_data gives back what was set");
      st->user_data = ud;
      break;
    }
    case 9:
      Checked(chat_call_ref(call), {CHAT_OK}, "chat_call_ref");
      chat_call_unref(call);
      break;
    case 10: Hold(call, st); break;
    case 11: CallSend(call, st, text, len, 1 + in.Byte() % 3); break;  // TIMEOUT when full
    case 12: CallSend(call, st, nullptr, in.Byte() % 3, 0); break;
    case 13:
      CheckMetadata(call);
      Expect(chat_call_id(call) == st->id, "chat_call_id does not change");
      Expect(chat_call_peer(call)[0] != '\0', "chat_call_peer of a call is an address");
      break;
    case 14: ErrorRead(call, in.Byte()); break;
    case 15: RoomOp(TheWorld().room, call, in.Byte(), text, len); break;
    default: {  // larger than the server sends or the client takes, or a burst that fits
      uint8_t b = in.Byte();
      size_t sizes[3] = {kServerMaxBytes + 1, kClientMaxBytes + 1, kBigText};
      std::string big(sizes[b % 3], 'b');
      int k = b % 3 == 2 ? 1 + b / 3 % 16 : 1;
      for (int i = 0; i < k; ++i) CallSend(call, st, big.data(), big.size(), 0);
    }
  }
}

// The server queue: every event checked against its call's history first,
// then acted on in order. Returns the number of events.
size_t DrainServer(World& w, Input& in, int64_t wait, size_t max, bool natural) {
  QueueState& qs = w.server_q;
  // This drain releases the calls whose CLOSE the previous one gave out:
  // their handles go unless the fuzzer holds them.
  for (CallState& st : g_calls) {
    if (!st.call || st.phase < 2) continue;
    if (st.held == 0) {
      ForgetCall(&st);
    } else {
      st.lib_released = true;
    }
  }
  chat_event ev[kMaxBatch + 1];
  std::memset(ev, 0, sizeof ev);
  ev[max].type = -7;
  size_t n = 12345;
  bool was_pending = qs.wake_pending;
  CheckedOn(qs.q, chat_queue_drain(qs.q, wait, ev, max, &n), {CHAT_OK}, "chat_queue_drain (server)");
  Trace("server", ev, n, max, wait);
  Expect(n <= max, "drained count <= max");
  Expect(ev[max].type == -7, "drain writes no event past max");
  CheckWakes(qs, ev, n, max, was_pending);
  for (size_t i = 0; i < n; ++i) {
    const chat_event& e = ev[i];
    CheckEventShape(e, true);
    if (e.type == CHAT_EVENT_WAKE) continue;
    CallState* found = FindCall(e.call);
    if (e.type == CHAT_EVENT_OPEN) {
      Expect(found == nullptr, "one OPEN per call");
      Expect(e.user_data == nullptr, "OPEN's user_data is NULL");
      uint64_t id = chat_call_id(e.call);
      Expect(id > 0, "chat_call_id > 0");
      for (const CallState& other : g_calls) {
        Expect(!other.call || other.id != id, "chat_call_id is unique within its server");
      }
      AddCall(e.call)->id = id;
      continue;
    }
    Expect(found != nullptr, "a call's first event is OPEN", e.type);
    CallState& st = *found;
    Expect(st.phase < 2, "nothing after a call's CLOSE", e.type);
    Expect(e.user_data == st.user_data, "a call's events carry what chat_call_set_user_data set");
    switch (e.type) {
      case CHAT_EVENT_MESSAGE:
        Expect(st.phase == 0, "no MESSAGE after the call's HALF_CLOSE");
        break;
      case CHAT_EVENT_HALF_CLOSE:
        Expect(st.phase == 0, "one HALF_CLOSE per call");
        st.phase = 1;
        break;
      case CHAT_EVENT_CLOSE:
        st.phase = 2;
        st.close_code = Raw(e.code);
        if (st.failed) {
          Expect(st.close_code == st.fail_code, "a failed call closes with the code it failed with",
                 st.close_code);
        }
        break;
      case CHAT_EVENT_WRITABLE:
        ++st.writables;
        Expect(st.writables <= st.refusals, "a call's WRITABLE comes only after a refused send");
        break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const chat_event& e = ev[i];
    if (e.type == CHAT_EVENT_WAKE) continue;
    ActOnCall(e.call, FindCall(e.call), &e, in, natural);
  }
  return n;
}

void Drain(World& w, Input& in, uint8_t sub) {
  int64_t wait = (sub & 2) ? in.SmallWait() : 0;
  uint8_t b = in.Byte();
  size_t max = b % (kMaxBatch + 1);
  QueueState& qs = (sub & 1) ? w.server_q : w.client_q;
  if (max == 0) {  // room for nothing is refused, and nothing is taken
    chat_event ev[1];
    size_t n = 99;
    CheckedOn(qs.q, chat_queue_drain(qs.q, wait, ev, 0, &n), {CHAT_ERR_BAD_ARGUMENT},
              "chat_queue_drain with max 0");
    Expect(n == 0, "a refused drain sets *count to 0");
    return;
  }
  if (sub & 1) {
    DrainServer(w, in, wait, max, (sub & 4) != 0);
  } else {
    DrainClient(w, wait, max);
  }
}

// A queue of its own, maybe with a stream on it, destroyed before or after
// the stream.
void ShortLivedQueue(World& w, Input& in) {
  uint8_t b = in.Byte();
  chat_queue* q = nullptr;
  Checked(chat_queue_create(&q), {CHAT_OK}, "chat_queue_create");
  Expect(q && chat_queue_fd(q) >= 0 && chat_queue_fd(q) != w.client_q.fd, "a new queue, a new fd");
  chat_stream* s = nullptr;
  int tag = 0;
  if (b & 1) {
    chat_stream_options o;
    chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
    o.queue = q;
    o.user_data = &tag;
    Checked(chat_client_open(w.clients[(b >> 1) % 3], &o, &s), {CHAT_OK}, "open on a new queue");
    Checked(chat_stream_send(s, "t", 1, "x", 1, 0), {CHAT_OK, CHAT_ERR_WOULD_BLOCK, CHAT_ERR_CLOSED},
            "send on a new queue");
    if (b & 8) Checked(chat_stream_complete(s), {CHAT_OK, CHAT_ERR_CLOSED}, "complete");
  }
  if (b & 16) Checked(chat_queue_wake(q), {CHAT_OK}, "wake a new queue");
  if (b & 32) {
    chat_event ev[4];
    size_t n = 99;
    Checked(chat_queue_drain(q, (b & 64) ? 2 : 0, ev, 4, &n), {CHAT_OK}, "drain a new queue");
    Expect(n <= 4, "drained count <= max");
    for (size_t i = 0; i < n; ++i) {
      CheckEventShape(ev[i], false);
      if (ev[i].type == CHAT_EVENT_WAKE) continue;
      Expect(ev[i].stream == s && ev[i].user_data == &tag, "a new queue's events are its stream's");
    }
  }
  if (b & 128) {  // the queue first: the stream's events are dropped, it goes on
    chat_queue_destroy(q);
    q = nullptr;
    if (s) {
      Checked(chat_stream_send(s, "t", 1, "y", 1, 0),
              {CHAT_OK, CHAT_ERR_WOULD_BLOCK, CHAT_ERR_CLOSED}, "send after its queue is gone");
      Checked(chat_stream_wait(s, in.SmallWait()), {CHAT_OK, CHAT_ERR_TIMEOUT}, "wait");
    }
  }
  chat_stream_destroy(s);
  chat_queue_destroy(q);
}

// A queued server of its own, with a client stream, ended in the order the
// input says: server then queue, queue then server, stop and drain, or the
// stream first; a reference kept on one of its calls outlives it all, and
// every call on it is then CLOSED. At most once per input: it costs a
// listener and a connection.
void ShortLivedServer(Input& in, bool* used) {
  uint8_t b = in.Byte();
  if (*used) return;
  *used = true;
  chat_queue* q = nullptr;
  Checked(chat_queue_create(&q), {CHAT_OK}, "chat_queue_create");
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  so.mode = CHAT_MODE_CUSTOM;
  so.queue = q;
  so.completion_queues = 1;
  so.keepalive_ms = 0;
  so.recv_window = 2;
  so.send_queue_limit = 2;
  chat_server* srv = nullptr;
  Checked(chat_server_start("127.0.0.1:0", &so, &srv), {CHAT_OK}, "start a queued server");
  chat_client* client = Connect(srv, kClientMaxBytes);
  chat_stream* s = nullptr;
  Checked(chat_client_open(client, nullptr, &s), {CHAT_OK}, "open");
  Checked(chat_stream_send(s, "a", 1, "1", 1, 0), {CHAT_OK}, "send");
  if (b & 1) Checked(chat_stream_complete(s), {CHAT_OK}, "complete");
  chat_call* held = nullptr;
  chat_event ev[8];
  size_t n = 0;
  auto drain = [&](int64_t wait) {
    Checked(chat_queue_drain(q, wait, ev, 8, &n), {CHAT_OK}, "drain a short-lived server's queue");
    Trace("short-lived server", ev, n, 8, wait);
    for (size_t i = 0; i < n; ++i) {
      CheckEventShape(ev[i], true);
      if (ev[i].type == CHAT_EVENT_OPEN && (b & 2) && !held) {
        Checked(chat_call_ref(ev[i].call), {CHAT_OK}, "ref");
        held = ev[i].call;
      }
      if (ev[i].type == CHAT_EVENT_MESSAGE && (b & 4)) {
        Checked(chat_call_send(ev[i].call, "r", 1, 0), {CHAT_OK, CHAT_ERR_WOULD_BLOCK, CHAT_ERR_CLOSED},
                "reply");
      }
    }
  };
  for (int i = 0; i < 1 + (b >> 5); ++i) drain(3);
  switch ((b >> 3) % 4) {
    case 0:
      Checked(chat_server_destroy(srv), {CHAT_OK}, "destroy the server");
      chat_queue_destroy(q);
      break;
    case 1:  // the queue first: the server's later events are dropped
      chat_queue_destroy(q);
      Checked(chat_server_destroy(srv), {CHAT_OK}, "destroy the server after its queue");
      break;
    case 2:
      chat_stream_destroy(s);
      s = nullptr;
      drain(3);
      Checked(chat_server_destroy(srv), {CHAT_OK}, "destroy the server");
      chat_queue_destroy(q);
      break;
    default: {
      int32_t cut = -1;
      Checked(chat_server_stop(srv, 0, &cut), {CHAT_OK}, "stop");
      Expect(cut >= 0, "stop counts what it cut");
      drain(0);
      drain(0);
      Checked(chat_server_destroy(srv), {CHAT_OK}, "destroy a stopped server");
      chat_queue_destroy(q);
    }
  }
  if (held) {  // "every call on them returns CHAT_ERR_CLOSED"
    Checked(chat_call_send(held, "x", 1, 0), {CHAT_ERR_CLOSED}, "send on a call of a destroyed server");
    Checked(chat_call_complete(held), {CHAT_ERR_CLOSED}, "complete a call of a destroyed server");
    Checked(chat_call_fail(held, CHAT_ABORTED, "x", 1), {CHAT_ERR_CLOSED},
            "fail a call of a destroyed server");
    Expect(chat_call_id(held) > 0, "a held call keeps its id");
    chat_call_unref(held);
  }
  chat_stream_destroy(s);
  chat_client_destroy(client);
}

// Calls with NULL or unusable arguments on the queue API.
void QueueArgs(World& w, Input& in) {
  chat_event ev[2];
  size_t n = 99;
  char buf[4] = {'x', 'x', 'x', 'x'};
  chat_server* srv = reinterpret_cast<chat_server*>(0x1);
  chat_server_options so;
  chat_queue* q = (in.Byte() & 1) ? w.server_q.q : w.client_q.q;
  switch (in.Byte() % 8) {
    case 0:
      Checked(chat_queue_drain(nullptr, 0, ev, 2, &n), {CHAT_ERR_BAD_ARGUMENT}, "drain NULL");
      Expect(n == 0, "a refused drain sets *count to 0");
      break;
    case 1:
      CheckedOn(q, chat_queue_drain(q, 0, nullptr, 2, &n), {CHAT_ERR_BAD_ARGUMENT},
                "drain into NULL");
      break;
    case 2:
      CheckedOn(q, chat_queue_drain(q, 0, ev, 2, nullptr), {CHAT_ERR_BAD_ARGUMENT},
                "drain with no count");
      break;
    case 3:
      Checked(chat_queue_wake(nullptr), {CHAT_ERR_BAD_ARGUMENT}, "wake NULL");
      Checked(chat_queue_create(nullptr), {CHAT_ERR_BAD_ARGUMENT}, "create into NULL");
      Expect(chat_queue_fd(nullptr) == -1, "chat_queue_fd(NULL) is -1");
      chat_queue_destroy(nullptr);
      break;
    case 4:
      Expect(chat_stream_error(nullptr, buf, 4) == 0 && buf[0] == '\0', "error of NULL stream");
      Expect(chat_call_error(nullptr, buf, 4) == 0 && buf[0] == '\0', "error of NULL call");
      Expect(chat_client_error(nullptr, nullptr, 0) == 0, "error of NULL client");
      Expect(chat_server_error(nullptr, buf, 1) == 0 && buf[0] == '\0', "error of NULL server");
      Expect(chat_queue_error(nullptr, buf, 4) == 0 && buf[0] == '\0', "error of NULL queue");
      Expect(buf[1] == 'x', "error of NULL writes one byte");
      break;
    case 5:
      Checked(chat_call_set_user_data(nullptr, &n), {CHAT_ERR_BAD_ARGUMENT}, "set_user_data NULL");
      Expect(chat_call_user_data(nullptr) == nullptr, "user_data of NULL");
      break;
    case 6:  // a queue needs custom mode, and takes no callbacks: refused before binding
      chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
      so.queue = q;
      Checked(chat_server_start("127.0.0.1:0", &so, &srv), {CHAT_ERR_BAD_ARGUMENT},
              "a queue in echo mode");
      Expect(srv == nullptr, "failed start sets *out to NULL");
      so.mode = CHAT_MODE_CUSTOM;
      so.on_message = OnMessage;
      Checked(chat_server_start("127.0.0.1:0", &so, &srv), {CHAT_ERR_BAD_ARGUMENT},
              "a queue with callbacks");
      break;
    default:
      chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
      so.mode = CHAT_MODE_CUSTOM;
      so.queue = reinterpret_cast<chat_queue*>(&so);  // not a queue
      Checked(chat_server_start("127.0.0.1:0", &so, &srv), {CHAT_ERR_BAD_ARGUMENT},
              "a pointer that is not a queue");
  }
}

// Op 14: the high nibble says which.
void QueueOp(World& w, Input& in, uint8_t sub, bool* used_server) {
  switch (sub) {
    case 0: Wake(w.client_q); break;
    case 1: Wake(w.server_q); break;
    case 2: {
      Slot& s = g_slots[in.Byte() % kSlots];
      uint8_t b = in.Byte();
      if (s.stream) ErrorRead(s.stream, b);
      break;
    }
    case 3: {
      chat_client* c = w.clients[in.Byte() % kServers];
      ErrorRead(c, in.Byte());
      break;
    }
    case 4: {
      chat_server* s = w.servers[in.Byte() % kServers];
      ErrorRead(s, in.Byte());
      Expect(FullError(s).empty(), "no call on a server failed");
      break;
    }
    case 5: {
      QueueState& qs = (in.Byte() & 1) ? w.server_q : w.client_q;
      ErrorRead(qs.q, in.Byte());
      break;
    }
    case 6:
    case 7: {  // a held call: error read, or any action
      uint8_t i = in.Byte();
      if (g_nheld == 0) break;
      chat_call* call = g_held[i % g_nheld];
      if (sub == 6) {
        ErrorRead(call, in.Byte());
      } else {
        ActOnCall(call, FindCall(call), nullptr, in, false);
      }
      break;
    }
    case 8: {
      uint8_t i = in.Byte();
      if (g_nheld > 0) Release(i % g_nheld);
      break;
    }
    case 9: ShortLivedQueue(w, in); break;
    case 10: QueueArgs(w, in); break;
    case 12: ShortLivedServer(in, used_server); break;
    case 11: {  // sends until one is refused: the way to a WRITABLE
      Slot& s = g_slots[in.Byte() % kSlots];
      int k = 8 * (1 + in.Byte() % 8);
      std::string big(kBigText, 'w');
      for (int i = 0; s.stream && i < k; ++i) {
        chat_code rc = chat_stream_send(s.stream, "b", 1, big.data(), big.size(), 0);
        CheckedOn(s.stream, rc, {CHAT_OK, CHAT_ERR_WOULD_BLOCK, CHAT_ERR_CLOSED}, "burst send");
        if (rc == CHAT_ERR_WOULD_BLOCK) ++s.refusals;
        if (rc != CHAT_OK) break;
      }
      break;
    }
    default: break;
  }
}

void NullHandles(Input& in) {
  const char* text;
  size_t len, count;
  chat_text batch[1];
  chat_code code;
  chat_stream* s = nullptr;
  chat_client* c = nullptr;
  chat_server* srv = nullptr;
  switch (in.Byte() % 12) {
    case 0: Checked(chat_stream_send(nullptr, "a", 1, "b", 1, 0), {CHAT_ERR_BAD_ARGUMENT}, "send NULL"); break;
    case 1: Checked(chat_stream_complete(nullptr), {CHAT_ERR_BAD_ARGUMENT}, "complete NULL"); break;
    case 2: Checked(chat_stream_cancel(nullptr), {CHAT_ERR_BAD_ARGUMENT}, "cancel NULL"); break;
    case 3: Checked(chat_stream_recv(nullptr, 0, &text, &len), {CHAT_ERR_BAD_ARGUMENT}, "recv NULL"); break;
    case 4: Checked(chat_stream_recv_batch(nullptr, 0, batch, 1, &count), {CHAT_ERR_BAD_ARGUMENT}, "batch NULL"); break;
    case 5: Checked(chat_stream_wait(nullptr, 0), {CHAT_ERR_BAD_ARGUMENT}, "wait NULL"); break;
    case 6: Checked(chat_stream_status(nullptr, &code, nullptr, nullptr), {CHAT_ERR_BAD_ARGUMENT}, "status NULL"); break;
    case 7: Checked(chat_client_open(nullptr, nullptr, &s), {CHAT_ERR_BAD_ARGUMENT}, "open NULL"); break;
    case 8:
      Checked(chat_call_send(nullptr, "x", 1, 0), {CHAT_ERR_BAD_ARGUMENT}, "call send NULL");
      Checked(chat_call_complete(nullptr), {CHAT_ERR_BAD_ARGUMENT}, "call complete NULL");
      Checked(chat_call_fail(nullptr, CHAT_INTERNAL, "x", 1), {CHAT_ERR_BAD_ARGUMENT}, "call fail NULL");
      Checked(chat_call_ref(nullptr), {CHAT_ERR_BAD_ARGUMENT}, "call ref NULL");
      chat_call_unref(nullptr);
      Expect(chat_call_id(nullptr) == 0 && std::strcmp(chat_call_peer(nullptr), "") == 0, "NULL call");
      break;
    case 9:
      Checked(chat_server_stop(nullptr, 0, nullptr), {CHAT_ERR_BAD_ARGUMENT}, "stop NULL");
      Checked(chat_server_destroy(nullptr), {CHAT_OK}, "destroy NULL server");
      Expect(chat_server_port(nullptr) == -1, "port of NULL");
      break;
    case 10:
      Checked(chat_client_create(nullptr, nullptr, &c), {CHAT_ERR_BAD_ARGUMENT}, "create NULL");
      Checked(chat_server_start(nullptr, nullptr, &srv), {CHAT_ERR_BAD_ARGUMENT}, "start NULL");
      break;
    default:
      chat_stream_destroy(nullptr);
      chat_client_destroy(nullptr);
  }
}

void OptionsInit(Input& in) {
  uint32_t version = in.Byte();
  if (version & 0x80) version = 0xFFFFFF00u | version;
  chat_server_options so;
  chat_client_options co;
  chat_stream_options sto;
  chat_code rc = chat_server_options_init(&so, version);
  auto known = [version](uint32_t newest) {
    return version >= 1 && version <= newest ? CHAT_OK : CHAT_ERR_BAD_ARGUMENT;
  };
  Checked(rc, {known(CHAT_SERVER_OPTIONS_VERSION)}, "server_options_init");
  rc = chat_client_options_init(&co, version);
  Checked(rc, {known(CHAT_CLIENT_OPTIONS_VERSION)}, "client_options_init");
  rc = chat_stream_options_init(&sto, version);
  Checked(rc, {known(CHAT_STREAM_OPTIONS_VERSION)}, "stream_options_init");
  // A struct carrying a bad version is refused by the functions reading it.
  if (known(CHAT_SERVER_OPTIONS_VERSION) != CHAT_OK) {
    chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
    so.version = version;
    chat_server* srv = reinterpret_cast<chat_server*>(0x1);
    Checked(chat_server_start("127.0.0.1:0", &so, &srv), {CHAT_ERR_BAD_ARGUMENT}, "start bad version");
    Expect(srv == nullptr, "failed start sets *out to NULL");
  }
  if (known(CHAT_CLIENT_OPTIONS_VERSION) != CHAT_OK) {
    chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
    co.version = version;
    chat_client* c = reinterpret_cast<chat_client*>(0x1);
    Checked(chat_client_create("127.0.0.1:1", &co, &c), {CHAT_ERR_BAD_ARGUMENT}, "create bad version");
    Expect(c == nullptr, "failed create sets *out to NULL");
  }
  Checked(chat_server_options_init(nullptr, 1), {CHAT_ERR_BAD_ARGUMENT}, "init NULL");
}

void CodeName(Input& in) {
  int32_t raw = 0;
  std::string_view b = in.Bytes(4);
  std::memcpy(&raw, b.data(), b.size());
  const char* name = fuzz_code_name(raw);
  Expect(name != nullptr && name[0] != '\0', "chat_code_name is never NULL or empty");
  bool known = raw >= 0 && raw <= CHAT_ERR_LIBRARY_BUG;  // the last code chat.h defines
  Expect(known == (std::strcmp(name, "UNRECOGNIZED") != 0), "UNRECOGNIZED exactly for unknown codes");
}

// Addresses and targets from the input, through the C ABI. A listen address
// is tried only when the validator refuses it (nothing must bind then): the
// fuzzer must not open listeners on arbitrary ports of a shared machine.
void Addresses(Input& in) {
  std::string text(in.Bytes(in.Byte() % 32));
  text = text.substr(0, text.find('\0'));
  if (!chat::internal::ParseListenAddress(text, nullptr).ok()) {
    chat_server* srv = reinterpret_cast<chat_server*>(0x1);
    Checked(chat_server_start(text.c_str(), nullptr, &srv), {CHAT_ERR_BAD_ARGUMENT},
            "malformed address");
    Expect(srv == nullptr, "refused start sets *out to NULL");
  }
  std::string normalized;
  bool valid = chat::internal::NormalizeTarget(text, &normalized).ok();
  chat_client* c = nullptr;
  chat_code rc = chat_client_create(text.c_str(), nullptr, &c);
  Checked(rc, {valid ? CHAT_OK : CHAT_ERR_BAD_ARGUMENT}, "chat_client_create");
  chat_client_destroy(c);  // never opened: no connection, no lookup
}

// The end of an input: destroy its streams and release its references, then
// drain both queues until they are quiet, so the next input starts clean.
void Quiesce(World& w) {
  for (Slot& slot : g_slots) {
    chat_stream_destroy(slot.stream);
    slot = Slot{};
  }
  // Destroyed streams leave nothing behind: at most a WAKE.
  for (int i = 0; i < 4 && DrainClient(w, 0, kMaxBatch) > 0; ++i) {
  }
  while (g_nheld > 0) Release(g_nheld - 1);
  // Their calls on the queued server end (the client cancelled): take
  // their events and answer as the seed does, until every call is closed
  // and nothing is pending (bounded; a call left open is looked at again
  // at the end of the next inputs).
  Input none(nullptr, 0);
  auto until = Clock::now() + std::chrono::seconds(2);
  for (;;) {
    bool open = false;
    for (const CallState& st : g_calls) open = open || (st.call && st.phase < 2);
    size_t n = DrainServer(w, none, open ? 5 : 0, kMaxBatch, true);
    if ((n == 0 && !open) || Clock::now() > until) break;
  }
  auto now = Clock::now();
  for (CallState& st : g_calls) {
    if (!st.call || st.phase == 2) continue;
    if (!st.orphan) {
      st.orphan = true;
      st.orphaned = now;
    } else if (now - st.orphaned > kOrphanLimit) {
      Violation("a queued server call never closed after its client stream was destroyed",
                static_cast<int>(st.id));
    }
  }
  // Nothing came for the client queue meanwhile (DrainClient refuses an
  // event of a stream that is not open).
  DrainClient(w, 0, kMaxBatch);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  auto t_input = Clock::now();
  bool used_server = false;
  Input in(data, size);
  int ops = 0;
  while (!in.done() && ops++ < 64) {
    uint8_t op = in.Byte();
    Slot& slot = g_slots[(op >> 4) % kSlots];
    struct OpTimer {
      uint8_t op;
      Clock::time_point t0 = Clock::now();
      ~OpTimer() {
        if (!g_time) return;
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        std::fprintf(stderr, "op %02x: %.1f ms\n", op, ms);
      }
    } timer{op};
    switch (op % 16) {
      case 0:
      case 15:
        if (slot.stream) chat_stream_destroy(slot.stream);
        slot = Slot{};
        OpenStream(w, in, slot, op % 16 == 15);
        break;
      case 1:
        if (slot.stream) Send(in, slot);
        break;
      case 2:
        if (slot.stream) {
          CheckedOn(slot.stream, chat_stream_complete(slot.stream), {CHAT_OK, CHAT_ERR_CLOSED},
                    "complete");
        }
        break;
      case 3:
        if (slot.stream) {
          CheckedOn(slot.stream, chat_stream_cancel(slot.stream), {CHAT_OK, CHAT_ERR_CLOSED},
                    "cancel");
        }
        break;
      case 4:
      case 5:
        if (slot.stream) Recv(in, slot, op % 16 == 5);
        break;
      case 6:
        if (slot.stream) {
          CheckedOn(slot.stream, chat_stream_wait(slot.stream, in.SmallWait()),
                    {CHAT_OK, CHAT_ERR_TIMEOUT}, "wait");
        }
        break;
      case 7:
        if (slot.stream) {
          chat_code code;
          chat_code rc = chat_stream_status(slot.stream, &code, nullptr, nullptr);
          CheckedOn(slot.stream, rc, {CHAT_OK, CHAT_ERR_BAD_STATE}, "status");
          if (slot.ended) Expect(rc == CHAT_OK, "status known once recv or END saw the end", rc);
          if (rc == CHAT_OK) {
            Expect(IsGrpcCode(Raw(code)), "status code is a gRPC code", code);
            Checked(chat_stream_wait(slot.stream, 0), {CHAT_OK}, "wait once status is known");
          }
        }
        break;
      case 8:
        chat_stream_destroy(slot.stream);
        slot = Slot{};
        break;
      case 9: NullHandles(in); break;
      case 10: OptionsInit(in); break;
      case 11: CodeName(in); break;
      case 12: Addresses(in); break;
      case 13: Drain(w, in, op >> 4); break;
      case 14: QueueOp(w, in, op >> 4, &used_server); break;
    }
  }
  auto q0 = Clock::now();
  Quiesce(w);
  if (g_time) {
    std::fprintf(stderr, "input %zu bytes: quiesce %.1f ms total %.1f ms\n", size,
                 std::chrono::duration<double, std::milli>(Clock::now() - q0).count(),
                 std::chrono::duration<double, std::milli>(Clock::now() - t_input).count());
  }
  return 0;
}
