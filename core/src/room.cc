// Rooms: one order of lines for every member (see chat/room.h).
#include "room.h"

#include <cxxabi.h>
#include <grpc/support/log.h>

#include <algorithm>
#include <exception>

#include "server_stream.h"
#include "wire.h"

namespace chat::internal {
namespace {

// The rooms whose on_line runs on this thread, innermost last: publishing
// to one of them or joining it from there would wait for the delivery that
// waits for it (a room's on_line may publish to another room).
thread_local std::vector<const RoomImpl*> t_delivering;

bool DeliveringHere(const RoomImpl* room) {
  return std::find(t_delivering.begin(), t_delivering.end(), room) != t_delivering.end();
}

// Marks `room` as delivering on this thread for the scope, unwinding too.
class OnLineScope {
 public:
  explicit OnLineScope(const RoomImpl* room) { t_delivering.push_back(room); }
  ~OnLineScope() { t_delivering.pop_back(); }
  OnLineScope(const OnLineScope&) = delete;
  OnLineScope& operator=(const OnLineScope&) = delete;
};

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
  redis_ = std::make_unique<RedisRoom>(
      std::move(address), options_.name, options_.max_len,
      [this](const std::string& line) { Deliver(line); },
      [this](uint64_t count) { Lost(count); });
}

void RoomImpl::Lost(uint64_t count) {
  // Every member missed those lines: each is cut with DATA_LOSS rather
  // than go on as if nothing had happened. It may join again and ask for
  // what Redis still holds (replay). Between two lines: none is delivered
  // meanwhile.
  std::shared_ptr<const Members> members;
  {
    std::lock_guard<std::mutex> order(order_mu_);
    std::lock_guard<std::mutex> lock(members_mu_);
    members = std::move(members_);
    members_ = std::make_shared<const Members>();
  }
  gpr_log(GPR_ERROR, "libchat: room %s lost %llu line(s) before this server read them",
          options_.name.c_str(), static_cast<unsigned long long>(count));
  Status why(Code::kDataLoss, "the room lost " + std::to_string(count) +
                                  " line(s) while this server was away from Redis (trimmed "
                                  "first); join again, with a replay, for what it still holds");
  for (const auto& member : *members) member->Cut(why);
}

RoomImpl::~RoomImpl() { Close(); }

Status RoomImpl::Busy() const {
  return Status(Code::kBusy, "cannot publish to or join a room from its own on_line");
}

Status RoomImpl::Publish(std::string_view name, std::string_view message) {
  if (DeliveringHere(this)) return Busy();
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
  if (DeliveringHere(this)) return Busy();
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
      Code code = member->Enqueue(reply, kNoWait, /*host_send=*/false).code();
      if (code == Code::kWouldBlock) {
        slow.push_back(member);
      } else if (code != Code::kOk) {
        gone.push_back(member);  // its stream has ended
      }
    }
    if (options_.on_line) {
      OnLineScope scope(this);
      try {
        options_.on_line(line);
      } catch (abi::__forced_unwind&) {
        throw;  // a thread ended by pthread_exit/cancel (Python's finalization)
      } catch (const std::exception& e) {
        gpr_log(GPR_ERROR, "libchat: a room's on_line threw: %s", e.what());
      } catch (...) {
        gpr_log(GPR_ERROR, "libchat: a room's on_line threw");
      }
    }
  }
  for (const auto& member : slow) {
    member->Cut(Status(Code::kResourceExhausted,
                       "send queue full: the client reads too slowly for the room"));
  }
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
  if (DeliveringHere(this)) return Busy();
  if (replay > kMaxRoomReplay) {
    return Status(Code::kBadArgument,
                  "a room replays at most " + std::to_string(kMaxRoomReplay) + " lines");
  }
  // Under order_mu_ from its checks to its entry: no line is delivered
  // meanwhile (the member gets every line after its history, none twice)
  // and Close waits for it. On Redis, Join also holds the reader off; the
  // reader too takes order_mu_ inside its own lock.
  Status entered;
  auto enter = [&](const std::vector<std::string>& history) {
    std::lock_guard<std::mutex> order(order_mu_);
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
      if (!session->Enqueue(EncodeStringValue(line), kNoWait, /*host_send=*/false).ok()) break;
    }
    std::lock_guard<std::mutex> lock(members_mu_);
    if (members_->size() >= prune_at_) {
      RebuildLocked([](const std::shared_ptr<Session>& m) { return !m->ended(); });
      prune_at_ = std::max(kFirstPrune, 2 * members_->size());
    }
    auto grown = std::make_shared<Members>(*members_);
    grown->push_back(session);
    members_ = std::move(grown);
  };
  if (redis_ && replay > 0) {
    Status joined = redis_->Join(replay, enter);
    if (!joined.ok()) return joined;
  } else {
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
  bool inside = DeliveringHere(this);
  // The reader first (it delivers under its own lock, then order_mu_); from
  // its own on_line it cannot wait for itself: it stops with the room.
  if (redis_) {
    if (inside) {
      redis_->MarkClosed();
    } else {
      redis_->Stop();
    }
  }
  // A delivery or join running on another thread finishes first.
  std::unique_lock<std::mutex> order(order_mu_, std::defer_lock);
  if (!inside) order.lock();
  std::lock_guard<std::mutex> lock(members_mu_);
  closed_ = true;
  members_ = std::make_shared<const Members>();
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
