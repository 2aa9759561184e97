'use strict';
// The C ABI (capi/include/libchat/chat.h) through koffi: finding libchat.so.1,
// checking its ABI, the struct layouts and the functions this package uses.
// Pointers are BigInts (koffi 3); handles never leave this package's objects.

const fs = require('node:fs');
const path = require('node:path');
const koffi = require('koffi');

const ABI_VERSION = 1;

// Where libchat.so.1 is taken from, in order: $CHAT_LIBRARY; the build tree
// of the repository this package sits in (bindings/node -> ../../build*/capi);
// the system loader's "libchat.so.1" (ld.so.conf, LD_LIBRARY_PATH).
function candidates() {
  const out = [];
  if (process.env.CHAT_LIBRARY) return [{ path: process.env.CHAT_LIBRARY, from: 'CHAT_LIBRARY' }];
  const root = path.resolve(__dirname, '..', '..', '..');
  for (const dir of ['build', 'build-release']) {
    const p = path.join(root, dir, 'capi', 'libchat.so.1');
    if (fs.existsSync(p)) out.push({ path: p, from: 'the repository build tree' });
  }
  out.push({ path: 'libchat.so.1', from: 'the system loader' });
  return out;
}

function loadLibrary() {
  const errors = [];
  for (const c of candidates()) {
    try {
      return { lib: koffi.load(c.path), path: c.path, from: c.from };
    } catch (err) {
      errors.push(`${c.path} (${c.from}): ${err.message}`);
    }
  }
  throw new Error(`libchat: cannot load libchat.so.1; set CHAT_LIBRARY to its path. Tried:\n  ${errors.join('\n  ')}`);
}

const loaded = loadLibrary();
const lib = loaded.lib;

// Opaque handles, all passed as BigInt addresses.
koffi.opaque('chat_server');
koffi.opaque('chat_call');
koffi.opaque('chat_client');
koffi.opaque('chat_stream');
koffi.opaque('chat_queue');
koffi.opaque('chat_room');

const ServerOptions = koffi.struct('chat_server_options', {
  version: 'uint32_t',
  mode: 'int32_t',
  max_message_bytes: 'int32_t',
  send_queue_limit: 'int32_t',
  recv_window: 'int32_t',
  dispatcher_threads: 'int32_t',
  keepalive_ms: 'int32_t',
  on_open: 'void *',
  on_message: 'void *',
  on_complete: 'void *',
  on_close: 'void *',
  user_data: 'void *',
  send_queue_bytes: 'int64_t',
  recv_window_bytes: 'int64_t',
  max_memory_bytes: 'int64_t',
  keepalive_timeout_ms: 'int32_t',
  completion_queues: 'int32_t',
  queue: 'void *',
  hold_until_consumed: 'int32_t',
  // version 5: TLS and authentication (authenticate is not offered: it would
  // run JS on a transport thread). Strings are borrowed during the start only,
  // which is what koffi's per-call conversion of 'const char *' gives.
  tls_cert_chain: 'const char *',
  tls_private_key: 'const char *',
  tls_client_ca: 'const char *',
  tls_client_cert: 'int32_t',
  authenticate: 'void *',
  authenticate_user_data: 'void *',
  // version 5, too: health checking and reflection
  health: 'int32_t',
  reflection: 'int32_t',
  // version 5, too: control
  compression: 'int32_t',
  max_streams: 'int32_t',
  max_concurrent_streams: 'int32_t',
  max_connection_age_ms: 'int32_t',
  max_connection_age_grace_ms: 'int32_t',
  max_connection_idle_ms: 'int32_t',
  // version 5, too: room on Redis (broadcast mode)
  room_url: 'const char *',
  room_name: 'const char *',
  room_max_len: 'int64_t',
});

const ClientOptions = koffi.struct('chat_client_options', {
  version: 'uint32_t',
  max_message_bytes: 'int32_t',
  send_queue_limit: 'int32_t',
  recv_queue_limit: 'int32_t',
  send_queue_bytes: 'int64_t',
  recv_queue_bytes: 'int64_t',
  keepalive_ms: 'int32_t',
  keepalive_timeout_ms: 'int32_t',
  // version 3: TLS, bearer token, compression (borrowed during create only)
  tls: 'int32_t',
  tls_root_certs: 'const char *',
  tls_cert_chain: 'const char *',
  tls_private_key: 'const char *',
  tls_server_name: 'const char *',
  token: 'const char *',
  allow_insecure_token: 'int32_t',
  compression: 'int32_t',
});

