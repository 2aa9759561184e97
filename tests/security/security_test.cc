// The C ABI's TLS, mTLS peer identity, bearer tokens and authenticate
// callback, libchat to libchat over real sockets on 127.0.0.1. Certificates
// come from make_certs.sh (the generator the pytest suite uses too), run
// once into a temporary directory.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "../capi/capi_pair.h"
#include <libchat/chat.h>

namespace {

using chat::testing::Drain;
using chat::testing::Send;

std::string g_certs;  // the directory make_certs.sh filled

std::string Cert(const char* name) { return g_certs + "/" + name; }

class CertsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    char dir[] = "/tmp/chat-security-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    g_certs = dir;
    std::string command = std::string("sh '") + CHAT_MAKE_CERTS + "' '" + g_certs + "' 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  void TearDown() override { std::filesystem::remove_all(g_certs); }
};

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new CertsEnvironment);

// What the authenticate callback and the handler saw, for the test to check.
struct Seen {
  std::mutex mu;
  std::vector<std::string> tokens;     // "(none)" for a call without one
  std::vector<std::string> subjects;
  std::vector<std::string> sans;       // of the first call with a certificate
  std::vector<std::string> opened;     // principals, as on_open saw them
  chat_code principal_after = CHAT_OK;  // chat_call_set_principal on a kept handle
  chat_code send_inside = CHAT_OK;     // chat_call_send from authenticate
  chat_call* kept = nullptr;
};

chat_code Authenticate(chat_call* call, const char* token, char* message, size_t size,
                       void* user_data) {
  auto* seen = static_cast<Seen*>(user_data);
  std::lock_guard<std::mutex> lock(seen->mu);
  seen->tokens.push_back(token ? token : "(none)");
  seen->subjects.push_back(chat_call_peer_subject(call));
  size_t count = 0;
  EXPECT_EQ(chat_call_peer_san_count(call, &count), CHAT_OK);
  if (count > 0 && seen->sans.empty()) {
    for (size_t i = 0; i < count; ++i) {
      const char* san = nullptr;
      EXPECT_EQ(chat_call_peer_san(call, i, &san), CHAT_OK);
      seen->sans.push_back(san);
    }
    const char* san = nullptr;
    EXPECT_EQ(chat_call_peer_san(call, count, &san), CHAT_ERR_BAD_ARGUMENT);
  }
  seen->send_inside = chat_call_send(call, "x", 1, 0);
  if (!token) {
    std::snprintf(message, size, "%s", "a bearer token is required");
    return CHAT_UNAUTHENTICATED;
  }
  std::string t = token;
  if (t == "banned") {
    std::snprintf(message, size, "%s", "banned users may not chat");
    return CHAT_PERMISSION_DENIED;
  }
  if (t == "silent") return CHAT_UNAUTHENTICATED;  // no message: a default one
  if (t == "busy") return CHAT_UNAVAILABLE;
  if (t == "library-code") return CHAT_ERR_TIMEOUT;
  if (t == "long") {
    std::memset(message, 'x', size);  // not terminated: the library cuts it
    return CHAT_PERMISSION_DENIED;
  }
  if (t != "alice-token" && t != "bob-token") return CHAT_UNAUTHENTICATED;
  EXPECT_EQ(chat_call_set_principal(call, "first"), CHAT_OK);
  EXPECT_EQ(chat_call_set_principal(call, t == "alice-token" ? "alice" : "bob"), CHAT_OK);
  if (!seen->kept) {
    EXPECT_EQ(chat_call_ref(call), CHAT_OK);
    seen->kept = call;
  }
  return CHAT_OK;
}

void OnOpen(chat_call* call, void* user_data) {
  auto* seen = static_cast<Seen*>(user_data);
  std::lock_guard<std::mutex> lock(seen->mu);
  seen->opened.push_back(chat_call_principal(call));
}

void OnMessage(chat_call* call, const char* name, size_t name_len, const char* message,
               size_t message_len, void*) {
  std::string reply = std::string(chat_call_principal(call)) + "|" +
                      chat_call_peer_subject(call) + "|" + std::string(name, name_len) + ": " +
                      std::string(message, message_len);
  chat_call_send(call, reply.data(), reply.size(), 5000);
}

