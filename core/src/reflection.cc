#include "reflection.h"

#include <grpcpp/impl/rpc_service_method.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_stream.h>
#include <grpcpp/support/slice.h>

#include "cq.h"

namespace chat::internal {
namespace {

// The same bidirectional method under both packages; their messages are
// the same on the wire. Indexes in the order added.
constexpr const char* kMethods[] = {
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
};

// ServerReflectionRequest.
constexpr uint32_t kHost = 1, kFileByFilename = 3, kFileContainingSymbol = 4,
                   kFileContainingExtension = 5, kAllExtensionNumbersOfType = 6, kListServices = 7;
// ServerReflectionResponse, and the messages in it.
constexpr uint32_t kValidHost = 1, kOriginalRequest = 2, kFileDescriptorResponse = 4,
                   kListServicesResponse = 6, kErrorResponse = 7;
constexpr uint32_t kFileDescriptorProto = 1;  // FileDescriptorResponse, repeated bytes
constexpr uint32_t kService = 1;              // ListServiceResponse, repeated ServiceResponse
constexpr uint32_t kServiceName = 1;          // ServiceResponse
constexpr uint32_t kErrorCode = 1, kErrorMessage = 2;  // ErrorResponse

std::string Error(grpc::StatusCode code, std::string_view message) {
  return FieldWriter().Varint(kErrorCode, code).Bytes(kErrorMessage, message).bytes();
}

}  // namespace

// One reflection stream: each request read is answered before the next is
// read, so a single operation is in flight at any time and every
// completion runs on the service's queue thread: no lock is needed.
class ReflectionCall {
 public:
  ReflectionCall(ReflectionService* owner, int method) : owner_(owner), method_(method) {}

  void Request() {
    owner_->RequestAsyncBidiStreaming(method_, &ctx_, &stream_, owner_->cq_, owner_->cq_,
                                      Arm(&accept_tag_));
  }

 private:
  void OnAccept(bool ok) {
    if (!ok) return Free();  // the server is shutting down: no call came
    owner_->Request(method_);
    stream_.Read(&in_, Arm(&read_tag_));
  }

  void OnRead(bool ok) {
    if (!ok) return Finish(grpc::Status::OK);  // the client is done (or gone)
    grpc::ByteBuffer out;
    if (!owner_->Answer(in_, &out)) {
      return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "not a ServerReflectionRequest"));
    }
    stream_.Write(out, Arm(&write_tag_));
  }

  void OnWrite(bool ok) {
    if (!ok) return Finish(grpc::Status::OK);  // the call broke: Finish only ends it here
    stream_.Read(&in_, Arm(&read_tag_));
  }

  void Finish(const grpc::Status& status) { stream_.Finish(status, Arm(&finish_tag_)); }
  void OnFinish(bool) { Free(); }

  // The last operation is back: the server may shut the queue down now.
  void Free() { FreeCall(this, owner_->gate_); }

  ReflectionService* const owner_;
  const int method_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_{&ctx_};
  grpc::ByteBuffer in_;
  OpTag<ReflectionCall, &ReflectionCall::OnAccept> accept_tag_{this};
  OpTag<ReflectionCall, &ReflectionCall::OnRead> read_tag_{this};
  OpTag<ReflectionCall, &ReflectionCall::OnWrite> write_tag_{this};
  OpTag<ReflectionCall, &ReflectionCall::OnFinish> finish_tag_{this};
};

ReflectionService::ReflectionService(std::vector<std::string> services)
    : services_(std::move(services)) {
  for (const char* name : kMethods) {
    AddMethod(new grpc::internal::RpcServiceMethod(
        name, grpc::internal::RpcMethod::BIDI_STREAMING, nullptr));
  }
  for (int i = 0; i < static_cast<int>(std::size(kMethods)); ++i) MarkMethodRaw(i);
  const Descriptors& d = Descriptors::Get();
  for (const auto& service : services_) {
    if (const auto* file = d.FileContainingSymbol(service)) {
      for (const auto* f : Descriptors::WithImports(file)) exposed_.insert(f);
    }
  }
}

void ReflectionService::Start(RequestGate* gate, grpc::ServerCompletionQueue* cq) {
  gate_ = gate;
  cq_ = cq;
  for (int i = 0; i < static_cast<int>(std::size(kMethods)); ++i) Request(i);
}

void ReflectionService::Request(int method) {
  if (gate_->BeginCall()) (new ReflectionCall(this, method))->Request();
}

// A FileDescriptorResponse: the file, then what it imports, so a client
// can build it at once.
std::string ReflectionService::FileResponse(const google::protobuf::FileDescriptor* file) const {
  FieldWriter files;
  for (const auto* f : Descriptors::WithImports(file)) {
    files.Bytes(kFileDescriptorProto, Descriptors::Get().Serialized(f));
  }
  return files.bytes();
}

bool ReflectionService::Answer(const grpc::ByteBuffer& request, grpc::ByteBuffer* response) const {
  grpc::Slice bytes;
  if (!request.DumpToSingleSlice(&bytes).ok()) return false;
  std::string_view raw(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  std::vector<Field> fields;
  if (!ParseFields(raw, &fields)) return false;
  std::string host;
  const Field* asked = nullptr;  // the oneof: its last field on the wire wins
  for (const auto& f : fields) {
    if (f.number == kHost) host = f.bytes;
    if (f.number >= kFileByFilename && f.number <= kListServices) asked = &f;
  }
  FieldWriter out;
  if (!host.empty()) out.Bytes(kValidHost, host);
  out.Bytes(kOriginalRequest, raw);
  const Descriptors& d = Descriptors::Get();
  const google::protobuf::FileDescriptor* file = nullptr;
  switch (asked ? asked->number : 0) {
    case kListServices: {
      FieldWriter list;
      for (const auto& s : services_) list.Bytes(kService, FieldWriter().Bytes(kServiceName, s).bytes());
      out.Bytes(kListServicesResponse, list.bytes());
      break;
    }
    case kFileByFilename:
    case kFileContainingSymbol:
      file = asked->number == kFileByFilename ? d.FileByName(asked->bytes)
                                              : d.FileContainingSymbol(asked->bytes);
      if (file && exposed_.count(file)) {
        out.Bytes(kFileDescriptorResponse, FileResponse(file));
      } else {
        out.Bytes(kErrorResponse,
                  Error(grpc::StatusCode::NOT_FOUND,
                        (asked->number == kFileByFilename ? "no file " : "no symbol ") +
                            asked->bytes));
      }
      break;
    case kFileContainingExtension:
    case kAllExtensionNumbersOfType:
      out.Bytes(kErrorResponse,
                Error(grpc::StatusCode::NOT_FOUND, "this server's messages have no extensions"));
      break;
    default:
      out.Bytes(kErrorResponse,
                Error(grpc::StatusCode::INVALID_ARGUMENT, "the request asks for nothing"));
  }
  *response = out.Buffer();
  return true;
}

}  // namespace chat::internal
