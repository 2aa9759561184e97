/* bench_libchat_server: libchat's echo server (all defaults) for the
 * benchmark, through the C ABI.
 *
 *   bench_libchat_server [--address 127.0.0.1:0] [--completion-queues N]
 *                        [--tls-cert PEM_FILE --tls-key PEM_FILE]
 *
 * Prints one JSON line {"port": N, "pid": P} once listening; stops when its
 * stdin reaches EOF (the driver closes it, or dies) or on SIGTERM/SIGINT.
 * Unlike examples/chat_server it needs no signal to stop, so a driver that
 * is killed outright still takes it down. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <libchat/chat.h>

static void *watch_stdin(void *arg) {
  (void)arg;
  char buf[256];
  while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
  }
  kill(getpid(), SIGTERM);
  return NULL;
}

int main(int argc, char **argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the driver */
  const char *address = "127.0.0.1:0";
  int queues = 0; /* the library's default: one per core, at least two, one awake until needed */
  const char *tls_cert = NULL, *tls_key = NULL; /* both or neither: TLS */
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
      address = argv[++i];
    } else if (strcmp(argv[i], "--completion-queues") == 0 && i + 1 < argc) {
      queues = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
      tls_cert = argv[++i];
    } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
      tls_key = argv[++i];
    } else {
      fprintf(stderr,
              "usage: %s [--address HOST:PORT] [--completion-queues N] "
              "[--tls-cert PEM_FILE --tls-key PEM_FILE]\n",
              argv[0]);
      return 2;
    }
  }
  /* Blocked before any library thread exists, so only sigwait sees them. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);

  /* The idle round holds 10,000 streams on one connection: each counts
   * toward the memory bound, and one connection may hold half of it. */
  chat_server_options opts;
  chat_server_options_init(&opts, CHAT_SERVER_OPTIONS_VERSION);
  opts.max_memory_bytes = (int64_t)1 << 30;
  opts.completion_queues = queues;
  opts.tls_cert_chain = tls_cert;
  opts.tls_private_key = tls_key;
  chat_server *server = NULL;
  chat_code rc = chat_server_start(address, &opts, &server);
  if (rc != CHAT_OK) {
    fprintf(stderr, "bench_libchat_server: %s: %s\n", chat_code_name(rc), chat_last_error());
    return 1;
  }
  printf("{\"port\": %d, \"pid\": %d}\n", chat_server_port(server), (int)getpid());
  fflush(stdout);

  pthread_t watcher;
  pthread_create(&watcher, NULL, watch_stdin, NULL);
  pthread_detach(watcher);
  int sig = 0;
  sigwait(&stop, &sig);
  rc = chat_server_stop(server, 2000, NULL);
  chat_server_destroy(server);
  return rc == CHAT_OK ? 0 : 1;
}
