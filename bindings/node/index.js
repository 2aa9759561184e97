'use strict';
// libchat for Node.js: the /Chat/chat gRPC bidirectional stream, hosted and
// driven by libchat.so.1 through its C ABI (koffi), on the JS main thread.

const native = require('./lib/native');
const { Code, ChatError, codeName } = require('./lib/errors');
const { Client, Stream } = require('./lib/client');
const { Server, Call } = require('./lib/server');
const { Room } = require('./lib/room');

module.exports = {
  Client,
  Stream,
  Server,
  Call,
  Room,
  ChatError,
  Code,
  codeName,
  // The library actually loaded and how it was found.
  library: Object.freeze({
    path: native.libraryPath,
    from: native.libraryFrom,
    version: native.C.chat_version(),
    abiVersion: native.C.chat_abi_version(),
  }),
};
