/*
 * chat.h - the C ABI of libchat: host and drive the gRPC bidirectional
 * streaming Chat service (/Chat/chat, the Ballerina example's contract).
 *
 * Stable ABI: load libchat.so.1 with dlopen or link with -lchat. The header
 * compiles as C99 and C++ and includes only <stddef.h> and <stdint.h>.
 *
 * Conventions that hold for every function below:
 *  - Results. Functions return a chat_code: CHAT_OK (0) on success. On
 *    failure chat_last_error() holds a message for the calling thread.
 *  - Handles. chat_queue, chat_server, chat_call, chat_client and
 *    chat_stream are opaque.
 *    Each has one creator and one destroyer; destroyers accept NULL. Passing
 *    NULL where a handle is required returns CHAT_ERR_BAD_ARGUMENT.
 *  - Strings in. Text crosses as pointer + length, must be valid UTF-8
 *    (proto3 strings are) and is copied before the call returns: the caller
 *    keeps ownership. A NULL pointer is allowed only with length 0. Addresses,
 *    targets and metadata keys are NUL-terminated C strings; metadata values
 *    too, unless given with lengths (chat_stream_options version 2).
 *  - Strings out. Text the library hands back is borrowed: the function that
 *    returns it says until when. It is NUL-terminated as a convenience, but
 *    the length is authoritative (UTF-8 may contain U+0000).
 *  - Time. Durations are int64_t milliseconds. For waits, a negative value
 *    means "no limit" and is offered only where a cancel path exists; 0 means
 *    "do not wait". Every positive value is honoured as given, up to
 *    INT64_MAX: durations longer than 100 years (which no clock can add to
 *    "now" without overflowing) are treated as 100 years, i.e. no practical
 *    limit. This holds for timeouts, chat_stream_options.deadline_ms and
 *    chat_server_stop's grace_ms alike.
 *  - Exceptions. No C++ exception ever leaves the library. Callbacks you give
 *    it must not throw or longjmp either.
 *  - Thread cancellation. The library holds cancellation off while it runs
 *    and allows it only where it waits: in chat_stream_recv / _recv_batch /
 *    _wait / _send, chat_call_send, chat_server_stop (its grace) and
 *    chat_queue_drain, while they wait. There the forced unwind of
 *    pthread_cancel (deferred) or pthread_exit is let through, not
 *    swallowed: the thread ends cleanly, the library's locks released, and
 *    the handle stays usable and destroyable. Nothing else is a
 *    cancellation point, destroyers included: they finish what they wait
 *    for (chat_server_destroy up to ~2 s plus running callbacks,
 *    chat_stream_destroy until its call ends). The same
 *    holds for a callback on a dispatcher thread that a foreign runtime ends
 *    with pthread_exit (CPython does so to threads that want the GIL while
 *    the interpreter finalizes): that dispatcher thread ends, the process
 *    lives.
 *  - Threads. Each function states whether it is thread-safe; each callback
 *    states which thread runs it.
 */
#ifndef CHAT_H
#define CHAT_H

#include <stddef.h>
#include <stdint.h>

/* Exports the C ABI from libchat.so (built with hidden visibility); nothing
 * for callers. libchat is a POSIX library (pipes, pthreads): there is no
 * Windows DLL to import from, so no __declspec pretence either. */
#if defined(CHAT_BUILDING) && defined(__GNUC__)
#define CHAT_API __attribute__((visibility("default")))
#else
#define CHAT_API
#endif

/* In C++, every function that does not wait is noexcept. The few that wait
 * (see "Thread cancellation" above) let a thread's forced unwind through,
 * so they cannot be. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define CHAT_NOEXCEPT noexcept
#else
#define CHAT_NOEXCEPT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                 */
/* ------------------------------------------------------------------------ */

/* The one place the version is written: the build, pychat and the Node
 * package take it from here (or from chat_version() at run time). */
#define CHAT_VERSION_MAJOR 1
#define CHAT_VERSION_MINOR 2
#define CHAT_VERSION_PATCH 0
#define CHAT_VERSION_NUMBER \
  (CHAT_VERSION_MAJOR * 10000 + CHAT_VERSION_MINOR * 100 + CHAT_VERSION_PATCH)
#define CHAT_STRINGIFY_(x) #x
#define CHAT_XSTRINGIFY_(x) CHAT_STRINGIFY_(x)
#define CHAT_VERSION_STRING                                         \
  CHAT_XSTRINGIFY_(CHAT_VERSION_MAJOR) "." CHAT_XSTRINGIFY_(CHAT_VERSION_MINOR) "." \
  CHAT_XSTRINGIFY_(CHAT_VERSION_PATCH)
/* The SONAME major (libchat.so.1): the version's major, bumped only by an
 * incompatible change. */
#define CHAT_ABI_VERSION CHAT_VERSION_MAJOR

/* The library's version string ("1.0.0"); static storage. Thread-safe. */
CHAT_API const char *chat_version(void) CHAT_NOEXCEPT;
/* The library's CHAT_VERSION_NUMBER; compare with the header's to detect a
 * mismatch between the header you compiled against and the library loaded.
 * Thread-safe. */
CHAT_API int32_t chat_version_number(void) CHAT_NOEXCEPT;
/* The library's CHAT_ABI_VERSION. Thread-safe. */
CHAT_API int32_t chat_abi_version(void) CHAT_NOEXCEPT;

/* ------------------------------------------------------------------------ */
/* Handles                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct chat_server chat_server; /* a listening server */
typedef struct chat_call chat_call;     /* one server-side stream (an open /Chat/chat call) */
typedef struct chat_client chat_client; /* one connection to a server */
typedef struct chat_stream chat_stream; /* one client-side stream (a /Chat/chat call) */
typedef struct chat_queue chat_queue;   /* an event queue (see "Event queue") */

/* ------------------------------------------------------------------------ */
/* Result codes                                                             */
/* ------------------------------------------------------------------------ */

/* gRPC status codes keep their numbers (0..16) and mean only what a peer or
 * the transport reported (a stream's or call's final status, a refusal by
 * the server). Library codes (17..) are local outcomes of a call and never
 * travel on the wire. CHAT_END_OF_STREAM is not a failure: a receive
 * returns it once every reply was taken from a stream that ended OK. */
typedef enum chat_code {
  CHAT_OK = 0,
  CHAT_CANCELLED = 1,
  CHAT_UNKNOWN = 2,
  CHAT_INVALID_ARGUMENT = 3, /* the peer rejected an argument (wire status) */
  CHAT_DEADLINE_EXCEEDED = 4,
  CHAT_NOT_FOUND = 5,
  CHAT_ALREADY_EXISTS = 6,
  CHAT_PERMISSION_DENIED = 7,
  CHAT_RESOURCE_EXHAUSTED = 8,
  CHAT_FAILED_PRECONDITION = 9,
  CHAT_ABORTED = 10,
  CHAT_OUT_OF_RANGE = 11,
  CHAT_UNIMPLEMENTED = 12,
  CHAT_INTERNAL = 13,
  CHAT_UNAVAILABLE = 14,
  CHAT_DATA_LOSS = 15,
  CHAT_UNAUTHENTICATED = 16,

  CHAT_ERR_BAD_ARGUMENT = 17, /* NULL/invalid handle or argument, bad UTF-8 */
  CHAT_ERR_WOULD_BLOCK = 18,  /* send queue full and timeout_ms was 0 */
  CHAT_ERR_TIMEOUT = 19,      /* a local wait ran out (not the RPC deadline) */
  CHAT_END_OF_STREAM = 20,    /* not an error: ended OK, every reply taken */
  CHAT_ERR_CLOSED = 21,       /* the stream, call or server has ended */
  CHAT_ERR_BUSY = 22,         /* refused: would deadlock (own callback) */
  CHAT_ERR_NO_MEMORY = 23,
  CHAT_ERR_TOO_LARGE = 24,    /* message larger than max_message_bytes */
  CHAT_ERR_BAD_STATE = 25,    /* not valid in the handle's current state */
  CHAT_ERR_MISSING = 26,      /* no such entry (a metadata key not sent) */
  CHAT_ERR_CANNOT_LISTEN = 27, /* address in use, not local, unresolvable */
  CHAT_ERR_SYSTEM = 28,       /* the OS refused a resource (descriptors) */
  CHAT_ERR_LIBRARY_BUG = 29,  /* a defect in libchat; please report it */

  /* Not a code: pins the enum to 32 bits on every compiler, so codes may be
   * added without changing its size. */
  CHAT_CODE_PIN_INT32_ = 0x7fffffff
} chat_code;

/* The code's name as gRPC spells it ("OK", "DEADLINE_EXCEEDED") or the
 * library code's name ("WOULD_BLOCK", "END_OF_STREAM"); "UNRECOGNIZED" for any other
 * number. Static storage, never NULL. Thread-safe. */
CHAT_API const char *chat_code_name(chat_code code) CHAT_NOEXCEPT;

/* A message describing the last failure of a chat_* call on the calling
 * thread. Meaningful right after a call returned an error; never NULL;
 * owned by the library, valid until the next chat_* call on this thread.
 * Asynchronous outcomes (a stream's final status) are not reported here but
 * through chat_stream_status() and the on_close callback. */
CHAT_API const char *chat_last_error(void) CHAT_NOEXCEPT;

