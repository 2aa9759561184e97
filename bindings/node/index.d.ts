// Types of the libchat Node.js package (bindings/node).
/// <reference types="node" />

import { EventEmitter } from 'node:events';

/** chat.h's chat_code: gRPC status codes 0..16, library codes 17..29. */
export declare const Code: Readonly<{
  OK: 0;
  CANCELLED: 1;
  UNKNOWN: 2;
  INVALID_ARGUMENT: 3;
  DEADLINE_EXCEEDED: 4;
  NOT_FOUND: 5;
  ALREADY_EXISTS: 6;
  PERMISSION_DENIED: 7;
  RESOURCE_EXHAUSTED: 8;
  FAILED_PRECONDITION: 9;
  ABORTED: 10;
  OUT_OF_RANGE: 11;
  UNIMPLEMENTED: 12;
  INTERNAL: 13;
  UNAVAILABLE: 14;
  DATA_LOSS: 15;
  UNAUTHENTICATED: 16;
  ERR_BAD_ARGUMENT: 17;
  ERR_WOULD_BLOCK: 18;
  ERR_TIMEOUT: 19;
  END_OF_STREAM: 20;
  ERR_CLOSED: 21;
  ERR_BUSY: 22;
  ERR_NO_MEMORY: 23;
  ERR_TOO_LARGE: 24;
  ERR_BAD_STATE: 25;
  ERR_MISSING: 26;
  ERR_CANNOT_LISTEN: 27;
  ERR_SYSTEM: 28;
  ERR_LIBRARY_BUG: 29;
}>;
export type Code = (typeof Code)[keyof typeof Code];

/** The library's name of a code ("DEADLINE_EXCEEDED", "WOULD_BLOCK"); "UNRECOGNIZED" for others. */
export declare function codeName(code: number): string;

/** A failure reported by libchat: a refused call or a stream's or call's final status. */
export declare class ChatError extends Error {
  constructor(code: number, details?: string, context?: string);
  readonly name: 'ChatError';
  /** A chat_code. */
  readonly code: number;
  /** Its name, as codeName() gives it. */
  readonly codeName: string;
  /** The library's per-handle message, or the status details from the peer. */
  readonly details: string;
}

/** A stream's or call's final status. */
export interface Status {
  code: number;
  codeName: string;
  details: string;
}

/** The libchat.so.1 loaded: from $CHAT_LIBRARY, the repository's build tree or the system loader. */
export declare const library: Readonly<{
  path: string;
  from: string;
  version: string;
  abiVersion: number;
}>;

/** Metadata sent with a stream: lower-case keys; Buffers (or any bytes) only for keys ending in "-bin". */
export type Metadata = Record<string, string | Uint8Array | Array<string | Uint8Array>>;
/** Metadata a call received: a key sent several times gives an array; "-bin" values are Buffers. */
export type ReceivedMetadata = Record<string, string | Buffer | Array<string | Buffer>>;

/** chat.h's CHAT_COMPRESSION_*: what this side compresses its messages with. */
export type Compression = 'none' | 'deflate' | 'gzip';

/**
 * Counters of a server or client (chat_stats). Message bytes are the encoded protobuf
 * messages, before compression and without gRPC's frame header.
 */
export interface Stats {
  /** Calls admitted (server) / streams opened (client), not yet ended. */
  streamsOpen: number;
  streamsTotal: number;
  /** Server: new calls refused (RESOURCE_EXHAUSTED over maxStreams or the memory bound,
   *  UNAVAILABLE while stopping). Client: streams that ended RESOURCE_EXHAUSTED or
   *  UNAVAILABLE before any reply. */
  streamsRefused: number;
  /** Server: calls it cut (a stop's deadline, the memory bound). Client: other streams
   *  that ended with an error (its own cancels not counted). */
  streamsCut: number;
  /** Server: messages received; client: replies received. */
  messagesIn: number;
  /** Server: replies written; client: messages written. */
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
}

