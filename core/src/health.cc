#include "health.h"

#include <grpcpp/impl/rpc_service_method.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_stream.h>
#include <grpcpp/support/async_unary_call.h>

#include "cq.h"

namespace chat::internal {
namespace {

constexpr char kCheck[] = "/grpc.health.v1.Health/Check";
constexpr char kWatch[] = "/grpc.health.v1.Health/Watch";
enum Method { kCheckMethod, kWatchMethod };  // their indexes, in the order added

constexpr uint32_t kRequestService = 1;   // HealthCheckRequest.service
constexpr uint32_t kResponseStatus = 1;   // HealthCheckResponse.status

// The service name asked about; false for bytes that are no request.
bool ReadRequest(const grpc::ByteBuffer& request, std::string* service) {
  std::vector<Field> fields;
  if (!ParseFields(request, &fields)) return false;
  service->clear();
  for (auto& f : fields) {
    if (f.number == kRequestService) *service = std::move(f.bytes);
  }
  return true;
}

}  // namespace

// One Check: answered at once, then freed.
class CheckCall {
 public:
  explicit CheckCall(HealthService* owner) : owner_(owner) {}

  void Request() {
    owner_->RequestAsyncUnary(kCheckMethod, &ctx_, &request_, &responder_, owner_->cq_,
                              owner_->cq_, Arm(&accept_tag_));
  }

 private:
  void OnAccept(bool ok) {
    if (!ok) return Free();  // the server is shutting down: no call came
    owner_->RequestCheck();
    std::string service;
    if (!ReadRequest(request_, &service)) {
      responder_.FinishWithError(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "not a HealthCheckRequest"),
          Arm(&finish_tag_));
      return;
    }
    auto status = owner_->StatusOf(service);
    if (status == HealthService::kServiceUnknown) {
      responder_.FinishWithError(
          grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service \"" + service + "\""),
          Arm(&finish_tag_));
      return;
    }
    responder_.Finish(FieldWriter().Varint(kResponseStatus, status).Buffer(), grpc::Status::OK,
                      Arm(&finish_tag_));
  }
  void OnFinish(bool) { Free(); }

  // The last operation is back: the server may shut the queue down now.
  void Free() { FreeCall(this, owner_->gate_); }

  HealthService* const owner_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder_{&ctx_};
  OpTag<CheckCall, &CheckCall::OnAccept> accept_tag_{this};
  OpTag<CheckCall, &CheckCall::OnFinish> finish_tag_{this};
};

// One Watch: sends the status, then each change, until the client leaves
// or the server shuts down (which cancels it: a watch never ends by itself).
class WatchCall {
 public:
  explicit WatchCall(HealthService* owner) : owner_(owner) {}

  void Request() {
    ctx_.AsyncNotifyWhenDone(Arm(&done_tag_));  // before the request, as gRPC requires
    owner_->RequestAsyncServerStreaming(kWatchMethod, &ctx_, &request_, &writer_, owner_->cq_,
                                        owner_->cq_, Arm(&accept_tag_));
  }

  // Sends the current status if the client has not seen it yet and no
  // write is in flight (its completion looks again). Starting a write runs
  // none of our code, so this may run under the service's lock.
  void Update() {
    std::lock_guard<std::mutex> lock(mu_);
    UpdateLocked();
  }

 private:
  void UpdateLocked() {
    if (done_ || writing_) return;
    auto status = owner_->StatusOf(service_);
    if (status == sent_) return;
    sent_ = status;
    writing_ = true;
    ++ops_;
    writer_.Write(FieldWriter().Varint(kResponseStatus, status).Buffer(), Arm(&write_tag_));
  }

  void OnAccept(bool ok) {
    if (!ok) return Free();  // no call came, and no done tag will
    owner_->RequestWatch();
    // Nothing else touches the call before it is in the watcher list (its
    // done tag comes on this same thread, later).
    ops_ = 1;  // the done tag
    if (!ReadRequest(request_, &service_)) {
      std::lock_guard<std::mutex> lock(mu_);
      ++ops_;
      writer_.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "not a HealthCheckRequest"),
                     Arm(&finish_tag_));
      return;
    }
    {
      std::lock_guard<std::mutex> service_lock(owner_->mu_);
      owner_->watchers_.insert(this);
    }
    Update();
  }

  void OnWrite(bool ok) {
    bool over;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --ops_;
      writing_ = false;
      if (ok) UpdateLocked();  // a change that came while writing
      over = done_ && ops_ == 0;
    }
    if (over) Over();
  }

  void OnFinish(bool) { Completed(); }
  void OnDone(bool) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    Completed();
  }

  void Completed() {
    bool over;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --ops_;
      over = done_ && ops_ == 0;
    }
    if (over) Over();
  }

  void Over() {
    owner_->Forget(this);  // after it, no Update can reach this call
    Free();
  }

  // The last operation is back: the server may shut the queue down now.
  void Free() { FreeCall(this, owner_->gate_); }

  HealthService* const owner_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ServerAsyncWriter<grpc::ByteBuffer> writer_{&ctx_};
  OpTag<WatchCall, &WatchCall::OnAccept> accept_tag_{this};
  OpTag<WatchCall, &WatchCall::OnWrite> write_tag_{this};
  OpTag<WatchCall, &WatchCall::OnFinish> finish_tag_{this};
  OpTag<WatchCall, &WatchCall::OnDone> done_tag_{this};

  std::mutex mu_;
  std::string service_;
  int sent_ = 0;        // the status last written (0: none yet)
  int ops_ = 0;         // operations in flight, the done tag included
  bool writing_ = false;
  bool done_ = false;   // gRPC reported the call over
};

HealthService::HealthService() {
  // Raw async methods: handed to us as bytes on our queue (discovery.h).
  AddMethod(new grpc::internal::RpcServiceMethod(kCheck, grpc::internal::RpcMethod::NORMAL_RPC,
                                                 nullptr));
  AddMethod(new grpc::internal::RpcServiceMethod(
      kWatch, grpc::internal::RpcMethod::SERVER_STREAMING, nullptr));
  MarkMethodRaw(kCheckMethod);
  MarkMethodRaw(kWatchMethod);
}

void HealthService::Start(RequestGate* gate, grpc::ServerCompletionQueue* cq) {
  gate_ = gate;
  cq_ = cq;
  RequestCheck();
  RequestWatch();
}

void HealthService::SetNotServing() {
  serving_ = false;  // a watcher that joins from now on reads it
  std::lock_guard<std::mutex> lock(mu_);
  for (WatchCall* watch : watchers_) watch->Update();
}

HealthService::ServingStatus HealthService::StatusOf(const std::string& service) const {
  if (!service.empty() && service != "Chat") return kServiceUnknown;
  return serving_ ? kServing : kNotServing;
}

void HealthService::RequestCheck() {
  if (gate_->BeginCall()) (new CheckCall(this))->Request();
}

void HealthService::RequestWatch() {
  if (gate_->BeginCall()) (new WatchCall(this))->Request();
}

void HealthService::Forget(WatchCall* watch) {
  std::lock_guard<std::mutex> lock(mu_);
  watchers_.erase(watch);
}

}  // namespace chat::internal
