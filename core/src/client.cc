// Client side: streams on gRPC's completion-queue API, writes from any
// thread, replies buffered for a pull-style Recv.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "address.h"
#include "cancel.h"
#include "chat/client.h"
#include "cq.h"
#include "grpc_glue.h"
#include "metadata.h"
#include "send_queue.h"
#include "tls.h"
#include "stats.h"
#include "wire.h"

namespace chat {
namespace internal {
namespace {

// How long a receiver keeps yielding the CPU before it sleeps on an empty
// queue (see WaitForReplyLocked): about two context switches' worth.
constexpr auto kRecvYieldBudget = std::chrono::microseconds(20);
// After this many yielding waits in a row catch nothing, a receiver sleeps
// at once, yielding again only on every kRecvYieldProbe-th wait.
constexpr int kRecvYieldMisses = 4;
constexpr uint32_t kRecvYieldProbe = 64;
thread_local int t_yield_misses = 0;  // consecutive yielding waits that caught nothing
thread_local uint32_t t_yield_skips = 0;

using RawStub = grpc::TemplatedGenericStub<grpc::ByteBuffer, grpc::ByteBuffer>;

// The full method path of the wire contract (no proto package).
constexpr char kChatMethod[] = "/Chat/chat";

// One client stream on the completion-queue API, pinned to one of the
// process's client queues (ClientQueues). Application threads send, receive
// and cancel; the queue's thread runs the completions. As on the server,
// every gRPC operation starts under the stream's mutex (starting one never
// runs our code), and ops_ counts those not yet completed: the stream is
// over once Finish has completed and nothing else is in flight.
//
// Finish is issued only once every reply has been read from gRPC (or the
// stream was cancelled), so no reply is lost behind the status.
//
// On an event queue (StreamOptions::queue) replies go to the queue instead
// of inq_, pushed under mu_ so they keep their order, and count against the
// receive bounds until the host drains them (Drained); the end follows
// them, pushed once the stream is over.
class StreamImpl final : public ClientStream, public EventSource {
 public:
  StreamImpl(const ClientOptions& options, const StreamOptions& stream_options,
             std::shared_ptr<StatsCounters> stats)
      : stats_(std::move(stats)), max_message_bytes_(options.max_message_bytes),
        recv_queue_limit_(options.recv_queue_limit),
        recv_queue_bytes_(options.recv_queue_bytes),
        queue_(stream_options.queue), tag_(stream_options.tag),
        user_data_(stream_options.user_data),
        hold_(stream_options.queue && stream_options.hold_until_consumed),
        out_(options.send_queue_limit, options.send_queue_bytes) {
    if (stream_options.deadline >= Timeout::zero()) {
      ctx_.set_deadline(std::chrono::system_clock::now() + Bounded(stream_options.deadline));
    }
    for (const auto& [key, value] : stream_options.metadata) ctx_.AddMetadata(key, value);
    const std::string& token = stream_options.token.empty() ? options.token : stream_options.token;
    if (!token.empty()) ctx_.AddMetadata("authorization", "Bearer " + token);
    if (stream_options.wait_for_ready) ctx_.set_wait_for_ready(true);
    if (stream_options.compression) {
      ctx_.set_compression_algorithm(
          static_cast<grpc_compression_algorithm>(*stream_options.compression));
    }
  }

  void Begin(RawStub* stub, std::shared_ptr<StreamImpl> self) {
    std::lock_guard<std::mutex> lock(mu_);
    self_ = std::move(self);
    call_ = stub->PrepareCall(&ctx_, kChatMethod, ClientQueues::Get().Pick());
    // Writes wait for the start (it uses the write slot); the first read
    // may go at once.
    ops_ = 2;
    call_->StartCall(Arm(&start_tag_));
    reading_ = true;
    call_->Read(&in_, Arm(&read_tag_));
  }

