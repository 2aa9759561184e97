/* Compiled as C99 with -pedantic-errors -Werror: the public header must be
 * clean C. Running it checks that header and library agree on the version. */
#include <libchat/chat.h>
#include <libchat/chat.h> /* include guard */

#include <stdio.h>

int main(void) {
  chat_server_options opts;
  if (chat_server_options_init(&opts, CHAT_SERVER_OPTIONS_VERSION) != CHAT_OK) return 1;
  if (chat_version_number() != CHAT_VERSION_NUMBER) return 1;
  printf("chat.h as C99: %s\n", chat_version());
  return 0;
}
