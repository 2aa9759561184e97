/* chat_loop_client: many /Chat/chat streams driven from one thread and one
 * epoll loop, through an event queue (see "Event queue" in chat.h). This is
 * how an event-loop runtime (Node, asyncio, libuv, a game loop) embeds
 * libchat: no thread per stream, no blocking receive, no callback on a
 * library thread; the loop watches one file descriptor.
 *
 *   chat_loop_client [--target HOST:PORT] [--streams N] [--messages M]
 *                    [--send-queue K] [--timeout-s T]
 *
 * It opens N streams (default 1000) to an echo server (default
 * localhost:9090), sends M messages (default 10) on each, "s<k>" /
 * "message <i>", with chat_stream_send and a timeout of 0: a send the
 * stream's queue refuses (CHAT_ERR_WOULD_BLOCK) is taken up again when the
 * stream's CHAT_EVENT_WRITABLE comes. After its M messages each stream
 * half-closes. Every reply must be "s<k>: message <i>", in order; every
 * stream must end OK after exactly M replies. --send-queue K sets the
 * client's send_queue_limit (default: the library's, 1024), so that small
 * values exercise the WRITABLE path.
 *
 * Prints one summary line and exits 0 when every stream checked out;
 * otherwise prints what went wrong on stderr and exits 1 (2 for usage).
 * It gives up after T seconds (default 60). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <libchat/chat.h>

/* Events taken per chat_queue_drain. */
#define DRAIN_MAX 256
/* Mismatches reported in detail before the rest are only counted. */
#define REPORT_MAX 10

/* One stream's progress. Its address is the stream's user_data, so each
 * event leads straight back here. */
struct stream_state {
  chat_stream *stream;
  uint32_t index;    /* k in "s<k>" */
  uint32_t sent;     /* messages queued so far */
  uint32_t replies;  /* replies checked so far */
  int blocked;       /* a send was refused; WRITABLE resumes it */
  int half_closed;   /* chat_stream_complete called */
  int ended;         /* END seen */
};