/* Error details per handle, for hosts whose calls hop between threads
 * (async runtimes), where the thread-local message may be another call's.
 * Each copies the message of the last chat_* call on that handle that
 * failed (returned anything but CHAT_OK) into buf (size bytes, always
 * NUL-terminated when size > 0, truncated if need be) and returns the
 * message's full length, like snprintf; "" (0) when none has failed, or
 * for an invalid handle. buf may be NULL when size is 0. A failure that
 * comes before the handle is known valid (a NULL or dead handle) is only in
 * chat_last_error. Thread-safe. */
CHAT_API size_t chat_server_error(const chat_server *server, char *buf, size_t size) CHAT_NOEXCEPT;
CHAT_API size_t chat_call_error(const chat_call *call, char *buf, size_t size) CHAT_NOEXCEPT;
CHAT_API size_t chat_client_error(const chat_client *client, char *buf, size_t size) CHAT_NOEXCEPT;
CHAT_API size_t chat_stream_error(const chat_stream *stream, char *buf, size_t size) CHAT_NOEXCEPT;
CHAT_API size_t chat_queue_error(const chat_queue *queue, char *buf, size_t size) CHAT_NOEXCEPT;

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

/* Severities of log lines, gRPC's (gpr) levels in order, plus "nothing". */
typedef enum chat_log_severity {
  CHAT_LOG_DEBUG = 0,
  CHAT_LOG_INFO = 1,
  CHAT_LOG_ERROR = 2,
  CHAT_LOG_NONE = 3 /* as min_severity: drop every line */
} chat_log_severity;

/* Receives one log line: `message` (len bytes, NUL-terminated, no trailing
 * newline; "file:line: text") is borrowed for the duration of the call.
 *
 * Thread: any. gRPC's own threads, the library's threads, and your threads
 * inside chat_* calls (a server that cannot bind logs on the thread calling
 * chat_server_start), possibly several at once: the function must be
 * thread-safe. It must not block for long, must not call libchat's blocking
 * functions (recv, send with a timeout, wait, stop, destroy...) nor
 * chat_set_log_handler (CHAT_ERR_BUSY), and must not throw, longjmp or end
 * its thread (pthread_exit): on your threads it runs inside a noexcept
 * function, where a forced unwind aborts the process. A line logged while
 * the callback runs on the same thread is dropped. */
typedef void (*chat_log_fn)(chat_log_severity severity, const char *message, size_t len,
                            void *user_data);

/* Routes gRPC's log lines (and the library's own, such as a callback that
 * threw) to `fn`, with `user_data`, for every line at or above
 * `min_severity`. fn == NULL restores the default: lines at or above
 * min_severity go to stderr in gRPC's format. min_severity == CHAT_LOG_NONE
 * drops every line, whatever fn is.
 *
 * Process-wide: gRPC has one log function per process, so this also
 * captures the lines of every other gRPC user in the process (grpcio in the
 * same Python process, for one), and it sets gRPC's verbosity to
 * min_severity (overriding GRPC_VERBOSITY; CHAT_LOG_NONE sets ERROR). Before
 * the first call gRPC's defaults apply (stderr, GRPC_VERBOSITY or ERROR).
 *
 * The new (fn, user_data) pair takes effect as one: no call ever sees fn of
 * one setting with user_data of another. When this returns, no call of the
 * previous callback is running or will start; so before unloading the code
 * the callback lives in, or freeing user_data, set another handler (or NULL).
 *
 * Errors: CHAT_ERR_BAD_ARGUMENT (min_severity not a chat_log_severity),
 * CHAT_ERR_BUSY (called from inside the log callback; nothing changes).
 * Thread-safe. */
CHAT_API chat_code chat_set_log_handler(chat_log_fn fn, void *user_data,
                                        chat_log_severity min_severity) CHAT_NOEXCEPT;

/* ------------------------------------------------------------------------ */
/* Event queue: one file descriptor for an event loop                       */
/* ------------------------------------------------------------------------ */

/* A queue of events that servers and client streams deliver to instead of
 * calling back on a library thread or waiting in a blocking receive. The
 * host drains it on its own thread: an event loop (Node, asyncio, libuv,
 * epoll) watches one file descriptor, readable while events are pending,
 * and drains when it is. Any number of servers and streams may share one
 * queue; a host usually has one per loop.
 *
 * Order: the events of one call or stream come out in the order they
 * happened: server calls OPEN, MESSAGE..., HALF_CLOSE, CLOSE; client
 * streams REPLY..., END. WRITABLE may come between them. CLOSE and END
 * come exactly once, last. Events of different calls and streams
 * interleave.
 *
 * Bounds: nothing is dropped and memory stays bounded. A server call's
 * messages count against recv_window / recv_window_bytes from the moment
 * they are read until they are drained, and a client stream's replies
 * against recv_queue_limit / recv_queue_bytes; while a call or stream is at
 * its bound the library stops reading it (HTTP/2 flow control slows its
 * peer down). So the queue holds at most the sum of those bounds, plus one
 * OPEN, HALF_CLOSE, CLOSE or END, WRITABLE and WAKE each.
 *
 * Threads: no host code runs on a library thread: the library only
 * pushes events, and every other move (send, complete, fail, cancel) is
 * the host's, from the thread that drains or any other. */

/* Values of chat_event.type. */
typedef enum chat_event_type {
  CHAT_EVENT_WAKE = 0,       /* chat_queue_wake was called (no call, no stream) */
  CHAT_EVENT_OPEN = 1,       /* server: a call opened; `call` is new */
  CHAT_EVENT_MESSAGE = 2,    /* server: the client sent name / text */
  CHAT_EVENT_HALF_CLOSE = 3, /* server: the client sends no more; the library
                                does not complete the call for you: call
                                chat_call_complete (the seed's behaviour) or
                                go on sending */
  CHAT_EVENT_CLOSE = 4,      /* server: the call ended; code and text (the
                                details) are its final status, as on_close
                                reports it. The call's last event */
  CHAT_EVENT_REPLY = 5,      /* client: a reply, in text */
  CHAT_EVENT_END = 6,        /* client: the stream ended after its replies;
                                code (CHAT_OK for a clean end) and text (the
                                details) are its final status, as
                                chat_stream_status reports it. Its last event */
  CHAT_EVENT_WRITABLE = 7    /* server or client: a send that returned
                                CHAT_ERR_WOULD_BLOCK or CHAT_ERR_TIMEOUT on
                                this call or stream would now find room: its
                                send queue has drained to half its limits
                                (count and bytes), so one wake-up lets many
                                sends through.
                                One per run of refusals (several refused
                                sends before the room came earn one), never
                                after the end */
} chat_event_type;

/* One event, as chat_queue_drain hands it out. Every pointer in it is
 * borrowed until the next chat_queue_drain on the same queue or
 * chat_queue_destroy. */
typedef struct chat_event {
  int32_t type;        /* a chat_event_type */
  chat_code code;      /* CLOSE and END: the final status code; else CHAT_OK */
  chat_call *call;     /* server events: the call. Valid from its OPEN
                                 until the drain after the one that returned
                                 its CLOSE (chat_call_ref keeps it longer) */
  chat_stream *stream; /* client events: the stream. Yours: valid
                                 until you destroy it, which discards its
                                 pending events (a drain running on another
                                 thread meanwhile may still hand out some:
                                 then it is only a name, not to be used) */
  void *user_data;     /* client events: the stream's
                          chat_stream_options.user_data. Server events: what
                          chat_call_set_user_data set, and until then the
                          server's chat_server_options.user_data (so an
                          OPEN tells which server the call came to) */
  const char *name;    /* MESSAGE: the sender's name; else NULL */
  size_t name_len;
  const char *text;    /* MESSAGE: the message; REPLY: the reply; CLOSE, END:
                          the status details; else NULL */
  size_t text_len;
} chat_event;

/* Creates an empty queue. *out receives it, to release with
 * chat_queue_destroy. Errors: CHAT_ERR_BAD_ARGUMENT (out is NULL),
 * CHAT_ERR_SYSTEM (no file descriptor left for its pipe). Thread-safe. */
CHAT_API chat_code chat_queue_create(chat_queue **out) CHAT_NOEXCEPT;

/* The queue's readiness descriptor: the read end of a non-blocking pipe,
 * readable while events are pending (possibly also, spuriously, right after
 * they were drained). Watch it with poll/epoll/select, asyncio's
 * add_reader or libuv. Owned by the queue and closed by chat_queue_destroy:
 * do not close it. You may read from it (Node's net.Socket reads what it
 * watches; give it a dup()): then treat each wake-up as "drain until
 * chat_queue_drain returns fewer events than asked for", because the byte
 * you consumed was the only signal for everything pending. The first call
 * arms the descriptor (it is made readable at once if events are pending):
 * a host that never asks for it, and waits in chat_queue_drain instead,
 * saves the library a pipe write per wake-up. -1 for NULL. Thread-safe. */
CHAT_API int chat_queue_fd(const chat_queue *queue) CHAT_NOEXCEPT;

