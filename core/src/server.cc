// Server side: one reactor (Session) per stream on gRPC's callback API.
//
// Locking rule: a Session decides under its mutex what gRPC operations to
// start (Actions) and starts them after unlocking, so a reaction never runs
// while we hold a lock gRPC might need. One write is in flight at a time
// (the send queue's); Finish is issued only when no write is in flight and no read
// is being started from outside a reaction (`outside_starts_`), because after
// Finish completes gRPC may end the stream and no operation may follow.
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "chat.grpc.pb.h"
#include "address.h"
#include "chat/server.h"
#include "dispatcher.h"
#include "grpc_glue.h"
#include "listener.h"
#include "memory.h"
#include "send_queue.h"
#include "tsan.h"
#include "wire.h"

namespace chat {
namespace internal {
namespace {

class ServerImpl;

// A client connection, as the listener accepted it. `seq` tells apart
// connections that got the same descriptor number one after the other.
struct Connection {
  int fd = -1;
  uint64_t seq = 0;
  std::string peer;  // "ipv4:127.0.0.1:41234"
};

// Rapid reset (CVE-2023-44487): gRPC 1.51 turns every HEADERS frame into a
// call even when RST_STREAM follows at once, and runs those calls far more
// slowly than a client can send the frames, so their backlog grows without
// bound. A connection is taken for that pattern and closed when, within a
// second, this many of its streams end cancelled (by the client or by a
// deadline, which the client chooses) before a message went either way, or
// when its live streams hold more than half of the server's memory bound
// (on a busy machine a burst can be parsed whole before any of its streams
// is seen cancelled: this bounds it all the same).
constexpr int kMaxEmptyCancelsPerSecond = 100;

// What one open stream costs besides its queued messages (gRPC's call and
// our session: about 20 KiB measured), charged to the server's memory bound.
constexpr size_t kStreamOverheadBytes = 16 * 1024;
constexpr int kReadChunkBytes = 4096;  // see ServerImpl::Init

// How long a stop waits for the statuses of the streams it cut to be
// written before gRPC's shutdown cancels what is left (ServerImpl::Stop).
constexpr auto kCutFlush = std::chrono::seconds(1);

// Over its memory bound, a built-in server cuts the stream that holds the
// most, if that is at least this fraction of the bound (ServerImpl::RelieveMemory).
constexpr size_t kMinCutShare = 64;

class Session final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                      public ServerCall,
                      public std::enable_shared_from_this<Session> {
 public:
  Session(ServerImpl* server, grpc::CallbackServerContext* ctx, uint64_t id,
          const ServerOptions& options, std::shared_ptr<MemoryAccount> memory, Connection conn)
      : server_(server), ctx_(ctx), id_(id), mode_(options.mode),
        max_message_bytes_(options.max_message_bytes),
        send_queue_limit_(options.send_queue_limit), send_queue_bytes_(options.send_queue_bytes),
        recv_window_(options.recv_window), recv_window_bytes_(options.recv_window_bytes),
        peer_(std::move(conn.peer)), conn_fd_(conn.fd), conn_seq_(conn.seq),
        memory_(std::move(memory)), outq_(memory_.get()) {
    for (const auto& [key, value] : ctx->client_metadata()) {
      metadata_.emplace(std::string(key.data(), key.size()), std::string(value.data(), value.size()));
    }
  }

  // Called once the shared_ptr exists: keeps the session alive until OnDone.
  void Begin(std::shared_ptr<Session> self) {
    self_ = std::move(self);
    ChatTsanRelease(this);  // construction happens before every reaction
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      StartReadLocked(&a);
    }
    Run(a);
  }

  // --- ServerCall ---
  uint64_t id() const override { return id_; }
  const std::string& peer() const override { return peer_; }
  const std::multimap<std::string, std::string>& metadata() const override { return metadata_; }
  void set_host_data(void* data) override { host_data_.store(data, std::memory_order_release); }
  void* host_data() const override { return host_data_.load(std::memory_order_acquire); }

  Status Send(std::string_view text, Timeout timeout) override {
    if (!IsValidUtf8(text)) return Status(Code::kBadArgument, "reply is not valid UTF-8");
    if (StringFieldWireSize(text.size()) > max_message_bytes_) {
      return Status(Code::kTooLarge, "reply of " + std::to_string(text.size()) +
                                         " bytes exceeds the maximum message size of " +
                                         std::to_string(max_message_bytes_));
    }
    return Enqueue(EncodeStringValue(text), timeout);
  }

