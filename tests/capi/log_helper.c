/* log_helper: provokes a gRPC log line (a second server on a port in use).
 * "handler": with a log handler set, prints "ok" when the handler got the
 * line, and nothing else: the test checks that stderr stays empty.
 * "default": no handler; gRPC writes the line to stderr itself. */
#include <stdio.h>
#include <string.h>

#include "chat.h"

static int seen = 0;

static void on_log(chat_log_severity severity, const char *message, size_t len, void *user_data) {
  (void)user_data;
  if (severity == CHAT_LOG_ERROR && len == strlen(message) &&
      strstr(message, "No address added") != NULL) {
    ++seen;
  }
}

int main(int argc, char **argv) {
  int with_handler = argc > 1 && strcmp(argv[1], "handler") == 0;
  if (with_handler && chat_set_log_handler(on_log, NULL, CHAT_LOG_ERROR) != CHAT_OK) return 1;
  chat_server *first = NULL, *second = NULL;
  if (chat_server_start("127.0.0.1:0", NULL, &first) != CHAT_OK) return 1;
  char taken[64];
  snprintf(taken, sizeof taken, "127.0.0.1:%d", (int)chat_server_port(first));
  chat_code rc = chat_server_start(taken, NULL, &second);
  chat_server_destroy(first);
  if (rc != CHAT_UNAVAILABLE) return 1;
  if (with_handler && seen != 1) return 1;
  printf("ok\n");
  return 0;
}
