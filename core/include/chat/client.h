// The Chat client: opens /Chat/chat streams to a server.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/compression.h"
#include "chat/event_queue.h"
#include "chat/stats.h"
#include "chat/status.h"

namespace chat {

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct ClientOptions {
  size_t max_message_bytes = 4u << 20;
  size_t send_queue_limit = 1024;  // messages queued per stream before Send waits
  size_t send_queue_bytes = 8u << 20;  // and their bytes (one message always fits)
  size_t recv_queue_limit = 1024;  // replies buffered per stream before reading pauses
  size_t recv_queue_bytes = 8u << 20;  // and their bytes
  int keepalive_ms = 0;            // ping while streams are open; 0 = off
  int keepalive_timeout_ms = 10000;  // an unanswered ping ends the connection
  // TLS, also implied by an "https://" target or by any tls_* field. Each
  // certificate or key is PEM text or a PEM file's path (see ServerOptions).
  bool tls = false;
  std::string tls_root_certs;   // trusted roots; empty: gRPC's default (see chat.h)
  std::string tls_cert_chain;   // client certificate (mTLS), with tls_private_key
  std::string tls_private_key;
  std::string tls_server_name;  // name to verify instead of the target's host
  // Sent as "authorization: Bearer <token>" on every stream (StreamOptions
  // may override it). Refused over plaintext to a host that is not
  // loopback unless allow_insecure_token.
  std::string token;
  bool allow_insecure_token = false;
  // --- control ---
  Compression compression = Compression::kNone;  // of every stream's messages
};

struct StreamOptions {
  Timeout deadline = kForever;  // relative RPC deadline; negative: none
  std::vector<std::pair<std::string, std::string>> metadata;
  bool wait_for_ready = false;  // queue the RPC while the server is unreachable
  // Deliver replies, the end and kWritable to this queue (events carry
  // `tag` and `user_data`, copied: a drain never reads the stream's host
  // object, which another thread may be destroying) instead of keeping
  // them for Recv, which then returns kBadState.
  std::shared_ptr<EventQueue> queue;
  void* tag = nullptr;
  void* user_data = nullptr;
  // A drained reply keeps its room in the receive bounds until Consumed.
  bool hold_until_consumed = false;
  std::string token;  // bearer token for this stream; empty: the client's
  // --- control ---
  std::optional<Compression> compression;  // this stream's; unset: the client's
};

// One client stream. Every method is thread-safe; Recv has one consumer at a time.
class ClientStream {
 public:
  virtual ~ClientStream() = default;

  // Queues one message; waits up to `timeout` while the send queue is full.
  // kClosed once the stream was completed, cancelled or has ended.
  virtual Status Send(std::string_view name, std::string_view message, Timeout timeout) = 0;
  // Half-closes after the queued messages are written. Idempotent.
  virtual Status Complete() = 0;
  // Cancels the RPC (the final status becomes CANCELLED). Idempotent.
  virtual Status Cancel() = 0;
  // Takes the next reply. kEndOfStream once the stream ended OK and every reply
  // was taken; the final error code if it ended otherwise; kTimeout.
  virtual Status Recv(std::string* reply, Timeout timeout) = 0;
  // Takes up to `max` replies at once (at least one unless it fails).
  virtual Status RecvBatch(std::vector<std::string>* replies, size_t max, Timeout timeout) = 0;
  // Waits for the final status; kTimeout if it is not there in time.
  virtual Status Wait(Timeout timeout) = 0;
  // The final status, or kBadState while the stream is still open.
  virtual Status FinalStatus() const = 0;
  // The server's initial metadata (kBadState until it arrived: with the
  // first reply, or with the end) or trailing metadata (kBadState until
  // the stream ended). *out points to storage that stays valid and
  // unchanged as long as the stream; keys lower-case, in key order.
  virtual Status ServerMetadata(bool trailing, const Metadata** out) const = 0;
  // Event queue with hold_until_consumed: the host is done with `count`
  // more of the replies it drained (see ServerCall::Consumed).
  virtual Status Consumed(size_t count) {
    (void)count;
    return Status(Code::kBadState, "the stream does not hold replies until consumed");
  }
  // Cancels if still open and waits until the library is done with the stream:
  // afterwards no gRPC activity refers to it.
  virtual void Close() = 0;
};

class Client {
 public:
  // `target`: "host:port", "http://host:port", "https://host:port" (TLS;
  // Ballerina's URL forms) or a
  // gRPC target ("dns:///h:p", "ipv4:127.0.0.1:p", "ipv6:[::1]:p",
  // "unix:/path", "unix-abstract:name"). A missing port or one outside
  // 1..65535 is kBadArgument (see core/src/address.h).
  static Status Create(std::string_view target, const ClientOptions& options,
                       std::unique_ptr<Client>* out);
  virtual ~Client() = default;  // open streams keep the channel alive

  virtual Status Open(const StreamOptions& options, std::shared_ptr<ClientStream>* out) = 0;
  // The counters of every stream this client opened. Thread-safe.
  virtual Stats stats() const = 0;
};

}  // namespace chat
