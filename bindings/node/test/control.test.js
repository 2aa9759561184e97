'use strict';
// libchat 1.1's production options through this package: TLS and mTLS,
// bearer tokens, compression, limits, stats, deadlines and server metadata.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http2 = require('node:http2');
const zlib = require('node:zlib');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Client, Server, Code, ChatError } = require('..');
const {
  REPO, SEED, SEED_REPLIES, CHAT_SERVER_BIN, within, waitFor, collect, collectError, grpc,
  spawnWithFirstLine, exited, startRedis,
} = require('./helpers');

// Certificates made once for this file (tests/security/make_certs.sh).
let certDir = null;
function certs() {
  if (certDir === null) {
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'libchat-node-certs-'));
    const r = spawnSync('sh', [path.join(REPO, 'tests', 'security', 'make_certs.sh'), certDir],
      { encoding: 'utf8', timeout: 60000 });
    assert.equal(r.status, 0, `make_certs.sh: ${r.stderr}`);
  }
  const file = (name) => path.join(certDir, name);
  return { file, read: (name) => fs.readFileSync(file(name), 'utf8') };
}
test.after(() => { if (certDir !== null) fs.rmSync(certDir, { recursive: true, force: true }); });

function chatError(code, pattern) {
  return (err) => {
    assert.ok(err instanceof ChatError, `not a ChatError: ${err}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

// The seed over `client`; resolves with the replies and the stream.
async function seed(client, options = {}) {
  const stream = client.chat({ deadlineMs: 10000, ...options });
  for (const [name, message] of SEED) await stream.send(name, message);
  stream.complete();
  return { replies: await within(collect(stream), 10000, 'the seed replies'), stream };
}

// The seed's outcome: the replies, or the ChatError that ended it.
async function seedOutcome(client) {
  const stream = client.chat({ deadlineMs: 10000 });
  for (const [name, message] of SEED) await stream.send(name, message).catch(() => {});
  stream.complete();
  return within(collectError(stream), 10000, 'the seed to end');
}

// A grpc-js echo server with the given credentials; it records each
// call's metadata and the grpc-encoding of what it received.
async function grpcEcho(credentials) {
  const { grpc: g, Chat } = grpc();
  const seen = [];
  const server = new g.Server();
  server.addService(Chat.service, {
    chat(call) {
      seen.push(call.metadata.getMap());
      call.on('data', (m) => call.write({ value: `${m.name}: ${m.message}` }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  const close = () => new Promise((resolve) => {
    const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, 2000);
    server.tryShutdown(() => { clearTimeout(timer); resolve(); });
  });
  return { port, seen, close };
}

// A grpc-js client's seed against `port`: the replies or the error.
function grpcSeed(port, credentials, options = {}) {
  const { Chat } = grpc();
  const client = new Chat(`localhost:${port}`, credentials, options);
  const call = client.chat();
  const replies = [];
  const done = new Promise((resolve) => {
    call.on('data', (r) => replies.push(r.value));
    call.on('error', (err) => resolve({ replies, code: err.code }));
    call.on('status', (s) => { if (s.code === 0) resolve({ replies, code: 0 }); });
  });
  for (const [name, message] of SEED) call.write({ name, message });
  call.end();
  return within(done, 10000, 'the grpc-js seed').finally(() => client.close());
}

test('TLS: seed from a TLS client to a TLS server (PEM files and PEM text)', async () => {
  const c = certs();
  const server = new Server({ tlsCert: c.file('server.pem'), tlsKey: c.read('server.key') });
  try {
    for (const target of [`127.0.0.1:${server.port}`, `https://localhost:${server.port}`]) {
      const client = new Client(target, { tls: !target.startsWith('https:'), tlsCa: c.read('ca.pem') });
      try {
        assert.deepEqual((await seed(client)).replies, SEED_REPLIES);
      } finally {
        await client.close();
      }
    }
    // A plaintext client cannot talk to it.
    const plain = new Client(`127.0.0.1:${server.port}`);
    try {
      const { error } = await seedOutcome(plain);
      assert.ok(error !== null, 'a plaintext stream to a TLS server ended OK');
    } finally {
      await plain.close();
    }
  } finally {
    await server.close();
  }
});