class SecurityTest : public ::testing::Test {
 protected:
  void StartServer(int32_t mode, bool tls, int32_t client_cert = CHAT_CLIENT_CERT_NONE) {
    chat_server_options so;
    ASSERT_EQ(chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION), CHAT_OK);
    so.mode = mode;
    if (mode == CHAT_MODE_CUSTOM) {
      so.on_open = OnOpen;
      so.on_message = OnMessage;
      so.user_data = &seen_;
    }
    std::string cert = Cert("server.pem"), key = Cert("server.key"), ca = Cert("ca.pem");
    if (tls) {
      so.tls_cert_chain = cert.c_str();
      so.tls_private_key = key.c_str();
    }
    if (client_cert != CHAT_CLIENT_CERT_NONE) {
      so.tls_client_ca = ca.c_str();
      so.tls_client_cert = client_cert;
    }
    so.authenticate = Authenticate;
    so.authenticate_user_data = &seen_;
    ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server_), CHAT_OK) << chat_last_error();
  }

  // A client of the server: https://127.0.0.1 (the server certificate's IP
  // SAN; a name would go through c-ares, whose 10 bytes gRPC 1.51 leaks,
  // which LeakSanitizer reports) with the test CA when `tls`, and alice's
  // certificate when `mtls`.
  chat_client* Client(bool tls, bool mtls, const char* token) {
    chat_client_options co;
    EXPECT_EQ(chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION), CHAT_OK);
    std::string ca = Cert("ca.pem"), cert = Cert("client.pem"), key = Cert("client.key");
    if (tls) co.tls_root_certs = ca.c_str();
    if (mtls) {
      co.tls_cert_chain = cert.c_str();
      co.tls_private_key = key.c_str();
    }
    co.token = token;
    std::string target = std::string(tls ? "https://127.0.0.1:" : "127.0.0.1:") +
                         std::to_string(chat_server_port(server_));
    chat_client* client = nullptr;
    EXPECT_EQ(chat_client_create(target.c_str(), &co, &client), CHAT_OK) << chat_last_error();
    clients_.push_back(client);
    return client;
  }

  // One stream: sends "Sam: Hi", half-closes; its replies and end.
  std::vector<std::string> Chat(chat_client* client, const char* token, chat_code* end,
                                std::string* details = nullptr) {
    chat_stream_options o;
    chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
    o.token = token;
    o.deadline_ms = 20000;
    chat_stream* s = nullptr;
    EXPECT_EQ(chat_client_open(client, &o, &s), CHAT_OK) << chat_last_error();
    if (!s) return {};
    Send(s, "Sam", "Hi");  // may fail once refused: the end tells
    chat_stream_complete(s);
    std::vector<std::string> replies = Drain(s, end);
    if (details) {
      chat_code code;
      const char* text = nullptr;
      size_t len = 0;
      EXPECT_EQ(chat_stream_status(s, &code, &text, &len), CHAT_OK);
      details->assign(text, len);
    }
    chat_stream_destroy(s);
    return replies;
  }

  void TearDown() override {
    if (seen_.kept) chat_call_unref(seen_.kept);
    for (auto* c : clients_) chat_client_destroy(c);
    EXPECT_EQ(chat_server_destroy(server_), CHAT_OK);
  }

  Seen seen_;
  chat_server* server_ = nullptr;
  std::vector<chat_client*> clients_;
};

