// The broadcast room on Redis Streams: its URL, two servers sharing one
// room, and Redis going away and coming back. Starts its own redis-server
// on a free loopback port in a temporary directory.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "harness.h"
#include "room_talk.h"
#include "chat/room.h"
#include "redis_room.h"

namespace chat::testing {
namespace {

using internal::ParseRedisUrl;
using internal::RedisAddress;

TEST(RedisUrl, AcceptsHostPortAndDb) {
  RedisAddress a;
  ASSERT_TRUE(ParseRedisUrl("redis://127.0.0.1:6379", &a).ok());
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 6379);
  EXPECT_EQ(a.db, 0);
  ASSERT_TRUE(ParseRedisUrl("redis://[::1]:7000/3", &a).ok());
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 7000);
  EXPECT_EQ(a.db, 3);
}

TEST(RedisUrl, RefusesMalformedOnes) {
  for (const char* url : {"", "127.0.0.1:6379", "http://h:1", "redis://h", "redis://:6379",
                          "redis://h:0", "redis://h:65536", "redis://h:x", "redis://h:1/x",
                          "redis://::1:6379", "redis://[::1:6379"}) {
    EXPECT_EQ(ParseRedisUrl(url, nullptr).code(), Code::kBadArgument) << url;
  }
}

TEST(RedisUrl, ServerStartChecksTheRoomOptions) {
  auto start = [](Mode mode, std::string url, std::string name) {
    ServerOptions so;
    so.mode = mode;
    so.room_url = std::move(url);
    so.room_name = std::move(name);
    std::unique_ptr<Server> server;
    return Server::Start(so, &server).code();
  };
  EXPECT_EQ(start(Mode::kBroadcast, "redis://h", "lobby"), Code::kBadArgument);
  EXPECT_EQ(start(Mode::kBroadcast, "redis://127.0.0.1:1", ""), Code::kBadArgument);
  EXPECT_EQ(start(Mode::kBroadcast, "", "lobby"), Code::kBadArgument);
  EXPECT_EQ(start(Mode::kEcho, "redis://127.0.0.1:1", "lobby"), Code::kBadArgument);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), len);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// redis-server on 127.0.0.1:port, no persistence, killed by PID.
class Redis {
 public:
  Redis() : port_(FreePort()) {
    char tmpl[] = "/tmp/chat-redis-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~Redis() {
    Kill();
    rmdir(dir_.c_str());
  }
  bool Start() {
    std::string port = std::to_string(port_);
    std::vector<std::string> args = {"redis-server", "--port", port, "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no", "--dir", dir_,
                                     "--loglevel", "warning"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test that dies leaves no Redis behind
      int null = open("/dev/null", O_WRONLY);  // its banner would bury the test's output
      dup2(null, 1);
      execvp("redis-server", argv.data());
      _exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Accepts(port_)) return true;
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) break;  // exited (port taken?)
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void Signal(int sig) { kill(pid_, sig); }  // SIGSTOP: Redis stops answering
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  std::string dir_;
  pid_t pid_ = -1;
};

class RedisRoomTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << "cannot start redis-server"; }

  // A broadcast server in the room, and a client of it.
  void AddServer(const std::string& room = "lobby") {
    ServerOptions so;
    so.mode = Mode::kBroadcast;
    so.room_url = redis_.url();
    so.room_name = room;
    AddServer(so);
  }
  void AddServer(const ServerOptions& so) {
    servers_.emplace_back();
    Status s = Server::Start(so, &servers_.back());
    ASSERT_TRUE(s.ok()) << s.message();
    clients_.emplace_back();
    s = Client::Create("127.0.0.1:" + std::to_string(servers_.back()->port()), {},
                       &clients_.back());
    ASSERT_TRUE(s.ok()) << s.message();
  }
  std::shared_ptr<ClientStream> Join(size_t server) {
    std::shared_ptr<ClientStream> stream;
    EXPECT_TRUE(clients_[server]->Open({}, &stream).ok());
    return stream;
  }
  static void Enter(ClientStream& s, const std::string& name) { EnterRoom(s, name); }
  static bool WaitFor(ClientStream& s, const std::string& line) {
    std::string reply;
    while (s.Recv(&reply, 5s).ok()) {
      if (reply == line) return true;
    }
    return false;
  }

  Redis redis_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::unique_ptr<Client>> clients_;
};