  Status Send(std::string_view name, std::string_view message, Timeout timeout) override {
    if (!IsValidUtf8(name)) return Status(Code::kBadArgument, "name is not valid UTF-8");
    if (!IsValidUtf8(message)) return Status(Code::kBadArgument, "message is not valid UTF-8");
    size_t size = StringFieldWireSize(name.size()) + StringFieldWireSize(message.size());
    if (size > max_message_bytes_) {
      return Status(Code::kTooLarge, "message of " + std::to_string(size) +
                                         " bytes exceeds the maximum message size of " +
                                         std::to_string(max_message_bytes_));
    }
    grpc::ByteBuffer encoded = EncodeChatMessage(name, message);  // outside the lock
    std::unique_lock<std::mutex> lock(mu_);
    auto closed = [&] { return WriteClosedLocked(); };
    Status room =
        closed() ? Status::Ok() : out_.WaitForRoom(lock, timeout, encoded.Length(), closed);
    if (closed()) return WriteClosedStatusLocked();
    if (!room.ok()) {
      if (queue_) want_writable_ = true;
      return room;
    }
    out_.queue().Push(std::move(encoded));
    MaybeWriteNextLocked();
    return Status::Ok();
  }

  Status Complete() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) return Status(Code::kClosed, "stream was cancelled");
      if (complete_wanted_ || reads_done_ || write_broken_) return Status::Ok();
      complete_wanted_ = true;
      MaybeWritesDoneLocked();
    }
    out_.NotifyRoom();  // a sender waiting for room hears that writing is over
    return Status::Ok();
  }

