'use strict';
// Sends that find the library's send queue full wait for WRITABLE: they
// never block the loop and nothing is lost or reordered. The peer is a
// grpc-js server / client that stops reading, so HTTP/2 flow control and
// the kernel's buffers fill up and the library's send queue with them.

const { test: baseTest } = require('node:test');
const test = (name, fn) => baseTest(name, { timeout: 60000 }, fn);
const assert = require('node:assert/strict');
const { Client, Server } = require('..');
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
