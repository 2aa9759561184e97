#include "address.h"

#include <arpa/inet.h>

#include <cstdint>
#include <initializer_list>

namespace chat::internal {
namespace {

// Longest path a sockaddr_un holds with its terminating NUL (108 on Linux).
constexpr size_t kMaxUnixPath = 107;
constexpr size_t kMaxHostName = 253;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// The input as it may appear in a message: bounded, printable.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 80;
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    char c = s[i];
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (s.size() > kMax) out += "...";
  return out + "'";
}

Status Bad(std::string message) { return Status(Code::kBadArgument, std::move(message)); }

// Port text: decimal digits only, value in [min_port, 65535].
Status ParsePort(std::string_view text, int min_port, int* port) {
  if (text.empty()) return Bad("address has no port");
  for (char c : text) {
    if (!IsDigit(c)) return Bad("port " + Quote(text) + " is not a decimal number");
  }
  uint32_t value = 0;
  for (char c : text) {
    value = value * 10 + static_cast<uint32_t>(c - '0');
    if (value > 65535) break;  // stops before the arithmetic can wrap
  }
  if (value > 65535) {
    std::string shown = text.size() > 20 ? std::string(text.substr(0, 20)) + "..." : std::string(text);
    return Bad("port " + shown + " is out of range " + std::to_string(min_port) + "..65535");
  }
  if (static_cast<int>(value) < min_port) {
    return Bad("port " + std::to_string(value) + " cannot be connected to (range " +
               std::to_string(min_port) + "..65535)");
  }
  *port = static_cast<int>(value);
  return Status::Ok();
}

bool IsIpv4(std::string_view host) {
  if (host.size() > 15) return false;
  std::string s(host);
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

// An IPv6 literal (no brackets), with an optional "%zone".
Status CheckIpv6(std::string_view host) {
  std::string_view addr = host;
  size_t pct = host.find('%');
  if (pct != std::string_view::npos) {
    addr = host.substr(0, pct);
    std::string_view zone = host.substr(pct + 1);
    if (zone.empty()) return Bad("IPv6 zone after '%' is empty");
    for (char c : zone) {
      if (!IsAlpha(c) && !IsDigit(c) && c != '.' && c != '-' && c != '_') {
        return Bad("IPv6 zone " + Quote(zone) + " has a character not allowed in an interface name");
      }
    }
  }
  in6_addr a;
  if (addr.size() > 45 || inet_pton(AF_INET6, std::string(addr).c_str(), &a) != 1) {
    return Bad(Quote(addr) + " is not a valid IPv6 address");
  }
  return Status::Ok();
}

// A host name or an IPv4 address (unbracketed).
Status CheckHostName(std::string_view host) {
  if (host.empty()) return Bad("address has no host");
  if (host.size() > kMaxHostName) return Bad("host name is longer than 253 characters");
  bool numeric = true, colon = false;
  for (char c : host) {
    if (c == ':') {
      colon = true;
    } else if (!IsAlpha(c) && !IsDigit(c) && c != '.' && c != '-' && c != '_') {
      return Bad("host " + Quote(host) + " has a character not allowed in a host name");
    }
    if (!IsDigit(c) && c != '.') numeric = false;
  }
  if (colon) return Bad("an IPv6 address needs brackets, as in [::1]:port");
  // "1.2.3" would be read as 1.2.0.3 by inet_aton; an all-numeric host must
  // be a dotted quad.
  if (numeric && !IsIpv4(host)) return Bad(Quote(host) + " is not a valid IPv4 address");
  return Status::Ok();
}

enum class HostKind { kAny, kIpv4Only, kIpv6Only };

// "host:port" or "[ipv6]:port".
Status SplitHostPort(std::string_view s, int min_port, HostKind kind, std::string* host,
                     int* port) {
  if (s.empty()) return Bad("address is empty");
  std::string_view h, p;
  bool bracketed = false;
  if (s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return Bad("'[' without a matching ']'");
    h = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (rest.empty()) return Bad("address has no port");
    if (rest[0] != ':') return Bad("expected ':port' after ']', got " + Quote(rest));
    p = rest.substr(1);
    bracketed = true;
    if (h.empty()) return Bad("address has no host");
    Status st = CheckIpv6(h);
    if (!st.ok()) return st;
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return Bad("address has no port (expected host:port)");
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
    Status st = CheckHostName(h);
    if (!st.ok()) return st;
  }
  if (kind == HostKind::kIpv4Only && (bracketed || !IsIpv4(h))) {
    return Bad(Quote(h) + " is not an IPv4 address");
  }
  if (kind == HostKind::kIpv6Only && !bracketed) {
    return Bad("expected a bracketed IPv6 address, as in [::1]:port");
  }
  Status st = ParsePort(p, min_port, port);
  if (!st.ok()) return st;
  host->assign(h.data(), h.size());
  return Status::Ok();
}

Status CheckUnixPath(std::string_view path, bool abstract) {
  if (!abstract && path.empty()) return Bad("unix: address has no path");
  if (path.find('\0') != std::string_view::npos) return Bad("unix socket path contains NUL");
  if (path.size() > kMaxUnixPath) return Bad("unix socket path is longer than 107 bytes");
  return Status::Ok();
}

// Wraps a parse error with the input it is about.
Status About(std::string_view what, std::string_view input, const Status& st) {
  return Status(st.code(), std::string(what) + " " + Quote(input) + ": " + st.message());
}

// Each of a comma-separated list of ipv4:/ipv6: addresses.
Status CheckAddressList(std::string_view list, HostKind kind) {
  if (list.empty()) return Bad("the address list is empty");
  size_t start = 0;
  for (;;) {
    size_t comma = list.find(',', start);
    std::string_view one = list.substr(start, comma == std::string_view::npos ? std::string_view::npos
                                                                              : comma - start);
    std::string host;
    int port = 0;
    Status st = SplitHostPort(one, 1, kind, &host, &port);
    if (!st.ok()) return st;
    if (comma == std::string_view::npos) return Status::Ok();
    start = comma + 1;
  }
}

// "scheme://" at the start: a URL form we do not know.
bool HasUrlScheme(std::string_view s, std::string_view* scheme) {
  size_t i = 0;
  if (s.empty() || !IsAlpha(s[0])) return false;
  while (i < s.size() && (IsAlpha(s[i]) || IsDigit(s[i]) || s[i] == '+' || s[i] == '.' || s[i] == '-')) ++i;
  if (!StartsWith(s.substr(i), "://")) return false;
  *scheme = s.substr(0, i);
  return true;
}

// Schemes gRPC 1.51 resolves: "name:rest" with one of these as name is a
// URI to gRPC, whatever else it could mean.
bool IsGrpcScheme(std::string_view s) {
  for (std::string_view scheme : {"dns", "ipv4", "ipv6", "unix", "unix-abstract", "xds",
                                  "google-c2p", "google-c2p-experimental"}) {
    if (s == scheme) return true;
  }
  return false;
}

Status NormalizeImpl(std::string_view t, std::string* out, bool* tls, bool* http) {
  if (t.empty()) return Bad("empty target");
  std::string host;
  int port = 0;
  *tls = StartsWith(t, "https://");
  *http = StartsWith(t, "http://");
  if (*tls || *http) {
    std::string_view rest = t.substr(*tls ? 8 : 7);
    while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    if (rest.empty()) return Bad(std::string(*tls ? "https" : "http") + ":// target has no host:port");
    Status st = SplitHostPort(rest, 1, HostKind::kAny, &host, &port);
    if (!st.ok()) return st;
    // gRPC would read "ipv4:9090" as the ipv4 scheme, not as host "ipv4";
    // spell such hosts out as DNS names.
    out->assign(IsGrpcScheme(host) ? "dns:///" : "");
    out->append(rest.data(), rest.size());
    return Status::Ok();
  }
  Status st;
  if (StartsWith(t, "dns:")) {
    std::string_view rest = t.substr(4);
    if (StartsWith(rest, "//")) {
      size_t slash = rest.find('/', 2);
      if (slash == std::string_view::npos) return Bad("expected dns:///host:port or dns://server/host:port");
      rest = rest.substr(slash + 1);
    }
    st = SplitHostPort(rest, 1, HostKind::kAny, &host, &port);
  } else if (StartsWith(t, "ipv4:")) {
    st = CheckAddressList(t.substr(5), HostKind::kIpv4Only);
  } else if (StartsWith(t, "ipv6:")) {
    st = CheckAddressList(t.substr(5), HostKind::kIpv6Only);
  } else if (StartsWith(t, "unix:")) {
    st = CheckUnixPath(t.substr(5), false);
  } else if (StartsWith(t, "unix-abstract:")) {
    st = CheckUnixPath(t.substr(14), true);
  } else {
    std::string_view scheme;
    if (HasUrlScheme(t, &scheme)) return Bad("unsupported target scheme " + Quote(scheme));
    size_t colon = t.find(':');
    if (colon != std::string_view::npos && IsGrpcScheme(t.substr(0, colon))) {
      return Bad("unsupported target scheme " + Quote(t.substr(0, colon)));
    }
    st = SplitHostPort(t, 1, HostKind::kAny, &host, &port);
  }
  if (!st.ok()) return st;
  out->assign(t.data(), t.size());
  return Status::Ok();
}

}  // namespace

Status ParseListenAddress(std::string_view address, ListenAddress* out) {
  ListenAddress parsed;
  Status st;
  if (StartsWith(address, "unix:")) {
    parsed.kind = ListenAddress::Kind::kUnix;
    parsed.path = std::string(address.substr(5));
    st = CheckUnixPath(parsed.path, false);
  } else if (StartsWith(address, "unix-abstract:")) {
    parsed.kind = ListenAddress::Kind::kUnixAbstract;
    parsed.path = std::string(address.substr(14));
    st = CheckUnixPath(parsed.path, true);
  } else {
    st = SplitHostPort(address, 0, HostKind::kAny, &parsed.host, &parsed.port);
  }
  if (!st.ok()) return About("bad listen address", address, st);
  if (out) *out = std::move(parsed);
  return Status::Ok();
}

Status NormalizeTarget(std::string_view target, std::string* out, bool* tls, bool* http) {
  std::string normalized;
  bool is_tls = false, is_http = false;
  Status st = NormalizeImpl(target, &normalized, &is_tls, &is_http);
  if (!st.ok()) return About("bad target", target, st);
  *out = std::move(normalized);
  if (tls) *tls = is_tls;
  if (http) *http = is_http;
  return Status::Ok();
}

bool IsLoopbackTarget(std::string_view t) {
  if (StartsWith(t, "unix:") || StartsWith(t, "unix-abstract:")) return true;
  auto loopback = [](std::string_view host) {
    if (host == "localhost" || host == "::1") return true;
    in_addr a;
    if (!IsIpv4(host) || inet_pton(AF_INET, std::string(host).c_str(), &a) != 1) return false;
    return (ntohl(a.s_addr) >> 24) == 127;
  };
  auto all = [&](std::string_view list, HostKind kind) {
    for (size_t start = 0;;) {
      size_t comma = list.find(',', start);
      std::string host;
      int port = 0;
      if (!SplitHostPort(list.substr(start, comma == std::string_view::npos ? comma : comma - start),
                         1, kind, &host, &port)
               .ok() ||
          !loopback(host)) {
        return false;
      }
      if (comma == std::string_view::npos) return true;
      start = comma + 1;
    }
  };
  if (StartsWith(t, "ipv4:")) return all(t.substr(5), HostKind::kIpv4Only);
  if (StartsWith(t, "ipv6:")) return all(t.substr(5), HostKind::kIpv6Only);
  if (StartsWith(t, "dns:")) {
    t = t.substr(4);
    if (StartsWith(t, "//")) t = t.substr(t.find('/', 2) + 1);  // normalized: the '/' is there
  }
  return all(t, HostKind::kAny);
}

}  // namespace chat::internal
