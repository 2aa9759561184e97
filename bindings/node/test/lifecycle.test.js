'use strict';
// Stops with calls open, cancel and deadline, many concurrent streams.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { Client, Server, Code, ChatError } = require('..');
const { within, collect, collectError, waitFor } = require('./helpers');

test('stop while calls are open: it returns, the calls end with UNAVAILABLE', async () => {
  const closes = [];
  const opened = [];
  const server = new Server({
    handler: {
      onOpen(call) { opened.push(call.id); },
      onMessage(call, n, m) { return call.send(`${n}: ${m}`); },
      onComplete() { /* never completes: the calls stay open */ },
      onClose(call, code, details) { closes.push({ id: call.id, code, details }); },
    },
  });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const streams = [client.chat(), client.chat(), client.chat()];
    for (const s of streams) await s.send('a', 'b');
    const its = streams.map((s) => s[Symbol.asyncIterator]());
    for (const it of its) assert.deepEqual(await within(it.next(), 5000, 'first reply'), { value: 'a: b', done: false });
    streams[0].complete();   // half-closed, not completed by the server: still open
    const t0 = Date.now();
    const cut = await within(server.stop(300), 10000, 'server.stop with open calls');
    const took = Date.now() - t0;
    assert.equal(cut, 3);
    assert.ok(took >= 250, `stop returned after ${took} ms, before its grace`);
    for (const it of its) {
      await assert.rejects(within(it.next(), 5000, 'the cut'), (err) => err instanceof ChatError && err.code === Code.UNAVAILABLE);
    }
    await waitFor(() => closes.length === 3, 5000, 'onClose of the cut calls');
    assert.deepEqual(closes.map((c) => c.code).sort(), [Code.UNAVAILABLE, Code.UNAVAILABLE, Code.UNAVAILABLE]);
    // Stopped: new streams are refused.
    const late = client.chat();
    const { error } = await within(collectError(late), 5000, 'refused');
    assert.equal(error.code, Code.UNAVAILABLE);
    assert.equal(await server.stop(0), 3, 'stop again: the same outcome');
  } finally {
    await client.close();
    await server.close();
  }
});

