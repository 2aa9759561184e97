// gRPC server reflection (grpc.reflection.v1alpha.ServerReflection, and
// the same under grpc.reflection.v1) for a chat server, so tools such as
// grpcurl list its services and describe Chat and its messages. Answers
// list_services, file_by_filename and file_containing_symbol from the
// embedded descriptors (discovery.h); this server has no extensions, so
// the extension requests get NOT_FOUND.
#pragma once

#include <grpcpp/completion_queue.h>
#include <grpcpp/impl/service_type.h>

#include <set>
#include <string>
#include <vector>

#include "discovery.h"

namespace chat::internal {

class ReflectionService final : public grpc::Service {
 public:
  // `services`: the full names listed (Chat, this one, health when on);
  // only their files and what those import can be asked for.
  explicit ReflectionService(std::vector<std::string> services);
  // As HealthService::Start.
  void Start(RequestGate* gate, grpc::ServerCompletionQueue* cq);

 private:
  friend class ReflectionCall;
  // The response to one ServerReflectionRequest; false when it is none.
  bool Answer(const grpc::ByteBuffer& request, grpc::ByteBuffer* response) const;
  std::string FileResponse(const google::protobuf::FileDescriptor* file) const;
  void Request(int method);

  const std::vector<std::string> services_;
  std::set<const google::protobuf::FileDescriptor*> exposed_;
  RequestGate* gate_ = nullptr;
  grpc::ServerCompletionQueue* cq_ = nullptr;
};

}  // namespace chat::internal
