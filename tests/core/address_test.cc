// Listen-address and target checks (core/src/address.h): pure parsing, no
// sockets.
#include <gtest/gtest.h>

#include <string>

#include "address.h"

namespace chat::internal {
namespace {

// The message of a rejected listen address; "" when it was accepted.
std::string ListenError(const std::string& address) {
  Status st = ParseListenAddress(address, nullptr);
  if (st.ok()) return "";
  EXPECT_EQ(st.code(), Code::kBadArgument) << address;
  return st.message();
}

std::string TargetError(const std::string& target) {
  std::string out;
  Status st = NormalizeTarget(target, &out);
  if (st.ok()) return "";
  EXPECT_EQ(st.code(), Code::kBadArgument) << target;
  return st.message();
}

std::string Normalized(const std::string& target) {
  std::string out;
  Status st = NormalizeTarget(target, &out);
  EXPECT_TRUE(st.ok()) << target << ": " << st.message();
  return out;
}

TEST(ListenAddress, AcceptsHostPortForms) {
  struct Case {
    const char* address;
    const char* host;
    int port;
  } cases[] = {
      {"127.0.0.1:0", "127.0.0.1", 0},     {"0.0.0.0:9090", "0.0.0.0", 9090},
      {"localhost:65535", "localhost", 65535}, {"[::1]:0", "::1", 0},
      {"[::]:80", "::", 80},               {"[fe80::1%eth0]:1", "fe80::1%eth0", 1},
      {"my-host.example_1:00080", "my-host.example_1", 80},
      {"[::ffff:127.0.0.1]:7", "::ffff:127.0.0.1", 7},
  };
  for (const auto& c : cases) {
    ListenAddress a;
    Status st = ParseListenAddress(c.address, &a);
    ASSERT_TRUE(st.ok()) << c.address << ": " << st.message();
    EXPECT_EQ(a.kind, ListenAddress::Kind::kTcp);
    EXPECT_EQ(a.host, c.host);
    EXPECT_EQ(a.port, c.port) << c.address;
  }
}

TEST(ListenAddress, AcceptsUnixSockets) {
  ListenAddress a;
  ASSERT_TRUE(ParseListenAddress("unix:/tmp/chat.sock", &a).ok());
  EXPECT_EQ(a.kind, ListenAddress::Kind::kUnix);
  EXPECT_EQ(a.path, "/tmp/chat.sock");
  EXPECT_EQ(a.port, -1);
  EXPECT_EQ(ListenError("unix:relative.sock"), "");
  EXPECT_EQ(ListenError("unix-abstract:chat"), "");
  EXPECT_NE(ListenError("unix:").find("no path"), std::string::npos);
  EXPECT_NE(ListenError("unix:/" + std::string(200, 'x')).find("longer than"), std::string::npos);
}

TEST(ListenAddress, RejectsBadPortsWithAClearMessage) {
  EXPECT_NE(ListenError("127.0.0.1:70000").find("port 70000 is out of range 0..65535"),
            std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1:65536").find("out of range"), std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1:99999999999").find("out of range"), std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1").find("address has no port"), std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1:").find("address has no port"), std::string::npos);
  EXPECT_NE(ListenError("[::1]").find("address has no port"), std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1:-1").find("not a decimal number"), std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1:80x").find("not a decimal number"), std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1:+80").find("not a decimal number"), std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1: 80").find("not a decimal number"), std::string::npos);
  EXPECT_NE(ListenError("127.0.0.1:http").find("not a decimal number"), std::string::npos);
  // The message names the address it is about.
  EXPECT_NE(ListenError("127.0.0.1:70000").find("'127.0.0.1:70000'"), std::string::npos);
}