TEST_F(SecurityTest, MutualTlsGivesIdentityAndTokenGivesPrincipal) {
  StartServer(CHAT_MODE_CUSTOM, /*tls=*/true, CHAT_CLIENT_CERT_REQUIRE);
  chat_code end;
  auto replies = Chat(Client(true, true, "alice-token"), nullptr, &end);
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  EXPECT_EQ(replies, std::vector<std::string>{"alice|CN=alice,O=Example|Sam: Hi"});
  std::lock_guard<std::mutex> lock(seen_.mu);
  EXPECT_EQ(seen_.tokens, std::vector<std::string>{"alice-token"});
  EXPECT_EQ(seen_.sans, (std::vector<std::string>{"alice.example", "spiffe://example.org/alice"}));
  EXPECT_EQ(seen_.opened, std::vector<std::string>{"alice"});
  EXPECT_EQ(seen_.send_inside, CHAT_ERR_BAD_STATE);
  // The authenticate handle, kept past its callback: it reads the admitted
  // call, and takes no principal any more.
  ASSERT_NE(seen_.kept, nullptr);
  EXPECT_STREQ(chat_call_principal(seen_.kept), "alice");
  EXPECT_EQ(chat_call_set_principal(seen_.kept, "mallory"), CHAT_ERR_BAD_STATE);
  EXPECT_STREQ(chat_call_principal(seen_.kept), "alice");
}

TEST_F(SecurityTest, RefusalsCarryTheirCodeAndMessageAndNeverOpen) {
  StartServer(CHAT_MODE_CUSTOM, /*tls=*/true);
  chat_client* client = Client(true, false, "bob-token");
  struct Case {
    const char* token;
    chat_code code;
    std::string details;
  } cases[] = {
      {"banned", CHAT_PERMISSION_DENIED, "banned users may not chat"},
      {"nope", CHAT_UNAUTHENTICATED, "unauthenticated"},
      {"silent", CHAT_UNAUTHENTICATED, "unauthenticated"},
      {"busy", CHAT_UNAVAILABLE, "refused by the server's authenticator"},
      {"library-code", CHAT_INTERNAL, "the server's authenticator failed"},
      {"long", CHAT_PERMISSION_DENIED, std::string(1023, 'x')},
  };
  for (const Case& c : cases) {
    chat_code end;
    std::string details;
    EXPECT_TRUE(Chat(client, c.token, &end, &details).empty()) << c.token;
    EXPECT_EQ(end, c.code) << c.token;
    EXPECT_EQ(details, c.details) << c.token;
  }
  // The client's own token, then a stream's override.
  chat_code end;
  EXPECT_EQ(Chat(client, nullptr, &end), std::vector<std::string>{"bob||Sam: Hi"});
  EXPECT_EQ(Chat(client, "alice-token", &end), std::vector<std::string>{"alice||Sam: Hi"});
  int32_t cut = -1;
  ASSERT_EQ(chat_server_stop(server_, 5000, &cut), CHAT_OK);
  EXPECT_EQ(cut, 0);
  std::lock_guard<std::mutex> lock(seen_.mu);
  EXPECT_EQ(seen_.opened, (std::vector<std::string>{"bob", "alice"}));
  EXPECT_EQ(seen_.subjects, std::vector<std::string>(8, ""));  // no client certificates
}

TEST_F(SecurityTest, EchoModeAuthenticatesOverPlaintextLoopback) {
  StartServer(CHAT_MODE_ECHO, /*tls=*/false);
  chat_code end;
  EXPECT_EQ(Chat(Client(false, false, "alice-token"), nullptr, &end),
            std::vector<std::string>{"Sam: Hi"});
  EXPECT_EQ(end, CHAT_END_OF_STREAM);
  std::string details;
  EXPECT_TRUE(Chat(Client(false, false, nullptr), nullptr, &end, &details).empty());
  EXPECT_EQ(end, CHAT_UNAUTHENTICATED);
  EXPECT_EQ(details, "a bearer token is required");
}

