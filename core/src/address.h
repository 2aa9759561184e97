// Server listen addresses and client targets, checked before gRPC sees them.
//
// gRPC 1.51 is lenient in ways that hide mistakes: it hands the port text to
// getaddrinfo, which truncates numbers to 16 bits ("127.0.0.1:70000" listens
// on 4464), takes service names ("host:http" is port 80), and fills in 443
// when the port is missing. These functions accept only what we document and
// say precisely what is wrong with anything else (Code::kBadArgument).
#pragma once

#include <string>
#include <string_view>

#include "chat/status.h"

namespace chat::internal {

// What a valid listen address names.
struct ListenAddress {
  enum class Kind { kTcp, kUnix, kUnixAbstract };
  Kind kind = Kind::kTcp;
  std::string host;  // kTcp: the host as given (an IPv6 literal without brackets)
  int port = -1;     // kTcp: 0..65535 (0 = pick a free port); -1 otherwise
  std::string path;  // kUnix / kUnixAbstract: what follows the scheme
};

// A server listen address: "host:port" or "[ipv6]:port" (host a name, an
// IPv4 address or a bracketed IPv6 address; port decimal digits, 0..65535),
// or "unix:/path" / "unix:relative/path" / "unix-abstract:name".
// `out` may be null.
Status ParseListenAddress(std::string_view address, ListenAddress* out);

// A client target as gRPC should see it:
//   "host:port", "[ipv6]:port"           -> unchanged (port 1..65535)
//   "http://host:port", trailing '/'s    -> "host:port" ("dns:///host:port"
//                                           when host is a gRPC scheme name
//                                           such as "ipv4", which gRPC would
//                                           otherwise read as that scheme)
//   "https://host:port"                   -> as http://, and *tls = true
//   "dns:[//authority/]host:port", "ipv4:a.b.c.d:port[,...]",
//   "ipv6:[addr]:port[,...]"              -> unchanged, every port checked
//   "unix:path", "unix-abstract:name"    -> unchanged
// Anything else, and an empty target, is kBadArgument. Normalizing a
// normalized target gives it back unchanged. `tls` (optional) tells whether
// the target asked for TLS (https://); `http` whether it was http://.
Status NormalizeTarget(std::string_view target, std::string* out, bool* tls = nullptr,
                       bool* http = nullptr);

// Whether every address a normalized target names is on this machine:
// localhost, 127.0.0.0/8, ::1, or a Unix socket. A bearer token may cross
// plaintext only to such a target.
bool IsLoopbackTarget(std::string_view normalized);

}  // namespace chat::internal
