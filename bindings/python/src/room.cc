// pychat.Room: chat_room_* for a custom server's handler.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "errors.h"
#include "gil.h"
#include "module.h"

namespace pychat {
namespace {

// What on_line needs; owned by the Room, handed to the library as user_data.
struct LineSink {
  py::object on_line;  // a callable taking the line (str)
};

void on_line(chat_room*, const char* line, size_t len, void* user_data) {
  if (finalizing()) return;
  py::gil_scoped_acquire gil;
  auto* sink = static_cast<LineSink*>(user_data);
  try {
    sink->on_line(to_str(line, len));
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable(sink->on_line);  // nothing to fail: the room goes on
  }
}

class Room {
 public:
  Room(std::optional<std::string> url, std::string name, std::optional<int64_t> max_len,
       py::object on_line_fn)
      : sink_(std::make_unique<LineSink>()) {
    chat_room_options o;
    chat_room_options_init(&o, CHAT_ROOM_OPTIONS_VERSION);
    if (url) o.url = url->c_str();
    o.name = name.c_str();
    if (max_len) o.max_len = *max_len;
    if (!on_line_fn.is_none()) {
      if (!PyCallable_Check(on_line_fn.ptr())) throw py::type_error("on_line must be callable");
      sink_->on_line = std::move(on_line_fn);
      o.on_line = on_line;
      o.user_data = sink_.get();
    }
    // Opening a room on Redis connects once (a few seconds at most).
    chat_code rc = without_gil([&] { return chat_room_open(&o, &room_); });
    if (rc != CHAT_OK) raise_last(rc);
  }
  ~Room() {
    // From its own on_line (the last reference dropped there) the room
    // cannot stop: left running rather than freed under its reader.
    if (without_gil([&] { return chat_room_destroy(room_); }) == CHAT_ERR_BUSY) sink_.release();
  }
  Room(const Room&) = delete;
  Room& operator=(const Room&) = delete;

  // The handle stays valid until the destructor (close() only closes), so
  // calls on other threads may run alongside close().
  void publish(py::handle name, py::handle message) {
    std::string_view n = utf8_arg(name, "name"), m = utf8_arg(message, "message");
    chat_code rc = without_gil(
        [&] { return chat_room_publish(room_, n.data(), n.size(), m.data(), m.size()); });
    if (rc != CHAT_OK) raise_last(rc);
  }
  void notice(py::handle text) {
    std::string_view t = utf8_arg(text, "text");
    chat_code rc = without_gil([&] { return chat_room_notice(room_, t.data(), t.size()); });
    if (rc != CHAT_OK) raise_last(rc);
  }
  void join(py::handle call, int64_t replay) {
    if (replay < 0 || replay > 1000) throw py::value_error("replay must be 0..1000 lines");
    chat_call* c = call_handle(call);
    chat_code rc =
        without_gil([&] { return chat_room_join(room_, c, static_cast<uint32_t>(replay)); });
    if (rc != CHAT_OK) raise_last(rc);
  }
  void leave(py::handle call) {
    chat_code rc = chat_room_leave(room_, call_handle(call));
    if (rc != CHAT_OK) raise_last(rc);
  }
  size_t members() {
    size_t n = 0;
    chat_code rc = chat_room_members(room_, &n);
    if (rc != CHAT_OK) raise_last(rc);
    return n;
  }
  void close() {
    chat_code rc = without_gil([&] { return chat_room_close(room_); });
    if (rc != CHAT_OK) raise_last(rc);
  }

 private:
  std::unique_ptr<LineSink> sink_;
  chat_room* room_ = nullptr;
};

}  // namespace

void define_room(py::module_& m) {
  py::class_<Room>(m, "Room", "A room (native part; use pychat.Room).")
      .def(py::init<std::optional<std::string>, std::string, std::optional<int64_t>, py::object>(),
           py::arg("url") = py::none(), py::arg("name") = "", py::arg("max_len") = py::none(),
           py::arg("on_line") = py::none())
      .def("publish", &Room::publish, py::arg("name"), py::arg("message"))
      .def("notice", &Room::notice, py::arg("text"))
      .def("join", &Room::join, py::arg("call"), py::arg("replay") = 0)
      .def("leave", &Room::leave, py::arg("call"))
      .def_property_readonly("members", &Room::members)
      .def("close", &Room::close);
}

}  // namespace pychat
