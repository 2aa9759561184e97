// fuzz_capi: short programs of C ABI calls against a live server/client pair.
//
// Once per process: an echo server and a CHAT_MODE_CUSTOM server on
// 127.0.0.1:0, and one client for each. Each input is read as a program of
// operations on up to kSlots streams (open, send, complete, cancel, recv,
// recv_batch, wait, status, destroy), plus calls on NULL handles, options
// structs with bad versions, chat_code_name with any int, and malformed
// addresses and targets. Every wait is at most kMaxWaitMs, so an input takes
// a few milliseconds; the program ends by destroying every stream it opened.
//
// The custom server's callbacks act on the first bytes of each message
// (reply, reply several, complete, fail with some code, fail with a code
// that is not allowed, reply with invalid UTF-8, ref/unref), so the input
// also drives the server side.
//
// Checked: every return code is one that chat.h documents for the function;
// chat_last_error() is never NULL; a received reply is valid UTF-8;
// CHAT_ERR_END and final codes come only once the stream has ended (its
// status is known, and END means status OK); recv_batch counts are within
// bounds.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>

#include "address.h"
#include "c_shim.h"
#include "chat.h"
#include "chat/status.h"

namespace {

constexpr int kSlots = 4;
constexpr int64_t kMaxWaitMs = 50;
constexpr size_t kServerMaxBytes = 4096;  // echo server's message limit
constexpr size_t kClientMaxBytes = 2048;  // custom server's client's limit

[[noreturn]] void Violation(const char* what, chat_code rc) {
  std::fprintf(stderr, "fuzz_capi: contract violated: %s (got %d %s, last error: %s)\n", what,
               static_cast<int>(rc), chat_code_name(rc), chat_last_error());
  std::abort();
}

void Expect(bool ok, const char* what, chat_code rc = CHAT_OK) {
  if (!ok) Violation(what, rc);
}

bool In(chat_code rc, std::initializer_list<chat_code> allowed) {
  for (chat_code c : allowed) {
    if (c == rc) return true;
  }
  return false;
}

bool IsGrpcFailure(chat_code rc) { return rc >= CHAT_CANCELLED && rc <= CHAT_UNAUTHENTICATED; }

// Every failure leaves a message.
chat_code Checked(chat_code rc, std::initializer_list<chat_code> allowed, const char* what) {
  if (!In(rc, allowed)) Violation(what, rc);
  if (rc != CHAT_OK) Expect(chat_last_error() != nullptr, "chat_last_error is not NULL", rc);
  return rc;
}

// --- The custom server's callbacks: the message's first bytes say what to do.

std::atomic<uint64_t> g_opens{0}, g_closes{0};

void OnOpen(chat_call* call, void*) {
  g_opens.fetch_add(1, std::memory_order_relaxed);
  const char* v;
  size_t n;
  chat_code rc = chat_call_metadata(call, "x-open", &v, &n);
  Checked(rc, {CHAT_OK, CHAT_NOT_FOUND}, "chat_call_metadata");
  if (rc == CHAT_OK && n > 0 && v[0] == 'f') {
    Checked(chat_call_fail(call, CHAT_PERMISSION_DENIED, "no", 2), {CHAT_OK, CHAT_ERR_CLOSED},
            "chat_call_fail in on_open");
  }
  size_t count = 0;
  Checked(chat_call_metadata_count(call, &count), {CHAT_OK}, "chat_call_metadata_count");
  for (size_t i = 0; i <= count; ++i) {
    const char *key, *value;
    size_t kl, vl;
    chat_code r = chat_call_metadata_at(call, i, &key, &kl, &value, &vl);
    Checked(r, {i < count ? CHAT_OK : CHAT_ERR_BAD_ARGUMENT}, "chat_call_metadata_at");
  }
}

void OnMessage(chat_call* call, const char* name, size_t name_len, const char* message,
               size_t message_len, void*) {
  Expect(chat::IsValidUtf8({name, name_len}) && chat::IsValidUtf8({message, message_len}),
         "on_message strings are UTF-8");
  const std::initializer_list<chat_code> send_codes = {CHAT_OK, CHAT_ERR_WOULD_BLOCK,
                                                       CHAT_ERR_CLOSED, CHAT_ERR_TOO_LARGE};
  char op = message_len ? message[0] : 'e';
  unsigned char arg = message_len > 1 ? static_cast<unsigned char>(message[1]) : 0;
  switch (op) {
    case 'c':
      Checked(chat_call_complete(call), {CHAT_OK, CHAT_ERR_CLOSED}, "chat_call_complete");
      break;
    case 'f': {
      auto code = static_cast<chat_code>(1 + arg % 16);
      Checked(chat_call_fail(call, code, message, message_len), {CHAT_OK, CHAT_ERR_CLOSED},
              "chat_call_fail");
      break;
    }
    case 'z': {  // codes chat_call_fail must refuse
      int32_t raw = (arg & 1) ? 0 : 17 + arg % 100;
      Checked(fuzz_call_fail(call, raw, "x", 1), {CHAT_ERR_BAD_ARGUMENT}, "chat_call_fail bad code");
      break;
    }
    case 'u':  // invalid UTF-8 is refused
      Checked(chat_call_send(call, "\xff\xfe", 2, 0), {CHAT_ERR_BAD_ARGUMENT}, "send bad UTF-8");
      Checked(chat_call_fail(call, CHAT_INTERNAL, "\xc0", 1), {CHAT_ERR_BAD_ARGUMENT},
              "fail bad UTF-8");
      break;
    case 'm':
      for (int i = 0; i < 1 + arg % 8; ++i) {
        Checked(chat_call_send(call, message, message_len, 0), send_codes, "chat_call_send");
      }
      break;
    case 'r':
      Checked(chat_call_ref(call), {CHAT_OK}, "chat_call_ref");
      chat_call_unref(call);
      break;
    case 'n':
      Checked(chat_call_send(call, nullptr, arg, 0), {arg ? CHAT_ERR_BAD_ARGUMENT : CHAT_OK,
                                                     CHAT_ERR_CLOSED, CHAT_ERR_WOULD_BLOCK},
              "chat_call_send NULL");
      break;
    default:
      Checked(chat_call_send(call, message, message_len, 0), send_codes, "chat_call_send");
  }
  Expect(chat_call_id(call) > 0, "chat_call_id > 0");
  Expect(chat_call_peer(call) != nullptr, "chat_call_peer not NULL");
}

void OnComplete(chat_call* call, void*) {
  Checked(chat_call_complete(call), {CHAT_OK, CHAT_ERR_CLOSED}, "chat_call_complete");
}

void OnClose(chat_call*, chat_code code, const char*, size_t, void*) {
  Expect(code >= CHAT_OK && code <= CHAT_UNAUTHENTICATED, "on_close code is a gRPC code", code);
  g_closes.fetch_add(1, std::memory_order_relaxed);
}

struct World {
  chat_server* echo = nullptr;
  chat_server* custom = nullptr;
  chat_client* clients[2] = {nullptr, nullptr};
};

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

// Started once and never destroyed: the process exits when libFuzzer is done.
World& TheWorld() {
  static World* w = [] {
    auto* world = new World;
    chat_server_options so;
    chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
    so.max_message_bytes = kServerMaxBytes;
    so.send_queue_limit = 8;
    so.keepalive_ms = 0;
    if (chat_server_start("127.0.0.1:0", &so, &world->echo) != CHAT_OK) {
      Violation("echo server", CHAT_UNKNOWN);
    }
    so.mode = CHAT_MODE_CUSTOM;
    so.max_message_bytes = 4 << 20;
    so.recv_window = 4;
    so.on_open = OnOpen;
    so.on_message = OnMessage;
    so.on_complete = OnComplete;
    so.on_close = OnClose;
    if (chat_server_start("127.0.0.1:0", &so, &world->custom) != CHAT_OK) {
      Violation("custom server", CHAT_UNKNOWN);
    }
    // The echo server's client may send more than its server takes.
    world->clients[0] = Connect(world->echo, 2 * kServerMaxBytes);
    world->clients[1] = Connect(world->custom, kClientMaxBytes);
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
  bool ended = false;      // a recv returned END or a final code
  bool saw_end = false;    // ... and it was END
};

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
    case 3:
      storage.assign(kind % 2 ? kClientMaxBytes + 1 : kServerMaxBytes + 1, 'a');
      return {storage.data(), storage.size()};
    default: {
      std::string_view b = in.Bytes(in.Byte() % 24);
      storage.assign(b.data(), b.size());
      return {storage.data(), storage.size()};
    }
  }
}