/* Takes up to `max` pending events into out[0..*count), oldest first.
 * timeout_ms == 0 returns at once (with *count == 0 if nothing is pending,
 * and then makes no system call, but for one read of the descriptor in the
 * rare moment a wake-up byte written late may sit in it, so that a
 * level-triggered loop does not spin on it); > 0 waits up to that long for
 * the first event; < 0 waits until there is one (chat_queue_wake ends the
 * wait with a WAKE event). Returns CHAT_OK also when the wait ran out (*count == 0).
 * Draining releases what the previous drain handed out, and gives the
 * drained messages' and replies' room back to their calls and streams.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL queue, out or count, max == 0).
 * One draining thread at a time per queue; safe alongside every other call. */
CHAT_API chat_code chat_queue_drain(chat_queue *queue, int64_t timeout_ms, chat_event *out,
                                    size_t max, size_t *count);

/* Queues one WAKE event (unless one is pending already), which makes the
 * descriptor readable and ends a waiting chat_queue_drain: a way for other
 * threads to get the draining loop's attention. Never blocks.
 * Errors: CHAT_ERR_BAD_ARGUMENT. Thread-safe, also from callbacks. */
CHAT_API chat_code chat_queue_wake(chat_queue *queue) CHAT_NOEXCEPT;

/* Frees the queue and closes its descriptor; pending events are discarded
 * (their calls' handles released). Destroy the servers and streams that
 * deliver to it first: any still running from then on have their events
 * dropped (their messages and replies are lost; nothing else breaks).
 * A call handle it handed out (an OPEN drained) whose call is still open
 * then stays valid only until that call ends: its CLOSE is dropped on a
 * library thread, which releases the library's reference (chat_call_ref
 * keeps a handle longer).
 * NULL is a no-op. Not thread-safe with other calls on the same queue. */
CHAT_API void chat_queue_destroy(chat_queue *queue) CHAT_NOEXCEPT;

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */


/* Values of chat_server_options.mode. */
#define CHAT_MODE_ECHO 0      /* each message answered as "<name>: <message>" */
#define CHAT_MODE_BROADCAST 1 /* each message sent to every open stream */
#define CHAT_MODE_CUSTOM 2    /* the callbacks below, or an event queue, decide */

/* Message compression (gRPC's grpc-encoding), since 1.1: values of
 * chat_server_options.compression, chat_client_options.compression and
 * chat_stream_options.compression. Messages arriving compressed are
 * decompressed whatever these are set to. The peer must accept the
 * algorithm (gRPC announces what it accepts in grpc-accept-encoding; gRPC
 * implementations accept deflate and gzip unless configured otherwise). */
#define CHAT_COMPRESSION_NONE 0
#define CHAT_COMPRESSION_DEFLATE 1
#define CHAT_COMPRESSION_GZIP 2

/* Handler callbacks (CHAT_MODE_CUSTOM).
 *
 * Thread: every callback runs on one of the server's dispatcher threads
 * (dispatcher_threads of them), never on a gRPC or transport thread and
 * never on a thread of yours. The callbacks of one call run in order on one thread: on_open,
 * on_message..., on_complete, on_close. Callbacks of different calls may run
 * concurrently when dispatcher_threads > 1.
 *
 * A slow callback holds up every call on its dispatcher thread, and while a
 * call has recv_window messages waiting, the library stops reading it (the
 * client is slowed down by HTTP/2 flow control; nothing is dropped).
 *
 * From a callback you may call any chat_call_* function, on any call. You
 * must not call chat_server_stop or chat_server_destroy on its own server
 * (CHAT_ERR_BUSY).
 *
 * `call` is valid from on_open until on_close returns; see chat_call_ref to
 * keep it longer. Strings passed in are borrowed for the duration of the
 * callback: copy them to keep them. */
typedef void (*chat_on_open_fn)(chat_call *call, void *user_data);
typedef void (*chat_on_message_fn)(chat_call *call, const char *name, size_t name_len,
                                   const char *message, size_t message_len, void *user_data);
/* The client half-closed: it sends no more. If on_complete is NULL the
 * library completes the call (the seed's behaviour). gRPC reports a client
 * cancel as the end of its messages too, and the library filters that out
 * when it can; when the cancel is seen only later, chat_call_* functions
 * return CHAT_ERR_CLOSED and on_close reports CANCELLED. */
typedef void (*chat_on_complete_fn)(chat_call *call, void *user_data);
/* The call ended with its final status: OK after chat_call_complete, the code
 * given to chat_call_fail, CANCELLED when the client cancelled or vanished,
 * DEADLINE_EXCEEDED when its deadline passed here (a client whose own timer
 * fired first cancels, which arrives as CANCELLED), UNAVAILABLE when a
 * stopping server cut it. Exactly once per call, always its last callback. */
typedef void (*chat_on_close_fn)(chat_call *call, chat_code code, const char *details,
                                 size_t details_len, void *user_data);

/* Version 2 added the byte budgets, the memory bound and the keepalive
 * timeout; version 3 the number of completion queues; version 4 the event
 * queue; version 5 TLS, authentication, health checking, reflection,
 * compression and limits. A program built against an older version keeps working: the library reads and writes only
 * the fields of opts->version.
 *
 * Memory. Every queue is bounded in count and in bytes (the bytes of the
 * encoded messages). A queue whose byte budget is smaller than one message
 * still takes that message when it is empty, so the largest message always
 * passes. While a call's queue is full the library stops reading that call
 * (HTTP/2 flow control then slows its client down); nothing is dropped. On
 * top of that, max_memory_bytes bounds what the whole server holds in these
 * queues: above it, in echo and broadcast mode the call holding the most
 * unsent replies (its client reads the slowest) is cut with
 * RESOURCE_EXHAUSTED, as a room cuts a member that cannot keep up; in custom
 * mode, where your handler decides, no call is read until memory is
 * released. A new call that finds the server still over is refused with
 * RESOURCE_EXHAUSTED. Beyond these queues, gRPC holds per
 * stream at most its HTTP/2 flow-control window of data not yet read. */
#define CHAT_SERVER_OPTIONS_VERSION 5

/* Values of chat_server_options.tls_client_cert (version 5). */
#define CHAT_CLIENT_CERT_NONE 0    /* do not ask clients for a certificate */
#define CHAT_CLIENT_CERT_REQUEST 1 /* ask; one that is sent must chain to tls_client_ca */
#define CHAT_CLIENT_CERT_REQUIRE 2 /* a certificate chaining to tls_client_ca is required */

/* Authentication (chat_server_options.authenticate, version 5): decides
 * whether a new call opens, before anything else sees it (before on_open
 * or the OPEN event in custom mode, before any reply in echo and
 * broadcast mode).
 *
 * `token` is the client's bearer token (the value of its "authorization"
 * metadata after "Bearer "), or NULL when it sent none. `call` gives the
 * call's metadata, peer, chat_call_peer_subject / _peer_san (mTLS), and
 * takes chat_call_set_principal; chat_call_send, _complete and _fail
 * return CHAT_ERR_BAD_STATE on it. It is a handle of its own, valid until
 * the callback returns (chat_call_ref keeps it longer; on_open and the
 * events get another handle for the same call). `message` is a buffer of
 * `message_size` bytes (at least 256), "" on entry, for the reason sent
 * to a refused client (NUL-terminated; cut at message_size - 1 bytes).
 *
 * Return CHAT_OK to admit the call; CHAT_UNAUTHENTICATED (no or a bad
 * credential) or CHAT_PERMISSION_DENIED (known, but not allowed) to refuse
 * it with `message`. Another gRPC code (1..15) refuses with that code; any
 * other value refuses with CHAT_INTERNAL ("the server's authenticator
 * failed"). A refused call is never seen by on_open, the queue, echo or the
 * broadcast room, and counts nowhere as open.
 *
 * Thread: one of the server's transport threads (the one that took the
 * call), possibly several at once for different calls. Keep it quick: it
 * holds up every call of that thread. It must not call chat_server_stop or
 * chat_server_destroy. */
typedef chat_code (*chat_authenticate_fn)(chat_call *call, const char *token, char *message,
                                          size_t message_size, void *user_data);

