/* bench_libchat_client: the libchat_c subject, a client on the C ABI only
 * (chat.h, libchat.so), used the way the header recommends: one thread
 * sends with chat_stream_send while another takes replies with
 * chat_stream_recv_batch; ping-pong uses chat_stream_send + chat_stream_recv.
 *
 *   bench_libchat_client --target HOST:PORT --workload single|pingpong|streams
 *                        [--messages N] [--streams S] [--timeout-s T] [--sync]
 *
 * Every reply is checked against "bench: <message>" in order. Prints one JSON
 * line. Exit codes: 0 ok, 1 wrong reply or failed call, 2 usage, 3 timed out.
 * With --sync it prints {"sync": "start"} just before its clock starts and
 * {"sync": "stop"} once every measured stream has ended, and each time waits
 * for a line on stdin (the driver reads the server's CPU time then). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "bench_util.h"
#include "chat.h"

/* Replies taken per chat_stream_recv_batch call. */
#define BATCH 256

static void die(int code, const char *what, chat_code rc) {
  fprintf(stderr, "bench_libchat_client: %s: %s (%s)\n", what, chat_code_name(rc),
          chat_last_error());
  printf("{\"error\": \"%s\"}\n", code == 3 ? "timeout" : "wrong reply or failed call");
  fflush(stdout);
  _exit(code);
}

static void die_wrong(uint64_t i, const char *text, size_t len) {
  fprintf(stderr, "bench_libchat_client: wrong reply #%llu: '%.*s'\n", (unsigned long long)i,
          (int)len, text);
  printf("{\"error\": \"wrong reply\"}\n");
  fflush(stdout);
  _exit(1);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char err[] = "bench_libchat_client: timed out\n";
  static const char out[] = "{\"error\": \"timeout\"}\n";
  (void)!write(STDERR_FILENO, err, sizeof err - 1);
  (void)!write(STDOUT_FILENO, out, sizeof out - 1);
  _exit(3);
}

static chat_stream *open_stream(chat_client *client) {
  chat_stream *s = NULL;
  chat_code rc = chat_client_open(client, NULL, &s);
  if (rc != CHAT_OK) die(1, "open", rc);
  return s;
}

static void send_msg(chat_stream *s, uint64_t i) {
  char msg[BENCH_MSG_LEN + 1];
  bench_message(i, msg);
  chat_code rc = chat_stream_send(s, BENCH_NAME, BENCH_NAME_LEN, msg, BENCH_MSG_LEN, -1);
  if (rc != CHAT_OK) die(1, "send", rc);
}

/* Takes replies first..first+count-1 of `s` and checks each one. */
static void recv_checked(chat_stream *s, uint64_t first, uint64_t count) {
  chat_text batch[BATCH];
  uint64_t i = first, end = first + count;
  while (i < end) {
    size_t n = 0;
    size_t want = end - i < BATCH ? (size_t)(end - i) : BATCH;
    chat_code rc = chat_stream_recv_batch(s, -1, batch, want, &n);
    if (rc != CHAT_OK) die(1, "recv", rc);
    for (size_t k = 0; k < n; ++k, ++i) {
      if (!bench_reply_ok(i, batch[k].data, batch[k].len)) die_wrong(i, batch[k].data, batch[k].len);
    }
  }
}

/* After the last reply the server completes: the stream must end OK. */
static void expect_end(chat_stream *s) {
  const char *text;
  size_t len;
  chat_code rc = chat_stream_recv(s, -1, &text, &len);
  if (rc == CHAT_OK) die_wrong((uint64_t)-1, text, len); /* an extra reply */
  if (rc != CHAT_ERR_END) die(1, "end of stream", rc);
}

/* Ping-pong on a fresh stream; fills rtt_us[0..count) if not NULL. */
static void pingpong(chat_client *client, uint64_t count, double *rtt_us) {
  chat_stream *s = open_stream(client);
  for (uint64_t i = 0; i < count; ++i) {
    int64_t t0 = bench_now_ns();
    send_msg(s, i);
    const char *text;
    size_t len;
    chat_code rc = chat_stream_recv(s, -1, &text, &len);
    int64_t t1 = bench_now_ns();
    if (rc != CHAT_OK) die(1, "recv", rc);
    if (!bench_reply_ok(i, text, len)) die_wrong(i, text, len);
    if (rtt_us) rtt_us[i] = (double)(t1 - t0) / 1e3;
  }
  chat_stream_complete(s);
  expect_end(s);
  chat_stream_destroy(s);
}

static int sync_on;

/* --sync: tell the driver where the measured interval starts or ends and
 * wait until it has sampled the server. */
static void sync_point(const char *what) {
  if (!sync_on) return;
  printf("{\"sync\": \"%s\"}\n", what);
  fflush(stdout);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) return; /* EOF: go on */
}

struct sender {
  chat_stream **streams;
  size_t nstreams;
  uint64_t first, count; /* message indexes sent on every stream */
  int64_t t0;            /* set just before the first send */
};

