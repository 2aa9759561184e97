#include "connections.h"

#include <grpc/support/log.h>
#include <sys/socket.h>

#include <cstdlib>

#include "listener.h"

namespace chat::internal {

void ServerConnections::Accepted(int fd, std::string peer) {
  std::lock_guard<std::mutex> lock(mu_);
  Conn c;  // replaces what an earlier connection on this number left
  c.seq = ++seq_;
  c.peer = std::move(peer);
  c.window_start = std::chrono::steady_clock::now();
  conns_[fd] = std::move(c);
}

Connection ServerConnections::Of(const std::string& grpc_peer) {
  Connection c;
  c.peer = grpc_peer;
  if (grpc_peer.rfind("fd:", 0) != 0) return c;
  int fd = std::atoi(grpc_peer.c_str() + 3);
  std::string why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = conns_.find(fd);
    if (it == conns_.end()) return c;
    Conn& conn = it->second;
    c.fd = fd;
    c.seq = conn.seq;
    c.peer = conn.peer;
    ++conn.live;
    if (conn.live * kStreamOverheadBytes > max_memory_bytes_ / 2 && CloseLocked(fd, &conn)) {
      why = std::to_string(conn.live) + " streams alive at once, over half the memory bound";
    }
  }
  if (!why.empty()) LogRapidReset(c.peer, why);
  return c;
}

void ServerConnections::StreamGone(const Connection& conn) {
  if (conn.fd < 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = conns_.find(conn.fd);
  if (it != conns_.end() && it->second.seq == conn.seq) --it->second.live;
}

void ServerConnections::NoteEmptyCancel(const Connection& conn) {
  if (conn.fd < 0) return;
  std::string peer, why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = conns_.find(conn.fd);
    if (it == conns_.end() || it->second.seq != conn.seq) return;
    Conn& c = it->second;
    auto now = std::chrono::steady_clock::now();
    if (now - c.window_start > std::chrono::seconds(1)) {
      c.window_start = now;
      c.cancels = 0;
    }
    if (++c.cancels <= kMaxEmptyCancelsPerSecond || !CloseLocked(conn.fd, &c)) return;
    peer = c.peer;
    why = std::to_string(c.cancels) +
          " streams cancelled within a second before any message went either way";
  }
  LogRapidReset(peer, why);
}

void ServerConnections::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  conns_.clear();
}

// Closes connection `c` under mu_ (which Accepted takes before a descriptor
// number can be reused): gRPC owns the descriptor and may have closed it
// already, so it is touched only while it still is this connection (same
// peer address). Reading what is queued on it makes gRPC's next read see
// the end at once, instead of parsing every frame the flood left in the
// socket. False if already closed or gone.
bool ServerConnections::CloseLocked(int fd, Conn* c) {
  if (c->closed) return false;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
      PeerString(ss, len) != c->peer) {
    return false;
  }
  c->closed = true;
  shutdown(fd, SHUT_RDWR);
  char sink[16384];
  while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
  }
  return true;
}

void ServerConnections::LogRapidReset(const std::string& peer, const std::string& why) {
  gpr_log(GPR_ERROR, "libchat: closed the connection from %s: %s (rapid reset)", peer.c_str(),
          why.c_str());
}

}  // namespace chat::internal
