'use strict';
// A JS handler server driven by this package's client: order, async
// handlers, custom completion, failures, metadata, ids.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client, Server, Code, ChatError } = require('..');
const { within, collect, collectError, waitFor } = require('./helpers');

function pair(handler, serverOptions = {}) {
  const server = new Server({ ...serverOptions, handler });
  const client = new Client(`127.0.0.1:${server.port}`);
  return { server, client, close: async () => { await client.close(); await server.close(); } };
}

test('handler calls of one call run in order, one at a time, async or not', async () => {
  const log = [];
  let running = 0, maxRunning = 0;
  const { client, close } = pair({
    async onOpen(call) { log.push(`open ${call.id}`); },
    async onMessage(call, name, message) {
      running++; maxRunning = Math.max(maxRunning, running);
      // Later messages wait: a random await in between must not reorder them.
      await new Promise((r) => setTimeout(r, Number(message) % 3));
      await call.send(`${name}:${message}`);
      running--;
    },
    onComplete(call) { log.push('complete'); call.send('bye').then(() => call.complete()); },
    onClose(call, code, details) { log.push(`close ${code} ${JSON.stringify(details)}`); },
  });
  try {
    const stream = client.chat();
    const want = [];
    for (let i = 0; i < 200; i++) { stream.send('n', String(i)); want.push(`n:${i}`); }
    stream.complete();
    assert.deepEqual(await within(collect(stream), 10000, 'replies'), [...want, 'bye']);
    await waitFor(() => log.length === 3, 5000, 'onClose');
    assert.deepEqual(log, ['open 1', 'complete', 'close 0 ""']);
    assert.equal(maxRunning, 1);
  } finally {
    await close();
  }
});

test('calls get ids from 1, their peer and metadata', async () => {
  const opened = [];
  const { client, close } = pair({
    onOpen(call) { opened.push({ id: call.id, peer: call.peer, md: call.metadata }); },
  });
  try {
    for (let i = 0; i < 3; i++) {
      const s = client.chat({ metadata: { 'x-n': String(i), 'x-multi': ['a', 'b'], 'x-raw-bin': Buffer.from([0xff, 0]) } });
      s.complete();
      await within(collect(s), 5000, 'end');
    }
    assert.deepEqual(opened.map((o) => o.id), [1, 2, 3]);
    for (const [i, o] of opened.entries()) {
      assert.match(o.peer, /^ipv4:127\.0\.0\.1:\d+$/);
      assert.equal(o.md['x-n'], String(i));
      assert.deepEqual(o.md['x-multi'], ['a', 'b']);
      assert.deepEqual(o.md['x-raw-bin'], Buffer.from([0xff, 0]));
    }
  } finally {
    await close();
  }
});

test('the server may send first, keep sending after the half-close and complete later', async () => {
  const { client, close } = pair({
    async onOpen(call) { await call.send('welcome'); },
    onMessage() {},
    async onComplete(call) {
      for (let i = 0; i < 3; i++) await call.send(`late ${i}`);
      call.complete();
    },
  });
  try {
    const s = client.chat();
    await s.send('x', 'y');
    s.complete();
    assert.deepEqual(await within(collect(s), 5000, 'replies'), ['welcome', 'late 0', 'late 1', 'late 2']);
  } finally {
    await close();
  }
});

test('call.fail: the client gets the code and details; sends after it fail', async () => {
  let afterFail = null;
  const { client, close } = pair({
    async onMessage(call, name) {
      if (name !== 'bad') return call.send('ok');
      call.fail(Code.FAILED_PRECONDITION, 'bad name');
      afterFail = await call.send('late').then(() => 'sent', (err) => err);
    },
  });
  try {
    const s = client.chat();
    await s.send('good', '1');
    await s.send('bad', '2');
    const { replies, error } = await within(collectError(s), 5000, 'end');
    assert.deepEqual(replies, ['ok']);
    assert.ok(error instanceof ChatError);
    assert.equal(error.code, Code.FAILED_PRECONDITION);
    assert.equal(error.details, 'bad name');
    assert.equal(error.message, 'FAILED_PRECONDITION: bad name');
    await waitFor(() => afterFail !== null, 5000, 'the late send');
    assert.ok(afterFail instanceof ChatError);
    assert.equal(afterFail.code, Code.ERR_CLOSED);
  } finally {
    await close();
  }
});

test('a handler that throws fails its call with UNKNOWN and is reported', async () => {
  const reported = [];
  const { server, client, close } = pair({
    onMessage(call, name) {
      if (name === 'boom') throw new Error('kaboom');
      return call.send('fine');
    },
  });
  server.on('handlerError', (err, call) => reported.push([err.message, call.id]));
  try {
    const s = client.chat();
    await s.send('a', '1');
    await s.send('boom', '2');
    const { replies, error } = await within(collectError(s), 5000, 'end');
    assert.deepEqual(replies, ['fine']);
    assert.equal(error.code, Code.UNKNOWN);
    assert.match(error.details, /kaboom/);
    assert.deepEqual(reported, [['kaboom', 1]]);
  } finally {
    await close();
  }
});

