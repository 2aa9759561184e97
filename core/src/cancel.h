// Where a thread may be cancelled inside the library.
#pragma once

#include <pthread.h>

namespace chat::internal {

// The C ABI's entry points hold thread cancellation off (a write() to one of
// gRPC's wake-up descriptors deep inside is a cancellation point, and a
// forced unwind from there would leave gRPC's locks held). The waits that
// may last (a receive, a send waiting for room, a drain, a stop's grace)
// open it again for the wait alone, where every lock but the waited-on
// mutex is released and the state is consistent: a deferred cancel then
// acts there and nowhere else. Restored on the way out, the unwind included.
class AllowCancel {
 public:
  AllowCancel() { pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old_); }
  ~AllowCancel() { pthread_setcancelstate(old_, nullptr); }
  AllowCancel(const AllowCancel&) = delete;
  AllowCancel& operator=(const AllowCancel&) = delete;

 private:
  int old_ = PTHREAD_CANCEL_ENABLE;
};

}  // namespace chat::internal
