/* Helpers shared by the benchmark's C and C++ peers: the message format, a
 * monotonic clock and percentiles. Header-only so each peer stays a single
 * translation unit with no extra library. */
#ifndef CHAT_BENCH_UTIL_H
#define CHAT_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "bench"
#define BENCH_NAME_LEN 5
#define BENCH_MSG_LEN 16
/* "bench: " + 16 bytes */
#define BENCH_REPLY_LEN (BENCH_NAME_LEN + 2 + BENCH_MSG_LEN)

static inline int64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Message i: exactly 16 bytes ("m" + 15 digits), unique per index so that a
 * reply out of order or from another stream cannot pass verification.
 * `out` must hold 17 bytes (NUL). */
static inline void bench_message(uint64_t i, char *out) {
  /* Hand-rolled rather than snprintf: formatting is on every message's path
   * and should cost the peers next to nothing. */
  out[0] = 'm';
  for (int k = BENCH_MSG_LEN - 1; k >= 1; --k, i /= 10) out[k] = (char)('0' + i % 10);
  out[BENCH_MSG_LEN] = '\0';
}

/* Reply expected for message i: "bench: m000..i". `out` holds 24 bytes. */
static inline void bench_expected(uint64_t i, char *out) {
  memcpy(out, BENCH_NAME ": ", BENCH_NAME_LEN + 2);
  bench_message(i, out + BENCH_NAME_LEN + 2);
}

static inline int bench_reply_ok(uint64_t i, const char *text, size_t len) {
  char want[BENCH_REPLY_LEN + 1];
  if (len != BENCH_REPLY_LEN) return 0;
  bench_expected(i, want);
  return memcmp(want, text, BENCH_REPLY_LEN) == 0;
}

static inline int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile: the smallest value with at least pct% of the n
 * values at or below it (integer arithmetic, no rounding surprises). `v` must
 * be sorted ascending (see bench_sort). */
static inline double bench_percentile(const double *v, size_t n, unsigned pct) {
  if (n == 0) return 0.0;
  size_t rank = (pct * n + 99) / 100;
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return v[rank - 1];
}

static inline void bench_sort(double *v, size_t n) { qsort(v, n, sizeof *v, bench_cmp_double); }

#endif /* CHAT_BENCH_UTIL_H */
