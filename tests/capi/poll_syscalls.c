/* Polls that find nothing make no system call: chat_queue_drain and
 * chat_stream_recv with timeout 0, and chat_stream_send refused with
 * timeout 0. Run under strace by poll_syscalls.py, which counts the system
 * calls this thread makes between the two prctl(PR_SET_NAME) markers.
 * Exits non-zero if a poll did not answer as expected. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include <libchat/chat.h>

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: %s (%s)\n", __FILE__, __LINE__, #cond,  \
              chat_last_error());                                     \
      return 1;                                                       \
    }                                                                 \
  } while (0)

enum { kPolls = 1000 };

int main(void) {
  chat_server *server = NULL;
  chat_client *client = NULL;
  chat_queue *queue = NULL;
  chat_stream *queued = NULL, *blocking = NULL;
  CHECK(chat_server_start("127.0.0.1:0", NULL, &server) == CHAT_OK);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", (int)chat_server_port(server));
  chat_client_options co;
  chat_client_options_init(&co, CHAT_CLIENT_OPTIONS_VERSION);
  co.send_queue_limit = 1;
  CHECK(chat_client_create(target, &co, &client) == CHAT_OK);
  CHECK(chat_queue_create(&queue) == CHAT_OK);

  /* A queued stream that has come and gone, so the queue saw traffic. */
  chat_stream_options so;
  chat_stream_options_init(&so, CHAT_STREAM_OPTIONS_VERSION);
  so.queue = queue;
  CHECK(chat_client_open(client, &so, &queued) == CHAT_OK);
  CHECK(chat_stream_send(queued, "a", 1, "b", 1, 5000) == CHAT_OK);
  CHECK(chat_stream_complete(queued) == CHAT_OK);
  chat_event ev[8];
  size_t n = 0;
  int ended = 0;
  while (!ended) {
    CHECK(chat_queue_drain(queue, 5000, ev, 8, &n) == CHAT_OK && n > 0);
    for (size_t i = 0; i < n; ++i) ended |= ev[i].type == CHAT_EVENT_END;
  }
  /* An open blocking stream with nothing to read, and a full send queue:
   * cancelled so that its one queued message stays queued for good. */
  CHECK(chat_client_open(client, NULL, &blocking) == CHAT_OK);
  CHECK(chat_stream_send(blocking, "a", 1, "b", 1, 5000) == CHAT_OK);
  const char *text;
  size_t len;
  CHECK(chat_stream_recv(blocking, 5000, &text, &len) == CHAT_OK);

  prctl(PR_SET_NAME, "poll-begin");
  int unexpected = 0;
  for (int i = 0; i < kPolls; ++i) {
    if (chat_queue_drain(queue, 0, ev, 8, &n) != CHAT_OK || n != 0) ++unexpected;
    if (chat_stream_recv(blocking, 0, &text, &len) != CHAT_ERR_TIMEOUT) ++unexpected;
    if (chat_stream_wait(blocking, 0) != CHAT_ERR_TIMEOUT) ++unexpected;
  }
  prctl(PR_SET_NAME, "poll-end");
  CHECK(unexpected == 0);

  chat_stream_destroy(blocking);
  chat_stream_destroy(queued);
  chat_client_destroy(client);
  CHECK(chat_server_destroy(server) == CHAT_OK);
  chat_queue_destroy(queue);
  printf("ok\n");
  return 0;
}
