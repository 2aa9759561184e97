/* capi_dlopen_demo: what another runtime does. It has no link-time
 * dependency on libchat: it loads the library with dlopen, looks up the C
 * functions with dlsym, starts an echo server on a free loopback port, runs
 * the seed against it through the C client API and prints the three lines.
 *
 *   capi_dlopen_demo [PATH_TO_LIBCHAT]   (default: libchat.so.1) */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <libchat/chat.h> /* types and constants only: every function comes from dlsym */

/* The subset of the ABI this program uses, resolved at run time. */
struct api {
  const char *(*version)(void);
  const char *(*code_name)(chat_code);
  const char *(*last_error)(void);
  chat_code (*server_start)(const char *, const chat_server_options *, chat_server **);
  int32_t (*server_port)(const chat_server *);
  chat_code (*server_stop)(chat_server *, int64_t, int32_t *);
  chat_code (*server_destroy)(chat_server *);
  chat_code (*client_create)(const char *, const chat_client_options *, chat_client **);
  void (*client_destroy)(chat_client *);
  chat_code (*client_open)(chat_client *, const chat_stream_options *, chat_stream **);
  chat_code (*stream_send)(chat_stream *, const char *, size_t, const char *, size_t, int64_t);
  chat_code (*stream_complete)(chat_stream *);
  chat_code (*stream_recv)(chat_stream *, int64_t, const char **, size_t *);
  void (*stream_destroy)(chat_stream *);
};

static int load(void *lib, const char *name, void *slot) {
  void *sym = dlsym(lib, name);
  if (!sym) {
    fprintf(stderr, "capi_dlopen_demo: missing symbol %s\n", name);
    return 0;
  }
  memcpy(slot, &sym, sizeof sym); /* object pointer -> function pointer, POSIX-style */
  return 1;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "libchat.so.1";
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "capi_dlopen_demo: %s\n", dlerror());
    return 1;
  }
  struct api c;
  int ok = load(lib, "chat_version", &c.version) && load(lib, "chat_code_name", &c.code_name) &&
           load(lib, "chat_last_error", &c.last_error) &&
           load(lib, "chat_server_start", &c.server_start) &&
           load(lib, "chat_server_port", &c.server_port) &&
           load(lib, "chat_server_stop", &c.server_stop) &&
           load(lib, "chat_server_destroy", &c.server_destroy) &&
           load(lib, "chat_client_create", &c.client_create) &&
           load(lib, "chat_client_destroy", &c.client_destroy) &&
           load(lib, "chat_client_open", &c.client_open) &&
           load(lib, "chat_stream_send", &c.stream_send) &&
           load(lib, "chat_stream_complete", &c.stream_complete) &&
           load(lib, "chat_stream_recv", &c.stream_recv) &&
           load(lib, "chat_stream_destroy", &c.stream_destroy);
  if (!ok) return 1;

  chat_server *server = NULL;
  chat_code rc = c.server_start("127.0.0.1:0", NULL, &server); /* NULL options: echo */
  if (rc != CHAT_OK) {
    fprintf(stderr, "capi_dlopen_demo: server: %s: %s\n", c.code_name(rc), c.last_error());
    return 1;
  }
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", c.server_port(server));

  chat_client *client = NULL;
  chat_stream *stream = NULL;
  rc = c.client_create(target, NULL, &client);
  if (rc == CHAT_OK) rc = c.client_open(client, NULL, &stream);
  static const char *const seed[][2] = {{"Sam", "Hi"}, {"Ann", "Hey"}, {"John", "Hello"}};
  for (size_t i = 0; rc == CHAT_OK && i < 3; ++i) {
    rc = c.stream_send(stream, seed[i][0], strlen(seed[i][0]), seed[i][1], strlen(seed[i][1]), 5000);
  }
  if (rc == CHAT_OK) rc = c.stream_complete(stream);
  while (rc == CHAT_OK) {
    const char *text;
    size_t len;
    rc = c.stream_recv(stream, 5000, &text, &len);
    if (rc == CHAT_OK) printf("%.*s\n", (int)len, text);
  }
  int status = rc == CHAT_END_OF_STREAM ? 0 : 1;
  if (status) fprintf(stderr, "capi_dlopen_demo: %s: %s\n", c.code_name(rc), c.last_error());

  c.stream_destroy(stream);
  c.client_destroy(client);
  c.server_stop(server, 1000, NULL);
  c.server_destroy(server);
  dlclose(lib);
  return status;
}