typedef struct chat_server_options {
  uint32_t version;           /* CHAT_SERVER_OPTIONS_VERSION */
  int32_t mode;               /* CHAT_MODE_*; default CHAT_MODE_ECHO */
  int32_t max_message_bytes;  /* per message, both directions; default 4 MiB */
  int32_t send_queue_limit;   /* replies queued per call; default 1024 */
  int32_t recv_window;        /* messages waiting for on_message per call; default 64 */
  int32_t dispatcher_threads; /* threads running callbacks; default 1 */
  int32_t keepalive_ms;       /* HTTP/2 pings on idle connections so dead
                                 peers end their calls; 0 = off; default 30000 */
  /* The callbacks are for CHAT_MODE_CUSTOM without a queue only: set in
   * echo or broadcast mode, or with a queue, the start is refused
   * (CHAT_ERR_BAD_ARGUMENT) rather than leave them silently unused. */
  chat_on_open_fn on_open;         /* optional */
  chat_on_message_fn on_message;   /* required in CHAT_MODE_CUSTOM without a queue */
  chat_on_complete_fn on_complete; /* optional, see above */
  chat_on_close_fn on_close;       /* optional */
  void *user_data;                 /* passed to every callback, or carried
                                      in queue events (see chat_event);
                                      yours */
  /* Version 2. */
  int64_t send_queue_bytes;   /* bytes of replies queued per call; default 8 MiB */
  int64_t recv_window_bytes;  /* bytes of messages waiting for on_message per
                                 call (custom mode); default 8 MiB */
  int64_t max_memory_bytes;   /* bound on what all calls hold: their queued
                                 bytes plus 16 KiB per open call (gRPC's
                                 state for it); one connection may hold at
                                 most half of it, in streams of 16 KiB (8192
                                 by default): the server advertises half of
                                 that (4096) as HTTP/2
                                 MAX_CONCURRENT_STREAMS, so gRPC clients
                                 wait for a free slot, and closes a
                                 connection that opens more than 8192.
                                 Default 256 MiB */
  int32_t keepalive_timeout_ms; /* a ping unanswered this long ends the
                                   connection and its calls; default 10000 */
  /* Version 3. */
  int32_t completion_queues;  /* transport threads, each alone draining one
                                 gRPC completion queue; every call stays on
                                 one of them. 1..256, or 0 (the default)
                                 for one per core, at least two. Callbacks
                                 never run on them. Only the first drains
                                 at first (each thread more costs CPU per
                                 message: on 2 cores, about 45% more at
                                 1,000 streams); the next wakes, and stays
                                 awake, when an awake one is stuck inside
                                 gRPC for 20 ms (a flood of reset streams,
                                 rapid reset) or all are busy while the
                                 machine has 1.5 cores idle. When none is
                                 left to wake (always with 1) and all are
                                 stuck, a watcher cuts each flooding
                                 plaintext TCP connection after it grew
                                 the server by half of max_memory_bytes
                                 (16 MiB at least); it cannot see TLS or
                                 Unix-socket ones. */
  /* Version 4. */
  chat_queue *queue;          /* CHAT_MODE_CUSTOM only, optional: deliver the
                                 calls' events to this queue (see "Event
                                 queue") instead of calling on_*, which must
                                 then be NULL. The server runs no dispatcher
                                 threads (dispatcher_threads is ignored),
                                 recv_window counts messages not yet drained,
                                 and stop and destroy never wait for the
                                 thread that drains. Borrowed: the queue must
                                 outlive the server. */
  int32_t hold_until_consumed; /* with queue: nonzero keeps each drained
                                 MESSAGE counting against recv_window /
                                 recv_window_bytes until you report it done
                                 with chat_call_consumed, so a host that
                                 drains at once and handles later (async
                                 handlers) still slows a fast client down
                                 instead of buffering without bound.
                                 Default 0: room goes back at the drain */
  /* Version 5: TLS and authentication. Each certificate or key is PEM text
   * (it contains "-----BEGIN") or else the path of a PEM file, read during
   * chat_server_start (an unreadable file or one without PEM is
   * CHAT_ERR_BAD_ARGUMENT naming the path). All are borrowed during the
   * call only.
   * A TLS server listens through gRPC instead of libchat's own listener
   * (gRPC 1.51 takes accepted descriptors on plaintext only), so two guards
   * of plaintext servers (see chat_server_start) do not apply to it:
   * - no per-connection rapid-reset cut: a flood of reset streams is
   *   bounded only by MAX_CONCURRENT_STREAMS and the memory bound;
   * - no EMFILE backoff: after one accept that fails for want of
   *   descriptors, gRPC 1.51 never accepts on that address again (it logs
   *   "Failed accept4"); open connections keep working. Raise
   *   RLIMIT_NOFILE (chat_server does) and restart the server if it
   *   happens.
   * chat_call_peer gives "ipv4:127.0.0.1:41234"-style addresses as before.
   * A certificate or key gRPC rejects (a key that does not match) makes
   * chat_server_start fail with CHAT_ERR_CANNOT_LISTEN; gRPC logs why. */
  const char *tls_cert_chain;  /* server certificate chain: set, the server
                                  speaks TLS only; needs tls_private_key */
  const char *tls_private_key; /* its private key */
  const char *tls_client_ca;   /* roots client certificates must chain to
                                  (mTLS); required by, and only with,
                                  tls_client_cert != NONE */
  int32_t tls_client_cert;     /* CHAT_CLIENT_CERT_*; default NONE */
  chat_authenticate_fn authenticate; /* optional, any mode: see above */
  void *authenticate_user_data;      /* passed to authenticate; yours */
  /* Also version 5: health checking and server reflection. Each is 0 (off, the
   * default) or 1 (on); other values are refused (CHAT_ERR_BAD_ARGUMENT).
   * Both are served from descriptors built into the library: nothing is
   * registered in protobuf's process-wide pool and no process-wide gRPC
   * setting changes, so a host that links its own chat.proto, health.proto
   * or gRPC's reflection library, or runs other gRPC servers, is
   * unaffected. */
  int32_t health;      /* 1 serves grpc.health.v1.Health (Check and Watch):
                          "" (the server) and "Chat" are SERVING, and
                          NOT_SERVING from the moment chat_server_stop (or
                          destroy) begins, grace included; open Watch
                          streams are sent the change. Other names: Check
                          fails with NOT_FOUND, Watch answers
                          SERVICE_UNKNOWN. Off: those methods are
                          UNIMPLEMENTED */
  int32_t reflection;  /* 1 serves gRPC server reflection
                          (grpc.reflection.v1alpha and v1
                          ServerReflection), so tools such as grpcurl list
                          the services (Chat, reflection, and health when
                          on) and describe Chat, ChatMessage and
                          google.protobuf.StringValue. Off: UNIMPLEMENTED */
  /* Also version 5: control (compression, limits). Each >= 0. */
  int32_t compression;        /* CHAT_COMPRESSION_*: compresses every reply
                                 (default CHAT_COMPRESSION_NONE). Messages
                                 from clients are decompressed whatever
                                 this is */
  int32_t max_streams;        /* open calls the whole server takes; a new
                                 one beyond is refused with
                                 RESOURCE_EXHAUSTED. 0 (default): no limit
                                 but max_memory_bytes */
  int32_t max_concurrent_streams; /* HTTP/2 MAX_CONCURRENT_STREAMS of each
                                 connection: a client's stream beyond waits
                                 for a free slot. 0 (default): the memory
                                 bound's (see max_memory_bytes); else the
                                 smaller of the two */
  int32_t max_connection_age_ms; /* for load balancers: a connection older
                                 than this gets GOAWAY, and its client opens
                                 a new one for its next streams. 0 = off
                                 (default) */
  int32_t max_connection_age_grace_ms; /* open calls of such a connection
                                 may finish for this long, then the
                                 connection is closed (its calls end
                                 UNAVAILABLE). 0: gRPC's default (no
                                 limit) */
  int32_t max_connection_idle_ms; /* a connection without calls for this
                                 long gets GOAWAY. 0 = off (default) */
  /* Also version 5: the room on Redis. CHAT_MODE_BROADCAST only. With both set,
   * the room is the Redis stream "room:<room_name>" at room_url
   * ("redis://HOST:PORT[/DB]"), shared by every server naming it; unset,
   * the room is in this process. A member's message is appended (XADD)
   * and comes back to the members of every server in the stream's one
   * order. While Redis cannot take a message, the sender's stream ends
   * with UNAVAILABLE ("room unavailable: ..."); servers reconnect with
   * capped backoff and resume after the last entry they delivered.
   * A client opening with metadata "x-room-replay: N" (0..1000) first gets
   * the room's last N lines, then the live ones (other values fail the
   * stream with INVALID_ARGUMENT; an in-process room ignores it).
   * chat_server_start looks for Redis once (a few seconds at most); an
   * unreachable Redis does not fail it. A malformed URL, or one of the two
   * without the other, is CHAT_ERR_BAD_ARGUMENT. Both strings are
   * borrowed during chat_server_start only. */
  const char *room_url;
  const char *room_name;
  int64_t room_max_len; /* the stream is trimmed to about this many entries
                           (XADD MAXLEN ~); also what a server that lost
                           Redis can catch up on. Default 10000. Entries
                           are numbered, so lines trimmed before a server read them (it was away from Redis,
                           or more than this far behind) end its members'
                           streams with DATA_LOSS: lost lines are never
                           passed over in silence */
} chat_server_options;

/* Fills `opts` with the defaults of `version` (pass
 * CHAT_SERVER_OPTIONS_VERSION), writing only the fields that version has (a
 * struct from an older header is never overrun). Returns
 * CHAT_ERR_BAD_ARGUMENT for NULL or an unknown version. Thread-safe. */
CHAT_API chat_code chat_server_options_init(chat_server_options *opts, uint32_t version) CHAT_NOEXCEPT;