  Status Cancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) return Status::Ok();
      if (done_) return Status(Code::kClosed, "stream already ended");
      cancelled_ = true;
      out_.queue().DropAllButInFlight();
      ctx_.TryCancel();
      MaybeFinishLocked();
    }
    out_.NotifyRoom();
    return Status::Ok();
  }

  Status Recv(std::string* reply, Timeout timeout) override {
    if (queue_) return QueuedStatus();
    std::unique_lock<std::mutex> lock(mu_);
    if (!WaitForReplyLocked(lock, timeout)) return Status(Code::kTimeout, "no reply in time");
    if (inq_.empty()) return EndStatusLocked();
    *reply = PopReplyLocked();
    if (inq_.empty() && !done_) ready_hint_.store(false, std::memory_order_relaxed);
    MaybeResumeReadLocked();
    return Status::Ok();
  }

  Status RecvBatch(std::vector<std::string>* replies, size_t max, Timeout timeout) override {
    if (max == 0) return Status(Code::kBadArgument, "max must be at least 1");
    if (queue_) return QueuedStatus();
    std::unique_lock<std::mutex> lock(mu_);
    if (!WaitForReplyLocked(lock, timeout)) return Status(Code::kTimeout, "no reply in time");
    if (inq_.empty()) return EndStatusLocked();
    while (max-- > 0 && !inq_.empty()) replies->push_back(PopReplyLocked());
    if (inq_.empty() && !done_) ready_hint_.store(false, std::memory_order_relaxed);
    MaybeResumeReadLocked();
    return Status::Ok();
  }

  Status Wait(Timeout timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    auto ended = [&] { return done_; };
    if (timeout < Timeout::zero()) {
      AllowCancel cancellable;
      done_cv_.wait(lock, ended);
    } else if (timeout != kNoWait && !ended()) {
      AllowCancel cancellable;
      if (!done_cv_.wait_for(lock, Bounded(timeout), ended)) {
        return Status(Code::kTimeout, "stream still open");
      }
    } else if (!ended()) {
      return Status(Code::kTimeout, "stream still open");
    }
    return Status::Ok();
  }

  Status FinalStatus() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!done_) return Status(Code::kBadState, "stream still open");
    return final_;
  }

  Status ServerMetadata(bool trailing, const Metadata** out) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (trailing ? !done_ : !have_initial_) {
      return Status(Code::kBadState, trailing ? "the stream has not ended yet"
                                              : "the server's initial metadata has not arrived");
    }
    *out = trailing ? &trailing_md_ : &initial_md_;
    return Status::Ok();
  }

  void Close() override {
    Cancel();
    {
      // Bounded: a cancelled call always completes its Finish. Not a
      // cancellation point (see AllowCancel): a destroy finishes.
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, [&] { return done_; });
    }
    if (queue_) queue_->Purge(tag_);  // its END is in by now
  }

  bool HoldsUntilConsumed() const override { return hold_; }
  void Held(size_t bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    held_.push_back(bytes);
  }
  Status Consumed(size_t count) override {
    if (!hold_) return ClientStream::Consumed(count);
    size_t bytes = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (count > held_.size()) {
        return Status(Code::kBadArgument, "count is more than the replies drained and not yet "
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

  // --- EventSource: the host drained `count` replies of `bytes` ---
  // Takes mu_ only when reading is paused: the completion thread holds it
  // across gRPC calls, and a host that slept on it here would cost that
  // thread a futex wake per drain. Sequentially consistent with OnRead's
  // pause: either its second look sees these counts or this sees the pause.
  void Drained(size_t count, size_t bytes) override {
    undrained_.fetch_sub(count);
    undrained_bytes_.fetch_sub(bytes);
    if (!read_paused_.load()) return;
    std::lock_guard<std::mutex> lock(mu_);
    MaybeResumeReadLocked();
  }

 private:
  void OnStart(bool ok);
  void OnRead(bool ok);
  void OnWrite(bool ok);
  void WriteSlotBack(bool ok, bool was_write);
  void OnWritesDone(bool ok);
  void OnFinish(bool ok);
  void Over();
  static Metadata Copy(const std::multimap<grpc::string_ref, grpc::string_ref>& from) {
    Metadata to;
    for (const auto& [key, value] : from) to.emplace_back(std::string(key.data(), key.size()),
                                                          std::string(value.data(), value.size()));
    return to;
  }

  static Status QueuedStatus() {
    return Status(Code::kBadState, "this stream delivers to an event queue: drain the queue");
  }

  // Writing makes no sense once the user half-closed or cancelled, a write
  // failed, or the server ended the call (all its replies were read).
  bool WriteClosedLocked() const {
    return complete_wanted_ || cancelled_ || write_broken_ || reads_done_;
  }
  Status WriteClosedStatusLocked() const {
    if (complete_wanted_) return Status(Code::kClosed, "stream was completed (half-closed)");
    if (cancelled_) return Status(Code::kClosed, "stream was cancelled");
    return Status(Code::kClosed, "stream has ended; see its final status");
  }

  Status EndStatusLocked() const {
    if (final_.ok()) return Status(Code::kEndOfStream, "end of stream");
    return final_;
  }

  bool WaitForReplyLocked(std::unique_lock<std::mutex>& lock, Timeout timeout) {
    auto ready = [&] { return !inq_.empty() || done_; };
    if (!ready() && timeout != Timeout::zero() && ShouldYield()) {
      // Replies often come in bursts. Before sleeping, give the CPU to
      // gRPC's threads a few times and look again: catching the next reply
      // this way saves a sleep/wake pair (two context switches) per reply.
      lock.unlock();
      bool caught = false;
      auto until = std::chrono::steady_clock::now() + kRecvYieldBudget;
      while (!caught && std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();  // on a busy machine one yield may cost
        caught = ready_hint_.load(std::memory_order_acquire);  // the budget
      }
      lock.lock();
      // Adapt like an adaptive mutex: keep yielding while it pays off; when
      // it keeps missing (ping-pong, a quiet chat), sleep at once and only
      // probe again now and then, so latency does not pay for it. Learned
      // per receiving thread: one thread may serve many streams.
      t_yield_misses = caught ? 0 : t_yield_misses + 1;
    }
    if (timeout < Timeout::zero()) {
      AllowCancel cancellable;
      recv_cv_.wait(lock, ready);
      return true;
    }
    // A poll (timeout 0) that finds nothing makes no system call: a
    // condition variable's wait_for would still enter the kernel once.
    if (timeout == Timeout::zero()) return ready();
    AllowCancel cancellable;
    return recv_cv_.wait_for(lock, Bounded(timeout), ready);
  }

  static bool ShouldYield() {
    if (t_yield_misses < kRecvYieldMisses) return true;
    return ++t_yield_skips % kRecvYieldProbe == 0;
  }

  // Starts the next queued message unless one is in flight, the call has
  // not started yet (the start holds the write slot) or it can no longer
  // write.
  void MaybeWriteNextLocked() {
    if (out_.queue().empty() || out_.queue().writing() || !started_) return;
    if (cancelled_ || reads_done_ || write_broken_) return;
    ++ops_;
    out_.StartWrite(call_.get(), &write_tag_);
  }

  void CountEndLocked() {
    stats_->Closed();
    Code code = final_.code();
    if (code == Code::kOk || (cancelled_ && code == Code::kCancelled)) return;
    bool refused = code == Code::kResourceExhausted || code == Code::kUnavailable;
    if (refused && !got_reply_) {
      stats_->Refused();
    } else {
      stats_->Cut();
    }
  }

  // Over once Finish has completed and nothing else is in flight.
  bool OverLocked() const { return finished_ && ops_ == 0; }

  // The half-close goes once every queued message is written (it takes the
  // write slot, like a write).
  void MaybeWritesDoneLocked() {
    if (!complete_wanted_ || writes_done_started_ || !started_ || !out_.Drained()) return;
    if (cancelled_ || write_broken_ || reads_done_) return;
    writes_done_started_ = true;
    ++ops_;
    call_->WritesDone(Arm(&writes_done_tag_));
  }

  // Finish once no more replies can come from gRPC: the reads ended, or the
  // stream was cancelled and no read is in flight.
  void MaybeFinishLocked() {
    if (finish_called_ || (!reads_done_ && !(cancelled_ && !reading_))) return;
    finish_called_ = true;
    ++ops_;
    call_->Finish(&status_, Arm(&finish_tag_));
  }

  // Reading pauses while this many replies wait (HTTP/2 flow control then
  // slows the server down).
  bool RecvQueueFullLocked() const {
    if (queue_) return undrained_ >= recv_queue_limit_ || undrained_bytes_ >= recv_queue_bytes_;
    return inq_.size() >= recv_queue_limit_ || inq_bytes_ >= recv_queue_bytes_;
  }

  std::string PopReplyLocked() {
    std::string reply = std::move(inq_.front());
    inq_.pop_front();
    inq_bytes_ -= reply.size();
    return reply;
  }

  void MaybeResumeReadLocked() {
    if (!read_paused_ || RecvQueueFullLocked() || reads_done_ || cancelled_) return;
    read_paused_ = false;
    reading_ = true;
    ++ops_;
    call_->Read(&in_, Arm(&read_tag_));
  }

  const std::shared_ptr<StatsCounters> stats_;  // the client's; streams may outlive it
  const size_t max_message_bytes_;
  const size_t recv_queue_limit_;
  const size_t recv_queue_bytes_;
  const std::shared_ptr<EventQueue> queue_;  // or null: replies wait in inq_
  void* const tag_;
  void* const user_data_;
  const bool hold_;                // drained replies keep their room until Consumed
  std::deque<size_t> held_;        // hold: sizes of replies drained, not yet consumed
  grpc::ClientContext ctx_;
  std::shared_ptr<StreamImpl> self_;  // until Over()
  OpTag<StreamImpl, &StreamImpl::OnStart> start_tag_{this};
  OpTag<StreamImpl, &StreamImpl::OnRead> read_tag_{this};
  OpTag<StreamImpl, &StreamImpl::OnWrite> write_tag_{this};
  OpTag<StreamImpl, &StreamImpl::OnWritesDone> writes_done_tag_{this};
  OpTag<StreamImpl, &StreamImpl::OnFinish> finish_tag_{this};

  mutable std::mutex mu_;
  std::condition_variable recv_cv_;
  std::condition_variable done_cv_;
  // Declared after ctx_: it lives in the call's arena, which ctx_ frees.
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  Outbox out_;
  int ops_ = 0;                   // operations started, not yet completed
  bool started_ = false;          // StartCall completed: writes may go
  bool complete_wanted_ = false;
  bool writes_done_started_ = false;
  bool write_broken_ = false;
  bool cancelled_ = false;
  grpc::ByteBuffer in_;           // the read in flight fills it
  bool reading_ = false;
  bool got_reply_ = false;
  std::deque<std::string> inq_;
  size_t inq_bytes_ = 0;
  std::atomic<size_t> undrained_{0};  // queued: replies pushed, not yet drained
  std::atomic<size_t> undrained_bytes_{0};
  bool want_writable_ = false;    // queued: a send was refused; a kWritable is owed
  std::atomic<bool> ready_hint_{false};  // inq_ non-empty or done_, readable without mu_
  std::atomic<bool> read_paused_{false};  // written under mu_; Drained reads it without
  bool reads_done_ = false;
  bool finish_called_ = false;
  bool finished_ = false;         // Finish completed: status_ is final
  bool done_ = false;             // over: nothing in flight any more
  grpc::Status status_;           // Finish fills it
  Status final_;
  Status malformed_;              // set when a reply could not be parsed
  bool have_initial_ = false;     // initial_md_ is final (set once, under mu_)
  Metadata initial_md_;
  Metadata trailing_md_;          // final once done_
};

void StreamImpl::OnStart(bool ok) { WriteSlotBack(ok, /*was_write=*/false); }

// The write slot is free again, after the call's start or a write. After a
// failed one nothing more can be written (its status tells why).
void StreamImpl::WriteSlotBack(bool ok, bool was_write) {
  bool over, wake_senders;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    if (was_write) {
      if (ok) stats_->Out(out_.queue().in_flight_bytes());
      out_.queue().WriteDone(ok);
    } else {
      started_ = true;
    }
    if (!ok) {
      write_broken_ = true;
      out_.queue().DropAllButInFlight();
    } else {
      MaybeWriteNextLocked();
    }
    if (want_writable_ && out_.LowWater() && !WriteClosedLocked()) {
      want_writable_ = false;
      Event e;
      e.type = EventType::kWritable;
      e.tag = tag_;
      e.user_data = user_data_;
      queue_->Push(std::move(e));
    }
    MaybeWritesDoneLocked();
    over = OverLocked();
    wake_senders = out_.WakesSenders(!ok || WriteClosedLocked());
  }
  if (wake_senders) out_.NotifyRoom();
  if (over) Over();
}

void StreamImpl::OnRead(bool ok) {
  std::string reply;
  bool parsed = ok && DecodeStringValue(in_, &reply);
  if (parsed) stats_->In(in_.Length());
  bool over;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    reading_ = false;
    if (!have_initial_) {
      // The first read carried gRPC's receive of the initial metadata.
      initial_md_ = Copy(ctx_.GetServerInitialMetadata());
      have_initial_ = true;
    }
    if (ok && !parsed) {
      // Not a StringValue (bad encoding or invalid UTF-8): end the call with
      // a clear status instead of passing on or dropping the bytes.
      ok = false;
      malformed_ = Status(Code::kInternal,
                          "received bytes are not a valid StringValue (must be UTF-8)");
      if (!cancelled_) {
        cancelled_ = true;
        ctx_.TryCancel();
      }
    }
    if (ok) {
      got_reply_ = true;
      if (queue_) {
        Event e;
        e.type = EventType::kReply;
        e.tag = tag_;
        e.user_data = user_data_;
        size_t bytes = e.credit = reply.size();
        e.text = std::move(reply);
        e.source = std::shared_ptr<EventSource>(self_);
        // Counted first: the host may drain it (Drained) before Push returns.
        undrained_.fetch_add(1);
        undrained_bytes_.fetch_add(bytes);
        if (!queue_->Push(std::move(e))) {  // dropped: the host destroyed its queue
          undrained_.fetch_sub(1);
          undrained_bytes_.fetch_sub(bytes);
        }
      } else {
        inq_bytes_ += reply.size();
        inq_.push_back(std::move(reply));
        ready_hint_.store(true, std::memory_order_release);
      }
      if (cancelled_) {
        // No more reads: Finish follows.
      } else if (!RecvQueueFullLocked()) {
        reading_ = true;
        ++ops_;
        call_->Read(&in_, Arm(&read_tag_));
      } else {
        read_paused_ = true;  // HTTP/2 flow control now slows the server down
        MaybeResumeReadLocked();  // unless a drain gave room back before it saw the pause
      }
    } else {
      reads_done_ = true;
      out_.queue().DropAllButInFlight();
    }
    MaybeFinishLocked();
    over = OverLocked();
  }
  recv_cv_.notify_all();
  if (!ok) out_.NotifyRoom();
  if (over) Over();
}

