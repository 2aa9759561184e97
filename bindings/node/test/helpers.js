'use strict';
// Shared by the tests: paths, grpc-js peers built from proto/chat.proto,
// and waits that fail with a message when their deadline passes.

const path = require('node:path');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');

const REPO = path.resolve(__dirname, '..', '..', '..');
const PROTO = path.join(REPO, 'proto', 'chat.proto');
const SEED = [['Sam', 'Hi'], ['Ann', 'Hey'], ['John', 'Hello']];
const SEED_REPLIES = ['Sam: Hi', 'Ann: Hey', 'John: Hello'];

// The C example binaries: from ctest's environment, else the build tree.
function binary(envName, rel) {
  if (process.env[envName]) return process.env[envName];
  const p = path.join(REPO, 'build', rel);
  return fs.existsSync(p) ? p : null;
}
const CHAT_SERVER_BIN = binary('CHAT_SERVER_BIN', 'examples/chat_server');
const CHAT_CLIENT_BIN = binary('CHAT_CLIENT_BIN', 'examples/chat_client');

// Resolves with the promise's value, or rejects when `ms` pass first.
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Polls cond() every 5 ms until it is true; rejects after `ms`.
async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function collect(stream) {
  const out = [];
  for await (const r of stream) out.push(r);
  return out;
}

// Rejects with the stream's error, or resolves with the replies.
async function collectError(stream) {
  const out = [];
  try {
    for await (const r of stream) out.push(r);
  } catch (err) {
    return { replies: out, error: err };
  }
  return { replies: out, error: null };
}

let grpcCache = null;
function grpc() {
  if (grpcCache === null) {
    const grpcJs = require('@grpc/grpc-js');
    const loader = require('@grpc/proto-loader');
    const def = loader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    const pkg = grpcJs.loadPackageDefinition(def);
    grpcCache = { grpc: grpcJs, Chat: pkg.Chat };
  }
  return grpcCache;
}

// A grpc-js server on 127.0.0.1:0 with the given chat(call) handler.
async function grpcServer(chat) {
  const { grpc: g, Chat } = grpc();
  const server = new g.Server();
  server.addService(Chat.service, { chat });
  const port = await new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', g.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  // A call left open (a failed test) must not hang the close.
  const close = () => new Promise((resolve) => {
    const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, 2000);
    server.tryShutdown(() => { clearTimeout(timer); resolve(); });
  });
  return { server, port, close };
}

function grpcClient(port) {
  const { grpc: g, Chat } = grpc();
  return new Chat(`127.0.0.1:${port}`, g.credentials.createInsecure());
}

// Spawns a process and resolves with its first stdout line.
function spawnWithFirstLine(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '', err = '';
  child.stderr.on('data', (d) => { err += d; });
  const first = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.on('exit', (code) => reject(new Error(`${cmd} exited (${code}) before its first line; stderr: ${err}`)));
  });
  first.catch(() => {});
  return { child, first, stderr: () => err, stdout: () => out };
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
}

// redis-server on a free loopback port in a temporary directory; killed by PID.
async function startRedis() {
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-node-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
                                       '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await waitFor(() => child.exitCode !== null || fs.existsSync('/proc/net/tcp') &&
                fs.readFileSync('/proc/net/tcp', 'utf8').includes(`:${port.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A`),
                10000, 'redis-server listening');
  assert.equal(child.exitCode, null, 'redis-server exited');
  return {
    url: `redis://127.0.0.1:${port}`,
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = {
  REPO, PROTO, SEED, SEED_REPLIES, CHAT_SERVER_BIN, CHAT_CLIENT_BIN,
  within, waitFor, collect, collectError, grpc, grpcServer, grpcClient,
  spawnWithFirstLine, exited, startRedis,
};
