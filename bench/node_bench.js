#!/usr/bin/env node
'use strict';
// node_bench.js: the Node.js peers of the benchmark (README.md, "Node.js").
//
//   node node_bench.js --mode client --subject node|grpcjs --target HOST:PORT
//                      --workload single|streams [--messages N] [--streams S]
//                      [--timeout-s T] [--sync]
//   node node_bench.js --mode server --subject node|grpcjs [--address 127.0.0.1:0]
//                      [--completion-queues N] [--recv-window N]   (node: Server options)
//
// Clients speak the C bench clients' protocol: message i is
// ChatMessage{name: "bench", message: "m" + i in 15 digits}, every reply is
// checked to be "bench: m…i" in order; one JSON line at the end; with --sync,
// {"sync": "start"} / {"sync": "stop"} around the measured interval, each
// waiting for a line on stdin. They add "client_cpu_us_per_msg": the whole
// client process's CPU time (all threads: process.cpuUsage) over the
// interval, per message.
//   node:   this package's Client (libchat over its event queue), used as its
//           README shows: `await stream.send()`, `for await` over replies.
//   grpcjs: @grpc/grpc-js, used as its examples show: call.write() with
//           'drain' when it returns false, call.on('data').
// Servers speak bench_libchat_server's: {"port": N, "pid": P} once
// listening, stop when stdin ends.
//   node:   this package's Server with a JS handler answering
//           "<name>: <message>" (onMessage: call.send(...)).
//   grpcjs: a grpc-js server doing the same.
// Exit codes: 0 ok, 1 wrong reply or failed call, 2 usage, 3 timed out.

const path = require('node:path');
const readline = require('node:readline');

const PKG = process.env.LIBCHAT_NODE || path.join(__dirname, '..', 'bindings', 'node');
const PROTO = path.join(__dirname, '..', 'proto', 'chat.proto');

function usage(msg) {
  process.stderr.write(`node_bench: ${msg}\nusage: node node_bench.js --mode client|server --subject node|grpcjs ...\n`);
  process.exit(2);
}

const args = { mode: null, subject: null, target: null, workload: null, messages: 10000, streams: 1000,
  timeoutS: 60, sync: false, address: '127.0.0.1:0', completionQueues: undefined, recvWindow: undefined };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const k = argv[i];
  if (k === '--sync') { args.sync = true; continue; }
  const v = argv[++i];
  if (v === undefined) usage(`${k} needs a value`);
  if (k === '--mode') args.mode = v;
  else if (k === '--subject') args.subject = v;
  else if (k === '--target') args.target = v;
  else if (k === '--workload') args.workload = v;
  else if (k === '--messages') args.messages = Number(v);
  else if (k === '--streams') args.streams = Number(v);
  else if (k === '--timeout-s') args.timeoutS = Number(v);
  else if (k === '--address') args.address = v;
  else if (k === '--completion-queues') args.completionQueues = Number(v);
  else if (k === '--recv-window') args.recvWindow = Number(v);
  else usage(`unknown argument ${k}`);
}
if (!['client', 'server'].includes(args.mode)) usage('--mode client|server');
if (!['node', 'grpcjs'].includes(args.subject)) usage('--subject node|grpcjs');

function fail(code, what) {
  process.stderr.write(`node_bench: ${what}\n`);
  process.stdout.write(`${JSON.stringify({ error: code === 3 ? 'timeout' : 'wrong reply or failed call' })}\n`);
  process.exit(code);
}

// "m" + i in 15 digits: 16 bytes, as bench_util.h makes them.
function message(i) { return `m${String(i).padStart(15, '0')}`; }
function checkReply(i, text) {
  if (text !== `bench: ${message(i)}`) fail(1, `wrong reply #${i}: '${text}'`);
}

let stdinLines = null;
function syncPoint(what) {
  if (!args.sync) return Promise.resolve();
  process.stdout.write(`${JSON.stringify({ sync: what })}\n`);
  if (stdinLines === null) {
    const rl = readline.createInterface({ input: process.stdin });
    stdinLines = rl[Symbol.asyncIterator]();
  }
  return stdinLines.next();
}

function loadGrpc() {
  const grpc = require(require.resolve('@grpc/grpc-js', { paths: [PKG] }));
  const loader = require(require.resolve('@grpc/proto-loader', { paths: [PKG] }));
  const def = loader.loadSync(PROTO, { keepCase: true, defaults: true });
  return { grpc, Chat: grpc.loadPackageDefinition(def).Chat };
}

// ---------------------------------------------------------------------------
// Clients: each subject offers open() -> {send(name, msg) -> promise,
// complete(), replies: async iterator of strings}.

function nodeSubject() {
  const { Client } = require(PKG);
  const client = new Client(args.target);
  return {
    open() {
      const s = client.chat();
      return { send: (n, m) => s.send(n, m), complete: () => s.complete(), replies: s };
    },
    close: () => client.close(),
  };
}