void StreamImpl::OnWrite(bool ok) { WriteSlotBack(ok, /*was_write=*/true); }

void StreamImpl::OnWritesDone(bool) {
  bool over;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    over = OverLocked();
  }
  if (over) Over();
}

void StreamImpl::OnFinish(bool) {
  bool over;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --ops_;
    finished_ = true;
    over = ops_ == 0;
  }
  if (over) Over();
}

// Nothing is in flight and the status is in: wake every waiter. `self` may
// be the last reference: the stream is destroyed here, after every member
// was last touched.
void StreamImpl::Over() {
  std::shared_ptr<StreamImpl> self;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    ready_hint_.store(true, std::memory_order_release);
    final_ = malformed_.ok() ? FromGrpc(status_) : malformed_;
    trailing_md_ = Copy(ctx_.GetServerTrailingMetadata());
    CountEndLocked();
    self = std::move(self_);
    if (queue_) {
      // After every reply (pushed under this mutex before), exactly once.
      Event e;
      e.type = EventType::kEnd;
      e.tag = tag_;
      e.user_data = user_data_;
      e.code = final_.code();
      e.text = final_.message();
      queue_->Push(std::move(e));
    }
  }
  recv_cv_.notify_all();
  out_.NotifyRoom();
  done_cv_.notify_all();
}