TEST(ListenAddress, RejectsBadHosts) {
  EXPECT_NE(ListenError(":9090").find("no host"), std::string::npos);
  EXPECT_NE(ListenError("[]:9090").find("no host"), std::string::npos);
  EXPECT_NE(ListenError("::1:9090").find("brackets"), std::string::npos);
  EXPECT_NE(ListenError("[::1:9090").find("']'"), std::string::npos);
  EXPECT_NE(ListenError("[::1]x:9090").find("after ']'"), std::string::npos);
  EXPECT_NE(ListenError("[1.2.3.4]:9090").find("IPv6"), std::string::npos);
  EXPECT_NE(ListenError("[::1%]:9090").find("zone"), std::string::npos);
  EXPECT_NE(ListenError("1.2.3:9090").find("IPv4"), std::string::npos);
  EXPECT_NE(ListenError("256.0.0.1:9090").find("IPv4"), std::string::npos);
  EXPECT_NE(ListenError("a b:9090").find("not allowed"), std::string::npos);
  EXPECT_NE(ListenError("dns:///127.0.0.1:0").find("not allowed"), std::string::npos);
  EXPECT_NE(ListenError(std::string(300, 'a') + ":1").find("longer"), std::string::npos);
  EXPECT_NE(ListenError(std::string("a\0b:1", 5)).find("not allowed"), std::string::npos);
  EXPECT_NE(ListenError("").find("empty"), std::string::npos);
}

TEST(Target, KeepsWhatWorkedAndNormalizesHttp) {
  EXPECT_EQ(Normalized("127.0.0.1:1"), "127.0.0.1:1");
  EXPECT_EQ(Normalized("localhost:9090"), "localhost:9090");
  EXPECT_EQ(Normalized("[::1]:9090"), "[::1]:9090");
  EXPECT_EQ(Normalized("http://127.0.0.1:9090"), "127.0.0.1:9090");
  EXPECT_EQ(Normalized("http://127.0.0.1:9090/"), "127.0.0.1:9090");
  EXPECT_EQ(Normalized("http://[::1]:9090//"), "[::1]:9090");
  EXPECT_EQ(Normalized("dns:///localhost:9090"), "dns:///localhost:9090");
  EXPECT_EQ(Normalized("dns:localhost:9090"), "dns:localhost:9090");
  EXPECT_EQ(Normalized("dns://8.8.8.8:53/example.com:443"), "dns://8.8.8.8:53/example.com:443");
  EXPECT_EQ(Normalized("ipv4:127.0.0.1:1,10.0.0.1:2"), "ipv4:127.0.0.1:1,10.0.0.1:2");
  EXPECT_EQ(Normalized("ipv6:[::1]:9090"), "ipv6:[::1]:9090");
  EXPECT_EQ(Normalized("unix:/tmp/chat.sock"), "unix:/tmp/chat.sock");
  EXPECT_EQ(Normalized("unix-abstract:chat"), "unix-abstract:chat");
  EXPECT_EQ(Normalized("unix-abstract:"), "unix-abstract:");
  // A host named like a gRPC scheme stays a host (fuzz_address found that
  // "http://ipv4:1" became "ipv4:1", which gRPC reads as the ipv4 scheme).
  EXPECT_EQ(Normalized("http://ipv4:60073///"), "dns:///ipv4:60073");
  EXPECT_EQ(Normalized("http://xds:1"), "dns:///xds:1");
}

TEST(Target, ValidatesPorts) {
  EXPECT_NE(TargetError("127.0.0.1:70000").find("out of range 1..65535"), std::string::npos);
  EXPECT_NE(TargetError("http://127.0.0.1:70000").find("out of range"), std::string::npos);
  EXPECT_NE(TargetError("127.0.0.1").find("no port"), std::string::npos);
  EXPECT_NE(TargetError("http://127.0.0.1/").find("no port"), std::string::npos);
  EXPECT_NE(TargetError("127.0.0.1:0").find("cannot be connected to"), std::string::npos);
  EXPECT_NE(TargetError("dns:///localhost").find("no port"), std::string::npos);
  EXPECT_NE(TargetError("dns:///localhost:99999").find("out of range"), std::string::npos);
  EXPECT_NE(TargetError("ipv4:127.0.0.1:1,127.0.0.1:x").find("not a decimal"), std::string::npos);
  EXPECT_NE(TargetError("ipv4:[::1]:1").find("IPv4"), std::string::npos);
  EXPECT_NE(TargetError("ipv4:").find("empty"), std::string::npos);
  EXPECT_NE(TargetError("ipv6:::1:1").find("bracket"), std::string::npos);
  EXPECT_NE(TargetError("ipv6:[::1]:65536").find("out of range"), std::string::npos);
}

