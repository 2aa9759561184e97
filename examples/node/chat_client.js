#!/usr/bin/env node
'use strict';
// chat_client.js: drives /Chat/chat; the Node twin of examples/chat_client.c,
// same command line and output.
//
//   node chat_client.js [--target TARGET] [--name NAME] [--deadline-ms N]
//
// TARGET is host:port or http://host:port (default localhost:9090). Without
// --name it runs the seed: sends Sam/Hi, Ann/Hey, John/Hello, half-closes and
// prints each reply as it arrives. With --name it is an interactive chat:
// each stdin line is sent from NAME, replies are printed as they arrive, end
// of input half-closes; if the stream ends first it stops reading stdin.
// Exits 0 when the stream ends OK; otherwise prints the status on stderr
// and exits 1.

const readline = require('node:readline');
const { Client, ChatError, Code } = require(process.env.LIBCHAT_NODE || '../../bindings/node');

function usage() {
  process.stderr.write(`usage: ${process.argv[1]} [--target HOST:PORT|http://HOST:PORT] [--name NAME] [--deadline-ms N]\n`);
  process.exit(2);
}

let target = 'localhost:9090';
let name = null;
let deadlineMs;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const value = argv[i + 1];
  if (argv[i] === '--target' && value !== undefined) target = argv[++i];
  else if (argv[i] === '--name' && value !== undefined) name = argv[++i];
  else if (argv[i] === '--deadline-ms' && value !== undefined && /^-?\d+$/.test(value)) {
    deadlineMs = Number(argv[++i]);
    if (deadlineMs < 0) deadlineMs = undefined;
  } else usage();
}

async function sendLines(stream, from) {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
  // The stream ending first (server gone, deadline) stops the reading.
  stream.finished.then(() => rl.close());
  for await (const line of rl) {
    try {
      await stream.send(from, line);
    } catch (err) {
      if (err instanceof ChatError && err.code === Code.ERR_BAD_ARGUMENT) {
        process.stderr.write(`chat_client: not sent: ${err.details}\n`);
        continue;
      }
      break;  // the stream has ended: its status tells why
    }
  }
  rl.close();
  process.stdin.destroy();
}

async function main() {
  let client;
  let stream;
  try {
    client = new Client(target);
    stream = client.chat({ deadlineMs });
  } catch (err) {
    if (!(err instanceof ChatError)) throw err;
    process.stderr.write(`chat_client: ${err.codeName}: ${err.details}\n`);
    return 1;
  }
  const printed = (async () => {
    for await (const reply of stream) process.stdout.write(`${reply}\n`);
  })();
  printed.catch(() => {});
  if (name === null) {
    for (const [n, m] of [['Sam', 'Hi'], ['Ann', 'Hey'], ['John', 'Hello']]) {
      try { await stream.send(n, m); } catch (_) { break; }  // the status tells why
    }
  } else {
    await sendLines(stream, name);
  }
  stream.complete();
  const status = await stream.finished;
  await printed.catch(() => {});
  await client.close();
  if (status.code !== Code.OK) {
    process.stderr.write(`chat_client: ${status.codeName}: ${status.details}\n`);
    return 1;
  }
  return 0;
}

main().then((code) => { process.exitCode = code; });