test('TLS: a client trusting another CA fails with UNAVAILABLE', async () => {
  const c = certs();
  const server = new Server({ tlsCert: c.file('server.pem'), tlsKey: c.file('server.key') });
  const client = new Client(`https://127.0.0.1:${server.port}`, { tlsRootCerts: c.file('other_ca.pem') });
  try {
    const { replies, error } = await seedOutcome(client);
    assert.deepEqual(replies, []);
    assert.ok(chatError(Code.UNAVAILABLE)(error));
  } finally {
    await client.close();
    await server.close();
  }
});

test('TLS: tlsServerName verifies another name than the target\'s host', async () => {
  const c = certs();
  const server = new Server({ tlsCert: c.file('wronghost.pem'), tlsKey: c.file('wronghost.key') });
  try {
    const named = new Client(`https://127.0.0.1:${server.port}`, { tlsCa: c.file('ca.pem'), tlsServerName: 'other.example' });
    const unnamed = new Client(`https://127.0.0.1:${server.port}`, { tlsCa: c.file('ca.pem') });
    try {
      assert.deepEqual((await seed(named)).replies, SEED_REPLIES);
      assert.ok(chatError(Code.UNAVAILABLE)((await seedOutcome(unnamed)).error));
    } finally {
      await named.close();
      await unnamed.close();
    }
  } finally {
    await server.close();
  }
});

test('mTLS: a client certificate is required; without one or from another CA the stream fails', async () => {
  const c = certs();
  const server = new Server({
    tlsCert: c.file('server.pem'), tlsKey: c.file('server.key'), tlsClientCa: c.file('ca.pem'), clientCert: 'require',
  });
  const target = `https://127.0.0.1:${server.port}`;
  const alice = new Client(target, { tlsCa: c.file('ca.pem'), tlsCert: c.file('client.pem'), tlsKey: c.file('client.key') });
  const nobody = new Client(target, { tlsCa: c.file('ca.pem') });
  const mallory = new Client(target, {
    tlsCa: c.file('ca.pem'), tlsCert: c.file('other_client.pem'), tlsKey: c.file('other_client.key'),
  });
  try {
    assert.deepEqual((await seed(alice)).replies, SEED_REPLIES);
    const none = await seedOutcome(nobody);
    assert.deepEqual(none.replies, []);
    assert.ok(chatError(Code.UNAVAILABLE)(none.error));
    const other = await seedOutcome(mallory);
    assert.deepEqual(other.replies, []);
    assert.ok(other.error instanceof ChatError && other.error.code !== Code.OK, String(other.error));
  } finally {
    await alice.close();
    await nobody.close();
    await mallory.close();
    await server.close();
  }
});

test('mTLS: a client CA alone means "require"; "request" admits a client without a certificate', async () => {
  const c = certs();
  const base = { tlsCert: c.file('server.pem'), tlsKey: c.file('server.key'), tlsClientCa: c.file('ca.pem') };
  const required = new Server(base);
  const requested = new Server({ ...base, clientCert: 'request' });
  const a = new Client(`https://127.0.0.1:${required.port}`, { tlsCa: c.file('ca.pem') });
  const b = new Client(`https://127.0.0.1:${requested.port}`, { tlsCa: c.file('ca.pem') });
  try {
    assert.ok(chatError(Code.UNAVAILABLE)((await seedOutcome(a)).error));
    assert.deepEqual((await seed(b)).replies, SEED_REPLIES);
  } finally {
    await a.close();
    await b.close();
    await required.close();
    await requested.close();
  }
});

