#include "connections.h"

#include <grpc/support/log.h>
#include <netinet/in.h>
#include <linux/tcp.h>  // tcp_info with tcpi_bytes_received (glibc's lacks it)
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
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

std::vector<ServerConnections::ReadMark> ServerConnections::ReadMarks() {
  std::vector<ReadMark> marks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [fd, c] : conns_) {
      if (!c.closed) marks.push_back({fd, c.seq, 0});
    }
  }
  // Outside the lock: a descriptor reused meanwhile only skews its figure,
  // and CloseMostRead checks seq and peer before it closes anything.
  for (ReadMark& m : marks) {
    tcp_info info{};
    socklen_t len = sizeof info;
    int queued = 0;
    if (getsockopt(m.fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
        len >= offsetof(tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received &&
        ioctl(m.fd, FIONREAD, &queued) == 0 && info.tcpi_bytes_received >= uint64_t(queued)) {
      m.read = info.tcpi_bytes_received - static_cast<uint64_t>(queued);
    }
  }
  return marks;
}

bool ServerConnections::CloseMostRead(std::vector<ReadMark>* marks, size_t grown) {
  std::unordered_map<int, const ReadMark*> then;
  for (const ReadMark& m : *marks) then[m.fd] = &m;
  std::vector<ReadMark> now = ReadMarks();
  // A flood reads some 40 bytes per stream that grows the server by some
  // 13 KB: a connection that read under 1/1024 of the growth is not one.
  std::vector<ReadMark> candidates;
  for (const ReadMark& m : now) {
    auto it = then.find(m.fd);
    if (it == then.end() || it->second->seq != m.seq || m.read <= it->second->read) continue;
    uint64_t read = m.read - it->second->read;
    if (read >= grown / 1024) candidates.push_back({m.fd, m.seq, read});
  }
  // The most read first; one whose descriptor is no longer its connection
  // (gRPC closed it, the number was reused) must not shield the next.
  std::sort(candidates.begin(), candidates.end(),
            [](const ReadMark& a, const ReadMark& b) { return a.read > b.read; });
  for (const ReadMark& top : candidates) {
    std::string peer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = conns_.find(top.fd);
      if (it == conns_.end() || it->second.seq != top.seq || !CloseLocked(top.fd, &it->second)) {
        continue;
      }
      peer = it->second.peer;
    }
    LogRapidReset(peer, "the server grew by " + std::to_string(grown >> 20) +
                            " MiB while a queue thread parsed " + std::to_string(top.read) +
                            " bytes of it without coming back");
    *marks = std::move(now);
    return true;
  }
  return false;
}

// Closes connection `c` under mu_ (which Accepted takes before a descriptor
// number can be reused): gRPC owns the descriptor and may have closed it
// already, so it is touched only while it still is this connection (same
// peer address). Reading what is queued on it makes gRPC's next read see
// the end at once, instead of parsing every frame the flood left in the
// socket. False if already closed or gone.
bool ServerConnections::CloseLocked(int fd, Conn* c) {
  if (c->closed) return false;
  // Either way: closed now, or gone (the descriptor is another's now,
  // never to be touched).
  c->closed = true;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
      PeerString(ss, len) != c->peer) {
    return false;
  }
  shutdown(fd, SHUT_RDWR);
  char sink[16384];
  while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
  }
  return true;
}

namespace {
// How often QueueWatch looks, and the CPU time a queue thread must have
// used since, without coming back, to count as stuck inside gRPC.
constexpr auto kWatchTick = std::chrono::milliseconds(10);
constexpr int64_t kStuckCpuNanos = 2500000;
// Ticks in a row a thread must be stuck before a standby one wakes: a
// thousand streams opened at once kept one stuck for a tick or two.
constexpr int kStuckTicksToWake = 2;
// The least growth QueueWatch acts on, whatever the memory bound: resident
// memory also moves for reasons of its own (the allocator; in-process
// clients, as in tests), and with a small bound those could pass for a
// flood. A sanitizer's quarantine and shadow multiply it (an in-process
// slow-reader test with a 4 MiB bound grew 16 MiB in one parse under ASan).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr size_t kMinFloodGrowth = 128u << 20;
#else
constexpr size_t kMinFloodGrowth = 16u << 20;
#endif

// Under load: over each window (250 ms), another queue thread wakes when
// every awake one ran for this share of it and the machine left this many
// of the cores this process may use idle. A thread more costs gRPC's
// poller hand-offs (on 2 cores, 1,000 streams: 7.3 against 4.9 µs per
// message), so it must have a core to itself with room to spare: on a
// 2-core machine whose clients are local (under 1.5 idle) it was measured
// to add 7% throughput for 50% more CPU per message.
constexpr auto kLoadWindow = std::chrono::milliseconds(250);
constexpr double kSaturatedShare = 0.85;
constexpr double kIdleCores = 1.5;

// The machine's idle and total CPU time so far, all cores (/proc/stat).
bool MachineCpu(uint64_t* idle, uint64_t* total) {
  FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return false;
  unsigned long long v[8] = {};
  int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                      &v[3], &v[4], &v[5], &v[6], &v[7]);
  std::fclose(f);
  if (n < 5) return false;
  *idle = v[3] + v[4];  // idle, iowait
  *total = 0;
  for (unsigned long long x : v) *total += x;
  return true;
}