// The old deadlock: chat_server_stop called on the thread that would have
// run the callbacks. With the queue it must return; a child process runs it
// so that a hang fails this test instead of freezing the runner.
test('chat_server_stop called synchronously on the main thread returns with calls open', () => {
  const script = `
    const { Server, Client } = require(${JSON.stringify(require.resolve('..'))});
    const { C } = require(${JSON.stringify(require.resolve('../lib/native'))});
    const server = new Server({ handler: { onMessage: (call) => call.send('x'), onComplete() {} } });
    const client = new Client('127.0.0.1:' + server.port);
    const s = client.chat();
    s.send('a', 'b');
    (async () => {
      const it = s[Symbol.asyncIterator]();
      await it.next();                        // the call is open on the server
      const t0 = Date.now();
      const rc = C.chat_server_stop(server._ptr, 200, null);   // blocks the main thread
      console.log('stop rc', rc, 'ms', Date.now() - t0 < 5000 ? 'ok' : Date.now() - t0);
      try { await it.next(); } catch (e) { console.log('stream', e.codeName); }
      await server.close(); await client.close();
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 30000, encoding: 'utf8' });
  assert.equal(r.error, undefined, `the child hung: ${r.stdout} ${r.stderr}`);
  assert.equal(r.stderr, '');
  assert.equal(r.stdout, 'stop rc 0 ms ok\nstream UNAVAILABLE\n');
  assert.equal(r.status, 0);
});

test('close() without stop: open calls end with UNAVAILABLE, their onClose runs', async () => {
  const closes = [];
  const server = new Server({
    handler: { onMessage: (call, n, m) => call.send(m), onComplete() {}, onClose: (call, code) => closes.push(code) },
  });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const s = client.chat();
    await s.send('a', 'one');
    const it = s[Symbol.asyncIterator]();
    assert.deepEqual(await within(it.next(), 5000, 'reply'), { value: 'one', done: false });
    await within(server.close(), 10000, 'close');
    await assert.rejects(within(it.next(), 5000, 'the cut'), (e) => e.code === Code.UNAVAILABLE);
    await waitFor(() => closes.length === 1, 5000, 'onClose');
    assert.deepEqual(closes, [Code.UNAVAILABLE]);
    assert.equal(server._calls.size, 0);
    await server.close();  // idempotent
  } finally {
    await client.close();
  }
});

test('client.close() leaves its open streams usable', async () => {
  const server = new Server();
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const s = client.chat();
    await s.send('a', 'before');
    await client.close();
    await s.send('a', 'after');
    s.complete();
    assert.deepEqual(await within(collect(s), 5000, 'replies'), ['a: before', 'a: after']);
  } finally {
    await server.close();
  }
});

test('a failing handler without a listener makes a process warning', async () => {
  const warnings = [];
  const onWarning = (w) => warnings.push(w.message);
  process.on('warning', onWarning);
  const server = new Server({ handler: { onOpen() { throw new Error('oops'); } } });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const { error } = await within(collectError(client.chat()), 5000, 'the end');
    assert.equal(error.code, Code.UNKNOWN);
    await waitFor(() => warnings.length === 1, 5000, 'the warning');
    assert.match(warnings[0], /a handler of call 1 failed: Error: oops/);
  } finally {
    process.off('warning', onWarning);
    await client.close();
    await server.close();
  }
});

test('a grace long enough lets calls finish by themselves', async () => {
  let release;
  const gate = new Promise((r) => { release = r; });
  const server = new Server({
    handler: { async onComplete(call) { await gate; await call.send('last words'); call.complete(); } },
  });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const s = client.chat();
    s.complete();
    await waitFor(() => server._calls.size === 1, 5000, 'the call');
    const stopped = server.stop(10000);
    setTimeout(release, 100);
    assert.equal(await within(stopped, 10000, 'stop'), 0);
    assert.deepEqual(await within(collect(s), 5000, 'replies'), ['last words']);
  } finally {
    release();
    await client.close();
    await server.close();
  }
});

test('cancel: the stream ends with CANCELLED, the server sees CANCELLED', async () => {
  const closes = [];
  const server = new Server({
    handler: { onMessage: (call, n, m) => call.send(m), onClose: (call, code) => closes.push(code) },
  });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const s = client.chat();
    await s.send('a', 'one');
    const it = s[Symbol.asyncIterator]();
    assert.deepEqual(await within(it.next(), 5000, 'reply'), { value: 'one', done: false });
    s.cancel();
    await assert.rejects(within(it.next(), 5000, 'the end'), (e) => e instanceof ChatError && e.code === Code.CANCELLED);
    assert.equal(s.status.code, Code.CANCELLED);
    await assert.rejects(s.send('a', 'two'), (e) => e.code === Code.ERR_CLOSED && /CANCELLED/.test(e.message));
    s.cancel();  // idempotent
    await waitFor(() => closes.length === 1, 5000, 'the server side');
    assert.deepEqual(closes, [Code.CANCELLED]);
  } finally {
    await client.close();
    await server.close();
  }
});

test('breaking out of for-await cancels the stream', async () => {
  const server = new Server({ handler: { async onOpen(call) { for (let i = 0; i < 5; i++) await call.send(String(i)); } } });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const s = client.chat();
    for await (const r of s) { assert.equal(r, '0'); break; }
    const st = await within(s.finished, 5000, 'the end');
    assert.equal(st.code, Code.CANCELLED);
  } finally {
    await client.close();
    await server.close();
  }
});

test('deadline: the stream ends with DEADLINE_EXCEEDED', async () => {
  const closes = [];
  const server = new Server({ handler: { onClose: (call, code) => closes.push(code) } });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const t0 = Date.now();
    const s = client.chat({ deadlineMs: 200 });
    await s.send('a', 'b');
    const { error } = await within(collectError(s), 5000, 'the deadline');
    assert.equal(error.code, Code.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - t0 >= 150, 'ended before its deadline');
    await waitFor(() => closes.length === 1, 5000, 'the server side');
    assert.ok([Code.DEADLINE_EXCEEDED, Code.CANCELLED].includes(closes[0]), String(closes[0]));
  } finally {
    await client.close();
    await server.close();
  }
});

test('an unreachable server ends the stream with UNAVAILABLE', async () => {
  const server = new Server();
  const port = server.port;
  await server.close();
  const client = new Client(`127.0.0.1:${port}`);
  try {
    const s = client.chat();
    const { error } = await within(collectError(s), 10000, 'UNAVAILABLE');
    assert.equal(error.code, Code.UNAVAILABLE);
  } finally {
    await client.close();
  }
});

for (const kind of ['echo', 'handler']) {
  test(`1,000 concurrent streams (${kind} server)`, async () => {
    const server = kind === 'echo' ? new Server()
      : new Server({ handler: { onMessage: (call, n, m) => call.send(`${n}: ${m}`) } });
    const client = new Client(`127.0.0.1:${server.port}`);
    try {
      const streams = [];
      for (let i = 0; i < 1000; i++) streams.push(client.chat({ deadlineMs: 60000 }));
      const results = streams.map(async (s, i) => {
        for (let k = 0; k < 5; k++) await s.send(`s${i}`, `m${k}`);
        s.complete();
        return collect(s);
      });
      const all = await within(Promise.all(results), 60000, '1,000 streams');
      all.forEach((replies, i) => assert.deepEqual(replies, [0, 1, 2, 3, 4].map((k) => `s${i}: m${k}`)));
    } finally {
      await client.close();
      await server.close();
    }
  });
}
