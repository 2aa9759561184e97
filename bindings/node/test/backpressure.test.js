'use strict';
// Sends that find the library's send queue full wait for WRITABLE: they
// never block the loop and nothing is lost or reordered. The peer is a
// grpc-js server / client that stops reading, so HTTP/2 flow control and
// the kernel's buffers fill up and the library's send queue with them.

const { test: baseTest } = require('node:test');
const test = (name, fn) => baseTest(name, { timeout: 60000 }, fn);
const assert = require('node:assert/strict');
const { Client, Server, Code } = require('..');
const { within, collect, grpcServer, grpcClient, waitFor } = require('./helpers');

const N = 500;
const BIG = 64 * 1024;   // N * BIG = 32 MiB: more than every buffer on the way
const body = (i) => `${String(i).padStart(8, '0')}${'x'.repeat(BIG - 8)}`;

test('client: sends wait for WRITABLE while the server does not read', async () => {
  let resumeServer;
  const received = [];
  const peer = await grpcServer((call) => {
    call.pause();
    resumeServer = () => call.resume();
    call.on('data', (m) => { received.push(m.message); call.write({ value: m.message.slice(0, 8) }); });
    call.on('end', () => call.end());
  });
  const client = new Client(`127.0.0.1:${peer.port}`, { sendQueueLimit: 4 });
  const stream = client.chat();
  try {
    let settled = 0;
    const sends = [];
    for (let i = 0; i < N; i++) sends.push(stream.send('n', body(i)).then(() => { settled++; }));
    stream.complete();   // after the last queued send
    // The loop is free meanwhile: timers fire while the sends wait.
    await new Promise((r) => setTimeout(r, 20));
    await waitFor(() => resumeServer !== undefined, 5000, 'the server call');
    assert.ok(settled < N, `all ${N} sends (32 MiB) were taken while the server read nothing`);
    const before = settled;
    resumeServer();
    await within(Promise.all(sends), 30000, 'every send to resolve');
    assert.ok(settled === N && before < N);
    const replies = await within(collect(stream), 30000, 'the replies');
    assert.equal(received.length, N);
    received.forEach((m, i) => assert.equal(m, body(i), `message ${i}`));
    assert.deepEqual(replies, Array.from({ length: N }, (_, i) => String(i).padStart(8, '0')));
  } finally {
    stream.cancel();
    await client.close();
    await peer.close();
  }
});

test('server: call.send waits for WRITABLE while the client does not read', async () => {
  let pendingAfterLoop = -1;
  let sentAll = false;
  const server = new Server({
    sendQueueLimit: 4,
    handler: {
      async onOpen(call) {
        let settled = 0;
        const sends = [];
        for (let i = 0; i < N; i++) sends.push(call.send(body(i)).then(() => { settled++; }));
        await new Promise((r) => setTimeout(r, 20));
        pendingAfterLoop = N - settled;
        await Promise.all(sends);
        sentAll = true;
        call.complete();
      },
    },
  });
  const client = grpcClient(server.port);
  const call = client.chat();
  call.on('error', () => {});
  try {
    await waitFor(() => pendingAfterLoop >= 0, 10000, 'the handler to send');
    assert.ok(pendingAfterLoop > 0, `all ${N} replies (32 MiB) were taken while the client read nothing`);
    assert.equal(sentAll, false);
    const replies = [];
    const done = new Promise((resolve, reject) => {
      call.on('data', (r) => replies.push(r.value));
      call.on('error', reject);
      call.on('status', (s) => (s.code === 0 ? resolve() : reject(new Error(s.details))));
    });
    call.end();
    await within(done, 30000, 'every reply');
    assert.equal(sentAll, true);
    assert.equal(replies.length, N);
    replies.forEach((r, i) => assert.equal(r, body(i), `reply ${i}`));
  } finally {
    call.cancel();
    client.close();
    await server.close();
  }
});

// End to end with this package on both sides: a handler that has not
// finished with a message keeps it counting against recvWindow, a reply not
// iterated yet keeps counting against recvQueueLimit (hold_until_consumed),
// so what waits in JS stays bounded and the sender is slowed down.
const M = 1500;
const MID = 32 * 1024;   // M * MID = 48 MiB: more than every buffer on the way
const mid = (i) => `${String(i).padStart(8, '0')}${'y'.repeat(MID - 8)}`;