// How long destroying a client waits for a connection attempt in progress
// to settle (see ~ClientImpl). Loopback and LAN connects take milliseconds;
// a peer that accepts TCP but never answers HTTP/2 is given up on.
constexpr auto kConnectSettle = std::chrono::seconds(5);

Status InsecureToken();

class ClientImpl final : public Client {
 public:
  ClientImpl(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options, bool tls,
             bool loopback)
      : channel_(channel), stub_(std::make_unique<RawStub>(std::move(channel))),
        options_(options),
        token_safe_(tls || loopback || options.allow_insecure_token),
        stats_(std::make_shared<StatsCounters>()) {}

  // gRPC 1.51 leaks the connection of a channel destroyed while its
  // subchannel is still connecting: the attempt completes after the
  // subchannel was orphaned, and the new transport (socket, fd, the
  // server's side of it) is never closed. So let a connection attempt in
  // progress finish (READY or failed) before the channel goes; then gRPC
  // closes it as usual. Runs on the destroying application thread.
  // The wait is on the steady clock (a wall-clock step cannot stretch it)
  // and not a thread-cancellation point: a destructor cannot be unwound.
  ~ClientImpl() override {
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    auto until = std::chrono::steady_clock::now() + kConnectSettle;
    grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/false);
    while (state == GRPC_CHANNEL_CONNECTING) {
      auto left = until - std::chrono::steady_clock::now();
      if (left <= left.zero() ||
          !channel_->WaitForStateChange(state, std::chrono::system_clock::now() + left)) {
        break;
      }
      state = channel_->GetState(false);
    }
    pthread_setcancelstate(cancel_state, nullptr);
  }

  Status Open(const StreamOptions& options, std::shared_ptr<ClientStream>* out) override {
    if (options.compression && !IsCompression(static_cast<int>(*options.compression))) {
      return Status(Code::kBadArgument, "unknown compression (none, deflate or gzip)");
    }
    for (const auto& [key, value] : options.metadata) {
      Status valid = CheckMetadata(key, value);
      if (!valid.ok()) return valid;
    }
    if (!options.token.empty()) {
      Status st = CheckToken(options.token);
      if (!st.ok()) return st;
    }
    const std::string& token = options.token.empty() ? options_.token : options.token;
    if (!token.empty()) {
      if (!token_safe_) return InsecureToken();
      for (const auto& [key, value] : options.metadata) {
        if (key == "authorization") {
          return Status(Code::kBadArgument,
                        "a bearer token and 'authorization' metadata cannot both be given");
        }
      }
    }
    auto stream = std::make_shared<StreamImpl>(options_, options, stats_);
    stats_->Opened();
    stream->Begin(stub_.get(), stream);
    *out = std::move(stream);
    return Status::Ok();
  }

  Stats stats() const override { return stats_->Snapshot(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<RawStub> stub_;
  const ClientOptions options_;
  const bool token_safe_;  // a token may be sent (TLS, loopback, or allowed)
  const std::shared_ptr<StatsCounters> stats_;
};

Status InsecureToken() {
  return Status(Code::kBadArgument,
                "refusing to send a bearer token over plaintext to a host that is not loopback "
                "(use TLS, or allow_insecure_token)");
}

// The channel's credentials: TLS with the client's roots, certificate and
// key (read from files now), or plaintext.
Status ChannelCredentials(const ClientOptions& o, bool tls,
                          std::shared_ptr<grpc::ChannelCredentials>* out) {
  if (!tls) {
    *out = grpc::InsecureChannelCredentials();
    return Status::Ok();
  }
  if (o.tls_cert_chain.empty() != o.tls_private_key.empty()) {
    return Status(Code::kBadArgument, "a client certificate needs its key, and a key its certificate");
  }
  grpc::SslCredentialsOptions ssl;
  Status st = LoadPem(o.tls_root_certs, "TLS root certificates", &ssl.pem_root_certs);
  if (st.ok()) st = LoadPem(o.tls_cert_chain, "TLS certificate", &ssl.pem_cert_chain);
  if (st.ok()) st = LoadPem(o.tls_private_key, "TLS private key", &ssl.pem_private_key);
  if (!st.ok()) return st;
  *out = grpc::SslCredentials(ssl);
  return Status::Ok();
}

}  // namespace

}  // namespace internal

