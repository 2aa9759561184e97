/* chat_loop_server: serves /Chat/chat from one thread's epoll loop, through
 * an event queue (see "Event queue" in chat.h): a custom-mode server with no
 * callbacks and no dispatcher threads, whose calls' events the loop drains
 * and answers the way the echo server does (the seed contract: each message
 * answered with "<name>: <message>", the call completed when the client
 * half-closes).
 *
 *   chat_loop_server [--address HOST:PORT] [--grace-ms N]
 *
 * The first stdout line is "listening on HOST:PORT" (flushed), so scripts
 * started with port 0 can learn the port. SIGINT or SIGTERM (read from a
 * signalfd in the same loop) stops it: open calls get up to --grace-ms
 * (default 5000) to finish, and the loop keeps serving them meanwhile.
 *
 * A reply the call's send queue refuses (CHAT_ERR_WOULD_BLOCK: its client
 * reads slowly) waits in the call's backlog until the call's WRITABLE event;
 * a client that lets more than BACKLOG_MAX replies pile up is cut with
 * RESOURCE_EXHAUSTED, as the built-in echo server cuts one that cannot keep
 * up, so memory stays bounded. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <libchat/chat.h>

/* Events taken per chat_queue_drain. */
#define DRAIN_MAX 256
/* Replies a call may have waiting beyond its send queue. */
#define BACKLOG_MAX 4096

struct reply {
  struct reply *next;
  size_t len;
  char text[]; /* "<name>: <message>" */
};

/* One call's state, attached with chat_call_set_user_data at its OPEN and
 * freed at its CLOSE, its last event. */
struct call_state {
  chat_call *call;
  struct reply *head, *tail; /* replies refused by the send queue, oldest first */
  size_t backlog;
  int half_closed;           /* HALF_CLOSE seen: complete once the backlog is out */
  struct call_state *prev, *next; /* every open call, to check none is left */
};

static struct call_state *open_calls;
static size_t open_count;

static void free_backlog(struct call_state *cs) {
  while (cs->head) {
    struct reply *r = cs->head;
    cs->head = r->next;
    free(r);
  }
  cs->tail = NULL;
  cs->backlog = 0;
}

static void fail_call(struct call_state *cs, chat_code code, const char *why) {
  free_backlog(cs);
  chat_call_fail(cs->call, code, why, strlen(why)); /* CHAT_ERR_CLOSED: ended already */
}

/* Sends the backlog, oldest first, until the send queue refuses one (then
 * the call's next WRITABLE resumes here); completes the call once the
 * client has half-closed and every reply is queued. */
static void flush(struct call_state *cs) {
  while (cs->head) {
    struct reply *r = cs->head;
    chat_code rc = chat_call_send(cs->call, r->text, r->len, 0);
    if (rc == CHAT_ERR_WOULD_BLOCK) return;
    if (rc == CHAT_ERR_CLOSED) { /* the call has ended; its CLOSE follows */
      free_backlog(cs);
      return;
    }
    if (rc != CHAT_OK) {
      char why[256];
      chat_call_error(cs->call, why, sizeof why);
      fprintf(stderr, "chat_loop_server: call %llu: send: %s: %s\n",
              (unsigned long long)chat_call_id(cs->call), chat_code_name(rc), why);
      fail_call(cs, CHAT_RESOURCE_EXHAUSTED, "reply not sent");
      return;
    }
    cs->head = r->next;
    if (cs->head == NULL) cs->tail = NULL;
    --cs->backlog;
    free(r);
  }
  if (cs->half_closed) chat_call_complete(cs->call);
}

static void on_open(chat_call *call) {
  struct call_state *cs = calloc(1, sizeof *cs);
  if (cs == NULL) {
    static const char why[] = "out of memory";
    chat_call_fail(call, CHAT_RESOURCE_EXHAUSTED, why, sizeof why - 1);
    return; /* its events come with no state: handle() ignores them */
  }
  cs->call = call;
  cs->next = open_calls;
  if (open_calls) open_calls->prev = cs;
  open_calls = cs;
  ++open_count;
  chat_call_set_user_data(call, cs);
}