  Status Complete() override {
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_wanted_) {
        return finish_status_.ok() && !cancelled_ ? Status::Ok()
                                                  : Status(Code::kClosed, "stream already ended");
      }
      finish_wanted_ = true;
      finish_status_ = Status::Ok();
      MaybeFinishLocked(&a);
    }
    Run(a);
    return Status::Ok();
  }

  Status Fail(Code code, std::string_view details) override {
    if (!IsGrpcCode(static_cast<int32_t>(code)) || code == Code::kOk) {
      return Status(Code::kBadArgument, "fail needs a gRPC error code (1..16)");
    }
    if (!IsValidUtf8(details)) return Status(Code::kBadArgument, "details are not valid UTF-8");
    return End(Status(code, std::string(details)));
  }

  bool ended() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_wanted_;
  }

  // --- used by the server ---

  // Queues an encoded reply already known to be valid.
  Status Enqueue(grpc::ByteBuffer reply, Timeout timeout) {
    Actions a;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!WaitForRoomLocked(lock, timeout, reply.Length())) {
        if (finish_wanted_) return Status(Code::kClosed, "stream has ended");
        return timeout == kNoWait
                   ? Status(Code::kWouldBlock, "send queue is full")
                   : Status(Code::kTimeout, "send queue stayed full for the whole timeout");
      }
      if (outq_.Push(std::move(reply))) StartWriteLocked(&a);
    }
    Run(a);
    return Status::Ok();
  }

  // Ends the stream with an error after the write in flight; drops queued
  // replies. With `reset`, a write stuck behind a peer that does not read is
  // not waited for: the stream is reset (the peer sees CANCELLED) and
  // `status` stays the reason the server reports. With `force`, a stream
  // already ending (completed, its replies still queued) is cut too.
  Status End(Status status, bool reset = false, bool force = false) {
    Actions a;
    bool cancel = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_wanted_ && (!force || finish_called_)) {
        return Status(Code::kClosed, "stream already ended");
      }
      finish_wanted_ = true;
      ended_by_server_ = true;
      finish_status_ = std::move(status);
      DropQueuedLocked();
      if (reset && outq_.writing()) {
        cancel = true;
        ++outside_starts_;  // ctx_ must outlive the TryCancel below
      }
      MaybeFinishLocked(&a);
    }
    room_cv_.notify_all();
    memory_->WakeIfRoom();  // queued bytes may have left
    Run(a);
    if (cancel) {
      ctx_->TryCancel();
      Actions after;
      {
        std::lock_guard<std::mutex> lock(mu_);
        --outside_starts_;
        MaybeFinishLocked(&after);
      }
      Run(after);
    }
    return Status::Ok();
  }

  // The handler has run one OnMessage of `bytes`: the read window has room
  // again, and so may the server's memory.
  void AckDelivered(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --undelivered_;
      undelivered_bytes_ -= bytes;
      memory_->Release(bytes);
    }
    ResumeRead();
    memory_->WakeIfRoom();
  }

  // Restarts a paused read if nothing holds it back any more. Called off a
  // reaction (dispatcher, or a stream that released memory).
  void ResumeRead(bool from_waiter = false) {
    Actions start;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (from_waiter) memory_waiter_ = false;
      if (!read_paused_ || QueueFullLocked()) return;
      read_paused_ = false;
      StartReadLocked(&start);
      if (start.read) ++outside_starts_;
    }
    if (!start.read) {
      Run(start);  // what pausing again asks for
      return;
    }
    StartRead(&in_);
    Actions a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --outside_starts_;
      MaybeFinishLocked(&a);
    }
    Run(a);
  }

  // Ends a stream the server does not take (it stops, or is over its
  // memory bound); it never joins the registry, so OnDone leaves no trace.
  void Refuse(Status why) {
    refused_ = true;
    End(std::move(why));
  }
  bool refused() const { return refused_; }  // set before Begin, read in OnDone

  const std::string& last_name() const { return last_name_; }  // only after OnDone
  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }
  size_t queued_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return outq_.bytes();
  }

  // --- reactions ---
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  struct Actions {
    const grpc::ByteBuffer* write = nullptr;
    grpc::WriteOptions write_options;
    bool read = false;
    bool finish = false;
    grpc::Status finish_status;
    bool over_bound = false;  // a read paused on the server's memory bound
  };

  void Run(const Actions& a);  // after ServerImpl: it may ask it for memory

  bool CanReadLocked() const { return !reading_ && !read_closed_ && !finish_wanted_; }

  // Flow control: stop reading while the peer's replies (echo) or the
  // handler's backlog (custom) is full; HTTP/2 then pushes back on the client.
  // Flow control: stop reading while the peer's replies (echo) or the
  // handler's backlog (custom) is full; HTTP/2 then pushes back on the client.
  bool QueueFullLocked() const {
    switch (mode_) {
      case Mode::kEcho: return outq_.Full(send_queue_limit_, send_queue_bytes_);
      case Mode::kCustom:
        return undelivered_ >= recv_window_ || undelivered_bytes_ >= recv_window_bytes_;
      case Mode::kBroadcast: return false;
    }
    return false;
  }

  // Starts a read unless a full queue or the server's memory bound holds it
  // back; then the read stays paused until the queue drains or another
  // stream releases memory (ResumeRead).
  void StartReadLocked(Actions* a) {
    if (!CanReadLocked()) return;
    if (QueueFullLocked()) {
      read_paused_ = true;
      return;
    }
    if (memory_->Over() && WaitForMemoryLocked()) {
      read_paused_ = true;
      a->over_bound = true;
      return;
    }
    reading_ = true;
    a->read = true;
  }

  // Asks to be resumed once the server is back under its memory bound;
  // false when it already is. Weak: a stream that ends meanwhile is gone.
  bool WaitForMemoryLocked() {
    if (memory_waiter_) return true;  // one registration per stream is enough
    std::weak_ptr<Session> weak = weak_from_this();
    memory_waiter_ = memory_->WaitForRoom([weak] {
      if (auto self = weak.lock()) self->ResumeRead(/*from_waiter=*/true);
    });
    return memory_waiter_;
  }

  void StartWriteLocked(Actions* a) {
    a->write = outq_.StartWrite(&a->write_options);
  }

  void MaybeFinishLocked(Actions* a) {
    if (!finish_wanted_ || finish_called_ || outq_.writing() || outside_starts_ > 0) return;
    if (finish_status_.ok() && !outq_.empty()) return;  // Complete drains first
    finish_called_ = true;
    a->finish = true;
    a->finish_status = ToGrpc(finish_status_);
  }

  // Keeps the write in flight (gRPC still reads it), drops the rest.
  void DropQueuedLocked() { outq_.DropAllButInFlight(); }

  bool WaitForRoomLocked(std::unique_lock<std::mutex>& lock, Timeout timeout, size_t bytes) {
    auto room = [&] {
      return finish_wanted_ || outq_.HasRoom(send_queue_limit_, send_queue_bytes_, bytes);
    };
    if (timeout < Timeout::zero()) {
      room_cv_.wait(lock, room);
    } else if (!room_cv_.wait_for(lock, Bounded(timeout), room)) {
      return false;
    }
    return !finish_wanted_;
  }

  ServerImpl* const server_;  // outlives every session's OnDone (Stop waits)
  grpc::CallbackServerContext* const ctx_;  // valid until OnDone returns
  const uint64_t id_;
  const Mode mode_;
  const size_t max_message_bytes_;
  const size_t send_queue_limit_;
  const size_t send_queue_bytes_;
  const size_t recv_window_;
  const size_t recv_window_bytes_;
  const std::string peer_;
  const int conn_fd_;
  const uint64_t conn_seq_;
  const std::shared_ptr<MemoryAccount> memory_;  // the server's; shared, as handles outlive it
  std::multimap<std::string, std::string> metadata_;
  std::atomic<void*> host_data_{nullptr};
  std::shared_ptr<Session> self_;  // reset in OnDone

  mutable std::mutex mu_;
  std::condition_variable room_cv_;
  grpc::ByteBuffer in_;            // the read in flight fills it
  SendQueue outq_;
  bool reading_ = false;
  bool read_paused_ = false;
  bool read_closed_ = false;       // client half-closed (or the call broke)
  size_t undelivered_ = 0;         // custom: OnMessage events not yet run
  size_t undelivered_bytes_ = 0;   // and their bytes, charged to memory_
  int outside_starts_ = 0;         // reads being started off a reaction thread
  bool cancelled_ = false;
  bool finish_wanted_ = false;
  bool finish_called_ = false;
  bool ended_by_server_ = false;   // End() chose the status; a later cancel keeps it
  bool refused_ = false;
  bool memory_waiter_ = false;     // a resume callback is registered with memory_
  Status finish_status_;
  std::string last_name_;
  uint64_t messages_read_ = 0;
};