struct run {
  struct stream_state *states;
  uint32_t streams, messages;
  uint32_t ended;         /* streams whose END came */
  uint64_t replies;       /* replies seen, right or wrong */
  uint64_t refused;       /* sends refused with CHAT_ERR_WOULD_BLOCK */
  uint64_t writable;      /* WRITABLE events seen */
  uint64_t mismatches;    /* anything that was not as expected */
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void mismatch(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mismatch(struct run *r, const char *fmt, ...) {
  if (r->mismatches++ < REPORT_MAX) {
    va_list ap;
    va_start(ap, fmt);
    fputs("chat_loop_client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
  } else if (r->mismatches == REPORT_MAX + 1) {
    fputs("chat_loop_client: (further mismatches only counted)\n", stderr);
  }
}

/* The error of the last failed call on the stream: the per-handle message,
 * which stays right even where calls hop between threads. */
static const char *stream_error(const chat_stream *stream) {
  static char buf[256];
  chat_stream_error(stream, buf, sizeof buf);
  return buf;
}

/* Queues as many of the stream's messages as its send queue takes, then
 * half-closes once all are queued. A refusal is not an error: the stream
 * stays blocked until its WRITABLE event. */
static void pump(struct run *r, struct stream_state *st) {
  char name[16], message[32];
  int name_len = snprintf(name, sizeof name, "s%u", st->index);
  st->blocked = 0;
  while (st->sent < r->messages) {
    int len = snprintf(message, sizeof message, "message %u", st->sent);
    chat_code rc = chat_stream_send(st->stream, name, (size_t)name_len, message, (size_t)len, 0);
    if (rc == CHAT_ERR_WOULD_BLOCK) {
      ++r->refused;
      st->blocked = 1;
      return;
    }
    if (rc == CHAT_ERR_CLOSED) return; /* the stream has ended: its END says how */
    if (rc != CHAT_OK) {
      mismatch(r, "stream %u: send %u: %s: %s", st->index, st->sent, chat_code_name(rc),
               stream_error(st->stream));
      chat_stream_cancel(st->stream); /* its END (CANCELLED) still comes */
      return;
    }
    ++st->sent;
  }
  if (!st->half_closed) {
    st->half_closed = 1;
    chat_code rc = chat_stream_complete(st->stream);
    if (rc != CHAT_OK && rc != CHAT_ERR_CLOSED) {
      mismatch(r, "stream %u: complete: %s: %s", st->index, chat_code_name(rc),
               stream_error(st->stream));
    }
  }
}

static void on_reply(struct run *r, struct stream_state *st, const char *text, size_t len) {
  ++r->replies;
  char want[64];
  int want_len = snprintf(want, sizeof want, "s%u: message %u", st->index, st->replies);
  if (st->replies >= r->messages) {
    mismatch(r, "stream %u: extra reply '%.*s'", st->index, (int)len, text);
  } else if (len != (size_t)want_len || memcmp(text, want, len) != 0) {
    mismatch(r, "stream %u: reply %u is '%.*s', expected '%s'", st->index, st->replies, (int)len,
             text, want);
  }
  ++st->replies;
}

static void on_end(struct run *r, struct stream_state *st, chat_code code, const char *details,
                   size_t details_len) {
  if (st->ended) mismatch(r, "stream %u: a second END", st->index);
  st->ended = 1;
  ++r->ended;
  if (code != CHAT_OK) {
    mismatch(r, "stream %u: ended %s: %.*s", st->index, chat_code_name(code), (int)details_len,
             details);
  } else if (st->replies != r->messages) {
    mismatch(r, "stream %u: ended OK after %u of %u replies", st->index, st->replies,
             r->messages);
  }
}

/* Handles one drained event. */
static void handle(struct run *r, const chat_event *ev) {
  struct stream_state *st = ev->user_data;
  if (ev->type == CHAT_EVENT_WAKE) return; /* nobody calls chat_queue_wake here */
  if (st == NULL || st->stream != ev->stream) {
    mismatch(r, "an event (type %d) for a stream that is not ours", (int)ev->type);
    return;
  }
  if (st->ended) {
    mismatch(r, "stream %u: an event (type %d) after its END", st->index, (int)ev->type);
    return;
  }
  switch (ev->type) {
    case CHAT_EVENT_REPLY:
      on_reply(r, st, ev->text, ev->text_len);
      break;
    case CHAT_EVENT_WRITABLE:
      /* One per run of refusals, and this loop stops sending at the first
       * refusal: the stream must be waiting for it. */
      ++r->writable;
      if (!st->blocked) mismatch(r, "stream %u: WRITABLE with no send refused", st->index);
      else pump(r, st);
      break;
    case CHAT_EVENT_END:
      on_end(r, st, ev->code, ev->text, ev->text_len);
      break;
    default:
      mismatch(r, "stream %u: unexpected event type %d", st->index, (int)ev->type);
  }
}

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--target HOST:PORT] [--streams N] [--messages M] [--send-queue K] "
          "[--timeout-s T]\n",
          argv0);
  return 2;
}

static int parse_count(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return 0;
  *out = v;
  return 1;
}

