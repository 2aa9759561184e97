// The Chat server: hosts /Chat/chat with a built-in behaviour or host logic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chat/compression.h"
#include "chat/event_queue.h"
#include "chat/stats.h"
#include "chat/status.h"

namespace chat {

// Who a TLS client proved to be with its certificate (mTLS).
struct PeerIdentity {
  std::string subject;            // the certificate's subject ("CN=alice,O=Example")
  std::vector<std::string> sans;  // its subject alternative names (DNS, IP, email, URI)
};

class ServerCall;

// Decides whether a new stream opens, before any handler or reply sees it.
// `token` is the client's bearer token ("authorization: Bearer <token>"), or
// null when it sent none. Returns OK to admit (with `*principal` set, which
// ServerCall::principal() then gives), kUnauthenticated or kPermissionDenied
// (with a message) to refuse; other gRPC codes refuse with that code, and
// library codes or an exception refuse with kInternal. Runs on the transport
// thread that took the stream: it must be quick (it holds up the streams of
// that thread), and must not call Server::Stop.
using Authenticator = std::function<Status(const std::shared_ptr<ServerCall>& call,
                                           const std::string* token, std::string* principal)>;

enum class ClientCertMode {
  kNone,     // do not ask for a client certificate
  kRequest,  // ask; verify one that is sent against tls_client_ca
  kRequire,  // a verified client certificate is required to connect
};

// One server-side stream. Shared ownership: the library holds it until the
// stream ends; hosts may keep it (e.g. a room's member list) and call it from
// any thread; once the stream has ended every call returns kClosed.
class ServerCall {
 public:
  virtual ~ServerCall() = default;

  // Unique per server, from 1, in order of arrival.
  virtual uint64_t id() const = 0;
  // The peer address ("ipv4:127.0.0.1:53210").
  virtual const std::string& peer() const = 0;
  // Client metadata as received (keys lower-case).
  virtual const std::multimap<std::string, std::string>& metadata() const = 0;
  // The client certificate's identity on a TLS server that asked for one
  // (empty without a certificate). Fixed before the stream opens.
  virtual const PeerIdentity& peer_identity() const = 0;
  // What the server's authenticator admitted the stream as ("" without one).
  virtual const std::string& principal() const = 0;

  // Queues one reply. Waits up to `timeout` while the send queue is full
  // (kWouldBlock with kNoWait, kTimeout after a positive timeout).
  virtual Status Send(std::string_view text, Timeout timeout) = 0;
  // Finishes the stream with OK once the queued replies are written.
  // Idempotent; kClosed if the stream already ended another way.
  virtual Status Complete() = 0;
  // Finishes the stream with `code` (a gRPC code 1..16) and `details` right
  // after the write in flight; queued replies are discarded.
  virtual Status Fail(Code code, std::string_view details) = 0;
  virtual bool ended() const = 0;
  // Metadata for the client. Initial metadata goes out with the first reply
  // (or with the status when there is none), so add it before the first
  // Send, e.g. in OnOpen; trailing metadata goes with the status, so add it
  // before Complete or Fail. Keys and values as the client's (lower-case
  // key, not "grpc-"; printable ASCII value unless the key ends in "-bin"),
  // else kBadArgument. kBadState when too late, kClosed once the stream has
  // ended (cancelled, cut).
  virtual Status AddInitialMetadata(std::string_view key, std::string_view value) = 0;
  virtual Status AddTrailingMetadata(std::string_view key, std::string_view value) = 0;
  // Time left before the call's deadline (zero once it passed), or a
  // negative Timeout when it has none. The deadline is the client's
  // grpc-timeout or, without one, Ballerina's `deadline` header (an RFC 3339
  // timestamp), which the server then enforces: the call ends with
  // DEADLINE_EXCEEDED at that time.
  virtual Timeout TimeLeft() const = 0;
  // Event queue with hold_until_consumed: the host is done with `count`
  // more of the messages it drained, oldest first; their room in the
  // window goes back. kBadState without hold_until_consumed, kBadArgument
  // for more than were drained and not yet consumed.
  virtual Status Consumed(size_t count) {
    (void)count;
    return Status(Code::kBadState, "the server does not hold messages until consumed");
  }

  // A slot for the embedding layer (the C ABI keeps its handle here).
  virtual void set_host_data(void* data) = 0;
  virtual void* host_data() const = 0;
};

// Host logic for Mode::kCustom. Every method runs on one of the server's
// dispatcher threads, never on a transport thread; the events of one stream
// run in order (open, messages..., complete, close) on the same thread.
// Methods must not block for long: they hold up every stream on that thread.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual void OnOpen(const std::shared_ptr<ServerCall>& call) { (void)call; }
  virtual void OnMessage(const std::shared_ptr<ServerCall>& call, std::string_view name,
                         std::string_view message) = 0;
  // The client half-closed. The default completes the stream, like the seed.
  virtual void OnComplete(const std::shared_ptr<ServerCall>& call) { call->Complete(); }
  // The stream ended; `status` is final. Always the stream's last event.
  virtual void OnClose(const std::shared_ptr<ServerCall>& call, const Status& status) {
    (void)call;
    (void)status;
  }
};

enum class Mode {
  kEcho,       // each message answered on its own stream as "<name>: <message>"
  kBroadcast,  // each message sent as "<name>: <message>" to every open stream
  kCustom,     // a Handler decides
};