class ServerImpl final : public Server, public Chat::WithRawCallbackMethod_chat<Chat::Service> {
  // What the server knows of a client connection, by descriptor.
  struct Conn {
    uint64_t seq = 0;
    std::string peer;
    std::chrono::steady_clock::time_point window_start;
    int cancels = 0;  // empty streams cancelled since window_start
    size_t live = 0;  // streams not yet done
    bool closed = false;
  };
 public:
  explicit ServerImpl(const ServerOptions& options)
      : options_(options), memory_(std::make_shared<MemoryAccount>(options.max_memory_bytes)) {
    if (options_.mode == Mode::kCustom) {
      int n = options_.dispatcher_threads > 0 ? options_.dispatcher_threads : 1;
      for (int i = 0; i < n; ++i) dispatchers_.push_back(std::make_unique<Dispatcher>());
    }
  }

  ~ServerImpl() override {
    int cut = 0;
    Stop(kNoWait, &cut);
  }

  Status Init() {
    ListenAddress address;
    Status s = ParseListenAddress(options_.address, &address);
    if (s.ok()) s = Listener::Open(address, &listener_);
    if (!s.ok()) return s;
    port_ = listener_->port();
    // No listening port for gRPC: the listener hands it connections.
    grpc::ServerBuilder builder;
    builder.RegisterService(this);
    builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
    builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
    if (options_.keepalive_ms > 0) {
      builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options_.keepalive_ms);
      builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options_.keepalive_timeout_ms);
      builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    }
    // Clients may ping once a second (libchat clients' keepalive_ms floor;
    // half that here, so a ping that arrives early is no strike). gRPC's
    // default of five minutes would answer them with GOAWAY.
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
    // Rapid reset again: gRPC parses all it reads before any call runs, so
    // with big reads a whole flood becomes calls before the first one can
    // be seen cancelled. Small reads let that happen between them, and the
    // connection is closed early (NoteEmptyCancel). No throughput cost was
    // measured (1 MB and 100-byte messages).
    builder.AddChannelArgument(GRPC_ARG_TCP_READ_CHUNK_SIZE, kReadChunkBytes);
    builder.AddChannelArgument(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, kReadChunkBytes);
    // No gRPC ResourceQuota: under pressure gRPC 1.51 cancels streams
    // (RESOURCE_EXHAUSTED) rather than slowing them down; the server's own
    // bound pauses reading instead, and HTTP/2 windows bound the transport.
    ChatTsanRelease(this);  // constructed before gRPC's threads call chat()
    server_ = builder.BuildAndStart();
    if (!server_) return Status(Code::kUnavailable, "cannot start the gRPC server");
    listener_->Start([this](int fd, std::string peer) { OnAccept(fd, std::move(peer)); });
    return Status::Ok();
  }

  // On the listener's thread: remember who the connection is, then give it
  // to gRPC, which owns the descriptor from then on.
  void OnAccept(int fd, std::string peer) {
    {
      std::lock_guard<std::mutex> lock(conns_mu_);
      Conn c;  // replaces what an earlier connection on this number left
      c.seq = ++conn_seq_;
      c.peer = std::move(peer);
      c.window_start = std::chrono::steady_clock::now();
      conns_[fd] = std::move(c);
    }
    grpc::AddInsecureChannelFromFd(server_.get(), fd);
  }

  // The connection a new call came on, which counts it as one more live
  // stream of it. gRPC names connections it was handed by descriptor
  // ("fd:12"); the listener recorded the real peer.
  Connection ConnectionOf(const std::string& grpc_peer) {
    Connection c;
    c.peer = grpc_peer;
    if (grpc_peer.rfind("fd:", 0) != 0) return c;
    int fd = std::atoi(grpc_peer.c_str() + 3);
    std::string why;
    {
      std::lock_guard<std::mutex> lock(conns_mu_);
      auto it = conns_.find(fd);
      if (it == conns_.end()) return c;
      Conn& conn = it->second;
      c.fd = fd;
      c.seq = conn.seq;
      c.peer = conn.peer;
      ++conn.live;
      if (conn.live * kStreamOverheadBytes > options_.max_memory_bytes / 2 &&
          CloseLocked(fd, &conn)) {
        why = std::to_string(conn.live) + " streams alive at once, over half the memory bound";
      }
    }
    if (!why.empty()) LogRapidReset(c.peer, why);
    return c;
  }

  // A stream of connection (fd, seq) is done.
  void StreamGone(int fd, uint64_t seq) {
    if (fd < 0) return;
    std::lock_guard<std::mutex> lock(conns_mu_);
    auto it = conns_.find(fd);
    if (it != conns_.end() && it->second.seq == seq) --it->second.live;
  }

  // A stream of connection (fd, seq) was cancelled before any message went
  // either way. Too many of those too fast: close the connection.
  void NoteEmptyCancel(int fd, uint64_t seq) {
    if (fd < 0) return;
    std::string peer, why;
    {
      std::lock_guard<std::mutex> lock(conns_mu_);
      auto it = conns_.find(fd);
      if (it == conns_.end() || it->second.seq != seq) return;
      Conn& c = it->second;
      auto now = std::chrono::steady_clock::now();
      if (now - c.window_start > std::chrono::seconds(1)) {
        c.window_start = now;
        c.cancels = 0;
      }
      if (++c.cancels <= kMaxEmptyCancelsPerSecond || !CloseLocked(fd, &c)) return;
      peer = c.peer;
      why = std::to_string(c.cancels) +
            " streams cancelled within a second before any message went either way";
    }
    LogRapidReset(peer, why);
  }

  // Closes connection `c` under conns_mu_ (which OnAccept takes before a
  // descriptor number can be reused): gRPC owns the descriptor and may
  // have closed it already, so it is touched only while it still is this
  // connection (same peer address). Reading what is queued on it makes
  // gRPC's next read see the end at once, instead of parsing every frame
  // the flood left in the socket. False if already closed or gone.
  bool CloseLocked(int fd, Conn* c) {
    if (c->closed) return false;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
        PeerString(ss, len) != c->peer) {
      return false;
    }
    c->closed = true;
    shutdown(fd, SHUT_RDWR);
    char sink[16384];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
    return true;
  }

  static void LogRapidReset(const std::string& peer, const std::string& why) {
    gpr_log(GPR_ERROR, "libchat: closed the connection from %s: %s (rapid reset)", peer.c_str(),
            why.c_str());
  }

  int port() const override { return port_; }

  Status Stop(Timeout grace, int* cut) override {
    *cut = 0;
    if (grace < Timeout::zero()) return Status(Code::kBadArgument, "grace must be >= 0 ms");
    for (auto& d : dispatchers_) {
      if (d->IsCurrentThread()) {
        return Status(Code::kBusy, "cannot stop a server from its own handler");
      }
    }
    std::lock_guard<std::mutex> stop_lock(stop_mu_);
    if (!server_) return Status::Ok();  // already stopped

    // Graceful phase: streams arriving now are refused (see chat()), open
    // ones may finish by themselves until the deadline. gRPC is not shut
    // down yet, so nothing but us ends a stream and the count is exact.
    stopping_.store(true);
    listener_->Close();  // new connections are refused from now on
    auto deadline = std::chrono::steady_clock::now() + Bounded(grace);
    std::vector<std::shared_ptr<Session>> left;
    {
      std::unique_lock<std::mutex> lock(registry_mu_);
      registry_cv_.wait_until(lock, deadline, [&] { return live_.empty(); });
      for (auto& [id, session] : live_) left.push_back(session);
    }
    // Cut what is left. Reset streams whose last write is stuck behind a
    // peer that does not read, so they end now rather than never.
    for (auto& session : left) {
      if (session->End(Status(Code::kUnavailable, "server is shutting down"), /*reset=*/true).ok()) {
        ++*cut;
      }
    }
    left.clear();
    // Let the statuses just given leave (each stream's OnDone comes once its
    // status is written; streams stuck behind a peer were reset above), so
    // clients read UNAVAILABLE rather than the CANCELLED of a shutdown that
    // overtook it. Bounded: after kCutFlush gRPC cancels whatever is still
    // finishing, closes idle connections at once, and returns when every
    // OnDone ran.
    {
      std::unique_lock<std::mutex> lock(registry_mu_);
      registry_cv_.wait_for(lock, kCutFlush, [&] { return live_.empty(); });
    }
    server_->Shutdown(std::chrono::system_clock::now());
    {
      // Pairs with the registry updates of the last OnDones, which reached
      // this thread only through gRPC's Shutdown.
      std::lock_guard<std::mutex> lock(registry_mu_);
      room_.reset();
    }
    {
      // Likewise for the connection table: refused streams touch it in
      // their OnDone without passing through the registry.
      std::lock_guard<std::mutex> lock(conns_mu_);
      conns_.clear();
    }
    memory_->Clear();
    for (auto& d : dispatchers_) d->Shutdown();  // every handler event has run
    server_.reset();
    return Status::Ok();
  }

  // --- the raw /Chat/chat method ---
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* chat(
      grpc::CallbackServerContext* ctx) override {
    ChatTsanAcquire(this);
    uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
    auto session =
        std::make_shared<Session>(this, ctx, id, options_, memory_, ConnectionOf(ctx->peer()));
    Session* reactor = session.get();
    // Refused streams are never seen by the handler nor counted by Stop.
    if (stopping_.load()) {
      // As gRPC itself refuses calls once shut down.
      reactor->Refuse(Status(Code::kUnavailable, "server is shutting down"));
      reactor->Begin(std::move(session));
      return reactor;
    }
    if (memory_->Over()) RelieveMemory();  // built-in modes: cut the slowest reader
    if (memory_->Over()) {
      reactor->Refuse(Status(Code::kResourceExhausted,
                             "server is over its memory bound (max_memory_bytes)"));
      reactor->Begin(std::move(session));
      return reactor;
    }
    memory_->Charge(kStreamOverheadBytes);  // released in Remove
    {
      std::lock_guard<std::mutex> lock(registry_mu_);
      live_.emplace(id, session);
      if (options_.mode == Mode::kBroadcast) RebuildRoomLocked();
    }
    if (options_.mode == Mode::kCustom) {
      Post(*session, [handler = options_.handler, session] { handler->OnOpen(session); });
    }
    reactor->Begin(std::move(session));
    return reactor;
  }

  // --- used by sessions ---

  void Post(const Session& session, std::function<void()> task) {
    dispatchers_[session.id() % dispatchers_.size()]->Post(std::move(task));
  }

  const std::shared_ptr<Handler>& handler() const { return options_.handler; }

  // A stream paused on the memory bound. In the built-in modes the stream
  // holding the most queued replies is the slowest reader: it is cut with
  // RESOURCE_EXHAUSTED, as a room cuts a member that cannot keep up, so the
  // other clients keep being served. Custom mode leaves that choice to the
  // host: its streams only pause. One scan at a time; a stream holding
  // less than kMinCutShare of the bound is not worth cutting.
  void RelieveMemory() {
    if (options_.mode == Mode::kCustom) return;
    // One scan at a time; a call that finds one running makes it go round
    // again, so no request is lost.
    relieve_again_ = true;
    if (relieving_.exchange(true)) return;
    struct Done {
      std::atomic<bool>* flag;
      ~Done() { flag->store(false); }
    } done{&relieving_};
    while (relieve_again_.exchange(false)) {
      while (memory_->Over()) {
        std::shared_ptr<Session> slowest;
        size_t most = 0;
        {
          std::lock_guard<std::mutex> lock(registry_mu_);
          for (auto& [id, session] : live_) {
            size_t held = session->queued_bytes();
            if (held > most) {
              most = held;
              slowest = session;
            }
          }
        }
        if (!slowest || most < options_.max_memory_bytes / kMinCutShare) break;
        // Forced: a client that half-closed and stopped reading still holds
        // its replies, and is cut like any other.
        if (!slowest->End(Status(Code::kResourceExhausted,
                                 "the server is over its memory bound and this stream's "
                                 "client reads the slowest"),
                          /*reset=*/true, /*force=*/true)
                 .ok()) {
          break;  // finishing already: its bytes leave with its last write
        }
      }
    }
  }

  // Sends `line` to every open stream. A member whose queue is full is too
  // slow for the room: it is cut with RESOURCE_EXHAUSTED rather than letting
  // memory grow or the whole room wait for it.
  void Broadcast(const grpc::ByteBuffer& line) {
    std::shared_ptr<const std::vector<std::shared_ptr<Session>>> room;
    {
      std::lock_guard<std::mutex> lock(registry_mu_);
      room = room_;
    }
    if (!room) return;
    for (const auto& member : *room) {
      Status s = member->Enqueue(line, kNoWait);
      if (s.code() == Code::kWouldBlock) {
        member->End(Status(Code::kResourceExhausted,
                           "send queue full: the client reads too slowly for the room"),
                    /*reset=*/true);
      }
    }
  }

  void Remove(const std::shared_ptr<Session>& session, const Status& final_status) {
    if (session->refused()) return;
    memory_->Release(kStreamOverheadBytes);
    memory_->WakeIfRoom();
    bool empty;
    {
      std::lock_guard<std::mutex> lock(registry_mu_);
      live_.erase(session->id());
      if (options_.mode == Mode::kBroadcast) RebuildRoomLocked();
      empty = live_.empty();
    }
    if (empty) registry_cv_.notify_all();
    // A room over its memory bound skips the notice: sent to every member
    // it would push members that read fine over their queues as well.
    if (options_.mode == Mode::kBroadcast && !memory_->Over()) {
      const std::string& who =
          session->last_name().empty() ? std::to_string(session->id()) : session->last_name();
      Broadcast(EncodeStringValue(who + " left the chat"));
    } else if (options_.mode == Mode::kCustom) {
      Post(*session, [handler = options_.handler, session, final_status] {
        handler->OnClose(session, final_status);
      });
    }
  }

 private:
  // Broadcast reads a snapshot of the room, so a message to 1,000 members
  // takes the registry lock once and copies nothing.
  void RebuildRoomLocked() {
    auto room = std::make_shared<std::vector<std::shared_ptr<Session>>>();
    room->reserve(live_.size());
    for (auto& [id, session] : live_) room->push_back(session);
    room_ = std::move(room);
  }

  const ServerOptions options_;
  const std::shared_ptr<MemoryAccount> memory_;
  std::atomic<bool> relieving_{false};
  std::atomic<bool> relieve_again_{false};
  std::vector<std::unique_ptr<Dispatcher>> dispatchers_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<Listener> listener_;


  std::mutex conns_mu_;
  std::unordered_map<int, Conn> conns_;  // by descriptor; bounded by the fd table
  uint64_t conn_seq_ = 0;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;

  std::mutex registry_mu_;
  std::condition_variable registry_cv_;
  std::unordered_map<uint64_t, std::shared_ptr<Session>> live_;
  std::shared_ptr<const std::vector<std::shared_ptr<Session>>> room_;
};