export interface ClientOptions {
  /** Per message, both directions; default 4 MiB. */
  maxMessageBytes?: number;
  /** Messages queued per stream before send() waits for room; default 1024. */
  sendQueueLimit?: number;
  /**
   * Replies per stream received and not yet taken (iterated) before reading pauses and
   * the server is slowed down (HTTP/2 flow control); default 1024.
   */
  recvQueueLimit?: number;
  /** Bytes queued per stream; default 8 MiB. */
  sendQueueBytes?: number;
  /** Bytes of replies received and not yet taken per stream; default 8 MiB. */
  recvQueueBytes?: number;
  /** HTTP/2 pings while streams are open; 0 = off (default). */
  keepaliveMs?: number;
  /** A ping unanswered this long ends the connection; default 10000. */
  keepaliveTimeoutMs?: number;
  /**
   * TLS for any target form. TLS is also used for "https://host:port" targets and when
   * any tls* option is given (an "http://" target is then refused).
   */
  tls?: boolean;
  /**
   * Roots the server's certificate must chain to: PEM text (containing "-----BEGIN") or a
   * PEM file's path. Default: gRPC's ($GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, else the system's).
   */
  tlsRootCerts?: string;
  /** Another name for tlsRootCerts; give one of the two. */
  tlsCa?: string;
  /** Client certificate chain (mTLS), PEM text or a file's path; with tlsKey. */
  tlsCert?: string;
  /** Its private key, PEM text or a file's path. */
  tlsKey?: string;
  /** The name the server's certificate must carry instead of the target's host. */
  tlsServerName?: string;
  /**
   * Bearer token sent on every stream ("authorization: Bearer <token>"): printable ASCII,
   * no spaces, at most 4096 bytes. Refused (ChatError ERR_BAD_ARGUMENT) over plaintext to
   * a target that is not loopback unless allowInsecureToken.
   */
  token?: string;
  allowInsecureToken?: boolean;
  /** Compresses every stream's messages; default "none". Replies are decompressed whatever it is. */
  compression?: Compression;
}

export interface StreamOptions {
  /** RPC deadline from now, in ms; none by default. */
  deadlineMs?: number;
  metadata?: Metadata;
  /** Wait for the server to be reachable instead of failing at once with UNAVAILABLE. */
  waitForReady?: boolean;
  /** This stream's bearer token instead of the client's (same rules); "" or null: the client's. */
  token?: string | null;
  /** This stream's compression instead of the client's; null: the client's. */
  compression?: Compression | null;
}

/** A client: one HTTP/2 connection to `target`, made on the first stream. */
export declare class Client {
  /**
   * @param target "host:port", "[ipv6]:port", "http://host:port", "dns:///host:port",
   *   "ipv4:...", "unix:/path" or "unix-abstract:name".
   * @throws ChatError (ERR_BAD_ARGUMENT) for a malformed target; TypeError/RangeError for bad options.
   */
  constructor(target: string, options?: ClientOptions);
  readonly target: string;
  /** Opens a /Chat/chat stream. */
  chat(options?: StreamOptions): Stream;
  /** The counters of every stream this client opened. @throws ChatError (ERR_CLOSED) after close(). */
  stats(): Stats;
  /** Frees the client; streams already open stay usable until they end. Idempotent. */
  close(): Promise<void>;
}

