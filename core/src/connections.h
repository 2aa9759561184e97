// What the server knows of each client connection the listener accepted:
// who it is (gRPC only sees "fd:12"), how many streams it has open, and how
// many it reset before a message went either way, so a connection that
// floods the server with streams (rapid reset) can be closed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cq.h"
#include "server_stream.h"

namespace chat::internal {

// Rapid reset (CVE-2023-44487): gRPC 1.51 turns every HEADERS frame into a
// call even when RST_STREAM follows at once, and runs those calls far more
// slowly than a client can send the frames, so their backlog grows without
// bound. A connection is taken for that pattern and closed when, within a
// second, this many of its streams end cancelled (by the client or by a
// deadline, which the client chooses) before a message went either way, or
// when its live streams hold more than half of the server's memory bound
// (on a busy machine a burst can be parsed whole before any of its streams
// is seen cancelled: this bounds it all the same).
constexpr int kMaxEmptyCancelsPerSecond = 100;

// What one open stream costs besides its queued messages (gRPC's call and
// our session: about 20 KiB measured), charged to the server's memory bound.
constexpr size_t kStreamOverheadBytes = 16 * 1024;

class ServerConnections {
 public:
  explicit ServerConnections(size_t max_memory_bytes) : max_memory_bytes_(max_memory_bytes) {}

  // On the listener's thread, before gRPC is handed the descriptor.
  void Accepted(int fd, std::string peer);
  // The connection a new stream came on (gRPC names connections it was
  // handed by descriptor: "fd:12"); counts one more live stream of it.
  Connection Of(const std::string& grpc_peer);
  // A stream of `conn` is over.
  void StreamGone(const Connection& conn);
  // A stream of `conn` was cancelled before any message went either way.
  // Too many of those too fast: the connection is closed.
  void NoteEmptyCancel(const Connection& conn);
  void Clear();

  // How many bytes gRPC has taken from each open TCP connection so far
  // (what the kernel received less what still waits in the socket).
  struct ReadMark {
    int fd;
    uint64_t seq;
    uint64_t read;
  };
  std::vector<ReadMark> ReadMarks();
  // Closes the connection that read the most since `marks` were taken (the
  // process grew by `grown` bytes meanwhile; see QueueWatch). True if one
  // was closed: `marks` are then the ones it read now, to count from.
  bool CloseMostRead(std::vector<ReadMark>* marks, size_t grown);

 private:
  struct Conn {
    uint64_t seq = 0;  // tells apart connections that got the same descriptor
    std::string peer;
    std::chrono::steady_clock::time_point window_start;
    int cancels = 0;  // empty streams cancelled since window_start
    size_t live = 0;  // streams not yet over
    bool closed = false;
  };
  bool CloseLocked(int fd, Conn* c);
  static void LogRapidReset(const std::string& peer, const std::string& why);

  const size_t max_memory_bytes_;
  std::mutex mu_;
  std::unordered_map<int, Conn> conns_;  // by descriptor; bounded by the fd table
  uint64_t seq_ = 0;
};

// Watches a server's queue threads, of which only the first drains at
// first: every thread waiting in a queue takes turns as gRPC's poller
// (epoll1 has one per process) and hands sockets to the others, which cost
// 7.1-7.5 µs of CPU per message at 1,000 streams with two threads against
// 4.8-5.0 with one. A standby thread wakes, and stays awake:
//  - when an awake one is stuck in gRPC: using CPU without returning a
//    completion for two ticks (20 ms) in a row. That is rapid reset: gRPC
//    reads a connection for as long as bytes wait on it and only then
//    returns the completions through which ServerConnections sees its
//    streams, so a burst of reset streams is parsed whole first, each a
//    pending call gRPC keeps (50,000 made 650 MB with one thread), while a
//    second thread sees the cancels meanwhile. Measured with a 64 MiB
//    bound, one to four connections bursting 50,000 streams each at once
//    peaked at +27 to +48 MB (two threads awake from the start: +24 to
//    +31). It needs no descriptor, so TLS and Unix-socket connections are
//    covered too. One tick was too eager: a thousand streams opened at
//    once kept the thread stuck for one.
//  - under load: every awake thread ran 85% of the last 250 ms and the
//    machine had one and a half cores idle (see kIdleCores).
// With every thread awake and all stuck, the process growing by half the
// memory bound (16 MiB at least) meanwhile, it closes the plaintext TCP
// connection that read the most (ServerConnections::CloseMostRead); gRPC's
// next read of it ends the parse. That is all a server with one queue has
// (+46 to +61 MB for one flooding connection, +90 for two, +163 for four).
// A ratio of growth to bytes read would spare large messages, but a flood
// padded with ~600 bytes of headers per stream got under 32x and grew the
// server by 657 MiB; messages grow it by about their size, which flow
// control bounds per stream.
class QueueWatch {
 public:
  // The first `awake` of `threads` drain; wake(i) has the server wake
  // standby thread i and request calls on its queue (on the watcher's
  // thread, in order).
  QueueWatch(ServerConnections* conns, std::vector<const CqThread*> threads, size_t awake,
             size_t max_memory_bytes, std::function<void(size_t)> wake);
  ~QueueWatch();  // joins; call before the queue threads shut down
  QueueWatch(const QueueWatch&) = delete;
  QueueWatch& operator=(const QueueWatch&) = delete;

 private:
  void Run();

  ServerConnections* const conns_;
  const std::vector<const CqThread*> threads_;
  const size_t first_awake_;
  const size_t max_memory_bytes_;
  const std::function<void(size_t)> wake_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace chat::internal
