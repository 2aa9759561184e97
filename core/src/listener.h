// The server's own listening sockets and accept loop. Accepted connections
// are handed to gRPC (grpc::AddInsecureChannelFromFd), so the library, not
// gRPC 1.51's listener, decides two things that listener gets wrong:
//  - Out of file descriptors (EMFILE and the like), gRPC's listener stops
//    accepting for good; this one backs off and accepts again once
//    descriptors are free.
//  - It knows each connection's descriptor, so a connection that floods
//    the server (rapid reset) can be shut down (see ServerImpl).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "address.h"
#include "chat/status.h"

struct sockaddr_storage;

namespace chat::internal {

// A socket address as gRPC spells peers ("ipv4:127.0.0.1:41234",
// "ipv6:%5B::1%5D:41234", "unix:/path"); an IPv4 client of a dual-stack
// socket is "ipv4:".
std::string PeerString(const sockaddr_storage& address, unsigned address_len);

class Listener {
 public:
  // Runs on the accept thread for every accepted connection: `fd` is a
  // connected, non-blocking socket the callee now owns; `peer` is its
  // address as gRPC spells peers ("ipv4:127.0.0.1:41234").
  using OnAccept = std::function<void(int fd, std::string peer)>;

  // Binds and listens on every address `address` resolves to (one port for
  // all of them; port 0 picks a free one). "0.0.0.0" and "[::]" mean both
  // address families, as with gRPC. kUnavailable when any cannot be bound.
  static Status Open(const ListenAddress& address, std::unique_ptr<Listener>* out);
  ~Listener();  // Close()
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The bound TCP port (1 for Unix sockets, as gRPC reports them).
  int port() const { return port_; }

  // Starts the accept thread. Call once.
  void Start(OnAccept on_accept);
  // Stops accepting: wakes and joins the accept thread, closes the
  // listening sockets. Idempotent; never called on the accept thread.
  void Close();

 private:
  enum class AcceptResult { kIdle, kAccepted, kOutOfFds };

  Listener() = default;
  Status ListenTcp(const ListenAddress& address);
  void Run();
  AcceptResult AcceptReady(int listen_fd);
  void Backoff(const char* what, int err);

  std::vector<int> fds_;
  int wake_[2] = {-1, -1};  // a pipe: Close writes, the accept loop wakes
  int port_ = 0;
  OnAccept on_accept_;
  std::thread thread_;
  std::mutex close_mu_;
  bool closed_ = false;
  int backoff_ms_ = 0;  // > 0 while descriptors ran out
  int last_errno_ = 0;  // the accept error that started or continued it
};

}  // namespace chat::internal