const StreamOptions = koffi.struct('chat_stream_options', {
  version: 'uint32_t',
  deadline_ms: 'int64_t',
  metadata: 'void *',
  metadata_count: 'size_t',
  wait_for_ready: 'int32_t',
  metadata_value_lens: 'void *',
  queue: 'void *',
  user_data: 'void *',
  hold_until_consumed: 'int32_t',
  // version 4: per-stream bearer token and compression (-1: the client's)
  token: 'const char *',
  compression: 'int32_t',
});

const Stats = koffi.struct('chat_stats', {
  version: 'uint32_t',
  streams_open: 'uint64_t',
  streams_total: 'uint64_t',
  streams_refused: 'uint64_t',
  streams_cut: 'uint64_t',
  messages_in: 'uint64_t',
  messages_out: 'uint64_t',
  bytes_in: 'uint64_t',
  bytes_out: 'uint64_t',
});

const RoomOptions = koffi.struct('chat_room_options', {
  version: 'uint32_t',
  url: 'const char *',
  name: 'const char *',
  max_len: 'int64_t',
  on_line: 'void *',
  user_data: 'void *',
});

// chat_event, read by hand from native memory (see loop.js): 64 bytes.
const EVENT_SIZE = 64;
const EVENT = {
  type: 0, code: 4, call: 8, stream: 16, user_data: 24,
  name: 32, name_len: 40, text: 48, text_len: 56,
};

function fn(decl) {
  try {
    return lib.func(decl);
  } catch (err) {
    throw new Error(`libchat: ${loaded.path} lacks what this package needs (${decl}): ` +
                    `${err.message}; it is older than the event queue (chat.h with chat_queue_create)`);
  }
}

const C = {
  chat_version: fn('const char *chat_version(void)'),
  chat_version_number: fn('int32_t chat_version_number(void)'),
  chat_abi_version: fn('int32_t chat_abi_version(void)'),
  chat_code_name: fn('const char *chat_code_name(int code)'),
  chat_last_error: fn('const char *chat_last_error(void)'),

  chat_server_error: fn('size_t chat_server_error(chat_server *h, void *buf, size_t size)'),
  chat_call_error: fn('size_t chat_call_error(chat_call *h, void *buf, size_t size)'),
  chat_client_error: fn('size_t chat_client_error(chat_client *h, void *buf, size_t size)'),
  chat_stream_error: fn('size_t chat_stream_error(chat_stream *h, void *buf, size_t size)'),
  chat_queue_error: fn('size_t chat_queue_error(chat_queue *h, void *buf, size_t size)'),

  chat_queue_create: fn('int chat_queue_create(_Out_ chat_queue **out)'),
  chat_queue_fd: fn('int chat_queue_fd(chat_queue *q)'),
  chat_queue_drain: fn('int chat_queue_drain(chat_queue *q, int64_t timeout_ms, void *out, size_t max, void *count)'),
  chat_queue_wake: fn('int chat_queue_wake(chat_queue *q)'),
  chat_queue_destroy: fn('void chat_queue_destroy(chat_queue *q)'),

  chat_server_options_init: fn('int chat_server_options_init(_Out_ chat_server_options *opts, uint32_t version)'),
  chat_server_start: fn('int chat_server_start(const char *address, const chat_server_options *opts, _Out_ chat_server **out)'),
  chat_server_port: fn('int32_t chat_server_port(chat_server *s)'),
  chat_server_stop: fn('int chat_server_stop(chat_server *s, int64_t grace_ms, void *cut)'),
  chat_server_destroy: fn('int chat_server_destroy(chat_server *s)'),

  chat_call_id: fn('uint64_t chat_call_id(chat_call *c)'),
  chat_call_peer: fn('const char *chat_call_peer(chat_call *c)'),
  chat_call_metadata_count: fn('int chat_call_metadata_count(chat_call *c, _Out_ size_t *count)'),
  chat_call_metadata_at: fn('int chat_call_metadata_at(chat_call *c, size_t index, _Out_ void **key, _Out_ size_t *key_len, _Out_ void **value, _Out_ size_t *value_len)'),
  chat_call_send: fn('int chat_call_send(chat_call *c, const char *text, size_t len, int64_t timeout_ms)'),
  chat_call_complete: fn('int chat_call_complete(chat_call *c)'),
  chat_call_fail: fn('int chat_call_fail(chat_call *c, int code, const char *details, size_t details_len)'),
  chat_call_ref: fn('int chat_call_ref(chat_call *c)'),
  chat_call_unref: fn('void chat_call_unref(chat_call *c)'),
  chat_call_set_user_data: fn('int chat_call_set_user_data(chat_call *c, void *user_data)'),
  chat_call_consumed: fn('int chat_call_consumed(chat_call *c, size_t count)'),
  chat_call_time_left: fn('int chat_call_time_left(chat_call *c, _Out_ int64_t *ms_left)'),
  chat_call_add_initial_metadata: fn('int chat_call_add_initial_metadata(chat_call *c, const char *key, const void *value, size_t value_len)'),
  chat_call_add_trailing_metadata: fn('int chat_call_add_trailing_metadata(chat_call *c, const char *key, const void *value, size_t value_len)'),
  chat_server_stats: fn('int chat_server_stats(chat_server *s, _Inout_ chat_stats *stats)'),
  chat_client_stats: fn('int chat_client_stats(chat_client *c, _Inout_ chat_stats *stats)'),
  chat_stream_metadata_count: fn('int chat_stream_metadata_count(chat_stream *s, int32_t which, _Out_ size_t *count)'),
  chat_stream_metadata_at: fn('int chat_stream_metadata_at(chat_stream *s, int32_t which, size_t index, _Out_ void **key, _Out_ size_t *key_len, _Out_ void **value, _Out_ size_t *value_len)'),

  chat_client_options_init: fn('int chat_client_options_init(_Out_ chat_client_options *opts, uint32_t version)'),
  chat_client_create: fn('int chat_client_create(const char *target, const chat_client_options *opts, _Out_ chat_client **out)'),
  chat_client_destroy: fn('void chat_client_destroy(chat_client *c)'),
  chat_stream_options_init: fn('int chat_stream_options_init(_Out_ chat_stream_options *opts, uint32_t version)'),
  chat_client_open: fn('int chat_client_open(chat_client *c, const chat_stream_options *opts, _Out_ chat_stream **out)'),
  chat_stream_send: fn('int chat_stream_send(chat_stream *s, const char *name, size_t name_len, const char *message, size_t message_len, int64_t timeout_ms)'),
  chat_stream_complete: fn('int chat_stream_complete(chat_stream *s)'),
  chat_stream_cancel: fn('int chat_stream_cancel(chat_stream *s)'),
  chat_stream_destroy: fn('void chat_stream_destroy(chat_stream *s)'),
  chat_stream_consumed: fn('int chat_stream_consumed(chat_stream *s, size_t count)'),

  chat_room_error: fn('size_t chat_room_error(chat_room *h, void *buf, size_t size)'),
  chat_room_options_init: fn('int chat_room_options_init(_Out_ chat_room_options *opts, uint32_t version)'),
  chat_room_open: fn('int chat_room_open(const chat_room_options *opts, _Out_ chat_room **out)'),
  chat_room_publish: fn('int chat_room_publish(chat_room *r, const char *name, size_t name_len, const char *message, size_t message_len)'),
  chat_room_notice: fn('int chat_room_notice(chat_room *r, const char *text, size_t len)'),
  chat_room_join: fn('int chat_room_join(chat_room *r, chat_call *c, uint32_t replay)'),
  chat_room_leave: fn('int chat_room_leave(chat_room *r, chat_call *c)'),
  chat_room_members: fn('int chat_room_members(chat_room *r, _Out_ size_t *count)'),
  chat_room_close: fn('int chat_room_close(chat_room *r)'),
  chat_room_destroy: fn('int chat_room_destroy(chat_room *r)'),
};

