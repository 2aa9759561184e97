'use strict';
// examples/node: chat_server.js and chat_client.js behave as the C ones.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { REPO, CHAT_SERVER_BIN, CHAT_CLIENT_BIN, within, spawnWithFirstLine, exited } = require('./helpers');

const SERVER_JS = path.join(REPO, 'examples', 'node', 'chat_server.js');
const CLIENT_JS = path.join(REPO, 'examples', 'node', 'chat_client.js');
const SEED_OUT = 'Sam: Hi\nAnn: Hey\nJohn: Hello\n';

// Runs a program to its end: {code, signal, stdout, stderr}.
function run(cmd, args, input) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  if (input === undefined) child.stdin.end();
  else if (input !== null) child.stdin.end(input);   // null: stdin stays open
  return { child, done: exited(child).then((r) => ({ ...r, stdout, stderr })) };
}

async function startServer(args) {
  const p = spawnWithFirstLine(process.execPath, [SERVER_JS, ...args]);
  const line = await within(p.first, 10000, 'chat_server.js to listen');
  const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line);
  assert.ok(m, `first line: ${line}`);
  return { ...p, port: Number(m[1]) };
}

async function stopServer(p, signal, wantCut = 0) {
  p.child.kill(signal);   // by PID
  const r = await within(exited(p.child), 15000, 'chat_server.js to stop');
  assert.deepEqual(r, { code: 0, signal: null });
  assert.equal(p.stderr(), `chat_server: stopped on ${signal} (${wantCut} stream${wantCut === 1 ? '' : 's'} cut)\n`);
}

for (const mode of ['echo', 'js-echo']) {
  test(`chat_server.js --mode ${mode} + chat_client.js: the seed`, async () => {
    const server = await startServer(['--address', '127.0.0.1:0', '--mode', mode]);
    try {
      const r = await within(run(process.execPath, [CLIENT_JS, '--target', `127.0.0.1:${server.port}`]).done, 15000, 'the client');
      assert.deepEqual(r, { code: 0, signal: null, stdout: SEED_OUT, stderr: '' });
      const i = await within(run(process.execPath, [CLIENT_JS, '--target', `http://127.0.0.1:${server.port}`, '--name', 'Bob'],
        'one\ntwo\nlast without newline').done, 15000, 'the interactive client');
      assert.deepEqual(i, { code: 0, signal: null, stdout: 'Bob: one\nBob: two\nBob: last without newline\n', stderr: '' });
    } finally {
      await stopServer(server, mode === 'echo' ? 'SIGTERM' : 'SIGINT');
    }
  });
}

test('the C client against chat_server.js, chat_client.js against the C server',
  { skip: CHAT_SERVER_BIN && CHAT_CLIENT_BIN ? false : 'the C examples are not built' }, async () => {
    const server = await startServer(['--address', '127.0.0.1:0', '--mode', 'js-echo']);
    try {
      const r = await within(run(CHAT_CLIENT_BIN, ['--target', `127.0.0.1:${server.port}`]).done, 15000, 'the C client');
      assert.deepEqual(r, { code: 0, signal: null, stdout: SEED_OUT, stderr: '' });
    } finally {
      await stopServer(server, 'SIGTERM');
    }
    const c = spawnWithFirstLine(CHAT_SERVER_BIN, ['--address', '127.0.0.1:0']);
    try {
      const port = /:(\d+)$/.exec(await within(c.first, 10000, 'the C server'))[1];
      const r = await within(run(process.execPath, [CLIENT_JS, '--target', `127.0.0.1:${port}`]).done, 15000, 'the Node client');
      assert.deepEqual(r, { code: 0, signal: null, stdout: SEED_OUT, stderr: '' });
    } finally {
      c.child.kill('SIGTERM');
      await exited(c.child);
    }
  });

test('chat_client.js: a deadline ends it while stdin stays open; errors go to stderr, exit 1', async () => {
  const server = await startServer(['--address', '127.0.0.1:0', '--mode', 'js-echo']);
  try {
    const { child, done } = run(process.execPath, [CLIENT_JS, '--target', `127.0.0.1:${server.port}`, '--name', 'x', '--deadline-ms', '300'], null);
    child.stdin.write('hello\n');
    const r = await within(done, 15000, 'the client to give up on stdin');
    assert.equal(r.code, 1);
    assert.equal(r.stdout, 'x: hello\n');
    assert.match(r.stderr, /^chat_client: DEADLINE_EXCEEDED: /);
  } finally {
    await stopServer(server, 'SIGTERM');
  }
  const gone = await within(run(process.execPath, [CLIENT_JS, '--target', `127.0.0.1:${server.port}`]).done, 15000, 'the client');
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^chat_client: UNAVAILABLE: /);
  const bad = await within(run(process.execPath, [CLIENT_JS, '--bogus']).done, 15000, 'usage');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^usage: /);
});

test('chat_server.js: a stop cuts open streams after the grace; a taken address fails', async () => {
  const server = await startServer(['--address', '127.0.0.1:0', '--mode', 'js-echo', '--grace-ms', '200']);
  const { child, done } = run(process.execPath, [CLIENT_JS, '--target', `127.0.0.1:${server.port}`, '--name', 'x'], null);
  child.stdin.write('hello\n');
  // The stream is open once its reply was printed.
  await within(new Promise((resolve) => child.stdout.on('data', resolve)), 10000, 'the reply');
  const taken = await within(run(process.execPath, [SERVER_JS, '--address', `127.0.0.1:${server.port}`]).done, 15000, 'a second server');
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /^chat_server: CANNOT_LISTEN: /);
  await stopServer(server, 'SIGTERM', 1);
  const r = await within(done, 15000, 'the client');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^chat_client: UNAVAILABLE: /);
});
