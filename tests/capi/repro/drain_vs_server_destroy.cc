// Repro (standalone, not built by CMake; needs a build without sanitizers,
// it interposes pthread_mutex_unlock):
//   g++ -std=c++17 -g -Icapi/include tests/capi/repro/drain_vs_server_destroy.cc \
//       -Lbuild/capi -lchat -ldl -pthread -Wl,-rpath,$PWD/build/capi -o /tmp/repro && /tmp/repro
//
// A queued server's Session::ResumeRead runs on the host's draining thread
// (EventQueue::Drain -> GiveBack -> Session::Drained) and used to call
// host_->RelieveMemory() on the ServerImpl after letting go of the session's
// lock. chat_server_destroy does not wait for the draining thread, so the
// server could be freed in between: SIGSEGV (a virtual call through the
// freed server). The draining thread is held right after that unlock (the
// 4th unlock of its drain: the queue's, Session::Drained's,
// MemoryAccount::WaitForRoom's, Session::ResumeRead's) until the server is
// destroyed. Exit 0 and "survived" when fixed.
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "chat.h"

static thread_local int t_unlocks = -1;  // counting on the draining thread only
static std::atomic<bool> g_in_window{false}, g_destroyed{false};

extern "C" int pthread_mutex_unlock(pthread_mutex_t* m) {
  static auto real = reinterpret_cast<int (*)(pthread_mutex_t*)>(dlsym(RTLD_NEXT, "pthread_mutex_unlock"));
  int rc = real(m);
  if (t_unlocks >= 0 && ++t_unlocks == 4) {
    g_in_window = true;
    for (int i = 0; i < 10000 && !g_destroyed; ++i) usleep(1000);
  }
  return rc;
}

int main() {
  chat_queue* sq;
  chat_queue_create(&sq);
  chat_server_options o;
  chat_server_options_init(&o, CHAT_SERVER_OPTIONS_VERSION);
  o.mode = CHAT_MODE_CUSTOM;
  o.queue = sq;
  o.recv_window = 1;
  o.max_memory_bytes = 2 * 16384 + 150;  // two streams' overhead + 150 bytes of messages
  chat_server* srv;
  if (chat_server_start("127.0.0.1:0", &o, &srv) != CHAT_OK) return 2;
  std::string target = "127.0.0.1:" + std::to_string(chat_server_port(srv));
  chat_client *c1, *c2;  // one connection each (the rapid-reset guard)
  chat_client_create(target.c_str(), nullptr, &c1);
  chat_client_create(target.c_str(), nullptr, &c2);
  chat_event ev[16];
  size_t n;
  chat_stream *a, *b;
  std::string ma(100, 'a'), mb(200, 'b');
  chat_client_open(c1, nullptr, &a);
  chat_stream_send(a, "", 0, ma.data(), ma.size(), -1);
  do chat_queue_drain(sq, 1000, ev, 1, &n); while (n == 0);  // OPEN a only
  chat_client_open(c2, nullptr, &b);
  chat_stream_send(b, "", 0, mb.data(), mb.size(), -1);
  usleep(500 * 1000);  // both read: over the bound, both windows full
  std::thread drainer([&] {
    size_t k;
    t_unlocks = 0;
    // MESSAGE a first: giving its 100 bytes back leaves the server over its
    // bound, so a's read stays paused and ResumeRead reports over_bound.
    chat_queue_drain(sq, 0, ev, 16, &k);
    t_unlocks = -1;
  });
  while (!g_in_window) usleep(1000);
  chat_server_destroy(srv);
  g_destroyed = true;
  drainer.join();
  chat_stream_destroy(a);
  chat_stream_destroy(b);
  chat_client_destroy(c1);
  chat_client_destroy(c2);
  chat_queue_destroy(sq);
  puts("survived");
  return 0;
}
