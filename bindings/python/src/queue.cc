// EventQueue: chat.h's chat_queue for pychat.aio.
//
// An event loop watches fileno() and, when it is readable, calls drain()
// until it returns fewer events than asked for. drain() never waits: it
// takes what is pending without the GIL (the queue's lock is contended only
// by the library's transport threads pushing events), then turns the batch
// into tuples with the GIL, one allocation per tuple and per string.
//
// Every event is a 4-tuple (type, key, a, b):
//   OPEN        (1, key, Call, None)       a server call opened
//   MESSAGE     (2, key, name, message)
//   HALF_CLOSE  (3, key, None, None)
//   CLOSE       (4, key, code, details)    the call's last event
//   REPLY       (5, key, text, None)
//   END         (6, key, code, details)    the stream's last event
//   WRITABLE    (7, key, None, None)
//   WAKE        (0, 0, None, None)
// `key` is an int unique per queue: a stream's QueuedStream.key, or for a
// server call the one its OPEN carried. Keys, not objects: an event drained
// just before its stream was closed on another thread then refers to
// nothing rather than to freed memory.
#include "queue.h"

#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"
#include "gil.h"
#include "module.h"

namespace pychat {
namespace {

// Never fails on a stray byte: an event must not be lost to a decode error
// after it left the queue (the library checks UTF-8 anyway).
PyObject* text_object(const char* data, size_t len) {
  PyObject* s = PyUnicode_DecodeUTF8(data, static_cast<Py_ssize_t>(len), "replace");
  if (!s) throw py::error_already_set();
  return s;
}

class EventQueue {
 public:
  EventQueue() {
    chat_queue* q = nullptr;
    chat_code rc = chat_queue_create(&q);
    if (rc != CHAT_OK) raise_last(rc);
    handle_ = std::make_shared<QueueHandle>(q);
    fd_ = chat_queue_fd(q);
  }
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  int fileno() const {
    if (!handle_) raise_closed("event queue is closed");
    return fd_;
  }

  bool closed() const { return handle_ == nullptr; }

  std::shared_ptr<QueueHandle> handle() const {
    if (!handle_) raise_closed("event queue is closed");
    return handle_;
  }

