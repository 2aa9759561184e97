/* bad_request.h: provokes a real gRPC log line from a libchat server, for the
 * log-handler tests (log_test.cc, log_helper.c). C99 and C++, POSIX sockets.
 *
 * An HTTP/2 request whose content-type is text/plain: gRPC 1.51's transport
 * logs BAD_REQUEST_LOG_LINE at ERROR while it parses the request's headers,
 * on a gRPC thread, so the line arrives asynchronously. The server answers
 * the stream only after those headers were parsed, so once
 * bad_request_await_reply has returned 0 the line has been logged (or
 * dropped): handlers run synchronously inside gRPC's log call.
 *
 * The request, sent over a plain TCP socket: the client preface, an empty
 * SETTINGS frame, then one HEADERS frame (END_HEADERS | END_STREAM, stream
 * 1) whose block is HPACK "literal header field without indexing, new name"
 * entries (no Huffman coding). */
#ifndef CHAT_TESTS_CAPI_BAD_REQUEST_H
#define CHAT_TESTS_CAPI_BAD_REQUEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What gRPC logs (ERROR) for the request. */
#define BAD_REQUEST_LOG_LINE \
  "Error parsing metadata: error=invalid value key=content-type value=text/plain"

/* One HPACK literal without indexing, new name (both under 127 bytes). */
static inline size_t bad_request_literal(unsigned char *out, const char *name,
                                         const char *value) {
  size_t n = strlen(name), v = strlen(value);
  out[0] = 0x00;
  out[1] = (unsigned char)n;
  memcpy(out + 2, name, n);
  out[2 + n] = (unsigned char)v;
  memcpy(out + 3 + n, value, v);
  return 3 + n + v;
}

/* An HTTP/2 frame header: 24-bit length, type, flags, 31-bit stream id. */
static inline void bad_request_frame_header(unsigned char *out, size_t len, unsigned type,
                                            unsigned flags, unsigned stream) {
  out[0] = (unsigned char)(len >> 16);
  out[1] = (unsigned char)(len >> 8);
  out[2] = (unsigned char)len;
  out[3] = (unsigned char)type;
  out[4] = (unsigned char)flags;
  out[5] = (unsigned char)(stream >> 24);
  out[6] = (unsigned char)(stream >> 16);
  out[7] = (unsigned char)(stream >> 8);
  out[8] = (unsigned char)stream;
}

/* The whole request into out (256 bytes are plenty); returns its size. */
static inline size_t bad_request_bytes(unsigned char out[256]) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  static const char *const headers[][2] = {
      {":method", "POST"}, {":scheme", "http"},
      {":path", "/Chat/chat"}, {":authority", "x"},
      {"content-type", "text/plain"}, {"te", "trailers"},
  };
  size_t size = sizeof preface - 1, block = 0, i;
  memcpy(out, preface, size);
  bad_request_frame_header(out + size, 0, 0x4 /* SETTINGS */, 0, 0);
  size += 9;
  for (i = 0; i < sizeof headers / sizeof headers[0]; ++i) {
    block += bad_request_literal(out + size + 9 + block, headers[i][0], headers[i][1]);
  }
  bad_request_frame_header(out + size, block, 0x1 /* HEADERS */,
                           0x4 /* END_HEADERS */ | 0x1 /* END_STREAM */, 1);
  return size + 9 + block;
}

/* Connects to 127.0.0.1:port and sends the request. Returns the socket
 * (close it when done) or -1. */
static inline int bad_request_send(int port) {
  unsigned char bytes[256];
  size_t size = bad_request_bytes(bytes), sent = 0;
  struct sockaddr_in addr;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (const struct sockaddr *)&addr, sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  while (sent < size) {
    ssize_t n = send(fd, bytes + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return -1;
    }
    sent += (size_t)n;
  }
  return fd;
}

static inline long long bad_request_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what the server sends on fd until it answered stream 1 (HEADERS or
 * RST_STREAM), sent GOAWAY or closed the connection: 0. -1 after timeout_ms
 * or on a read error. */
static inline int bad_request_await_reply(int fd, int timeout_ms) {
  unsigned char buf[4096];
  size_t have = 0;
  long long deadline = bad_request_now_ms() + timeout_ms;
  for (;;) {
    /* Whole frames first. */
    while (have >= 9) {
      size_t len = ((size_t)buf[0] << 16) | ((size_t)buf[1] << 8) | buf[2];
      unsigned type = buf[3];
      unsigned stream = ((unsigned)(buf[5] & 0x7f) << 24) | ((unsigned)buf[6] << 16) |
                        ((unsigned)buf[7] << 8) | buf[8];
      if (type == 0x7 /* GOAWAY */) return 0;
      if (stream == 1 && (type == 0x1 /* HEADERS */ || type == 0x3 /* RST_STREAM */)) return 0;
      if (len > sizeof buf - 9) return -1; /* larger than any frame it sends here */
      if (have < 9 + len) break;
      memmove(buf, buf + 9 + len, have - 9 - len);
      have -= 9 + len;
    }
    {
      long long left = deadline - bad_request_now_ms();
      struct pollfd p;
      ssize_t n;
      if (left <= 0) return -1;
      p.fd = fd;
      p.events = POLLIN;
      p.revents = 0;
      if (poll(&p, 1, (int)left) < 0 && errno != EINTR) return -1;
      if (p.revents == 0) continue;
      n = recv(fd, buf + have, sizeof buf - have, 0);
      if (n == 0) return 0; /* closed */
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return errno == ECONNRESET ? 0 : -1;
      }
      have += (size_t)n;
    }
  }
}

#endif /* CHAT_TESTS_CAPI_BAD_REQUEST_H */