TEST(SecurityArguments, TokensOverPlaintextNeedLoopbackOrConsent) {
  chat_client_options co;
  ASSERT_EQ(chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION), CHAT_OK);
  co.token = "t";
  chat_client* client = nullptr;
  EXPECT_EQ(chat_client_create("10.1.2.3:9", &co, &client), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_last_error()).find("plaintext"), std::string::npos);
  EXPECT_EQ(client, nullptr);
  co.allow_insecure_token = 1;
  ASSERT_EQ(chat_client_create("10.1.2.3:9", &co, &client), CHAT_OK);
  chat_client_destroy(client);
  co.allow_insecure_token = 0;
  co.tls = 1;
  ASSERT_EQ(chat_client_create("10.1.2.3:9", &co, &client), CHAT_OK);
  chat_client_destroy(client);
  co.token = "has space";
  EXPECT_EQ(chat_client_create("https://h:9", &co, &client), CHAT_ERR_BAD_ARGUMENT);

  // A stream's token follows the same rule.
  chat_client_options plain;
  chat_client_options_init(&plain, CHAT_CLIENT_OPTIONS_VERSION);
  ASSERT_EQ(chat_client_create("10.1.2.3:9", &plain, &client), CHAT_OK);
  chat_stream_options so;
  chat_stream_options_init(&so, CHAT_STREAM_OPTIONS_VERSION);
  so.token = "t";
  chat_stream* s = nullptr;
  EXPECT_EQ(chat_client_open(client, &so, &s), CHAT_ERR_BAD_ARGUMENT);
  char message[256];
  EXPECT_GT(chat_client_error(client, message, sizeof message), 0u);
  EXPECT_NE(std::string(message).find("plaintext"), std::string::npos);
  chat_client_destroy(client);

  ASSERT_EQ(chat_client_create("127.0.0.1:9", &plain, &client), CHAT_OK);
  chat_metadata md[] = {{"authorization", "Bearer x"}};
  so.metadata = md;
  so.metadata_count = 1;
  EXPECT_EQ(chat_client_open(client, &so, &s), CHAT_ERR_BAD_ARGUMENT);  // token and metadata
  chat_client_destroy(client);
}

TEST(SecurityArguments, TlsOptionsAreChecked) {
  std::string cert = Cert("server.pem"), key = Cert("server.key"), ca = Cert("ca.pem");
  chat_server_options so;
  chat_server_options_init(&so, CHAT_SERVER_OPTIONS_VERSION);
  chat_server* server = nullptr;
  so.tls_cert_chain = "/no/such/file.pem";
  so.tls_private_key = key.c_str();
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_last_error()).find("/no/such/file.pem"), std::string::npos);
  so.tls_cert_chain = cert.c_str();
  so.tls_private_key = nullptr;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  so.tls_private_key = key.c_str();
  so.tls_client_cert = 3;
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  so.tls_client_cert = CHAT_CLIENT_CERT_REQUIRE;  // without tls_client_ca
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  so.tls_client_cert = CHAT_CLIENT_CERT_NONE;
  so.tls_client_ca = ca.c_str();  // without asking for certificates
  EXPECT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(server, nullptr);
  so.tls_client_ca = nullptr;
  ASSERT_EQ(chat_server_start("127.0.0.1:0", &so, &server), CHAT_OK) << chat_last_error();
  EXPECT_GT(chat_server_port(server), 0);
  EXPECT_EQ(chat_server_destroy(server), CHAT_OK);

  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  chat_client* client = nullptr;
  co.tls_root_certs = ca.c_str();
  EXPECT_EQ(chat_client_create("http://localhost:9", &co, &client), CHAT_ERR_BAD_ARGUMENT);
  co.tls_root_certs = "/no/such/ca.pem";
  EXPECT_EQ(chat_client_create("https://localhost:9", &co, &client), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_NE(std::string(chat_last_error()).find("/no/such/ca.pem"), std::string::npos);
  EXPECT_EQ(client, nullptr);
}

TEST(SecurityArguments, NewCallFunctionsRefuseNull) {
  EXPECT_STREQ(chat_call_peer_subject(nullptr), "");
  EXPECT_STREQ(chat_call_principal(nullptr), "");
  size_t count = 7;
  EXPECT_EQ(chat_call_peer_san_count(nullptr, &count), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(count, 0u);
  const char* san = nullptr;
  EXPECT_EQ(chat_call_peer_san(nullptr, 0, &san), CHAT_ERR_BAD_ARGUMENT);
  EXPECT_EQ(chat_call_set_principal(nullptr, "p"), CHAT_ERR_BAD_ARGUMENT);
}

}  // namespace
