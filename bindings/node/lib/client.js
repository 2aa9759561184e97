'use strict';
// Client and Stream: drive /Chat/chat from the JS main thread. Replies,
// ends and WRITABLE come through the process's event queue (queue.js).

const {
  koffi, C, handleError, CLIENT_OPTIONS_VERSION, STREAM_OPTIONS_VERSION, STATS_VERSION,
} = require('./native');
const { Code, ChatError, codeName } = require('./errors');
const { EventType, sharedQueue, targets, newId } = require('./queue');
const {
  checkString, checkCString, checkInt, checkBool, checkChoice, COMPRESSION, readStats,
  addMetadataEntry, SendQueue, RESOLVED, utf8Length,
} = require('./util');

const METADATA_INITIAL = 0, METADATA_TRAILING = 1;

class Client {
  constructor(target, options = {}) {
    checkString(target, 'target');
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const o = {};
    C.chat_client_options_init(o, CLIENT_OPTIONS_VERSION);
    const set = (key, field, min, max) => {
      if (options[key] === undefined) return;
      o[field] = checkInt(options[key], `options.${key}`, min, max);
    };
    set('maxMessageBytes', 'max_message_bytes', 1, 2147483647);
    set('sendQueueLimit', 'send_queue_limit', 1, 2147483647);
    set('recvQueueLimit', 'recv_queue_limit', 1, 2147483647);
    set('sendQueueBytes', 'send_queue_bytes', 1, Number.MAX_SAFE_INTEGER);
    set('recvQueueBytes', 'recv_queue_bytes', 1, Number.MAX_SAFE_INTEGER);
    set('keepaliveMs', 'keepalive_ms', 0, 2147483647);
    set('keepaliveTimeoutMs', 'keepalive_timeout_ms', 1, 2147483647);
    // TLS, when asked for or when any certificate option is given (or the
    // target is https://): libchat decides, reads the PEM text or files and
    // refuses what does not go together (an http:// target with TLS, a token
    // over plaintext to a non-loopback target).
    if (options.tls !== undefined) o.tls = checkBool(options.tls, 'options.tls') ? 1 : 0;
    if (options.tlsRootCerts !== undefined && options.tlsCa !== undefined) {
      throw new TypeError('options.tlsRootCerts and options.tlsCa are the same option: give one');
    }
    const str = (key, field) => {
      if (options[key] !== undefined && options[key] !== null) o[field] = checkCString(options[key], `options.${key}`);
    };
    str(options.tlsCa !== undefined ? 'tlsCa' : 'tlsRootCerts', 'tls_root_certs');
    str('tlsCert', 'tls_cert_chain');
    str('tlsKey', 'tls_private_key');
    str('tlsServerName', 'tls_server_name');
    str('token', 'token');
    if (options.allowInsecureToken !== undefined) {
      o.allow_insecure_token = checkBool(options.allowInsecureToken, 'options.allowInsecureToken') ? 1 : 0;
    }
    if (options.compression !== undefined) o.compression = checkChoice(options.compression, 'options.compression', COMPRESSION);
    const out = [null];
    const rc = C.chat_client_create(target, o, out);
    if (rc !== 0) throw new ChatError(rc, C.chat_last_error(), `cannot create a client for "${target}"`);
    this.target = target;
    this._ptr = out[0];
    this._closing = null;
  }

  // Opens a /Chat/chat stream. options: deadlineMs (from now), metadata
  // ({key: string | Buffer | array of them}; Buffers for "-bin" keys),
  // waitForReady, token and compression (this stream's instead of the
  // client's).
  chat(options = {}) {
    if (this._ptr === null) throw new ChatError(Code.ERR_CLOSED, 'the client is closed', 'chat');
    return new Stream(this, options);
  }

  // The counters of every stream this client opened (chat_stats).
  stats() {
    if (this._ptr === null) throw new ChatError(Code.ERR_CLOSED, 'the client is closed', 'stats');
    return readStats(C.chat_client_stats, this._ptr, STATS_VERSION,
      (rc) => new ChatError(rc, handleError(C.chat_client_error, this._ptr), 'stats'));
  }

  // Frees the client (off the main thread: chat_client_destroy may wait for
  // a connection attempt). Open streams stay usable until they end.
  close() {
    if (this._closing === null) {
      const ptr = this._ptr;
      this._ptr = null;
      this._closing = new Promise((resolve) => {
        C.chat_client_destroy.async(ptr, () => resolve());
      });
    }
    return this._closing;
  }
}

