/* chat_client: drives /Chat/chat.
 *
 *   chat_client [--target TARGET] [--name NAME] [--deadline-ms N]
 *               [--tls-ca PEM] [--tls-cert PEM --tls-key PEM]
 *               [--tls-server-name NAME] [--token TOKEN]
 *               [--compression gzip|deflate|none]
 *
 * TARGET is host:port, http://host:port or https://host:port (TLS; default
 * localhost:9090). --tls-ca trusts that CA instead of the system's roots,
 * --tls-cert/--tls-key present a client certificate, --tls-server-name
 * verifies that name instead of the target's host (any of them means TLS),
 * --token sends "authorization: Bearer TOKEN" (refused over plaintext to a
 * host that is not loopback).
 * Without --name it runs the seed: sends Sam/Hi, Ann/Hey, John/Hello,
 * half-closes and prints each reply as it arrives, read on another thread.
 * With --name it is an interactive chat: each stdin line is sent from NAME,
 * replies are printed as they arrive, end of input half-closes. If the
 * stream ends first (the server went away, a deadline passed) it stops
 * reading stdin at once.
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

#include <libchat/chat.h>

/* The reply reader's end of a pipe: it writes one byte there when the
 * stream has ended, which wakes the stdin loop (see chat_lines). */
static int ended_pipe[2] = {-1, -1};

/* Reads replies until the stream ends; returns the final code. */
static void *read_replies(void *arg) {
  chat_stream *stream = arg;
  for (;;) {
    const char *text;
    size_t len;
    chat_code rc = chat_stream_recv(stream, -1, &text, &len);
    if (rc != CHAT_OK) {
      char byte = 1;
      while (write(ended_pipe[1], &byte, 1) < 0 && errno == EINTR) {
      }
      return (void *)(intptr_t)rc;
    }
    fwrite(text, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
  }
}

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--target HOST:PORT|http://HOST:PORT|https://HOST:PORT] [--name NAME]\n"
          "       [--deadline-ms N] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM]\n"
          "       [--tls-server-name NAME] [--token TOKEN] [--compression gzip|deflate|none]\n",
          argv0);
  return 2;
}

/* CHAT_COMPRESSION_* for a --compression value, -1 for an unknown one. */
static int parse_compression(const char *name) {
  if (strcmp(name, "gzip") == 0) return CHAT_COMPRESSION_GZIP;
  if (strcmp(name, "deflate") == 0) return CHAT_COMPRESSION_DEFLATE;
  if (strcmp(name, "none") == 0) return CHAT_COMPRESSION_NONE;
  return -1;
}

static chat_code send_line(chat_stream *stream, const char *name, const char *message) {
  return chat_stream_send(stream, name, strlen(name), message, strlen(message), -1);
}

/* Sends one stdin line (without its newline) from `name`. Returns 0 to go on,
 * -1 when the stream no longer takes messages. */
static int send_input(chat_stream *stream, const char *name, const char *line, size_t n) {
  chat_code rc = chat_stream_send(stream, name, strlen(name), line, n, -1);
  if (rc == CHAT_ERR_BAD_ARGUMENT) {
    fprintf(stderr, "chat_client: not sent: %s\n", chat_last_error());
    return 0;
  }
  return rc == CHAT_OK ? 0 : -1;
}

/* Sends each stdin line from `name` until end of input or the end of the
 * stream, whichever comes first: poll() waits on stdin and on the reader's
 * pipe together, so a stream that ends while stdin is quiet is noticed at
 * once. stdin is read with read(), not stdio, so that no line can sit in a
 * buffer poll() does not see. */
static void chat_lines(chat_stream *stream, const char *name) {
  size_t cap = 4096, used = 0;
  char *buf = malloc(cap);
  if (buf == NULL) return;
  for (;;) {
    struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {ended_pipe[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break; /* the stream has ended: nothing more to send */
    if (!fds[0].revents) continue;
    if (used == cap) {
      char *bigger = realloc(buf, cap * 2);
      if (bigger == NULL) break;
      buf = bigger;
      cap *= 2;
    }
    ssize_t got = read(STDIN_FILENO, buf + used, cap - used);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) { /* end of input (or an error): a last unterminated line goes too */
      if (used > 0) send_input(stream, name, buf, used);
      break;
    }
    used += (size_t)got;
    size_t start = 0;
    int stop = 0;
    for (size_t i = 0; i < used && !stop; ++i) {
      if (buf[i] != '\n') continue;
      stop = send_input(stream, name, buf + start, i - start) != 0;
      start = i + 1;
    }
    if (stop) break;
    memmove(buf, buf + start, used - start);
    used -= start;
  }
  free(buf);
}

int main(int argc, char **argv) {
  const char *target = "localhost:9090";
  const char *name = NULL;
  long deadline_ms = -1;
  chat_client_options copts;
  chat_client_options_init(&copts, CHAT_CLIENT_OPTIONS_VERSION);
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) target = argv[++i];
    else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) name = argv[++i];
    else if (strcmp(argv[i], "--deadline-ms") == 0 && i + 1 < argc) deadline_ms = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--tls-ca") == 0 && i + 1 < argc) copts.tls_root_certs = argv[++i];
    else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) copts.tls_cert_chain = argv[++i];
    else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) copts.tls_private_key = argv[++i];
    else if (strcmp(argv[i], "--tls-server-name") == 0 && i + 1 < argc) copts.tls_server_name = argv[++i];
    else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) copts.token = argv[++i];
    else if (strcmp(argv[i], "--compression") == 0 && i + 1 < argc) {
      copts.compression = parse_compression(argv[++i]);
      if (copts.compression < 0) return usage(argv[0]);
    } else return usage(argv[0]);
  }

  chat_client *client = NULL;
  chat_code rc = chat_client_create(target, &copts, &client);
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

  if (pipe(ended_pipe) != 0) {
    perror("chat_client: pipe");
    chat_stream_destroy(stream);
    chat_client_destroy(client);
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
    chat_lines(stream, name);
  }
  chat_stream_complete(stream);

  void *result;
  pthread_join(reader, &result);
  chat_code end = (chat_code)(intptr_t)result;
  int status = 0;
  if (end != CHAT_END_OF_STREAM) {
    chat_code code = end;
    const char *details = "";
    chat_stream_status(stream, &code, &details, NULL);
    fprintf(stderr, "chat_client: %s: %s\n", chat_code_name(code), details);
    status = 1;
  }
  chat_stream_destroy(stream);
  chat_client_destroy(client);
  close(ended_pipe[0]);
  close(ended_pipe[1]);
  return status;
}
