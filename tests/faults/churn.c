/* churn: connection churn against an in-process echo server, over chat.h.
 *
 *   churn [CYCLES]
 *
 * Runs CYCLES (default 300) of each variant below, destroying everything
 * while the client's lazy connect may still be in progress, then waits (up
 * to a deadline) until
 *   - this process's open fds (entries of /proc/self/fd) are back to the
 *     count taken before the cycles, and
 *   - no TCP connection to the server's port is left (ESTABLISHED or
 *     otherwise, either side, per /proc/net/tcp).
 * Both sides live in this process, so a connection left on either side
 * shows in both counts. Exits 0 when everything came back, 1 otherwise.
 *
 * Variants:
 *   send      create, open, send, destroy stream, destroy client
 *   nosend    create, open, destroy stream, destroy client
 *   client1st create, open, send, destroy client, destroy stream
 *
 * and this process's VmRSS has grown by less than RSS_SLACK_KIB. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libchat/chat.h>

/* Allocator slack and gRPC's lazily grown caches; a leak of one connection
 * per cycle would be tens of MB at 3,000 cycles. */
#define RSS_SLACK_KIB (16 * 1024)

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1; /* the DIR's own fd */
}

/* TCP sockets (any state but LISTEN and TIME_WAIT) whose local or remote
 * port is `port`, from /proc/net/tcp and tcp6 (gRPC connects IPv4 targets
 * over dual-stack IPv6 sockets). */
static int count_connections_in(const char *path, int port) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0; /* no IPv6: nothing there */
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned local_port = 0, remote_port = 0, state = 0;
    /* "  sl: LOCAL_ADDR:PORT REMOTE_ADDR:PORT ST ..."; the header fails the scan. */
    if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%x %x", &local_port, &remote_port,
               &state) != 3) {
      continue;
    }
    if (state == 0x0A || state == 0x06) continue; /* LISTEN; TIME_WAIT has no fd */
    if ((int)local_port == port || (int)remote_port == port) ++n;
  }
  fclose(f);
  return n;
}

static int count_connections(int port) {
  return count_connections_in("/proc/net/tcp", port) + count_connections_in("/proc/net/tcp6", port);
}

static long rss_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  char line[256];
  long v = -1;
  size_t flen = strlen(field);
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
      v = strtol(line + flen + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

enum variant { V_SEND, V_NOSEND, V_CLIENT_FIRST };
static const char *const variant_names[] = {"send", "nosend", "client1st"};

static int cycle(const char *target, enum variant v) {
  chat_client *client = NULL;
  chat_stream *stream = NULL;
  if (chat_client_create(target, NULL, &client) != CHAT_OK) return 0;
  if (chat_client_open(client, NULL, &stream) != CHAT_OK) {
    chat_client_destroy(client);
    return 0;
  }
  if (v != V_NOSEND) {
    /* Queued at once; the connect is most likely still going on. */
    chat_code rc = chat_stream_send(stream, "Sam", 3, "Hi", 2, 1000);
    if (rc != CHAT_OK) {
      fprintf(stderr, "churn: send: %s: %s\n", chat_code_name(rc), chat_last_error());
    }
  }
  if (v == V_CLIENT_FIRST) {
    chat_client_destroy(client);
    chat_stream_destroy(stream);
  } else {
    chat_stream_destroy(stream);
    chat_client_destroy(client);
  }
  return 1;
}

/* Waits until fds and connections are back, up to `timeout_s`. */
static int settle(int port, int fds0, double timeout_s, int *fds, int *conns) {
  double deadline = now_s() + timeout_s;
  for (;;) {
    *fds = count_fds();
    *conns = count_connections(port);
    if (*fds <= fds0 && *conns == 0) return 1;
    if (now_s() > deadline) return 0;
    pause_ms(20);
  }
}

int main(int argc, char **argv) {
  long cycles = argc > 1 ? strtol(argv[1], NULL, 10) : 300;
  if (argc > 2 || cycles <= 0) {
    fprintf(stderr, "usage: %s [CYCLES]\n", argv[0]);
    return 2;
  }

  chat_server *server = NULL;
  if (chat_server_start("127.0.0.1:0", NULL, &server) != CHAT_OK) {
    fprintf(stderr, "churn: server: %s\n", chat_last_error());
    return 1;
  }
  int port = chat_server_port(server);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", port);

  /* Warm-up: one complete conversation, so gRPC's process-wide machinery
   * (pollers, timers, the library's kept channel) exists before counting. */
  {
    chat_client *client = NULL;
    chat_stream *stream = NULL;
    chat_client_create(target, NULL, &client);
    chat_client_open(client, NULL, &stream);
    chat_stream_send(stream, "Sam", 3, "Hi", 2, 5000);
    chat_stream_complete(stream);
    const char *text;
    size_t len;
    while (chat_stream_recv(stream, 5000, &text, &len) == CHAT_OK) {
    }
    chat_stream_destroy(stream);
    chat_client_destroy(client);
  }
  int fds0 = -1, conns0 = -1;
  int fds = 0, conns = 0;
  /* The warm-up connection goes away by itself; take the baseline then. */
  double deadline = now_s() + 10;
  while ((conns0 = count_connections(port)) != 0 && now_s() < deadline) pause_ms(20);
  fds0 = count_fds();
  long rss0 = rss_kib("VmRSS");
  printf("churn: port %d, baseline %d fds, %d connections, VmRSS %ld KiB\n", port, fds0, conns0,
         rss0);

  int ok = conns0 == 0;
  for (int v = V_SEND; v <= V_CLIENT_FIRST; ++v) {
    double t0 = now_s();
    int peak_fds = fds0;
    for (long i = 0; i < cycles; ++i) {
      if (!cycle(target, (enum variant)v)) {
        fprintf(stderr, "churn: cycle %ld failed: %s\n", i, chat_last_error());
        ok = 0;
        break;
      }
      if (i % 16 == 0) {
        int n = count_fds();
        if (n > peak_fds) peak_fds = n;
      }
    }
    double t1 = now_s();
    int settled = settle(port, fds0, 15.0, &fds, &conns);
    printf("churn: %-9s %ld cycles in %.2fs, peak %d fds; %.2fs later: %d fds (baseline %d), "
           "%d connections left%s\n",
           variant_names[v], cycles, t1 - t0, peak_fds, now_s() - t1, fds, fds0, conns,
           settled ? "" : "  <-- LEAK");
    fflush(stdout);
    if (!settled) ok = 0;
  }
  /* Memory is flat too: what the cycles allocated was given back, bar
   * allocator slack. Not under ASan, whose quarantine holds freed memory. */
  long rss1 = rss_kib("VmRSS");
  printf("churn: VmRSS %ld KiB -> %ld KiB (VmHWM %ld KiB)\n", rss0, rss1, rss_kib("VmHWM"));
#if !defined(__SANITIZE_ADDRESS__)
  if (rss1 - rss0 > RSS_SLACK_KIB) {
    printf("churn: VmRSS grew by %ld KiB (more than %d)  <-- LEAK\n", rss1 - rss0, RSS_SLACK_KIB);
    ok = 0;
  }
#endif
  chat_server_destroy(server);
  printf("churn: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
