// Compiled as C++11 with -pedantic -Werror: the header must also be clean C++.
#include <libchat/chat.h>

#include <cstdio>

int main() {
  chat_client_options opts;
  if (chat_client_options_init(&opts, CHAT_CLIENT_OPTIONS_VERSION) != CHAT_OK) return 1;
  std::printf("chat.h as C++: %s (%s)\n", chat_version(), chat_code_name(CHAT_ERR_TIMEOUT));
  return 0;
}
