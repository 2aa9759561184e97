/* room_server: a chat room on /Chat/chat, written on the C API's custom
 * mode (CHAT_MODE_CUSTOM and its callbacks) and a chat_room, until
 * SIGINT/SIGTERM.
 *
 *   room_server [--address HOST:PORT] [--grace-ms N] [--send-queue N]
 *               [--room redis://HOST:PORT[/DB] --room-name NAME]
 *
 * The first stdout line is "listening on HOST:PORT" (flushed), so scripts
 * started with port 0 can learn the port. Exit status: 0 after a clean stop,
 * 1 if the server could not start or stop, 2 for a bad command line.
 *
 * The room (chat_room_open) lives in this process, or with --room and
 * --room-name in the Redis stream room:NAME, shared by every room_server
 * (and chat_server --room) of that name: members of different servers, on
 * one machine or many, are then in one room. This program decides who
 * joins and under which name; the room delivers.
 *
 * The protocol, as a member sees it (every line below is one reply):
 *  - Joining. A call becomes a member with its first message; the name of
 *    that message is the member's name for the rest of the call (later
 *    messages' names are ignored, so nobody speaks as someone else). Every
 *    member, the new one included, first gets "* Sam joined", then the
 *    message itself. An empty name fails the call with INVALID_ARGUMENT, a
 *    name a member of this server already has with ALREADY_EXISTS.
 *  - Talking. Each message goes to every member, its sender included, as
 *    "Sam: <message>". Every member sees all lines in the same order, and
 *    one member's messages in the order it sent them.
 *  - "/who" (the whole message) is not sent to the room: only its sender
 *    gets "* members: Ann, Sam", the names of this server's members in
 *    byte order.
 *  - Leaving. When a member's call ends (the client half-closes, which
 *    completes the call once the lines queued for it are written; or it
 *    cancels, or vanishes) the others get "* Sam left".
 *  - Slow members. A member whose send queue is full (--send-queue lines,
 *    default 1024; its client does not read) is not waited for: the room
 *    cuts its call with RESOURCE_EXHAUSTED ("... reads too slowly for the
 *    room"; the lines still queued are dropped) and the others get "* Sam
 *    left". So one slow reader never holds up the room or grows its memory.
 *  - A line longer than the largest message (4 MiB) is dropped.
 *  - On Redis, a message the room cannot take (Redis down) fails its
 *    sender's call with UNAVAILABLE; the others stay.
 *  - Stopping. On SIGINT/SIGTERM every member gets "* room closing" and its
 *    call is completed (it ends OK once its lines are written); calls still
 *    open after --grace-ms (default 5000) are cut with UNAVAILABLE.
 *
 * Threads. The callbacks run on the server's two dispatcher threads (chat.h,
 * "Handler callbacks"): one call's callbacks run in order on one of them,
 * different calls' callbacks may run at the same time. The room is
 * thread-safe and gives every member one order; the list of names here is
 * guarded by one mutex. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <libchat/chat.h>

#define MAX_LINE (4u << 20) /* the largest message a client takes by default */

struct member {
  chat_call *call; /* our reference (chat_call_ref), dropped at on_close */
  char *name;
  size_t name_len;
};

/* A call's user data (chat_call_set_user_data): NULL before its first
 * message, then its struct member, or `rejected` once its name was refused
 * (its messages still in flight are then ignored). Only that call's own
 * callbacks touch it, and they never run at the same time. */
static char rejected;

static chat_room *room;

/* This server's members, for names and /who. */
static struct {
  pthread_mutex_t lock;
  struct member **members; /* sorted by name, bytewise; guarded by lock */
  size_t count, cap;
} local = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

static int name_cmp(const char *a, size_t a_len, const char *b, size_t b_len) {
  int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
  if (c != 0) return c;
  return a_len < b_len ? -1 : a_len > b_len;
}

/* "* <name><what>" ("* Sam joined") to the room. */
static void announce(const struct member *m, const char *what) {
  size_t what_len = strlen(what);
  char *line = malloc(2 + m->name_len + what_len);
  if (line == NULL) return;
  memcpy(line, "* ", 2);
  memcpy(line + 2, m->name, m->name_len);
  memcpy(line + 2 + m->name_len, what, what_len);
  chat_room_notice(room, line, 2 + m->name_len + what_len); /* Redis away: nobody to tell */
  free(line);
}

static void refuse(chat_call *call, chat_code code, const char *why) {
  chat_call_set_user_data(call, &rejected);
  chat_call_fail(call, code, why, strlen(why));
}

