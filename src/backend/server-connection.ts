// One connection from the gateway to one PostgreSQL node: TLS, startup, login, status tracking, internal queries, cancel.

import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { Framer } from '../protocol/framer.js';
import { MessageQueue } from '../protocol/message-queue.js';
import { ReusableReader } from './reusable-reader.js';
import * as m from '../protocol/messages.js';
import { PgError, SQLSTATE } from '../protocol/errors.js';
import { md5Response } from '../auth/md5.js';
import { ScramClientSession, type ScramClientCredentials } from '../auth/scram.js';
import type { ServerTlsConfig } from '../config/types.js';

export interface ServerEndpoint {
  name: string;
  host: string;
  port: number;
}

/** What the gateway can prove to a server for a user: a password, an md5 hash, a recovered SCRAM ClientKey, or nothing. */
export type ServerCredentials = { password: string } | { md5Hash: string } | ScramClientCredentials | null;

export interface ServerConnectOptions {
  endpoint: ServerEndpoint;
  user: string;
  database: string;
  credentials: ServerCredentials;
  tls: ServerTlsConfig;
  connectTimeoutMs: number;
  maxMessageBytes: number;
  /** Extra startup parameters (application_name, ...). */
  params?: Record<string, string>;
}

/**
 * Receives a leased connection's traffic as whole messages: head (one message completed from earlier
 * chunks) when present, then run (zero or more messages, contiguous). The bytes are valid only during
 * the call unless it returns true ("still referenced": a write of them was queued).
 */
export interface ServerSink {
  onServerData(head: Buffer | undefined, run: Buffer): boolean;
  onServerClose(err: Error | undefined): void;
}

export interface QueryResult {
  rows: (string | null)[][];
  /** Set when the server answered with an ErrorResponse. */
  error?: PgError;
}

interface PendingQuery {
  rows: (string | null)[][];
  error?: PgError;
  resolve: (r: QueryResult) => void;
  reject: (e: Error) => void;
}

let nextId = 1;

/** Build a PgError from a server's ErrorResponse, keeping its SQLSTATE and wording. */
export function serverError(msg: Buffer): PgError {
  const f = m.readErrorFields(msg);
  const sev = f.get('V') ?? f.get('S') ?? 'ERROR';
  return new PgError(f.get('C') ?? SQLSTATE.INTERNAL_ERROR, f.get('M') ?? 'unknown server error', {
    severity: sev === 'FATAL' || sev === 'PANIC' ? 'FATAL' : 'ERROR',
    detail: f.get('D'),
    hint: f.get('H'),
  });
}

export class ServerConnection {
  readonly id = nextId++;
  readonly endpoint: ServerEndpoint;
  readonly user: string;
  readonly database: string;
  /** ParameterStatus values as the server last reported them. */
  readonly params = new Map<string, string>();
  pid = 0;
  secret = 0;
  txStatus: m.TxStatus = 'I';
  /** ReadyForQuery messages received since login: a holder compares it with the Syncs it sent. */
  readyCount = 0;
  readonly createdAt = Date.now();
  lastUsedAt = Date.now();
  closed = false;
  tls = false;

  private socket: net.Socket;
  /** Set for plain TCP: reads land in a reused buffer. Absent for TLS, which reads through 'data' events. */
  private readonly reader: ReusableReader | undefined;
  private readonly framer: Framer;
  private sink: ServerSink | undefined;
  private pending: PendingQuery[] = [];
  private closeListeners: ((err: Error | undefined) => void)[] = [];

  private constructor(socket: net.Socket, opts: ServerConnectOptions, reader: ReusableReader | undefined) {
    this.socket = socket;
    this.reader = reader;
    this.endpoint = opts.endpoint;
    this.user = opts.user;
    this.database = opts.database;
    this.framer = new Framer(opts.maxMessageBytes, { copyTail: reader !== undefined });
  }

  /** Route incoming chunks to fn (replacing the previous route). */
  private route(fn: (chunk: Buffer) => void): void {
    if (this.reader) this.reader.handler = fn;
    else {
      this.socket.removeAllListeners('data');
      this.socket.on('data', fn);
    }
  }

