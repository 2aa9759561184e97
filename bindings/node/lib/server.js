'use strict';
// Server and Call: host /Chat/chat. Built-in modes (echo, broadcast) run
// entirely in libchat; a JS handler gets its calls' events through the
// process's event queue (queue.js) and runs on the JS main thread. An OPEN
// carries the server's user_data; the call then gets an id of its own.

const { EventEmitter } = require('node:events');
const { koffi, C, handleError, SERVER_OPTIONS_VERSION, STATS_VERSION } = require('./native');
const { Code, ChatError, codeName } = require('./errors');
const { EventType, sharedQueue, targets, newId } = require('./queue');
const {
  checkString, checkCString, checkInt, checkBool, checkChoice, COMPRESSION, readStats,
  addMetadataEntry, SendQueue, RESOLVED, utf8Length,
} = require('./util');

const MODES = { echo: 0, broadcast: 1, custom: 2 };
const CLIENT_CERT = { none: 0, request: 1, require: 2 };
const K_OPEN = 0, K_MESSAGE = 1, K_COMPLETE = 2, K_CLOSE = 3;

class Call {
  constructor(server, ptr, key) {
    this._server = server;
    this._ptr = ptr;
    this._key = key;
    const id = C.chat_call_id(ptr);
    this.id = typeof id === 'bigint' ? Number(id) : id;
    this.peer = C.chat_call_peer(ptr);
    this._metadata = null;
    this._status = null;          // {code, codeName, details} once closed
    this._ended = false;          // completed or failed by us
    this._completeWanted = false;
    this._sends = new SendQueue();
    this._busy = false;           // a handler's promise is pending
    this._running = -1;           // the kind of that handler
    this._pending = [];           // [kind, a, b, ...] waiting for it
    this._head = 0;
    this._pendingMessages = 0;    // MESSAGEs among those (at most recvWindow)
    this._nk = -1;                // what _shift() took
    this._na = undefined;
    this._nb = undefined;
  }

  // The client's metadata: {key: value}, keys lower-case, a key sent several
  // times gives an array; "-bin" values are Buffers.
  get metadata() {
    if (this._metadata === null && this._ptr !== null) {
      const md = Object.create(null);
      const count = [0];
      if (C.chat_call_metadata_count(this._ptr, count) === 0) {
        const kp = [null], kl = [0], vp = [null], vl = [0];
        for (let i = 0; i < Number(count[0]); i++) {
          if (C.chat_call_metadata_at(this._ptr, i, kp, kl, vp, vl) !== 0) continue;
          addMetadataEntry(md, kp[0], Number(kl[0]), vp[0], Number(vl[0]));
        }
      }
      this._metadata = md;
    }
    return this._metadata || Object.create(null);
  }

  get closed() { return this._status !== null; }
  // The final status ({code, codeName, details}) once closed, else null.
  get status() { return this._status; }

  // Milliseconds left before the client's deadline (0 once passed), null
  // without one.
  get timeLeft() {
    if (this._ptr === null) return null;
    const ms = [0];
    if (C.chat_call_time_left(this._ptr, ms) !== 0) return null;
    const n = Number(ms[0]);
    return n < 0 ? null : n;
  }

  // Metadata the client gets with the first reply (add it before the first
  // send) or with the status (trailing: before complete/fail).
  addInitialMetadata(key, value) {
    this._addMetadata(C.chat_call_add_initial_metadata, key, value, 'addInitialMetadata');
  }

  addTrailingMetadata(key, value) {
    this._addMetadata(C.chat_call_add_trailing_metadata, key, value, 'addTrailingMetadata');
  }

  _addMetadata(add, key, value, what) {
    checkCString(key, 'key');
    let bytes;
    if (typeof value === 'string') bytes = Buffer.from(value, 'utf8');
    else if (value instanceof Uint8Array) bytes = Buffer.from(value);
    else throw new TypeError(`value must be a string or a Buffer (got ${value === null ? 'null' : typeof value})`);
    if (this._ptr === null) throw this._closedError(what);
    const rc = add(this._ptr, key, bytes, bytes.length);
    if (rc !== 0) throw this._error(rc, what);
  }

