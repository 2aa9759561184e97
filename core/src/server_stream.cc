#include "server_stream.h"

#include <grpc/grpc_security_constants.h>

#include "deadline.h"
#include "grpc_glue.h"
#include "metadata.h"
#include "wire.h"

namespace chat::internal {
namespace {

// The full method path of the wire contract (no proto package).
constexpr char kChatMethod[] = "/Chat/chat";
// How long a write may stay stuck after its call was failed (see Fail).
constexpr auto kStuckWrite = std::chrono::milliseconds(200);

}  // namespace

void Session::Request(SessionHost* host, grpc::AsyncGenericService* service,
                      grpc::ServerCompletionQueue* cq, int queue, const Limits& limits,
                      std::shared_ptr<MemoryAccount> memory) {
  auto session = std::make_shared<Session>(host, limits, std::move(memory));
  Session* s = session.get();
  s->queue_ = queue;
  s->cq_ = cq;
  s->call_ = std::make_unique<Call>();
  s->self_ = std::move(session);
  // Before RequestCall, as gRPC requires; delivered only if a call arrives.
  if (s->notify_done_) s->call_->ctx.AsyncNotifyWhenDone(Arm(&s->done_tag_));
  // From here on the session belongs to the queue's thread: read what the
  // request needs first, then arm the tag (its release covers those reads).
  grpc::GenericServerContext* ctx = &s->call_->ctx;
  grpc::GenericServerAsyncReaderWriter* stream = &s->call_->stream;
  void* tag = Arm(&s->accept_tag_);
  service->RequestCall(ctx, stream, cq, cq, tag);
}

Session::Session(SessionHost* host, const Limits& limits, std::shared_ptr<MemoryAccount> memory)
    : host_(host), stats_(&host->Counters()), limits_(limits),
      notify_done_(limits.mode == Mode::kCustom),
      memory_(std::move(memory)),
      out_(limits.send_queue_limit, limits.send_queue_bytes, memory_.get()) {}

Session::~Session() = default;

// --- ServerCall ---

Status Session::Send(std::string_view text, Timeout timeout) {
  if (!IsValidUtf8(text)) return Status(Code::kBadArgument, "reply is not valid UTF-8");
  if (StringFieldWireSize(text.size()) > limits_.max_message_bytes) {
    return Status(Code::kTooLarge, "reply of " + std::to_string(text.size()) +
                                       " bytes exceeds the maximum message size of " +
                                       std::to_string(limits_.max_message_bytes));
  }
  return Enqueue(EncodeStringValue(text), timeout);
}

Status Session::Complete() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finish_wanted_) {
      return finish_status_.ok() && !cancelled_ ? Status::Ok()
                                                : Status(Code::kClosed, "stream already ended");
    }
    finish_wanted_ = true;
    finish_status_ = Status::Ok();
    MaybeFinishLocked();
  }
  out_.NotifyRoom();  // a sender waiting for room hears that the call is completing
  return Status::Ok();
}

Status Session::Fail(Code code, std::string_view details) {
  if (!IsGrpcCode(static_cast<int32_t>(code)) || code == Code::kOk) {
    return Status(Code::kBadArgument, "fail needs a gRPC error code (1..16)");
  }
  if (!IsValidUtf8(details)) return Status(Code::kBadArgument, "details are not valid UTF-8");
  return End(Status(code, std::string(details)), /*reset=*/false, /*force=*/false,
             /*reset_if_stuck=*/true);
}

// The write a Fail found stuck: still in flight (ok, the alarm ran out), so
// the client reads nothing: reset. Cancelled (!ok): the write completed.
void Session::OnStuckWrite(bool ok) {
  bool over;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    if (ok && out_.queue().writing() && !done_) call_->ctx.TryCancel();
    over = OverLocked();
  }
  if (over) Over();
}

bool Session::ended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finish_wanted_ || done_;
}

