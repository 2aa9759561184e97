// Tells ThreadSanitizer about orderings that gRPC provides but TSan cannot
// see (the system gRPC is not instrumented). No-ops in other builds.
#pragma once

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
// Everything before this call happens before anything after a matching
// ChatTsanAcquire on the same address.
inline void ChatTsanRelease(const void* addr) { __tsan_release(const_cast<void*>(addr)); }
inline void ChatTsanAcquire(const void* addr) { __tsan_acquire(const_cast<void*>(addr)); }
#else
inline void ChatTsanRelease(const void*) {}
inline void ChatTsanAcquire(const void*) {}
#endif