/* Lists the call under `name`. NULL if it was refused. Lock held. */
static struct member *list(chat_call *call, const char *name, size_t name_len) {
  if (name_len == 0) {
    refuse(call, CHAT_INVALID_ARGUMENT, "a name is required to join");
    return NULL;
  }
  size_t at = 0; /* insertion point that keeps the list sorted */
  while (at < local.count) {
    const struct member *o = local.members[at];
    int c = name_cmp(o->name, o->name_len, name, name_len);
    if (c == 0) {
      refuse(call, CHAT_ALREADY_EXISTS, "that name is taken");
      return NULL;
    }
    if (c > 0) break;
    ++at;
  }
  if (local.count == local.cap) {
    size_t cap = local.cap ? 2 * local.cap : 8;
    struct member **grown = realloc(local.members, cap * sizeof *grown);
    if (grown == NULL) {
      refuse(call, CHAT_RESOURCE_EXHAUSTED, "out of memory");
      return NULL;
    }
    local.members = grown;
    local.cap = cap;
  }
  struct member *m = malloc(sizeof *m);
  char *copy = malloc(name_len); /* the callback's strings are only borrowed */
  if (m == NULL || copy == NULL) {
    free(m);
    free(copy);
    refuse(call, CHAT_RESOURCE_EXHAUSTED, "out of memory");
    return NULL;
  }
  memcpy(copy, name, name_len);
  /* The list outlives this callback: hold our own reference to the call. */
  chat_call_ref(call);
  *m = (struct member){call, copy, name_len};
  memmove(local.members + at + 1, local.members + at, (local.count - at) * sizeof *local.members);
  local.members[at] = m;
  ++local.count;
  chat_call_set_user_data(call, m);
  return m;
}

static void unlist(struct member *m) {
  pthread_mutex_lock(&local.lock);
  for (size_t i = 0; i < local.count; ++i) {
    if (local.members[i] == m) {
      memmove(local.members + i, local.members + i + 1,
              (local.count - i - 1) * sizeof *local.members);
      --local.count;
      break;
    }
  }
  pthread_mutex_unlock(&local.lock);
}

/* Answers "/who" to `m` alone. */
static void who(struct member *m) {
  static const char head[] = "* members: ";
  pthread_mutex_lock(&local.lock);
  size_t len = sizeof head - 1;
  for (size_t i = 0; i < local.count; ++i) len += local.members[i]->name_len + 2;
  char *line = malloc(len);
  size_t at = sizeof head - 1;
  if (line != NULL) {
    memcpy(line, head, at);
    for (size_t i = 0; i < local.count; ++i) { /* already sorted */
      if (i > 0) {
        memcpy(line + at, ", ", 2);
        at += 2;
      }
      memcpy(line + at, local.members[i]->name, local.members[i]->name_len);
      at += local.members[i]->name_len;
    }
  }
  pthread_mutex_unlock(&local.lock);
  if (line != NULL) chat_call_send(m->call, line, at, 0); /* full: the room cuts it */
  free(line);
}

/* Dispatcher thread (the call's). */
static void on_message(chat_call *call, const char *name, size_t name_len, const char *message,
                       size_t message_len, void *user_data) {
  (void)user_data;
  struct member *m = chat_call_user_data(call);
  if (m == (void *)&rejected) return;
  if (m == NULL) {
    pthread_mutex_lock(&local.lock);
    m = list(call, name, name_len);
    pthread_mutex_unlock(&local.lock);
    if (m == NULL) return;
    chat_room_join(room, call, 0); /* CHAT_ERR_CLOSED: it has just ended */
    announce(m, " joined");
  }
  if (message_len == 4 && memcmp(message, "/who", 4) == 0) {
    who(m);
    return;
  }
  if (m->name_len + 2 + message_len > MAX_LINE) return;
  chat_code rc = chat_room_publish(room, m->name, m->name_len, message, message_len);
  if (rc == CHAT_UNAVAILABLE) {
    char why[256];
    chat_room_error(room, why, sizeof why);
    chat_call_fail(call, CHAT_UNAVAILABLE, why, strlen(why));
  }
}

/* Dispatcher thread (the call's). The client sends no more: it is leaving.
 * Completing ends the call with OK once the lines already queued for it are
 * written; on_close follows. (The library would complete it by itself with
 * on_complete NULL; spelled out here because it is the room's rule.) */
static void on_complete(chat_call *call, void *user_data) {
  (void)user_data;
  chat_call_complete(call);
}