  // Queues one reply. Resolves once the library has it; when the call's
  // send queue is full, waits (without blocking the loop) for room.
  send(text) {
    checkString(text, 'text');
    if (this._status !== null) return Promise.reject(this._closedError('send'));
    if (this._ended || this._completeWanted) {
      return Promise.reject(new ChatError(Code.ERR_CLOSED, 'the call was completed or failed', 'send'));
    }
    if (this._sends.length === 0) {
      const rc = C.chat_call_send(this._ptr, text, utf8Length(text), 0);
      if (rc === 0) return RESOLVED;
      if (rc !== Code.ERR_WOULD_BLOCK) return Promise.reject(this._error(rc, 'send'));
    }
    return this._sends.push(text, null);
  }

  // Ends the call with OK once every reply sent so far is written. Idempotent.
  complete() {
    if (this._completeWanted) return;
    if (this._status !== null) {
      if (this._status.code === Code.OK) return;
      throw this._closedError('complete');
    }
    if (this._ended) throw new ChatError(Code.ERR_CLOSED, 'the call was failed', 'complete');
    this._completeWanted = true;
    if (this._sends.length === 0) this._completeNow();
  }

  // Ends the call with `code` (a gRPC code, 1..16) and `details`; replies
  // not yet written are dropped.
  fail(code, details = '') {
    checkInt(code, 'code', 1, 16);
    checkString(details, 'details');
    if (this._status !== null) throw this._closedError('fail');
    const rc = C.chat_call_fail(this._ptr, code, details, utf8Length(details));
    if (rc !== 0) throw this._error(rc, 'fail');
    this._ended = true;
    this._sends.rejectAll(new ChatError(Code.ERR_CLOSED, `the call was failed (${codeName(code)})`, 'send'));
  }

  _completeNow() {
    const rc = C.chat_call_complete(this._ptr);
    if (rc !== 0) throw this._error(rc, 'complete');
    this._ended = true;
  }

  _error(rc, what) {
    return new ChatError(rc, handleError(C.chat_call_error, this._ptr), what);
  }

  _closedError(what) {
    const s = this._status;
    return new ChatError(Code.ERR_CLOSED, `the call has ended (${s.codeName}${s.details ? `: ${s.details}` : ''})`, what);
  }

  _flush() {
    const rc = this._sends.flush((text) => C.chat_call_send(this._ptr, text, utf8Length(text), 0),
      (rc) => this._error(rc, 'send'));
    if (rc === 0 && this._completeWanted && !this._ended && this._status === null) {
      try { this._completeNow(); } catch (err) { this._server._report(err, this); }
    }
  }

  // Events with the call's own id (those drained before it had one come
  // through its server).
  _event(type, code, k) {
    const q = this._server._queue;
    switch (type) {
      case EventType.MESSAGE:
        this._dispatch(K_MESSAGE, q.name(k), q.text(k));
        break;
      case EventType.HALF_CLOSE:
        this._dispatch(K_COMPLETE);
        break;
      case EventType.WRITABLE:
        this._flush();
        break;
      case EventType.CLOSE: {
        const details = q.text(k);
        this._close(code, details);
        this._dispatch(K_CLOSE, code, details);
        break;
      }
      default:
        break;
    }
  }

  _close(code, details) {
    this._status = { code, codeName: codeName(code), details };
    if (this._sends.length > 0) this._sends.rejectAll(this._closedError('send'));
  }

  // Handler calls for this call run in order, one at a time: a handler that
  // returns a promise holds the next until it settles. The server holds each
  // MESSAGE (hold_until_consumed): it counts against the call's recvWindow
  // until its onMessage has finished (_consumed), so what waits here is
  // bounded by recvWindow / recvWindowBytes and a fast client is slowed
  // down by HTTP/2 flow control instead.
  _dispatch(kind, a, b) {
    if (this._busy || this._head < this._pending.length) {
      if (kind === K_MESSAGE) this._pendingMessages++;
      this._pending.push(kind, a, b);
      return;
    }
    this._run(kind, a, b);
  }

