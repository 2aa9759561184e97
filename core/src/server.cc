// The server: its listener, its completion queues and their threads, the
// registry of open streams, the built-in broadcast room, and stopping.
// Streams themselves are in server_stream.cc; connections (rapid reset) in
// connections.cc.
#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/server_posix.h>

#include <cxxabi.h>

#include <algorithm>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "address.h"
#include "cancel.h"
#include "chat/server.h"
#include "connections.h"
#include "cq.h"
#include "discovery.h"
#include "dispatcher.h"
#include "health.h"
#include "listener.h"
#include "memory.h"
#include "room.h"
#include "reflection.h"
#include "server_stream.h"
#include "tls.h"
#include "wire.h"

namespace chat {
namespace internal {
namespace {

constexpr int kReadChunkBytes = 4096;  // see ServerImpl::Init

// Streams requested from gRPC ahead of time on each queue: a new stream
// waits for none of them to be asked for, and gRPC holds the calls beyond
// them until we take them, so a flood cannot outrun the server.
constexpr int kRequestsPerQueue = 4;

// How long a stop waits for the statuses of the streams it cut to be
// written before gRPC's shutdown cancels what is left (ServerImpl::Stop).
constexpr auto kCutFlush = std::chrono::seconds(1);
// How long a stop lets the writes in flight of the streams it cut complete
// before it resets those that are stuck (a peer that does not read).
constexpr auto kStuckWrite = std::chrono::milliseconds(200);
// How long a stop waits, after gRPC's shutdown, for the requests and the
// health and reflection calls to end before it shuts the queues down.
// They end by themselves (the shutdown fails or cancels them all, and no
// peer is waited for): the bound only keeps a stop from hanging should
// gRPC never report one, a starved queue thread gets the time it needs.
constexpr auto kCallsEnd = std::chrono::seconds(10);

// Over its memory bound, a built-in server cuts the stream that holds the
// most, if that is at least this fraction of the bound (RelieveMemory).
constexpr size_t kMinCutShare = 64;
// How long a new stream waits for a scan of another thread to relieve the
// memory bound before it is refused (RelieveMemoryAndWait). A scan is a
// walk of the registry and a few cuts: far shorter.
constexpr auto kReliefWait = std::chrono::milliseconds(100);

// Leaves a process-wide ServerBuilder plugin out of one server.
class WithoutPlugin final : public grpc::ServerBuilderOption {
 public:
  explicit WithoutPlugin(std::string name) : name_(std::move(name)) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [&](const auto& p) { return p->name() == name_; }),
                   plugins->end());
  }

 private:
  const std::string name_;
};

class ServerImpl final : public Server, public SessionHost, public RequestGate {
 public:
  explicit ServerImpl(const ServerOptions& options)
      : options_(options),
        limits_{options.mode, options.queue != nullptr,
                options.queue != nullptr && options.hold_until_consumed, options.max_message_bytes,
                options.send_queue_limit,
                options.send_queue_bytes, options.recv_window, options.recv_window_bytes,
                !options.tls_cert_chain.empty()},
        memory_(std::make_shared<MemoryAccount>(options.max_memory_bytes)),
        conns_(options.max_memory_bytes) {
    if (options_.mode == Mode::kCustom && !options_.queue) {
      int n = options_.dispatcher_threads > 0 ? options_.dispatcher_threads : 1;
      for (int i = 0; i < n; ++i) dispatchers_.push_back(std::make_unique<Dispatcher>());
    }
  }

  ~ServerImpl() override {
    int cut = 0;
    Stop(kNoWait, &cut);
  }

