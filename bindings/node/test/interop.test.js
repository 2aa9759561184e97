'use strict';
// Interop with @grpc/grpc-js, both ways, from proto/chat.proto.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client, Server, Code, ChatError } = require('..');
const { SEED, SEED_REPLIES, within, collect, collectError, grpc, grpcServer, grpcClient } = require('./helpers');

// grpc-js's duplex call, collected: replies and the final status.
function grpcCall(port, messages, metadata) {
  const { grpc: g } = grpc();
  const client = grpcClient(port);
  const md = new g.Metadata();
  for (const [k, v] of Object.entries(metadata || {})) md.add(k, v);
  const call = client.chat(md);
  const replies = [];
  const done = new Promise((resolve) => {
    call.on('data', (r) => replies.push(r.value));
    call.on('error', (err) => resolve({ replies, code: err.code, details: err.details }));
    call.on('status', (s) => { if (s.code === 0) resolve({ replies, code: 0, details: s.details }); });
  });
  for (const [name, message] of messages) call.write({ name, message });
  call.end();
  return done.finally(() => client.close());
}

test('this client against a grpc-js echo server', async () => {
  let seenMetadata = null;
  const peer = await grpcServer((call) => {
    seenMetadata = call.metadata.getMap();
    call.on('data', (m) => call.write({ value: `${m.name}: ${m.message}` }));
    call.on('end', () => call.end());
  });
  const client = new Client(`127.0.0.1:${peer.port}`);
  try {
    const stream = client.chat({ metadata: { 'x-room': 'lobby', 'x-key-bin': Buffer.from([1, 0, 2]) } });
    for (const [n, m] of SEED) await stream.send(n, m);
    // UTF-8 beyond ASCII, an embedded NUL, an empty message, a long one.
    await stream.send('Zoë', 'héllo ✓ 😀');
    await stream.send('nul', 'a\u0000b');
    await stream.send('', '');
    await stream.send('big', 'x'.repeat(100000));
    await stream.send('lone', '\ud800x\udfff');   // lone surrogates go as U+FFFD
    stream.complete();
    const replies = await within(collect(stream), 10000, 'replies');
    assert.deepEqual(replies, [...SEED_REPLIES, 'Zoë: héllo ✓ 😀', 'nul: a\u0000b', ': ', `big: ${'x'.repeat(100000)}`,
      'lone: \ufffdx\ufffd']);
    assert.equal(seenMetadata['x-room'], 'lobby');
    assert.deepEqual(Buffer.from(seenMetadata['x-key-bin']), Buffer.from([1, 0, 2]));
  } finally {
    await client.close();
    await peer.close();
  }
});

test('a grpc-js server error reaches this client as a ChatError', async () => {
  const { grpc: g } = grpc();
  const peer = await grpcServer((call) => {
    call.on('data', (m) => {
      call.write({ value: `${m.name}: ${m.message}` });
      call.emit('error', { code: g.status.PERMISSION_DENIED, details: 'not in this room' });
    });
  });
  const client = new Client(`127.0.0.1:${peer.port}`);
  try {
    const stream = client.chat();
    await stream.send('Sam', 'Hi');
    const { replies, error } = await within(collectError(stream), 10000, 'the error');
    assert.deepEqual(replies, ['Sam: Hi']);
    assert.ok(error instanceof ChatError);
    assert.equal(error.code, Code.PERMISSION_DENIED);
    assert.equal(error.codeName, 'PERMISSION_DENIED');
    assert.equal(error.details, 'not in this room');
    assert.deepEqual(stream.status, { code: 7, codeName: 'PERMISSION_DENIED', details: 'not in this room' });
  } finally {
    await client.close();
    await peer.close();
  }
});

test('a grpc-js client against this echo server and this JS handler server', async () => {
  const echo = new Server({ mode: 'echo' });
  const seen = [];
  const js = new Server({
    handler: {
      onOpen(call) { seen.push(call.metadata['x-room']); },
      async onMessage(call, name, message) { await call.send(`${name}: ${message}`); },
    },
  });
  try {
    for (const server of [echo, js]) {
      const r = await within(grpcCall(server.port, SEED, { 'x-room': 'lobby' }), 10000, 'grpc-js call');
      assert.deepEqual(r, { replies: SEED_REPLIES, code: 0, details: '' });
    }
    assert.deepEqual(seen, ['lobby']);
  } finally {
    await echo.close();
    await js.close();
  }
});

test('call.fail reaches a grpc-js client with its code and details', async () => {
  const server = new Server({
    handler: {
      onMessage(call, name) {
        if (name === 'Mallory') call.fail(Code.PERMISSION_DENIED, 'Mallory is banned');
        else return call.send(`${name}: ok`);
      },
    },
  });
  try {
    const r = await within(grpcCall(server.port, [['Sam', 'Hi'], ['Mallory', 'x'], ['Ann', 'y']]), 10000, 'grpc-js call');
    assert.deepEqual(r, { replies: ['Sam: ok'], code: 7, details: 'Mallory is banned' });
  } finally {
    await server.close();
  }
});

// grpc-js's health client, from the health.proto libchat embeds (CMake
// passes its path), against a server with health and reflection on.
test('health: grpc-js checks a server started with health: true',
  { skip: !process.env.CHAT_HEALTH_PROTO && 'CHAT_HEALTH_PROTO not set' }, async () => {
    const { grpc: g } = grpc();
    const loader = require('@grpc/proto-loader');
    const def = loader.loadSync(process.env.CHAT_HEALTH_PROTO, { keepCase: true, enums: String });
    const { Health } = g.loadPackageDefinition(def).grpc.health.v1;
    const check = (port, service) => new Promise((resolve) => {
      const client = new Health(`127.0.0.1:${port}`, g.credentials.createInsecure());
      client.Check({ service }, { deadline: Date.now() + 10000 }, (err, r) => {
        client.close();
        resolve(err ? err.code : r.status);
      });
    });
    const on = new Server({ health: true, reflection: true });
    const off = new Server({ reflection: true });
    try {
      assert.equal(await check(on.port, ''), 'SERVING');
      assert.equal(await check(on.port, 'Chat'), 'SERVING');
      assert.equal(await check(on.port, 'nope'), g.status.NOT_FOUND);
      assert.equal(await check(off.port, ''), g.status.UNIMPLEMENTED);
    } finally {
      await on.stop(0);
      await off.stop(0);
    }
  });