/* Starts a server listening on `address` ("127.0.0.1:0", "[::1]:9090",
 * "0.0.0.0:9090"; port 0 picks a free port, see chat_server_port). The forms
 * accepted: "host:port" with a host name or IPv4 address, "[ipv6]:port",
 * where port is decimal digits in 0..65535; or a Unix socket, "unix:/path",
 * "unix:relative/path" or "unix-abstract:name" (chat_server_port gives 1).
 * `opts` may be NULL for all defaults (the echo server); it is read during
 * the call only. On success *out receives a server you must release with
 * chat_server_destroy.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL address or out, bad options, custom
 * mode without on_message, malformed address: no port, a port out of range
 * or not all digits, an empty host, an unbracketed IPv6 address; a TLS
 * file that cannot be read, TLS options that do not go together; nothing
 * is bound then), CHAT_ERR_CANNOT_LISTEN (a well-formed address that cannot
 * be bound: in use, unknown host, not a local address; a TLS certificate
 * or key gRPC rejects), CHAT_ERR_SYSTEM (no
 * descriptor or thread left to start the server). On error *out is set to NULL
 * and no callback ever runs.
 * Connections: the server accepts them on a thread of its own. Each takes
 * a file descriptor; when the process has none left (EMFILE), the server
 * logs once, keeps serving the connections it has, and accepts again as
 * soon as descriptors are free (retrying every 20 ms to 1 s); clients that
 * connect meanwhile wait in the listen backlog. Raising the soft
 * RLIMIT_NOFILE avoids the wait (the example servers raise it to the hard
 * limit). A connection whose client cancels more than 100 streams within a
 * second is closed (the "rapid reset" flood, CVE-2023-44487, which gRPC
 * 1.51 does not guard against), and the server logs it.
 * Thread-safe. */
CHAT_API chat_code chat_server_start(const char *address, const chat_server_options *opts,
                                     chat_server **out) CHAT_NOEXCEPT;

/* The port the server listens on, or -1 for NULL. Thread-safe. */
CHAT_API int32_t chat_server_port(const chat_server *server) CHAT_NOEXCEPT;

/* Stops the server: refuses new calls at once (UNAVAILABLE), lets open calls
 * finish by themselves for up to `grace_ms`, then ends the rest with
 * UNAVAILABLE and closes every connection.
 * Returns when every call has ended and every callback has returned; that is
 * bounded by the grace period, plus up to a second for the statuses of cut
 * calls to be written, plus the time your callbacks take. `*cut`
 * (optional, may be NULL) receives how many calls were cut at the deadline:
 * calls still open then. A call you completed or failed whose last replies
 * and status were still on their way at the deadline is ended too (its
 * client may see UNAVAILABLE) but not counted; give a grace period to let
 * such calls drain.
 * Stopping again returns CHAT_OK with *cut = 0.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL server, grace_ms < 0), CHAT_ERR_BUSY
 * (called from one of this server's callbacks).
 * Thread-safe; concurrent stops wait for each other. */
CHAT_API chat_code chat_server_stop(chat_server *server, int64_t grace_ms, int32_t *cut);

/* Stops the server with no grace (if still running) and frees it. When it
 * returns, no callback of this server is running or will run again, so
 * user_data may be freed. chat_call handles you still hold a reference to
 * stay valid (every call on them returns CHAT_ERR_CLOSED).
 * Returns CHAT_OK (also for NULL), or CHAT_ERR_BUSY when called from one of
 * this server's callbacks (nothing is freed then).
 * Not thread-safe with other calls on the same server. */
CHAT_API chat_code chat_server_destroy(chat_server *server) CHAT_NOEXCEPT;

/* --- Calls (server-side streams). Every chat_call_* function is thread-safe
 * and may be called from callbacks and from any thread of yours. --- */

/* The call's id: unique within its server, counting from 1 in order of
 * arrival. 0 for NULL. */
CHAT_API uint64_t chat_call_id(const chat_call *call) CHAT_NOEXCEPT;

/* The client's address ("ipv4:127.0.0.1:41234"). Borrowed, valid as long as
 * `call` is; "" for NULL. */
CHAT_API const char *chat_call_peer(const chat_call *call) CHAT_NOEXCEPT;

/* Looks up the first value the client sent for metadata `key` (lower-case).
 * *value (borrowed, valid as long as `call` is) and *len receive it.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL argument), CHAT_ERR_MISSING (the client
 * sent no such key). */
CHAT_API chat_code chat_call_metadata(const chat_call *call, const char *key,
                                      const char **value, size_t *len) CHAT_NOEXCEPT;

/* The number of metadata entries the client sent (keys lower-case; a key
 * sent several times counts once per value). Errors: CHAT_ERR_BAD_ARGUMENT. */
CHAT_API chat_code chat_call_metadata_count(const chat_call *call, size_t *count) CHAT_NOEXCEPT;

/* Entry `index` (0 <= index < count), in key order: *key / *key_len and
 * *value / *value_len, borrowed, valid as long as `call` is. Values of keys
 * ending in "-bin" are the decoded bytes and may contain NUL.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL argument, index out of range). */
CHAT_API chat_code chat_call_metadata_at(const chat_call *call, size_t index, const char **key,
                                         size_t *key_len, const char **value, size_t *value_len) CHAT_NOEXCEPT;

/* The subject of the certificate the client presented to a TLS server that
 * asked for one (mTLS), as gRPC prints it ("CN=alice,O=Example"); "" when
 * there was none, and for NULL. Borrowed, valid as long as `call` is. */
CHAT_API const char *chat_call_peer_subject(const chat_call *call) CHAT_NOEXCEPT;

/* The number of subject alternative names (DNS names, IP addresses, email
 * addresses, URIs) of the client's certificate; 0 without one.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL argument). */
CHAT_API chat_code chat_call_peer_san_count(const chat_call *call, size_t *count) CHAT_NOEXCEPT;

/* SAN `index` (0 <= index < count) as text ("localhost", "127.0.0.1");
 * *san is borrowed, valid as long as `call` is.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL argument, index out of range). */
CHAT_API chat_code chat_call_peer_san(const chat_call *call, size_t index, const char **san) CHAT_NOEXCEPT;

/* Inside the server's authenticate callback only: admits the call as
 * `principal` (UTF-8, copied), which chat_call_principal then returns for
 * the call's whole life. The last value set before CHAT_OK counts.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL, invalid UTF-8), CHAT_ERR_BAD_STATE
 * (not the handle given to a running authenticate). */
CHAT_API chat_code chat_call_set_principal(chat_call *call, const char *principal) CHAT_NOEXCEPT;

/* What the authenticator admitted the call as; "" when it set none or the
 * server has no authenticator, and for NULL. Borrowed, valid as long as
 * `call` is. */
CHAT_API const char *chat_call_principal(const chat_call *call) CHAT_NOEXCEPT;

/* Queues one reply (a google.protobuf.StringValue) on the call. Replies are
 * written in the order queued, at most send_queue_limit waiting per call.
 * When the queue is full: timeout_ms == 0 returns CHAT_ERR_WOULD_BLOCK at
 * once; > 0 waits up to that long, then CHAT_ERR_TIMEOUT; < 0 waits until
 * there is room or the call ends. A waiting sender goes on once the queue
 * is half empty (one wake-up per half queue, not one per reply written),
 * or, with a timeout, when the timeout ends and a slot is free by then.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL, invalid UTF-8), CHAT_ERR_TOO_LARGE,
 * CHAT_ERR_WOULD_BLOCK, CHAT_ERR_TIMEOUT, CHAT_ERR_CLOSED (the call was
 * completed, failed or has ended). On error nothing was queued. */
CHAT_API chat_code chat_call_send(chat_call *call, const char *text, size_t len,
                                  int64_t timeout_ms);

/* Ends the call with OK once the queued replies are written. Idempotent.
 * Errors: CHAT_ERR_BAD_ARGUMENT, CHAT_ERR_CLOSED (it already ended with an
 * error or was cancelled). Never blocks. */
CHAT_API chat_code chat_call_complete(chat_call *call) CHAT_NOEXCEPT;

/* Ends the call with `code` (a gRPC code, 1..16) and `details` (UTF-8) right
 * after the reply being written; replies still queued are discarded. A
 * reply being written to a client that does not read may never complete:
 * if it is still in flight 200 ms later, the stream is reset (the client
 * sees CANCELLED; on_close / CLOSE report `code`), so the call ends instead
 * of waiting for a deadline. A client reading too slowly to take one reply
 * in 200 ms is reset the same way.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL, code outside 1..16, invalid UTF-8),
 * CHAT_ERR_CLOSED (already completed, failed or ended). Never blocks. */
CHAT_API chat_code chat_call_fail(chat_call *call, chat_code code, const char *details,
                                  size_t details_len) CHAT_NOEXCEPT;

/* Takes a reference: `call` stays a valid handle until the matching
 * chat_call_unref, even after on_close and after chat_server_destroy. Take it
 * while the handle is valid (inside a callback, or while you hold another
 * reference). Errors: CHAT_ERR_BAD_ARGUMENT for NULL. */
CHAT_API chat_code chat_call_ref(chat_call *call) CHAT_NOEXCEPT;

/* Drops a reference taken with chat_call_ref; the last one frees the handle.
 * NULL is a no-op. */
CHAT_API void chat_call_unref(chat_call *call) CHAT_NOEXCEPT;

/* Attaches a pointer of yours to the call (NULL clears it); event-queue
 * hosts get it back in every later chat_event.user_data of the call.
 * Errors: CHAT_ERR_BAD_ARGUMENT for NULL. Thread-safe. */
CHAT_API chat_code chat_call_set_user_data(chat_call *call, void *user_data) CHAT_NOEXCEPT;

/* What chat_call_set_user_data set; NULL before, and for NULL. Thread-safe. */
CHAT_API void *chat_call_user_data(const chat_call *call) CHAT_NOEXCEPT;

/* On a server with hold_until_consumed: you are done with the `count`
 * oldest MESSAGEs of this call that were drained and not yet reported;
 * their room in the call's window goes back (reading resumes). 0 is a
 * no-op. Errors: CHAT_ERR_BAD_ARGUMENT (NULL, count larger than the
 * messages held), CHAT_ERR_BAD_STATE (the server does not hold messages).
 * Thread-safe; valid also after the call ended. */
