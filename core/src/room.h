// The room behind chat::Room and the broadcast mode: members are server
// streams; lines reach them in one order, from this process or from Redis.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "chat/room.h"
#include "redis_room.h"

namespace chat::internal {

class Session;

// The most lines a member joining a room on Redis may ask to be replayed.
inline constexpr size_t kMaxRoomReplay = 1000;

class RoomImpl final : public Room {
 public:
  // Checks `options` (kBadArgument) and starts a room on Redis.
  static Status Create(const RoomOptions& options, std::shared_ptr<RoomImpl>* out);
  explicit RoomImpl(const RoomOptions& options);
  ~RoomImpl() override;

  Status Publish(std::string_view name, std::string_view message) override;
  Status Notice(std::string_view text) override;
  Status Join(const std::shared_ptr<ServerCall>& call, size_t replay) override;
  Status Leave(const ServerCall& call) override;
  size_t members() const override;
  void Close() override;

  bool on_redis() const { return redis_ != nullptr; }
  // Join, with `admit` run first at the moment the member enters (for a
  // room on Redis, while no line is delivered): a stream it refuses (its
  // status is returned) gets nothing and does not enter.
  Status JoinIf(const std::shared_ptr<Session>& session, size_t replay,
                const std::function<Status()>& admit);

 private:
  using Members = std::vector<std::shared_ptr<Session>>;

  // Every line of the room passes here, one at a time, in the room's order.
  void Deliver(const std::string& line);
  // The room on Redis skipped `count` lines: the members are cut.
  void Lost(uint64_t count);
  // Replaces the members with those of `members` that `keep` accepts.
  void RebuildLocked(const std::function<bool(const std::shared_ptr<Session>&)>& keep);
  Status Busy() const;

  const RoomOptions options_;
  std::unique_ptr<RedisRoom> redis_;  // options_.url

  // Held across each line's delivery (members queue the room's lines in
  // one order) and while a member enters with its history.
  std::mutex order_mu_;
  mutable std::mutex members_mu_;
  // Copy on write: a line to 1,000 members takes members_mu_ once.
  std::shared_ptr<const Members> members_;  // members_mu_
  // Members whose streams ended are dropped at the next line; a room that
  // hears none drops them on a join once it has this many entries or twice
  // as many as it kept last time (amortised: no scan per join).
  static constexpr size_t kFirstPrune = 64;
  size_t prune_at_ = kFirstPrune;  // members_mu_ (JoinIf)
  bool closed_ = false;            // members_mu_
};

// The room's own session, or null with kBadArgument for a call that is not
// a stream of this library.
std::shared_ptr<Session> SessionOf(const std::shared_ptr<ServerCall>& call);

}  // namespace chat::internal
