/* chat_client: drives /Chat/chat.
 *
 *   chat_client [--target TARGET] [--name NAME] [--deadline-ms N]
 *
 * TARGET is host:port or http://host:port (default localhost:9090).
 * Without --name it runs the seed: sends Sam/Hi, Ann/Hey, John/Hello,
 * half-closes and prints each reply as it arrives, read on another thread.
 * With --name it is an interactive chat: each stdin line is sent from NAME,
 * replies are printed as they arrive, end of input half-closes, and the
 * program ends as soon as the stream does (a server gone mid-chat does not
 * leave it waiting for input).
 * Exits 0 when the stream ends OK; otherwise prints the status on stderr
 * and exits 1. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "chat.h"

/* Written to by the reader thread when the stream has ended, so the
 * interactive loop stops waiting for input. */
static int g_ended_pipe[2] = {-1, -1};

/* Reads replies until the stream ends; returns the final code. */
static void *read_replies(void *arg) {
  chat_stream *stream = arg;
  for (;;) {
    const char *text;
    size_t len;
    chat_code rc = chat_stream_recv(stream, -1, &text, &len);
    if (rc != CHAT_OK) {
      if (g_ended_pipe[1] >= 0) {
        ssize_t w = write(g_ended_pipe[1], "x", 1);
        (void)w;
      }
      return (void *)(intptr_t)rc;
    }
    fwrite(text, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
  }
}

static int usage(const char *argv0) {
  fprintf(stderr, "usage: %s [--target HOST:PORT|http://HOST:PORT] [--name NAME] [--deadline-ms N]\n",
          argv0);
  return 2;
}

static chat_code send_line(chat_stream *stream, const char *name, const char *message) {
  return chat_stream_send(stream, name, strlen(name), message, strlen(message), -1);
}

int main(int argc, char **argv) {
  const char *target = "localhost:9090";
  const char *name = NULL;
  long deadline_ms = -1;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) target = argv[++i];
    else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) name = argv[++i];
    else if (strcmp(argv[i], "--deadline-ms") == 0 && i + 1 < argc) deadline_ms = strtol(argv[++i], NULL, 10);
    else return usage(argv[0]);
  }

  chat_client *client = NULL;
  chat_code rc = chat_client_create(target, NULL, &client);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chat_client: %s: %s\n", chat_code_name(rc), chat_last_error());
    return 1;
  }
  chat_stream_options sopts;
  chat_stream_options_init(&sopts, CHAT_STREAM_OPTIONS_VERSION);
  sopts.deadline_ms = deadline_ms;
  chat_stream *stream = NULL;
  rc = chat_client_open(client, &sopts, &stream);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chat_client: %s: %s\n", chat_code_name(rc), chat_last_error());
    chat_client_destroy(client);
    return 1;
  }

  if (name != NULL && pipe(g_ended_pipe) != 0) {
    perror("chat_client: pipe");
    return 1;
  }
  pthread_t reader;
  pthread_create(&reader, NULL, read_replies, stream);

  if (name == NULL) {
    static const char *const seed[][2] = {{"Sam", "Hi"}, {"Ann", "Hey"}, {"John", "Hello"}};
    for (size_t i = 0; i < sizeof seed / sizeof seed[0]; ++i) {
      if (send_line(stream, seed[i][0], seed[i][1]) != CHAT_OK) break;  /* status tells why */
    }
  } else {
    /* Lines from stdin, read with read(2) so that poll can also watch for
     * the end of the stream. */
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int open_input = buf != NULL;
    while (open_input) {
      struct pollfd fds[2] = {{0, POLLIN, 0}, {g_ended_pipe[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[1].revents) break; /* the stream has ended */
      if (len == cap) {
        char *bigger = realloc(buf, cap * 2);
        if (bigger == NULL) break;
        buf = bigger;
        cap *= 2;
      }
      ssize_t n = read(0, buf + len, cap - len);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        open_input = 0; /* end of input: a last line without '\n' still goes */
        if (len == 0) break;
        buf[len++] = '\n';
      } else {
        len += (size_t)n;
      }
      size_t start = 0;
      int stop = 0;
      for (size_t i = 0; i < len && !stop; ++i) {
        if (buf[i] != '\n') continue;
        chat_code send_rc = chat_stream_send(stream, name, strlen(name), buf + start, i - start, -1);
        if (send_rc == CHAT_ERR_BAD_ARGUMENT) {
          fprintf(stderr, "chat_client: not sent: %s\n", chat_last_error());
        } else if (send_rc != CHAT_OK) {
          stop = 1;
        }
        start = i + 1;
      }
      if (stop) break;
      memmove(buf, buf + start, len - start);
      len -= start;
    }
    free(buf);
  }
  chat_stream_complete(stream);

  void *result;
  pthread_join(reader, &result);
  chat_code end = (chat_code)(intptr_t)result;
  int status = 0;
  if (end != CHAT_ERR_END) {
    chat_code code = end;
    const char *details = "";
    chat_stream_status(stream, &code, &details, NULL);
    fprintf(stderr, "chat_client: %s: %s\n", chat_code_name(code), details);
    status = 1;
  }
  chat_stream_destroy(stream);
  chat_client_destroy(client);
  return status;
}