  // Takes the next waiting handler call into this._next (kind, a, b).
  _shift() {
    const p = this._pending;
    const h = this._head;
    const kind = p[h], a = p[h + 1], b = p[h + 2];
    p[h + 1] = p[h + 2] = undefined;
    this._head = h + 3;
    if (kind === K_MESSAGE) this._pendingMessages--;
    if (this._head >= p.length) {
      this._pending = [];
      this._head = 0;
    } else if (this._head > 3072 && this._head * 2 > p.length) {
      this._pending = p.slice(this._head);  // a handler that stays busy
      this._head = 0;
    }
    this._nk = kind; this._na = a; this._nb = b;
  }

  _run(kind, a, b) {
    for (;;) {
      let r;
      try {
        r = this._server._invoke(kind, this, a, b);
      } catch (err) {
        this._handlerError(err);
      }
      // A send that was queued at once (RESOLVED) holds nothing up.
      if (r !== RESOLVED && r !== null && typeof r === 'object' && typeof r.then === 'function') {
        this._busy = true;
        this._running = kind;
        r.then(() => this._resume(), (err) => { this._handlerError(err); this._resume(); });
        return;
      }
      if (kind === K_MESSAGE) this._consumed();
      if (kind === K_CLOSE) { this._finish(); return; }
      if (this._head >= this._pending.length) return;
      this._shift();
      kind = this._nk; a = this._na; b = this._nb;
      this._na = this._nb = undefined;
    }
  }

  _resume() {
    this._busy = false;
    if (this._running === K_MESSAGE) this._consumed();
    if (this._running === K_CLOSE) { this._finish(); return; }
    if (this._head < this._pending.length) {
      this._shift();
      const a = this._na, b = this._nb;
      this._na = this._nb = undefined;
      this._run(this._nk, a, b);
    } else {
      this._pending = [];
      this._head = 0;
    }
  }

  // One more MESSAGE (the oldest held) is done with: its room in the call's
  // window goes back. Valid after the call ended too (the handle is ours
  // until _finish, which runs after every handler call of the call).
  _consumed() {
    const rc = C.chat_call_consumed(this._ptr, 1);
    // Not expected (chat.h: OK after the end too); a bug of ours or libchat's.
    if (rc !== 0) process.emitWarning(`libchat: chat_call_consumed on call ${this.id}: ${this._error(rc, 'consumed').message}`);
  }

  _handlerError(err) {
    // The call ended under the handler (the client went away, a stop cut
    // it, the handler failed or completed it already): its sends fail with
    // ERR_CLOSED; nothing to report.
    if ((this._status !== null || this._ended) && err instanceof ChatError && err.code === Code.ERR_CLOSED) return;
    if (this._status === null && !this._ended) {
      try {
        this.fail(Code.UNKNOWN, `handler failed: ${err && err.message ? err.message : String(err)}`);
      } catch (_) { /* it ended meanwhile */ }
    }
    this._server._report(err, this);
  }

  // After its CLOSE was handled: the handle goes back, the call is gone.
  _finish() {
    this._server._forget(this);
    if (this._ptr !== null) {
      C.chat_call_unref(this._ptr);
      this._ptr = null;
    }
  }
}

function defaultOnComplete(call) {
  try {
    call.complete();
  } catch (err) {
    if (!(err instanceof ChatError && err.code === Code.ERR_CLOSED)) throw err;
  }
}