/* Dispatcher thread (the call's); its last callback. */
static void on_close(chat_call *call, chat_code code, const char *details, size_t details_len,
                     void *user_data) {
  (void)code;
  (void)details;
  (void)details_len;
  (void)user_data;
  struct member *m = chat_call_user_data(call);
  if (m == NULL || m == (void *)&rejected) return; /* never joined */
  unlist(m);
  chat_room_leave(room, call); /* CHAT_ERR_MISSING: it left when its call ended */
  announce(m, " left");
  chat_call_unref(m->call);
  free(m->name);
  free(m);
}

/* Main thread, before the stop: say goodbye and let every member end OK. */
static void close_room(void) {
  static const char bye[] = "* room closing";
  pthread_mutex_lock(&local.lock);
  for (size_t i = 0; i < local.count; ++i) {
    chat_room_leave(room, local.members[i]->call); /* no line after the goodbye */
    chat_call_send(local.members[i]->call, bye, sizeof bye - 1, 0);
    chat_call_complete(local.members[i]->call);
  }
  pthread_mutex_unlock(&local.lock);
}

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--address HOST:PORT] [--grace-ms N] [--send-queue N] "
          "[--room redis://HOST:PORT[/DB] --room-name NAME]\n",
          argv0);
  return 2;
}

/* A whole decimal number in [min, max], or -1. */
static long parse_long(const char *s, long min, long max) {
  char *end;
  long v = strtol(s, &end, 10);
  return (*s != '\0' && *end == '\0' && v >= min && v <= max) ? v : -1;
}

int main(int argc, char **argv) {
  const char *address = "127.0.0.1:9090", *room_url = NULL, *room_name = NULL;
  long grace_ms = 5000, send_queue = 1024;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
      address = argv[++i];
    } else if (strcmp(argv[i], "--grace-ms") == 0 && i + 1 < argc) {
      if ((grace_ms = parse_long(argv[++i], 0, 3600000)) < 0) return usage(argv[0]);
    } else if (strcmp(argv[i], "--room") == 0 && i + 1 < argc) {
      room_url = argv[++i];
    } else if (strcmp(argv[i], "--room-name") == 0 && i + 1 < argc) {
      room_name = argv[++i];
    } else if (strcmp(argv[i], "--send-queue") == 0 && i + 1 < argc) {
      if ((send_queue = parse_long(argv[++i], 1, 1 << 20)) < 0) return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }

  /* One fd per connection (see chat_server_start in chat.h). */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) perror("room_server: setrlimit");
  }

  /* Block the stop signals before any library thread exists, so they are
   * delivered to sigwait below and never to a gRPC thread. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  chat_room_options ro;
  chat_room_options_init(&ro, CHAT_ROOM_OPTIONS_VERSION);
  ro.url = room_url;
  ro.name = room_name;
  chat_code rc = chat_room_open(&ro, &room);
  if (rc != CHAT_OK) {
    fprintf(stderr, "room_server: %s: %s\n", chat_code_name(rc), chat_last_error());
    return 1;
  }

  chat_server_options opts;
  chat_server_options_init(&opts, CHAT_SERVER_OPTIONS_VERSION);
  opts.mode = CHAT_MODE_CUSTOM;
  /* No on_open: a call joins with its first message, not when it opens. */
  opts.on_message = on_message;
  opts.on_complete = on_complete;
  opts.on_close = on_close;
  /* Two, so callbacks of different calls really do run at once (the room
   * and the lock are what make that safe). */
  opts.dispatcher_threads = 2;
  opts.send_queue_limit = (int32_t)send_queue;
  chat_server *server = NULL;
  rc = chat_server_start(address, &opts, &server);
  if (rc != CHAT_OK) {
    fprintf(stderr, "room_server: %s: %s\n", chat_code_name(rc), chat_last_error());
    return 1;
  }

  /* Print the host part as given and the port actually bound. */
  const char *colon = strrchr(address, ':');
  int host_len = colon ? (int)(colon - address) : (int)strlen(address);
  printf("listening on %.*s:%d\n", host_len, address, chat_server_port(server));
  fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  close_room();
  int32_t cut = 0;
  rc = chat_server_stop(server, grace_ms, &cut);
  fprintf(stderr, "room_server: stopped on %s (%d stream%s cut)\n",
          sig == SIGINT ? "SIGINT" : "SIGTERM", cut, cut == 1 ? "" : "s");
  /* Every on_close has run: the list is empty. */
  chat_server_destroy(server);
  chat_room_destroy(room);
  free(local.members);
  return rc == CHAT_OK ? 0 : 1;
}