  py::list drain(size_t max) {
    if (max == 0) throw py::value_error("max must be at least 1");
    if (!handle_) return py::list();
    if (draining_) throw std::runtime_error("EventQueue.drain() is already running on another thread");
    std::shared_ptr<QueueHandle> keep = handle_;  // close() may run meanwhile
    if (events_.size() < max) events_.resize(max);
    size_t count = 0;
    draining_ = true;
    chat_code rc = without_gil(
        [&] { return chat_queue_drain(keep->get(), 0, events_.data(), max, &count); });
    draining_ = false;
    if (rc != CHAT_OK) raise_last(rc);
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(count));
    if (!list) throw py::error_already_set();
    py::list result = py::reinterpret_steal<py::list>(list);
    for (size_t i = 0; i < count; ++i) {
      PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), convert(*keep, events_[i]).release().ptr());
    }
    return result;
  }

  void wake() {
    if (!handle_) raise_closed("event queue is closed");
    chat_code rc = chat_queue_wake(handle_->get());
    if (rc != CHAT_OK) raise_last(rc);
  }

  // The queue is destroyed (its descriptor closed) once the servers and
  // streams attached to it are gone too; until then it only stops here.
  void close() {
    std::shared_ptr<QueueHandle> handle = std::move(handle_);
    if (handle) without_gil([&] { handle.reset(); });
  }

 private:
  static py::object convert(QueueHandle& queue, const chat_event& ev) {
    PyObject* t = PyTuple_New(4);
    if (!t) throw py::error_already_set();
    py::object tuple = py::reinterpret_steal<py::object>(t);
    uint64_t key = 0;
    PyObject* a = Py_None;
    PyObject* b = Py_None;
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);
    // Filled in place: a conversion that throws leaves a tuple the
    // destructor frees.
    PyTuple_SET_ITEM(t, 2, a);
    PyTuple_SET_ITEM(t, 3, b);
    auto set = [&](int i, PyObject* value) {
      PyObject* old = PyTuple_GET_ITEM(t, i);
      PyTuple_SET_ITEM(t, i, value);
      Py_DECREF(old);
    };
    switch (ev.type) {
      case CHAT_EVENT_OPEN:
        key = queue.next_key();
        chat_call_set_user_data(ev.call, reinterpret_cast<void*>(static_cast<uintptr_t>(key)));
        set(2, make_call(ev.call).release().ptr());
        break;
      case CHAT_EVENT_MESSAGE:
        key = call_key(ev);
        set(2, text_object(ev.name, ev.name_len));
        set(3, text_object(ev.text, ev.text_len));
        break;
      case CHAT_EVENT_HALF_CLOSE:
        key = call_key(ev);
        break;
      case CHAT_EVENT_CLOSE:
      case CHAT_EVENT_END:
        key = ev.call ? call_key(ev) : stream_key(ev);
        set(2, PyLong_FromLong(static_cast<long>(ev.code)));
        set(3, text_object(ev.text ? ev.text : "", ev.text ? ev.text_len : 0));
        break;
      case CHAT_EVENT_REPLY:
        key = stream_key(ev);
        set(2, text_object(ev.text, ev.text_len));
        break;
      case CHAT_EVENT_WRITABLE:
        key = ev.call ? call_key(ev) : stream_key(ev);
        break;
      default:  // WAKE
        break;
    }
    PyObject* type = PyLong_FromLong(static_cast<long>(ev.type));
    PyObject* k = PyLong_FromUnsignedLongLong(key);
    if (!type || !k) {
      Py_XDECREF(type);
      Py_XDECREF(k);
      throw py::error_already_set();
    }
    PyTuple_SET_ITEM(t, 0, type);
    PyTuple_SET_ITEM(t, 1, k);
    return tuple;
  }

  // The key OPEN gave the call: in user_data, unless the OPEN was converted
  // in the same batch, after this event's user_data was read.
  static uint64_t call_key(const chat_event& ev) {
    void* data = ev.user_data ? ev.user_data : chat_call_user_data(ev.call);
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data));
  }

  static uint64_t stream_key(const chat_event& ev) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ev.user_data));
  }

  std::shared_ptr<QueueHandle> handle_;  // null once closed; GIL
  int fd_ = -1;
  bool draining_ = false;               // GIL
  std::vector<chat_event> events_;      // the last batch, borrowed from the library
};

}  // namespace

std::shared_ptr<QueueHandle> queue_of(py::handle event_queue) {
  return event_queue.cast<EventQueue&>().handle();
}

void define_queue(py::module_& m) {
  m.attr("EVENT_WAKE") = static_cast<int>(CHAT_EVENT_WAKE);
  m.attr("EVENT_OPEN") = static_cast<int>(CHAT_EVENT_OPEN);
  m.attr("EVENT_MESSAGE") = static_cast<int>(CHAT_EVENT_MESSAGE);
  m.attr("EVENT_HALF_CLOSE") = static_cast<int>(CHAT_EVENT_HALF_CLOSE);
  m.attr("EVENT_CLOSE") = static_cast<int>(CHAT_EVENT_CLOSE);
  m.attr("EVENT_REPLY") = static_cast<int>(CHAT_EVENT_REPLY);
  m.attr("EVENT_END") = static_cast<int>(CHAT_EVENT_END);
  m.attr("EVENT_WRITABLE") = static_cast<int>(CHAT_EVENT_WRITABLE);

  py::class_<EventQueue>(m, "EventQueue",
                         "libchat's event queue (chat_queue): servers and streams attached to it "
                         "deliver their events here; an event loop watches fileno().")
      .def(py::init<>())
      .def("fileno", &EventQueue::fileno,
           "The descriptor that is readable while events are pending. Owned by the queue.")
      .def("drain", &EventQueue::drain, py::arg("max") = 256,
           "Takes up to `max` pending events without waiting, oldest first: a list of "
           "(type, key, a, b) tuples (see the EVENT_* constants). [] once closed.")
      .def("wake", &EventQueue::wake, "Queues one WAKE event (unless one is pending). Thread-safe.")
      .def("close", &EventQueue::close,
           "Stops the queue; it is freed, and its descriptor closed, once the servers and "
           "streams attached to it are gone. Idempotent.")
      .def_property_readonly("closed", &EventQueue::closed);
}

}  // namespace pychat
