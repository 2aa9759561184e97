/* fault_server: a Chat server for the fault-injection tests, over chat.h.
 *
 *   fault_server [--address HOST:PORT] [--mode echo|broadcast|custom]
 *                [--grace-ms N] [--max-message-bytes N] [--send-queue-limit N]
 *                [--recv-window N] [--keepalive-ms N] [--keepalive-timeout-ms N]
 *                [--send-queue-bytes N] [--recv-window-bytes N]
 *                [--max-memory-bytes N] [--handler-sleep-us N] [--raise-nofile]
 *                [--completion-queues N]
 *
 * Prints "listening on HOST:PORT" first (flushed). Stops on SIGINT/SIGTERM
 * (taken with sigwait, as examples/chat_server.c does).
 *
 * custom: a handler that echoes "<name>: <message>" like the echo server,
 * sleeping --handler-sleep-us in each on_message first, and printing one
 * flushed line per stream end, "close <id> <CODE_NAME>", so a test sees
 * the server's view of how each stream ended.
 *
 * --raise-nofile raises the soft RLIMIT_NOFILE to the hard limit before the
 * server starts, as examples/chat_server.c does. Without it the limit is
 * left as inherited, so a test can start the server with a low one.
 *
 * --completion-queues N sets chat_server_options.completion_queues (0, the
 * default, is the library's own count). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libchat/chat.h>

static long g_handler_sleep_us = 0;

static void on_message(chat_call *call, const char *name, size_t name_len, const char *message,
                       size_t message_len, void *user_data) {
  (void)user_data;
  if (g_handler_sleep_us > 0) {
    struct timespec ts = {g_handler_sleep_us / 1000000, (g_handler_sleep_us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  size_t len = name_len + 2 + message_len;
  char *line = malloc(len + 1);
  if (line == NULL) {
    chat_call_fail(call, CHAT_RESOURCE_EXHAUSTED, "out of memory", 13);
    return;
  }
  memcpy(line, name, name_len);
  memcpy(line + name_len, ": ", 2);
  memcpy(line + name_len + 2, message, message_len);
  /* Wait for room like the echo server's flow control would: a stream whose
   * client stops reading holds up this dispatcher, which is the point of a
   * slow handler. The call's end (cancel, keepalive) ends the wait. */
  chat_call_send(call, line, len, -1);
  free(line);
}

static void on_close(chat_call *call, chat_code code, const char *details, size_t details_len,
                     void *user_data) {
  (void)details;
  (void)details_len;
  (void)user_data;
  printf("close %llu %s\n", (unsigned long long)chat_call_id(call), chat_code_name(code));
  fflush(stdout);
}

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--address HOST:PORT] [--mode echo|broadcast|custom] [--grace-ms N]\n"
          "          [--max-message-bytes N] [--send-queue-limit N] [--recv-window N]\n"
          "          [--keepalive-ms N] [--keepalive-timeout-ms N] [--send-queue-bytes N]\n"
          "          [--recv-window-bytes N] [--max-memory-bytes N] [--handler-sleep-us N]\n"
          "          [--raise-nofile] [--completion-queues N]\n",
          argv0);
  return 2;
}

/* Parses a non-negative decimal that fits an int32_t. */
static int parse_i32(const char *s, int32_t *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0 || v > INT32_MAX) return 0;
  *out = (int32_t)v;
  return 1;
}

/* Parses a positive decimal byte count. */
static int parse_bytes(const char *s, int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v <= 0) return 0;
  *out = (int64_t)v;
  return 1;
}

int main(int argc, char **argv) {
  const char *address = "127.0.0.1:0";
  chat_server_options opts;
  chat_server_options_init(&opts, CHAT_SERVER_OPTIONS_VERSION);
  int32_t grace_ms = 1000;
  int32_t sleep_us = 0;
  int raise_nofile = 0;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--raise-nofile") == 0) {
      raise_nofile = 1;
      continue;
    }
    if (v == NULL) return usage(argv[0]);
    ++i;
    int ok = 1;
    if (strcmp(a, "--address") == 0) {
      address = v;
    } else if (strcmp(a, "--mode") == 0) {
      if (strcmp(v, "echo") == 0) opts.mode = CHAT_MODE_ECHO;
      else if (strcmp(v, "broadcast") == 0) opts.mode = CHAT_MODE_BROADCAST;
      else if (strcmp(v, "custom") == 0) opts.mode = CHAT_MODE_CUSTOM;
      else ok = 0;
    } else if (strcmp(a, "--grace-ms") == 0) {
      ok = parse_i32(v, &grace_ms);
    } else if (strcmp(a, "--max-message-bytes") == 0) {
      ok = parse_i32(v, &opts.max_message_bytes);
    } else if (strcmp(a, "--send-queue-limit") == 0) {
      ok = parse_i32(v, &opts.send_queue_limit);
    } else if (strcmp(a, "--recv-window") == 0) {
      ok = parse_i32(v, &opts.recv_window);
    } else if (strcmp(a, "--keepalive-ms") == 0) {
      ok = parse_i32(v, &opts.keepalive_ms);
    } else if (strcmp(a, "--keepalive-timeout-ms") == 0) {
      ok = parse_i32(v, &opts.keepalive_timeout_ms);
    } else if (strcmp(a, "--send-queue-bytes") == 0) {
      ok = parse_bytes(v, &opts.send_queue_bytes);
    } else if (strcmp(a, "--recv-window-bytes") == 0) {
      ok = parse_bytes(v, &opts.recv_window_bytes);
    } else if (strcmp(a, "--max-memory-bytes") == 0) {
      ok = parse_bytes(v, &opts.max_memory_bytes);
    } else if (strcmp(a, "--handler-sleep-us") == 0) {
      ok = parse_i32(v, &sleep_us);
    } else if (strcmp(a, "--completion-queues") == 0) {
      ok = parse_i32(v, &opts.completion_queues);
    } else {
      ok = 0;
    }
    if (!ok) return usage(argv[0]);
  }
  g_handler_sleep_us = sleep_us;
  if (opts.mode == CHAT_MODE_CUSTOM) {
    opts.on_message = on_message;
    opts.on_close = on_close;
  }

  if (raise_nofile) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      if (setrlimit(RLIMIT_NOFILE, &rl) != 0) perror("fault_server: setrlimit");
    }
  }

  /* Block the stop signals before any library thread exists, so they reach
   * sigwait below and never a gRPC thread. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  chat_server *server = NULL;
  chat_code rc = chat_server_start(address, &opts, &server);
  if (rc != CHAT_OK) {
    fprintf(stderr, "fault_server: %s: %s\n", chat_code_name(rc), chat_last_error());
    return 1;
  }
  const char *colon = strrchr(address, ':');
  int host_len = colon ? (int)(colon - address) : (int)strlen(address);
  printf("listening on %.*s:%d\n", host_len, address, chat_server_port(server));
  fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  int32_t cut = 0;
  rc = chat_server_stop(server, grace_ms, &cut);
  fprintf(stderr, "fault_server: stopped on %s (%d cut)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
          cut);
  chat_server_destroy(server);
  return rc == CHAT_OK ? 0 : 1;
}