CHAT_API chat_code chat_call_consumed(chat_call *call, size_t count) CHAT_NOEXCEPT;

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */


/* Version 2 added the byte budgets and keepalive, version 3 TLS, bearer
 * tokens and compression; the library reads only the fields of
 * opts->version. The byte budgets work like the server's. */
#define CHAT_CLIENT_OPTIONS_VERSION 3

typedef struct chat_client_options {
  uint32_t version;          /* CHAT_CLIENT_OPTIONS_VERSION */
  int32_t max_message_bytes; /* per message, both directions; default 4 MiB */
  int32_t send_queue_limit;  /* messages queued per stream; default 1024 */
  int32_t recv_queue_limit;  /* replies buffered per stream before reading
                                pauses (flow control); default 1024 */
  /* Version 2. */
  int64_t send_queue_bytes;  /* bytes of messages queued per stream; default 8 MiB */
  int64_t recv_queue_bytes;  /* bytes of replies buffered per stream before
                                reading pauses; default 8 MiB */
  int32_t keepalive_ms;      /* HTTP/2 pings while streams are open, so a dead
                                or frozen server ends them (UNAVAILABLE);
                                0 = off (default). Servers refuse pings more
                                often than they allow: libchat servers allow
                                one every 1000 ms, gRPC's default is 5 min */
  int32_t keepalive_timeout_ms; /* a ping unanswered this long ends the
                                   connection; default 10000 */
  /* Version 3: TLS and bearer tokens. The connection uses TLS when the
   * target is "https://host:port", when `tls` is nonzero, or when any tls_*
   * field is set (an "http://" target then is CHAT_ERR_BAD_ARGUMENT).
   * Certificates and keys are PEM text or a PEM file's path, as the
   * server's (read during chat_client_create). All borrowed during the
   * call only. */
  int32_t tls;                 /* nonzero: TLS for any target form */
  const char *tls_root_certs;  /* roots the server's certificate must chain
                                  to; NULL: gRPC's default, which is the
                                  file $GRPC_DEFAULT_SSL_ROOTS_FILE_PATH if
                                  set, else the system's bundle (Debian:
                                  /etc/ssl/certs/ca-certificates.crt) */
  const char *tls_cert_chain;  /* client certificate (mTLS), with tls_private_key */
  const char *tls_private_key;
  const char *tls_server_name; /* name the server's certificate must carry
                                  instead of the target's host */
  const char *token;           /* bearer token sent on every stream as
                                  "authorization: Bearer <token>" (printable
                                  ASCII, no spaces, at most 4096 bytes);
                                  chat_stream_options.token overrides it.
                                  Over plaintext to a target that is not
                                  loopback (localhost, 127.0.0.0/8, ::1,
                                  unix:) it is refused with
                                  CHAT_ERR_BAD_ARGUMENT unless... */
  int32_t allow_insecure_token; /* ...this is nonzero; default 0 */
  /* Also version 3: control (compression). */
  int32_t compression;       /* CHAT_COMPRESSION_*: compresses the messages
                                of every stream (each may choose its own);
                                default CHAT_COMPRESSION_NONE */
} chat_client_options;

/* Fills `opts` with the defaults of `version`, writing only the fields that
 * version has. CHAT_ERR_BAD_ARGUMENT for NULL or an unknown version.
 * Thread-safe. */
CHAT_API chat_code chat_client_options_init(chat_client_options *opts, uint32_t version) CHAT_NOEXCEPT;

/* Creates a client for `target`: "host:port" or "[ipv6]:port", the same
 * behind "http://" (the Ballerina URL form; trailing '/'s are ignored), or a
 * gRPC target: "dns:///host:port", "ipv4:127.0.0.1:9090[,...]",
 * "ipv6:[::1]:9090[,...]", "unix:/path", "unix-abstract:name". Every port
 * given must be decimal digits in 1..65535, and the host:port forms need one.
 * It connects lazily, on the first stream, with one HTTP/2 connection per
 * client. `opts` may be NULL.
 * On success *out receives a client to release with chat_client_destroy.
 * "https://host:port" is the same over TLS (see chat_client_options.tls).
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL, empty or malformed target:
 * missing or bad port, unknown scheme; bad options; a certificate file that
 * cannot be read; a token over plaintext, see chat_client_options.token).
 * A server whose certificate does not verify is not an error here: streams
 * end with CHAT_UNAVAILABLE. An unreachable server
 * is not an error here: the stream ends with CHAT_UNAVAILABLE.
 * Thread-safe. */
CHAT_API chat_code chat_client_create(const char *target, const chat_client_options *opts,
                                      chat_client **out) CHAT_NOEXCEPT;

/* Frees the client. Streams opened from it stay usable and must still be
 * destroyed each with chat_stream_destroy. If the client's connection
 * attempt is still in progress, waits for it to finish (up to 5 s), so
 * that once the client and its streams are destroyed its connection is
 * closed too (gRPC would otherwise leave it open). NULL is a no-op.
 * Not thread-safe with other calls on the same client. */
CHAT_API void chat_client_destroy(chat_client *client) CHAT_NOEXCEPT;

/* One metadata entry sent with a stream. Keys: lower-case letters, digits,
 * '-', '_', '.', not starting with "grpc-". Values: printable ASCII, or any
 * bytes when the key ends in "-bin" (a value runs up to its NUL unless
 * chat_stream_options.metadata_value_lens gives its length). */
typedef struct chat_metadata {
  const char *key;
  const char *value;
} chat_metadata;

/* Version 2 added metadata_value_lens, version 3 the event queue, version
 * 4 the bearer token and compression. A program built against an older
 * version keeps working: the library reads only the fields of
 * opts->version. */
#define CHAT_STREAM_OPTIONS_VERSION 4

typedef struct chat_stream_options {
  uint32_t version;               /* CHAT_STREAM_OPTIONS_VERSION */
  int64_t deadline_ms;            /* RPC deadline from now; < 0 none (default) */
  const chat_metadata *metadata;  /* read during chat_client_open only */
  size_t metadata_count;
  int32_t wait_for_ready;         /* nonzero: wait for the server to be
                                     reachable instead of failing at once
                                     with UNAVAILABLE; default 0. libchat
                                     turns gRPC's retries off, transparent
                                     ones too: a stream started just as its
                                     connection closes (GOAWAY) fails
                                     UNAVAILABLE even so; open it again */
  /* Version 2. NULL (default): every value is a NUL-terminated string. Else
   * metadata_count lengths: metadata[i].value is metadata_value_lens[i]
   * bytes, which may include NULs in "-bin" values. Read during
   * chat_client_open only. */
  const size_t *metadata_value_lens;
  /* Version 3. */
  chat_queue *queue;  /* optional: deliver this stream's replies, its end
                         and WRITABLE to this queue (see "Event queue");
                         chat_stream_recv and _recv_batch then return
                         CHAT_ERR_BAD_STATE. Borrowed: the queue must
                         outlive the stream */
  void *user_data;    /* yours: handed back in each of its events */
  int32_t hold_until_consumed; /* with queue: nonzero keeps each drained
                                  REPLY counting against recv_queue_limit /
                                  recv_queue_bytes until chat_stream_consumed
                                  reports it done (see the server's). Default 0 */
  /* Version 4: authentication. */
  const char *token;  /* bearer token for this stream instead of the
                         client's (chat_client_options.token, same rules);
                         NULL or "": the client's. Read during
                         chat_client_open only */
  /* Also version 4: control (compression). */
  int32_t compression; /* CHAT_COMPRESSION_* for this stream's messages, or
                          -1 (the default) for the client's */
} chat_stream_options;

/* Fills `opts` with the defaults of `version`, writing only the fields that
 * version has (1 to 4; a struct from an older header is never overrun).
 * CHAT_ERR_BAD_ARGUMENT for NULL or an unknown version. Thread-safe. */
CHAT_API chat_code chat_stream_options_init(chat_stream_options *opts, uint32_t version) CHAT_NOEXCEPT;

/* Opens a stream. It never blocks: connection failures show up as the
 * stream's final status (UNAVAILABLE) through chat_stream_recv or
 * chat_stream_status. `opts` may be NULL. On success *out receives a stream
 * to release with chat_stream_destroy.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL, bad metadata, a bad token or one
 * refused over plaintext, a token together with "authorization" metadata).
 * A server that refuses the token ends the stream with CHAT_UNAUTHENTICATED
 * or CHAT_PERMISSION_DENIED and its message. Thread-safe. */
CHAT_API chat_code chat_client_open(chat_client *client, const chat_stream_options *opts,
                                    chat_stream **out) CHAT_NOEXCEPT;

