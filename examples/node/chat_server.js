#!/usr/bin/env node
'use strict';
// chat_server.js: serves /Chat/chat until SIGINT/SIGTERM; the Node twin of
// examples/chat_server.c, same command line and output.
//
//   node chat_server.js [--address HOST:PORT] [--mode echo|broadcast|js-echo] [--grace-ms N]
//
// echo and broadcast run inside libchat; js-echo answers the same way from a
// JS handler on the main thread. The first stdout line is
// "listening on HOST:PORT", so scripts started with port 0 learn the port.

const { Server, ChatError } = require(process.env.LIBCHAT_NODE || '../../bindings/node');

function usage() {
  process.stderr.write(`usage: ${process.argv[1]} [--address HOST:PORT] [--mode echo|broadcast|js-echo] [--grace-ms N]\n`);
  process.exit(2);
}

let address = '127.0.0.1:9090';
let mode = 'echo';
let graceMs = 5000;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const value = argv[i + 1];
  if (argv[i] === '--address' && value !== undefined) address = argv[++i];
  else if (argv[i] === '--mode' && ['echo', 'broadcast', 'js-echo'].includes(value)) mode = argv[++i];
  else if (argv[i] === '--grace-ms' && value !== undefined && /^\d+$/.test(value)) graceMs = Number(argv[++i]);
  else usage();
}

const handler = {
  onMessage: (call, name, message) => call.send(`${name}: ${message}`),
  // onComplete: the default completes the call (the seed's behaviour)
};

let server;
try {
  server = mode === 'js-echo' ? new Server({ address, handler }) : new Server({ address, mode });
} catch (err) {
  if (!(err instanceof ChatError)) throw err;
  process.stderr.write(`chat_server: ${err.codeName}: ${err.details}\n`);
  process.exit(1);
}

// The host part as given and the port actually bound.
const colon = address.lastIndexOf(':');
console.log(`listening on ${colon >= 0 ? address.slice(0, colon) : address}:${server.port}`);

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  let status = 0;
  let cut = 0;
  try {
    cut = await server.stop(graceMs);
  } catch (err) {
    process.stderr.write(`chat_server: stop: ${err.message}\n`);
    status = 1;
  }
  process.stderr.write(`chat_server: stopped on ${signal} (${cut} stream${cut === 1 ? '' : 's'} cut)\n`);
  await server.close();
  process.exitCode = status;
}
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