Status Client::Create(std::string_view target, const ClientOptions& options,
                      std::unique_ptr<Client>* out) {
  std::string t;
  bool https = false, http = false;
  Status normalized = internal::NormalizeTarget(target, &t, &https, &http);
  if (!normalized.ok()) return normalized;
  bool tls = https || options.tls || !options.tls_root_certs.empty() ||
             !options.tls_cert_chain.empty() || !options.tls_private_key.empty() ||
             !options.tls_server_name.empty();
  if (tls && http) {
    return Status(Code::kBadArgument, "an http:// target is plaintext: use https:// for TLS");
  }
  bool loopback = internal::IsLoopbackTarget(t);
  if (!options.token.empty()) {
    Status st = internal::CheckToken(options.token);
    if (!st.ok()) return st;
    if (!tls && !loopback && !options.allow_insecure_token) return internal::InsecureToken();
  }
  if (options.send_queue_limit == 0 || options.recv_queue_limit == 0 ||
      options.send_queue_bytes == 0 || options.recv_queue_bytes == 0 ||
      options.max_message_bytes == 0 || options.max_message_bytes > static_cast<size_t>(INT32_MAX)) {
    return Status(Code::kBadArgument, "queue limits and the message size must be positive");
  }
  if (options.keepalive_ms < 0 || (options.keepalive_ms > 0 && options.keepalive_ms < 1000) ||
      options.keepalive_timeout_ms <= 0) {
    return Status(Code::kBadArgument,
                  "keepalive_ms must be 0 (off) or at least 1000, keepalive_timeout_ms positive");
  }
  if (!IsCompression(static_cast<int>(options.compression))) {
    return Status(Code::kBadArgument, "unknown compression (none, deflate or gzip)");
  }
  internal::KeepGrpcInitialized();
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  Status creds = internal::ChannelCredentials(options, tls, &credentials);
  if (!creds.ok()) return creds;
  grpc::ChannelArguments args;
  if (options.compression != Compression::kNone) {
    args.SetCompressionAlgorithm(static_cast<grpc_compression_algorithm>(options.compression));
  }
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // One connection per Client object, not one shared process-wide.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // No retries: a chat stream is never replayed (no retry policy is set),
  // yet gRPC 1.51's retry filter still copies every sent message into its
  // replay buffer, and with it on, a read in flight when the stream was
  // cancelled could wait forever for trailers that never came (a hang in
  // chat_stream_destroy about once in 500 runs of the WRITABLE test).
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  if (options.keepalive_ms > 0) {
    // Ping while streams are open, however long they stay quiet, so a dead
    // or frozen server ends them with UNAVAILABLE.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_ms);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.keepalive_timeout_ms);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  if (!options.tls_server_name.empty()) {
    args.SetString(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, options.tls_server_name);
  }
  auto channel = grpc::CreateCustomChannel(t, credentials, args);
  if (!channel) return Status(Code::kBadArgument, "cannot create a channel to '" + t + "'");
  *out = std::make_unique<internal::ClientImpl>(std::move(channel), options, tls, loopback);
  return Status::Ok();
}

}  // namespace chat
