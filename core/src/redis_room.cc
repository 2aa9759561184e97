// The room on a Redis stream: XADD to publish, one XREAD BLOCK reader per
// server to deliver (see redis_room.h).
#include "redis_room.h"

#include <grpc/support/log.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdarg>
#include <cstdlib>
#include <memory>

namespace chat {
namespace internal {
namespace {

constexpr auto kConnectTimeout = std::chrono::milliseconds(1000);
// A command Redis does not answer in this long fails, and the connection
// with it: nothing waits on a Redis that stopped answering.
constexpr auto kCommandTimeout = std::chrono::milliseconds(2000);
// How long one XREAD waits for new entries; Stop does not wait for it (it
// shuts the socket down).
constexpr int kBlockMs = 1000;
constexpr int kReadCount = 512;  // entries per XREAD
constexpr auto kFirstBackoff = std::chrono::milliseconds(50);
constexpr auto kMaxBackoff = std::chrono::milliseconds(2000);

timeval ToTimeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// hiredis writes with write(2): on a connection Redis (or Stop's shutdown)
// closed, that raises SIGPIPE, which would kill the host. Blocked on this
// thread for the call; one it raised is taken before unblocking.
class NoSigpipe {
 public:
  NoSigpipe() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending_);
    was_pending_ = sigismember(&pending_, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~NoSigpipe() {
    if (!was_pending_) {
      sigset_t pipe, now;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      sigpending(&now);
      timespec zero{0, 0};
      if (sigismember(&now, SIGPIPE) == 1) sigtimedwait(&pipe, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_, pending_;
  bool was_pending_;
};

Reply Command(redisContext* c, const char* format, ...) {
  NoSigpipe no_sigpipe;
  va_list ap;
  va_start(ap, format);
  void* r = redisvCommand(c, format, ap);
  va_end(ap);
  return Reply(static_cast<redisReply*>(r));
}

bool IsDigits(const std::string& s) {
  return !s.empty() && s.size() <= 9 &&
         std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

std::string Str(const redisReply* r) { return std::string(r->str, r->len); }

// An entry's line: "<name>: <message>", or a notice's text; `seq` gets its
// sequence number (0 for an entry without one).
std::string LineOf(const redisReply* entry, uint64_t* seq = nullptr) {
  std::string name, message, notice;
  bool chat = false;
  if (seq) *seq = 0;
  const redisReply* fields = entry->element[1];
  for (size_t f = 0; fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2) {
    std::string key = Str(fields->element[f]);
    if (key == "name") {
      name = Str(fields->element[f + 1]);
      chat = true;
    } else if (key == "message") {
      message = Str(fields->element[f + 1]);
    } else if (key == "notice") {
      notice = Str(fields->element[f + 1]);
    } else if (key == "seq" && seq) {
      *seq = std::strtoull(Str(fields->element[f + 1]).c_str(), nullptr, 10);
    }
  }
  return chat ? name + ": " + message : notice;
}

// Appends an entry numbered by the room's counter (INCR <key>:seq), in one
// step: consecutive numbers let a reader see entries it never got (trimmed
// while it was away from Redis). ARGV: MAXLEN, then the entry's fields.
constexpr const char* kAppendScript =
    "local seq = redis.call('INCR', KEYS[2]) "
    "return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'seq', seq, "
    "unpack(ARGV, 2))";

}  // namespace

Status ParseRedisUrl(const std::string& url, RedisAddress* out) {
  auto bad = [&](const char* why) {
    return Status(Code::kBadArgument,
                  "room URL \"" + url + "\" is not redis://HOST:PORT[/DB]: " + why);
  };
  const std::string scheme = "redis://";
  if (url.compare(0, scheme.size(), scheme) != 0) return bad("the scheme is not redis://");
  std::string rest = url.substr(scheme.size()), db = "0";
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    db = rest.substr(slash + 1);
    rest.resize(slash);
    if (!IsDigits(db)) return bad("DB is not a number");
  }
  std::string host;
  size_t colon;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) return bad("unclosed [");
    host = rest.substr(1, close - 1);
    colon = close + 1;
    if (colon >= rest.size() || rest[colon] != ':') return bad("no port");
  } else {
    colon = rest.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    host = rest.substr(0, colon);
    if (host.find(':') != std::string::npos) return bad("an IPv6 host needs [brackets]");
  }
  std::string port = rest.substr(colon + 1);
  if (host.empty()) return bad("no host");
  if (!IsDigits(port) || std::atoi(port.c_str()) < 1 || std::atoi(port.c_str()) > 65535) {
    return bad("the port is not 1..65535");
  }
  if (out) {
    out->host = host;
    out->port = std::atoi(port.c_str());
    out->db = std::atoi(db.c_str());
  }
  return Status::Ok();
}

RedisRoom::RedisRoom(RedisAddress address, const std::string& name, size_t max_len,
                     Deliver deliver, Lost lost)
    : address_(std::move(address)),
      key_("room:" + name),
      seq_key_("room:" + name + ":seq"),
      max_len_(std::to_string(max_len)),
      deliver_(std::move(deliver)),
      lost_(std::move(lost)) {}

RedisRoom::~RedisRoom() { Stop(); }

redisContext* RedisRoom::Connect(std::chrono::milliseconds command_timeout) const {
  redisContext* c =
      redisConnectWithTimeout(address_.host.c_str(), address_.port, ToTimeval(kConnectTimeout));
  if (c && !c->err && redisSetTimeout(c, ToTimeval(command_timeout)) == REDIS_OK) {
    if (address_.db == 0) return c;
    Reply r = Command(c, "SELECT %d", address_.db);
    if (r && r->type == REDIS_REPLY_STATUS) return c;
  }
  if (c) redisFree(c);
  return nullptr;
}

void RedisRoom::Start() {
  // Where delivery starts: the stream's last entry now. Found before the
  // first publish is accepted (tip_known_), or a member's own first message
  // could fall before it and never come back to it.
  {
    std::lock_guard<std::mutex> lock(publish_mu_);
    std::lock_guard<std::mutex> deliver(deliver_mu_);
    publisher_ = Connect(kCommandTimeout);
    if (publisher_ && FindTip(publisher_)) tip_known_ = true;
  }
  reader_ = std::thread([this] { ReadLoop(); });
}

void RedisRoom::MarkClosed() {
  std::lock_guard<std::mutex> lock(publish_mu_);
  closed_ = true;
}

void RedisRoom::Stop() {
  MarkClosed();
  {
    std::lock_guard<std::mutex> lock(reader_mu_);
    stopping_ = true;
    if (reader_fd_ >= 0) ::shutdown(reader_fd_, SHUT_RDWR);  // ends a blocked XREAD
  }
  reader_cv_.notify_all();
  if (reader_.joinable()) reader_.join();
  std::lock_guard<std::mutex> lock(publish_mu_);
  if (publisher_) redisFree(publisher_);
  publisher_ = nullptr;
  closed_ = true;
}

Status RedisRoom::Publish(const std::string& name, const std::string& message) {
  return Append("name", name, &message);
}

Status RedisRoom::Notice(const std::string& text) { return Append("notice", text, nullptr); }

Status RedisRoom::Append(const char* field, const std::string& value, const std::string* message) {
  std::lock_guard<std::mutex> lock(publish_mu_);
  auto unavailable = [&](const std::string& why) {
    return Status(Code::kUnavailable, "room unavailable: " + why);
  };
  if (closed_) return Status(Code::kClosed, "the room is closed");
  if (!tip_known_) return unavailable("not yet following the room's stream");
  auto now = std::chrono::steady_clock::now();
  if (!publisher_) {
    if (now < retry_after_) return unavailable("cannot reach Redis");
    publisher_ = Connect(kCommandTimeout);
    if (!publisher_) {
      PublisherFailedLocked();
      return unavailable("cannot reach Redis");
    }
  }
  Reply r = message ? Command(publisher_, "EVAL %s 2 %b %b %s %s %b message %b", kAppendScript,
                              key_.data(), key_.size(), seq_key_.data(), seq_key_.size(),
                              max_len_.c_str(), field, value.data(), value.size(),
                              message->data(), message->size())
                    : Command(publisher_, "EVAL %s 2 %b %b %s %s %b", kAppendScript, key_.data(),
                              key_.size(), seq_key_.data(), seq_key_.size(), max_len_.c_str(),
                              field, value.data(), value.size());
  if (!r) {
    // The connection broke, perhaps after Redis took the entry: it is then
    // delivered although its sender was told UNAVAILABLE.
    std::string why = publisher_->errstr;
    PublisherFailedLocked();
    return unavailable(why);
  }
  if (r->type == REDIS_REPLY_ERROR) return unavailable(Str(r.get()));
  publish_backoff_ = std::chrono::milliseconds(0);
  return Status::Ok();
}

bool RedisRoom::FindTip(redisContext* c) {
  Reply r = Command(c, "XREVRANGE %b + - COUNT 1", key_.data(), key_.size());
  if (!r || r->type != REDIS_REPLY_ARRAY) return false;
  if (r->elements == 0) {
    last_id_ = "0-0";
  } else {
    const redisReply* entry = r->element[0];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return false;
    last_id_ = Str(entry->element[0]);
    LineOf(entry, &last_seq_);
  }
  return true;
}

// One XREAD; false when the connection must be dropped.
bool RedisRoom::ReadOnce(redisContext* c) {
  Reply r = Command(c, "XREAD COUNT %d BLOCK %d STREAMS %b %b", kReadCount, kBlockMs, key_.data(),
                    key_.size(), last_id_.data(), last_id_.size());
  if (!r || r->type == REDIS_REPLY_ERROR) return false;
  if (r->type == REDIS_REPLY_NIL || r->type != REDIS_REPLY_ARRAY) return true;  // nothing new
  for (size_t s = 0; s < r->elements; ++s) {
    const redisReply* stream = r->element[s];
    if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2) return false;
    const redisReply* entries = stream->element[1];
    for (size_t e = 0; e < entries->elements; ++e) {
      const redisReply* entry = entries->element[e];
      if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return false;
      std::lock_guard<std::mutex> lock(deliver_mu_);
      uint64_t seq;
      std::string line = LineOf(entry, &seq);
      // The next number, or 1 after Redis lost the room (restarted without
      // its data: the counter starts again); anything else skipped lines
      // that were trimmed before this server read them. Entries without a
      // number (older servers) are not checked.
      if (seq != 0 && last_seq_ != 0 && seq != last_seq_ + 1 && seq != 1) {
        lost_(seq > last_seq_ ? seq - last_seq_ - 1 : seq - 1);
      }
      last_seq_ = seq;
      deliver_(line);
      last_id_ = Str(entry->element[0]);
    }
  }
  return true;
}

// The publishing connection failed (or could not be made): the next
// attempt waits for the backoff, so a Redis that stopped answering costs
// one command timeout per backoff period, not one per message.
void RedisRoom::PublisherFailedLocked() {
  if (publisher_) redisFree(publisher_);
  publisher_ = nullptr;
  publish_backoff_ = std::min(std::max(publish_backoff_ * 2, kFirstBackoff), kMaxBackoff);
  retry_after_ = std::chrono::steady_clock::now() + publish_backoff_;
}

Status RedisRoom::Join(size_t replay,
                       const std::function<void(const std::vector<std::string>&)>& join) {
  std::lock_guard<std::mutex> deliver(deliver_mu_);
  std::vector<std::string> lines;
  if (replay > 0) {
    std::lock_guard<std::mutex> lock(publish_mu_);
    auto unavailable = [](const std::string& why) {
      return Status(Code::kUnavailable, "room unavailable: " + why);
    };
    if (closed_) return Status(Code::kClosed, "the room is closed");
    if (!tip_known_) return unavailable("not yet following the room's stream");
    if (!publisher_ && std::chrono::steady_clock::now() >= retry_after_) {
      publisher_ = Connect(kCommandTimeout);
      if (!publisher_) PublisherFailedLocked();
    }
    if (!publisher_) return unavailable("cannot reach Redis");
    // The last `replay` entries up to the last one delivered, newest first.
    Reply r = Command(publisher_, "XREVRANGE %b %b - COUNT %d", key_.data(), key_.size(),
                      last_id_.data(), last_id_.size(), static_cast<int>(replay));
    if (!r) {
      std::string why = publisher_->errstr;
      PublisherFailedLocked();
      return unavailable(why);
    }
    if (r->type != REDIS_REPLY_ARRAY) return unavailable("cannot read the room's history");
    for (size_t i = r->elements; i-- > 0;) {
      const redisReply* entry = r->element[i];
      if (entry->type == REDIS_REPLY_ARRAY && entry->elements == 2) {
        lines.push_back(LineOf(entry));
      }
    }
  }
  join(lines);
  return Status::Ok();
}

void RedisRoom::Backoff(std::chrono::milliseconds* delay) {
  *delay = std::min(std::max(*delay * 2, kFirstBackoff), kMaxBackoff);
  std::unique_lock<std::mutex> lock(reader_mu_);
  reader_cv_.wait_for(lock, *delay, [&] { return stopping_; });
}

void RedisRoom::ReadLoop() {
  std::chrono::milliseconds delay(0);
  bool warned = false;  // once per outage
  for (;;) {
    redisContext* c = Connect(std::chrono::milliseconds(kBlockMs) + kCommandTimeout);
    if (c) {
      bool follow;
      {
        std::lock_guard<std::mutex> lock(reader_mu_);
        follow = !stopping_;
        if (follow) reader_fd_ = c->fd;
      }
      bool tip;
      {
        std::lock_guard<std::mutex> lock(deliver_mu_);
        tip = tip_known_ || FindTip(c);
      }
      if (follow && tip) {
        if (!tip_known_) {
          std::lock_guard<std::mutex> lock(publish_mu_);
          tip_known_ = true;
        }
        while (ReadOnce(c)) {
          delay = std::chrono::milliseconds(0);
          warned = false;
        }
      }
      {
        std::lock_guard<std::mutex> lock(reader_mu_);
        reader_fd_ = -1;
      }
      redisFree(c);
    }
    {
      std::lock_guard<std::mutex> lock(reader_mu_);
      if (stopping_) return;
    }
    if (!warned) {
      gpr_log(GPR_ERROR, "libchat: room %s: lost Redis at %s:%d; reconnecting", key_.c_str(),
              address_.host.c_str(), address_.port);
      warned = true;
    }
    Backoff(&delay);
  }
}

}  // namespace internal
}  // namespace chat
