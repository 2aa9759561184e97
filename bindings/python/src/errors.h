// Turning chat_code results into Python exceptions.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <string_view>

#include <libchat/chat.h>

namespace pychat {

namespace py = pybind11;

// Raises the exception for `code`: a gRPC code (1..16) becomes the matching
// pychat.ChatError subclass with `message` as details; a library code becomes
// a built-in (ValueError, TimeoutError, ...) or pychat.ClosedError.
[[noreturn]] void raise_code(chat_code code, std::string_view message);

// raise_code with chat_last_error(): call right after the failing chat_*
// call, on the same thread, before any other chat_* call.
[[noreturn]] void raise_last(chat_code code);

// Raises pychat.ClosedError(message).
[[noreturn]] void raise_closed(const std::string& message);

// pychat.StatusCode(code).
py::object status_code(chat_code code);

// True if the pending exception in `e` is a pychat.ChatError.
bool is_chat_error(const py::error_already_set& e);

}  // namespace pychat
