'use strict';
// The seed: Sam/Hi, Ann/Hey, John/Hello, half-close, three replies.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { Client, Server, Code, library } = require('..');
const { SEED, SEED_REPLIES, CHAT_SERVER_BIN, within, collect, spawnWithFirstLine, exited } = require('./helpers');

async function runSeed(target) {
  const client = new Client(target);
  try {
    const stream = client.chat({ deadlineMs: 10000 });
    for (const [name, message] of SEED) await stream.send(name, message);
    stream.complete();
    const replies = await within(collect(stream), 10000, 'the seed replies');
    assert.deepEqual(stream.status, { code: Code.OK, codeName: 'OK', details: '' });
    return replies;
  } finally {
    await client.close();
  }
}

test('the library is found and has ABI 1', () => {
  assert.equal(library.abiVersion, 1);
  assert.match(library.path, /libchat\.so\.1$/);
});

test('seed against libchat echo server (in process)', async () => {
  const server = new Server({ address: '127.0.0.1:0' });
  try {
    assert.ok(server.port > 0);
    assert.deepEqual(await runSeed(`127.0.0.1:${server.port}`), SEED_REPLIES);
    assert.deepEqual(await runSeed(`http://127.0.0.1:${server.port}/`), SEED_REPLIES);
  } finally {
    assert.equal(await server.stop(1000), 0);
    await server.close();
  }
});

test('seed against the C example chat_server', { skip: CHAT_SERVER_BIN ? false : 'examples/chat_server not built' }, async () => {
  const p = spawnWithFirstLine(CHAT_SERVER_BIN, ['--address', '127.0.0.1:0']);
  try {
    const line = await within(p.first, 10000, 'chat_server to listen');
    const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line);
    assert.ok(m, line);
    assert.deepEqual(await runSeed(`127.0.0.1:${m[1]}`), SEED_REPLIES);
  } finally {
    p.child.kill('SIGTERM');
    assert.deepEqual(await within(exited(p.child), 10000, 'chat_server to stop'), { code: 0, signal: null });
  }
});

test('broadcast mode sends each message to every open stream', async () => {
  const server = new Server({ mode: 'broadcast' });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    // b opens once a's first message came back: it sees b's own, a does too.
    const a = client.chat();
    await a.send('a', 'hello');
    const ia = a[Symbol.asyncIterator]();
    assert.deepEqual(await within(ia.next(), 5000, 'a hello'), { value: 'a: hello', done: false });
    const b = client.chat();
    await b.send('b', 'hello');
    const ib = b[Symbol.asyncIterator]();
    assert.deepEqual(await within(ib.next(), 5000, 'b hello'), { value: 'b: hello', done: false });
    assert.deepEqual(await within(ia.next(), 5000, 'a sees b'), { value: 'b: hello', done: false });
    a.complete();
    assert.deepEqual(await within(ia.next(), 5000, 'a ends'), { value: undefined, done: true });
    assert.deepEqual(await within(ib.next(), 5000, 'b sees a go'), { value: 'a left the chat', done: false });
    b.complete();
    assert.deepEqual(await within(ib.next(), 5000, 'b ends'), { value: undefined, done: true });
  } finally {
    await client.close();
    await server.close();
  }
});

test('a process whose streams and servers are done exits by itself', () => {
  const script = `
    const { Client, Server } = require(${JSON.stringify(require.resolve('..'))});
    (async () => {
      const server = new Server();
      const client = new Client('127.0.0.1:' + server.port);
      const s = client.chat();
      await s.send('Sam', 'Hi'); s.complete();
      for await (const r of s) console.log(r);
      await server.stop(100);
      await server.close();
      client.close();
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'the process did not exit by itself');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'Sam: Hi\n');
});

test('a running server keeps the process alive; an open stream too', () => {
  const script = `
    const { Server, Client } = require(${JSON.stringify(require.resolve('..'))});
    const server = new Server();
    setTimeout(async () => {
      const c = new Client('127.0.0.1:' + server.port);
      const s = c.chat();                 // open, never ended: keeps it alive
      setTimeout(async () => { s.cancel(); await server.close(); console.log('closed'); }, 300);
    }, 300);`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'closed\n');
  assert.ok(Date.now() - t0 >= 600, 'exited before the server was closed');
});
