/* bench_libchat_client: the libchat_c subject, a client on the C ABI only
 * (chat.h, libchat.so), used the way the header recommends: one thread
 * sends with chat_stream_send while another takes replies with
 * chat_stream_recv_batch; ping-pong uses chat_stream_send + chat_stream_recv.
 *
 *   bench_libchat_client --target HOST:PORT --workload single|pingpong|streams
 *                        [--messages N] [--streams S] [--timeout-s T] [--sync]
 *                        [--queue | --queue-wait | --thread-per-stream]
 *
 * --queue runs the same workloads on the event queue instead, from this one
 * thread: every stream delivers to one chat_queue whose descriptor an epoll
 * loop watches (what an event-loop host does, see docs/embedding.md); sends
 * use timeout 0 and resume on CHAT_EVENT_WRITABLE when refused.
 * --queue-wait is the same loop for a host with a thread to spare (a Go
 * drain goroutine, say): it waits in chat_queue_drain instead of epoll and
 * never asks for the descriptor, which then costs the library nothing.
 * --thread-per-stream (streams workload) is the blocking API as a host of
 * independent streams must use it: one receiving thread per stream, since it
 * cannot know which stream answers next. The default streams workload reads
 * the streams one after another from one thread, which only works because
 * every stream here gets the same messages at once.
 *
 * Every reply is checked against "bench: <message>" in order. Prints one JSON
 * line, with the client process's CPU time over the measured interval
 * (client_cpu_s: every thread, the library's included). Exit codes: 0 ok, 1 wrong reply or failed call, 2 usage, 3 timed out.
 * With --sync it prints {"sync": "start"} just before its clock starts and
 * {"sync": "stop"} once every measured stream has ended, and each time waits
 * for a line on stdin (the driver reads the server's CPU time then). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include <libchat/chat.h>

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

/* CPU time of the whole process (all threads), in seconds. */
static double cpu_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
  if (rc != CHAT_END_OF_STREAM) die(1, "end of stream", rc);
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

struct receiver {
  chat_stream *s;
  uint64_t first, count;
};

static void *recv_all(void *arg) {
  struct receiver *r = arg;
  recv_checked(r->s, r->first, r->count);
  return NULL;
}

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

/* ---- --queue: the same workloads on one event queue, from one thread ---- */

/* One stream's progress in queue mode; its address is the stream's
 * user_data. Messages next_send..end_send-1 are still to be sent; replies
 * are checked in order from next_reply. */
struct qstream {
  chat_stream *s;
  uint64_t next_send, end_send, next_reply;
  int blocked;         /* a send was refused: its WRITABLE resumes it */
  int close_when_sent; /* half-close once end_send is reached */
  int completed, ended;
};

static chat_queue *q_queue;
static int q_epfd = -1;
static uint64_t q_replies; /* replies taken so far, all streams */
static uint64_t q_ended;   /* streams whose END came */
static uint64_t q_wakeups, q_drains, q_events; /* epoll wake-ups, drains, events drained */
static int q_wait;         /* --queue-wait: wait in chat_queue_drain, no descriptor */

static void q_setup(void) {
  chat_code rc = chat_queue_create(&q_queue);
  if (rc != CHAT_OK) die(1, "queue", rc);
  if (q_wait) return;  /* the descriptor is never asked for, so never written */
  q_epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN};
  if (q_epfd < 0 || epoll_ctl(q_epfd, EPOLL_CTL_ADD, chat_queue_fd(q_queue), &e) != 0) {
    perror("bench_libchat_client: epoll");
    die(1, "epoll", CHAT_OK);
  }
}

static void q_open(chat_client *client, struct qstream *q) {
  memset(q, 0, sizeof *q);
  chat_stream_options o;
  chat_stream_options_init(&o, CHAT_STREAM_OPTIONS_VERSION);
  o.queue = q_queue;
  o.user_data = q;
  chat_code rc = chat_client_open(client, &o, &q->s);
  if (rc != CHAT_OK) die(1, "open", rc);
}

static void q_complete(struct qstream *q) {
  if (q->completed || !q->close_when_sent || q->next_send < q->end_send) return;
  q->completed = 1;
  chat_code rc = chat_stream_complete(q->s);
  if (rc != CHAT_OK) die(1, "complete", rc);
}