Status Session::MetadataTooLateLocked(bool initial) const {
  if (cancelled_) return Status(Code::kClosed, "stream has ended");
  if (finish_wanted_) {
    return Status(Code::kBadState, "the call was already completed, failed or cut: metadata "
                                   "goes out before its status");
  }
  if (done_) return Status(Code::kClosed, "stream has ended");
  // A queued reply is being written: Enqueue starts the write at once.
  if (initial && (out_.queue().writing() || out_.queue().sent() > 0)) {
    return Status(Code::kBadState, "initial metadata goes out with the first reply: add it "
                                   "before the first send (in on_open, say)");
  }
  return Status::Ok();
}

Status Session::AddInitialMetadata(std::string_view key, std::string_view value) {
  Status valid = CheckMetadata(key, value);
  if (!valid.ok()) return valid;
  std::lock_guard<std::mutex> lock(mu_);
  Status late = MetadataTooLateLocked(/*initial=*/true);
  if (!late.ok()) return late;
  // gRPC reads it when the first write or the Finish starts, under mu_.
  call_->ctx.AddInitialMetadata(std::string(key), std::string(value));
  return Status::Ok();
}

Status Session::AddTrailingMetadata(std::string_view key, std::string_view value) {
  Status valid = CheckMetadata(key, value);
  if (!valid.ok()) return valid;
  std::lock_guard<std::mutex> lock(mu_);
  Status late = MetadataTooLateLocked(/*initial=*/false);
  if (!late.ok()) return late;
  call_->ctx.AddTrailingMetadata(std::string(key), std::string(value));
  return Status::Ok();
}

Timeout Session::TimeLeft() const {
  if (!has_deadline_) return Timeout(-1);
  auto left = deadline_ - std::chrono::system_clock::now();
  return std::max(Timeout::zero(), std::chrono::ceil<Timeout>(left));
}

Status Session::SetDeadlineLocked() {
  grpc::GenericServerContext& ctx = call_->ctx;
  if (ctx.deadline() != std::chrono::system_clock::time_point::max()) {
    has_deadline_ = true;
    deadline_ = ctx.deadline();
    return Status::Ok();
  }
  auto header = metadata_.find(kDeadlineHeader);
  if (header == metadata_.end()) return Status::Ok();
  if (!ParseRfc3339(header->second, &deadline_)) {
    return Status(Code::kInvalidArgument, "the deadline header is not an RFC 3339 timestamp "
                                          "(e.g. 2024-05-01T12:00:00.250Z): '" +
                                              header->second + "'");
  }
  if (deadline_ == std::chrono::system_clock::time_point::max()) return Status::Ok();  // never
  has_deadline_ = true;
  deadline_alarm_ = std::make_unique<grpc::Alarm>();
  ++ops_;
  deadline_alarm_->Set(cq_, deadline_, Arm(&deadline_tag_));
  return Status::Ok();
}

// The deadline header's time has come (ok), or the alarm was cancelled
// because the call ended first.
void Session::OnDeadline(bool ok) {
  bool over;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    over = OverLocked();
  }
  if (over) return Over();
  if (ok) {
    End(Status(Code::kDeadlineExceeded, "deadline exceeded (the deadline header's time)"),
        /*reset=*/false, /*force=*/false, /*reset_if_stuck=*/true);
  }
}

// --- used by the server ---

Status Session::Enqueue(grpc::ByteBuffer reply, Timeout timeout, bool host_send) {
  std::unique_lock<std::mutex> lock(mu_);
  auto closed = [&] { return finish_wanted_ || done_; };
  Status room = closed() ? Status::Ok() : out_.WaitForRoom(lock, timeout, reply.Length(), closed);
  if (closed()) return Status(Code::kClosed, "stream has ended");
  if (!room.ok()) {
    if (limits_.queued && host_send) want_writable_ = true;
    return room;
  }
  // No Finish can have been issued: finish_wanted_ is still false.
  if (out_.queue().Push(std::move(reply))) {
    ++ops_;
    out_.StartWrite(&call_->stream, &write_tag_);
  }
  return Status::Ok();
}

