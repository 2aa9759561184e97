'use strict';
// Room: lines that reach all its members in one order, in this process or
// across servers on a Redis stream (chat.h, "Rooms"). A custom server's
// handler joins its calls and publishes what it lets through. What may wait
// for Redis (publishing, joining, closing) runs off the main thread
// (koffi's async calls on libuv's pool) and returns a promise; leaving and
// counting members never wait. Rooms have no on_line here:
// a JS host that wants to see the lines joins a call of its own.

const { C, handleError } = require('./native');
const { Code, ChatError } = require('./errors');
const { checkString, checkInt, utf8Length } = require('./util');

class Room {
  // Opens a room: options.url "redis://HOST:PORT[/DB]" with options.name
  // puts it on Redis (the stream "room:<name>", shared with every room and
  // `chat_server --room` of that name); without a url it is in this
  // process. options.maxLen: Redis trims the stream to about that many
  // lines (default 10000). On Redis it looks for Redis once, here on the
  // main thread (a refused connection answers at once; an unreachable host
  // takes up to a second), and opens even when Redis is down (publish
  // rejects meanwhile), like `new Server()` binding its port.
  constructor(options = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const { url = null, name = '' } = options;
    if (url !== null) checkString(url, 'options.url');
    checkString(name, 'options.name');
    const o = {};
    C.chat_room_options_init(o, 1);
    o.url = url;
    o.name = name;
    if (options.maxLen !== undefined) o.max_len = checkInt(options.maxLen, 'options.maxLen', 1, Number.MAX_SAFE_INTEGER);
    const out = [null];
    const rc = C.chat_room_open(o, out);
    if (rc !== 0) throw new ChatError(rc, C.chat_last_error(), 'cannot open the room');
    this._ptr = out[0];
    this.url = url;
    this.name = name;
    this._inflight = 0;     // calls running on libuv's pool
    this._closing = null;   // close()'s promise
    this._freeWhenIdle = null;
  }

  // The promise of one libchat call on libuv's pool; rejects with its
  // error. The handle is freed only once none is running (close()).
  _offThread(fn, args, context, done) {
    if (this._closing !== null) return this._closed(context);
    this._inflight++;
    return new Promise((resolve, reject) => {
      fn.async(this._ptr, ...args, (err, rc) => {
        const details = err || rc === 0 ? '' : this._error();
        if (done) done();
        if (--this._inflight === 0 && this._freeWhenIdle) this._freeWhenIdle();
        if (err) reject(err);
        else if (rc !== 0) reject(new ChatError(rc, details, context));
        else resolve();
      });
    });
  }

  // Sends "<name>: <message>" to every member. Resolves once the room has
  // it: in this process every member's queue took it; on Redis, Redis
  // acknowledged it (rejects with Code.UNAVAILABLE while it cannot).
  publish(name, message) {
    checkString(name, 'name');
    checkString(message, 'message');
    return this._offThread(C.chat_room_publish, [name, utf8Length(name), message, utf8Length(message)],
                           'publish');
  }

  // Sends `text` alone ("Ann left"). As publish().
  notice(text) {
    checkString(text, 'text');
    return this._offThread(C.chat_room_notice, [text, utf8Length(text)], 'notice');
  }

  // `call` (a Call of a handler server) gets every line delivered from now
  // on, after the room's last `replay` lines (0..1000, on Redis). It leaves
  // with leave() or when it ends.
  join(call, replay = 0) {
    checkInt(replay, 'replay', 0, 1000);
    if (call === null || typeof call !== 'object' || !('_ptr' in call)) throw new TypeError('call must be a Call');
    if (call._ptr === null || call.closed) {
      return Promise.reject(new ChatError(Code.ERR_CLOSED, 'the call has ended', 'join'));
    }
    // Our own reference: the call may close while the join runs off-thread.
    const handle = call._ptr;
    if (this._closing === null) C.chat_call_ref(handle);
    return this._offThread(C.chat_room_join, [handle, replay], 'join', () => C.chat_call_unref(handle));
  }

  // Takes `call` out of the room; false if it was not a member.
  leave(call) {
    if (call === null || typeof call !== 'object' || !('_ptr' in call)) throw new TypeError('call must be a Call');
    const ptr = this._live('leave');
    if (call._ptr === null) return false;
    const rc = C.chat_room_leave(ptr, call._ptr);
    if (rc === Code.ERR_MISSING) return false;
    if (rc !== 0) throw new ChatError(rc, this._error(), 'leave');
    return true;
  }

  // How many members' calls are open.
  get members() {
    const n = [0];
    const rc = C.chat_room_members(this._live('members'), n);
    if (rc !== 0) throw new ChatError(rc, this._error(), 'members');
    return Number(n[0]);
  }

  // Stops the room (its members' calls stay open) and frees it once the
  // calls running off the loop have returned; resolves then. Closing runs
  // off the loop too (it waits for a publish in flight to Redis and for the
  // room's reader). Idempotent.
  close() {
    if (this._closing === null) {
      const ptr = this._ptr;
      this._closing = new Promise((resolve) => {
        C.chat_room_close.async(ptr, () => {
          const free = () => {
            C.chat_room_destroy(ptr);
            this._ptr = null;
            resolve();
          };
          if (this._inflight === 0) free();
          else this._freeWhenIdle = free;
        });
      });
    }
    return this._closing;
  }

  _closed(what) { return Promise.reject(new ChatError(Code.ERR_CLOSED, 'the room is closed', what)); }

  _live(what) {
    if (this._closing !== null) throw new ChatError(Code.ERR_CLOSED, 'the room is closed', what);
    return this._ptr;
  }

  _error() { return this._ptr === null ? '' : handleError(C.chat_room_error, this._ptr); }
}

module.exports = { Room };
