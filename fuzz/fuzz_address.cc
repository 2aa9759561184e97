// fuzz_address: the listen-address validator and the client-target
// normalizer (core/src/address.h).
//
// Properties:
//  - no crash; a rejection is always kBadArgument with a message;
//  - an accepted TCP listen address is exactly host + ':' + digits (host
//    bracketed when it is IPv6), and its port is the value of those digits,
//    in 0..65535; a unix address keeps its path;
//  - an accepted listen address with a port >= 1 is also an accepted target
//    (behind "dns:///" when its host is named like a gRPC scheme: "ipv4:1");
//  - normalizing is idempotent, changes only the http(s):// forms (https://
//    and only it meaning TLS), and never
//    leaves an "http://" or "https://" prefix.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "address.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_address: property failed: %s\n", what);
    std::abort();
  }
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// The value of a string of decimal digits, saturated at 1e6.
uint32_t DigitsValue(std::string_view digits) {
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return UINT32_MAX;
    v = v * 10 + static_cast<uint64_t>(c - '0');
    if (v > 1000000) v = 1000000;
  }
  return static_cast<uint32_t>(v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using chat::internal::ListenAddress;
  std::string input(reinterpret_cast<const char*>(data), size);

  ListenAddress a;
  chat::Status listen = chat::internal::ParseListenAddress(input, &a);
  if (!listen.ok()) {
    Check(listen.code() == chat::Code::kBadArgument, "listen: rejected with kBadArgument");
    Check(!listen.message().empty(), "listen: rejection has a message");
  } else if (a.kind == ListenAddress::Kind::kTcp) {
    Check(a.port >= 0 && a.port <= 65535, "listen: port in 0..65535");
    size_t colon = input.rfind(':');
    Check(colon != std::string::npos, "listen: accepted TCP address has a ':'");
    std::string_view digits = std::string_view(input).substr(colon + 1);
    Check(!digits.empty() && DigitsValue(digits) == static_cast<uint32_t>(a.port),
          "listen: port equals the digits given");
    bool v6 = a.host.find(':') != std::string::npos;
    std::string rebuilt = (v6 ? "[" + a.host + "]" : a.host) + ":" + std::string(digits);
    Check(rebuilt == input, "listen: host and port are the whole address");
    Check(!a.host.empty(), "listen: host is not empty");
    if (a.port >= 1) {
      // A host named like a gRPC scheme ("ipv4:1") reads as that scheme in
      // a target; "dns:///" + address always means the host.
      std::string t;
      Check(chat::internal::NormalizeTarget("dns:///" + input, &t).ok(),
            "dns:/// + a listen address with a port is a target");
      bool scheme_like = false;
      for (const char* scheme : {"dns", "ipv4", "ipv6", "unix", "unix-abstract", "xds",
                                 "google-c2p", "google-c2p-experimental"}) {
        scheme_like = scheme_like || a.host == scheme;
      }
      if (!scheme_like) {
        Check(chat::internal::NormalizeTarget(input, &t).ok() && t == input,
              "a listen address with a port is a target");
      }
    }
  } else {
    Check(a.port == -1, "listen: unix address has no port");
    Check(StartsWith(input, "unix:") || StartsWith(input, "unix-abstract:"),
          "listen: unix address has its scheme");
  }

  std::string once;
  bool tls = false;
  chat::Status target = chat::internal::NormalizeTarget(input, &once, &tls);
  if (!target.ok()) {
    Check(target.code() == chat::Code::kBadArgument, "target: rejected with kBadArgument");
    Check(!target.message().empty(), "target: rejection has a message");
    return 0;
  }
  Check(!once.empty(), "target: normalized is not empty");
  Check(!StartsWith(once, "http://") && !StartsWith(once, "https://"),
        "target: no http(s):// left");
  bool url = StartsWith(input, "http://") || StartsWith(input, "https://");
  if (!url) Check(once == input, "target: only http(s):// is rewritten");
  Check(tls == StartsWith(input, "https://"), "target: https:// and only it means TLS");
  std::string twice;
  Check(chat::internal::NormalizeTarget(once, &twice).ok(), "target: normalized is accepted");
  Check(twice == once, "target: normalizing is idempotent");
  return 0;
}
