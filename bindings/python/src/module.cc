#include "module.h"
#include "queue.h"

PYBIND11_MODULE(_pychat, m) {
  m.doc() = "Native core of pychat: libchat's C ABI (chat.h). Use the pychat package.";
  pychat::define_errors(m);
  pychat::define_queue(m);
  pychat::define_server(m);
  pychat::define_room(m);
  pychat::define_client(m);
  pychat::define_log(m);
}
