'use strict';
// chat_code values and ChatError: every failure this package reports that
// comes from libchat (a refused call or a stream's final status).

const { C } = require('./native');

// chat_code, read from the library itself (one table: libchat's), so the
// two cannot drift: gRPC's codes by their gRPC names (OK, UNAVAILABLE), the
// library's as chat.h spells them after CHAT_ (ERR_WOULD_BLOCK, and
// END_OF_STREAM, which is not an error).
const names = [];
for (let i = 0; C.chat_code_name(i) !== 'UNRECOGNIZED'; i++) names.push(C.chat_code_name(i));
const Code = Object.freeze(Object.fromEntries(names.map((name, i) =>
  [i <= 16 || name === 'END_OF_STREAM' ? name : `ERR_${name}`, i])));

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
