/* chat_server: serves /Chat/chat (echo or broadcast) until SIGINT/SIGTERM.
 *
 *   chat_server [--address HOST:PORT] [--mode echo|broadcast] [--grace-ms N]
 *               [--tls-cert PEM --tls-key PEM [--tls-ca PEM [--require-client-cert]]]
 *               [--token TOKEN] [--health] [--reflection]
 *               [--stats SECONDS] [--compression gzip|deflate|none] [--max-streams N]
 *               [--room redis://HOST:PORT[/DB] --room-name NAME]
 *
 * With --tls-cert and --tls-key (PEM files) it serves TLS only; --tls-ca
 * asks clients for a certificate from that CA (verified when sent), and
 * --require-client-cert refuses clients without one. With --token only
 * streams carrying "authorization: Bearer TOKEN" are admitted; the others
 * end with UNAUTHENTICATED.
 *
 * --health serves grpc.health.v1.Health (NOT_SERVING once a stop begins),
 * --reflection gRPC server reflection (grpcurl list / describe).
 *
 * --stats SECONDS prints the server's counters to stderr that often;
 * --compression compresses every reply; --max-streams refuses streams
 * beyond N open ones (RESOURCE_EXHAUSTED).
 *
 * With --mode broadcast, --room and --room-name put the room on a Redis
 * stream shared by every server naming it (see room_url in chat.h);
 * --room-max-len N trims it to about N lines (default 10000).
 *
 * The first stdout line is "listening on HOST:PORT" (flushed), so scripts
 * started with port 0 can learn the port. --stats prints the server's
 * counters to stderr every SECONDS (and once more after the stop). */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <libchat/chat.h>

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--address HOST:PORT] [--mode echo|broadcast] [--grace-ms N]\n"
          "       [--tls-cert PEM --tls-key PEM [--tls-ca PEM [--require-client-cert]]] "
          "[--token TOKEN] [--health] [--reflection]\n"
          "       [--stats SECONDS] [--compression gzip|deflate|none] [--max-streams N]\n"
          "       [--room redis://HOST:PORT[/DB] --room-name NAME [--room-max-len N]]\n",
          argv0);
  return 2;
}

/* Compares in time that depends on the lengths only, not on where the
 * texts differ, so the answer's timing does not reveal the token. */
static int same_secret(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < la && i < lb; ++i) diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}

/* --token: admits only the expected bearer token (runs on a transport
 * thread before the stream opens). */
static chat_code check_token(chat_call *call, const char *token, char *message, size_t size,
                             void *expected) {
  if (token == NULL) {
    snprintf(message, size, "a bearer token is required");
    return CHAT_UNAUTHENTICATED;
  }
  if (!same_secret(token, expected)) {
    snprintf(message, size, "the bearer token is not valid");
    return CHAT_UNAUTHENTICATED;
  }
  chat_call_set_principal(call, "token holder");
  return CHAT_OK;
}

