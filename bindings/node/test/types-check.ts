// Compiled (not run) by types.test.js: the API as index.d.ts types it, used
// the way the README shows. A type error here fails that test.
import {
  Client, Server, Call, ChatError, Code, codeName, library, Status, Handler, Room, Stats, Compression, ReceivedMetadata,
} from '..';

async function main(): Promise<void> {
  const handler: Handler = {
    onOpen(call: Call) { const md = call.metadata['x-room']; void md; void call.peer; void call.id; },
    async onMessage(call, name, message) { await call.send(`${name}: ${message}`); },
    onComplete(call) { call.complete(); },
    onClose(call, code, details) { if (code !== Code.OK) call.closed && void details; },
  };
  const server = new Server({ address: '127.0.0.1:0', handler, recvWindow: 10, completionQueues: 1 });
  server.on('handlerError', (err, call) => { void err; void call.id; });
  const echo = new Server({ mode: 'echo' });
  const client = new Client(`127.0.0.1:${server.port}`, { sendQueueLimit: 4, keepaliveMs: 0 });
  const stream = client.chat({ deadlineMs: 1000, metadata: { 'x-room': 'lobby', 'x-key-bin': Buffer.from([1]) } });
  await stream.send('Sam', 'Hi');
  stream.complete();
  try {
    for await (const reply of stream) { const s: string = reply; void s; }
  } catch (err) {
    if (err instanceof ChatError) { const c: number = err.code; void c; void err.codeName; void err.details; }
  }
  const buffered: number = stream.bufferedReplies;
  void buffered;
  const status: Status = await stream.finished;
  void codeName(status.code);
  void library.path;
  const cut: number = await server.stop(100);
  void cut;
  await server.close();
  await echo.close();
  await client.close();
  // @ts-expect-error: send takes strings
  void stream.send(1, 2);
  // @ts-expect-error: gone (recvWindow bounds what waits for a handler)
  void new Server({ handler, maxPendingMessages: 10 });
  // @ts-expect-error: no such mode
  void new Server({ mode: 'shout' });
}
void main;

async function roomTypes(call: Call): Promise<number> {
  const room = new Room({ url: 'redis://127.0.0.1:6379', name: 'lobby', maxLen: 100 });
  await room.join(call, 10);
  await room.publish('a', 'b');
  await room.notice('c');
  const left: boolean = room.leave(call);
  void left;
  const n: number = room.members;
  await room.close();
  return n;
}
void roomTypes;

// libchat 1.1's options: TLS, tokens, compression, limits, stats, metadata.
async function controlTypes(): Promise<Stats> {
  const handler: Handler = {
    onOpen(call) {
      const left: number | null = call.timeLeft;
      void left;
      call.addInitialMetadata('x-server', 'libchat');
      call.addInitialMetadata('x-tag-bin', Buffer.from([1]));
    },
    onComplete(call) { call.addTrailingMetadata('x-count', '3'); call.complete(); },
  };
  const server = new Server({
    handler, tlsCert: '/certs/server.pem', tlsKey: '-----BEGIN PRIVATE KEY-----...', tlsClientCa: 'ca.pem',
    clientCert: 'request', compression: 'gzip', maxStreams: 100, maxConcurrentStreams: 10,
    maxConnectionAgeMs: 60000, maxConnectionAgeGraceMs: 5000, maxConnectionIdleMs: 30000,
  });
  void new Server({ mode: 'broadcast', roomUrl: 'redis://127.0.0.1:6379', roomName: 'lobby', roomMaxLen: 100 });
  const gz: Compression = 'deflate';
  const client = new Client(`https://localhost:${server.port}`, {
    tls: true, tlsCa: 'ca.pem', tlsCert: 'client.pem', tlsKey: 'client.key',
    tlsServerName: 'localhost', token: 't', allowInsecureToken: false, compression: gz,
  });
  const stream = client.chat({ token: 'other', compression: 'none' });
  const initial: ReceivedMetadata | null = stream.initialMetadata();
  const trailing: ReceivedMetadata | null = stream.trailingMetadata();
  void initial; void trailing;
  void new Client('localhost:1', { tlsRootCerts: '-----BEGIN CERTIFICATE-----...' });
  const n: number = client.stats().messagesOut + server.stats().streamsRefused;
  void n;
  // @ts-expect-error: no such compression
  void new Client('x:1', { compression: 'brotli' });
  // @ts-expect-error: clientCert takes a name
  void new Server({ clientCert: true });
  // @ts-expect-error: authenticate is not offered (it would run JS on a transport thread)
  void new Server({ authenticate: () => 'ok' });
  return server.stats();
}
void controlTypes;