void Session::Run(const Actions& a) {
  if (a.write) StartWrite(a.write, a.write_options);
  if (a.read) StartRead(&in_);
  if (a.finish) Finish(a.finish_status);
  if (a.over_bound) server_->RelieveMemory();
}

void Session::OnReadDone(bool ok) {
  ChatTsanAcquire(this);
  Actions a;
  if (!ok) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      reading_ = false;
      read_closed_ = true;
      if (mode_ == Mode::kCustom) {
        if (!cancelled_ && !finish_wanted_) {
          // A client cancel can also end the reads, with OnCancel arriving
          // just after; checking again on the dispatcher filters most of
          // those out. Posted under the lock, like messages.
          auto self = shared_from_this();
          server_->Post(*this, [self] {
            if (!self->cancelled()) self->server_->handler()->OnComplete(self);
          });
        }
      } else if (!finish_wanted_) {  // built-in modes complete when the client does
        finish_wanted_ = true;
        finish_status_ = Status::Ok();
        MaybeFinishLocked(&a);
      }
    }
    Run(a);
    return;
  }

  std::string name, message;
  if (!DecodeChatMessage(in_, &name, &message)) {
    // Not a ChatMessage (bad encoding or invalid UTF-8): fail the stream
    // rather than guess; nothing after it is read.
    {
      std::lock_guard<std::mutex> lock(mu_);
      reading_ = false;
    }
    End(Status(Code::kInvalidArgument,
               "received bytes are not a valid ChatMessage (string fields must be UTF-8)"));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++messages_read_;
  }
  switch (mode_) {
    case Mode::kEcho: {
      // Answered here, on the reaction thread: no hop, no handler.
      grpc::ByteBuffer reply = EncodeLine(name, message);
      std::lock_guard<std::mutex> lock(mu_);
      reading_ = false;
      if (!finish_wanted_) {
        if (outq_.Push(std::move(reply))) StartWriteLocked(&a);
      }
      StartReadLocked(&a);
      break;
    }
    case Mode::kBroadcast: {
      grpc::ByteBuffer line = EncodeLine(name, message);
      {
        std::lock_guard<std::mutex> lock(mu_);
        reading_ = false;
        last_name_ = std::move(name);
      }
      server_->Broadcast(line);
      std::lock_guard<std::mutex> lock(mu_);
      StartReadLocked(&a);
      break;
    }
    case Mode::kCustom: {
      auto self = shared_from_this();
      size_t bytes = name.size() + message.size();
      std::lock_guard<std::mutex> lock(mu_);
      reading_ = false;
      ++undelivered_;
      undelivered_bytes_ += bytes;
      memory_->Charge(bytes);
      // Posted under the lock: once it is released, AckDelivered on the
      // dispatcher may start the next read, whose event must come after.
      server_->Post(*this, [self, bytes, name = std::move(name), message = std::move(message)] {
        struct Ack {  // also when OnMessage throws or the thread is unwound
          Session* s; size_t n;
          ~Ack() { s->AckDelivered(n); }
        } ack{self.get(), bytes};
        self->server_->handler()->OnMessage(self, name, message);
      });
      StartReadLocked(&a);
      break;
    }
  }
  Run(a);
}

