// Rooms: one order of lines for every member (see chat/room.h).
#include "room.h"

#include <grpc/support/log.h>

#include <algorithm>
#include <exception>

#include "server_stream.h"
#include "wire.h"

namespace chat::internal {
namespace {

// The room whose on_line runs on this thread, if any: publishing to it or
// joining it from there would wait for the delivery that waits for it.
thread_local const RoomImpl* t_delivering = nullptr;

}  // namespace

std::shared_ptr<Session> SessionOf(const std::shared_ptr<ServerCall>& call) {
  return std::dynamic_pointer_cast<Session>(call);
}

Status RoomImpl::Create(const RoomOptions& options, std::shared_ptr<RoomImpl>* out) {
  if (!options.url.empty()) {
    if (options.name.empty()) return Status(Code::kBadArgument, "a room on Redis needs a name");
    if (options.max_len == 0) return Status(Code::kBadArgument, "room_max_len must be positive");
    Status url = ParseRedisUrl(options.url, nullptr);
    if (!url.ok()) return url;
  }
  auto room = std::make_shared<RoomImpl>(options);
  if (room->redis_) room->redis_->Start();
  *out = std::move(room);
  return Status::Ok();
}

RoomImpl::RoomImpl(const RoomOptions& options)
    : options_(options), members_(std::make_shared<const Members>()) {
  if (options_.url.empty()) return;
  RedisAddress address;
  ParseRedisUrl(options_.url, &address);  // checked by Create
  redis_ = std::make_unique<RedisRoom>(std::move(address), options_.name, options_.max_len,
                                       [this](const std::string& line) { Deliver(line); });
}

RoomImpl::~RoomImpl() { Close(); }

Status RoomImpl::Busy() const {
  return Status(Code::kBusy, "cannot publish to or join a room from its own on_line");
}

Status RoomImpl::Publish(std::string_view name, std::string_view message) {
  if (t_delivering == this) return Busy();
  if (!IsValidUtf8(name)) return Status(Code::kBadArgument, "name is not valid UTF-8");
  if (!IsValidUtf8(message)) return Status(Code::kBadArgument, "message is not valid UTF-8");
  // On Redis the line comes back through the reader, in the stream's order.
  if (redis_) return redis_->Publish(std::string(name), std::string(message));
  {
    std::lock_guard<std::mutex> lock(members_mu_);
    if (closed_) return Status(Code::kClosed, "the room is closed");
  }
  std::string line;
  line.reserve(name.size() + 2 + message.size());
  line.append(name).append(": ").append(message);
  Deliver(line);
  return Status::Ok();
}

Status RoomImpl::Notice(std::string_view text) {
  if (t_delivering == this) return Busy();
  if (!IsValidUtf8(text)) return Status(Code::kBadArgument, "text is not valid UTF-8");
  if (redis_) return redis_->Notice(std::string(text));
  {
    std::lock_guard<std::mutex> lock(members_mu_);
    if (closed_) return Status(Code::kClosed, "the room is closed");
  }
  Deliver(std::string(text));
  return Status::Ok();
}

void RoomImpl::Deliver(const std::string& line) {
  grpc::ByteBuffer reply = EncodeStringValue(line);
  std::vector<std::shared_ptr<Session>> slow, gone;
  {
    std::lock_guard<std::mutex> order(order_mu_);
    std::shared_ptr<const Members> members;
    {
      std::lock_guard<std::mutex> lock(members_mu_);
      if (closed_) return;
      members = members_;
    }
    // Never waits (kNoWait): a member without room is cut below, after the
    // room's lock is let go, rather than holding up everyone.
    for (const auto& member : *members) {
      Code code = member->Enqueue(reply, kNoWait).code();
      if (code == Code::kWouldBlock) {
        slow.push_back(member);
      } else if (code != Code::kOk) {
        gone.push_back(member);  // its stream has ended
      }
    }
    if (options_.on_line) {
      t_delivering = this;
      try {
        options_.on_line(line);
      } catch (const std::exception& e) {
        gpr_log(GPR_ERROR, "libchat: a room's on_line threw: %s", e.what());
      } catch (...) {
        gpr_log(GPR_ERROR, "libchat: a room's on_line threw");
      }
      t_delivering = nullptr;
    }
  }
  for (const auto& member : slow) member->CutTooSlow();
  if (slow.empty() && gone.empty()) return;
  gone.insert(gone.end(), slow.begin(), slow.end());
  std::lock_guard<std::mutex> lock(members_mu_);
  RebuildLocked([&](const std::shared_ptr<Session>& m) {
    return std::find(gone.begin(), gone.end(), m) == gone.end();
  });
}

Status RoomImpl::Join(const std::shared_ptr<ServerCall>& call, size_t replay) {
  std::shared_ptr<Session> session = call ? SessionOf(call) : nullptr;
  if (!session) return Status(Code::kBadArgument, "not a server stream of this library");
  return JoinIf(session, replay, nullptr);
}

Status RoomImpl::JoinIf(const std::shared_ptr<Session>& session, size_t replay,
                        const std::function<Status()>& admit) {
  if (t_delivering == this) return Busy();
  if (replay > kMaxRoomReplay) {
    return Status(Code::kBadArgument,
                  "a room replays at most " + std::to_string(kMaxRoomReplay) + " lines");
  }
  Status entered;
  auto enter = [&](const std::vector<std::string>& history) {
    if (session->ended()) {
      entered = Status(Code::kClosed, "the stream has ended");
      return;
    }
    {
      std::lock_guard<std::mutex> lock(members_mu_);
      if (closed_) {
        entered = Status(Code::kClosed, "the room is closed");
        return;
      }
      for (const auto& m : *members_) {
        if (m == session) {
          entered = Status(Code::kBadState, "the stream is a member of this room already");
          return;
        }
      }
    }
    if (admit) {
      entered = admit();
      if (!entered.ok()) return;
    }
    // More history than the send queue holds is not queued.
    for (const std::string& line : history) {
      if (!session->Enqueue(EncodeStringValue(line), kNoWait).ok()) break;
    }
    std::lock_guard<std::mutex> lock(members_mu_);
    // Members whose streams ended leave here too, so a quiet room does not
    // keep them.
    RebuildLocked([](const std::shared_ptr<Session>& m) { return !m->ended(); });
    auto grown = std::make_shared<Members>(*members_);
    grown->push_back(session);
    members_ = std::move(grown);
  };
  // Entering between two lines: the member gets every line after its
  // history, none twice. On Redis the reader is held off by Join (it
  // delivers under its own lock, then order_mu_: not to be taken here).
  if (redis_ && replay > 0) {
    Status joined = redis_->Join(replay, enter);
    if (!joined.ok()) return joined;
  } else {
    std::lock_guard<std::mutex> order(order_mu_);
    enter({});
  }
  return entered;
}

Status RoomImpl::Leave(const ServerCall& call) {
  std::lock_guard<std::mutex> lock(members_mu_);
  size_t before = members_->size();
  RebuildLocked([&](const std::shared_ptr<Session>& m) { return m.get() != &call; });
  if (members_->size() == before) return Status(Code::kMissing, "not a member of this room");
  return Status::Ok();
}

size_t RoomImpl::members() const {
  std::lock_guard<std::mutex> lock(members_mu_);
  return static_cast<size_t>(std::count_if(members_->begin(), members_->end(),
                                           [](const auto& m) { return !m->ended(); }));
}

void RoomImpl::Close() {
  {
    std::lock_guard<std::mutex> lock(members_mu_);
    closed_ = true;  // no line is delivered from now on
    members_ = std::make_shared<const Members>();
  }
  // From on_line the reader cannot wait for itself: it ends with the room.
  if (redis_ && t_delivering != this) redis_->Stop();
}

void RoomImpl::RebuildLocked(const std::function<bool(const std::shared_ptr<Session>&)>& keep) {
  auto kept = std::make_shared<Members>();
  kept->reserve(members_->size());
  for (const auto& m : *members_) {
    if (keep(m)) kept->push_back(m);
  }
  if (kept->size() != members_->size()) members_ = std::move(kept);
}

}  // namespace chat::internal

namespace chat {

Status Room::Open(const RoomOptions& options, std::shared_ptr<Room>* out) {
  std::shared_ptr<internal::RoomImpl> room;
  Status s = internal::RoomImpl::Create(options, &room);
  if (s.ok()) *out = std::move(room);
  return s;
}

}  // namespace chat