  Status Init() {
    grpc::ServerBuilder builder;
    std::shared_ptr<grpc::ServerCredentials> tls;
    Status s = TlsCredentials(&tls);
    if (!s.ok()) return s;
    if (tls) {
      // gRPC 1.51 takes connections by descriptor on plaintext only, so a
      // TLS server listens through gRPC and loses what the own listener
      // adds: the EMFILE backoff (gRPC's listener stops for good after one)
      // and the per-connection rapid-reset cut (ConnectionOf finds no
      // descriptor in "ipv4:..." peers, so ServerConnections ignores them).
      builder.AddListeningPort(options_.address, tls, &port_);
      // gRPC sets SO_REUSEPORT by default: a second server on a port in use
      // would share it instead of failing as the own listener does.
      builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    } else {
      ListenAddress address;
      s = ParseListenAddress(options_.address, &address);
      if (s.ok()) s = Listener::Open(address, &listener_);
      if (!s.ok()) return s;
      port_ = listener_->port();
      // No listening port for gRPC: the listener hands it connections.
    }
    // Every method comes to the generic service as raw bytes: no generated
    // code, nothing registered in protobuf's process-wide pool.
    builder.RegisterAsyncGenericService(&service_);
    builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
    builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
    if (options_.compression != Compression::kNone) {
      builder.SetDefaultCompressionAlgorithm(
          static_cast<grpc_compression_algorithm>(options_.compression));
    }
    if (options_.keepalive_ms > 0) {
      builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options_.keepalive_ms);
      builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options_.keepalive_timeout_ms);
      builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    }
    // Clients may ping once a second (libchat clients' keepalive_ms floor;
    // half that here, so a ping that arrives early is no strike). gRPC's
    // default of five minutes would answer them with GOAWAY.
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
    // A connection with more streams alive than half the memory bound
    // allows is closed (ServerConnections::Of). Ask for half of that in
    // SETTINGS (MAX_CONCURRENT_STREAMS), so a well-behaved client waits for
    // a slot instead of having its connection closed under it. Half, not
    // all: a stream leaves our count only once it is over here, after its
    // HTTP/2 slot was freed, so a client that refills slots at once runs
    // ahead of the count (513 of 512 was seen).
    int per_connection = static_cast<int>(std::min<size_t>(
        INT32_MAX, std::max<size_t>(1, options_.max_memory_bytes / 4 / kStreamOverheadBytes)));
    if (options_.max_concurrent_streams > 0) {
      per_connection = std::min(per_connection, options_.max_concurrent_streams);
    }
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, per_connection);
    // Channel arguments of the builder reach the connections the listener
    // hands over too (AddInsecureChannelFromFd uses the server's): the
    // control tests check it.
    if (options_.max_connection_age_ms > 0) {
      builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, options_.max_connection_age_ms);
      if (options_.max_connection_age_grace_ms > 0) {
        builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                                   options_.max_connection_age_grace_ms);
      }
    }
    if (options_.max_connection_idle_ms > 0) {
      builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, options_.max_connection_idle_ms);
    }
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
    // Health and reflection: raw services beside the generic one
    // (discovery.h says why). A host may have turned gRPC's own on for all
    // its servers (EnableDefaultHealthCheckService, or linking
    // grpc++_reflection, whose plugin joins every ServerBuilder): for this
    // server ours replace them, rather than clash on the method names.
    if (options_.health) {
      health_ = std::make_unique<HealthService>();
      builder.RegisterService(health_.get());
      builder.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
    }
    if (options_.reflection) {
      builder.SetOption(std::make_unique<WithoutPlugin>("proto_server_reflection"));
      std::vector<std::string> services = {"Chat", "grpc.reflection.v1alpha.ServerReflection",
                                           "grpc.reflection.v1.ServerReflection"};
      if (options_.health) services.push_back("grpc.health.v1.Health");
      reflection_ = std::make_unique<ReflectionService>(std::move(services));
      builder.RegisterService(reflection_.get());
    }
    // The room before the port opens (a TLS server's opens with
    // BuildAndStart): every stream admitted finds it.
    if (options_.mode == Mode::kBroadcast) {
      RoomOptions room;
      room.url = options_.room_url;
      room.name = options_.room_name;
      room.max_len = options_.room_max_len;
      Status opened = RoomImpl::Create(room, &room_);  // checked by Server::Start
      if (!opened.ok()) return opened;
    }
    int queues = options_.completion_queues > 0 ? options_.completion_queues : DefaultServerQueueCount();
    // Only the first queue's thread drains at first: the others wait on
    // standby (see QueueWatch and DefaultServerQueueCount).
    const int awake = options_.all_queues_awake ? queues : 1;
    std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs;
    for (int i = 0; i < queues; ++i) cqs.push_back(builder.AddCompletionQueue());
    server_ = builder.BuildAndStart();
    for (int i = 0; i < queues; ++i) {
      cqs_.push_back(cqs[i].get());
      std::string name = "chat-srv-cq" + std::to_string(i);
      threads_.push_back(std::make_unique<CqThread>(std::move(cqs[i]), name.c_str(), i >= awake));
    }
    if (!server_ && tls) {
      return Status(Code::kCannotListen,
                    "cannot listen on '" + options_.address +
                        "' with TLS (address in use or not local, or gRPC refused the "
                        "certificate or key: see the log)");
    }
    if (!server_) return Status(Code::kSystem, "cannot start the gRPC server");
    {
      std::lock_guard<std::mutex> lock(accept_mu_);
      accepting_ = true;
      for (int q = 0; q < awake; ++q) {
        for (int k = 0; k < kRequestsPerQueue; ++k) RequestLocked(q);
      }
    }
    // On the first queue: their calls are few and brief.
    if (health_) health_->Start(this, cqs_[0]);
    if (reflection_) reflection_->Start(this, cqs_[0]);
    // A lone queue thread cannot see a rapid-reset burst while it parses it:
    // QueueWatch wakes a standby one, or cuts the connection. With neither
    // a standby thread nor a connection of its own to cut, it has no job.
    if (awake < queues || listener_) {
      std::vector<const CqThread*> watched;
      for (auto& t : threads_) watched.push_back(t.get());
      queue_watch_ = std::make_unique<QueueWatch>(&conns_, std::move(watched), awake,
                                                  options_.max_memory_bytes,
                                                  [this](size_t q) { WakeQueue(q); });
    }
    if (!listener_) return Status::Ok();
    listener_->Start([this](int fd, std::string peer) {
      // On the listener's thread: remember who the connection is, then give
      // it to gRPC, which owns the descriptor from then on.
      conns_.Accepted(fd, std::move(peer));
      grpc::AddInsecureChannelFromFd(server_.get(), fd);
    });
    return Status::Ok();
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

    // Graceful phase: streams arriving now are refused (Admit), open ones
    // may finish by themselves until the deadline. gRPC is not shut down
    // yet, so nothing but us ends a stream; and as Admit decides under the
    // registry lock, every stream is either refused or counted below.
    {
      std::lock_guard<std::mutex> lock(registry_mu_);
      stopping_ = true;
    }
    if (health_) health_->SetNotServing();  // for the whole stop, grace included
    if (listener_) listener_->Close();  // new connections are refused from now on
    auto deadline = std::chrono::steady_clock::now() + Bounded(grace);
    std::vector<std::shared_ptr<Session>> left;
    {
      std::unique_lock<std::mutex> lock(registry_mu_);
      if (grace > Timeout::zero()) {  // it may be long: a cancel may end it
        AllowCancel cancellable;      // (not a destroy's stop: no grace)
        registry_cv_.wait_until(lock, deadline, [&] { return live_.empty(); });
      }
      for (auto& [id, session] : live_) left.push_back(session);
    }
    // Cut what is left, completed streams whose replies still wait for
    // their reader included.
    const Status shutting_down(Code::kUnavailable, "server is shutting down");
    for (auto& session : left) {
      if (session->End(shutting_down, /*reset=*/false, /*force=*/true).ok()) {
        ++*cut;
        stats_.Cut();
      }
    }
    // A stream whose last write is stuck behind a peer that does not read
    // would never end: reset those, after a moment. Not at once: a write
    // the client already has may not be reported done yet (a busy queue
    // thread), and a reset then turns the client's UNAVAILABLE into
    // CANCELLED.
    {
      std::unique_lock<std::mutex> lock(registry_mu_);
      registry_cv_.wait_for(lock, kStuckWrite, [&] { return live_.empty(); });
    }
    for (auto& session : left) session->End(shutting_down, /*reset=*/true, /*force=*/true);
    left.clear();
    // Let the statuses just given leave, so clients read UNAVAILABLE rather
    // than the CANCELLED of a shutdown that overtook it. Bounded: after
    // kCutFlush gRPC cancels whatever is still finishing.
    {
      std::unique_lock<std::mutex> lock(registry_mu_);
      registry_cv_.wait_for(lock, kCutFlush, [&] { return live_.empty(); });
    }
    // Every stream is cut: no more lines for them, and the reader delivers
    // nothing while the queues go away.
    if (room_) room_->Close();
    {
      std::lock_guard<std::mutex> lock(accept_mu_);
      accepting_ = false;  // no stream is requested any more
    }
    // Cancels every call left; the streams still requested fail. Then each
    // queue drains (every session reaches Over and frees its call) and its
    // thread ends.
    server_->Shutdown(std::chrono::system_clock::now());
    // Every request still outstanding completes now, failed or (a stream
    // that arrived just before) matched. A matched one starts its done tag
    // when its queue thread takes it, and starting an operation on a queue
    // already shut down aborts the process (gRPC's "grpc_cq_begin_op"
    // assertion, seen in StopRace 1 run in 12): let the queue threads take
    // them all before the queues shut down. The sessions and the health
    // and reflection calls still open are cancelled, and their completions
    // start more operations (a failed read starts the Finish, a matched
    // request a read, a write or a Finish): each is counted until it is
    // freed (SessionOver, RequestGate). Bounded, in case.
    {
      std::unique_lock<std::mutex> lock(accept_mu_);
      accept_cv_.wait_for(lock, kCallsEnd, [&] { return requested_ == 0; });
    }
    queue_watch_.reset();  // it reads the queue threads
    for (auto& t : threads_) t->Shutdown();
    server_.reset();
    threads_.clear();
    cqs_.clear();
    conns_.Clear();
    memory_->Clear();
    for (auto& d : dispatchers_) d->Shutdown();  // every handler event has run
    return Status::Ok();
  }

  // --- SessionHost ---

  // The next request goes on the same queue. gRPC hands a connection's
  // calls to the requests of one queue first and to the others' only when
  // it has none left, so one connection's streams split unevenly (328/672
  // and 567/433 seen with 1,000 streams), and each completion scans its
  // queue's outstanding operations (cq_check_tag). Requesting on the queue
  // with the fewest streams evened the split, but failed the rapid-reset
  // test: a queue whose thread is busy parsing the flood accepts nothing,
  // so it looks emptiest and drew every request (674 MB peak).
  void Accepted(int queue, bool ok) override {
    std::lock_guard<std::mutex> lock(accept_mu_);
    if (!ok) {
      if (--requested_ == 0) accept_cv_.notify_all();
      return;
    }
    if (accepting_) RequestLocked(queue);  // the session keeps its own count
  }

  void SessionOver() override { EndCall(); }

  // --- RequestGate (health and reflection) ---

  bool BeginCall() override {
    std::lock_guard<std::mutex> lock(accept_mu_);
    if (!accepting_) return false;
    ++requested_;
    return true;
  }

  void EndCall() override {
    std::lock_guard<std::mutex> lock(accept_mu_);
    if (--requested_ == 0) accept_cv_.notify_all();
  }

  uint64_t NextId() override { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  Connection ConnectionOf(const std::string& grpc_peer) override { return conns_.Of(grpc_peer); }

  Status Admit(const std::shared_ptr<Session>& session) override {
    Status stopping(Code::kUnavailable, "server is shutting down");  // as gRPC refuses them
    if (stopping_.load()) {
      stats_.Refused();
      return stopping;
    }
    if (options_.authenticate) {
      Status verdict = Authenticate(session);
      if (!verdict.ok()) {
        stats_.Refused();
        return verdict;
      }
    }
    if (memory_->Over()) RelieveMemoryAndWait();  // built-in modes: cut the slowest reader
    if (memory_->Over()) {
      stats_.Refused();
      return Status(Code::kResourceExhausted,
                    "server is over its memory bound (max_memory_bytes)");
    }
    auto enter = [&] {
      std::lock_guard<std::mutex> lock(registry_mu_);
      if (stopping_.load()) {
        stats_.Refused();
        return stopping;
      }
      if (options_.max_streams > 0 && live_.size() >= static_cast<size_t>(options_.max_streams)) {
        stats_.Refused();
        return Status(Code::kResourceExhausted,
                      "server is at its limit of " + std::to_string(options_.max_streams) +
                          " open streams (max_streams)");
      }
      live_.emplace(session->id(), session);
      stats_.Opened();
      return Status::Ok();
    };
    if (room_) {
      // Registered as it enters the room with its history, if it asked
      // for any: it misses no line and gets none twice.
      size_t replay = 0;
      if (room_->on_redis()) {
        Status asked = ReplayAsked(*session, &replay);
        if (!asked.ok()) return asked;
      }
      Status joined = room_->JoinIf(session, replay, enter);
      if (joined.code() == Code::kClosed) {  // a stop closed the room meanwhile
        stats_.Refused();
        return stopping;
      }
      if (!joined.ok()) return joined;
    } else {
      Status entered = enter();
      if (!entered.ok()) return entered;
    }
    memory_->Charge(kStreamOverheadBytes);  // released in Finished
    if (options_.mode == Mode::kCustom) {
      if (options_.queue) {
        Event open;
        open.type = EventType::kOpen;
        open.call = session;
        open.user_data = options_.queue_user_data;
        options_.queue->Push(std::move(open));
      } else {
        Post(*session, [handler = options_.handler, session] { handler->OnOpen(session); });
      }
    }
    return Status::Ok();
  }

  bool DeliverMessage(const std::shared_ptr<Session>& session, std::string name,
                      std::string message, size_t bytes) override {
    if (options_.queue) {
      Event e;
      e.type = EventType::kMessage;
      e.call = session;
      e.user_data = options_.queue_user_data;
      e.name = std::move(name);
      e.text = std::move(message);
      e.source = session;
      e.credit = bytes;
      return options_.queue->Push(std::move(e));
    }
    Post(*session, [handler = options_.handler, session, bytes, name = std::move(name),
                    message = std::move(message)] {
      struct Ack {  // also when OnMessage throws or the thread is unwound
        Session* s;
        size_t n;
        ~Ack() { s->Drained(1, n); }
      } ack{session.get(), bytes};
      handler->OnMessage(session, name, message);
    });
    return true;
  }

  void DeliverHalfClose(const std::shared_ptr<Session>& session) override {
    if (options_.queue) {
      Event e;
      e.type = EventType::kHalfClose;
      e.call = session;
      e.user_data = options_.queue_user_data;
      e.source = session;  // stale once cancelled (EventQueue::Drain)
      options_.queue->Push(std::move(e));
      return;
    }
    // A client cancel also ends the reads, and gRPC reports the call done
    // just after; looking again on the dispatcher filters most of those out.
    Post(*session, [handler = options_.handler, session] {
      if (!session->cancelled()) handler->OnComplete(session);
    });
  }

  void DeliverWritable(const std::shared_ptr<Session>& session) override {
    Event e;
    e.type = EventType::kWritable;
    e.call = session;
    e.user_data = options_.queue_user_data;
    options_.queue->Push(std::move(e));
  }

  // A stream paused on the memory bound. In the built-in modes the stream
  // holding the most queued replies is the slowest reader: it is cut with
  // RESOURCE_EXHAUSTED, as a room cuts a member that cannot keep up, so the
  // other clients keep being served. Custom mode leaves that choice to the
  // host: its streams only pause. A stream holding less than kMinCutShare
  // of the bound is not worth cutting.
  void RelieveMemory() override {
    if (options_.mode == Mode::kCustom) return;
    // One scan at a time; a call that finds one running makes it go round
    // again, and the scanner looks once more after letting go, so no
    // request is lost between its last look and its release.
    relieve_again_ = true;
    while (relieve_again_.load() && !relieving_.exchange(true)) {
      while (relieve_again_.exchange(false)) CutSlowestWhileOver();
      relieving_.store(false);
    }
  }

  // RelieveMemory for a caller that acts on its outcome (a new stream that
  // is refused while the server stays over its bound): a scan another
  // thread is running when it asks goes round again for it, but this call
  // would return before that scan cuts anyone. Waits for it, bounded.
  void RelieveMemoryAndWait() {
    RelieveMemory();
    auto deadline = std::chrono::steady_clock::now() + kReliefWait;
    while (relieving_.load() && memory_->Over() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
  }

  void CutSlowestWhileOver() {
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
      if (!slowest || most < options_.max_memory_bytes / kMinCutShare) return;
      // Forced: a client that half-closed and stopped reading still holds
      // its replies, and is cut like any other.
      if (!slowest->End(Status(Code::kResourceExhausted,
                               "the server is over its memory bound and this stream's "
                               "client reads the slowest"),
                        /*reset=*/true, /*force=*/true)
               .ok()) {
        return;  // finishing already: its bytes leave with its last write
      }
      stats_.Cut();
    }
  }

  Status Say(std::string_view name, std::string_view message) override {
    Status said = room_->Publish(name, message);
    // Only a stopping server's room is closed, and its members are cut.
    if (said.code() == Code::kClosed) return Status(Code::kUnavailable, "the server is stopping");
    return said;
  }

  void NoteEmptyCancel(const Connection& conn) override { conns_.NoteEmptyCancel(conn); }

  StatsCounters& Counters() override { return stats_; }
  Stats stats() const override { return stats_.Snapshot(); }

  void Finished(const std::shared_ptr<Session>& session, const Status& final_status) override {
    conns_.StreamGone(session->connection());
    if (!session->admitted()) return;  // refused: never seen by the handler nor by Stop
    memory_->Release(kStreamOverheadBytes);
    memory_->WakeIfRoom();
    stats_.Closed();
    bool empty;
    {
      std::lock_guard<std::mutex> lock(registry_mu_);
      live_.erase(session->id());
      empty = live_.empty();
    }
    if (empty) registry_cv_.notify_all();
    // A room over its memory bound skips the notice: sent to every member
    // it would push members that read fine over their queues as well.
    if (room_) room_->Leave(*session);
    if (room_ && !memory_->Over()) {
      const std::string& who =
          session->last_name().empty() ? std::to_string(session->id()) : session->last_name();
      room_->Notice(who + " left the chat");  // best effort: no one to tell if it fails
    } else if (options_.mode == Mode::kCustom && options_.queue) {
      Event e;
      e.type = EventType::kClose;
      e.call = session;
      e.user_data = options_.queue_user_data;
      e.code = final_status.code();
      e.text = final_status.message();
      options_.queue->Push(std::move(e));
    } else if (options_.mode == Mode::kCustom) {
      Post(*session, [handler = options_.handler, session, final_status] {
        handler->OnClose(session, final_status);
      });
    }
  }

 private:
  // The server's TLS credentials, or null for plaintext.
  Status TlsCredentials(std::shared_ptr<grpc::ServerCredentials>* out) const {
    const ServerOptions& o = options_;
    if (o.tls_cert_chain.empty() && o.tls_private_key.empty()) {
      if (!o.tls_client_ca.empty() || o.client_cert != ClientCertMode::kNone) {
        return Status(Code::kBadArgument, "client certificates need a TLS server (tls_cert_chain)");
      }
      return Status::Ok();
    }
    if (o.tls_cert_chain.empty() || o.tls_private_key.empty()) {
      return Status(Code::kBadArgument, "a TLS server needs both a certificate chain and its key");
    }
    if ((o.client_cert == ClientCertMode::kNone) != o.tls_client_ca.empty()) {
      return Status(Code::kBadArgument,
                    "tls_client_ca and asking for client certificates go together");
    }
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    Status s = LoadPem(o.tls_cert_chain, "TLS certificate", &pair.cert_chain);
    if (s.ok()) s = LoadPem(o.tls_private_key, "TLS private key", &pair.private_key);
    grpc::SslServerCredentialsOptions ssl(
        o.client_cert == ClientCertMode::kRequire
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : o.client_cert == ClientCertMode::kRequest
                  ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                  : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    if (s.ok()) s = LoadPem(o.tls_client_ca, "TLS client CA", &ssl.pem_root_certs);
    if (!s.ok()) return s;
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    *out = grpc::SslServerCredentials(ssl);
    return Status::Ok();
  }

  // Runs the host's authenticator on a new stream (see Authenticator).
  Status Authenticate(const std::shared_ptr<Session>& session) {
    const std::string* token = nullptr;
    std::string bearer;
    auto auth = session->metadata().find("authorization");
    if (auth != session->metadata().end() && BearerToken(auth->second, &bearer)) token = &bearer;
    std::string principal;
    Status verdict;
    try {
      verdict = options_.authenticate(session, token, &principal);
    } catch (abi::__forced_unwind&) {
      throw;
    } catch (...) {
      return Status(Code::kInternal, "the server's authenticator failed");
    }
    if (verdict.ok()) {
      session->set_principal(std::move(principal));
      return verdict;
    }
    if (static_cast<int32_t>(verdict.code()) > kMaxGrpcCode) {
      return Status(Code::kInternal, std::string("the server's authenticator failed (") +
                                         CodeName(verdict.code()) + ")");
    }
    return verdict;
  }

  // "x-room-replay: N" on a stream opening into a room on Redis: the last N
  // lines of the room come first (N up to kMaxRoomReplay).
  static Status ReplayAsked(const Session& session, size_t* replay) {
    auto asked = session.metadata().find("x-room-replay");
    if (asked == session.metadata().end()) return Status::Ok();
    const std::string& n = asked->second;
    if (n.empty() || n.size() > 4 || n.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(n) > kMaxRoomReplay) {
      return Status(Code::kInvalidArgument,
                    "x-room-replay must be a number of lines from 0 to " +
                        std::to_string(kMaxRoomReplay));
    }
    *replay = std::stoul(n);
    return Status::Ok();
  }

  // Custom mode with a Handler: runs `task` on the session's dispatcher.
  void Post(const Session& session, std::function<void()> task) {
    dispatchers_[session.id() % dispatchers_.size()]->Post(std::move(task));
  }

  // On QueueWatch's thread: standby queue `q` starts draining and taking
  // calls.
  void WakeQueue(size_t q) {
    threads_[q]->Wake();
    std::lock_guard<std::mutex> lock(accept_mu_);
    if (!accepting_) return;
    for (int k = 0; k < kRequestsPerQueue; ++k) RequestLocked(static_cast<int>(q));
  }

  void RequestLocked(int queue) {
    ++requested_;
    Session::Request(this, &service_, cqs_[queue], queue, limits_, memory_);
  }

  const ServerOptions options_;
  const Session::Limits limits_;
  const std::shared_ptr<MemoryAccount> memory_;
  ServerConnections conns_;
  StatsCounters stats_;
  std::atomic<bool> relieving_{false};
  std::atomic<bool> relieve_again_{false};
  std::vector<std::unique_ptr<Dispatcher>> dispatchers_;
  grpc::AsyncGenericService service_;
  std::unique_ptr<HealthService> health_;         // options_.health
  std::unique_ptr<ReflectionService> reflection_;  // options_.reflection
  std::unique_ptr<grpc::Server> server_;
  std::vector<grpc::ServerCompletionQueue*> cqs_;  // owned by threads_
  std::vector<std::unique_ptr<CqThread>> threads_;
  int port_ = 0;
  std::unique_ptr<Listener> listener_;

  std::mutex accept_mu_;
  std::condition_variable accept_cv_;
  bool accepting_ = false;  // streams are requested from gRPC
  // Stream requests not yet completed, and health and reflection calls
  // from their request until they are freed (accept_mu_).
  int requested_ = 0;
  std::atomic<uint64_t> next_id_{1};
  std::mutex stop_mu_;

  std::mutex registry_mu_;
  std::condition_variable registry_cv_;
  std::atomic<bool> stopping_{false};  // written under registry_mu_
  std::unordered_map<uint64_t, std::shared_ptr<Session>> live_;
  std::shared_ptr<RoomImpl> room_;  // broadcast mode
  // Last, so it goes first: it reads the queue threads, and its wake-ups
  // use accept_mu_. Stop resets it before them all.
  std::unique_ptr<QueueWatch> queue_watch_;
};

}  // namespace
}  // namespace internal