// Metadata for chat_stream_options: one buffer holding every key and value
// (NUL-terminated), the chat_metadata array and the value lengths.
function encodeMetadata(metadata) {
  if (metadata === undefined || metadata === null) return null;
  if (typeof metadata !== 'object') throw new TypeError('metadata must be an object');
  const entries = [];
  for (const [key, v] of Object.entries(metadata)) {
    for (const value of Array.isArray(v) ? v : [v]) {
      let bytes;
      if (typeof value === 'string') bytes = Buffer.from(value, 'utf8');
      else if (Buffer.isBuffer(value) || value instanceof Uint8Array) bytes = Buffer.from(value);
      else throw new TypeError(`metadata["${key}"] must be a string, a Buffer or an array of them`);
      if (bytes.includes(0) && !key.endsWith('-bin')) {
        throw new TypeError(`metadata["${key}"]: only "-bin" keys may carry NUL bytes`);
      }
      entries.push([Buffer.from(key, 'utf8'), bytes]);
    }
  }
  if (entries.length === 0) return null;
  let size = 0;
  for (const [k, v] of entries) size += k.length + 1 + v.length + 1;
  const blob = koffi.alloc('uint8_t', size);
  const table = koffi.alloc('uint64_t', entries.length * 2);
  const lens = koffi.alloc('uint64_t', entries.length);
  const bytes = new Uint8Array(koffi.view(blob, size));
  const t = new BigUint64Array(koffi.view(table, entries.length * 16));
  const l = new BigUint64Array(koffi.view(lens, entries.length * 8));
  let at = 0;
  entries.forEach(([k, v], i) => {
    t[i * 2] = blob + BigInt(at);
    bytes.set(k, at); bytes[at + k.length] = 0; at += k.length + 1;
    t[i * 2 + 1] = blob + BigInt(at);
    bytes.set(v, at); bytes[at + v.length] = 0; at += v.length + 1;
    l[i] = BigInt(v.length);
  });
  return { table, lens, count: entries.length, free() { koffi.free(blob); koffi.free(table); koffi.free(lens); } };
}

class Stream {
  constructor(client, options) {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const o = {};
    C.chat_stream_options_init(o, STREAM_OPTIONS_VERSION);
    if (options.deadlineMs !== undefined && options.deadlineMs !== null) {
      o.deadline_ms = checkInt(options.deadlineMs, 'options.deadlineMs', 0, Number.MAX_SAFE_INTEGER);
    }
    if (options.waitForReady) o.wait_for_ready = 1;
    if (options.token !== undefined && options.token !== null) o.token = checkCString(options.token, 'options.token');
    if (options.compression !== undefined && options.compression !== null) {
      o.compression = checkChoice(options.compression, 'options.compression', COMPRESSION);
    }
    const md = encodeMetadata(options.metadata);
    if (md !== null) {
      o.metadata = md.table;
      o.metadata_count = md.count;
      o.metadata_value_lens = md.lens;
    }
    const queue = sharedQueue();
    this._id = newId();
    o.queue = queue.ptr;
    o.user_data = BigInt(this._id);
    // A reply drained from the queue keeps counting against recvQueueLimit /
    // recvQueueBytes until it is taken (_next, or a waiting next()), so
    // replies not iterated yet stop the reading and slow the server down.
    o.hold_until_consumed = 1;
    const out = [null];
    let rc;
    try {
      rc = C.chat_client_open(client._ptr, o, out);
    } finally {
      if (md !== null) md.free();
    }
    if (rc !== 0) {
      throw new ChatError(rc, handleError(C.chat_client_error, client._ptr) || C.chat_last_error(), 'cannot open a stream');
    }
    this._ptr = out[0];
    this._queue = queue;
    this._sends = new SendQueue();
    this._completeWanted = false;
    this._replies = [];
    this._head = 0;
    this._waiters = [];
    this._status = null;          // {code, details} once ended
    this._errorTaken = false;
    this._finished = null;
    this._resolveFinished = null;
    this._initialMetadata = null;   // read while the handle lives (see _end)
    this._trailingMetadata = null;
    targets.set(this._id, this);
    queue.retain();
  }

  get ended() { return this._status !== null; }

  // The final status ({code, codeName, details}) once ended, else null.
  get status() { return this._status; }

  // The server's initial metadata, once the first reply came or the stream
  // ended; else null. Shaped as call.metadata.
  initialMetadata() { return this._initialMetadata; }

  // The server's trailing metadata once the stream ended, else null.
  trailingMetadata() { return this._trailingMetadata; }

  // null while libchat does not have it (BAD_STATE), so a later read tries again.
  _readMetadata(which) {
    const count = [0];
    if (C.chat_stream_metadata_count(this._ptr, which, count) !== 0) return null;
    const md = Object.create(null);
    const kp = [null], kl = [0], vp = [null], vl = [0];
    for (let i = 0; i < Number(count[0]); i++) {
      if (C.chat_stream_metadata_at(this._ptr, which, i, kp, kl, vp, vl) !== 0) continue;
      addMetadataEntry(md, kp[0], Number(kl[0]), vp[0], Number(vl[0]));
    }
    return md;
  }

  // Resolves with the final status when the stream has ended (never rejects).
  get finished() {
    if (this._finished === null) {
      this._finished = this._status !== null ? Promise.resolve(this._status)
        : new Promise((resolve) => { this._resolveFinished = resolve; });
    }
    return this._finished;
  }