test('TLS interop: this client against a grpc-js TLS server, a grpc-js TLS client against this server', async () => {
  const c = certs();
  const { grpc: g } = grpc();
  const peer = await grpcEcho(g.ServerCredentials.createSsl(null,
    [{ cert_chain: Buffer.from(c.read('server.pem')), private_key: Buffer.from(c.read('server.key')) }], false));
  const client = new Client(`https://localhost:${peer.port}`, { tlsCa: c.file('ca.pem') });
  try {
    assert.deepEqual((await seed(client)).replies, SEED_REPLIES);
  } finally {
    await client.close();
    await peer.close();
  }
  const server = new Server({ tlsCert: c.file('server.pem'), tlsKey: c.file('server.key') });
  try {
    const r = await grpcSeed(server.port, g.credentials.createSsl(Buffer.from(c.read('ca.pem'))));
    assert.deepEqual(r, { replies: SEED_REPLIES, code: 0 });
  } finally {
    await server.close();
  }
});

test('token: the client\'s token, or a stream\'s own, reaches the server as a bearer token', async () => {
  const { grpc: g } = grpc();
  const peer = await grpcEcho(g.ServerCredentials.createInsecure());
  const client = new Client(`127.0.0.1:${peer.port}`, { token: 'client-token' });
  try {
    assert.deepEqual((await seed(client)).replies, SEED_REPLIES);
    assert.deepEqual((await seed(client, { token: 'stream-token' })).replies, SEED_REPLIES);
    assert.deepEqual(peer.seen.map((md) => md.authorization), ['Bearer client-token', 'Bearer stream-token']);
  } finally {
    await client.close();
    await peer.close();
  }
});

test('token: chat_server --token admits the right token and refuses others with UNAUTHENTICATED',
  { skip: CHAT_SERVER_BIN ? false : 'examples/chat_server not built' }, async () => {
    const p = spawnWithFirstLine(CHAT_SERVER_BIN, ['--address', '127.0.0.1:0', '--token', 's3cret']);
    try {
      const line = await within(p.first, 10000, 'chat_server to listen');
      const port = /:(\d+)$/.exec(line)[1];
      const good = new Client(`127.0.0.1:${port}`, { token: 's3cret' });
      const bad = new Client(`127.0.0.1:${port}`, { token: 'guess' });
      const none = new Client(`127.0.0.1:${port}`);
      try {
        assert.deepEqual((await seed(good)).replies, SEED_REPLIES);
        assert.ok(chatError(Code.UNAUTHENTICATED)((await seedOutcome(bad)).error));
        assert.ok(chatError(Code.UNAUTHENTICATED)((await seedOutcome(none)).error));
      } finally {
        await Promise.all([good.close(), bad.close(), none.close()]);
      }
    } finally {
      p.child.kill('SIGTERM');
      await within(exited(p.child), 10000, 'chat_server to stop');
    }
  });

test('token: refused over plaintext to a non-loopback target unless allowInsecureToken', () => {
  assert.throws(() => new Client('example.invalid:443', { token: 't' }), chatError(Code.ERR_BAD_ARGUMENT, /token/));
  new Client('example.invalid:443', { token: 't', allowInsecureToken: true }).close();
});