static void on_message(struct call_state *cs, const char *name, size_t name_len,
                       const char *message, size_t message_len) {
  struct reply *r = malloc(sizeof *r + name_len + 2 + message_len);
  if (r == NULL) {
    fail_call(cs, CHAT_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  r->next = NULL;
  r->len = name_len + 2 + message_len;
  memcpy(r->text, name, name_len);
  memcpy(r->text + name_len, ": ", 2);
  memcpy(r->text + name_len + 2, message, message_len);
  if (cs->backlog >= BACKLOG_MAX) {
    free(r);
    fail_call(cs, CHAT_RESOURCE_EXHAUSTED, "the client does not read its replies");
    return;
  }
  /* Behind the backlog, in order; flush sends it now if there is room. */
  if (cs->tail) cs->tail->next = r;
  else cs->head = r;
  cs->tail = r;
  ++cs->backlog;
  if (cs->backlog == 1) flush(cs);
}

static void on_close(struct call_state *cs) {
  free_backlog(cs);
  if (cs->prev) cs->prev->next = cs->next;
  else open_calls = cs->next;
  if (cs->next) cs->next->prev = cs->prev;
  --open_count;
  free(cs);
}

/* Handles one server event. The call's state comes from
 * chat_call_user_data, not from ev->user_data: events drained in the same
 * batch as the call's OPEN were handed out before on_open attached it, and
 * carry the server's user_data instead. */
static void handle(const chat_event *ev) {
  struct call_state *cs = ev->call ? chat_call_user_data(ev->call) : NULL;
  switch (ev->type) {
    case CHAT_EVENT_OPEN:
      on_open(ev->call);
      break;
    case CHAT_EVENT_MESSAGE:
      if (cs) on_message(cs, ev->name, ev->name_len, ev->text, ev->text_len);
      break;
    case CHAT_EVENT_WRITABLE:
      if (cs) flush(cs);
      break;
    case CHAT_EVENT_HALF_CLOSE:
      if (cs) {
        cs->half_closed = 1;
        if (cs->head == NULL) chat_call_complete(cs->call);
      }
      break;
    case CHAT_EVENT_CLOSE:
      if (cs) on_close(cs); /* the handle stays valid until the next drain */
      break;
    default: /* WAKE is handled by the loop */
      break;
  }
}

struct stopper {
  chat_server *server;
  chat_queue *queue;
  int64_t grace_ms;
  int32_t cut;
  chat_code rc;
};

/* Runs chat_server_stop off the loop: the stop waits up to the grace period
 * for open calls to finish, and in queue mode it is the loop that finishes
 * them, so the loop must keep draining meanwhile. The WAKE tells the loop
 * the stop is over. */
static void *stop_server(void *arg) {
  struct stopper *s = arg;
  s->rc = chat_server_stop(s->server, s->grace_ms, &s->cut);
  chat_queue_wake(s->queue);
  return NULL;
}

static int usage(const char *argv0) {
  fprintf(stderr, "usage: %s [--address HOST:PORT] [--grace-ms N]\n", argv0);
  return 2;
}

int main(int argc, char **argv) {
  const char *address = "127.0.0.1:9090";
  long grace_ms = 5000;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
      address = argv[++i];
    } else if (strcmp(argv[i], "--grace-ms") == 0 && i + 1 < argc) {
      char *end;
      grace_ms = strtol(argv[++i], &end, 10);
      if (*end || grace_ms < 0) return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }

  /* One fd per connection: take all the fds allowed. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) perror("chat_loop_server: setrlimit");
  }

  /* Block the stop signals before any library thread exists (threads
   * inherit the mask), so they reach the signalfd and no gRPC thread. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  int sigfd = signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) {
    perror("chat_loop_server: signalfd");
    return 1;
  }

  chat_queue *queue = NULL;
  chat_code rc = chat_queue_create(&queue);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chat_loop_server: queue: %s: %s\n", chat_code_name(rc), chat_last_error());
    return 1;
  }

  /* Custom mode with a queue: every on_* stays NULL and no dispatcher
   * thread runs; the calls' events arrive on the queue. */
  chat_server_options opts;
  chat_server_options_init(&opts, CHAT_SERVER_OPTIONS_VERSION);
  opts.mode = CHAT_MODE_CUSTOM;
  opts.queue = queue;
  chat_server *server = NULL;
  rc = chat_server_start(address, &opts, &server);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chat_loop_server: %s: %s\n", chat_code_name(rc), chat_last_error());
    chat_queue_destroy(queue);
    return 1;
  }

  int epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event on_queue = {.events = EPOLLIN, .data = {.fd = chat_queue_fd(queue)}};
  struct epoll_event on_signal = {.events = EPOLLIN, .data = {.fd = sigfd}};
  if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, chat_queue_fd(queue), &on_queue) != 0 ||
      epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &on_signal) != 0) {
    perror("chat_loop_server: epoll");
    chat_server_destroy(server);
    chat_queue_destroy(queue);
    return 1;
  }

  const char *colon = strrchr(address, ':');
  int host_len = colon ? (int)(colon - address) : (int)strlen(address);
  printf("listening on %.*s:%d\n", host_len, address, chat_server_port(server));
  fflush(stdout);

  struct stopper stopper = {server, queue, grace_ms, 0, CHAT_OK};
  pthread_t stop_thread;
  int stopping = 0, stopped = 0, sig = 0, status = 0;
  chat_event events[DRAIN_MAX];
  while (!stopped) {
    struct epoll_event ready[2];
    int n = epoll_wait(epfd, ready, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("chat_loop_server: epoll_wait");
      status = 1;
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (ready[i].data.fd == sigfd) {
        struct signalfd_siginfo info;
        while (read(sigfd, &info, sizeof info) == (ssize_t)sizeof info) {
          if (stopping) continue; /* a second signal: the stop is under way */
          sig = (int)info.ssi_signo;
          stopping = 1;
          if (pthread_create(&stop_thread, NULL, stop_server, &stopper) != 0) {
            stop_server(&stopper); /* no thread: stop now, without serving the grace period */
            stopping = 2;
          }
        }
        continue;
      }
      /* Drain until a drain returns fewer events than asked for. */
      size_t count;
      do {
        rc = chat_queue_drain(queue, 0, events, DRAIN_MAX, &count);
        if (rc != CHAT_OK) {
          char why[256];
          chat_queue_error(queue, why, sizeof why);
          fprintf(stderr, "chat_loop_server: drain: %s: %s\n", chat_code_name(rc), why);
          status = 1;
          stopped = 1;
          break;
        }
        for (size_t k = 0; k < count; ++k) {
          if (events[k].type == CHAT_EVENT_WAKE) stopped = stopping != 0; /* the stop returned */
          else handle(&events[k]);
        }
      } while (count == DRAIN_MAX);
    }
  }
  if (stopping == 1) pthread_join(stop_thread, NULL);
  if (!stopping) chat_server_stop(server, 0, NULL); /* the loop failed */

  /* The stop returned once every call had ended; their CLOSE events came
   * before the WAKE. Take any left, then destroy the server, then the queue
   * it delivers to. */
  size_t count;
  while (chat_queue_drain(queue, 0, events, DRAIN_MAX, &count) == CHAT_OK && count > 0) {
    for (size_t k = 0; k < count; ++k) handle(&events[k]);
  }
  if (open_count != 0) {
    fprintf(stderr, "chat_loop_server: %zu call%s never closed\n", open_count,
            open_count == 1 ? "" : "s");
    status = 1;
    while (open_calls) on_close(open_calls);
  }
  chat_server_destroy(server);
  close(epfd);
  chat_queue_destroy(queue);
  close(sigfd);
  if (stopping) {
    fprintf(stderr, "chat_loop_server: stopped on %s (%d stream%s cut)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", stopper.cut, stopper.cut == 1 ? "" : "s");
    if (stopper.rc != CHAT_OK) status = 1;
  }
  return status;
}
