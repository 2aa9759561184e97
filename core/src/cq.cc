#include "cq.h"

#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "chat/event_queue.h"

namespace chat::internal {
namespace {
// The most completions one round runs before it pays its debts (see Run).
constexpr int kRoundMax = 64;
// What the round running on this thread put off (DeferToRoundEnd).
thread_local std::vector<RoundEnd*>* t_round_end = nullptr;
}  // namespace

bool DeferToRoundEnd(RoundEnd* what) {
  if (t_round_end == nullptr) return false;
  t_round_end->push_back(what);
  return true;
}

CqThread::CqThread(std::unique_ptr<grpc::CompletionQueue> cq, const char* name, bool standby)
    : cq_(std::move(cq)), awake_(!standby) {
  // Host signals go to the host's threads, not to ours.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { Run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_setname_np(thread_.native_handle(), name);
  has_cpu_clock_ = pthread_getcpuclockid(thread_.native_handle(), &cpu_clock_) == 0;
}

CqThread::~CqThread() { Shutdown(); }

void CqThread::Wake() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    awake_ = true;
  }
  wake_cv_.notify_one();
}

void CqThread::Shutdown() {
  if (shut_) return;
  shut_ = true;
  cq_->Shutdown();
  Wake();  // a standby thread drains what the shutdown left
  thread_.join();
}

void CqThread::Run() {
  void* tag;
  bool ok;
  // Event queues' wake-ups wait until a round's completions released their
  // locks (see below).
  OwedSignals owed;
  std::vector<RoundEnd*> round_end;
  round_end.reserve(kRoundMax);
  {
    std::unique_lock<std::mutex> lock(wake_mu_);
    wake_cv_.wait(lock, [this] { return awake_; });
  }
  while (cq_->Next(&tag, &ok)) {
    // A round: the completions ready now (a socket read often completes
    // many streams' reads at once). Their pushes wake the host once, at
    // its end, which then drains them all in one go, instead of draining
    // the first ones while this thread still pushes (lock hand-offs, more
    // wake-ups). Bounded, so a busy connection cannot starve the host.
    int left = kRoundMax;
    grpc::CompletionQueue::NextStatus next;
    t_round_end = &round_end;
    do {
      ChatTsanAcquire(tag);  // pairs with Arm
      // Per completion, not per round: a long round of our own code is not
      // a thread stuck inside gRPC (QueueWatch).
      completions_.store(completions_.load(std::memory_order_relaxed) + 1,
                         std::memory_order_relaxed);
      static_cast<CqTag*>(tag)->Complete(ok);
      // Only a round that owes a host something looks ahead: the poll is
      // a system call when nothing is ready.
      next = (owed.Owes() || !round_end.empty()) && --left > 0
                 ? cq_->AsyncNext(&tag, &ok, gpr_inf_past(GPR_CLOCK_MONOTONIC))
                 : grpc::CompletionQueue::TIMEOUT;
    } while (next == grpc::CompletionQueue::GOT_EVENT);
    t_round_end = nullptr;
    for (RoundEnd* what : round_end) what->AtRoundEnd();
    round_end.clear();
    owed.Pay();
    if (next == grpc::CompletionQueue::SHUTDOWN) break;
  }
}

int64_t CqThread::CpuNanos() const {
  timespec ts;
  if (!has_cpu_clock_ || clock_gettime(cpu_clock_, &ts) != 0) return -1;
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int DefaultServerQueueCount() {
  unsigned n = std::thread::hardware_concurrency();
  return n > 2 ? static_cast<int>(n) : 2;
}

int DefaultClientQueueCount() {
  unsigned n = std::thread::hardware_concurrency() / 2;
  return n > 0 ? static_cast<int>(n) : 1;
}

ClientQueues& ClientQueues::Get() {
  // Leaked on purpose: its threads run until the process exits.
  static ClientQueues* queues = new ClientQueues;
  return *queues;
}

ClientQueues::ClientQueues() {
  KeepGrpcInitialized();
  int n = DefaultClientQueueCount();
  for (int i = 0; i < n; ++i) {
    std::string name = "chat-cli-cq" + std::to_string(i);
    threads_.push_back(
        std::make_unique<CqThread>(std::make_unique<grpc::CompletionQueue>(), name.c_str()));
  }
}

grpc::CompletionQueue* ClientQueues::Pick() {
  return threads_[next_.fetch_add(1, std::memory_order_relaxed) % threads_.size()]->cq();
}

void KeepGrpcInitialized() {
  static std::once_flag once;
  std::call_once(once, [] { grpc_init(); });  // never paired with grpc_shutdown
}

}  // namespace chat::internal
