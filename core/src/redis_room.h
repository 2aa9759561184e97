// A broadcast room shared by many servers through a Redis stream.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chat/status.h"

struct redisContext;

namespace chat {
namespace internal {

struct RedisAddress {
  std::string host;
  int port = 6379;
  int db = 0;
};

// Parses "redis://HOST:PORT[/DB]" (HOST a name, IPv4 or [IPv6]); anything
// else is kBadArgument. `out` may be null to only check.
Status ParseRedisUrl(const std::string& url, RedisAddress* out);

// Every member's message is appended to the stream `room:<name>` (XADD,
// trimmed to about max_len entries); one reader thread per server follows
// the stream (XREAD BLOCK) and hands each entry to `deliver` in stream
// order, so every member of every server sees one sequence. After a lost
// connection the reader reconnects with capped exponential backoff and
// resumes after the last entry it delivered. Entries are numbered (a
// counter beside the stream), so entries trimmed away while the reader was
// gone or behind are not lost silently: `lost` hears how many.
class RedisRoom {
 public:
  // Called on the reader thread, once per entry, in stream order. `line` is
  // "<name>: <message>", or a notice's text.
  using Deliver = std::function<void(const std::string& line)>;
  // Called on the reader thread, before the entry after a gap is
  // delivered: `count` entries of the stream were trimmed before this
  // server read them (it was away from Redis, or too far behind).
  using Lost = std::function<void(uint64_t count)>;

  RedisRoom(RedisAddress address, const std::string& name, size_t max_len, Deliver deliver,
            Lost lost);
  ~RedisRoom();  // Stop

  // Starts the reader; it connects in the background (Redis may be down).
  void Start();
  // Ends the reader promptly (a blocked XREAD is cut). Idempotent.
  void Stop();
  // Appends nothing more (kClosed) without waiting for the reader: what a
  // Stop from the reader's own thread can do. Stop still ends it later.
  void MarkClosed();

  // Appends a member's message; OK once Redis acknowledged it. kUnavailable
  // while Redis cannot be reached (a failed connection is retried at most
  // once per backoff period, so a room that is down answers at once).
  Status Publish(const std::string& name, const std::string& message);
  // Appends a notice ("Ann left the chat"), delivered as its text alone.
  Status Notice(const std::string& text);
  // A member joins with the last `replay` lines of the room: `join` gets
  // them, oldest first, while no entry is being delivered, so what it
  // queues comes before every line delivered after it and none is given
  // twice. kUnavailable (and `join` not called) while Redis cannot answer.
  Status Join(size_t replay, const std::function<void(const std::vector<std::string>&)>& join);

 private:
  Status Append(const char* field, const std::string& value, const std::string* message);
  void PublisherFailedLocked();
  redisContext* Connect(std::chrono::milliseconds command_timeout) const;
  void ReadLoop();
  bool FindTip(redisContext* c);
  bool ReadOnce(redisContext* c);
  void Backoff(std::chrono::milliseconds* delay);

  const RedisAddress address_;
  const std::string key_;
  const std::string seq_key_;  // the entries' numbering (kAppendScript)
  const std::string max_len_;
  const Deliver deliver_;
  const Lost lost_;

  std::mutex publish_mu_;
  redisContext* publisher_ = nullptr;  // publish_mu_
  std::chrono::steady_clock::time_point retry_after_;  // publish_mu_
  std::chrono::milliseconds publish_backoff_{0};      // publish_mu_
  // The reader knows where to start (written under publish_mu_, by Start
  // before the reader runs or by the reader).
  bool tip_known_ = false;
  bool closed_ = false;  // publish_mu_: stopped, nothing more is appended

  std::mutex reader_mu_;
  std::condition_variable reader_cv_;
  bool stopping_ = false;  // reader_mu_
  int reader_fd_ = -1;     // reader_mu_: the reader's socket, shut down by Stop
  // Held while an entry is delivered and last_id_ moves past it (Join).
  std::mutex deliver_mu_;
  // The last entry delivered, or where delivery starts, and its number (0:
  // none). Written by the reader (or Start, before it runs) under
  // deliver_mu_.
  std::string last_id_;
  uint64_t last_seq_ = 0;
  std::thread reader_;
};

}  // namespace internal
}  // namespace chat