void OpenStream(World& w, Input& in, Slot& slot) {
  uint8_t flags = in.Byte();
  slot = Slot{};
  slot.client = flags & 1;
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
  if (flags & 64) {
    o.version = in.Byte() % 5;  // 0 and 4 are unknown versions
    if (o.version == 0 || o.version > CHAT_STREAM_OPTIONS_VERSION) bad = true;
    if (o.version == 1) o.metadata_value_lens = nullptr;  // not read
  }
  chat_stream* s = reinterpret_cast<chat_stream*>(0x1);
  chat_code rc = chat_client_open(w.clients[slot.client], (flags & 128) ? nullptr : &o, &s);
  if (flags & 128) bad = false;
  Checked(rc, {bad ? CHAT_ERR_BAD_ARGUMENT : CHAT_OK}, "chat_client_open");
  if (rc != CHAT_OK) {
    Expect(s == nullptr, "failed open sets *out to NULL", rc);
    slot.stream = nullptr;
  } else {
    Expect(s != nullptr, "open gives a stream");
    slot.stream = s;
  }
}

void AfterFinal(Slot& slot, chat_code rc) {
  // END / a final code: the stream's status is known and agrees.
  chat_code code = CHAT_UNKNOWN;
  const char* details = nullptr;
  size_t details_len = 0;
  Checked(chat_stream_status(slot.stream, &code, &details, &details_len), {CHAT_OK},
          "status after the end");
  if (rc == CHAT_ERR_END) {
    Expect(code == CHAT_OK, "END only after an OK end", code);
  } else {
    Expect(code == rc, "final code of recv is the status code", code);
  }
  Expect(details != nullptr, "status details not NULL");
  Checked(chat_stream_wait(slot.stream, 0), {CHAT_OK}, "wait after the end");
  slot.ended = true;
  slot.saw_end = rc == CHAT_ERR_END;
}

