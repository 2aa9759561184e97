/* hello_chat.c: start an echo server and run the seed through a client stream. */
#include <stdio.h>
#include <string.h>

#include <libchat/chat.h>

int main(void) {
  /* The header you compiled against must match the library you loaded. */
  if (chat_version_number() != CHAT_VERSION_NUMBER) {
    fprintf(stderr, "chat.h is %s but libchat is %s\n", CHAT_VERSION_STRING, chat_version());
    return 1;
  }

  /* NULL options: the echo server. Port 0 picks a free port. */
  chat_server *server = NULL;
  chat_code rc = chat_server_start("127.0.0.1:0", NULL, &server);
  if (rc != CHAT_OK) {
    fprintf(stderr, "server: %s: %s\n", chat_code_name(rc), chat_last_error());
    return 1;
  }
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", (int)chat_server_port(server));

  chat_client *client = NULL;
  chat_stream *stream = NULL;
  rc = chat_client_create(target, NULL, &client);
  if (rc == CHAT_OK) rc = chat_client_open(client, NULL, &stream);

  static const char *const seed[3][2] = {{"Sam", "Hi"}, {"Ann", "Hey"}, {"John", "Hello"}};
  for (int i = 0; rc == CHAT_OK && i < 3; ++i) {
    /* Text is copied before the call returns; wait up to 5 s for queue room. */
    rc = chat_stream_send(stream, seed[i][0], strlen(seed[i][0]), seed[i][1],
                          strlen(seed[i][1]), 5000);
  }
  if (rc == CHAT_OK) rc = chat_stream_complete(stream); /* half-close */
  if (rc != CHAT_OK) fprintf(stderr, "client: %s: %s\n", chat_code_name(rc), chat_last_error());

  /* Replies arrive in order; each is borrowed until the next recv. */
  static const char *const expected[3] = {"Sam: Hi", "Ann: Hey", "John: Hello"};
  int matched = 0;
  while (rc == CHAT_OK) {
    const char *text;
    size_t len;
    rc = chat_stream_recv(stream, 5000, &text, &len);
    if (rc != CHAT_OK) break;
    printf("%.*s\n", (int)len, text);
    if (matched < 3 && len == strlen(expected[matched]) && memcmp(text, expected[matched], len) == 0)
      ++matched;
  }
  /* CHAT_END_OF_STREAM: the server completed with OK and every reply was taken. */
  int ok = rc == CHAT_END_OF_STREAM && matched == 3;
  if (!ok) fprintf(stderr, "stream ended with %s after %d matching replies\n", chat_code_name(rc), matched);

  chat_stream_destroy(stream);   /* destroyers accept NULL */
  chat_client_destroy(client);
  chat_server_destroy(server);   /* no callback runs after this returns */
  return ok ? 0 : 1;
}