TEST(Target, RefusesWhatCannotWork) {
  EXPECT_NE(TargetError("").find("empty target"), std::string::npos);
  EXPECT_NE(TargetError("https://").find("https:// target has no host:port"), std::string::npos);
  EXPECT_NE(TargetError("https://h").find("no port"), std::string::npos);
  EXPECT_NE(TargetError("http://").find("no host:port"), std::string::npos);
  EXPECT_NE(TargetError("http://http://h:1").find("not allowed"), std::string::npos);
  EXPECT_NE(TargetError("http://h:1/path").find("not a decimal"), std::string::npos);
  EXPECT_NE(TargetError("xds:///service").find("unsupported target scheme 'xds'"),
            std::string::npos);
  EXPECT_NE(TargetError("unix:").find("no path"), std::string::npos);
  EXPECT_NE(TargetError("xds:1").find("unsupported target scheme 'xds'"), std::string::npos);
  EXPECT_NE(TargetError("ipv4:1").find("no port"), std::string::npos);
  EXPECT_NE(TargetError("dns://resolver").find("dns:///"), std::string::npos);
}

TEST(Target, HttpsMeansTls) {
  std::string out;
  bool tls = false, http = true;
  ASSERT_TRUE(NormalizeTarget("https://localhost:8443/", &out, &tls, &http).ok());
  EXPECT_EQ(out, "localhost:8443");
  EXPECT_TRUE(tls);
  EXPECT_FALSE(http);
  ASSERT_TRUE(NormalizeTarget("https://ipv4:1", &out, &tls, &http).ok());
  EXPECT_EQ(out, "dns:///ipv4:1");
  ASSERT_TRUE(NormalizeTarget("http://h:1", &out, &tls, &http).ok());
  EXPECT_FALSE(tls);
  EXPECT_TRUE(http);
  ASSERT_TRUE(NormalizeTarget("h:1", &out, &tls, &http).ok());
  EXPECT_FALSE(tls || http);
}

TEST(Target, LoopbackIsOnlyThisMachine) {
  for (const char* t : {"localhost:1", "127.0.0.1:1", "127.8.9.10:1", "[::1]:1", "dns:///localhost:1",
                        "dns://8.8.8.8/127.0.0.1:1", "ipv4:127.0.0.1:1,127.0.0.2:2",
                        "ipv6:[::1]:1", "unix:/tmp/s", "unix-abstract:s"}) {
    EXPECT_TRUE(IsLoopbackTarget(Normalized(t))) << t;
  }
  for (const char* t : {"example.com:1", "10.0.0.1:1", "[::2]:1", "dns:///example.com:1",
                        "ipv4:127.0.0.1:1,10.0.0.1:2", "128.0.0.1:1", "localhost.evil.com:1"}) {
    EXPECT_FALSE(IsLoopbackTarget(Normalized(t))) << t;
  }
}

TEST(Target, NormalizingIsIdempotent) {
  for (const char* t : {"http://127.0.0.1:9090/", "127.0.0.1:9090", "http://[::1]:1", "http://dns:7",
                        "dns:///h:1", "unix:/x", "ipv4:1.2.3.4:5"}) {
    std::string once = Normalized(t);
    EXPECT_EQ(Normalized(once), once) << t;
  }
}

}  // namespace
}  // namespace chat::internal
