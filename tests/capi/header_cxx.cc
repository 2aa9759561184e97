// Compiled as C++11 with -pedantic -Werror: the header must also be clean C++.
#include <libchat/chat.h>

#include <cstdio>

// In C++ the functions that do not wait are noexcept; those that wait let a
// thread's forced unwind through and are not.
static_assert(noexcept(chat_call_ref(nullptr)), "chat_call_ref is noexcept");
static_assert(noexcept(chat_stream_destroy(nullptr)), "destroyers are noexcept");
static_assert(noexcept(chat_server_start(nullptr, nullptr, nullptr)), "start is noexcept");
static_assert(!noexcept(chat_stream_recv(nullptr, 0, nullptr, nullptr)), "recv waits");
static_assert(!noexcept(chat_queue_drain(nullptr, 0, nullptr, 0, nullptr)), "drain waits");

int main() {
  chat_client_options opts;
  if (chat_client_options_init(&opts, CHAT_CLIENT_OPTIONS_VERSION) != CHAT_OK) return 1;
  std::printf("chat.h as C++: %s (%s)\n", chat_version(), chat_code_name(CHAT_ERR_TIMEOUT));
  return 0;
}
