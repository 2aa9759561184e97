// One order per room: members sending interleaved from their own threads
// all receive the room's messages in the same sequence.
#include <thread>

#include "harness.h"

namespace chat::testing {
namespace {

TEST_F(ChatTest, BroadcastGivesEveryMemberTheSameSequence) {
  constexpr int kMembers = 4;
  constexpr int kRounds = 2000;
  ServerOptions so;
  so.mode = Mode::kBroadcast;
  // Room for every line: this test is about order, not about cutting a
  // member that falls behind the senders.
  so.send_queue_limit = 2 * kMembers * kRounds;
  // A transport thread per member, all draining, so their fan-outs run at
  // the same time.
  so.completion_queues = kMembers;
  so.all_queues_awake = true;
  StartServer(so);
  // A client each: their streams arrive on their own connections.
  std::vector<std::unique_ptr<Client>> clients(kMembers);
  std::vector<std::shared_ptr<ClientStream>> members(kMembers);
  for (int i = 0; i < kMembers; ++i) {
    ASSERT_TRUE(
        Client::Create("127.0.0.1:" + std::to_string(server_->port()), {}, &clients[i]).ok());
    ASSERT_TRUE(clients[i]->Open({}, &members[i]).ok());
  }
  // A member is in the room once it hears its own hello; the hellos
  // themselves may reach earlier members in any order, so they are not
  // part of the sequence compared.
  for (int i = 0; i < kMembers; ++i) {
    std::string name = "m" + std::to_string(i), reply;
    ASSERT_TRUE(members[i]->Send(name, "hello", 5s).ok());
    while (members[i]->Recv(&reply, 5s).ok() && reply != name + ": hello") {}
    ASSERT_EQ(reply, name + ": hello");
  }
  std::vector<std::vector<std::string>> seen(kMembers);
  std::vector<Status> ends(kMembers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kMembers; ++i) {
    threads.emplace_back([&, i] {
      std::string name = "m" + std::to_string(i);
      for (int k = 0; k < kRounds; ++k) {
        if (!members[i]->Send(name, std::to_string(k), 5s).ok()) return;
      }
    });
    threads.emplace_back([&, i] {
      std::string reply;
      while (seen[i].size() < kMembers * kRounds) {
        ends[i] = members[i]->Recv(&reply, 5s);
        if (!ends[i].ok()) return;
        if (reply.find(": hello") == std::string::npos) seen[i].push_back(reply);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kMembers; ++i) {
    ASSERT_EQ(seen[i].size(), size_t{kMembers * kRounds})
        << "member " << i << ": " << CodeName(ends[i].code()) << " " << ends[i].message();
    // Each sender's lines in the order it sent them.
    std::vector<int> next(kMembers, 0);
    for (const std::string& line : seen[i]) {
      int who = line[1] - '0';
      ASSERT_EQ(line, "m" + std::to_string(who) + ": " + std::to_string(next[who]++));
    }
  }
  for (int i = 1; i < kMembers; ++i) {
    size_t diverge = 0;
    while (diverge < seen[0].size() && seen[0][diverge] == seen[i][diverge]) ++diverge;
    EXPECT_EQ(diverge, seen[0].size())
        << "member " << i << " diverges from member 0 at line " << diverge;
  }
}

}  // namespace
}  // namespace chat::testing