int main(int argc, char **argv) {
  const char *target = "localhost:9090";
  long streams = 1000, messages = 10, send_queue = 0, timeout_s = 60;
  for (int i = 1; i < argc; ++i) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = v != NULL;
    if (ok && strcmp(argv[i], "--target") == 0) target = v;
    else if (ok && strcmp(argv[i], "--streams") == 0) ok = parse_count(v, 1, 1000000, &streams);
    else if (ok && strcmp(argv[i], "--messages") == 0) ok = parse_count(v, 0, 100000000, &messages);
    else if (ok && strcmp(argv[i], "--send-queue") == 0) ok = parse_count(v, 1, 1 << 30, &send_queue);
    else if (ok && strcmp(argv[i], "--timeout-s") == 0) ok = parse_count(v, 1, 86400, &timeout_s);
    else ok = 0;
    if (!ok) return usage(argv[0]);
    ++i;
  }

  struct run r = {0};
  r.streams = (uint32_t)streams;
  r.messages = (uint32_t)messages;
  r.states = calloc(r.streams, sizeof *r.states);
  if (r.states == NULL) {
    fputs("chat_loop_client: out of memory\n", stderr);
    return 1;
  }

  /* The queue: every stream below delivers its replies, its END and its
   * WRITABLE events here. */
  chat_queue *queue = NULL;
  chat_code rc = chat_queue_create(&queue);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chat_loop_client: queue: %s: %s\n", chat_code_name(rc), chat_last_error());
    free(r.states);
    return 1;
  }
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event watch = {.events = EPOLLIN, .data = {.ptr = queue}};
  if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, chat_queue_fd(queue), &watch) != 0) {
    perror("chat_loop_client: epoll");
    chat_queue_destroy(queue);
    free(r.states);
    return 1;
  }

  chat_client_options copts;
  chat_client_options_init(&copts, CHAT_CLIENT_OPTIONS_VERSION);
  if (send_queue > 0) copts.send_queue_limit = (int32_t)send_queue;
  chat_client *client = NULL;
  rc = chat_client_create(target, &copts, &client);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chat_loop_client: %s: %s\n", chat_code_name(rc), chat_last_error());
    close(epfd);
    chat_queue_destroy(queue);
    free(r.states);
    return 1;
  }

  double t0 = now_s();
  double deadline = t0 + (double)timeout_s;
  int status = 0;
  /* Open every stream (never blocks) and queue what each one takes. */
  for (uint32_t k = 0; k < r.streams; ++k) {
    struct stream_state *st = &r.states[k];
    st->index = k;
    chat_stream_options sopts;
    chat_stream_options_init(&sopts, CHAT_STREAM_OPTIONS_VERSION);
    sopts.queue = queue;
    sopts.user_data = st;
    rc = chat_client_open(client, &sopts, &st->stream);
    if (rc != CHAT_OK) {
      char why[256];
      chat_client_error(client, why, sizeof why);
      fprintf(stderr, "chat_loop_client: open: %s: %s\n", chat_code_name(rc), why);
      status = 1;
      break;
    }
    pump(&r, st);
  }

  /* The loop: wait for the queue's descriptor, then drain until a drain
   * returns fewer events than asked for (the descriptor may stay readable
   * a moment after; a spurious wake-up drains nothing). */
  chat_event events[DRAIN_MAX];
  while (status == 0 && r.ended < r.streams) {
    double left = deadline - now_s();
    if (left <= 0) {
      fprintf(stderr, "chat_loop_client: timed out after %ld s: %u of %u streams ended\n",
              timeout_s, r.ended, r.streams);
      status = 1;
      break;
    }
    struct epoll_event ready;
    int n = epoll_wait(epfd, &ready, 1, (int)(left * 1000) + 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("chat_loop_client: epoll_wait");
      status = 1;
      break;
    }
    if (n == 0) continue;
    size_t count;
    do {
      rc = chat_queue_drain(queue, 0, events, DRAIN_MAX, &count);
      if (rc != CHAT_OK) {
        char why[256];
        chat_queue_error(queue, why, sizeof why);
        fprintf(stderr, "chat_loop_client: drain: %s: %s\n", chat_code_name(rc), why);
        status = 1;
        break;
      }
      for (size_t i = 0; i < count; ++i) handle(&r, &events[i]);
    } while (count == DRAIN_MAX);
  }
  double took = now_s() - t0;

  /* Destroy order: the streams, the client, then the queue they deliver to
   * (the queue must outlive every stream that uses it). */
  for (uint32_t k = 0; k < r.streams; ++k) chat_stream_destroy(r.states[k].stream);
  chat_client_destroy(client);
  close(epfd);
  chat_queue_destroy(queue);

  if (status == 0 && r.mismatches == 0) {
    printf("%u streams, %u messages each: %llu replies in order, every stream ended OK; "
           "%llu sends refused, %llu resumed on WRITABLE; %.3f s\n",
           r.streams, r.messages, (unsigned long long)r.replies, (unsigned long long)r.refused,
           (unsigned long long)r.writable, took);
  } else {
    if (r.mismatches) {
      fprintf(stderr, "chat_loop_client: %llu mismatch%s\n", (unsigned long long)r.mismatches,
              r.mismatches == 1 ? "" : "es");
    }
    status = 1;
  }
  free(r.states);
  return status;
}