  // Queues one ChatMessage. Resolves once the library has it; when the
  // send queue is full, waits (without blocking the loop) for room.
  send(name, message) {
    checkString(name, 'name');
    checkString(message, 'message');
    if (this._status !== null) return Promise.reject(this._closedError('send'));
    if (this._completeWanted) {
      return Promise.reject(new ChatError(Code.ERR_CLOSED, 'the stream was completed (half-closed)', 'send'));
    }
    if (this._sends.length === 0) {
      const rc = C.chat_stream_send(this._ptr, name, utf8Length(name), message, utf8Length(message), 0);
      if (rc === 0) return RESOLVED;
      if (rc !== Code.ERR_WOULD_BLOCK) return Promise.reject(this._error(rc, 'send'));
    }
    return this._sends.push(name, message);
  }

  // Half-closes once every message sent so far is queued. Idempotent.
  complete() {
    if (this._status !== null || this._completeWanted) return;
    this._completeWanted = true;
    if (this._sends.length === 0) this._completeNow();
  }

  // Cancels the call: the server sees a cancellation, the stream ends with
  // CANCELLED, messages not yet written are dropped. Idempotent.
  cancel() {
    if (this._status !== null) return;
    const rc = C.chat_stream_cancel(this._ptr);
    if (rc !== 0 && rc !== Code.ERR_CLOSED) throw this._error(rc, 'cancel');
    this._sends.rejectAll(new ChatError(Code.CANCELLED, 'the stream was cancelled', 'send'));
  }

  _completeNow() {
    const rc = C.chat_stream_complete(this._ptr);
    if (rc !== 0 && rc !== Code.ERR_CLOSED) throw this._error(rc, 'complete');
  }

  _error(rc, what) {
    return new ChatError(rc, handleError(C.chat_stream_error, this._ptr), what);
  }

  _closedError(what) {
    const s = this._status;
    return new ChatError(Code.ERR_CLOSED, `the stream has ended (${s.codeName}${s.details ? `: ${s.details}` : ''})`, what);
  }

  _event(type, code, k) {
    switch (type) {
      case EventType.REPLY: {
        const text = this._queue.text(k);
        if (this._initialMetadata === null) this._initialMetadata = this._readMetadata(METADATA_INITIAL);
        if (this._waiters.length > 0) {
          this._consumed();
          this._waiters.shift().resolve({ value: text, done: false });
        } else {
          this._replies.push(text);
        }
        break;
      }
      case EventType.WRITABLE:
        this._flush();
        break;
      case EventType.END:
        this._end(code, this._queue.text(k));
        break;
      default:
        break;
    }
  }

  _flush() {
    const rc = this._sends.flush((name, message) =>
      C.chat_stream_send(this._ptr, name, utf8Length(name), message, utf8Length(message), 0),
    (rc) => this._error(rc, 'send'));
    if (rc === 0 && this._completeWanted && this._sends.length === 0) this._completeNow();
  }

  _end(code, details) {
    this._status = { code, codeName: codeName(code), details };
    targets.delete(this._id);
    if (this._sends.length > 0) this._sends.rejectAll(this._closedError('send'));
    // The entries are borrowed from the stream: copied before it goes.
    if (this._initialMetadata === null) this._initialMetadata = this._readMetadata(METADATA_INITIAL);
    this._trailingMetadata = this._readMetadata(METADATA_TRAILING);
    C.chat_stream_destroy(this._ptr);  // ended: returns at once
    this._ptr = null;
    this._queue.release();
    while (this._waiters.length > 0) {
      const w = this._waiters.shift();
      if (code === Code.OK || this._errorTaken) w.resolve({ value: undefined, done: true });
      else { this._errorTaken = true; w.reject(new ChatError(code, details)); }
    }
    if (this._resolveFinished !== null) this._resolveFinished(this._status);
  }

  // The oldest held reply was taken: its room goes back. After the end the
  // handle is gone and nothing is held any more.
  _consumed() {
    if (this._ptr === null) return;
    const rc = C.chat_stream_consumed(this._ptr, 1);
    if (rc !== 0) process.emitWarning(`libchat: chat_stream_consumed: ${this._error(rc, 'consumed').message}`);
  }

  // Replies received and not taken yet (at most recvQueueLimit).
  get bufferedReplies() { return this._replies.length - this._head; }

  _next() {
    if (this._head < this._replies.length) {
      this._consumed();
      const value = this._replies[this._head];
      this._replies[this._head++] = undefined;
      if (this._head > 1024 && this._head * 2 > this._replies.length) {
        this._replies = this._replies.slice(this._head);
        this._head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this._status !== null) {
      if (this._status.code === Code.OK || this._errorTaken) return Promise.resolve({ value: undefined, done: true });
      this._errorTaken = true;
      return Promise.reject(new ChatError(this._status.code, this._status.details));
    }
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  // for await (const reply of stream): each reply in order; ends on a clean
  // end, throws a ChatError on any other final status. Leaving the loop
  // early (break, throw) cancels the stream, as Node's streams do.
  [Symbol.asyncIterator]() {
    return {
      next: () => this._next(),
      return: () => {
        this.cancel();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() { return this; },
    };
  }
}

module.exports = { Client, Stream };