class Server extends EventEmitter {
  // options: address ('127.0.0.1:0'); mode ('echo' | 'broadcast'), or
  // handler ({onOpen, onMessage, onComplete, onClose}, each optional and may
  // be async); the library's limits (see index.d.ts).
  constructor(options = {}) {
    super();
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const address = options.address === undefined ? '127.0.0.1:0' : checkString(options.address, 'options.address');
    let { mode, handler } = options;
    if (typeof handler === 'string') { mode = handler; handler = undefined; }
    if (handler !== undefined && handler !== null) {
      if (typeof handler !== 'object') throw new TypeError('options.handler must be an object with onOpen/onMessage/onComplete/onClose methods');
      for (const m of ['onOpen', 'onMessage', 'onComplete', 'onClose']) {
        if (handler[m] !== undefined && typeof handler[m] !== 'function') throw new TypeError(`options.handler.${m} must be a function`);
      }
      if (mode !== undefined && mode !== 'custom') throw new TypeError(`options.mode "${mode}" cannot be combined with a handler`);
      mode = 'custom';
    } else {
      if (mode === undefined) mode = 'echo';
      if (mode !== 'echo' && mode !== 'broadcast') {
        throw new TypeError(`options.mode must be "echo" or "broadcast" (or give a handler), got ${JSON.stringify(mode)}`);
      }
      handler = null;
    }

    const o = {};
    C.chat_server_options_init(o, SERVER_OPTIONS_VERSION);
    o.mode = MODES[mode];
    const set = (key, field, min, max) => {
      if (options[key] === undefined) return;
      o[field] = checkInt(options[key], `options.${key}`, min, max);
    };
    set('maxMessageBytes', 'max_message_bytes', 1, 2147483647);
    set('sendQueueLimit', 'send_queue_limit', 1, 2147483647);
    set('recvWindow', 'recv_window', 1, 2147483647);
    set('keepaliveMs', 'keepalive_ms', 0, 2147483647);
    set('sendQueueBytes', 'send_queue_bytes', 1, Number.MAX_SAFE_INTEGER);
    set('recvWindowBytes', 'recv_window_bytes', 1, Number.MAX_SAFE_INTEGER);
    set('maxMemoryBytes', 'max_memory_bytes', 1, Number.MAX_SAFE_INTEGER);
    set('keepaliveTimeoutMs', 'keepalive_timeout_ms', 1, 2147483647);
    set('completionQueues', 'completion_queues', 0, 256);
    for (const [key, field] of [['health', 'health'], ['reflection', 'reflection']]) {
      if (options[key] === undefined) continue;
      o[field] = checkBool(options[key], `options.${key}`) ? 1 : 0;
    }
    set('maxStreams', 'max_streams', 0, 2147483647);
    set('maxConcurrentStreams', 'max_concurrent_streams', 0, 2147483647);
    set('maxConnectionAgeMs', 'max_connection_age_ms', 0, 2147483647);
    set('maxConnectionAgeGraceMs', 'max_connection_age_grace_ms', 0, 2147483647);
    set('maxConnectionIdleMs', 'max_connection_idle_ms', 0, 2147483647);
    set('roomMaxLen', 'room_max_len', 1, Number.MAX_SAFE_INTEGER);
    if (options.compression !== undefined) o.compression = checkChoice(options.compression, 'options.compression', COMPRESSION);
    // PEM text or a file's path; libchat reads and checks them (which ones
    // go together included) and names what it refuses.
    const str = (key, field) => {
      if (options[key] !== undefined && options[key] !== null) o[field] = checkCString(options[key], `options.${key}`);
    };
    str('tlsCert', 'tls_cert_chain');
    str('tlsKey', 'tls_private_key');
    str('tlsClientCa', 'tls_client_ca');
    str('roomUrl', 'room_url');
    str('roomName', 'room_name');
    // A client CA means client certificates are wanted: "require" unless told.
    if (options.clientCert !== undefined) o.tls_client_cert = checkChoice(options.clientCert, 'options.clientCert', CLIENT_CERT);
    else if (o.tls_client_ca) o.tls_client_cert = CLIENT_CERT.require;

    this._handler = handler;
    this._calls = new Map();        // id -> Call
    this._byPtr = new Map();        // handle -> Call (events drained before its id was set)
    this._queue = sharedQueue();
    this._id = newId();
    const out = [null];
    if (handler !== null) {
      o.queue = this._queue.ptr;
      o.user_data = BigInt(this._id);
      o.hold_until_consumed = 1;
    }
    const rc = C.chat_server_start(address, o, out);
    if (rc !== 0) throw new ChatError(rc, C.chat_last_error(), `cannot start a server on "${address}"`);
    if (handler !== null) targets.set(this._id, this);
    this._ptr = out[0];
    this.address = address;
    this.port = C.chat_server_port(this._ptr);
    this.mode = mode;
    this._running = true;           // holds the queue (keeps the process alive)
    this._stopping = null;
    this._closing = null;
    this._queue.retain();
  }

  // The server's counters since it started (chat_stats).
  stats() {
    if (this._ptr === null) throw new ChatError(Code.ERR_CLOSED, 'the server is closed', 'stats');
    return readStats(C.chat_server_stats, this._ptr, STATS_VERSION,
      (rc) => new ChatError(rc, handleError(C.chat_server_error, this._ptr), 'stats'));
  }

