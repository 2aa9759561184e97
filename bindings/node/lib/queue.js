'use strict';
// One libchat event queue watched by the Node event loop, without a native
// addon: the queue's descriptor is the read end of a non-blocking pipe; a
// dup() of it goes to a net.Socket, whose 'data' (the bytes it consumed,
// which were the only signal) makes us drain until chat_queue_drain hands
// back fewer events than asked for (chat.h, chat_queue_fd).
//
// Everything here runs on the JS main thread: the library's threads only
// push events. The socket is ref'd while a user (an open stream, a running
// server, an open server call) holds the queue, so an idle process can exit.
//
// One queue per process (the JS main thread is its only loop), shared by
// every client stream and every JS-handler server. Each event's user_data
// names its target: a stream's id, a call's id once set, and before that
// (an OPEN, and events drained in the same batch as it) its server's id.

const net = require('node:net');
const { koffi, C, EVENT_SIZE, dup, handleError } = require('./native');
const { ChatError } = require('./errors');

const EventType = Object.freeze({
  WAKE: 0, OPEN: 1, MESSAGE: 2, HALF_CLOSE: 3, CLOSE: 4, REPLY: 5, END: 6, WRITABLE: 7,
});

const BATCH = 256;               // events per chat_queue_drain
const TWO32 = 4294967296;

class Queue {
  // sink(type, code, userData, event index) is called for each event; the
  // strings are read with this.name(k) / this.text(k) during that call only.
  constructor(sink) {
    const out = [null];
    const rc = C.chat_queue_create(out);
    if (rc !== 0) throw new ChatError(rc, C.chat_last_error(), 'chat_queue_create');
    this.ptr = out[0];
    this.sink = sink;
    this.users = 0;
    this.draining = false;
    this.destroyed = false;
    this.events = koffi.alloc('uint64_t', BATCH * (EVENT_SIZE / 8));
    const view = koffi.view(this.events, BATCH * EVENT_SIZE);
    this.i32 = new Int32Array(view);
    this.u32 = new Uint32Array(view);
    this.p64 = new BigUint64Array(view);
    this.count = koffi.alloc('uint64_t', 1);
    this.count32 = new Uint32Array(koffi.view(this.count, 8));
    let fd;
    try {
      fd = dup(C.chat_queue_fd(this.ptr));
    } catch (err) {
      C.chat_queue_destroy(this.ptr);
      throw err;
    }
    // A pipe descriptor: Node opens it as a Pipe handle and reads it.
    this.socket = new net.Socket({ fd, readable: true, writable: false });
    this.socket.on('data', () => this.drain());
    this.socket.on('error', (err) => {
      if (!this.destroyed) process.emitWarning(`libchat: event queue socket: ${err.message}`);
    });
    this.socket.unref();
  }

  retain() {
    if (this.users++ === 0 && !this.destroyed) this.socket.ref();
  }

  release() {
    if (--this.users === 0 && !this.destroyed) this.socket.unref();
  }

  // Drains everything pending and hands each event to the sink. Re-entry
  // (a handler that makes us drain) is refused: the outer loop goes on.
  drain() {
    if (this.draining || this.destroyed) return;
    this.draining = true;
    let failure = null;
    try {
      for (;;) {
        const rc = C.chat_queue_drain(this.ptr, 0, this.events, BATCH, this.count);
        if (rc !== 0) throw new ChatError(rc, handleError(C.chat_queue_error, this.ptr), 'chat_queue_drain');
        const n = this.count32[0];
        const i32 = this.i32, u32 = this.u32;
        for (let k = 0; k < n; k++) {
          const b = k * 16;
          try {
            this.sink(i32[b], i32[b + 1], u32[b + 6] + u32[b + 7] * TWO32, k);
          } catch (err) {
            if (failure === null) failure = err;
          }
        }
        if (n < BATCH || this.destroyed) break;
      }
    } finally {
      this.draining = false;
    }
    // A bug of ours or a sink's: surface it, after every event was handled.
    if (failure !== null) process.nextTick(() => { throw failure; });
  }

  // The pointers of event k of the current batch.
  call(k) { return this.p64[k * 8 + 1]; }
  name(k) {
    const len = this.u32[k * 16 + 10] + this.u32[k * 16 + 11] * TWO32;
    return len === 0 ? '' : koffi.decode.string(this.p64[k * 8 + 4], len);
  }
  text(k) {
    const len = this.u32[k * 16 + 14] + this.u32[k * 16 + 15] * TWO32;
    return len === 0 ? '' : koffi.decode.string(this.p64[k * 8 + 6], len);
  }

  // Frees the queue: destroy every server and stream delivering to it first.
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.socket.destroy();           // closes our dup
    C.chat_queue_destroy(this.ptr);  // closes the queue's own descriptor
    koffi.free(this.events);
    koffi.free(this.count);
    this.ptr = null;
  }
}

// The process's queue, created on first use, and what its events go to.
let shared = null;
const targets = new Map();  // user_data id -> stream, server or call: _event(type, code, k)

function sharedSink(type, code, id, k) {
  const t = targets.get(id);
  if (t !== undefined) t._event(type, code, k);
}

function sharedQueue() {
  if (shared === null) shared = new Queue(sharedSink);
  return shared;
}

let nextId = 1;
function newId() { return nextId++; }

module.exports = { Queue, EventType, sharedQueue, targets, newId };