test('compression: the seed with gzip both ways; gzip on the wire each way', async () => {
  const server = new Server({ compression: 'gzip' });
  const client = new Client(`127.0.0.1:${server.port}`, { compression: 'gzip' });
  try {
    assert.deepEqual((await seed(client)).replies, SEED_REPLIES);
    assert.deepEqual((await seed(client, { compression: 'deflate' })).replies, SEED_REPLIES);
    assert.deepEqual((await seed(client, { compression: 'none' })).replies, SEED_REPLIES);
  } finally {
    await client.close();
    await server.close();
  }
  // On the wire (a plain HTTP/2 peer): this client's messages, and this
  // server's replies, go gzip-compressed (grpc-encoding, the frame's flag).
  // gRPC sends a message uncompressed when gzip would not shrink it: these
  // are long enough.
  const long = 'la'.repeat(100);
  const wire = await new Promise((resolve, reject) => {
    const h2 = http2.createServer();
    h2.on('stream', (st, headers) => {
      const chunks = [];
      st.on('data', (d) => chunks.push(d));
      st.on('end', () => {
        st.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        st.on('wantTrailers', () => st.sendTrailers({ 'grpc-status': '0' }));
        st.end();
        h2.close();
        resolve({ headers, body: Buffer.concat(chunks) });
      });
    });
    h2.on('error', reject);
    h2.listen(0, '127.0.0.1', async () => {
      const toPeer = new Client(`127.0.0.1:${h2.address().port}`, { compression: 'gzip' });
      try {
        const stream = toPeer.chat({ deadlineMs: 10000 });
        for (const [name] of SEED) await stream.send(name, long);
        stream.complete();
        await within(stream.finished, 10000, 'the raw peer to end the stream');
      } catch (err) {
        reject(err);
      } finally {
        await toPeer.close();
      }
    });
  });
  assert.equal(wire.headers['grpc-encoding'], 'gzip');
  assert.deepEqual(frames(wire.body).map(([flag, m]) => [flag, zlib.gunzipSync(m)]),
    SEED.map(([n]) => [1, chatMessage(n, long)]));

  const gzipServer = new Server({ compression: 'gzip' });
  try {
    const session = http2.connect(`http://127.0.0.1:${gzipServer.port}`);
    const req = session.request({
      ':method': 'POST', ':path': '/Chat/chat', 'content-type': 'application/grpc', te: 'trailers',
      'grpc-accept-encoding': 'gzip',
    });
    const msg = chatMessage('Sam', long);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(msg.length, 1);
    req.end(Buffer.concat([head, msg]));
    const chunks = [];
    let headers = null;
    req.on('response', (h) => { headers = h; });
    req.on('data', (d) => chunks.push(d));
    await within(new Promise((resolve) => req.on('end', resolve)), 10000, 'the raw HTTP/2 call');
    session.close();
    assert.equal(headers['grpc-encoding'], 'gzip');
    const [[flag, reply]] = frames(Buffer.concat(chunks));
    assert.equal(flag, 1);
    assert.equal(zlib.gunzipSync(reply).subarray(3).toString(), `Sam: ${long}`);
  } finally {
    await gzipServer.close();
  }
});

// gRPC's length-prefixed messages: [[compressed flag, bytes], ...].
function frames(body) {
  const out = [];
  for (let at = 0; at < body.length;) {
    const n = body.readUInt32BE(at + 1);
    out.push([body[at], body.subarray(at + 5, at + 5 + n)]);
    at += 5 + n;
  }
  return out;
}

// A ChatMessage{name, message} as protobuf (ASCII fields under 16 KiB).
function chatMessage(name, message) {
  const field = (tag, text) => {
    const n = text.length;
    const len = n < 128 ? [n] : [(n & 0x7f) | 0x80, n >> 7];
    return Buffer.concat([Buffer.from([tag, ...len]), Buffer.from(text)]);
  };
  return Buffer.concat([field(0x0a, name), field(0x12, message)]);
}

test('maxStreams 1 refuses a second concurrent stream with RESOURCE_EXHAUSTED; stats count it', async () => {
  const server = new Server({ maxStreams: 1, maxConcurrentStreams: 8, maxConnectionIdleMs: 60000,
    maxConnectionAgeMs: 60000, maxConnectionAgeGraceMs: 1000 });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const first = client.chat();
    await first.send('a', 'one');
    const it = first[Symbol.asyncIterator]();
    assert.deepEqual(await within(it.next(), 10000, 'the first reply'), { value: 'a: one', done: false });
    const second = client.chat();
    second.complete();
    const { replies, error } = await within(collectError(second), 10000, 'the second stream to end');
    assert.deepEqual(replies, []);
    assert.ok(chatError(Code.RESOURCE_EXHAUSTED)(error));
    first.complete();
    assert.deepEqual(await within(it.next(), 10000, 'the first stream to end'), { value: undefined, done: true });
    assert.equal(server.stats().streamsRefused, 1);
    assert.equal(client.stats().streamsRefused, 1);
  } finally {
    await client.close();
    await server.close();
  }
});