test('a rejected async handler is handled the same way', async () => {
  const reported = [];
  const { server, client, close } = pair({
    async onOpen() { await null; throw new RangeError('no room'); },
  });
  server.on('handlerError', (err) => reported.push(err.message));
  try {
    const s = client.chat();
    const { error } = await within(collectError(s), 5000, 'end');
    assert.equal(error.code, Code.UNKNOWN);
    assert.match(error.details, /no room/);
    assert.deepEqual(reported, ['no room']);
  } finally {
    await close();
  }
});

test('a handler held up: only recvWindow messages wait in JS, then it takes them all, in order', async () => {
  let release;
  const gate = new Promise((r) => { release = r; });
  let waiting = 0;
  let first = true;
  const { server, client, close } = pair({
    async onOpen() { if (first) { first = false; await gate; } },
    async onMessage(call, name, message) { await null; await call.send(message); },
  }, { recvWindow: 32 });
  const pending = () => {
    const call = [...server._calls.values()].find((c) => c.id === 1);
    return call ? call._pendingMessages : 0;
  };
  try {
    const s = client.chat();
    const want = [];
    for (let i = 0; i < 5000; i++) { s.send('n', String(i)); want.push(String(i)); }
    s.complete();
    // The messages the library holds for the handler fill its window, no more.
    await waitFor(() => (waiting = pending()) >= 32, 10000, `32 messages waiting (${waiting})`);
    // A round trip on a second call of the same connection: the server has
    // been reading meanwhile, yet the first call got nothing more.
    const other = client.chat();
    other.send('o', 'ping');
    other.complete();
    assert.deepEqual(await within(collect(other), 10000, 'the other call'), ['ping']);
    assert.equal(pending(), 32);
    release();
    assert.deepEqual(await within(collect(s), 20000, 'replies'), want);
  } finally {
    release();
    await close();
  }
});

test('messages handled after their call ended (cancelled, or a rejected handler) are reported done without error', async () => {
  let release;
  const gate = new Promise((r) => { release = r; });
  const warnings = [];
  const onWarning = (w) => { if (/libchat/.test(w.message)) warnings.push(w.message); };
  process.on('warning', onWarning);
  const seen = [];
  const closes = [];
  let theCall = null;
  const { server, client, close } = pair({
    async onMessage(call, name, message) {
      theCall = call;
      seen.push(message);
      if (message === '0') await gate;
      if (message === '2') throw new Error('boom');
    },
    onClose(call, code) { closes.push(code); },
  }, { recvWindow: 4 });
  server.on('handlerError', () => {});
  try {
    const s = client.chat();
    for (let i = 0; i < 4; i++) s.send('n', String(i));
    await waitFor(() => theCall !== null && theCall._pendingMessages === 3, 10000, '3 messages waiting');
    s.cancel();
    await waitFor(() => theCall.closed, 10000, 'the call to end');
    release();
    await waitFor(() => closes.length === 1, 10000, 'onClose');
    assert.deepEqual(seen, ['0', '1', '2', '3']);
    assert.deepEqual(closes, [Code.CANCELLED]);
    assert.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
    release();
    await close();
  }
});

test('many servers on the one queue: each call reaches its own server', async () => {
  const servers = [];
  const clients = [];
  const opened = [0, 0, 0];
  try {
    for (let i = 0; i < 3; i++) {
      servers.push(new Server({
        handler: {
          onOpen() { opened[i]++; },
          onMessage: (call, n, m) => call.send(`server ${i} call ${call.id}: ${m}`),
        },
      }));
      clients.push(new Client(`127.0.0.1:${servers[i].port}`));
    }
    // 50 streams per server at once, their first messages sent with the
    // open: many arrive in the same drain as their call's OPEN.
    const runs = [];
    for (let i = 0; i < 3; i++) {
      for (let k = 0; k < 50; k++) {
        const s = clients[i].chat();
        for (const m of ['a', 'b', 'c']) s.send('x', m);
        s.complete();
        runs.push(collect(s).then((replies) => ({ i, replies })));
      }
    }
    for (const { i, replies } of await within(Promise.all(runs), 20000, 'replies')) {
      assert.equal(replies.length, 3);
      const m = /^server (\d) call (\d+): a$/.exec(replies[0]);
      assert.ok(m && Number(m[1]) === i, replies[0]);
      assert.deepEqual(replies, ['a', 'b', 'c'].map((x) => `server ${i} call ${m[2]}: ${x}`));
    }
    assert.deepEqual(opened, [50, 50, 50]);
  } finally {
    for (const c of clients) await c.close();
    for (const s of servers) await s.close();
  }
});