void Session::OnWriteDone(bool ok) {
  ChatTsanAcquire(this);
  Actions a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    bool more = outq_.WriteDone(ok);
    if (!ok) {
      // The stream broke under us (peer gone or cancelled): nothing more can
      // be written, but the RPC must still be finished exactly once.
      if (!finish_wanted_) {
        finish_wanted_ = true;
        finish_status_ = Status(Code::kCancelled, "write failed: the client is gone");
      }
    } else if (more) {
      StartWriteLocked(&a);
    }
    MaybeFinishLocked(&a);
    if (read_paused_ && !QueueFullLocked()) {
      read_paused_ = false;
      StartReadLocked(&a);
    }
  }
  room_cv_.notify_all();
  memory_->WakeIfRoom();  // queued bytes may have left
  Run(a);
}

void Session::OnCancel() {
  ChatTsanAcquire(this);
  Actions a;
  bool empty = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Counted here rather than in OnDone, which comes two completions
    // later: in a flood every completion waits behind new calls.
    empty = !ended_by_server_ && messages_read_ == 0 && outq_.sent() == 0;
    cancelled_ = true;
    if (!finish_wanted_) {
      finish_wanted_ = true;
      finish_status_ = Status(Code::kCancelled, "cancelled");
    }
    DropQueuedLocked();
    MaybeFinishLocked(&a);
  }
  room_cv_.notify_all();
  memory_->WakeIfRoom();  // queued bytes may have left
  Run(a);
  if (empty) server_->NoteEmptyCancel(conn_fd_, conn_seq_);
}