/* One line of counters on stderr, "key=value" pairs for scripts. */
static void print_stats(const chat_server *server) {
  chat_stats st;
  st.version = CHAT_STATS_VERSION;
  if (chat_server_stats(server, &st) != CHAT_OK) return;
  fprintf(stderr,
          "chat_server: stats streams_open=%llu streams_total=%llu streams_refused=%llu "
          "streams_cut=%llu messages_in=%llu messages_out=%llu bytes_in=%llu bytes_out=%llu\n",
          (unsigned long long)st.streams_open, (unsigned long long)st.streams_total,
          (unsigned long long)st.streams_refused, (unsigned long long)st.streams_cut,
          (unsigned long long)st.messages_in, (unsigned long long)st.messages_out,
          (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
}

int main(int argc, char **argv) {
  const char *address = "127.0.0.1:9090";
  int mode = CHAT_MODE_ECHO;
  long grace_ms = 5000;
  const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL, *token = NULL;
  int require_client_cert = 0;
  int health = 0, reflection = 0;
  long stats_s = 0; /* 0: no stats */
  int compression = CHAT_COMPRESSION_NONE;
  long max_streams = 0; /* 0: no limit */
  const char *room = NULL, *room_name = NULL;
  long long room_max_len = 0; /* 0: the library's default */
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
      address = argv[++i];
    } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
      const char *m = argv[++i];
      if (strcmp(m, "echo") == 0) mode = CHAT_MODE_ECHO;
      else if (strcmp(m, "broadcast") == 0) mode = CHAT_MODE_BROADCAST;
      else return usage(argv[0]);
    } else if (strcmp(argv[i], "--grace-ms") == 0 && i + 1 < argc) {
      grace_ms = strtol(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
      tls_cert = argv[++i];
    } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
      tls_key = argv[++i];
    } else if (strcmp(argv[i], "--tls-ca") == 0 && i + 1 < argc) {
      tls_ca = argv[++i];
    } else if (strcmp(argv[i], "--require-client-cert") == 0) {
      require_client_cert = 1;
    } else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
      token = argv[++i];
    } else if (strcmp(argv[i], "--health") == 0) {
      health = 1;
    } else if (strcmp(argv[i], "--reflection") == 0) {
      reflection = 1;
    } else if (strcmp(argv[i], "--stats") == 0 && i + 1 < argc) {
      char *end = NULL;
      stats_s = strtol(argv[++i], &end, 10);
      if (*end != '\0' || stats_s <= 0) return usage(argv[0]);
    } else if (strcmp(argv[i], "--max-streams") == 0 && i + 1 < argc) {
      char *end = NULL;
      max_streams = strtol(argv[++i], &end, 10);
      if (*end != '\0' || max_streams <= 0 || max_streams > INT32_MAX) return usage(argv[0]);
    } else if (strcmp(argv[i], "--compression") == 0 && i + 1 < argc) {
      const char *c = argv[++i];
      if (strcmp(c, "gzip") == 0) compression = CHAT_COMPRESSION_GZIP;
      else if (strcmp(c, "deflate") == 0) compression = CHAT_COMPRESSION_DEFLATE;
      else if (strcmp(c, "none") == 0) compression = CHAT_COMPRESSION_NONE;
      else return usage(argv[0]);
    } else if (strcmp(argv[i], "--room") == 0 && i + 1 < argc) {
      room = argv[++i];
    } else if (strcmp(argv[i], "--room-name") == 0 && i + 1 < argc) {
      room_name = argv[++i];
    } else if (strcmp(argv[i], "--room-max-len") == 0 && i + 1 < argc) {
      char *end = NULL;
      room_max_len = strtoll(argv[++i], &end, 10);
      if (*end != '\0' || room_max_len <= 0) return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }

  /* One fd per connection; out of them, new clients wait until some are
   * free (see chat_server_start in chat.h): take all the fds allowed. */
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) perror("chat_server: setrlimit");
  }

  /* Block the stop signals before any library thread exists, so they are
   * delivered to sigwait below and never to a gRPC thread. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  chat_server_options opts;
  chat_server_options_init(&opts, CHAT_SERVER_OPTIONS_VERSION);
  opts.mode = mode;
  opts.tls_cert_chain = tls_cert;
  opts.tls_private_key = tls_key;
  opts.tls_client_ca = tls_ca;
  opts.tls_client_cert = require_client_cert ? CHAT_CLIENT_CERT_REQUIRE
                         : tls_ca            ? CHAT_CLIENT_CERT_REQUEST
                                             : CHAT_CLIENT_CERT_NONE;
  if (token) {
    opts.authenticate = check_token;
    opts.authenticate_user_data = (void *)token;
  }
  opts.health = health;
  opts.reflection = reflection;
  opts.compression = compression;
  opts.max_streams = (int32_t)max_streams;
  opts.room_url = room;
  opts.room_name = room_name;
  if (room_max_len > 0) opts.room_max_len = room_max_len;
  chat_server *server = NULL;
  chat_code rc = chat_server_start(address, &opts, &server);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chat_server: %s: %s\n", chat_code_name(rc), chat_last_error());
    return 1;
  }

  /* Print the host part as given and the port actually bound. */
  const char *colon = strrchr(address, ':');
  int host_len = colon ? (int)(colon - address) : (int)strlen(address);
  printf("listening on %.*s:%d\n", host_len, address, chat_server_port(server));
  fflush(stdout);

  int sig = 0;
  if (stats_s > 0) {
    struct timespec period = {stats_s, 0};
    while ((sig = sigtimedwait(&stop_signals, NULL, &period)) < 0) print_stats(server);
  } else {
    sigwait(&stop_signals, &sig);
  }
  int32_t cut = 0;
  rc = chat_server_stop(server, grace_ms, &cut);
  fprintf(stderr, "chat_server: stopped on %s (%d stream%s cut)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
          cut, cut == 1 ? "" : "s");
  if (stats_s > 0) print_stats(server);
  chat_server_destroy(server);
  return rc == CHAT_OK ? 0 : 1;
}
