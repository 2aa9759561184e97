#include "discovery.h"

#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <set>
#include <stdexcept>

namespace chat::internal {

// Generated at build time (core/CMakeLists.txt, cmake/embed_bytes.cmake):
// a FileDescriptorSet, imports first.
extern const unsigned char kDiscoveryDescriptors[];
extern const std::size_t kDiscoveryDescriptors_size;

namespace {

using google::protobuf::FileDescriptor;
using google::protobuf::FileDescriptorProto;
using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;
using google::protobuf::io::StringOutputStream;

// Debian ships reflection.proto under Go's directory layout; clients know
// it by its name in grpc-proto.
constexpr char kReflectionDebianName[] = "grpc_reflection_v1alpha/reflection.proto";
constexpr char kReflectionV1alpha[] = "grpc/reflection/v1alpha/reflection.proto";

// grpc.reflection.v1 is v1alpha under a new package name, message for
// message (Debian ships only v1alpha's file): the same file, renamed, so
// clients that ask for v1 first (newer grpcurl) can describe it too.
FileDescriptorProto ReflectionV1(FileDescriptorProto file) {
  const std::string from = "." + file.package() + ".";
  const std::string to = ".grpc.reflection.v1.";
  auto rename = [&](std::string* type) {
    if (type->compare(0, from.size(), from) == 0) type->replace(0, from.size(), to);
  };
  file.set_name("grpc/reflection/v1/reflection.proto");
  file.set_package("grpc.reflection.v1");
  file.clear_options();  // Go's package path names v1alpha
  for (auto& message : *file.mutable_message_type()) {
    for (auto& field : *message.mutable_field()) {
      if (field.has_type_name()) rename(field.mutable_type_name());
    }
  }
  for (auto& service : *file.mutable_service()) {
    for (auto& method : *service.mutable_method()) {
      rename(method.mutable_input_type());
      rename(method.mutable_output_type());
    }
  }
  return file;
}

bool BufferBytes(const grpc::ByteBuffer& buffer, grpc::Slice* out) {
  return buffer.TrySingleSlice(out).ok() || buffer.DumpToSingleSlice(out).ok();
}

}  // namespace

const Descriptors& Descriptors::Get() {
  static const Descriptors* descriptors = new Descriptors();  // never destroyed: no exit-order trouble
  return *descriptors;
}

Descriptors::Descriptors() {
  google::protobuf::FileDescriptorSet set;
  if (!set.ParseFromArray(kDiscoveryDescriptors, static_cast<int>(kDiscoveryDescriptors_size))) {
    throw std::logic_error("embedded descriptors do not parse");
  }
  std::vector<FileDescriptorProto> files;
  for (const auto& file : set.file()) {
    files.push_back(file);
    if (file.name() == kReflectionDebianName) {
      files.back().set_name(kReflectionV1alpha);
      files.push_back(ReflectionV1(files.back()));
    }
  }
  for (const auto& file : files) {  // imports come first in the set
    if (pool_.BuildFile(file) == nullptr) {
      throw std::logic_error("embedded descriptor " + file.name() + " does not build");
    }
    file.SerializeToString(&serialized_[file.name()]);
  }
}

const FileDescriptor* Descriptors::FileContainingSymbol(const std::string& symbol) const {
  return pool_.FindFileContainingSymbol(symbol);
}

const FileDescriptor* Descriptors::FileByName(const std::string& name) const {
  return pool_.FindFileByName(name);
}

std::vector<const FileDescriptor*> Descriptors::WithImports(const FileDescriptor* file) {
  std::vector<const FileDescriptor*> out;
  std::set<const FileDescriptor*> seen;
  std::vector<const FileDescriptor*> todo = {file};
  while (!todo.empty()) {
    const FileDescriptor* f = todo.back();
    todo.pop_back();
    if (!seen.insert(f).second) continue;
    out.push_back(f);
    for (int i = 0; i < f->dependency_count(); ++i) todo.push_back(f->dependency(i));
  }
  return out;
}

const std::string& Descriptors::Serialized(const FileDescriptor* file) const {
  return serialized_.at(file->name());
}

bool ParseFields(std::string_view bytes, std::vector<Field>* fields) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  fields->clear();
  while (uint32_t tag = in.ReadTag()) {
    Field f;
    f.number = WireFormatLite::GetTagFieldNumber(tag);
    switch (WireFormatLite::GetTagWireType(tag)) {
      case WireFormatLite::WIRETYPE_VARINT:
        if (!in.ReadVarint64(&f.varint)) return false;
        break;
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED:
        if (!WireFormatLite::ReadBytes(&in, &f.bytes)) return false;
        break;
      default:
        if (!WireFormatLite::SkipField(&in, tag)) return false;
        continue;
    }
    fields->push_back(std::move(f));
  }
  return in.ConsumedEntireMessage();
}

bool ParseFields(const grpc::ByteBuffer& buffer, std::vector<Field>* fields) {
  grpc::Slice bytes;
  if (!BufferBytes(buffer, &bytes)) return false;
  return ParseFields(std::string_view(reinterpret_cast<const char*>(bytes.begin()), bytes.size()),
                     fields);
}

FieldWriter& FieldWriter::Bytes(uint32_t number, std::string_view value) {
  StringOutputStream stream(&out_);
  CodedOutputStream out(&stream);
  WireFormatLite::WriteTag(number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, &out);
  out.WriteVarint32(static_cast<uint32_t>(value.size()));
  out.WriteRaw(value.data(), static_cast<int>(value.size()));
  return *this;
}

FieldWriter& FieldWriter::Varint(uint32_t number, uint64_t value) {
  StringOutputStream stream(&out_);
  CodedOutputStream out(&stream);
  WireFormatLite::WriteTag(number, WireFormatLite::WIRETYPE_VARINT, &out);
  out.WriteVarint64(value);
  return *this;
}

grpc::ByteBuffer FieldWriter::Buffer() const {
  grpc::Slice slice(out_);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace chat::internal
