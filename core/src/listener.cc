#include "listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpc/support/log.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace chat::internal {
namespace {

// Back-off while the process is out of descriptors: first retry soon, then
// less often, so a long shortage costs no CPU.
constexpr int kFirstBackoffMs = 20;
constexpr int kMaxBackoffMs = 1000;

std::string ErrnoText(int err) { return std::strerror(err); }

}  // namespace

std::string PeerString(const sockaddr_storage& ss, unsigned len) {
  char host[INET6_ADDRSTRLEN] = "";
  switch (ss.ss_family) {
    case AF_INET: {
      const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
      inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
      return std::string("ipv4:") + host + ":" + std::to_string(ntohs(in.sin_port));
    }
    case AF_INET6: {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
      inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
      return std::string("ipv6:[") + host + "]:" + std::to_string(ntohs(in6.sin6_port));
    }
    case AF_UNIX: {
      const auto& un = reinterpret_cast<const sockaddr_un&>(ss);
      size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      if (n == 0 || un.sun_path[0] == '\0') return "unix:";
      return std::string("unix:") + std::string(un.sun_path, strnlen(un.sun_path, n));
    }
  }
  return "unknown:";
}

namespace {

int BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in&>(ss).sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6&>(ss).sin6_port);
  return 0;
}

// A listening socket on `ai`, or -1 with `*error` set.
int ListenOn(const addrinfo& ai, bool dual_stack, std::string* error) {
  int fd = socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai.ai_protocol);
  if (fd < 0) {
    *error = "socket: " + ErrnoText(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart over TIME_WAIT
  if (ai.ai_family == AF_INET6) {
    int v6only = dual_stack ? 0 : 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  if (bind(fd, ai.ai_addr, ai.ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
    *error = ErrnoText(errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

Status Listener::Open(const ListenAddress& address, std::unique_ptr<Listener>* out) {
  std::unique_ptr<Listener> l(new Listener);
  std::string error = "no address";
  if (address.kind == ListenAddress::Kind::kTcp) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG;
    addrinfo* list = nullptr;
    std::string port = std::to_string(address.port);
    const char* host = address.host.empty() ? nullptr : address.host.c_str();
    if (int rc = getaddrinfo(host, port.c_str(), &hints, &list); rc != 0) {
      return Status(Code::kUnavailable, "cannot resolve '" + address.host + "': " + gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(list, freeaddrinfo);
    // "[::]" means every address, IPv4 included, as it does for gRPC.
    bool dual_stack = address.host == "::";
    for (addrinfo* ai = list; ai; ai = ai->ai_next) {
      // Port 0: the first socket picks the port, the others take the same.
      if (l->port_ != 0) {
        if (ai->ai_family == AF_INET) {
          reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_port = htons(l->port_);
        } else if (ai->ai_family == AF_INET6) {
          reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_port = htons(l->port_);
        }
      }
      int fd = ListenOn(*ai, dual_stack, &error);
      if (fd < 0) continue;
      l->fds_.push_back(fd);
      if (l->port_ == 0) l->port_ = BoundPort(fd);
    }
  } else {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    bool abstract = address.kind == ListenAddress::Kind::kUnixAbstract;
    size_t room = sizeof un.sun_path - (abstract ? 1 : 0) - 1;
    if (address.path.empty() || address.path.size() > room) {
      return Status(Code::kBadArgument, "unix socket path is empty or too long");
    }
    std::memcpy(un.sun_path + (abstract ? 1 : 0), address.path.data(), address.path.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + (abstract ? 1 : 0) +
                                           address.path.size() + (abstract ? 0 : 1));
    if (!abstract) unlink(address.path.c_str());  // a stale socket file, as gRPC does
    addrinfo ai{};
    ai.ai_family = AF_UNIX;
    ai.ai_socktype = SOCK_STREAM;
    ai.ai_addr = reinterpret_cast<sockaddr*>(&un);
    ai.ai_addrlen = len;
    int fd = ListenOn(ai, false, &error);
    if (fd >= 0) {
      l->fds_.push_back(fd);
      l->port_ = 1;
    }
  }
  if (l->fds_.empty()) return Status(Code::kUnavailable, "cannot listen: " + error);
  if (pipe2(l->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return Status(Code::kUnavailable, "pipe: " + ErrnoText(errno));
  }
  *out = std::move(l);
  return Status::Ok();
}

Listener::~Listener() {
  Close();
  for (int fd : wake_) {
    if (fd >= 0) close(fd);
  }
}

void Listener::Start(OnAccept on_accept) {
  on_accept_ = std::move(on_accept);
  thread_ = std::thread([this] { Run(); });
}

void Listener::Close() {
  std::lock_guard<std::mutex> lock(close_mu_);
  if (closed_) return;
  closed_ = true;
  if (thread_.joinable()) {
    char b = 1;
    while (write(wake_[1], &b, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  for (int fd : fds_) close(fd);
  fds_.clear();
}

void Listener::Run() {
  std::vector<pollfd> pfds;
  for (;;) {
    pfds.clear();
    pfds.push_back({wake_[0], POLLIN, 0});
    // While backing off, wait only for the wake pipe or the timeout.
    if (backoff_ms_ == 0) {
      for (int fd : fds_) pfds.push_back({fd, POLLIN, 0});
    }
    int n = poll(pfds.data(), pfds.size(), backoff_ms_ > 0 ? backoff_ms_ : -1);
    if (n < 0 && errno != EINTR) return;  // cannot happen with valid fds
    if (pfds[0].revents) return;          // Close()
    if (backoff_ms_ > 0 && n == 0) {
      // Try again; AcceptReady keeps or ends the back-off.
      for (int fd : fds_) AcceptReady(fd);
      continue;
    }
    for (size_t i = 1; i < pfds.size(); ++i) {
      if (pfds[i].revents) AcceptReady(pfds[i].fd);
    }
  }
}

void Listener::AcceptReady(int listen_fd) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        if (backoff_ms_ == 0) {
          gpr_log(GPR_ERROR,
                  "libchat: cannot accept connections: %s; retrying until descriptors are free",
                  ErrnoText(err).c_str());
          backoff_ms_ = kFirstBackoffMs;
        } else {
          backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
        }
        return;
      }
      if (backoff_ms_ > 0 && err == EAGAIN) {
        gpr_log(GPR_INFO, "libchat: accepting connections again");
      }
      if (err == EAGAIN || err == EWOULDBLOCK) backoff_ms_ = 0;
      return;  // EAGAIN, or an error of one connection: wait for the next
    }
    if (backoff_ms_ > 0) {
      gpr_log(GPR_INFO, "libchat: accepting connections again");
      backoff_ms_ = 0;
    }
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
      int one = 1;  // gRPC's own listener does the same: no Nagle delay
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    on_accept_(fd, PeerString(ss, len));
  }
}

}  // namespace chat::internal