/* Sends one message unless the stream is blocked or done; 1 if it sent. */
static int q_send_one(struct qstream *q) {
  if (q->blocked || q->next_send >= q->end_send) return 0;
  char msg[BENCH_MSG_LEN + 1];
  bench_message(q->next_send, msg);
  chat_code rc = chat_stream_send(q->s, BENCH_NAME, BENCH_NAME_LEN, msg, BENCH_MSG_LEN, 0);
  if (rc == CHAT_ERR_WOULD_BLOCK) {
    q->blocked = 1;
    return 0;
  }
  if (rc != CHAT_OK) die(1, "send", rc);
  ++q->next_send;
  return 1;
}

/* Sends all the stream takes, then half-closes if it is done. */
static void q_pump(struct qstream *q) {
  while (q_send_one(q)) {
  }
  q_complete(q);
}

static void q_event(const chat_event *ev) {
  struct qstream *q = ev->user_data;
  switch (ev->type) {
    case CHAT_EVENT_REPLY:
      if (q->next_reply >= q->next_send || !bench_reply_ok(q->next_reply, ev->text, ev->text_len))
        die_wrong(q->next_reply, ev->text, ev->text_len);
      ++q->next_reply;
      ++q_replies;
      break;
    case CHAT_EVENT_WRITABLE:
      q->blocked = 0;
      q_pump(q);
      break;
    case CHAT_EVENT_END:
      if (ev->code != CHAT_OK) die(1, "end of stream", ev->code);
      if (q->next_reply != q->end_send) die_wrong((uint64_t)-1, "(ended early)", 13);
      q->ended = 1;
      ++q_ended;
      break;
    default:
      die(1, "unexpected event", CHAT_OK);
  }
}

/* Waits on the queue's descriptor, then drains until a drain returns fewer
 * events than asked for. */
static void q_turn(void) {
  static chat_event ev[BATCH];
  if (!q_wait) {
    struct epoll_event e;
    int n = epoll_wait(q_epfd, &e, 1, -1);
    if (n < 0 && errno != EINTR) die(1, "epoll_wait", CHAT_OK);
  }
  ++q_wakeups;
  size_t count;
  int64_t timeout = q_wait ? -1 : 0; /* --queue-wait: the first drain waits */
  do {
    chat_code rc = chat_queue_drain(q_queue, timeout, ev, BATCH, &count);
    timeout = 0;
    if (rc != CHAT_OK) die(1, "drain", rc);
    ++q_drains;
    q_events += count;
    for (size_t i = 0; i < count; ++i) q_event(&ev[i]);
  } while (count == BATCH);
}

static void q_pingpong(chat_client *client, uint64_t count, double *rtt_us) {
  struct qstream q;
  q_open(client, &q);
  for (uint64_t i = 0; i < count; ++i) {
    int64_t t0 = bench_now_ns();
    q.end_send = i + 1;
    if (!q_send_one(&q)) die(1, "send", CHAT_ERR_WOULD_BLOCK); /* its queue is empty */
    while (q.next_reply <= i) q_turn();
    if (rtt_us) rtt_us[i] = (double)(bench_now_ns() - t0) / 1e3;
  }
  q.close_when_sent = 1;
  q_complete(&q);
  while (!q.ended) q_turn();
  chat_stream_destroy(q.s);
  q_ended = 0;
}