const abi = C.chat_abi_version();
if (abi !== ABI_VERSION) {
  throw new Error(`libchat: ${loaded.path} has ABI version ${abi}; this package needs ${ABI_VERSION}`);
}

// libc's dup(), for the descriptor handed to net.Socket (see loop.js).
let libc = null;
function dup(fd) {
  if (libc === null) libc = { dup: koffi.load('libc.so.6').func('int dup(int fd)') };
  const out = libc.dup(fd);
  if (out < 0) throw new Error(`libchat: dup(${fd}) failed: errno ${koffi.errno()}`);
  return out;
}

// Per-handle error messages (chat_*_error), read into one reusable buffer.
let errBufSize = 1024;
let errBuf = koffi.alloc('char', errBufSize);
function handleError(getter, handle) {
  let n = Number(getter(handle, errBuf, errBufSize));
  if (n >= errBufSize) {
    koffi.free(errBuf);
    errBufSize = n + 1;
    errBuf = koffi.alloc('char', errBufSize);
    n = Number(getter(handle, errBuf, errBufSize));
    if (n >= errBufSize) n = errBufSize - 1;
  }
  return n > 0 ? koffi.decode.string(errBuf, n) : '';
}

module.exports = {
  koffi, lib, C, ServerOptions, ClientOptions, StreamOptions, RoomOptions,
  EVENT, EVENT_SIZE, dup, handleError,
  Stats, libraryPath: loaded.path, libraryFrom: loaded.from,
  SERVER_OPTIONS_VERSION: 5, CLIENT_OPTIONS_VERSION: 3, STREAM_OPTIONS_VERSION: 4, STATS_VERSION: 1,
};