void Session::Cut(Status why) {
  if (End(std::move(why), /*reset=*/true).ok()) host_->Counters().Cut();
}

Status Session::End(Status status, bool reset, bool force, bool reset_if_stuck) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ || (finish_wanted_ && (!force || finish_called_))) {
      return Status(Code::kClosed, "stream already ended");
    }
    finish_wanted_ = true;
    ended_by_server_ = true;
    finish_status_ = std::move(status);
    out_.queue().DropAllButInFlight();  // gRPC still reads the one in flight
    // A write stuck behind a peer that does not read would hold Finish back
    // for ever: cancel the call, which fails the write.
    if (reset && out_.queue().writing()) call_->ctx.TryCancel();
    // The host failed the call (Fail): the write in flight may be stuck
    // behind a client that does not read, and the status would wait behind
    // it until a deadline or a keepalive. Give it a moment (a slow reader
    // then still gets the status), then reset, as a stop does. Decided here,
    // under the lock that set finish_wanted_: a stop has not cut this
    // session yet, so its queue is not shut down.
    if (reset_if_stuck && !reset && out_.queue().writing() && !done_ && !stuck_alarm_) {
      stuck_alarm_ = std::make_unique<grpc::Alarm>();
      ++ops_;
      stuck_alarm_->Set(cq_, std::chrono::system_clock::now() + kStuckWrite, Arm(&stuck_tag_));
    }
    MaybeFinishLocked();
  }
  out_.NotifyRoom();
  memory_->WakeIfRoom();  // queued bytes may have left
  return Status::Ok();
}

void Session::Drained(size_t count, size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    undelivered_ -= count;
    undelivered_bytes_ -= bytes;
    memory_->Release(bytes);
  }
  ResumeRead();
  memory_->WakeIfRoom();
}

void Session::Held(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  held_.push_back(bytes);
}

Status Session::Consumed(size_t count) {
  if (!limits_.hold) return ServerCall::Consumed(count);
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (count > held_.size()) {
      return Status(Code::kBadArgument, "count is more than the messages drained and not yet "
                                        "consumed (" + std::to_string(held_.size()) + ")");
    }
    for (size_t i = 0; i < count; ++i) {
      bytes += held_.front();
      held_.pop_front();
    }
  }
  if (count > 0) Drained(count, bytes);
  return Status::Ok();
}

void Session::ResumeRead(bool from_waiter) {
  bool over_bound;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (from_waiter) memory_waiter_ = false;
    if (!read_paused_ || QueueFullLocked()) return;
    read_paused_ = false;
    StartReadLocked();
    over_bound = read_paused_;
  }
  // Custom mode relieves nothing (its streams only pause), and here the
  // server must not be touched: on an event queue this runs on the host's
  // draining thread (Drained, or a memory waiter woken there), which
  // nothing stops before the server is destroyed.
  if (over_bound && limits_.mode != Mode::kCustom) host_->RelieveMemory();
}

bool Session::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

size_t Session::queued_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return out_.queue().bytes();
}

// --- state rules (mu_ held) ---

// Flow control: stop reading while the peer's replies (echo) or the
// handler's backlog (custom) is full; HTTP/2 then pushes back on the client.
bool Session::QueueFullLocked() const {
  switch (limits_.mode) {
    case Mode::kEcho: return out_.Full();
    case Mode::kCustom:
      return undelivered_ >= limits_.recv_window ||
             undelivered_bytes_ >= limits_.recv_window_bytes;
    case Mode::kBroadcast: return false;
  }
  return false;
}

// Starts a read unless a full queue or the server's memory bound holds it
// back; then read_paused_ is set and the read waits for ResumeRead (from
// the queue draining, the handler catching up, or memory being released).
// A read paused on the memory bound leaves memory_waiter_ set: the caller
// asks the server to relieve memory once it has unlocked.
void Session::StartReadLocked() {
  if (reading_ || read_closed_ || finish_wanted_ || done_) return;
  if (QueueFullLocked()) {
    read_paused_ = true;
    return;
  }
  if (memory_->Over() && WaitForMemoryLocked()) {
    read_paused_ = true;
    return;
  }
  reading_ = true;
  ++ops_;
  call_->stream.Read(&in_, Arm(&read_tag_));
}

