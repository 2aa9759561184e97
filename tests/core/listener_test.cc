// The server's own listener: which addresses it binds, how it names peers,
// and what it refuses to touch.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "harness.h"

namespace chat::testing {
namespace {

// Records each call's peer and answers like the seed.
class PeerHandler : public Handler {
 public:
  void OnOpen(const std::shared_ptr<ServerCall>& call) override { peers.Add(call->peer()); }
  void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view name,
                 std::string_view message) override {
    call->Send(std::string(name) + ": " + std::string(message), 5s);
  }
  EventLog peers;
};

std::unique_ptr<Server> StartAt(const std::string& address, std::shared_ptr<Handler> handler,
                                Status* status) {
  ServerOptions so;
  so.address = address;
  if (handler) {
    so.mode = Mode::kCustom;
    so.handler = std::move(handler);
  }
  std::unique_ptr<Server> server;
  *status = Server::Start(so, &server);
  return server;
}

// One seed exchange against `target`; the replies, empty on failure.
std::vector<std::string> Seed(const std::string& target) {
  std::unique_ptr<Client> client;
  if (!Client::Create(target, {}, &client).ok()) return {};
  std::shared_ptr<ClientStream> stream;
  if (!client->Open({}, &stream).ok()) return {};
  stream->Send("Sam", "Hi", 5s);
  stream->Complete();
  std::vector<std::string> replies;
  std::string reply;
  while (stream->Recv(&reply, 5s).ok()) replies.push_back(reply);
  return replies;
}

bool HaveIpv6Loopback() {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

TEST(ListenerTest, PeersAreNamedAsGrpcNamesThem) {
  auto handler = std::make_shared<PeerHandler>();
  Status s;
  auto server = StartAt("127.0.0.1:0", handler, &s);
  ASSERT_TRUE(s.ok()) << s.message();
  std::string port = std::to_string(server->port());
  EXPECT_EQ(Seed("127.0.0.1:" + port), std::vector<std::string>{"Sam: Hi"});
  ASSERT_TRUE(handler->peers.WaitForCount(1));
  EXPECT_EQ(handler->peers.Snapshot()[0].rfind("ipv4:127.0.0.1:", 0), 0u)
      << handler->peers.Snapshot()[0];
}

// "0.0.0.0" means every address, IPv6 included (as with gRPC's listener),
// and an IPv4 client of the dual-stack socket is still named "ipv4:".
TEST(ListenerTest, WildcardServesBothFamilies) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback here";
  auto handler = std::make_shared<PeerHandler>();
  Status s;
  auto server = StartAt("0.0.0.0:0", handler, &s);
  ASSERT_TRUE(s.ok()) << s.message();
  std::string port = std::to_string(server->port());
  EXPECT_EQ(Seed("127.0.0.1:" + port), std::vector<std::string>{"Sam: Hi"});
  EXPECT_EQ(Seed("[::1]:" + port), std::vector<std::string>{"Sam: Hi"});
  ASSERT_TRUE(handler->peers.WaitForCount(2));
  auto peers = handler->peers.Snapshot();
  EXPECT_EQ(peers[0].rfind("ipv4:127.0.0.1:", 0), 0u) << peers[0];
  EXPECT_EQ(peers[1].rfind("ipv6:%5B::1%5D:", 0), 0u) << peers[1];
}

// A port taken on the address asked for is an error, not a quiet success.
TEST(ListenerTest, APortInUseIsRefused) {
  Status s;
  auto first = StartAt("127.0.0.1:0", nullptr, &s);
  ASSERT_TRUE(s.ok());
  auto second = StartAt("127.0.0.1:" + std::to_string(first->port()), nullptr, &s);
  EXPECT_EQ(s.code(), Code::kCannotListen) << s.message();
  EXPECT_FALSE(second);
}

class UnixPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/libchat-listener-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    unlink((dir_ + "/sock").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

// A regular file where the socket should go is left alone: the start fails.
TEST_F(UnixPathTest, ARegularFileIsNeverReplaced) {
  std::string path = dir_ + "/sock";
  { std::ofstream(path) << "precious"; }
  Status s;
  auto server = StartAt("unix:" + path, nullptr, &s);
  EXPECT_EQ(s.code(), Code::kCannotListen) << s.message();
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

// The socket of a live server is not taken over; a stale one (its server
// gone) is replaced.
TEST_F(UnixPathTest, ALiveSocketIsKeptAndAStaleOneReplaced) {
  std::string path = dir_ + "/sock";
  Status s;
  auto live = StartAt("unix:" + path, nullptr, &s);
  ASSERT_TRUE(s.ok()) << s.message();
  auto second = StartAt("unix:" + path, nullptr, &s);
  EXPECT_EQ(s.code(), Code::kCannotListen) << s.message();
  EXPECT_EQ(Seed("unix:" + path), std::vector<std::string>{"Sam: Hi"});  // still the first
  // A socket file nobody listens on any more.
  live.reset();
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::snprintf(un.sun_path, sizeof un.sun_path, "%s", path.c_str());
  unlink(path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
  close(fd);  // bound, never listened on: stale
  auto fresh = StartAt("unix:" + path, nullptr, &s);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(Seed("unix:" + path), std::vector<std::string>{"Sam: Hi"});
}

}  // namespace
}  // namespace chat::testing