const std::initializer_list<chat_code> kRecvCodes = {
    CHAT_OK, CHAT_ERR_END, CHAT_ERR_TIMEOUT, CHAT_CANCELLED, CHAT_UNKNOWN, CHAT_INVALID_ARGUMENT,
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
      Checked(rc, {CHAT_ERR_BAD_ARGUMENT}, "recv_batch with max 0");
      return;
    }
    Checked(rc, kRecvCodes, "chat_stream_recv_batch");
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
    Checked(rc, kRecvCodes, "chat_stream_recv");
    if (rc == CHAT_OK) {
      Expect(text != nullptr && text[len] == '\0', "reply is NUL-terminated");
      Expect(chat::IsValidUtf8({text, len}), "reply is UTF-8");
    }
  }
  if (rc == CHAT_OK) {
    Expect(!slot.ended, "no reply after the end", rc);
  } else if (rc == CHAT_ERR_END || IsGrpcFailure(rc)) {
    if (slot.ended) {
      Expect(slot.saw_end == (rc == CHAT_ERR_END), "the end does not change", rc);
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
    Checked(rc, {CHAT_ERR_BAD_ARGUMENT}, "send NULL with a length");
    return;
  }
  bool utf8 = chat::IsValidUtf8({name.data, name.len}) &&
              chat::IsValidUtf8({message.data, message.len});
  if (!utf8) {
    Checked(rc, {CHAT_ERR_BAD_ARGUMENT}, "send invalid UTF-8");
    return;
  }
  Checked(rc, {CHAT_OK, CHAT_ERR_TOO_LARGE, CHAT_ERR_WOULD_BLOCK, CHAT_ERR_TIMEOUT, CHAT_ERR_CLOSED},
          "chat_stream_send");
  if (slot.client == 1 && name.len + message.len > kClientMaxBytes) {
    Expect(rc == CHAT_ERR_TOO_LARGE || rc == CHAT_ERR_CLOSED, "oversized send is TOO_LARGE", rc);
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
  bool known = raw >= 0 && raw <= CHAT_ERR_BAD_STATE;
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  Input in(data, size);
  Slot slots[kSlots];
  int ops = 0;
  while (!in.done() && ops++ < 64) {
    uint8_t op = in.Byte();
    Slot& slot = slots[(op >> 4) % kSlots];
    switch (op % 16) {
      case 0:
        if (slot.stream) chat_stream_destroy(slot.stream);
        OpenStream(w, in, slot);
        break;
      case 1:
        if (slot.stream) Send(in, slot);
        break;
      case 2:
        if (slot.stream) {
          Checked(chat_stream_complete(slot.stream), {CHAT_OK, CHAT_ERR_CLOSED}, "complete");
        }
        break;
      case 3:
        if (slot.stream) {
          Checked(chat_stream_cancel(slot.stream), {CHAT_OK, CHAT_ERR_CLOSED}, "cancel");
        }
        break;
      case 4:
      case 5:
        if (slot.stream) Recv(in, slot, op % 16 == 5);
        break;
      case 6:
        if (slot.stream) {
          Checked(chat_stream_wait(slot.stream, in.SmallWait()), {CHAT_OK, CHAT_ERR_TIMEOUT},
                  "wait");
        }
        break;
      case 7:
        if (slot.stream) {
          chat_code code;
          chat_code rc = chat_stream_status(slot.stream, &code, nullptr, nullptr);
          Checked(rc, {CHAT_OK, CHAT_ERR_BAD_STATE}, "status");
          if (slot.ended) Expect(rc == CHAT_OK, "status known once recv saw the end", rc);
          if (rc == CHAT_OK) {
            Expect(code >= CHAT_OK && code <= CHAT_UNAUTHENTICATED, "status code is a gRPC code",
                   code);
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
      default: break;  // unused op numbers: keep the decoder forgiving
    }
  }
  for (Slot& slot : slots) chat_stream_destroy(slot.stream);
  return 0;
}
