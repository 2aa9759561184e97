/* log_helper: provokes a real gRPC log line (a request with content-type
 * text/plain, see bad_request.h) and exits once it was logged.
 * "handler": with a log handler set, prints "ok" when the handler got the
 * line, and nothing else: the test checks that stderr stays empty.
 * "default": no handler; gRPC writes the line to stderr itself, before the
 * server answers the request, so it is out when "ok" is printed. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "bad_request.h"
#include <libchat/chat.h>

/* The line comes on a gRPC thread. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int seen = 0;

static void on_log(chat_log_severity severity, const char *message, size_t len, void *user_data) {
  (void)user_data;
  if (severity == CHAT_LOG_ERROR && len == strlen(message) &&
      strstr(message, BAD_REQUEST_LOG_LINE) != NULL) {
    pthread_mutex_lock(&mu);
    ++seen;
    pthread_mutex_unlock(&mu);
  }
}

static int seen_count(void) {
  int n;
  pthread_mutex_lock(&mu);
  n = seen;
  pthread_mutex_unlock(&mu);
  return n;
}

int main(int argc, char **argv) {
  int with_handler = argc > 1 && strcmp(argv[1], "handler") == 0;
  chat_server *server = NULL;
  int fd, answered;
  if (with_handler && chat_set_log_handler(on_log, NULL, CHAT_LOG_ERROR) != CHAT_OK) return 1;
  if (chat_server_start("127.0.0.1:0", NULL, &server) != CHAT_OK) return 1;
  fd = bad_request_send((int)chat_server_port(server));
  answered = fd >= 0 && bad_request_await_reply(fd, 10000) == 0;
  if (fd >= 0) close(fd);
  if (with_handler) {
    /* Wait (10 s at most) for the line; it should be in already. */
    long long deadline = bad_request_now_ms() + 10000;
    struct timespec tick = {0, 5000000};
    while (seen_count() == 0 && bad_request_now_ms() < deadline) nanosleep(&tick, NULL);
  }
  chat_server_destroy(server);
  if (!answered) return 1;
  if (with_handler && seen_count() != 1) return 1;
  printf("ok\n");
  return 0;
}
