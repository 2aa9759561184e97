// One server-side /Chat/chat stream on gRPC's completion-queue API.
//
// A Session is pinned to one completion queue: its completions (accept,
// read, write, finish, done) all run on that queue's thread, in order. Any
// other thread may send, complete or fail it (a handler on a dispatcher, a
// broadcast from another stream, a stop). Every gRPC operation is started
// under the session's mutex: starting one never runs our code (completions
// go to the queue), so holding the mutex costs no deadlock, and the
// decision to start an operation and its start are one step, which is
// what keeps Finish last and the in-flight count (ops_) exact.
//
// Lifetime: the session holds itself (self_) from RequestCall until every
// operation it started has completed and gRPC reported the call done; then
// its gRPC state is freed on its queue's thread and the server forgets it
// (SessionHost::Finished). Hosts may keep the ServerCall longer: every call
// on it then returns kClosed.
#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/generic/async_generic_service.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "chat/event_queue.h"
#include "chat/server.h"
#include "cq.h"
#include "memory.h"
#include "send_queue.h"
#include "stats.h"

namespace chat::internal {

class Session;

// A client connection, as the listener accepted it (ServerConnections).
struct Connection {
  int fd = -1;
  uint64_t seq = 0;
  std::string peer;  // "ipv4:127.0.0.1:41234"
};

// What a session needs of its server. Implemented by ServerImpl.
class SessionHost {
 public:
  // A request completed: ask gRPC for the next stream on the same queue
  // (when `ok`). A failed request is no longer counted; a matched one is
  // counted as its session until SessionOver, so the server shuts no queue
  // down while the session may still start an operation on it.
  virtual void Accepted(int queue, bool ok) = 0;
  // The session's last operation is back and its call freed: the last
  // thing it does on its queue's thread.
  virtual void SessionOver() = 0;
  virtual uint64_t NextId() = 0;  // 1, 2, ... in order of arrival
  // The connection a new stream came on (gRPC's peer string names it),
  // which counts one more live stream of it until Finished.
  virtual Connection ConnectionOf(const std::string& grpc_peer) = 0;
  // A new /Chat/chat stream: registers it, or refuses it (returns the status
  // to end it with). Runs on the session's queue thread before its first read.
  virtual Status Admit(const std::shared_ptr<Session>& session) = 0;
  // Custom mode, called under the session's mutex so events keep their
  // order: a message (its `bytes` count against the window until
  // Session::Drained), the client's half-close, and room again after a
  // refused send (event queue only).
  // False when the message was dropped (the host destroyed its queue): it
  // then takes no room in the window.
  virtual bool DeliverMessage(const std::shared_ptr<Session>& session, std::string name,
                              std::string message, size_t bytes) = 0;
  virtual void DeliverHalfClose(const std::shared_ptr<Session>& session) = 0;
  virtual void DeliverWritable(const std::shared_ptr<Session>& session) = 0;
  // Broadcast mode: a member's message for the room. Not OK when the room
  // cannot take it (a room on Redis that is unreachable): the member's
  // stream then ends with that status.
  virtual Status Say(std::string_view name, std::string_view message) = 0;
  // A stream paused on the server's memory bound.
  virtual void RelieveMemory() = 0;
  // Rapid-reset bookkeeping (ServerConnections).
  virtual void NoteEmptyCancel(const Connection& conn) = 0;
  // The server's counters (outlive every completion of its sessions).
  virtual StatsCounters& Counters() = 0;
  // The stream is over: `status` is final, and no gRPC state is left.
  virtual void Finished(const std::shared_ptr<Session>& session, const Status& status) = 0;
};

class Session final : public ServerCall,
                      public EventSource,
                      private RoundEnd,
                      public std::enable_shared_from_this<Session> {
 public:
  struct Limits {
    Mode mode;
    bool queued;  // custom mode on an event queue: refused sends earn a kWritable
    bool hold;    // queued, and drained messages keep their room until Consumed
    size_t max_message_bytes, send_queue_limit, send_queue_bytes, recv_window, recv_window_bytes;
    bool tls;  // a TLS server: each stream reads its peer's certificate identity
  };

  // Asks gRPC for the next stream on `queue` (the session is created for
  // that request, and holds itself until it is over).
  static void Request(SessionHost* host, grpc::AsyncGenericService* service,
                      grpc::ServerCompletionQueue* cq, int queue, const Limits& limits,
                      std::shared_ptr<MemoryAccount> memory);
  Session(SessionHost* host, const Limits& limits, std::shared_ptr<MemoryAccount> memory);
  ~Session() override;

  // --- ServerCall ---
  uint64_t id() const override { return id_; }
  const std::string& peer() const override { return conn_.peer; }
  const std::multimap<std::string, std::string>& metadata() const override { return metadata_; }
  const PeerIdentity& peer_identity() const override { return identity_; }
  const std::string& principal() const override { return principal_; }
  void set_host_data(void* data) override { host_data_.store(data, std::memory_order_release); }
  void* host_data() const override { return host_data_.load(std::memory_order_acquire); }
  Status Send(std::string_view text, Timeout timeout) override;
  Status Complete() override;
  Status Fail(Code code, std::string_view details) override;
  bool ended() const override;
  Status AddInitialMetadata(std::string_view key, std::string_view value) override;
  Status AddTrailingMetadata(std::string_view key, std::string_view value) override;
  Timeout TimeLeft() const override;

  // --- used by the server ---
  // Queues an encoded reply already known to be valid. A refusal promises
  // the host a WRITABLE event (queued custom mode) only for its own sends:
  // a room never waits for room, it cuts the member instead.
  Status Enqueue(grpc::ByteBuffer reply, Timeout timeout, bool host_send = true);
  // Ends the stream with an error after the write in flight, dropping queued
  // replies. With `reset`, a write stuck behind a peer that does not read is
  // not waited for: the stream is reset (the peer sees CANCELLED) and
  // `status` stays the reason the server reports. With `force`, a stream
  // already ending (completed, its replies still queued) is cut too. With
  // `reset_if_stuck`, the write in flight is reset if it is still in flight
  // kStuckWrite later.
  Status End(Status status, bool reset = false, bool force = false, bool reset_if_stuck = false);
  // A room cuts a member (too slow for it, or the room lost lines): the
  // stream ends with `why` at once (a stuck write is reset) and counts as
  // cut.
  void Cut(Status why);
  // `count` messages of `bytes` reached the host (the handler ran them, or
  // they left the event queue): the window has room again.
  void Drained(size_t count, size_t bytes) override;
  bool Cancelled() const override { return cancelled(); }
  bool HoldsUntilConsumed() const override { return limits_.hold; }
  void Held(size_t bytes) override;
  Status Consumed(size_t count) override;
  // Restarts a read paused on a full queue or on the memory bound.
  void ResumeRead(bool from_waiter = false);
  bool cancelled() const;
  size_t queued_bytes() const;
  const Connection& connection() const { return conn_; }
  bool admitted() const { return admitted_; }  // after Finished
  const std::string& last_name() const { return last_name_; }  // broadcast, after Finished
  // Set by the authenticator in Admit, before anything else sees the session.
  void set_principal(std::string principal) { principal_ = std::move(principal); }

 private:
  // gRPC's side of the call; freed as soon as the call is over, so a host
  // holding the ServerCall holds no gRPC state.
  struct Call {
    grpc::GenericServerContext ctx;
    grpc::GenericServerAsyncReaderWriter stream{&ctx};
  };

  void OnAccept(bool ok);
  void OnRead(bool ok);
  void OnWrite(bool ok);
  // The echo reply's write, put off to the end of the completion round so
  // the replies to messages read in one round leave in one socket write.
  void AtRoundEnd() override;
  void WriteNextLocked();
  void OnFinish(bool ok);
  void OnDone(bool ok);
  void OnStuckWrite(bool ok);
  void OnDeadline(bool ok);
  // Reads the call's deadline (grpc-timeout, else the deadline header) and
  // arms the header's; kInvalidArgument for a malformed header.
  Status SetDeadlineLocked();

  // Why metadata can no longer be added, if it cannot (AddInitialMetadata...).
  Status MetadataTooLateLocked(bool initial) const;
  bool QueueFullLocked() const;
  bool MarkCancelledLocked();
  void StartReadLocked();
  bool WaitForMemoryLocked();
  void MaybeFinishLocked();
  // True when the stream is over and the caller must call Over() after
  // unlocking: gRPC reported the call over (the done tag, or without one
  // the Finish), and nothing else is in flight.
  bool OverLocked() const {
    return (notify_done_ ? done_ : finish_completed_) && ops_ == 0 && !over_;
  }
  void Over();
  void EndOfReadsLocked();

  SessionHost* const host_;
  StatsCounters* const stats_;
  const Limits limits_;
  // Whether gRPC tells us at once when the call ends (AsyncNotifyWhenDone).
  // Only custom mode asks: its handler must hear of a cancel at once. The
  // built-in modes learn it from the next read, write or Finish that fails,
  // because every outstanding tag costs every completion of its queue a
  // step: Debian's gRPC is built without NDEBUG, so each completion looks
  // its tag up in a list of all outstanding ones (cq_check_tag), and a
  // done tag per idle stream doubled that list.
  const bool notify_done_;
  const std::shared_ptr<MemoryAccount> memory_;  // the server's; shared, as handles outlive it
  // Set on the queue thread before the session is shared; then read-only.
  uint64_t id_ = 0;
  Connection conn_;
  std::multimap<std::string, std::string> metadata_;
  PeerIdentity identity_;
  std::string principal_;
  int queue_ = 0;
  grpc::ServerCompletionQueue* cq_ = nullptr;  // the session's queue (its thread runs it)
  std::atomic<void*> host_data_{nullptr};
  std::shared_ptr<Session> self_;  // until Over()

  OpTag<Session, &Session::OnAccept> accept_tag_{this};
  OpTag<Session, &Session::OnRead> read_tag_{this};
  OpTag<Session, &Session::OnWrite> write_tag_{this};
  OpTag<Session, &Session::OnFinish> finish_tag_{this};
  OpTag<Session, &Session::OnDone> done_tag_{this};
  OpTag<Session, &Session::OnStuckWrite> stuck_tag_{this};
  OpTag<Session, &Session::OnDeadline> deadline_tag_{this};

  mutable std::mutex mu_;
  std::unique_ptr<Call> call_;     // until Over()
  grpc::ByteBuffer in_;            // the read in flight fills it
  Outbox out_;
  int ops_ = 0;                    // operations started, not yet completed (done tag included)
  bool reading_ = false;
  bool write_at_round_end_ = false;  // counted in ops_ until it ran
  bool read_paused_ = false;
  bool read_closed_ = false;       // client half-closed (or the call broke)
  size_t undelivered_ = 0;         // custom: OnMessage events not yet run
  size_t undelivered_bytes_ = 0;   // and their bytes, charged to memory_
  std::deque<size_t> held_;        // hold: sizes of messages drained, not yet consumed
  bool admitted_ = false;          // the server registered it (Finished reports it)
  bool cancelled_ = false;
  bool done_ = false;              // gRPC reported the call over (done tag)
  bool finish_completed_ = false;
  bool over_ = false;
  bool finish_wanted_ = false;
  bool finish_called_ = false;
  bool ended_by_server_ = false;   // End() chose the status; a later cancel keeps it
  bool memory_waiter_ = false;     // a resume callback is registered with memory_
  bool want_writable_ = false;     // queued: a send was refused; a kWritable is owed
  // Set by a Fail that found a write in flight: resets it if still stuck.
  // Made only then: an Alarm costs a grpc_init and a timer per session.
  std::unique_ptr<grpc::Alarm> stuck_alarm_;
  // The deadline header's timer (only then: gRPC enforces grpc-timeout).
  std::unique_ptr<grpc::Alarm> deadline_alarm_;
  // Set in OnAccept before the session is shared; then read-only.
  bool has_deadline_ = false;
  std::chrono::system_clock::time_point deadline_;
  Status finish_status_;
  std::string last_name_;
  uint64_t messages_read_ = 0;
};

}  // namespace chat::internal