// Asks to be resumed once the server is back under its memory bound; false
// when it already is. Weak: a stream that is over meanwhile is gone.
bool Session::WaitForMemoryLocked() {
  if (memory_waiter_) return true;  // one registration per stream is enough
  std::weak_ptr<Session> weak = weak_from_this();
  memory_waiter_ = memory_->WaitForRoom([weak] {
    if (auto self = weak.lock()) self->ResumeRead(/*from_waiter=*/true);
  });
  return memory_waiter_;
}

// Finish goes last: after the write in flight and, for OK, after every
// queued reply. A call gRPC already reported over needs none.
void Session::MaybeFinishLocked() {
  if (!finish_wanted_ || finish_called_ || done_ || out_.queue().writing()) return;
  if (finish_status_.ok() && !out_.queue().empty()) return;  // Complete drains first
  finish_called_ = true;
  ++ops_;
  call_->stream.Finish(ToGrpc(finish_status_), Arm(&finish_tag_));
}

// The client half-closed, or the call broke under a read.
void Session::EndOfReadsLocked() {
  read_closed_ = true;
  if (limits_.mode == Mode::kCustom) {
    if (!cancelled_ && !finish_wanted_) {
      // A client cancel also ends the reads, and gRPC reports the call done
      // just after; looking again on the dispatcher filters most of those
      // out. Posted under the lock, after every message of the stream.
      host_->DeliverHalfClose(shared_from_this());
    }
  } else if (!finish_wanted_) {  // built-in modes complete when the client does
    finish_wanted_ = true;
    finish_status_ = Status::Ok();
    MaybeFinishLocked();
  }
}

// --- completions, on the session's queue thread ---

void Session::OnAccept(bool ok) {
  if (!ok) {
    // The server is shutting down: no call came, and no done tag will.
    host_->Accepted(queue_, false);
    auto self = std::move(self_);
    call_.reset();
    return;  // `self` may free the session here
  }
  host_->Accepted(queue_, true);  // the next stream may come on this queue now
  grpc::GenericServerContext& ctx = call_->ctx;
  if (ctx.method() != kChatMethod) {
    std::lock_guard<std::mutex> lock(mu_);
    ops_ = notify_done_ ? 1 : 0;  // the done tag
    finish_wanted_ = true;
    ended_by_server_ = true;
    finish_status_ = Status(Code::kUnimplemented, "unknown method " + ctx.method() +
                                                      " (this server serves /Chat/chat)");
    MaybeFinishLocked();
    return;
  }
  id_ = host_->NextId();
  conn_ = host_->ConnectionOf(ctx.peer());
  for (const auto& [key, value] : ctx.client_metadata()) {
    metadata_.emplace(std::string(key.data(), key.size()), std::string(value.data(), value.size()));
  }
  // The client certificate a TLS server verified (mTLS): gRPC reports its
  // subject and SANs as properties of the call's auth context (built on
  // request: plaintext servers skip it).
  if (auto auth = limits_.tls ? ctx.auth_context() : nullptr) {
    for (const auto& v : auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME)) {
      identity_.subject.assign(v.data(), v.size());
    }
    for (const auto& v : auth->FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
      identity_.sans.emplace_back(v.data(), v.size());
    }
  }
  Status deadline;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ops_ = notify_done_ ? 1 : 0;  // the done tag
    deadline = SetDeadlineLocked();
  }
  Status admitted = deadline.ok() ? host_->Admit(shared_from_this()) : deadline;
  bool over_bound = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (admitted.ok()) {
      admitted_ = true;
      StartReadLocked();
      over_bound = read_paused_ && memory_waiter_;
    } else if (!finish_wanted_) {
      // Refused (stopping, or over the memory bound): never seen by the
      // handler nor counted by Stop.
      finish_wanted_ = true;
      ended_by_server_ = true;
      finish_status_ = std::move(admitted);
      MaybeFinishLocked();
    }
  }
  if (over_bound) host_->RelieveMemory();
}

