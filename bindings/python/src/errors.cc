// Errors and text: chat_code -> Python exception, str <-> UTF-8.
#include "errors.h"

#include <string>

#include "gil.h"
#include "module.h"

namespace pychat {
namespace {

// Classes from pychat._errors. Strong references kept for the life of the
// process on purpose: a static py::object would be released after the
// interpreter is gone.
PyObject* g_from_status = nullptr;  // _from_status(code, details) -> ChatError
PyObject* g_chat_error = nullptr;
PyObject* g_closed_error = nullptr;
PyObject* g_status_code = nullptr;

PyObject* leak(py::object o) { return o.release().ptr(); }

// Library messages are UTF-8, but never fail on a stray byte here.
py::str message_str(std::string_view message) {
  PyObject* s = PyUnicode_DecodeUTF8(message.data(), static_cast<Py_ssize_t>(message.size()),
                                     "replace");
  if (!s) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

[[noreturn]] void raise_builtin(PyObject* type, std::string_view message) {
  PyErr_SetObject(type, message_str(message).ptr());
  throw py::error_already_set();
}

}  // namespace

[[noreturn]] void raise_code(chat_code code, std::string_view message) {
  switch (code) {
    case CHAT_ERR_BAD_ARGUMENT:
    case CHAT_ERR_TOO_LARGE: raise_builtin(PyExc_ValueError, message);
    case CHAT_ERR_WOULD_BLOCK: raise_builtin(PyExc_BlockingIOError, message);
    case CHAT_ERR_TIMEOUT: raise_builtin(PyExc_TimeoutError, message);
    case CHAT_ERR_CLOSED: raise_builtin(g_closed_error, message);
    case CHAT_ERR_BUSY:
    case CHAT_ERR_BAD_STATE: raise_builtin(PyExc_RuntimeError, message);
    case CHAT_ERR_NO_MEMORY: raise_builtin(PyExc_MemoryError, message);
    case CHAT_END_OF_STREAM: raise_builtin(PyExc_EOFError, message);
    case CHAT_ERR_CANNOT_LISTEN:  // a server that cannot bind, as socket.bind says it
    case CHAT_ERR_SYSTEM: raise_builtin(PyExc_OSError, message);
    case CHAT_ERR_MISSING: raise_builtin(PyExc_KeyError, message);
    case CHAT_ERR_LIBRARY_BUG: raise_builtin(PyExc_RuntimeError, message);
    default: break;
  }
  if (code >= CHAT_CANCELLED && code <= CHAT_UNAUTHENTICATED) {
    py::object exc = py::reinterpret_borrow<py::object>(g_from_status)(static_cast<int>(code),
                                                                       message_str(message));
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
  }
  raise_builtin(PyExc_RuntimeError, std::string("unexpected libchat result ") +
                                        chat_code_name(code) + ": " + std::string(message));
}

[[noreturn]] void raise_last(chat_code code) { raise_code(code, chat_last_error()); }

[[noreturn]] void raise_closed(const std::string& message) {
  raise_builtin(g_closed_error, message);
}

py::object status_code(chat_code code) {
  return py::reinterpret_borrow<py::object>(g_status_code)(static_cast<int>(code));
}

bool is_chat_error(const py::error_already_set& e) {
  return PyErr_GivenExceptionMatches(e.type().ptr(), g_chat_error) != 0;
}

std::string_view utf8_arg(py::handle obj, const char* what) {
  if (!PyUnicode_Check(obj.ptr())) {
    throw py::type_error(std::string(what) + " must be str, not " + Py_TYPE(obj.ptr())->tp_name);
  }
  Py_ssize_t len = 0;
  const char* data = PyUnicode_AsUTF8AndSize(obj.ptr(), &len);
  if (!data) {
    // UnicodeEncodeError names the position; chain it under a plain message.
    py::raise_from(PyExc_ValueError,
                   (std::string(what) + " is not valid text: it contains a lone surrogate, "
                                        "which UTF-8 cannot encode")
                       .c_str());
    throw py::error_already_set();
  }
  return {data, static_cast<size_t>(len)};
}

py::str to_str(const char* data, size_t len) {
  PyObject* s = PyUnicode_DecodeUTF8(data, static_cast<Py_ssize_t>(len), nullptr);
  if (!s) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

void define_errors(py::module_& m) {
  if (chat_abi_version() != CHAT_ABI_VERSION) {
    throw py::import_error("pychat was built for libchat ABI " + std::to_string(CHAT_ABI_VERSION) +
                           " but the loaded libchat.so has ABI " +
                           std::to_string(chat_abi_version()));
  }
  // _pychat lives inside the package; pychat._errors does not import it.
  py::module_ errors = py::module_::import("pychat._errors");
  g_from_status = leak(errors.attr("_from_status"));
  g_chat_error = leak(errors.attr("ChatError"));
  g_closed_error = leak(errors.attr("ClosedError"));
  g_status_code = leak(errors.attr("StatusCode"));

  m.def("library_version", [] { return std::string(chat_version()); },
        "The version of the libchat.so that is loaded (\"0.1.0\").");
  m.def("abi_version", &chat_abi_version, "The C ABI major of the loaded libchat.so.");
  m.attr("HEADER_VERSION") = CHAT_VERSION_STRING;
  // For tests: StatusCode's names must be the library's.
  m.def(
      "_code_name",
      [](int32_t code) { return std::string(chat_code_name(static_cast<chat_code>(code))); },
      py::arg("code"), "chat_code_name(): the library's name of a code number.");
}

}  // namespace pychat
