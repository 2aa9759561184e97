// A room: lines that reach all its members in one order, in this process or
// across servers through a Redis stream.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "chat/server.h"
#include "chat/status.h"

namespace chat {

struct RoomOptions {
  // "redis://HOST:PORT[/DB]": the room is the Redis stream "room:<name>",
  // shared by every room (in any process) opened on the same URL and name.
  // Empty: the room lives in this process.
  std::string url;
  std::string name;        // required with url; a label otherwise
  // Redis: the stream is trimmed to about this many entries; lines trimmed
  // before this room read them end its members' streams with DATA_LOSS.
  size_t max_len = 10000;
  // Optional: sees every line of the room, in the room's one order, right
  // after the members' send queues took it. Runs on the thread that
  // delivers: the publisher's (inside Publish) for a room in this process,
  // the room's reader thread for one on Redis. It must be quick (it holds
  // up the room). Publish, Notice and Join of this room return kBusy there;
  // Close is allowed; dropping the last reference to the room there is not.
  // It may publish to another room, but two rooms whose on_line publish
  // into each other can deadlock.
  std::function<void(std::string_view line)> on_line;
};

// Thread-safe: every method may be called from any thread.
class Room {
 public:
  // Opens the room. A malformed URL or a URL without a name is kBadArgument.
  // A room on Redis looks for Redis once (a few seconds at most) and opens
  // even when it is unreachable: it keeps trying with capped backoff, and
  // Publish answers kUnavailable meanwhile.
  static Status Open(const RoomOptions& options, std::shared_ptr<Room>* out);
  virtual ~Room() = default;  // closes

  // Sends "<name>: <message>" to the room. On Redis, OK once Redis
  // acknowledged it (the line then reaches the members of every server,
  // later, on the reader thread); kUnavailable while Redis cannot take it
  // (the line may still arrive if only the acknowledgement was lost). A
  // round trip to Redis, at most 2 s. kClosed after Close.
  virtual Status Publish(std::string_view name, std::string_view message) = 0;
  // Sends `text` alone ("Ann left the chat"). As Publish. Text that is not
  // valid UTF-8 (name, message or text) is kBadArgument.
  virtual Status Notice(std::string_view text) = 0;
  // `call` (a server stream of this library, in custom mode) gets every
  // line delivered from now on as a reply; on Redis the last `replay`
  // lines (up to 1000) first, none missed or given twice (a room in this
  // process keeps no history and gives none). A member whose send queue is
  // full is too slow for the room: its stream is cut with
  // RESOURCE_EXHAUSTED. It leaves on Leave, or when its stream ends (then
  // dropped at the next line, or on a later join).
  // kClosed if the stream has ended or the room is closed, kBadState if it
  // is a member already, kUnavailable when Redis cannot give the replay.
  virtual Status Join(const std::shared_ptr<ServerCall>& call, size_t replay = 0) = 0;
  // kMissing if `call` is not a member.
  virtual Status Leave(const ServerCall& call) = 0;
  virtual size_t members() const = 0;
  // Stops delivering (a delivery running on another thread finishes first)
  // and drops the members (their streams go on); later Publish, Notice and
  // Join return kClosed. Idempotent; thread-safe with the other calls.
  virtual void Close() = 0;
};

}  // namespace chat
