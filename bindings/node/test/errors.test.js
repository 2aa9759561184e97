'use strict';
// Bad arguments raise clear errors: TypeError / RangeError for what JS can
// tell, ChatError (with the library's per-handle message) for the rest.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client, Server, Code, ChatError, codeName } = require('..');
const { within, collect } = require('./helpers');

function chatError(code, pattern) {
  return (err) => {
    assert.ok(err instanceof ChatError, `not a ChatError: ${err}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.codeName, codeName(code));
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

test('code names', () => {
  assert.equal(codeName(Code.DEADLINE_EXCEEDED), 'DEADLINE_EXCEEDED');
  assert.equal(codeName(Code.ERR_WOULD_BLOCK), 'WOULD_BLOCK');
  assert.equal(codeName(999), 'UNRECOGNIZED');
  assert.equal(Code.END_OF_STREAM, 20);
  assert.equal(Code.ERR_CANNOT_LISTEN, 27);
});

test('the package carries the version of the libchat it binds', () => {
  const { C } = require('../lib/native');
  assert.equal(require('../package.json').version, C.chat_version());
});

test('the typed Code in index.d.ts is the library\'s table', () => {
  const dts = require('node:fs').readFileSync(require('node:path').join(__dirname, '..', 'index.d.ts'), 'utf8');
  const block = dts.slice(dts.indexOf('export declare const Code'), dts.indexOf('}>;'));
  const typed = Object.fromEntries([...block.matchAll(/^\s+(\w+): (\d+);$/gm)].map((m) => [m[1], Number(m[2])]));
  assert.deepEqual(typed, { ...Code });
});

test('client: bad targets and options', () => {
  assert.throws(() => new Client(), TypeError);
  assert.throws(() => new Client(9090), /target must be a string/);
  assert.throws(() => new Client(''), chatError(Code.ERR_BAD_ARGUMENT, /cannot create a client for ""/));
  assert.throws(() => new Client('ftp://localhost:9090'), chatError(Code.ERR_BAD_ARGUMENT, /ftp/i));
  assert.throws(() => new Client('localhost'), chatError(Code.ERR_BAD_ARGUMENT, /port/));
  assert.throws(() => new Client('localhost:99999'), chatError(Code.ERR_BAD_ARGUMENT));
  assert.throws(() => new Client('localhost:1', { sendQueueLimit: 0 }), RangeError);
  assert.throws(() => new Client('localhost:1', { keepaliveMs: 1.5 }), TypeError);
  assert.throws(() => new Client('localhost:1', null), TypeError);
});

test('server: bad addresses, modes and options', () => {
  assert.throws(() => new Server({ address: 'nope' }), chatError(Code.ERR_BAD_ARGUMENT, /cannot start a server on "nope"/));
  assert.throws(() => new Server({ address: '127.0.0.1:70000' }), chatError(Code.ERR_BAD_ARGUMENT));
  assert.throws(() => new Server({ mode: 'shout' }), /mode must be "echo" or "broadcast"/);
  assert.throws(() => new Server({ handler: 42 }), TypeError);
  assert.throws(() => new Server({ handler: { onMessage: 'x' } }), /handler.onMessage must be a function/);
  assert.throws(() => new Server({ mode: 'echo', handler: {} }), TypeError);
  assert.throws(() => new Server({ recvWindow: -1 }), RangeError);
  assert.throws(() => new Server({ completionQueues: 1000 }), RangeError);
  assert.throws(() => new Server({ health: 1 }), /options.health must be a boolean/);
  assert.throws(() => new Server({ reflection: 'yes' }), /options.reflection must be a boolean/);
  const a = new Server();
  try {
    assert.throws(() => new Server({ address: `127.0.0.1:${a.port}` }), chatError(Code.ERR_CANNOT_LISTEN));
    assert.throws(() => a.stop(-1), RangeError);
    assert.throws(() => a.stop('1'), TypeError);
  } finally {
    a.close();
  }
});

test('stream and call: bad arguments and use after the end', async () => {
  let callErrors = null;
  const server = new Server({
    handler: {
      onMessage(call) {
        callErrors = [];
        for (const f of [() => call.send(1), () => call.fail(0, 'x'), () => call.fail(17, 'x'), () => call.fail(3, 4)]) {
          try { f(); callErrors.push('no error'); } catch (err) { callErrors.push(err.constructor.name); }
        }
        call.complete();
        call.complete();   // idempotent
      },
    },
  });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    assert.throws(() => client.chat({ deadlineMs: -5 }), RangeError);
    assert.throws(() => client.chat({ metadata: 'x' }), TypeError);
    assert.throws(() => client.chat({ metadata: { 'x-a': 5 } }), TypeError);
    assert.throws(() => client.chat({ metadata: { 'x-a': 'a\u0000b' } }), /-bin/);
    assert.throws(() => client.chat({ metadata: { 'grpc-timeout': '1' } }), chatError(Code.ERR_BAD_ARGUMENT, /cannot open a stream/));
    assert.throws(() => client.chat({ metadata: { 'Upper': 'x' } }), chatError(Code.ERR_BAD_ARGUMENT));
    const s = client.chat();
    assert.throws(() => s.send('name'), TypeError);
    assert.throws(() => s.send(null, 'x'), /name must be a string \(got null\)/);
    await s.send('a', 'b');
    assert.deepEqual(await within(collect(s), 5000, 'end'), []);
    assert.deepEqual(callErrors, ['TypeError', 'RangeError', 'RangeError', 'TypeError']);
    await assert.rejects(s.send('a', 'b'), chatError(Code.ERR_CLOSED, /the stream has ended \(OK\)/));
    s.complete();   // no-op after the end
    s.cancel();     // no-op after the end

    const t = client.chat();
    t.complete();
    await assert.rejects(t.send('a', 'b'), chatError(Code.ERR_CLOSED, /half-closed/));
    await within(collect(t), 5000, 'end');
  } finally {
    await client.close();
    await server.close();
  }
  assert.throws(() => client.chat(), chatError(Code.ERR_CLOSED, /closed/));
});

test('a message over max_message_bytes is refused with the library message', async () => {
  const server = new Server();
  const client = new Client(`127.0.0.1:${server.port}`, { maxMessageBytes: 1024 });
  try {
    const s = client.chat();
    await assert.rejects(s.send('a', 'x'.repeat(4096)), chatError(Code.ERR_TOO_LARGE, /send: TOO_LARGE: .+/));
    await s.send('a', 'small');
    s.complete();
    assert.deepEqual(await within(collect(s), 5000, 'end'), ['a: small']);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a CHAT_LIBRARY that cannot be loaded is a clear error', () => {
  const { spawnSync } = require('node:child_process');
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(require.resolve('..'))})`],
    { env: { ...process.env, CHAT_LIBRARY: '/nonexistent/libchat.so.1' }, encoding: 'utf8', timeout: 20000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /libchat: cannot load libchat\.so\.1; set CHAT_LIBRARY to its path\. Tried:\n {2}\/nonexistent\/libchat\.so\.1 \(CHAT_LIBRARY\)/);
});
