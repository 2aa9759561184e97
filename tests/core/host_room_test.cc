// chat::Room in a host's hands: a custom server's handler joins its streams
// to a room and publishes what it lets through.
#include <atomic>
#include <mutex>
#include <thread>

#include "chat/room.h"
#include "harness.h"
#include "room_talk.h"

namespace chat::testing {
namespace {

using namespace std::chrono_literals;

// Joins every stream to the room; publishes each message under the
// stream's principal-free name, except those containing "secret", which
// get a private refusal instead.
class RoomHandler : public Handler {
 public:
  explicit RoomHandler(std::shared_ptr<Room> room) : room_(std::move(room)) {}
  void OnOpen(const std::shared_ptr<ServerCall>& call) override {
    Status s = room_->Join(call);
    if (!s.ok()) call->Fail(Code::kInternal, s.message());
  }
  void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view name,
                 std::string_view message) override {
    if (message.find("secret") != std::string_view::npos) {
      call->Send("not for the room", 5s);
      return;
    }
    Status s = room_->Publish(name, message);
    if (!s.ok()) call->Fail(Code::kUnavailable, s.message());
  }

 private:
  std::shared_ptr<Room> room_;
};

class HostRoomTest : public ChatTest {
 protected:
  void StartRoomServer(RoomOptions room_options = {}, ServerOptions options = {}) {
    ASSERT_TRUE(Room::Open(room_options, &room_).ok());
    options.mode = Mode::kCustom;
    options.handler = std::make_shared<RoomHandler>(room_);
    StartServer(options);
  }
  static void Enter(ClientStream& s, const std::string& name) { EnterRoom(s, name); }
  void TearDown() override {
    ChatTest::TearDown();
    if (room_) room_->Close();
  }

  // Closes room_ when it goes out of scope: declared after what on_line
  // uses, it makes the body wait for a delivery still running (on_line
  // comes after the members' queues took the line, so a member may have
  // it first) before those locals die, also on an early ASSERT return.
  struct CloseRoomAtEnd {
    std::shared_ptr<Room>& room;
    ~CloseRoomAtEnd() {
      if (room) room->Close();
    }
  };