// Takes replies from `it` until `n` of them matched `keep`.
async function takeMatching(it, n, keep, what) {
  const out = [];
  while (out.length < n) {
    const { value, done } = await within(it.next(), 10000, what);
    assert.equal(done, false, `${what}: the stream ended`);
    if (keep(value)) out.push(value);
  }
  return out;
}

test('broadcast servers sharing a Redis room (roomUrl, roomName, roomMaxLen)', async () => {
  const redis = await startRedis();
  const room = { mode: 'broadcast', roomUrl: redis.url, roomName: 'node-control', roomMaxLen: 100 };
  const servers = [new Server(room), new Server(room)];
  const clients = servers.map((s) => new Client(`127.0.0.1:${s.port}`));
  try {
    // b is a member once its own line came back to it.
    const b = clients[1].chat();
    const atB = b[Symbol.asyncIterator]();
    await b.send('b', 'here');
    await takeMatching(atB, 1, (r) => r === 'b: here', 'b\'s own line');
    const a = clients[0].chat();
    for (const [name, message] of SEED) await a.send(name, message);
    assert.deepEqual(await takeMatching(atB, 3, (r) => SEED_REPLIES.includes(r), 'the seed at b'), SEED_REPLIES);
    a.complete();
    b.complete();
  } finally {
    for (const c of clients) await c.close();
    for (const s of servers) await s.close();
    redis.kill();
  }
});

test('stats after a seed exchange', async () => {
  const server = new Server();
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const zero = { streamsOpen: 0, streamsTotal: 0, streamsRefused: 0, streamsCut: 0,
      messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 };
    assert.deepEqual(server.stats(), zero);
    assert.deepEqual(client.stats(), zero);
    await seed(client);
    // Encoded ChatMessages: 2 + name + 2 + message; StringValue replies: 2 + text.
    const sent = SEED.reduce((n, [a, b]) => n + 4 + a.length + b.length, 0);
    const replied = SEED_REPLIES.reduce((n, r) => n + 2 + r.length, 0);
    await waitFor(() => server.stats().streamsOpen === 0, 5000, 'the server call to close');
    assert.deepEqual(server.stats(), { ...zero, streamsTotal: 1, messagesIn: 3, messagesOut: 3, bytesIn: sent, bytesOut: replied });
    assert.deepEqual(client.stats(), { ...zero, streamsTotal: 1, messagesIn: 3, messagesOut: 3, bytesIn: replied, bytesOut: sent });
  } finally {
    await client.close();
    await server.close();
  }
  assert.throws(() => server.stats(), chatError(Code.ERR_CLOSED));
  assert.throws(() => client.stats(), chatError(Code.ERR_CLOSED));
});

test('call.timeLeft and server metadata, initial and trailing, read by the stream', async () => {
  const seen = [];
  const server = new Server({
    handler: {
      onOpen(call) {
        seen.push(call.timeLeft);
        call.addInitialMetadata('x-server', 'libchat');
        call.addInitialMetadata('x-tag-bin', Buffer.from([0, 1, 2]));
      },
      async onMessage(call, name, message) {
        await call.send(`${name}: ${message}`);
        assert.throws(() => call.addInitialMetadata('x-late', 'v'), chatError(Code.ERR_BAD_STATE));
      },
      onComplete(call) {
        call.addTrailingMetadata('x-count', '3');
        call.addTrailingMetadata('x-count', '4');
        call.complete();
      },
    },
  });
  const client = new Client(`127.0.0.1:${server.port}`);
  try {
    const stream = client.chat({ deadlineMs: 10000 });
    assert.equal(stream.initialMetadata(), null);
    assert.equal(stream.trailingMetadata(), null);
    for (const [name, message] of SEED) await stream.send(name, message);
    stream.complete();
    const it = stream[Symbol.asyncIterator]();
    assert.equal((await within(it.next(), 10000, 'the first reply')).value, 'Sam: Hi');
    assert.deepEqual({ ...stream.initialMetadata() }, { 'x-server': 'libchat', 'x-tag-bin': Buffer.from([0, 1, 2]) });
    // Trailing metadata comes with the end (which may have come already).
    assert.equal(stream.trailingMetadata() === null, !stream.ended);
    await within(stream.finished, 10000, 'the end');
    assert.deepEqual({ ...stream.trailingMetadata() }, { 'x-count': ['3', '4'] });
    // gRPC rounds the grpc-timeout it sends up a little (10099 seen).
    assert.ok(seen[0] > 5000 && seen[0] <= 11000, String(seen[0]));
    // Without a deadline: null.
    const plain = client.chat();
    plain.complete();
    await within(plain.finished, 10000, 'the second end');
    assert.equal(seen[1], null);
    assert.deepEqual({ ...plain.initialMetadata() }, { 'x-server': 'libchat', 'x-tag-bin': Buffer.from([0, 1, 2]) });
  } finally {
    await client.close();
    await server.close();
  }
});