// The machine's cores idle over a window, in cores: `idle` and `total`
// are updated to now. -1 when unknown.
double IdleCores(uint64_t* idle, uint64_t* total) {
  uint64_t idle_now = 0, total_now = 0;
  if (!MachineCpu(&idle_now, &total_now)) return -1;
  double share = -1;
  // iowait may step back: a window where either did is not judged.
  if (*total != 0 && total_now > *total && idle_now >= *idle) {
    share = static_cast<double>(idle_now - *idle) / static_cast<double>(total_now - *total);
  }
  *idle = idle_now;
  *total = total_now;
  cpu_set_t set;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (share < 0 || online <= 0) return -1;
  // The whole machine's share, in the cores this process may run on.
  int usable = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : online;
  return std::min(share * online, static_cast<double>(usable));
}

size_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}
}  // namespace

QueueWatch::QueueWatch(ServerConnections* conns, std::vector<const CqThread*> threads,
                       size_t awake, size_t max_memory_bytes, std::function<void(size_t)> wake)
    : conns_(conns),
      threads_(std::move(threads)),
      first_awake_(awake),
      max_memory_bytes_(max_memory_bytes),
      wake_(std::move(wake)) {
  sigset_t all, old;  // host signals go to the host's threads
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { Run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_setname_np(thread_.native_handle(), "chat-srv-watch");
}

QueueWatch::~QueueWatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void QueueWatch::Run() {
  using Clock = std::chrono::steady_clock;
  struct Seen {
    uint64_t completions = 0;
    int64_t cpu = -1;         // at the last tick
    int64_t window_cpu = -1;  // when the load window began
    int stuck_ticks = 0;      // in a row
  };
  std::vector<Seen> seen(threads_.size());
  size_t awake = first_awake_;
  auto window_start = Clock::now();
  uint64_t idle = 0, total = 0;
  IdleCores(&idle, &total);
  bool stuck = false;
  size_t rss = 0;  // when all got stuck, or when it last closed one
  std::vector<ServerConnections::ReadMark> marks;  // as of then
  const size_t flood = std::max(max_memory_bytes_ / 2, kMinFloodGrowth);
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, kWatchTick, [this] { return stop_; })) {
    lock.unlock();
    auto now = Clock::now();
    bool window_over = now - window_start >= kLoadWindow;
    // A thread is saturated when it ran this share of the window.
    double saturated_ns =
        kSaturatedShare *
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - window_start).count();
    size_t busy = 0, long_stuck = 0, saturated = 0;
    for (size_t i = 0; i < awake; ++i) {
      Seen& s = seen[i];
      uint64_t completions_now = threads_[i]->completions();
      int64_t cpu_now = threads_[i]->CpuNanos();
      if (completions_now == s.completions && cpu_now >= 0 && s.cpu >= 0 &&
          cpu_now - s.cpu >= kStuckCpuNanos) {
        ++busy;
        if (++s.stuck_ticks >= kStuckTicksToWake) ++long_stuck;
      } else {
        s.stuck_ticks = 0;
      }
      if (window_over && cpu_now >= 0 && s.window_cpu >= 0 &&
          cpu_now - s.window_cpu >= saturated_ns) {
        ++saturated;
      }
      s.completions = completions_now;
      s.cpu = cpu_now;
      if (window_over || s.window_cpu < 0) s.window_cpu = cpu_now;
    }
    bool wake = false;
    if (long_stuck > 0 && awake < threads_.size()) {
      // Stuck in gRPC: a thread on another queue sees the streams (and
      // their cancels) meanwhile, as when all drain from the start.
      gpr_log(GPR_INFO, "libchat: a queue thread is stuck in gRPC (a flood?): waking queue %zu",
              awake);
      wake = true;
    }
    if (window_over) {
      window_start = now;
      double idle_cores = IdleCores(&idle, &total);
      if (!wake && saturated == awake && awake < threads_.size() && idle_cores >= kIdleCores) {
        gpr_log(GPR_INFO, "libchat: every queue thread is busy and cores are idle: waking queue %zu",
                awake);
        wake = true;
      }
    }
    if (wake) {
      wake_(awake++);  // it stays awake
      // The next is judged afresh: one long parse wakes one thread, not
      // one per tick.
      for (Seen& s : seen) s.stuck_ticks = 0;
      stuck = false;
      marks.clear();
    } else if (busy < awake) {
      stuck = false;
      marks.clear();
    } else if (!stuck) {
      stuck = true;
      rss = ResidentBytes();
      marks = conns_->ReadMarks();
    } else {
      size_t rss_now = ResidentBytes();
      // Another connection may flood next: count from here.
      if (rss_now > rss + flood && conns_->CloseMostRead(&marks, rss_now - rss)) rss = rss_now;
    }
    lock.lock();
  }
}

void ServerConnections::LogRapidReset(const std::string& peer, const std::string& why) {
  gpr_log(GPR_ERROR, "libchat: closed the connection from %s: %s (rapid reset)", peer.c_str(),
          why.c_str());
}

}  // namespace chat::internal