struct ServerOptions {
  std::string address = "127.0.0.1:0";  // port 0 picks a free port
  Mode mode = Mode::kEcho;
  std::shared_ptr<Handler> handler;       // kCustom: a Handler or a queue
  // kCustom: deliver the streams' events to this queue instead of a
  // Handler. No dispatcher threads run; recv_window counts messages not yet
  // drained; Stop never waits for the host that drains.
  std::shared_ptr<EventQueue> queue;
  void* queue_user_data = nullptr;  // carried in every Event of this server's streams
  // A drained message keeps its room in recv_window until ServerCall::
  // Consumed: hosts that hand messages on (async handlers) stay bounded.
  bool hold_until_consumed = false;
  size_t max_message_bytes = 4u << 20;    // both directions
  size_t send_queue_limit = 1024;         // replies queued per stream
  size_t send_queue_bytes = 8u << 20;     // and their bytes (one message always fits)
  size_t recv_window = 64;                // messages handed to the handler, not yet processed
  size_t recv_window_bytes = 8u << 20;    // and their bytes
  // Bound on the bytes all streams hold queued: above it the built-in modes
  // cut the slowest reader, custom mode stops reading; new streams that
  // still find it over are refused (RESOURCE_EXHAUSTED).
  size_t max_memory_bytes = 256u << 20;
  int dispatcher_threads = 1;             // kCustom: threads running handler methods
  // Transport threads, each draining its own completion queue; every stream
  // stays on one of them. 0: one per core, at least two. Only the first
  // drains until the others are needed (core/src/cq.h says why).
  int completion_queues = 0;
  // All of them drain from the start (C++ only): for tests whose streams
  // must run on several threads at once.
  bool all_queues_awake = false;
  int keepalive_ms = 30000;               // ping idle connections; dead peers end their streams
  int keepalive_timeout_ms = 10000;       // an unanswered ping ends the connection
  // TLS: a server with a certificate chain speaks TLS only. Each is PEM
  // text, or the path of a PEM file (text without "-----BEGIN"), read at
  // Start. A TLS server listens through gRPC, not through the own listener
  // (gRPC 1.51 takes descriptors on plaintext only): the per-connection
  // rapid-reset cut does not apply to it, and after one EMFILE gRPC's
  // listener never accepts again (see chat.h).
  std::string tls_cert_chain;
  std::string tls_private_key;
  std::string tls_client_ca;                     // roots client certificates must chain to
  ClientCertMode client_cert = ClientCertMode::kNone;  // needs tls_client_ca unless kNone
  Authenticator authenticate;                    // optional: admits or refuses streams
  // grpc.health.v1.Health: SERVING for "" and "Chat", NOT_SERVING from the
  // start of Stop; other names unknown.
  bool health = false;
  // gRPC server reflection (v1alpha and v1): lists the services and
  // describes Chat and its messages, from descriptors built into the
  // library (nothing is registered in protobuf's process-wide pool).
  bool reflection = false;
  // --- control ---
  // Compresses every reply with this (the client must accept it: gRPC
  // clients accept deflate and gzip unless configured otherwise).
  Compression compression = Compression::kNone;
  // Open streams the whole server takes; beyond, new ones are refused with
  // RESOURCE_EXHAUSTED. 0: no limit but the memory bound.
  int max_streams = 0;
  // HTTP/2 MAX_CONCURRENT_STREAMS per connection: a client waits for a slot
  // beyond it. 0: the memory bound's (see Init); else the smaller of both.
  int max_concurrent_streams = 0;
  // For load balancers: a connection older than max_connection_age_ms gets
  // GOAWAY (its client reconnects for new streams), and its open streams
  // have max_connection_age_grace_ms more to finish; a connection without
  // streams for max_connection_idle_ms gets GOAWAY. 0: off.
  int max_connection_age_ms = 0;
  int max_connection_age_grace_ms = 0;
  int max_connection_idle_ms = 0;
  // Broadcast mode: the room lives in the Redis stream "room:<room_name>"
  // at room_url ("redis://HOST:PORT[/DB]"), shared by every server that
  // names it; empty, the room is in this process. A member's message is
  // appended (XADD) and comes back to the members of every server in the
  // stream's one order. While Redis cannot take it, the member's stream
  // ends with UNAVAILABLE ("room unavailable: ..."). The stream is trimmed
  // to about room_max_len entries (XADD MAXLEN ~), which also bounds what a
  // server that lost Redis can catch up on: lines trimmed before it read
  // them end its members' streams with DATA_LOSS (entries are numbered).
  // A stream opened with metadata
  // "x-room-replay: N" (0..1000) first gets the room's last N lines (as many
  // as its send queue holds), then the live ones, none missed or twice;
  // another value fails it with INVALID_ARGUMENT. In-process rooms keep no
  // history and ignore it. Start looks for Redis once
  // (up to a few seconds); unreachable, the server still starts, refuses
  // messages as above and keeps trying with capped backoff.
  std::string room_url;
  std::string room_name;
  size_t room_max_len = 10000;
};

class Server {
 public:
  // Binds and starts serving. A malformed address ("host:port" or
  // "[ipv6]:port" with port 0..65535, or "unix:path" / "unix-abstract:name")
  // fails with kBadArgument before anything binds; one that cannot be bound
  // (in use, unknown host) with kCannotListen; kSystem when no descriptor
  // or thread is left.
  static Status Start(const ServerOptions& options, std::unique_ptr<Server>* out);
  virtual ~Server() = default;  // stops with no grace if still running

  virtual int port() const = 0;
  // Stops accepting streams, lets open ones finish for `grace`, then fails the
  // rest with UNAVAILABLE. Returns when every stream has ended and every
  // handler event has run. `cut` receives how many streams were cut.
  // kBusy when called from one of this server's handler methods.
  virtual Status Stop(Timeout grace, int* cut) = 0;
  // The server's counters. Thread-safe; valid also after Stop.
  virtual Stats stats() const = 0;
};

}  // namespace chat
