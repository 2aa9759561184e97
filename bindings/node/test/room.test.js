'use strict';
// Room: a JS handler joins its calls to a room and publishes what it lets
// through; in this process and on a redis-server of the test's own.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client, Server, Room, Code, ChatError } = require('..');
const { within, collect, waitFor, startRedis } = require('./helpers');

// A host: every call joins (after the replay its metadata asks for);
// "spam" stays private; the rest goes to the room.
function lobby(room, calls = {}) {
  return new Server({
    handler: {
      async onOpen(call) {
        calls[call.metadata.who] = call;
        await room.join(call, Number(call.metadata.replay || 0));
      },
      async onMessage(call, name, message) {
        if (message.includes('spam')) await call.send('not sent: spam');
        else await room.publish(name, message);
      },
    },
  });
}

// The next `n` replies of a stream.
async function take(stream, n) {
  const out = [];
  const it = stream[Symbol.asyncIterator]();
  while (out.length < n) {
    const { value, done } = await within(it.next(), 10000, `reply ${out.length + 1} of ${n}`);
    if (done) break;
    out.push(value);
  }
  return out;
}

// Says hello and reads until it comes back: the member is then in the room.
async function enter(stream, name) {
  stream.send(name, 'hello');
  for (;;) {
    const [line] = await take(stream, 1);
    assert.ok(line !== undefined, `${name}'s stream ended before its hello came back`);
    if (line === `${name}: hello`) return;
  }
}

const noHellos = (lines) => lines.filter((l) => !l.endsWith(': hello'));

test('members of a room in this process see one sequence; filtered lines stay private', async () => {
  const room = new Room();
  const calls = {};
  const server = lobby(room, calls);
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const a = client.chat({ metadata: { who: 'a' } }), b = client.chat({ metadata: { who: 'b' } });
    await enter(a, 'a');
    await enter(b, 'b');
    const rounds = 100;
    for (let i = 0; i < rounds; i++) {
      a.send('a', String(i));
      b.send('b', String(i));
      if (i === 50) a.send('a', 'buy spam');
    }
    const atA = noHellos(await take(a, 2 * rounds + 2));
    const atB = noHellos(await take(b, 2 * rounds));
    assert.ok(atA.includes('not sent: spam'));
    assert.deepEqual(atA.filter((l) => l !== 'not sent: spam'), atB);
    assert.deepEqual(atB.filter((l) => l.startsWith('a: ')), [...Array(rounds).keys()].map((i) => `a: ${i}`));
    assert.equal(room.members, 2);
    // b leaves: a's next line does not reach it.
    assert.equal(room.leave(calls.b), true);
    assert.equal(room.leave(calls.b), false);
    a.send('a', 'after');
    assert.deepEqual(noHellos(await take(a, 1)), ['a: after']);
    b.complete();
    assert.deepEqual(await within(collect(b), 10000, 'b ends'), []);
    await waitFor(() => room.members === 1, 5000, 'one member');
  } finally {
    await room.close();
    await client.close();
    await server.close();
  }
});

test('bad arguments throw, a closed room rejects, a bad URL fails to open', async () => {
  const room = new Room();
  assert.throws(() => room.publish(1, 'x'), TypeError);
  assert.throws(() => room.join({}), TypeError);
  assert.throws(() => room.join(null), TypeError);
  assert.throws(() => room.join({ _ptr: null }, 1001), RangeError);
  await room.publish('a', 'nobody listens');
  await room.notice('a notice');
  const closing = room.close();
  assert.equal(room.close(), closing);
  await assert.rejects(room.publish('a', 'b'), (e) => e instanceof ChatError && e.code === Code.ERR_CLOSED);
  await closing;
  assert.throws(() => room.members, (e) => e instanceof ChatError && e.code === Code.ERR_CLOSED);
  assert.throws(() => new Room({ url: 'http://127.0.0.1:1', name: 'x' }),
                (e) => e instanceof ChatError && e.code === Code.ERR_BAD_ARGUMENT && /redis:\/\//.test(e.message));
  assert.throws(() => new Room({ url: 'redis://127.0.0.1:1' }),
                (e) => e instanceof ChatError && e.code === Code.ERR_BAD_ARGUMENT);
});

test('two Node hosts share a room on Redis; a late joiner replays; Redis gone rejects', async () => {
  const redis = await startRedis();
  const rooms = [new Room({ url: redis.url, name: 'node' }), new Room({ url: redis.url, name: 'node' })];
  const servers = rooms.map((r) => lobby(r));
  const clients = servers.map((s) => new Client(`127.0.0.1:${s.port}`));
  try {
    const a = clients[0].chat(), b = clients[1].chat();
    await enter(a, 'a');
    await enter(b, 'b');
    for (let i = 0; i < 50; i++) { a.send('a', String(i)); b.send('b', String(i)); }
    const atA = noHellos(await take(a, 101)).slice(0, 100);
    const atB = noHellos(await take(b, 100));
    assert.equal(atA.length, 100);
    assert.deepEqual(atB.slice(0, atA.length), atA);
    const late = clients[1].chat({ metadata: { replay: '2' } });
    assert.deepEqual(await take(late, 2), atA.slice(-2));
    redis.kill();
    await assert.rejects(rooms[0].publish('a', 'lost'),
                         (e) => e instanceof ChatError && e.code === Code.UNAVAILABLE);
  } finally {
    redis.kill();
    for (const r of rooms) await r.close();
    for (const c of clients) await c.close();
    for (const s of servers) await s.close();
  }
});