TEST_F(RedisRoomTest, MembersOfTwoServersShareOneSequence) {
  constexpr int kRounds = 300;
  AddServer();
  AddServer();
  std::vector<std::shared_ptr<ClientStream>> members = {Join(0), Join(0), Join(1), Join(1)};
  for (size_t i = 0; i < members.size(); ++i) Enter(*members[i], "m" + std::to_string(i));
  auto seen = TalkAtOnce(members, kRounds).seen;
  for (size_t i = 0; i < members.size(); ++i) {
    ASSERT_EQ(seen[i].size(), members.size() * kRounds) << "member " << i;
    EXPECT_EQ(seen[i], seen[0]) << "member " << i << " differs from member 0";
  }
}

TEST_F(RedisRoomTest, RoomsOfOtherNamesAreApart) {
  AddServer("lobby");
  AddServer("attic");
  auto a = Join(0), b = Join(1);
  Enter(*a, "A");
  Enter(*b, "B");
  ASSERT_TRUE(a->Send("A", "only the lobby", 5s).ok());
  ASSERT_TRUE(WaitFor(*a, "A: only the lobby"));
  ASSERT_TRUE(b->Complete().ok());
  std::string reply;
  Status end;
  while ((end = b->Recv(&reply, 5s)).ok()) EXPECT_NE(reply, "A: only the lobby");
  EXPECT_EQ(end.code(), Code::kEndOfStream) << end.message();
}

TEST_F(RedisRoomTest, RedisDownFailsSendsWithUnavailableAndTheRoomResumes) {
  AddServer();
  AddServer();
  auto a = Join(0), b = Join(1);
  Enter(*a, "A");
  Enter(*b, "B");
  ASSERT_TRUE(a->Send("A", "before", 5s).ok());
  ASSERT_TRUE(WaitFor(*b, "A: before"));
  redis_.Kill();
  ASSERT_TRUE(a->Send("A", "lost", 5s).ok());  // the client queues it; the room refuses it
  std::string reply;
  Status end;
  while ((end = a->Recv(&reply, 10s)).ok()) {}
  EXPECT_EQ(end.code(), Code::kUnavailable) << end.message();
  EXPECT_NE(end.message().find("room unavailable"), std::string::npos) << end.message();
  ASSERT_TRUE(redis_.Start());
  // Both servers reconnect (capped backoff): a new member's messages reach
  // a member of the other server.
  auto c = Join(0);
  std::shared_ptr<ClientStream> d = Join(1);
  bool heard = false;
  auto deadline = std::chrono::steady_clock::now() + 15s;
  // Until the publishing server has reconnected its sends fail: rejoin.
  while (!heard && std::chrono::steady_clock::now() < deadline) {
    if (!c->Send("C", "after", 5s).ok()) break;
    Status s = c->Recv(&reply, 5s);
    if (s.ok() && reply == "C: after") {
      heard = WaitFor(*d, "C: after");
    } else if (!s.ok()) {
      EXPECT_EQ(s.code(), Code::kUnavailable) << s.message();
      std::this_thread::sleep_for(100ms);  // the backoff's own pace, not a guess at readiness
      c = Join(0);
    }
  }
  EXPECT_TRUE(heard);
}

TEST_F(RedisRoomTest, ALateJoinerGetsTheLinesItAsksForThenTheLiveOnes) {
  AddServer();
  AddServer();
  auto a = Join(0), b = Join(1);
  Enter(*a, "A");
  Enter(*b, "B");
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(a->Send("A", "line " + std::to_string(i), 5s).ok());
  ASSERT_TRUE(WaitFor(*b, "A: line 5"));  // server 1 delivered them all
  StreamOptions replay;
  replay.metadata = {{"x-room-replay", "3"}};
  std::shared_ptr<ClientStream> c;
  ASSERT_TRUE(clients_[1]->Open(replay, &c).ok());
  std::string reply;
  for (int i = 3; i <= 5; ++i) {
    ASSERT_TRUE(c->Recv(&reply, 5s).ok());
    EXPECT_EQ(reply, "A: line " + std::to_string(i));
  }
  ASSERT_TRUE(a->Send("A", "live", 5s).ok());
  ASSERT_TRUE(c->Recv(&reply, 5s).ok());
  EXPECT_EQ(reply, "A: live");
}