void Session::OnDone() {
  ChatTsanAcquire(this);
  Status final_status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_ && !ended_by_server_) {
      bool expired = ctx_->deadline() <= std::chrono::system_clock::now();
      final_status = expired ? Status(Code::kDeadlineExceeded, "deadline exceeded")
                             : Status(Code::kCancelled, "cancelled by the client");
    } else {
      final_status = finish_status_;
    }
  }
  server_->StreamGone(conn_fd_, conn_seq_);
  room_cv_.notify_all();
  memory_->WakeIfRoom();  // queued bytes may have left
  std::shared_ptr<Session> self = std::move(self_);
  server_->Remove(self, final_status);
}

}  // namespace

}  // namespace internal

Status Server::Start(const ServerOptions& options, std::unique_ptr<Server>* out) {
  if (options.mode == Mode::kCustom && !options.handler) {
    return Status(Code::kBadArgument, "custom mode needs a handler");
  }
  if (options.send_queue_limit == 0 || options.recv_window == 0 || options.max_message_bytes == 0 ||
      options.send_queue_bytes == 0 || options.recv_window_bytes == 0 ||
      options.max_memory_bytes == 0 || options.max_message_bytes > static_cast<size_t>(INT32_MAX)) {
    return Status(Code::kBadArgument, "queue limits and the message size must be positive");
  }
  if (options.keepalive_ms < 0 || options.keepalive_timeout_ms <= 0) {
    return Status(Code::kBadArgument, "keepalive_ms must be >= 0, keepalive_timeout_ms positive");
  }
  // gRPC would take a malformed address its own way (a port above 65535
  // truncated to 16 bits, a missing one read as 443): check it before
  // anything binds.
  Status address = internal::ParseListenAddress(options.address, nullptr);
  if (!address.ok()) return address;
  internal::KeepCallbackQueueAlive();
  auto server = std::make_unique<internal::ServerImpl>(options);
  Status s = server->Init();
  if (!s.ok()) return s;
  *out = std::move(server);
  return Status::Ok();
}

}  // namespace chat
