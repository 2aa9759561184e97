'use strict';
// chat_code values and ChatError: every failure this package reports that
// comes from libchat (a refused call or a stream's final status).

const { C } = require('./native');

// The numbers of chat.h's chat_code.
const Code = Object.freeze({
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
  ERR_BAD_ARGUMENT: 17,
  ERR_WOULD_BLOCK: 18,
  ERR_TIMEOUT: 19,
  ERR_END: 20,
  ERR_CLOSED: 21,
  ERR_BUSY: 22,
  ERR_NO_MEMORY: 23,
  ERR_TOO_LARGE: 24,
  ERR_BAD_STATE: 25,
});

// The library's own spelling of each name ("DEADLINE_EXCEEDED", "WOULD_BLOCK").
const names = [];
for (let i = 0; i <= 25; i++) names.push(C.chat_code_name(i));

function codeName(code) {
  return Number.isInteger(code) && code >= 0 && code < names.length ? names[code] : C.chat_code_name(code | 0);
}

class ChatError extends Error {
  // code: a chat_code; details: the library's message or the status details.
  constructor(code, details, context) {
    const name = codeName(code);
    const what = context ? `${context}: ` : '';
    super(`${what}${name}${details ? `: ${details}` : ''}`);
    this.name = 'ChatError';
    this.code = code;
    this.codeName = name;
    this.details = details || '';
  }
}

module.exports = { Code, ChatError, codeName };