  std::shared_ptr<Room> room_;
};

TEST_F(HostRoomTest, MembersAndTheHostSeeOneSequenceAndFilteredLinesStayPrivate) {
  constexpr int kRounds = 500;
  std::mutex mu;
  std::vector<std::string> host_saw;
  RoomOptions ro;
  ro.on_line = [&](std::string_view line) {
    std::lock_guard<std::mutex> lock(mu);
    host_saw.emplace_back(line);
  };
  CloseRoomAtEnd close_first{room_};
  ServerOptions so;
  so.dispatcher_threads = 3;  // publishers race each other
  // Room for every line: a member starved of CPU (a busy machine) must not
  // be cut as too slow, which is another test.
  so.send_queue_limit = 4 * kRounds * 3;
  StartRoomServer(ro, so);
  std::vector<std::shared_ptr<ClientStream>> members = {Open(), Open(), Open()};
  for (size_t i = 0; i < members.size(); ++i) Enter(*members[i], "m" + std::to_string(i));
  Talk talk = TalkAtOnce(members, kRounds, "a secret", "not for the room");
  const auto& seen = talk.seen;
  const size_t want = members.size() * kRounds;
  for (size_t i = 0; i < members.size(); ++i) {
    EXPECT_EQ(talk.private_replies[i], static_cast<size_t>(kRounds / 100)) << "member " << i;
  }
  for (size_t i = 0; i < members.size(); ++i) {
    ASSERT_EQ(seen[i].size(), want) << "member " << i;
    EXPECT_EQ(seen[i], seen[0]) << "member " << i << " differs from member 0";
  }
  // on_line runs once the members' queues took a line: a hello may reach
  // its member before the host sees it, so they are left out, and the
  // last lines may still be on their way to it.
  auto host_lines = [&] {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::string> lines;
    for (const auto& line : host_saw) {
      if (line.find(": hello") == std::string::npos) lines.push_back(line);
    }
    return lines;
  };
  for (auto end = std::chrono::steady_clock::now() + 5s;
       host_lines().size() < want && std::chrono::steady_clock::now() < end;) {
    std::this_thread::yield();
  }
  EXPECT_EQ(host_lines(), seen[0]);
  EXPECT_EQ(room_->members(), members.size());
}

TEST_F(HostRoomTest, OnLineCannotPublishOrJoinItsOwnRoom) {
  std::atomic<int> publish{-1}, notice{-1};
  RoomOptions ro;
  std::atomic<Room*> self{nullptr};
  ro.on_line = [&](std::string_view) {
    publish = static_cast<int>(self.load()->Publish("host", "echo").code());
    notice = static_cast<int>(self.load()->Notice("echo").code());
  };
  CloseRoomAtEnd close_first{room_};
  StartRoomServer(ro);
  self = room_.get();
  auto member = Open();
  Enter(*member, "A");
  // on_line may still be running when A hears its line.
  for (auto end = std::chrono::steady_clock::now() + 5s;
       notice.load() == -1 && std::chrono::steady_clock::now() < end;) {
    std::this_thread::yield();
  }
  EXPECT_EQ(publish.load(), static_cast<int>(Code::kBusy));
  EXPECT_EQ(notice.load(), static_cast<int>(Code::kBusy));
}

TEST_F(HostRoomTest, JoinLeaveAndAClosedRoomAnswerPlainly) {
  ASSERT_TRUE(Room::Open({}, &room_).ok());
  std::shared_ptr<Room> room = room_;
  std::atomic<int> second_join{-1}, leave{-1}, second_leave{-1};
  class H : public Handler {
   public:
    H(std::shared_ptr<Room> r, std::atomic<int>* j, std::atomic<int>* l, std::atomic<int>* l2)
        : r_(std::move(r)), j_(j), l_(l), l2_(l2) {}
    void OnOpen(const std::shared_ptr<ServerCall>& call) override {
      r_->Join(call);
      *j_ = static_cast<int>(r_->Join(call).code());
    }
    void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view,
                   std::string_view message) override {
      if (message == "leave") {
        *l_ = static_cast<int>(r_->Leave(*call).code());
        *l2_ = static_cast<int>(r_->Leave(*call).code());
        call->Send("left", 5s);
      } else {
        r_->Publish("x", message);
      }
    }
    std::shared_ptr<Room> r_;
    std::atomic<int>*j_, *l_, *l2_;
  };
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = std::make_shared<H>(room, &second_join, &leave, &second_leave);
  StartServer(so);
  auto a = Open(), b = Open();
  Enter(*a, "x");
  std::string reply;
  ASSERT_TRUE(b->Send("x", "leave", 5s).ok());
  while (b->Recv(&reply, 5s).ok() && reply != "left") {}
  ASSERT_EQ(reply, "left");
  EXPECT_EQ(second_join.load(), static_cast<int>(Code::kBadState));
  EXPECT_EQ(leave.load(), static_cast<int>(Code::kOk));
  EXPECT_EQ(second_leave.load(), static_cast<int>(Code::kMissing));
  // b left: a's next line does not reach it.
  ASSERT_TRUE(a->Send("x", "after", 5s).ok());
  while (a->Recv(&reply, 5s).ok() && reply != "x: after") {}
  ASSERT_TRUE(b->Complete().ok());
  Status end;
  for (const std::string& r : Drain(*b, &end)) EXPECT_NE(r, "x: after");
  EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
  EXPECT_EQ(room->members(), 1u);
  // An ended stream leaves by itself; a closed room refuses everything.
  ASSERT_TRUE(a->Complete().ok());
  Drain(*a, &end);
  EXPECT_EQ(room->members(), 0u);
  room->Close();
  EXPECT_EQ(room->Publish("x", "late").code(), Code::kClosed);
  EXPECT_EQ(room->Join(nullptr).code(), Code::kBadArgument);
  std::shared_ptr<Room> bad;
  RoomOptions ro;
  ro.url = "redis://nohost";
  ro.name = "lobby";
  EXPECT_EQ(Room::Open(ro, &bad).code(), Code::kBadArgument);
  ro.url = "redis://127.0.0.1:1";
  ro.name = "";
  EXPECT_EQ(Room::Open(ro, &bad).code(), Code::kBadArgument);
}

