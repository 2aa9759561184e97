#include "tls.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <strings.h>

namespace chat::internal {

namespace {
constexpr std::string_view kPemMarker = "-----BEGIN";
constexpr size_t kMaxTokenBytes = 4096;
}  // namespace

Status LoadPem(std::string_view value, std::string_view what, std::string* out) {
  if (value.empty() || value.find(kPemMarker) != std::string_view::npos) {
    out->assign(value.data(), value.size());
    return Status::Ok();
  }
  std::string path(value);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(Code::kBadArgument, "cannot read the " + std::string(what) + " file '" + path +
                                          "': " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().find(kPemMarker) == std::string::npos) {
    return Status(Code::kBadArgument,
                  "the " + std::string(what) + " file '" + path + "' holds no PEM block");
  }
  *out = text.str();
  return Status::Ok();
}

Status CheckToken(std::string_view token) {
  if (token.size() > kMaxTokenBytes) {
    return Status(Code::kBadArgument, "the bearer token is longer than 4096 bytes");
  }
  for (char c : token) {
    if (c <= 0x20 || c >= 0x7f) {
      return Status(Code::kBadArgument,
                    "the bearer token must be printable ASCII without spaces");
    }
  }
  return Status::Ok();
}

bool BearerToken(std::string_view authorization, std::string* token) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      strncasecmp(authorization.data(), kScheme.data(), kScheme.size()) != 0) {
    return false;
  }
  authorization.remove_prefix(kScheme.size());
  while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
  if (authorization.empty()) return false;
  token->assign(authorization.data(), authorization.size());
  return true;
}

}  // namespace chat::internal