/* Queues one ChatMessage{name, message}. Messages are written in the order
 * queued; reading replies is independent of sending. When the send queue is
 * full: timeout_ms == 0 returns CHAT_ERR_WOULD_BLOCK; > 0 waits up to that
 * long (CHAT_ERR_TIMEOUT); < 0 waits until there is room or the stream ends
 * (chat_stream_cancel from another thread ends the wait). As with
 * chat_call_send, a waiting sender goes on once the queue is half empty, or
 * when its timeout ends with a slot free.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL, invalid UTF-8), CHAT_ERR_TOO_LARGE,
 * CHAT_ERR_WOULD_BLOCK, CHAT_ERR_TIMEOUT, CHAT_ERR_CLOSED (after
 * chat_stream_complete or chat_stream_cancel, or the server has ended the
 * call: chat_stream_recv then returns its final status, and chat_stream_wait
 * waits for it, which may come a moment after this code). On error nothing
 * was queued.
 * Thread-safe: several threads may send on one stream. */
CHAT_API chat_code chat_stream_send(chat_stream *stream, const char *name, size_t name_len,
                                    const char *message, size_t message_len,
                                    int64_t timeout_ms);

/* Half-closes: tells the server no more messages follow, once the queued
 * ones are written. Replies keep arriving. Idempotent; never blocks.
 * Errors: CHAT_ERR_BAD_ARGUMENT, CHAT_ERR_CLOSED (cancelled). Thread-safe. */
CHAT_API chat_code chat_stream_complete(chat_stream *stream) CHAT_NOEXCEPT;

/* Cancels the call: the server sees a cancellation, queued messages are
 * dropped and the final status becomes CANCELLED. Replies received before
 * remain readable. Wakes every thread blocked on the stream. Idempotent;
 * never blocks. Errors: CHAT_ERR_BAD_ARGUMENT, CHAT_ERR_CLOSED (the call had
 * already ended). Thread-safe. */
CHAT_API chat_code chat_stream_cancel(chat_stream *stream) CHAT_NOEXCEPT;

/* Takes the next reply. On CHAT_OK, *text and *len receive it, borrowed
 * until the next chat_stream_recv / chat_stream_recv_batch on this stream or
 * chat_stream_destroy. Waits up to timeout_ms for one (< 0: until a reply or
 * the end; chat_stream_cancel ends the wait).
 * Returns CHAT_OK; CHAT_END_OF_STREAM once the server completed with OK and every
 * reply was taken; the final status code (CHAT_DEADLINE_EXCEEDED,
 * CHAT_CANCELLED, CHAT_UNAVAILABLE...) if the call ended otherwise, after the
 * replies received before it; CHAT_ERR_TIMEOUT; CHAT_ERR_BAD_ARGUMENT.
 * One receiving thread at a time per stream; safe alongside sends. */
CHAT_API chat_code chat_stream_recv(chat_stream *stream, int64_t timeout_ms, const char **text,
                                    size_t *len);

/* One reply as handed out by chat_stream_recv_batch. */
typedef struct chat_text {
  const char *data;
  size_t len;
} chat_text;

/* Like chat_stream_recv, but takes up to `max` replies that are already
 * there (waiting only for the first) into out[0..*count). The texts are
 * borrowed until the next receive on this stream or chat_stream_destroy.
 * Fewer lock round-trips per reply: use it for high message rates. */
CHAT_API chat_code chat_stream_recv_batch(chat_stream *stream, int64_t timeout_ms,
                                          chat_text *out, size_t max, size_t *count);

/* On a stream with hold_until_consumed: you are done with its `count`
 * oldest drained REPLYs not yet reported; their room goes back. As
 * chat_call_consumed. Thread-safe. */
CHAT_API chat_code chat_stream_consumed(chat_stream *stream, size_t count) CHAT_NOEXCEPT;

/* Waits until the call has ended (final status known), up to timeout_ms
 * (< 0: no limit; chat_stream_cancel ends it). Replies not yet taken keep
 * the call from ending when more are still on the wire: keep receiving, or
 * cancel. Returns CHAT_OK when ended, CHAT_ERR_TIMEOUT, CHAT_ERR_BAD_ARGUMENT.
 * Thread-safe. */
CHAT_API chat_code chat_stream_wait(chat_stream *stream, int64_t timeout_ms);

/* The call's final status: *code (the gRPC code, CHAT_OK for a clean end) and
 * optionally *details / *details_len (borrowed until chat_stream_destroy;
 * either may be NULL). Never blocks.
 * Errors: CHAT_ERR_BAD_ARGUMENT, CHAT_ERR_BAD_STATE (still open).
 * Thread-safe. */
CHAT_API chat_code chat_stream_status(chat_stream *stream, chat_code *code, const char **details,
                                      size_t *details_len) CHAT_NOEXCEPT;

/* Cancels the call if it is still open, waits until the library is done with
 * it (bounded: a cancelled call ends promptly) and frees the handle. NULL is
 * a no-op. Not thread-safe with other calls on the same stream. */
CHAT_API void chat_stream_destroy(chat_stream *stream) CHAT_NOEXCEPT;

/* ------------------------------------------------------------------------ */
/* Control (since 1.1): stats, server metadata, deadlines                   */
/* ------------------------------------------------------------------------ */

/* --- Stats --- */

/* Counters of a server or a client, filled by chat_server_stats and
 * chat_client_stats. Versioned like the options structs: set `version`
 * (CHAT_STATS_VERSION, or an older one) before the call; the library writes
 * only the fields that version has, so later versions may add counters.
 * Message bytes are those of the encoded protobuf messages, before any
 * compression and without gRPC's 5-byte frame header. Each counter is exact
 * on its own; a snapshot is not taken at one instant (a stream may show in
 * streams_total a moment before streams_open). */
#define CHAT_STATS_VERSION 1

typedef struct chat_stats {
  uint32_t version;         /* CHAT_STATS_VERSION; set by the caller */
  uint64_t streams_open;    /* calls admitted / streams opened, not yet ended */
  uint64_t streams_total;   /* ever admitted / opened */
  uint64_t streams_refused; /* server: new calls refused (RESOURCE_EXHAUSTED
                               over the memory bound or max_streams,
                               UNAVAILABLE while stopping); client: streams
                               that ended RESOURCE_EXHAUSTED or UNAVAILABLE
                               before any reply */
  uint64_t streams_cut;     /* server: calls it cut (a stop's deadline, the
                               memory bound, a room's slow reader); client:
                               other streams that ended with an error
                               (not counting its own cancels) */
  uint64_t messages_in;     /* server: messages received; client: replies */
  uint64_t messages_out;    /* server: replies written; client: messages written */
  uint64_t bytes_in;
  uint64_t bytes_out;
} chat_stats;

/* Fills *stats (up to stats->version) with the server's counters since it
 * started. Valid after chat_server_stop, until chat_server_destroy.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL or not a server handle, NULL stats,
 * unknown stats->version). Thread-safe; never blocks; cheap. */
CHAT_API chat_code chat_server_stats(const chat_server *server, chat_stats *stats) CHAT_NOEXCEPT;

/* Fills *stats (up to stats->version) with the counters of every stream
 * `client` opened, since it was created (streams still open after
 * chat_client_destroy count on, unseen). Errors as chat_server_stats.
 * Thread-safe; never blocks. */
CHAT_API chat_code chat_client_stats(const chat_client *client, chat_stats *stats) CHAT_NOEXCEPT;

/* --- Server metadata --- */

/* Adds one entry to the metadata the server sends the client. Initial
 * metadata goes out with the call's first reply (or with its status when
 * there is none), so add it before the first chat_call_send of the call
 * (in on_open, or on its OPEN event); trailing metadata goes out with the
 * status, so add it before chat_call_complete / chat_call_fail. Entries
 * accumulate; a key may repeat. `key` is a NUL-terminated string of
 * lower-case letters, digits, '-', '_', '.', not starting with "grpc-";
 * `value` is value_len bytes of printable ASCII, or any bytes when the key
 * ends in "-bin". Both are copied. Echo and broadcast servers never hand
 * out calls, so this is for CHAT_MODE_CUSTOM.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL call or key, NULL value with
 * value_len > 0, a bad key or value), CHAT_ERR_BAD_STATE (too late: a
 * reply was sent, for initial metadata, or the call was completed or
 * failed), CHAT_ERR_CLOSED (the call has ended: cancelled, cut).
 * Thread-safe; never blocks. */
CHAT_API chat_code chat_call_add_initial_metadata(chat_call *call, const char *key,
                                                  const char *value, size_t value_len) CHAT_NOEXCEPT;
CHAT_API chat_code chat_call_add_trailing_metadata(chat_call *call, const char *key,
                                                   const char *value, size_t value_len) CHAT_NOEXCEPT;

/* --- Deadlines --- */

/* *ms_left receives the milliseconds left before the call's deadline (0
 * once it has passed), or -1 when the call has none. The deadline is the
 * client's gRPC deadline (grpc-timeout) or, when it sent none, the time in
 * Ballerina's `deadline` header: metadata key "deadline" holding an RFC
 * 3339 timestamp ("2024-05-01T12:00:00.250Z", or with an offset such as
 * "+02:00"). The server enforces the header: at that time the call ends
 * with DEADLINE_EXCEEDED (on_close / CLOSE report it; the client reads it
 * as the status), as gRPC ends a call whose grpc-timeout runs out. A call
 * whose header is not such a timestamp is refused with INVALID_ARGUMENT.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL call or ms_left). Thread-safe; never
 * blocks; valid also after the call ended. */
CHAT_API chat_code chat_call_time_left(const chat_call *call, int64_t *ms_left) CHAT_NOEXCEPT;