// Resolves once `progress()` has not moved for `quietMs` while `waiting()`
// holds: the sender is stalled. Rejects after `ms`.
async function stalled(progress, waiting, quietMs, ms, what) {
  let last = -1, since = Date.now();
  await waitFor(() => {
    const p = progress();
    if (p !== last || !waiting()) { last = p; since = Date.now(); return false; }
    return Date.now() - since >= quietMs;
  }, ms, what);
}

function noWarnings() {
  const warnings = [];
  const on = (w) => { if (/libchat/.test(w.message)) warnings.push(w.message); };
  process.on('warning', on);
  return { warnings, off: () => process.off('warning', on) };
}

test('a slow async handler slows a fast client down: nothing fails, all in order', async () => {
  const WINDOW = 16;
  let release;
  const gate = new Promise((r) => { release = r; });
  const got = [];
  const errors = [];
  const server = new Server({
    recvWindow: WINDOW,
    handler: {
      async onOpen() { await gate; },
      async onMessage(call, name, message) {
        await new Promise((r) => setImmediate(r));
        got.push(message);
      },
    },
  });
  server.on('handlerError', (err) => errors.push(err));
  const w = noWarnings();
  const client = new Client(`127.0.0.1:${server.port}`, { sendQueueLimit: 4 });
  const stream = client.chat();
  const pending = () => {
    const call = [...server._calls.values()][0];
    return call ? call._pendingMessages : 0;
  };
  try {
    let settled = 0;
    const sends = [];
    for (let i = 0; i < M; i++) sends.push(stream.send('n', mid(i)).then(() => { settled++; }));
    stream.complete();
    // The handler takes nothing: the library holds WINDOW messages for it,
    // stops reading the call, and the client's sends stall waiting for
    // WRITABLE (without the hold every message would come into JS).
    await stalled(() => settled, () => stream._sends.length > 0, 300, 20000,
      'the client sends to stall');
    assert.ok(settled < M, `${settled} of ${M}`);
    assert.equal(pending(), WINDOW);
    release();
    await within(Promise.all(sends), 30000, 'every send to resolve');
    const status = await within(stream.finished, 30000, 'the end');
    assert.equal(status.code, Code.OK, status.details);
    assert.equal(got.length, M);
    got.forEach((m, i) => assert.equal(m, mid(i), `message ${i}`));
    assert.deepEqual(errors, []);
    assert.deepEqual(w.warnings, []);
  } finally {
    w.off();
    release();
    stream.cancel();
    await client.close();
    await server.close();
  }
});

test('replies not iterated stay in the library (recvQueueLimit) and slow the server down', async () => {
  const LIMIT = 8;
  let settled = 0;
  let call = null;
  const server = new Server({
    sendQueueLimit: 4,
    handler: {
      async onOpen(c) {
        call = c;
        const sends = [];
        for (let i = 0; i < M; i++) sends.push(c.send(mid(i)).then(() => { settled++; }));
        await Promise.all(sends);
        c.complete();
      },
    },
  });
  const w = noWarnings();
  const client = new Client(`127.0.0.1:${server.port}`, { recvQueueLimit: LIMIT });
  const stream = client.chat();
  let most = 0;
  try {
    stream.send('n', 'go');
    // Nobody iterates: the stream holds LIMIT replies, the rest stay on the
    // wire and the server's sends stall.
    await stalled(() => settled, () => {
      most = Math.max(most, stream.bufferedReplies);
      return call !== null && call._sends.length > 0;
    }, 300, 20000, 'the server sends to stall');
    assert.ok(settled < M, `${settled} of ${M}`);
    assert.ok(most <= LIMIT, `${most} replies buffered in JS`);
    assert.equal(stream.bufferedReplies, LIMIT);
    stream.complete();
    let i = 0;
    for await (const r of stream) {
      most = Math.max(most, stream.bufferedReplies);
      assert.equal(r, mid(i), `reply ${i}`);
      i++;
    }
    assert.equal(i, M);
    assert.ok(most <= LIMIT, `${most} replies buffered in JS`);
    assert.equal(settled, M);
    assert.deepEqual(w.warnings, []);
  } finally {
    w.off();
    stream.cancel();
    await client.close();
    await server.close();
  }
});
