'use strict';

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

module.exports = { RESOLVED, checkString, checkInt, utf8Length, SendQueue };
