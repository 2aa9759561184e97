'use strict';

const { koffi } = require('./native');
const { Code } = require('./errors');

const RESOLVED = Promise.resolve();

function checkString(value, what) {
  if (typeof value !== 'string') {
    throw new TypeError(`${what} must be a string (got ${value === null ? 'null' : typeof value})`);
  }
  return value;
}

function checkInt(value, what, min, max) {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${what} must be an integer (got ${typeof value === 'number' ? value : typeof value})`);
  }
  if (value < min || value > max) throw new RangeError(`${what} must be in ${min}..${max} (got ${value})`);
  return value;
}

// A string passed to libchat as a C string: a NUL would cut it short.
function checkCString(value, what) {
  checkString(value, what);
  if (value.includes('\0')) throw new TypeError(`${what} must not contain NUL characters`);
  return value;
}

function checkBool(value, what) {
  if (typeof value !== 'boolean') throw new TypeError(`${what} must be a boolean`);
  return value;
}

// One of `names` (an object name -> value), e.g. chat.h's CHAT_COMPRESSION_*.
function checkChoice(value, what, names) {
  if (typeof value !== 'string' || !Object.prototype.hasOwnProperty.call(names, value)) {
    throw new TypeError(`${what} must be ${Object.keys(names).map((n) => `"${n}"`).join(', ')} (got ${JSON.stringify(value)})`);
  }
  return names[value];
}

const COMPRESSION = { none: 0, deflate: 1, gzip: 2 };

// chat_stats as a plain object of Numbers (exact up to 2^53, far beyond
// what a process counts).
function readStats(getter, handle, version, makeError) {
  const st = { version };
  const rc = getter(handle, st);
  if (rc !== 0) throw makeError(rc);
  return {
    streamsOpen: Number(st.streams_open),
    streamsTotal: Number(st.streams_total),
    streamsRefused: Number(st.streams_refused),
    streamsCut: Number(st.streams_cut),
    messagesIn: Number(st.messages_in),
    messagesOut: Number(st.messages_out),
    bytesIn: Number(st.bytes_in),
    bytesOut: Number(st.bytes_out),
  };
}

// Adds one metadata entry read from libchat (borrowed pointers and lengths)
// to `md`: keys lower-case, a repeated key gives an array, "-bin" values
// are Buffers.
function addMetadataEntry(md, kp, kl, vp, vl) {
  const key = koffi.decode.string(kp, kl);
  const value = key.endsWith('-bin')
    ? Buffer.from(vl === 0 ? new ArrayBuffer(0) : koffi.view(vp, vl).slice(0))
    : (vl === 0 ? '' : koffi.decode.string(vp, vl));
  if (key in md) md[key] = [].concat(md[key], [value]);
  else md[key] = value;
}

// The UTF-8 length koffi's string conversion produces (lone surrogates
// become U+FFFD, 3 bytes, in both).
function utf8Length(s) {
  return Buffer.byteLength(s, 'utf8');
}

// Sends the library refused with WOULD_BLOCK, waiting in order for
// WRITABLE. Flat storage: [a, b, resolve, reject] per entry.
class SendQueue {
  constructor() {
    this.items = [];
    this.head = 0;
  }

  get length() { return (this.items.length - this.head) >> 2; }

  push(a, b) {
    return new Promise((resolve, reject) => { this.items.push(a, b, resolve, reject); });
  }

  // Retries in order. Returns 0 when emptied, ERR_WOULD_BLOCK when the
  // library refused again (the next WRITABLE resumes), or the error code
  // that rejected every remaining entry.
  flush(trySend, makeError) {
    const items = this.items;
    while (this.head < items.length) {
      const rc = trySend(items[this.head], items[this.head + 1]);
      if (rc === Code.ERR_WOULD_BLOCK) { this.compact(); return rc; }
      if (rc !== 0) { this.rejectAll(makeError(rc)); return rc; }
      const resolve = items[this.head + 2];
      items[this.head] = items[this.head + 1] = items[this.head + 2] = items[this.head + 3] = undefined;
      this.head += 4;
      resolve();
    }
    this.items = [];
    this.head = 0;
    return 0;
  }

  compact() {
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  rejectAll(err) {
    const items = this.items;
    this.items = [];
    const head = this.head;
    this.head = 0;
    for (let i = head; i < items.length; i += 4) items[i + 3](err);
  }
}

module.exports = {
  RESOLVED, checkString, checkCString, checkInt, checkBool, checkChoice, COMPRESSION, readStats,
  addMetadataEntry, utf8Length, SendQueue,
};