TEST_F(HostRoomTest, AMemberTooSlowForTheRoomIsCutAndTheOthersGoOn) {
  ServerOptions so;
  so.send_queue_limit = 8;
  StartRoomServer({}, so);
  auto slow = Open(), fast = Open();
  Enter(*slow, "slow");
  Enter(*fast, "fast");
  // The slow member stops reading; big lines fill its queues and windows.
  // The fast one reads each line before it sends the next: never behind.
  const std::string big(256 * 1024, 'b');
  std::string reply;
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(fast->Send("fast", big, 10s).ok()) << "line " << i;
    ASSERT_TRUE(fast->Recv(&reply, 10s).ok()) << "line " << i;
    ASSERT_TRUE(reply.size() == big.size() + 6) << "line " << i << " has " << reply.size() << " bytes";
  }
  Status end;
  Drain(*slow, &end);
  // RESOURCE_EXHAUSTED, or CANCELLED when its write was stuck (the
  // stream is reset rather than waited for: Session::End).
  EXPECT_TRUE(end.code() == Code::kResourceExhausted || end.code() == Code::kCancelled)
      << end.message();
  EXPECT_EQ(server_->stats().streams_cut, 1u);
  EXPECT_EQ(room_->members(), 1u);
}

// Keeps every call it is given, joins none.
class KeepCalls : public Handler {
 public:
  void OnOpen(const std::shared_ptr<ServerCall>& call) override {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(call);
  }
  void OnMessage(const std::shared_ptr<ServerCall>&, std::string_view, std::string_view) override {}
  std::shared_ptr<ServerCall> First() {
    std::lock_guard<std::mutex> lock(mu);
    return calls.empty() ? nullptr : calls.front();
  }
  std::mutex mu;
  std::vector<std::shared_ptr<ServerCall>> calls;
};

TEST_F(HostRoomTest, AJoinRacingCloseNeverLeavesAMemberInAClosedRoom) {
  auto keep = std::make_shared<KeepCalls>();
  ServerOptions so;
  so.mode = Mode::kCustom;
  so.handler = keep;
  StartServer(so);
  auto stream = Open();
  ASSERT_TRUE(stream->Send("a", "open", 5s).ok());
  std::shared_ptr<ServerCall> call;
  for (auto end = std::chrono::steady_clock::now() + 5s; !call && std::chrono::steady_clock::now() < end;) {
    call = keep->First();
    if (!call) std::this_thread::yield();
  }
  ASSERT_TRUE(call);
  for (int round = 0; round < 2000; ++round) {
    std::shared_ptr<Room> room;
    ASSERT_TRUE(Room::Open({}, &room).ok());
    std::atomic<bool> go{false};
    std::thread joiner([&] {
      while (!go) {}
      Code c = room->Join(call).code();
      EXPECT_TRUE(c == Code::kOk || c == Code::kClosed) << static_cast<int>(c);
    });
    go = true;
    room->Close();
    joiner.join();
    ASSERT_EQ(room->members(), 0u) << "round " << round;
    EXPECT_EQ(room->Join(call).code(), Code::kClosed);
  }
}

TEST_F(HostRoomTest, CloseWaitsForADeliveryRunningElsewhere) {
  std::atomic<bool> entered{false}, close_called{false}, done{false};
  RoomOptions ro;
  ro.on_line = [&](std::string_view) {
    entered = true;
    while (!close_called) std::this_thread::yield();
    std::this_thread::yield();
    done = true;
  };
  std::shared_ptr<Room> room;
  ASSERT_TRUE(Room::Open(ro, &room).ok());
  std::thread publisher([&] { EXPECT_TRUE(room->Publish("a", "b").ok()); });
  while (!entered) std::this_thread::yield();
  close_called = true;
  room->Close();
  EXPECT_TRUE(done.load()) << "Close returned while on_line was still running";
  publisher.join();
}

TEST_F(HostRoomTest, OnLineMayPublishToAnotherRoomButNotBackIntoItsOwn) {
  std::shared_ptr<Room> a, b;
  std::atomic<int> into_b{-1}, into_a_from_b{-1};
  RoomOptions rb;
  rb.on_line = [&](std::string_view) {
    into_a_from_b = static_cast<int>(a->Publish("b", "back").code());  // a is delivering
  };
  ASSERT_TRUE(Room::Open(rb, &b).ok());
  RoomOptions ra;
  ra.on_line = [&](std::string_view line) {
    if (line == "x: go") into_b = static_cast<int>(b->Publish("a", "relayed").code());
  };
  ASSERT_TRUE(Room::Open(ra, &a).ok());
  ASSERT_TRUE(a->Publish("x", "go").ok());
  EXPECT_EQ(into_b.load(), static_cast<int>(Code::kOk));
  EXPECT_EQ(into_a_from_b.load(), static_cast<int>(Code::kBusy));
  // Once out of the nested deliveries, publishing works again.
  EXPECT_TRUE(a->Publish("x", "later").ok());
  a->Close();
  b->Close();
}

}  // namespace
}  // namespace chat::testing
