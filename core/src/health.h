// grpc.health.v1.Health for a chat server: Check and Watch for the server
// as a whole ("") and for "Chat"; every other name is unknown (Check:
// NOT_FOUND; Watch: SERVICE_UNKNOWN, and the stream stays open, as the
// health protocol asks). SERVING until the server starts to stop, then
// NOT_SERVING, which every open Watch stream is sent.
#pragma once

#include <grpcpp/completion_queue.h>
#include <grpcpp/impl/service_type.h>

#include <atomic>
#include <mutex>
#include <unordered_set>

#include "discovery.h"

namespace chat::internal {

class WatchCall;

class HealthService final : public grpc::Service {
 public:
  HealthService();
  // After the server started: serves on `cq`, asking `gate` before each
  // request. Both outlive every call (the server shuts the queue down
  // after its shutdown, and destroys this service after that).
  void Start(RequestGate* gate, grpc::ServerCompletionQueue* cq);
  // The server starts to stop: NOT_SERVING from now on. Any thread.
  void SetNotServing();

 private:
  friend class CheckCall;
  friend class WatchCall;

  // HealthCheckResponse.ServingStatus.
  enum ServingStatus : int { kServing = 1, kNotServing = 2, kServiceUnknown = 3 };
  ServingStatus StatusOf(const std::string& service) const;
  void RequestCheck();
  void RequestWatch();
  void Forget(WatchCall* watch);

  RequestGate* gate_ = nullptr;
  grpc::ServerCompletionQueue* cq_ = nullptr;
  std::atomic<bool> serving_{true};
  // Lock order: mu_, then a watcher's own lock (SetNotServing).
  std::mutex mu_;
  std::unordered_set<WatchCall*> watchers_;  // open Watch streams (they own themselves)
};

}  // namespace chat::internal