/* The --queue main: same workloads, same output, same checks. */
static void run_queue(chat_client *client, const char *workload, uint64_t messages,
                      uint64_t nstreams) {
  q_setup();
  q_pingpong(client, 200, NULL); /* warm-up */
  if (strcmp(workload, "pingpong") == 0) {
    double *rtt = malloc(messages * sizeof *rtt);
    sync_point("start");
    q_pingpong(client, messages, rtt);
    sync_point("stop");
    double sum = 0;
    for (uint64_t i = 0; i < messages; ++i) sum += rtt[i];
    bench_sort(rtt, messages);
    printf("{\"workload\": \"pingpong\", \"round_trips\": %llu, \"p50_us\": %.2f, "
           "\"p99_us\": %.2f, \"mean_us\": %.2f, \"queue\": true}\n",
           (unsigned long long)messages, bench_percentile(rtt, messages, 50),
           bench_percentile(rtt, messages, 99), sum / (double)messages);
    free(rtt);
  } else if (strcmp(workload, "single") == 0) {
    struct qstream q;
    q_open(client, &q);
    q.end_send = messages;
    q.close_when_sent = 1;
    q_replies = 0;
    sync_point("start");
    q_wakeups = q_drains = q_events = 0;
    double cpu0 = cpu_now_s();
    int64_t t0 = bench_now_ns();
    q_pump(&q);
    while (q_replies < messages) q_turn();
    int64_t t1 = bench_now_ns();
    double cpu1 = cpu_now_s();
    while (!q.ended) q_turn();
    sync_point("stop");
    chat_stream_destroy(q.s);
    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"workload\": \"single\", \"messages\": %llu, \"seconds\": %.6f, "
           "\"msgs_per_s\": %.1f, \"client_cpu_s\": %.6f, \"queue\": true, "
           "\"wakeups\": %llu, \"drains\": %llu, \"events\": %llu}\n",
           (unsigned long long)messages, secs, (double)messages / secs, cpu1 - cpu0,
           (unsigned long long)q_wakeups, (unsigned long long)q_drains,
           (unsigned long long)q_events);
  } else {
    /* As in blocking mode: every stream answers one message first. */
    struct qstream *qs = calloc(nstreams, sizeof *qs);
    for (size_t k = 0; k < nstreams; ++k) {
      q_open(client, &qs[k]);
      qs[k].end_send = 1;
      q_pump(&qs[k]);
    }
    q_replies = 0;
    while (q_replies < nstreams) q_turn();
    uint64_t want = nstreams * messages;
    q_replies = 0;
    sync_point("start");
    q_wakeups = q_drains = q_events = 0;
    double cpu0 = cpu_now_s();
    int64_t t0 = bench_now_ns();
    for (size_t k = 0; k < nstreams; ++k) {
      qs[k].end_send = 1 + messages;
      qs[k].close_when_sent = 1;
    }
    /* Message-major, so all streams progress together, as the blocking
     * sender does; a refused stream waits for its WRITABLE. */
    for (uint64_t i = 0; i < messages; ++i) {
      for (size_t k = 0; k < nstreams; ++k) q_send_one(&qs[k]);
    }
    for (size_t k = 0; k < nstreams; ++k) q_complete(&qs[k]);
    while (q_replies < want) q_turn();
    int64_t t1 = bench_now_ns();
    double cpu1 = cpu_now_s();
    while (q_ended < nstreams) q_turn();
    sync_point("stop");
    for (size_t k = 0; k < nstreams; ++k) chat_stream_destroy(qs[k].s);
    free(qs);
    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"workload\": \"streams\", \"streams\": %llu, \"messages_per_stream\": %llu, "
           "\"seconds\": %.6f, \"msgs_per_s\": %.1f, \"client_cpu_s\": %.6f, \"queue\": true, "
           "\"wakeups\": %llu, \"drains\": %llu, \"events\": %llu}\n",
           (unsigned long long)nstreams, (unsigned long long)messages, secs,
           (double)want / secs, cpu1 - cpu0, (unsigned long long)q_wakeups,
           (unsigned long long)q_drains, (unsigned long long)q_events);
  }
  fflush(stdout);
  close(q_epfd);
  /* The streams are destroyed; the client goes in main, the queue last. */
}