/* Which metadata of the server chat_stream_metadata_* read. */
#define CHAT_METADATA_INITIAL 0  /* arrives with the first reply, or with the end */
#define CHAT_METADATA_TRAILING 1 /* arrives with the final status */

/* The number of entries of the server's `which` metadata (CHAT_METADATA_*)
 * on `stream`. Initial metadata is there once the first reply has been
 * received (chat_stream_recv returned it, or its REPLY event came) or the
 * stream has ended; trailing metadata once the stream has ended (see
 * chat_stream_wait). Errors: CHAT_ERR_BAD_ARGUMENT (NULL, unknown which),
 * CHAT_ERR_BAD_STATE (not there yet). Thread-safe; never blocks. */
CHAT_API chat_code chat_stream_metadata_count(chat_stream *stream, int32_t which,
                                              size_t *count) CHAT_NOEXCEPT;

/* Entry `index` (0 <= index < count) of the server's `which` metadata, in
 * key order (keys lower-case): *key / *key_len and *value / *value_len,
 * borrowed until chat_stream_destroy. Values of "-bin" keys are the decoded
 * bytes and may contain NUL. Errors: as chat_stream_metadata_count, and
 * CHAT_ERR_BAD_ARGUMENT for an index out of range or a NULL out pointer.
 * Thread-safe; never blocks. */
CHAT_API chat_code chat_stream_metadata_at(chat_stream *stream, int32_t which, size_t index,
                                           const char **key, size_t *key_len, const char **value,
                                           size_t *value_len) CHAT_NOEXCEPT;

/* ------------------------------------------------------------------------ */
/* Rooms (libchat 1.2)                                                      */
/* ------------------------------------------------------------------------ */

/* A room gives all its members the same lines in one order: what a
 * broadcast server does for all its streams, in the hands of a custom
 * server's host, which decides who joins and what is published (so it can
 * authenticate, filter or rewrite and still share one room). A room lives in
 * this process, or in the Redis stream "room:<name>" shared by every room
 * opened on the same URL and name, in any process on any machine: each
 * line published is appended (XADD) and every room follows the stream
 * (XREAD) and hands each line to its members in the stream's one order.
 * A room on Redis reconnects with capped backoff after losing Redis and
 * resumes after the last line it delivered. Members are server calls of
 * CHAT_MODE_CUSTOM servers (any number of servers); each line reaches them
 * as a reply. The room holds a reference to each member's call until the
 * member leaves: chat_room_leave, or its call ended (it is then dropped at
 * the room's next line, or on a later join). */
typedef struct chat_room chat_room;

/* Sees every line of the room, in the room's one order, right after the
 * members' send queues took it: `line` (len bytes, NUL-terminated,
 * borrowed for the call) is "<name>: <message>" or a notice's text. Runs on
 * the thread that delivers: for a room in this process the publisher's,
 * inside chat_room_publish; for one on Redis the room's own reader thread.
 * It must be quick (it holds up the room). It must not publish to, join or
 * destroy this room (those return CHAT_ERR_BUSY there); it may close it. It
 * may publish to another room, but two rooms whose on_line publish into
 * each other can deadlock. Anything else is allowed. */
typedef void (*chat_on_line_fn)(chat_room *room, const char *line, size_t len, void *user_data);

#define CHAT_ROOM_OPTIONS_VERSION 1

typedef struct chat_room_options {
  uint32_t version;        /* CHAT_ROOM_OPTIONS_VERSION */
  const char *url;         /* "redis://HOST:PORT[/DB]"; NULL or "" (default):
                              the room is in this process. Borrowed during
                              chat_room_open */
  const char *name;        /* the room's name; required with url */
  int64_t max_len;         /* Redis: the stream is trimmed to about this
                              many lines (XADD MAXLEN ~), which is also what
                              a room that lost Redis can catch up on.
                              Default 10000. Lines trimmed before this room
                              read them (away from Redis, or further behind
                              than this) end its members' calls with
                              DATA_LOSS, never passed over in silence */
  chat_on_line_fn on_line; /* optional, see chat_on_line_fn */
  void *user_data;         /* handed to on_line */
} chat_room_options;

/* Fills `opts` with the defaults of `version` (1). CHAT_ERR_BAD_ARGUMENT for
 * NULL or an unknown version. Thread-safe. */
CHAT_API chat_code chat_room_options_init(chat_room_options *opts, uint32_t version) CHAT_NOEXCEPT;

/* Opens a room. A room on Redis looks for Redis once (a few seconds at
 * most) and opens even when Redis is unreachable: it keeps trying, and
 * publishing answers CHAT_UNAVAILABLE meanwhile. On success *out receives
 * the room, to release with chat_room_destroy.
 * Errors: CHAT_ERR_BAD_ARGUMENT (NULL opts or out, an unknown version, a
 * malformed URL, a URL without a name, max_len <= 0), CHAT_ERR_SYSTEM (no
 * thread). Thread-safe. */
CHAT_API chat_code chat_room_open(const chat_room_options *opts, chat_room **out) CHAT_NOEXCEPT;

/* Sends "<name>: <message>" to the room (both UTF-8, copied). In this
 * process the line reaches every member before this returns; on Redis,
 * CHAT_OK means Redis acknowledged it, and the members of every room on the
 * stream get it from their readers soon after. A member whose send queue is
 * full is too slow for the room: its call is cut with RESOURCE_EXHAUSTED
 * (its client may read CANCELLED if a write was stuck) and leaves.
 * Errors: CHAT_ERR_BAD_ARGUMENT (invalid handle, NULL text with a length,
 * invalid UTF-8), CHAT_UNAVAILABLE (Redis cannot take it now: the details
 * say why; if only the acknowledgement was lost the line may still be
 * delivered), CHAT_ERR_CLOSED (the room was closed), CHAT_ERR_BUSY (from
 * this room's on_line). Thread-safe. On Redis it waits for one round trip,
 * at most 2 s (a Redis that stopped answering), and a room whose Redis
 * connection failed answers at once until its backoff lets it try again. */
CHAT_API chat_code chat_room_publish(chat_room *room, const char *name, size_t name_len,
                                     const char *message, size_t message_len) CHAT_NOEXCEPT;

/* Sends `text` alone ("Ann left the chat"). As chat_room_publish. */
CHAT_API chat_code chat_room_notice(chat_room *room, const char *text, size_t len) CHAT_NOEXCEPT;

/* `call` joins the room: every line delivered from now on is sent to it as
 * a reply, and, on Redis, the room's last `replay` lines first (0..1000;
 * none missed or given twice between them; a room in this process keeps no
 * history and gives none; more than the call's send queue holds are not
 * sent). Call it from on_open, on the OPEN event, or any time later; the
 * call's own chat_call_send replies interleave with the room's lines.
 * Errors: CHAT_ERR_BAD_ARGUMENT (invalid handles, replay > 1000),
 * CHAT_ERR_CLOSED (the call has ended, or the room was closed),
 * CHAT_ERR_BAD_STATE (a member already, or the call is still in the
 * server's authenticate: it joins once admitted), CHAT_UNAVAILABLE (Redis
 * cannot give the replay now), CHAT_ERR_BUSY (from this room's on_line).
 * Thread-safe; on Redis with a replay it waits for one round trip (at most
 * 2 s). */
CHAT_API chat_code chat_room_join(chat_room *room, chat_call *call, uint32_t replay) CHAT_NOEXCEPT;

/* `call` leaves the room; it stays open. A call whose stream ended leaves
 * by itself. Errors: CHAT_ERR_BAD_ARGUMENT (invalid handles),
 * CHAT_ERR_MISSING (not a member). Thread-safe; never blocks. */
CHAT_API chat_code chat_room_leave(chat_room *room, chat_call *call) CHAT_NOEXCEPT;

/* *count receives the number of members whose calls are open.
 * Errors: CHAT_ERR_BAD_ARGUMENT. Thread-safe; never blocks. */
CHAT_API chat_code chat_room_members(const chat_room *room, size_t *count) CHAT_NOEXCEPT;

/* Stops the room: no line is delivered once this returns (a delivery
 * running on another thread finishes first; the reader of a room on Redis
 * ends, which may take up to a second while it is connecting), the members
 * leave (their calls stay open), and every later publish, notice or join
 * returns CHAT_ERR_CLOSED. The handle stays valid until chat_room_destroy.
 * Idempotent. From the room's own on_line it stops delivery at once and
 * the reader ends at chat_room_destroy.
 * Errors: CHAT_ERR_BAD_ARGUMENT (invalid handle). Thread-safe, also with the
 * room's other calls running (a publish on Redis may take up to its 2 s). */
CHAT_API chat_code chat_room_close(chat_room *room) CHAT_NOEXCEPT;

/* The last error on this room handle, as chat_server_error. */
CHAT_API size_t chat_room_error(const chat_room *room, char *buf, size_t size) CHAT_NOEXCEPT;

/* Closes the room (chat_room_close) and frees it; the members' calls stay
 * open. NULL is a no-op. Errors: CHAT_ERR_BAD_ARGUMENT (invalid handle),
 * CHAT_ERR_BUSY (from this room's on_line: the room is left as it was).
 * Not thread-safe with other calls on the same room: a host whose threads
 * may still be publishing calls chat_room_close, and destroys once they
 * have returned. */
CHAT_API chat_code chat_room_destroy(chat_room *room) CHAT_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CHAT_H */