void Session::OnRead(bool ok) {
  grpc::Slice received;  // the bytes name and message view
  std::string_view name, message;
  bool valid = ok && DecodeChatMessage(in_, &received, &name, &message);
  if (valid) stats_->In(received.size());  // all of in_ (Bytes joins several slices)
  bool over = false, over_bound = false;
  if (ok && !valid) {
    // Not a ChatMessage (bad encoding or invalid UTF-8): fail the stream
    // rather than guess; nothing after it is read.
    {
      std::lock_guard<std::mutex> lock(mu_);
      --ops_;
      reading_ = false;
      over = OverLocked();
    }
    if (over) return Over();
    End(Status(Code::kInvalidArgument,
               "received bytes are not a valid ChatMessage (string fields must be UTF-8)"));
    return;
  }
  if (!ok) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --ops_;
      reading_ = false;
      EndOfReadsLocked();
      over = OverLocked();
    }
    if (over) Over();
    return;
  }
  switch (limits_.mode) {
    case Mode::kEcho: {
      // Answered here, on the stream's own thread: no hop, no handler.
      grpc::ByteBuffer reply = EncodeLine(name, message);
      std::lock_guard<std::mutex> lock(mu_);
      --ops_;
      reading_ = false;
      ++messages_read_;
      if (!finish_wanted_ && !done_ && out_.queue().Push(std::move(reply)) &&
          !write_at_round_end_) {
        ++ops_;
        // The next read may well complete in this same round (gRPC holds
        // the bytes already): its reply then joins this one's write, with
        // the buffer hint, instead of a socket write each.
        if (DeferToRoundEnd(this)) {
          write_at_round_end_ = true;
        } else {
          out_.StartWrite(&call_->stream, &write_tag_);
        }
      }
      StartReadLocked();
      over_bound = read_paused_ && memory_waiter_;
      over = OverLocked();
      break;
    }
    case Mode::kBroadcast: {
      {
        std::lock_guard<std::mutex> lock(mu_);
        --ops_;
        reading_ = false;
        ++messages_read_;
        last_name_.assign(name);
        over = OverLocked();
      }
      if (over) return Over();
      Status said = host_->Say(name, message);
      if (!said.ok()) {
        End(std::move(said));  // nothing more is read
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      StartReadLocked();
      over_bound = read_paused_ && memory_waiter_;
      break;
    }
    case Mode::kCustom: {
      size_t bytes = name.size() + message.size();
      std::lock_guard<std::mutex> lock(mu_);
      --ops_;
      reading_ = false;
      ++messages_read_;
      // Delivered under the lock: once it is released, Drained (on the
      // dispatcher or the host's thread) may start the next read, whose
      // event must come after; and Drained waits for the counts below.
      if (host_->DeliverMessage(shared_from_this(), std::string(name), std::string(message),
                                bytes)) {
        ++undelivered_;
        undelivered_bytes_ += bytes;
        memory_->Charge(bytes);
      }
      StartReadLocked();
      over_bound = read_paused_ && memory_waiter_;
      over = OverLocked();
      break;
    }
  }
  if (over_bound) host_->RelieveMemory();
  if (over) Over();
}

// Starts writing the next queued reply, if there is one and no write is
// in flight, unless the call is finishing or over.
void Session::WriteNextLocked() {
  if (out_.queue().writing() || out_.queue().empty() || finish_called_ || done_) return;
  ++ops_;
  out_.StartWrite(&call_->stream, &write_tag_);
}

void Session::AtRoundEnd() {
  bool over;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    write_at_round_end_ = false;
    // Meanwhile an End or a cut from another thread may have emptied the
    // queue and finished the call.
    WriteNextLocked();
    MaybeFinishLocked();
    over = OverLocked();
  }
  if (over) Over();
}