TEST_F(RedisRoomTest, AFrozenRedisBlocksNothingForever) {
  AddServer();
  auto a = Join(0);
  Enter(*a, "A");
  redis_.Signal(SIGSTOP);  // connections stay up, nothing is answered
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(a->Send("A", "anyone?", 5s).ok());
  std::string reply;
  Status end = a->Recv(&reply, 10s);
  EXPECT_EQ(end.code(), Code::kUnavailable) << end.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);  // the 2 s command timeout
  // The reader is blocked in XREAD on a Redis that will never answer, and
  // A's "left the chat" notice meets the publishing backoff: a stop waits
  // for neither (it took a command timeout, 2 s, before that backoff).
  start = std::chrono::steady_clock::now();
  int cut = 0;
  EXPECT_TRUE(servers_[0]->Stop(kNoWait, &cut).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  redis_.Signal(SIGCONT);
}

TEST_F(RedisRoomTest, AMalformedReplayIsRefused) {
  AddServer();
  for (const char* n : {"", "x", "-1", "1001", "99999"}) {
    StreamOptions replay;
    replay.metadata = {{"x-room-replay", n}};
    std::shared_ptr<ClientStream> c;
    ASSERT_TRUE(clients_[0]->Open(replay, &c).ok());
    std::string reply;
    Status end = c->Recv(&reply, 5s);
    EXPECT_EQ(end.code(), Code::kInvalidArgument) << n << ": " << end.message();
  }
}

// A host's room on Redis: joins each stream with the replay its "replay"
// metadata asks for, publishes every message.
class HostHandler : public Handler {
 public:
  explicit HostHandler(std::shared_ptr<Room> room) : room_(std::move(room)) {}
  void OnOpen(const std::shared_ptr<ServerCall>& call) override {
    auto asked = call->metadata().find("replay");
    size_t replay = asked == call->metadata().end() ? 0 : std::stoul(asked->second);
    Status s = room_->Join(call, replay);
    if (!s.ok()) call->Fail(Code::kUnavailable, s.message());
  }
  void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view name,
                 std::string_view message) override {
    Status s = room_->Publish(name, message);
    if (!s.ok()) call->Fail(Code::kUnavailable, s.message());
  }

 private:
  std::shared_ptr<Room> room_;
};

TEST_F(RedisRoomTest, HostsOnTwoServersShareOneSequenceAndReplay) {
  constexpr int kRounds = 200;
  std::vector<std::shared_ptr<Room>> rooms(2);
  for (auto& room : rooms) {
    RoomOptions ro;
    ro.url = redis_.url();
    ro.name = "hosts";
    ASSERT_TRUE(Room::Open(ro, &room).ok());
    ServerOptions so;
    so.mode = Mode::kCustom;
    so.handler = std::make_shared<HostHandler>(room);
    AddServer(so);
  }
  std::vector<std::shared_ptr<ClientStream>> members = {Join(0), Join(1)};
  for (size_t i = 0; i < members.size(); ++i) Enter(*members[i], "m" + std::to_string(i));
  auto seen = TalkAtOnce(members, kRounds).seen;
  const size_t want = members.size() * kRounds;
  ASSERT_EQ(seen[0].size(), want);
  EXPECT_EQ(seen[1], seen[0]);
  // A late joiner on either server gets the room's last lines first.
  StreamOptions late;
  late.metadata = {{"replay", "5"}};
  std::shared_ptr<ClientStream> c;
  ASSERT_TRUE(clients_[1]->Open(late, &c).ok());
  std::string reply;
  for (size_t k = want - 5; k < want; ++k) {
    ASSERT_TRUE(c->Recv(&reply, 5s).ok());
    EXPECT_EQ(reply, seen[0][k]);
  }
  // Redis gone: publishing fails plainly; a closed room says so.
  redis_.Kill();
  EXPECT_EQ(rooms[0]->Publish("host", "lost").code(), Code::kUnavailable);
  for (auto& room : rooms) room->Close();
  EXPECT_EQ(rooms[0]->Publish("host", "closed").code(), Code::kClosed);
}

}  // namespace
}  // namespace chat::testing