test('bad arguments: TypeError and RangeError at once, ChatError for what libchat refuses', async () => {
  assert.throws(() => new Server({ compression: 'brotli' }), TypeError);
  assert.throws(() => new Server({ clientCert: 'always' }), TypeError);
  assert.throws(() => new Server({ maxStreams: -1 }), RangeError);
  assert.throws(() => new Server({ maxConnectionIdleMs: 1.5 }), TypeError);
  assert.throws(() => new Server({ roomMaxLen: 0 }), RangeError);
  assert.throws(() => new Server({ tlsCert: 42 }), TypeError);
  assert.throws(() => new Server({ tlsCert: 'a\u0000b' }), TypeError);
  assert.throws(() => new Client('127.0.0.1:1', { tls: 'yes' }), TypeError);
  assert.throws(() => new Client('127.0.0.1:1', { compression: 'zstd' }), TypeError);
  assert.throws(() => new Client('127.0.0.1:1', { tlsCa: 'a', tlsRootCerts: 'b' }), TypeError);
  assert.throws(() => new Client('127.0.0.1:1', { token: 7 }), TypeError);
  // What libchat checks: a missing key, an unreadable file, a Redis room
  // half given, TLS with an http:// target, a token with spaces.
  const c = certs();
  assert.throws(() => new Server({ tlsCert: c.file('server.pem') }), chatError(Code.ERR_BAD_ARGUMENT));
  assert.throws(() => new Server({ tlsCert: '/nonexistent/cert.pem', tlsKey: c.file('server.key') }),
    chatError(Code.ERR_BAD_ARGUMENT, /nonexistent/));
  assert.throws(() => new Server({ mode: 'broadcast', roomUrl: 'redis://127.0.0.1:1' }), chatError(Code.ERR_BAD_ARGUMENT));
  assert.throws(() => new Client('http://127.0.0.1:1', { tls: true }), chatError(Code.ERR_BAD_ARGUMENT));
  const client = new Client('127.0.0.1:1');
  try {
    assert.throws(() => client.chat({ compression: 'lz4' }), TypeError);
    assert.throws(() => client.chat({ token: 'two words' }), chatError(Code.ERR_BAD_ARGUMENT));
  } finally {
    await client.close();
  }
  // Metadata arguments on a call.
  let calls = 0;
  const server = new Server({
    handler: {
      onOpen(call) {
        calls++;
        assert.throws(() => call.addInitialMetadata(1, 'v'), TypeError);
        assert.throws(() => call.addInitialMetadata('k', 2), TypeError);
        assert.throws(() => call.addInitialMetadata('Bad Key', 'v'), chatError(Code.ERR_BAD_ARGUMENT));
        assert.throws(() => call.addTrailingMetadata('grpc-status', 'v'), chatError(Code.ERR_BAD_ARGUMENT));
      },
    },
  });
  const c2 = new Client(`127.0.0.1:${server.port}`);
  try {
    const s = c2.chat();
    s.complete();
    assert.equal((await within(s.finished, 10000, 'the end')).code, Code.OK);
    assert.equal(calls, 1);
  } finally {
    await c2.close();
    await server.close();
  }
});
