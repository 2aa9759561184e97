// The event queue pychat.aio drains (chat.h's chat_queue), shared by the
// translation units that attach servers and streams to it.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include <libchat/chat.h>

namespace pychat {

namespace py = pybind11;

// Owns one chat_queue. The servers and streams attached to it hold the same
// shared_ptr, so chat_queue_destroy runs only after the last of them is gone
// (chat.h: the queue must outlive them), however Python drops the objects.
class QueueHandle {
 public:
  explicit QueueHandle(chat_queue* queue) : queue_(queue) {}
  ~QueueHandle() { chat_queue_destroy(queue_); }
  QueueHandle(const QueueHandle&) = delete;
  QueueHandle& operator=(const QueueHandle&) = delete;

  chat_queue* get() const { return queue_; }
  // Keys for the events of streams and calls: unique per queue, from 1.
  uint64_t next_key() { return next_key_.fetch_add(1, std::memory_order_relaxed); }

 private:
  chat_queue* const queue_;
  std::atomic<uint64_t> next_key_{1};
};

// The queue behind a pychat._pychat.EventQueue object; ClosedError once that
// was closed.
std::shared_ptr<QueueHandle> queue_of(py::handle event_queue);

// A pychat._pychat.Call for `call` (server.cc), taking its own reference.
py::object make_call(chat_call* call);

void define_queue(py::module_& m);

}  // namespace pychat
