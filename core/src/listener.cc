#include "listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpc/support/log.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
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
      std::string port = std::to_string(ntohs(in6.sin6_port));
      if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {  // an IPv4 client on a dual-stack socket
        inet_ntop(AF_INET, &in6.sin6_addr.s6_addr[12], host, sizeof host);
        return std::string("ipv4:") + host + ":" + port;
      }
      inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
      return std::string("ipv6:%5B") + host + "%5D:" + port;  // brackets escaped, as gRPC does
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

// Whether `path` is a Unix socket nobody listens on any more, left by a
// server that died: only such a file is replaced. Anything else there (a
// live server's socket, a regular file) makes the bind fail instead.
bool IsStaleSocket(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), std::min(path.size(), sizeof un.sun_path - 1));
  bool refused = connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof un) != 0 &&
                 errno == ECONNREFUSED;
  close(fd);
  return refused;
}

// "0.0.0.0", "::", "[::0]"...: every local address. As with gRPC, that
// means both families, so it is bound as a dual-stack IPv6 socket.
bool IsWildcard(const std::string& host) {
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return a4.s_addr == htonl(INADDR_ANY);
  return inet_pton(AF_INET6, host.c_str(), &a6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a6);
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
    int err = errno;
    *error = ErrnoText(err);
    close(fd);
    errno = err;  // the caller looks at it
    return -1;
  }
  return fd;
}

}  // namespace

Status Listener::Open(const ListenAddress& address, std::unique_ptr<Listener>* out) {
  std::unique_ptr<Listener> l(new Listener);
  std::string error = "no address";
  if (address.kind == ListenAddress::Kind::kTcp) {
    Status st = l->ListenTcp(address);
    if (!st.ok()) return st;
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
    if (!abstract && IsStaleSocket(address.path)) unlink(address.path.c_str());
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
  if (l->fds_.empty()) return Status(Code::kCannotListen, "cannot listen: " + error);
  if (pipe2(l->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return Status(Code::kSystem, "pipe: " + ErrnoText(errno));
  }
  *out = std::move(l);
  return Status::Ok();
}

// Binds every address the host resolves to, on one port. With port 0 the
// first socket picks the port; if another family has it taken already, all
// are closed and a new port is tried. A fixed port that cannot be bound on
// every address is an error: serving on only some of them would hide it.
Status Listener::ListenTcp(const ListenAddress& address) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG;
  bool wildcard = IsWildcard(address.host);
  const char* host = wildcard ? "::" : address.host.c_str();
  std::string port = std::to_string(address.port);
  addrinfo* list = nullptr;
  int rc = getaddrinfo(host, port.c_str(), &hints, &list);
  if (rc != 0 && wildcard) {  // no IPv6 on this machine: IPv4 only
    host = "0.0.0.0";
    wildcard = false;
    rc = getaddrinfo(host, port.c_str(), &hints, &list);
  }
  if (rc != 0) {
    return Status(Code::kCannotListen, "cannot resolve '" + address.host + "': " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(list, freeaddrinfo);
  std::string error;
  for (int attempt = 0; attempt < 10; ++attempt) {
    port_ = address.port;
    bool retry = false;
    for (addrinfo* ai = list; ai && !retry; ai = ai->ai_next) {
      if (ai->ai_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_port = htons(port_);
      } else if (ai->ai_family == AF_INET6) {
        reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_port = htons(port_);
      }
      int fd = ListenOn(*ai, wildcard, &error);
      if (fd < 0) {
        retry = address.port == 0 && !fds_.empty() && errno == EADDRINUSE;
        if (!retry) {
          for (int f : fds_) close(f);
          fds_.clear();
          return Status(Code::kCannotListen, "cannot listen on '" + address.host + ":" +
                                                std::to_string(port_) + "': " + error);
        }
        break;
      }
      fds_.push_back(fd);
      if (port_ == 0) port_ = BoundPort(fd);
    }
    if (!retry) return Status::Ok();
    for (int f : fds_) close(f);  // the picked port is taken on another family
    fds_.clear();
  }
  return Status(Code::kCannotListen, "cannot find a port free on every address of '" +
                                        address.host + "': " + error);
}

Listener::~Listener() {
  Close();
  for (int fd : wake_) {
    if (fd >= 0) close(fd);
  }
}

void Listener::Start(OnAccept on_accept) {
  on_accept_ = std::move(on_accept);
  // The accept thread takes no signals: they stay for the host's threads
  // (a handler expecting EINTR on its own thread must get it there).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { Run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
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
    if (n < 0) {
      if (errno == EINTR) continue;
      // Out of kernel memory, say: never give up accepting, wait and retry.
      Backoff("poll", errno);
      continue;
    }
    if (pfds[0].revents) return;  // Close()
    bool out_of_fds = false;
    for (int fd : fds_) {
      bool ready = backoff_ms_ > 0;  // after a back-off, try every socket
      for (size_t i = 1; i < pfds.size(); ++i) ready |= pfds[i].fd == fd && pfds[i].revents;
      if (!ready) continue;
      switch (AcceptReady(fd)) {
        case AcceptResult::kOutOfFds: out_of_fds = true; break;
        case AcceptResult::kAccepted:
        case AcceptResult::kIdle: break;
      }
    }
    if (out_of_fds) {
      Backoff("accept", last_errno_);
    } else {
      if (backoff_ms_ > 0) gpr_log(GPR_INFO, "libchat: accepting connections again");
      backoff_ms_ = 0;
    }
  }
}

// Logs the first failure of a shortage and waits longer after each one.
void Listener::Backoff(const char* what, int err) {
  if (backoff_ms_ == 0) {
    gpr_log(GPR_ERROR, "libchat: cannot accept connections (%s: %s); retrying until it can",
            what, ErrnoText(err).c_str());
    backoff_ms_ = kFirstBackoffMs;
  } else {
    backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  }
}

Listener::AcceptResult Listener::AcceptReady(int listen_fd) {
  bool accepted = false;
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        last_errno_ = err;
        return AcceptResult::kOutOfFds;
      }
      // EAGAIN: nothing more waiting; another error concerns one connection.
      return accepted ? AcceptResult::kAccepted : AcceptResult::kIdle;
    }
    accepted = true;
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
      int one = 1;  // gRPC's own listener does the same: no Nagle delay
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    on_accept_(fd, PeerString(ss, len));
  }
}

}  // namespace chat::internal