  // Stops: refuses new calls, lets open calls finish for up to graceMs,
  // then ends the rest with UNAVAILABLE. Resolves with how many calls were
  // cut. chat_server_stop runs off the main thread, so the loop keeps
  // serving the calls meanwhile.
  stop(graceMs = 0) {
    checkInt(graceMs, 'graceMs', 0, Number.MAX_SAFE_INTEGER);
    if (this._closing !== null) return this._closing.then(() => 0);
    if (this._stopping === null) {
      const ptr = this._ptr;
      const cut = koffi.alloc('int32_t', 1);
      this._stopping = new Promise((resolve, reject) => {
        C.chat_server_stop.async(ptr, graceMs, cut, (err, rc) => {
          const n = err ? 0 : koffi.decode.int32(cut);
          koffi.free(cut);
          if (err) reject(err);
          else if (rc !== 0) reject(new ChatError(rc, handleError(C.chat_server_error, ptr), 'stop'));
          else {
            if (this._handler !== null) this._queue.drain();
            this._unhold();
            resolve(n);
          }
        });
      });
    }
    return this._stopping;
  }

  // Stops with no grace (if still running) and frees the server; resolves
  // once done. Idempotent.
  close() {
    if (this._closing === null) {
      const before = this._stopping === null ? Promise.resolve() : this._stopping.catch(() => {});
      this._closing = before.then(() => new Promise((resolve) => {
        C.chat_server_destroy.async(this._ptr, () => {
          this._ptr = null;
          this._unhold();
          if (this._handler !== null) {
            this._queue.drain();
            // Every call got its CLOSE before the destroy returned; one that
            // did not is closed here so that its handle goes back.
            for (const call of [...this._calls.values()]) {
              if (call._status === null) {
                call._close(Code.UNAVAILABLE, 'the server was closed');
                call._dispatch(K_CLOSE, Code.UNAVAILABLE, 'the server was closed');
              }
            }
            targets.delete(this._id);
          }
          resolve();
        });
      }));
    }
    return this._closing;
  }

  _unhold() {
    if (this._running) {
      this._running = false;
      this._queue.release();
    }
  }

  // Events carrying the server's id: an OPEN, and those of a call drained
  // in the same batch as its OPEN (before the call had its own id).
  _event(type, code, k) {
    const q = this._queue;
    if (type === EventType.OPEN) {
      const ptr = q.call(k);
      C.chat_call_ref(ptr);
      const id = newId();
      C.chat_call_set_user_data(ptr, BigInt(id));
      const call = new Call(this, ptr, id);
      this._calls.set(id, call);
      this._byPtr.set(ptr, call);
      targets.set(id, call);
      q.retain();
      call._dispatch(K_OPEN);
      return;
    }
    const call = this._byPtr.get(q.call(k));
    if (call !== undefined) call._event(type, code, k);
  }

  _invoke(kind, call, a, b) {
    const h = this._handler;
    switch (kind) {
      case K_MESSAGE: return h.onMessage !== undefined ? h.onMessage(call, a, b) : undefined;
      case K_OPEN: return h.onOpen !== undefined ? h.onOpen(call) : undefined;
      case K_COMPLETE:
        if (call._status !== null) return undefined;
        return h.onComplete !== undefined ? h.onComplete(call) : defaultOnComplete(call);
      case K_CLOSE: return h.onClose !== undefined ? h.onClose(call, a, b) : undefined;
      default: return undefined;
    }
  }

  _forget(call) {
    this._calls.delete(call._key);
    this._byPtr.delete(call._ptr);
    targets.delete(call._key);
    this._queue.release();
  }

  // A handler threw or rejected: 'handlerError' listeners get it, else a
  // process warning says so. The call was failed with UNKNOWN.
  _report(err, call) {
    if (this.listenerCount('handlerError') > 0) this.emit('handlerError', err, call);
    else process.emitWarning(`libchat: a handler of call ${call.id} failed: ${err && err.stack ? err.stack : err}`);
  }
}

module.exports = { Server, Call };