function grpcjsSubject() {
  const { grpc, Chat } = loadGrpc();
  const client = new Chat(args.target, grpc.credentials.createInsecure());
  return {
    open() {
      const call = client.chat();
      // Replies as an async iterator over the Readable side ('data' events).
      const replies = (async function* () {
        for await (const r of call) yield r.value;
      })();
      let failed = null;
      call.on('error', (err) => { failed = err; });
      return {
        send(name, msg) {
          if (failed) return Promise.reject(failed);
          if (call.write({ name, message: msg })) return undefined;
          return new Promise((resolve) => call.once('drain', resolve));
        },
        complete: () => call.end(),
        replies,
      };
    },
    close: () => client.close(),
  };
}

async function expectEnd(it, what) {
  const r = await it.next();
  if (!r.done) fail(1, `${what}: an extra reply '${r.value}'`);
}

async function recvChecked(it, first, count) {
  for (let i = first; i < first + count; i++) {
    const r = await it.next();
    if (r.done) fail(1, `stream ended after ${i - first} of ${count} replies`);
    checkReply(i, r.value);
  }
}

async function pingpong(subject, count) {
  const s = subject.open();
  const it = s.replies[Symbol.asyncIterator]();
  for (let i = 0; i < count; i++) {
    await s.send('bench', message(i));
    await recvChecked(it, i, 1);
  }
  s.complete();
  await expectEnd(it, 'ping-pong');
}

async function runClient() {
  const subject = args.subject === 'node' ? nodeSubject() : grpcjsSubject();
  await pingpong(subject, 200);   // warm-up: connection, JIT, caches
  const n = args.messages;
  if (args.workload === 'single') {
    const s = subject.open();
    const it = s.replies[Symbol.asyncIterator]();
    await syncPoint('start');
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const sender = (async () => {
      for (let i = 0; i < n; i++) await s.send('bench', message(i));
      s.complete();
    })();
    await recvChecked(it, 0, n);
    const t1 = process.hrtime.bigint();
    await sender;
    await expectEnd(it, 'single');
    const cpu = process.cpuUsage(cpu0);
    await syncPoint('stop');
    const secs = Number(t1 - t0) / 1e9;
    return { workload: 'single', messages: n, seconds: secs, msgs_per_s: n / secs,
      client_cpu_us_per_msg: (cpu.user + cpu.system) / n };
  }
  if (args.workload === 'streams') {
    const S = args.streams;
    const streams = [];
    for (let k = 0; k < S; k++) {
      const s = subject.open();
      s.it = s.replies[Symbol.asyncIterator]();
      streams.push(s);
      s.send('bench', message(0));
    }
    for (const s of streams) await recvChecked(s.it, 0, 1);
    await syncPoint('start');
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    // Message-major from one sender, as the C client does; every stream
    // read by a consumer of its own.
    const sender = (async () => {
      for (let i = 1; i <= n; i++) {
        for (const s of streams) await s.send('bench', message(i));
      }
      for (const s of streams) s.complete();
    })();
    await Promise.all(streams.map((s) => recvChecked(s.it, 1, n)));
    const t1 = process.hrtime.bigint();
    await sender;
    await Promise.all(streams.map((s) => expectEnd(s.it, 'streams')));
    const cpu = process.cpuUsage(cpu0);
    await syncPoint('stop');
    const secs = Number(t1 - t0) / 1e9;
    return { workload: 'streams', streams: S, messages_per_stream: n, seconds: secs,
      msgs_per_s: (S * n) / secs, client_cpu_us_per_msg: (cpu.user + cpu.system) / (S * n) };
  }
  return usage('--workload single|streams');
}

// ---------------------------------------------------------------------------
// Servers

function runServer() {
  let stop;
  let port;
  if (args.subject === 'node') {
    const { Server } = require(PKG);
    const server = new Server({
      address: args.address,
      completionQueues: args.completionQueues,
      recvWindow: args.recvWindow,
      handler: { onMessage: (call, name, msg) => call.send(`${name}: ${msg}`) },
    });
    port = server.port;
    stop = async () => { await server.stop(1000); await server.close(); };
  } else {
    const { grpc, Chat } = loadGrpc();
    const server = new grpc.Server();
    server.addService(Chat.service, {
      chat(call) {
        call.on('data', (m) => {
          if (!call.write({ value: `${m.name}: ${m.message}` })) {
            call.pause();
            call.once('drain', () => call.resume());
          }
        });
        call.on('end', () => call.end());
        call.on('error', () => {});
      },
    });
    return new Promise((resolve, reject) => {
      server.bindAsync(args.address, grpc.ServerCredentials.createInsecure(), (err, p) => {
        if (err) { reject(err); return; }
        announce(p, () => new Promise((r) => server.tryShutdown(() => r())));
        resolve();
      });
    });
  }
  announce(port, stop);
  return Promise.resolve();
}

function announce(port, stop) {
  process.stdout.write(`${JSON.stringify({ port, pid: process.pid })}\n`);
  process.stdin.resume();
  process.stdin.on('end', async () => {
    await stop();
    process.exit(0);
  });
}

if (args.mode === 'server') {
  runServer().catch((err) => fail(1, `server: ${err.stack || err}`));
} else {
  if (!args.target || !['single', 'streams'].includes(args.workload)) usage('--target and --workload single|streams');
  const timer = setTimeout(() => fail(3, 'timed out'), args.timeoutS * 1000);
  timer.unref();
  runClient().then(async (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  }, (err) => fail(1, `client: ${err && err.stack ? err.stack : err}`));
}