/** One client-side /Chat/chat stream. Iterate it for the replies. */
export declare class Stream implements AsyncIterable<string> {
  private constructor();
  /**
   * Queues one ChatMessage{name, message}. Resolves once the library has it; when its
   * send queue is full it waits for room (the loop goes on). Rejects with a ChatError
   * (ERR_CLOSED after complete/cancel/the end, ERR_TOO_LARGE, ...).
   * @throws TypeError when name or message is not a string.
   */
  send(name: string, message: string): Promise<void>;
  /** Half-closes once every message sent so far is queued. Idempotent; a no-op after the end. */
  complete(): void;
  /** Cancels: the stream ends with CANCELLED; messages not yet written are dropped. Idempotent. */
  cancel(): void;
  /** True once the final status is known. */
  readonly ended: boolean;
  /** The final status once ended, else null. */
  readonly status: Status | null;
  /** Resolves with the final status when the stream ends (never rejects). */
  readonly finished: Promise<Status>;
  /** Replies received and not taken (iterated) yet; at most recvQueueLimit. */
  readonly bufferedReplies: number;
  /**
   * The server's initial metadata once the first reply has arrived or the stream has
   * ended, else null. Shaped as call.metadata.
   */
  initialMetadata(): ReceivedMetadata | null;
  /** The server's trailing metadata once the stream has ended, else null. */
  trailingMetadata(): ReceivedMetadata | null;
  /**
   * The replies in order; ends on a clean end (OK), throws a ChatError for any other
   * final status. Leaving the loop early (break) cancels the stream.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<string>;
}

/** One server-side call (an open /Chat/chat stream). */
export declare class Call {
  private constructor();
  /** Unique within its server, from 1 in order of arrival. */
  readonly id: number;
  /** The client's address ("ipv4:127.0.0.1:41234"). */
  readonly peer: string;
  /** The client's metadata (keys lower-case). Read it before onClose returns. */
  readonly metadata: ReceivedMetadata;
  /** True once the call has ended (its CLOSE came). */
  readonly closed: boolean;
  /** The final status once closed, else null. */
  readonly status: Status | null;
  /**
   * Milliseconds left before the client's deadline (gRPC's, or Ballerina's "deadline"
   * header), 0 once it has passed; null when the call has none.
   */
  readonly timeLeft: number | null;
  /**
   * Adds metadata the client gets with the first reply (or with the status when there is
   * none): call it before the first send(), e.g. in onOpen. Keys: lower-case letters,
   * digits, '-', '_', '.', not "grpc-..."; Buffers only for keys ending in "-bin". A key
   * may repeat. @throws TypeError for a non-string key or a value neither string nor
   * bytes; ChatError (ERR_BAD_ARGUMENT: a bad key or value, ERR_BAD_STATE: a reply was
   * sent already, ERR_CLOSED: the call has ended).
   */
  addInitialMetadata(key: string, value: string | Uint8Array): void;
  /** Adds metadata sent with the status: call it before complete() or fail(). As above. */
  addTrailingMetadata(key: string, value: string | Uint8Array): void;
  /**
   * Queues one reply. Resolves once the library has it; when the call's send queue is
   * full it waits for room (the loop goes on). Rejects with a ChatError (ERR_CLOSED after
   * complete/fail/the end, ERR_TOO_LARGE, ...).
   */
  send(text: string): Promise<void>;
  /** Ends the call with OK once every reply sent so far is written. Idempotent. */
  complete(): void;
  /** Ends the call with `code` (1..16) and `details`; replies not yet written are dropped. */
  fail(code: number, details?: string): void;
}

/**
 * A handler's methods run on the JS main thread. Per call they run in order, one at a
 * time: one that returns a promise holds the next until it settles. A method that
 * throws or rejects fails its call with UNKNOWN and is reported ('handlerError').
 */
export interface Handler {
  onOpen?(call: Call): void | Promise<void>;
  onMessage?(call: Call, name: string, message: string): void | Promise<void>;
  /** The client half-closed. Default: call.complete() (the seed's behaviour). */
  onComplete?(call: Call): void | Promise<void>;
  /** The call ended: OK, the code given to fail, CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE (cut by a stop)... */
  onClose?(call: Call, code: number, details: string): void | Promise<void>;
}

export interface ServerOptions {
  /** "host:port" (port 0 picks one), "[ipv6]:port", "unix:/path"...; default "127.0.0.1:0". */
  address?: string;
  /** A built-in mode, run entirely in libchat: "echo" (default without a handler) or "broadcast". */
  mode?: 'echo' | 'broadcast' | 'custom';
  /** JS handler (custom mode); a string is taken as the mode. */
  handler?: Handler | 'echo' | 'broadcast';
  maxMessageBytes?: number;
  /** Replies queued per call before send() waits for room; default 1024. */
  sendQueueLimit?: number;
  /**
   * Messages per call read and not yet handled (with a handler: whose onMessage has not
   * finished) before the library stops reading the call and the client is slowed down
   * (HTTP/2 flow control); default 64.
   */
  recvWindow?: number;
  keepaliveMs?: number;
  sendQueueBytes?: number;
  /** The same bound in bytes of messages; default 8 MiB. */
  recvWindowBytes?: number;
  maxMemoryBytes?: number;
  keepaliveTimeoutMs?: number;
  /** Transport threads; 0 (default) for one per core, at least two; only
   *  the first drains until a flood or load wakes the next (chat.h). */
  completionQueues?: number;
  /**
   * Serve grpc.health.v1.Health: "" and "Chat" SERVING, NOT_SERVING from the
   * moment stop() begins; default false.
   */
  health?: boolean;
  /** Serve gRPC server reflection (grpcurl list / describe); default false. */
  reflection?: boolean;
  /**
   * Server certificate chain: PEM text (containing "-----BEGIN") or a PEM file's path,
   * read at the start. Given (with tlsKey), the server speaks TLS only.
   */
  tlsCert?: string;
  /** Its private key, PEM text or a file's path. */
  tlsKey?: string;
  /** Roots client certificates must chain to (mTLS), PEM text or a file's path. */
  tlsClientCa?: string;
  /**
   * Client certificates: "none" (do not ask), "request" (ask; one that is sent must chain
   * to tlsClientCa) or "require". Default: "require" with tlsClientCa, else "none".
   */
  clientCert?: 'none' | 'request' | 'require';
  /** Compresses every reply; default "none". Messages from clients are decompressed whatever it is. */
  compression?: Compression;
  /** Open calls the whole server takes; one beyond is refused with RESOURCE_EXHAUSTED. 0 (default): no limit but maxMemoryBytes. */
  maxStreams?: number;
  /** HTTP/2 MAX_CONCURRENT_STREAMS per connection (a stream beyond waits); 0 (default): the memory bound's. */
  maxConcurrentStreams?: number;
  /** A connection older than this gets GOAWAY (for load balancers); 0 = off (default). */
  maxConnectionAgeMs?: number;
  /** Then its open calls may finish for this long before it is closed (UNAVAILABLE); 0: no limit. */
  maxConnectionAgeGraceMs?: number;
  /** A connection without calls for this long gets GOAWAY; 0 = off (default). */
  maxConnectionIdleMs?: number;
  /**
   * Broadcast mode: "redis://HOST:PORT[/DB]"; with roomName, the room is the Redis stream
   * "room:<roomName>", shared by every server naming it. Both or neither.
   */
  roomUrl?: string;
  roomName?: string;
  /** The Redis stream is trimmed to about this many entries; default 10000. */
  roomMaxLen?: number;
}

export declare class Server extends EventEmitter {
  /**
   * Starts listening. @throws TypeError/RangeError for bad options; ChatError
   * (ERR_BAD_ARGUMENT: bad options libchat checks, an unreadable TLS file;
   * ERR_CANNOT_LISTEN: address in use, a certificate or key gRPC rejects...).
   */
  constructor(options?: ServerOptions);
  readonly address: string;
  readonly port: number;
  readonly mode: 'echo' | 'broadcast' | 'custom';
  /** The server's counters since it started. @throws ChatError (ERR_CLOSED) after close(). */
  stats(): Stats;
  /**
   * Refuses new calls, lets open calls finish for up to graceMs, then ends the rest with
   * UNAVAILABLE. Resolves with how many calls were cut. The loop keeps serving meanwhile.
   */
  stop(graceMs?: number): Promise<number>;
  /** Stops with no grace (if running) and frees the server. Idempotent. */
  close(): Promise<void>;
  on(event: 'handlerError', listener: (err: unknown, call: Call) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export interface RoomOptions {
  /** "redis://HOST:PORT[/DB]": the room is the Redis stream "room:<name>",
   *  shared with every room and `chat_server --room` of that name. Absent:
   *  the room is in this process. */
  url?: string | null;
  /** The room's name; required with url. */
  name?: string;
  /** Redis trims the stream to about this many lines (default 10000). */
  maxLen?: number;
}

/** Lines that reach every member in one order (chat.h, "Rooms"). A handler
 *  joins its calls and publishes what it lets through. */
export declare class Room {
  /** Opens the room; on Redis it looks for Redis once on this thread (a
   *  refused connection answers at once) and opens even when it is down. */
  constructor(options?: RoomOptions);
  readonly url: string | null;
  readonly name: string;
  /** Sends "<name>: <message>" to every member; on Redis resolves once
   *  Redis acknowledged it (rejects with Code.UNAVAILABLE while it cannot). */
  publish(name: string, message: string): Promise<void>;
  /** Sends `text` alone. As publish(). */
  notice(text: string): Promise<void>;
  /** `call` gets every line from now on, after the room's last `replay`
   *  lines (0..1000, on Redis); it leaves with leave() or when it ends. */
  join(call: Call, replay?: number): Promise<void>;
  /** False if `call` was not a member. */
  leave(call: Call): boolean;
  /** Members whose calls are open. */
  readonly members: number;
  /** Stops the room (its members' calls stay open); resolves once it is
   *  freed, after the calls running off the loop. Idempotent. */
  close(): Promise<void>;
}