  /** Connect, negotiate TLS, log in, and wait for the first ReadyForQuery. Throws PgError. */
  static async connect(opts: ServerConnectOptions): Promise<ServerConnection> {
    const { host, port, name } = opts.endpoint;
    const where = `server "${name}" at ${host}:${port}`;
    let socket: net.Socket | undefined;
    let timer: NodeJS.Timeout | undefined;
    const reader = new ReusableReader();
    try {
      return await new Promise<ServerConnection>((resolve, reject) => {
        timer = setTimeout(() => {
          reject(new PgError(SQLSTATE.CONNECTION_FAILURE, `timed out after ${opts.connectTimeoutMs} ms connecting to ${where}`));
          socket?.destroy();
        }, opts.connectTimeoutMs);
        socket = net.connect({ host, port, onread: reader.onread });
        socket.setNoDelay(true);
        socket.once('error', (e) => reject(new PgError(SQLSTATE.CONNECTION_FAILURE, `could not connect to ${where}: ${e.message}`)));
        socket.once('connect', () => {
          ServerConnection.handshake(socket!, reader, opts, where).then(resolve, reject);
        });
      });
    } catch (e) {
      socket?.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private static async handshake(raw: net.Socket, reader: ReusableReader, opts: ServerConnectOptions, where: string): Promise<ServerConnection> {
    let socket: net.Socket = raw;
    let usingTls = false;
    if (opts.tls.mode !== 'disable') {
      raw.write(m.sslRequest());
      const answer = await readOneByte(raw, reader);
      if (answer === 'S') {
        socket = await upgradeToTls(raw, opts);
        usingTls = true;
      } else if (answer === 'N') {
        if (opts.tls.mode !== 'prefer') {
          throw new PgError(SQLSTATE.CONNECTION_FAILURE, `${where} does not support TLS but server_tls.mode is ${opts.tls.mode}`);
        }
      } else {
        throw new PgError(SQLSTATE.PROTOCOL_VIOLATION, `${where} answered the SSL request with an unexpected byte`);
      }
    }
    const conn = new ServerConnection(socket, opts, usingTls ? undefined : reader);
    conn.tls = usingTls;
    await conn.startup(opts, where);
    return conn;
  }

  /** Startup and login: read messages one at a time until the first ReadyForQuery. */
  private async startup(opts: ServerConnectOptions, where: string): Promise<void> {
    const queue = new MessageQueue();
    const onData = (chunk: Buffer) => {
      try {
        // Copied: the queue keeps messages past this callback, and a reused read buffer would overwrite them.
        for (const msg of this.framer.push(chunk)) queue.push(this.reader ? Buffer.from(msg) : msg);
      } catch (e) {
        queue.fail(e as Error);
      }
    };
    const onEnd = () => queue.fail(new PgError(SQLSTATE.CONNECTION_FAILURE, `${where} closed the connection during login`));
    // A socket destroyed by the connect timeout emits only 'close'.
    const onError = (e: Error) => queue.fail(new PgError(SQLSTATE.CONNECTION_FAILURE, `${where}: ${e.message}`));
    this.route(onData);
    this.socket.on('end', onEnd);
    this.socket.on('close', onEnd);
    this.socket.on('error', onError);
    this.socket.resume(); // reading was paused after the answer to SSLRequest

    const params: Record<string, string> = { user: opts.user, database: opts.database, ...opts.params };
    this.socket.write(m.startupMessage(params));
    let scram: ScramClientSession | undefined;
    const creds = opts.credentials;
    const noCreds = () =>
      new PgError(SQLSTATE.INVALID_PASSWORD, `the gateway holds no credentials to log in to ${where} as user "${opts.user}"`, {
        hint: 'give the user a password in auth.users, or log in once with SCRAM so the gateway learns its ClientKey',
      });
    try {
      for (;;) {
        const msg = await queue.next();
        const type = String.fromCharCode(msg[0]!);
        if (type === 'R') {
          const { code, data } = m.readAuthentication(msg);
          if (code === 0) continue;
          if (code === 3) {
            if (!creds || !('password' in creds)) throw noCreds();
            this.socket.write(m.passwordMessage(creds.password));
          } else if (code === 5) {
            if (!creds) throw noCreds();
            if ('password' in creds) this.socket.write(m.passwordMessage(md5Response({ password: creds.password }, opts.user, data)));
            else if ('md5Hash' in creds) this.socket.write(m.passwordMessage(md5Response({ hash: creds.md5Hash }, opts.user, data)));
            else throw noCreds();
          } else if (code === 10) {
            const mechs = data.toString('utf8').split('\0').filter(Boolean);
            if (!mechs.includes('SCRAM-SHA-256')) {
              throw new PgError(SQLSTATE.FEATURE_NOT_SUPPORTED, `${where} offers no SASL mechanism the gateway supports (${mechs.join(', ')})`);
            }
            if (!creds || 'md5Hash' in creds) throw noCreds();
            scram = new ScramClientSession(creds);
            this.socket.write(m.saslInitialResponse('SCRAM-SHA-256', scram.clientFirst()));
          } else if (code === 11) {
            if (!scram) throw new PgError(SQLSTATE.PROTOCOL_VIOLATION, `${where} sent SASLContinue out of order`);
            this.socket.write(m.saslResponse(scram.handleServerFirst(data)));
          } else if (code === 12) {
            if (!scram) throw new PgError(SQLSTATE.PROTOCOL_VIOLATION, `${where} sent SASLFinal out of order`);
            scram.verifyServerFinal(data);
          } else {
            throw new PgError(SQLSTATE.FEATURE_NOT_SUPPORTED, `${where} asks for authentication method ${code}, which the gateway does not support`);
          }
        } else if (type === 'S') {
          const [k, v] = m.readParameterStatus(msg);
          this.params.set(k, v);
        } else if (type === 'K') {
          const k = m.readBackendKeyData(msg);
          this.pid = k.pid;
          this.secret = k.secret;
        } else if (type === 'Z') {
          this.txStatus = m.readReadyForQuery(msg);
          break;
        } else if (type === 'E') {
          throw serverError(msg);
        }
        // NoticeResponse and NegotiateProtocolVersion during startup need no answer.
      }
    } catch (e) {
      this.socket.destroy();
      throw e instanceof PgError ? e : new PgError(SQLSTATE.CONNECTION_FAILURE, `login to ${where} failed: ${(e as Error).message}`);
    } finally {
      this.socket.off('end', onEnd);
      this.socket.off('close', onEnd);
      this.socket.off('error', onError);
    }
    if (queue.takeAll().length) throw new PgError(SQLSTATE.PROTOCOL_VIOLATION, `${where} sent data after ReadyForQuery during login`);
    this.route((chunk) => this.onData(chunk));
    this.socket.on('close', () => this.onClosed(undefined));
    this.socket.on('error', (e) => this.onClosed(e));
  }

  private onData(chunk: Buffer): void {
    const f = this.framer;
    let n: number;
    try {
      n = f.scan(chunk);
    } catch (e) {
      this.destroy(e as Error);
      return;
    }
    const buf = f.scanned;
    const starts = f.starts;
    try {
      if (f.head) this.track(f.head, 0, f.head.length);
      for (let i = 0; i < n; i++) this.track(buf, starts[i]!, starts[i + 1]!);
      if (this.pending.length > 0) this.onInternal(f.messages(n));
      else if (this.sink) {
        if (this.sink.onServerData(f.head, buf.subarray(0, starts[n]))) this.reader?.replace();
      } else this.onIdleMessages(f.messages(n));
    } catch (e) {
      // A malformed server message (RangeError from a reader) ends this connection, not the process.
      this.destroy(new PgError(SQLSTATE.PROTOCOL_VIOLATION, `server "${this.endpoint.name}" sent a malformed message: ${(e as Error).message}`));
    }
  }

  /** Follow the transaction status and reported parameters in the message at buf[start, end). */
  private track(buf: Buffer, start: number, end: number): void {
    const t = buf[start];
    if (t === 0x5a /* Z */) {
      this.txStatus = String.fromCharCode(buf[start + 5]!) as m.TxStatus;
      this.readyCount++;
    } else if (t === 0x53 /* S */) {
      const [k, v] = m.readParameterStatus(buf.subarray(start, end));
      this.params.set(k, v);
    }
  }

  /** Messages while nobody holds the connection: a FATAL error (the server is going away) and notifications. */
  private onIdleMessages(msgs: Buffer[]): void {
    for (const msg of msgs) {
      if (msg[0] === 0x45 /* E */) this.destroy(serverError(msg));
      else if (msg[0] === 0x41 /* A */) this.onNotification?.(msg);
    }
  }

  /** Receives NotificationResponse messages that arrive while no client holds the connection (a LISTEN connection). */
  onNotification: ((msg: Buffer) => void) | undefined;

  private onInternal(msgs: Buffer[]): void {
    for (const msg of msgs) {
      const q = this.pending[0];
      if (!q) {
        if (msg[0] === 0x41 /* A */) this.onNotification?.(msg);
        continue;
      }
      const t = msg[0];
      if (t === 0x41 /* A */) this.onNotification?.(msg);
      else if (t === 0x44 /* D */) q.rows.push(m.readDataRow(msg));
      else if (t === 0x45 /* E */) q.error = serverError(msg);
      else if (t === 0x5a /* Z */) {
        this.pending.shift();
        q.resolve({ rows: q.rows, error: q.error });
      }
    }
  }

  private onClosed(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    const e = err ?? new PgError(SQLSTATE.CONNECTION_FAILURE, `server "${this.endpoint.name}" closed the connection`);
    for (const q of this.pending.splice(0)) q.reject(e);
    const sink = this.sink;
    this.sink = undefined;
    sink?.onServerClose(err);
    for (const l of this.closeListeners.splice(0)) l(err);
  }

  /** Called once when the connection closes for any reason. */
  onClose(listener: (err: Error | undefined) => void): void {
    if (this.closed) listener(undefined);
    else this.closeListeners.push(listener);
  }

  attach(sink: ServerSink): void {
    this.sink = sink;
    this.lastUsedAt = Date.now();
  }

  detach(): void {
    this.sink = undefined;
    this.lastUsedAt = Date.now();
    this.resume();
  }

  /** Write bytes; false when the socket's buffer is full (wait for drain). */
  write(buf: Buffer): boolean {
    return this.socket.write(buf);
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  onDrain(fn: () => void): void {
    this.socket.once('drain', fn);
  }

  private readPaused = false;

  /** Stop reading (backpressure toward a slow client); resume() undoes it. Each is a no-op when already so. */
  pause(): void {
    if (this.readPaused) return;
    this.readPaused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.readPaused) return;
    this.readPaused = false;
    this.socket.resume();
  }

  /** Bytes queued for the server and not yet handed to the kernel. */
  get writableLength(): number {
    return this.socket.writableLength;
  }

  /** Run one simple query on a connection nobody else is using; resolves at its ReadyForQuery. */
  query(sql: string): Promise<QueryResult> {
    return this.internal(m.query(sql));
  }

  /** Run one extended-protocol query with text parameters. */
  queryParams(sql: string, params: (string | null)[]): Promise<QueryResult> {
    return this.internal(m.extendedQuery(sql, params));
  }

  private internal(bytes: Buffer): Promise<QueryResult> {
    if (this.closed) return Promise.reject(new PgError(SQLSTATE.CONNECTION_FAILURE, `server "${this.endpoint.name}" connection is closed`));
    return new Promise((resolve, reject) => {
      this.pending.push({ rows: [], resolve, reject });
      this.socket.write(bytes);
    });
  }

  /** Ask the server to cancel whatever this connection is running (a separate connection, as the protocol requires). */
  cancel(): Promise<void> {
    const { host, port } = this.endpoint;
    return new Promise((resolve) => {
      const s = net.connect({ host, port }, () => s.end(m.cancelRequest(this.pid, this.secret)));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.setTimeout(5000, () => s.destroy());
    });
  }

  /** Polite close: Terminate, then end. The reason reaches close listeners (and so the logs). */
  close(reason?: string): void {
    if (this.closed) return;
    this.socket.end(m.terminate());
    this.onClosed(reason === undefined ? undefined : new Error(reason));
  }

  destroy(err?: Error): void {
    this.socket.destroy();
    this.onClosed(err);
  }
}

/** The one-byte answer to SSLRequest. Reading pauses afterwards so no TLS byte is consumed here. */
function readOneByte(socket: net.Socket, reader: ReusableReader): Promise<string> {
  return new Promise((resolve, reject) => {
    const onEnd = () => {
      reader.handler = undefined;
      reject(new PgError(SQLSTATE.CONNECTION_FAILURE, 'server closed the connection during the SSL request'));
    };
    reader.handler = (chunk: Buffer) => {
      reader.handler = undefined;
      socket.off('end', onEnd);
      socket.pause();
      // A server must send nothing more before the TLS handshake (CVE-2021-23214).
      if (chunk.length !== 1) reject(new PgError(SQLSTATE.PROTOCOL_VIOLATION, 'server sent unexpected data after its SSL response'));
      else resolve(String.fromCharCode(chunk[0]!));
    };
    socket.on('end', onEnd);
  });
}

const caCache = new Map<string, Buffer>();

function upgradeToTls(raw: net.Socket, opts: ServerConnectOptions): Promise<tls.TLSSocket> {
  const verify = opts.tls.mode === 'verify-full';
  const host = opts.endpoint.host;
  let ca: Buffer | undefined;
  if (verify && opts.tls.ca) {
    ca = caCache.get(opts.tls.ca);
    if (!ca) {
      ca = fs.readFileSync(opts.tls.ca);
      caCache.set(opts.tls.ca, ca);
    }
  }
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      socket: raw,
      ca,
      rejectUnauthorized: verify,
      servername: net.isIP(host) ? undefined : host,
      checkServerIdentity: verify ? (_name, cert) => tls.checkServerIdentity(host, cert) : () => undefined,
    });
    s.once('secureConnect', () => {
      s.off('error', onError);
      resolve(s);
    });
    const onError = (e: Error) =>
      reject(new PgError(SQLSTATE.CONNECTION_FAILURE, `TLS with server "${opts.endpoint.name}" failed: ${e.message}`));
    s.once('error', onError);
  });
}