/* Message-major, so all streams progress together; then half-closes each. */
static void *send_all(void *arg) {
  struct sender *w = arg;
  w->t0 = bench_now_ns();
  for (uint64_t i = w->first; i < w->first + w->count; ++i) {
    for (size_t k = 0; k < w->nstreams; ++k) send_msg(w->streams[k], i);
  }
  for (size_t k = 0; k < w->nstreams; ++k) {
    chat_code rc = chat_stream_complete(w->streams[k]);
    if (rc != CHAT_OK) die(1, "complete", rc);
  }
  return NULL;
}

int main(int argc, char **argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the driver */
  const char *target = NULL, *workload = NULL;
  unsigned long long messages = 10000, nstreams = 1000;
  int timeout_s = 60, bad = 0;
  for (int i = 1; i < argc && !bad; ++i) {
    const char *k = argv[i];
    if (strcmp(k, "--sync") == 0) {
      sync_on = 1;
      continue;
    }
    const char *v = ++i < argc ? argv[i] : NULL;
    if (!v) bad = 1;
    else if (strcmp(k, "--target") == 0) target = v;
    else if (strcmp(k, "--workload") == 0) workload = v;
    else if (strcmp(k, "--messages") == 0) messages = strtoull(v, NULL, 10);
    else if (strcmp(k, "--streams") == 0) nstreams = strtoull(v, NULL, 10);
    else if (strcmp(k, "--timeout-s") == 0) timeout_s = atoi(v);
    else bad = 1;
  }
  int known = workload && (strcmp(workload, "single") == 0 || strcmp(workload, "pingpong") == 0 ||
                           strcmp(workload, "streams") == 0);
  /* Streams are read one after another, so each must buffer all its replies
   * (recv_queue_limit 1024) or the sender could wait on an unread stream. */
  if (!target || !known || bad || messages == 0 || nstreams == 0 || timeout_s <= 0 ||
      (strcmp(workload, "streams") == 0 && messages > 1000)) {
    fprintf(stderr,
            "usage: %s --target HOST:PORT --workload single|pingpong|streams "
            "[--messages N (streams: <= 1000)] [--streams S] [--timeout-s T] [--sync]\n",
            argv[0]);
    return 2;
  }
  signal(SIGALRM, on_alarm);
  alarm((unsigned)timeout_s);

  chat_client *client = NULL;
  chat_code rc = chat_client_create(target, NULL, &client);
  if (rc != CHAT_OK) die(1, "client", rc);
  pingpong(client, 200, NULL); /* warm-up: connection, allocator, caches */

  if (strcmp(workload, "pingpong") == 0) {
    double *rtt = malloc(messages * sizeof *rtt);
    sync_point("start");
    pingpong(client, messages, rtt);
    sync_point("stop");
    double sum = 0;
    for (uint64_t i = 0; i < messages; ++i) sum += rtt[i];
    bench_sort(rtt, messages);
    printf("{\"workload\": \"pingpong\", \"round_trips\": %llu, \"p50_us\": %.2f, "
           "\"p99_us\": %.2f, \"mean_us\": %.2f}\n",
           messages, bench_percentile(rtt, messages, 50), bench_percentile(rtt, messages, 99),
           sum / (double)messages);
    free(rtt);
  } else if (strcmp(workload, "single") == 0) {
    chat_stream *s = open_stream(client);
    struct sender w = {&s, 1, 0, messages, 0};
    pthread_t t;
    sync_point("start");
    pthread_create(&t, NULL, send_all, &w);
    recv_checked(s, 0, messages);
    int64_t t1 = bench_now_ns();
    pthread_join(t, NULL);
    expect_end(s);
    sync_point("stop");
    chat_stream_destroy(s);
    double secs = (double)(t1 - w.t0) / 1e9;
    printf("{\"workload\": \"single\", \"messages\": %llu, \"seconds\": %.6f, "
           "\"msgs_per_s\": %.1f}\n",
           messages, secs, (double)messages / secs);
  } else {
    /* Every stream answers one message before timing starts, so the figure
     * is about traffic on open streams, not about opening them. */
    chat_stream **streams = calloc(nstreams, sizeof *streams);
    for (size_t k = 0; k < nstreams; ++k) {
      streams[k] = open_stream(client);
      send_msg(streams[k], 0);
    }
    for (size_t k = 0; k < nstreams; ++k) recv_checked(streams[k], 0, 1);
    struct sender w = {streams, nstreams, 1, messages, 0};
    pthread_t t;
    sync_point("start");
    pthread_create(&t, NULL, send_all, &w);
    for (size_t k = 0; k < nstreams; ++k) recv_checked(streams[k], 1, messages);
    int64_t t1 = bench_now_ns();
    pthread_join(t, NULL);
    for (size_t k = 0; k < nstreams; ++k) expect_end(streams[k]);
    sync_point("stop");
    for (size_t k = 0; k < nstreams; ++k) chat_stream_destroy(streams[k]);
    free(streams);
    double secs = (double)(t1 - w.t0) / 1e9;
    printf("{\"workload\": \"streams\", \"streams\": %llu, \"messages_per_stream\": %llu, "
           "\"seconds\": %.6f, \"msgs_per_s\": %.1f}\n",
           nstreams, messages, secs, (double)(messages * nstreams) / secs);
  }
  fflush(stdout);
  chat_client_destroy(client);
  return 0;
}