int main(int argc, char **argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the driver */
  const char *target = NULL, *workload = NULL, *tls_ca = NULL;
  unsigned long long messages = 10000, nstreams = 1000;
  int timeout_s = 60, bad = 0, queue_mode = 0, thread_per_stream = 0;
  for (int i = 1; i < argc && !bad; ++i) {
    const char *k = argv[i];
    if (strcmp(k, "--sync") == 0) {
      sync_on = 1;
      continue;
    }
    if (strcmp(k, "--queue-wait") == 0) {
      queue_mode = 1;
      q_wait = 1;
      continue;
    }
    if (strcmp(k, "--queue") == 0) {
      queue_mode = 1;
      continue;
    }
    if (strcmp(k, "--thread-per-stream") == 0) {
      thread_per_stream = 1;
      continue;
    }
    const char *v = ++i < argc ? argv[i] : NULL;
    if (!v) bad = 1;
    else if (strcmp(k, "--target") == 0) target = v;
    else if (strcmp(k, "--workload") == 0) workload = v;
    else if (strcmp(k, "--messages") == 0) messages = strtoull(v, NULL, 10);
    else if (strcmp(k, "--streams") == 0) nstreams = strtoull(v, NULL, 10);
    else if (strcmp(k, "--timeout-s") == 0) timeout_s = atoi(v);
    else if (strcmp(k, "--tls-ca") == 0) tls_ca = v;
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
            "[--messages N (streams: <= 1000)] [--streams S] [--timeout-s T] [--sync] "
            "[--queue | --queue-wait | --thread-per-stream] "
            "[--tls-ca PEM_FILE (TLS, trusting these roots)]\n",
            argv[0]);
    return 2;
  }
  signal(SIGALRM, on_alarm);
  alarm((unsigned)timeout_s);

  chat_client_options copts;
  chat_client_options_init(&copts, CHAT_CLIENT_OPTIONS_VERSION);
  copts.tls_root_certs = tls_ca; /* NULL: plaintext */
  chat_client *client = NULL;
  chat_code rc = chat_client_create(target, &copts, &client);
  if (rc != CHAT_OK) die(1, "client", rc);
  if (queue_mode) {
    run_queue(client, workload, messages, nstreams);
    chat_client_destroy(client);
    chat_queue_destroy(q_queue);
    return 0;
  }
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
    double cpu0 = cpu_now_s();
    pthread_create(&t, NULL, send_all, &w);
    recv_checked(s, 0, messages);
    int64_t t1 = bench_now_ns();
    double cpu1 = cpu_now_s();
    pthread_join(t, NULL);
    expect_end(s);
    sync_point("stop");
    chat_stream_destroy(s);
    double secs = (double)(t1 - w.t0) / 1e9;
    printf("{\"workload\": \"single\", \"messages\": %llu, \"seconds\": %.6f, "
           "\"msgs_per_s\": %.1f, \"client_cpu_s\": %.6f}\n",
           messages, secs, (double)messages / secs, cpu1 - cpu0);
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
    double cpu0 = cpu_now_s();
    pthread_create(&t, NULL, send_all, &w);
    if (thread_per_stream) {
      /* Small stacks: recv_checked needs a few KiB. */
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 64 * 1024);
      pthread_t *rt = calloc(nstreams, sizeof *rt);
      struct receiver *rs = calloc(nstreams, sizeof *rs);
      for (size_t k = 0; k < nstreams; ++k) {
        rs[k] = (struct receiver){streams[k], 1, messages};
        if (pthread_create(&rt[k], &attr, recv_all, &rs[k]) != 0) die(1, "pthread_create", CHAT_OK);
      }
      for (size_t k = 0; k < nstreams; ++k) pthread_join(rt[k], NULL);
      pthread_attr_destroy(&attr);
      free(rt);
      free(rs);
    } else {
      for (size_t k = 0; k < nstreams; ++k) recv_checked(streams[k], 1, messages);
    }
    int64_t t1 = bench_now_ns();
    double cpu1 = cpu_now_s();
    pthread_join(t, NULL);
    for (size_t k = 0; k < nstreams; ++k) expect_end(streams[k]);
    sync_point("stop");
    for (size_t k = 0; k < nstreams; ++k) chat_stream_destroy(streams[k]);
    free(streams);
    double secs = (double)(t1 - w.t0) / 1e9;
    printf("{\"workload\": \"streams\", \"streams\": %llu, \"messages_per_stream\": %llu, "
           "\"seconds\": %.6f, \"msgs_per_s\": %.1f, \"client_cpu_s\": %.6f}\n",
           nstreams, messages, secs, (double)(messages * nstreams) / secs, cpu1 - cpu0);
  }
  fflush(stdout);
  chat_client_destroy(client);
  return 0;
}