void Session::OnWrite(bool ok) {
  bool over, over_bound = false, wake_senders;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    if (ok) stats_->Out(out_.queue().in_flight_bytes());
    out_.queue().WriteDone(ok);
    if (!ok) {
      // The stream broke under us (peer gone or cancelled): nothing more can
      // be written, but the call must still end exactly once.
      if (!finish_wanted_) {
        finish_wanted_ = true;
        finish_status_ = Status(Code::kCancelled, "write failed: the client is gone");
      }
    } else {
      WriteNextLocked();
    }
    if (stuck_alarm_) stuck_alarm_->Cancel();  // not stuck after all (idempotent)
    if (want_writable_ && out_.LowWater() && !finish_wanted_ && !done_) {
      want_writable_ = false;
      host_->DeliverWritable(shared_from_this());
    }
    MaybeFinishLocked();
    if (read_paused_ && !QueueFullLocked()) {
      read_paused_ = false;
      StartReadLocked();
      over_bound = read_paused_ && memory_waiter_;
    }
    over = OverLocked();
    wake_senders = out_.WakesSenders(!ok || finish_wanted_ || done_);
  }
  if (wake_senders) out_.NotifyRoom();
  memory_->WakeIfRoom();  // queued bytes may have left
  if (over_bound) host_->RelieveMemory();
  if (over) Over();
}

void Session::OnFinish(bool ok) {
  bool over, empty = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    finish_completed_ = true;
    if (deadline_alarm_) deadline_alarm_->Cancel();  // its tag comes back at once
    // Without a done tag, a Finish that fails is how a cancel shows.
    if (!notify_done_ && !ok) empty = MarkCancelledLocked();
    over = OverLocked();
  }
  if (empty) host_->NoteEmptyCancel(conn_);
  if (over) Over();
}

// The call was cancelled (by the client, its deadline, a broken connection
// or our own TryCancel). True when nothing had gone either way: such
// streams, reset in a flood, are what closes a connection (rapid reset).
bool Session::MarkCancelledLocked() {
  bool empty = !ended_by_server_ && messages_read_ == 0 && out_.queue().sent() == 0;
  cancelled_ = true;
  if (!finish_wanted_) {
    finish_wanted_ = true;
    finish_status_ = Status(Code::kCancelled, "cancelled");
  }
  out_.queue().DropAllButInFlight();
  return empty;
}

// gRPC reports the call over: finished, or cancelled (by the client, its
// deadline, a broken connection, or our own TryCancel).
void Session::OnDone(bool) {
  bool over, empty = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    done_ = true;
    if (deadline_alarm_) deadline_alarm_->Cancel();
    if (call_->ctx.IsCancelled()) empty = MarkCancelledLocked();
    over = OverLocked();
  }
  out_.NotifyRoom();
  memory_->WakeIfRoom();  // queued bytes may have left
  if (empty) host_->NoteEmptyCancel(conn_);
  if (over) Over();
}

// Every operation is back and the call is over: free gRPC's side of it and
// tell the server. `self` may be the last reference.
void Session::Over() {
  Status final_status;
  std::unique_ptr<Call> call;
  {
    std::lock_guard<std::mutex> lock(mu_);
    over_ = true;
    if (cancelled_ && !ended_by_server_) {
      bool expired = call_->ctx.deadline() <= std::chrono::system_clock::now();
      final_status = expired ? Status(Code::kDeadlineExceeded, "deadline exceeded")
                             : Status(Code::kCancelled, "cancelled by the client");
    } else {
      final_status = finish_status_;
    }
    out_.queue().DropAllButInFlight();  // nothing is in flight now
    call = std::move(call_);
  }
  call.reset();
  out_.NotifyRoom();
  memory_->WakeIfRoom();
  std::shared_ptr<Session> self = std::move(self_);
  host_->Finished(self, final_status);
  host_->SessionOver();  // last: the server may shut the queue down now
}

}  // namespace chat::internal