Status Server::Start(const ServerOptions& options, std::unique_ptr<Server>* out) {
  if (options.mode == Mode::kCustom && !options.handler && !options.queue) {
    return Status(Code::kBadArgument, "custom mode needs a handler or an event queue");
  }
  if (options.queue && (options.mode != Mode::kCustom || options.handler)) {
    return Status(Code::kBadArgument, "an event queue serves custom mode, without a handler");
  }
  if (options.send_queue_limit == 0 || options.recv_window == 0 || options.max_message_bytes == 0 ||
      options.send_queue_bytes == 0 || options.recv_window_bytes == 0 ||
      options.max_memory_bytes == 0 || options.max_message_bytes > static_cast<size_t>(INT32_MAX)) {
    return Status(Code::kBadArgument, "queue limits and the message size must be positive");
  }
  if (options.keepalive_ms < 0 || options.keepalive_timeout_ms <= 0) {
    return Status(Code::kBadArgument, "keepalive_ms must be >= 0, keepalive_timeout_ms positive");
  }
  if (!IsCompression(static_cast<int>(options.compression))) {
    return Status(Code::kBadArgument, "unknown compression (none, deflate or gzip)");
  }
  if (options.max_streams < 0 || options.max_concurrent_streams < 0 ||
      options.max_connection_age_ms < 0 || options.max_connection_age_grace_ms < 0 ||
      options.max_connection_idle_ms < 0) {
    return Status(Code::kBadArgument, "stream limits and connection ages must be >= 0 (0: off)");
  }
  if (options.completion_queues < 0 || options.completion_queues > 256) {
    return Status(Code::kBadArgument, "completion_queues must be 0 (the default count) to 256");
  }
  // gRPC would take a malformed address its own way (a port above 65535
  // truncated to 16 bits, a missing one read as 443): check it before
  // anything binds.
  Status address = internal::ParseListenAddress(options.address, nullptr);
  if (!address.ok()) return address;
  if (!options.room_url.empty() || !options.room_name.empty()) {
    if (options.mode != Mode::kBroadcast) {
      return Status(Code::kBadArgument, "a room on Redis is for broadcast mode");
    }
    if (options.room_url.empty() || options.room_name.empty()) {
      return Status(Code::kBadArgument, "a room on Redis needs both room_url and room_name");
    }
    if (options.room_max_len == 0) {
      return Status(Code::kBadArgument, "room_max_len must be positive");
    }
    Status url = internal::ParseRedisUrl(options.room_url, nullptr);
    if (!url.ok()) return url;
  }
  internal::KeepGrpcInitialized();
  auto server = std::make_unique<internal::ServerImpl>(options);
  Status s = server->Init();
  if (!s.ok()) return s;
  *out = std::move(server);
  return Status::Ok();
}

}  // namespace chat
