// What the room tests share: entering a room and members talking at once.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "chat/client.h"

namespace chat::testing {

// Says hello until the member hears itself: it is then in the room.
inline void EnterRoom(ClientStream& s, const std::string& name) {
  std::string reply;
  ASSERT_TRUE(s.Send(name, "hello", std::chrono::seconds(5)).ok());
  while (s.Recv(&reply, std::chrono::seconds(5)).ok() && reply != name + ": hello") {}
  ASSERT_EQ(reply, name + ": hello");
}

// Member i sends "m<i>" lines "0".."rounds-1" from a thread of its own, all
// members at once, plus `private_text` after every 100th line when it is
// set (a message the host answers privately with `private_reply`).
// Returns, per member, the room's lines it received (hellos left out) until
// it has all members' lines; `private_replies`, if given, counts the
// private replies each got.
struct Talk {
  std::vector<std::vector<std::string>> seen;
  std::vector<size_t> private_replies;
};
inline Talk TalkAtOnce(const std::vector<std::shared_ptr<ClientStream>>& members, int rounds,
                       const std::string& private_text = "",
                       const std::string& private_reply = "") {
  using std::chrono::seconds;
  Talk talk{std::vector<std::vector<std::string>>(members.size()),
            std::vector<size_t>(members.size())};
  const size_t want = members.size() * static_cast<size_t>(rounds);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < members.size(); ++i) {
    threads.emplace_back([&, i] {
      std::string name = "m" + std::to_string(i);
      for (int k = 0; k < rounds; ++k) {
        if (!members[i]->Send(name, std::to_string(k), seconds(5)).ok()) return;
        if (!private_text.empty() && k % 100 == 0 &&
            !members[i]->Send(name, private_text, seconds(5)).ok()) {
          return;
        }
      }
    });
    threads.emplace_back([&, i] {
      std::string reply;
      while (talk.seen[i].size() < want && members[i]->Recv(&reply, seconds(5)).ok()) {
        if (!private_reply.empty() && reply == private_reply) {
          ++talk.private_replies[i];
        } else if (reply.find(": hello") == std::string::npos) {
          talk.seen[i].push_back(reply);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return talk;
}

}  // namespace chat::testing
