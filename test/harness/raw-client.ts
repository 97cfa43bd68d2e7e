// A raw v3 protocol client for tests that must send what no driver would (bad lengths, odd startup packets).

import net from 'node:net';
import { Framer } from '../../src/protocol/framer.js';
import { MessageQueue } from '../../src/protocol/message-queue.js';
import * as m from '../../src/protocol/messages.js';
import { md5Response } from '../../src/auth/md5.js';
import { ScramClientSession } from '../../src/auth/scram.js';

export class RawClient {
  private readonly framer = new Framer(1 << 30);
  private readonly queue = new MessageQueue();
  /** Resolves when the gateway closes the connection. */
  readonly closed: Promise<void>;
  /** BackendKeyData from the login, for a CancelRequest. */
  key: { pid: number; secret: number } | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const msg of this.framer.push(chunk)) this.queue.push(msg);
    });
    this.closed = new Promise((resolve) => socket.on('close', () => {
      this.queue.fail(new Error('connection closed'));
      resolve();
    }));
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Read one raw byte (the answer to SSLRequest / GSSENCRequest). */
  readByte(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.socket.removeAllListeners('data');
      this.socket.once('data', (chunk: Buffer) => {
        resolve(String.fromCharCode(chunk[0]!));
        const rest = chunk.subarray(1);
        this.socket.on('data', (c: Buffer) => {
          for (const msg of this.framer.push(c)) this.queue.push(msg);
        });
        if (rest.length) for (const msg of this.framer.push(rest)) this.queue.push(msg);
      });
      this.socket.once('close', () => reject(new Error('closed before answering')));
    });
  }

  send(buf: Buffer): void {
    this.socket.write(buf);
  }

  next(): Promise<Buffer> {
    return this.queue.next();
  }

  /** Send a CancelRequest for this connection's key on a new connection to port. */
  cancel(port: number): void {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.end(m.cancelRequest(this.key!.pid, this.key!.secret)));
    s.on('error', () => {});
  }

  /** Read messages until one of the given type arrives; returns all read, the last being that one. */
  async until(type: string): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (;;) {
      const msg = await this.next();
      out.push(msg);
      if (String.fromCharCode(msg[0]!) === type) return out;
    }
  }

  /** Startup as a trust-authenticated user, up to the first ReadyForQuery. */
  async startup(params: Record<string, string>): Promise<Buffer[]> {
    this.send(m.startupMessage(params));
    return this.until('Z');
  }

  end(): void {
    this.socket.end();
  }
}

export function typeOf(msg: Buffer): string {
  return String.fromCharCode(msg[0]!);
}

/** The SQLSTATE of an ErrorResponse. */
export function sqlstate(msg: Buffer): string | undefined {
  return m.readErrorFields(msg).get('C');
}

/**
 * A reply message as a short, comparable label: 'E:<sqlstate>', 'D:<values>', 'C:<tag>', 'Z:<status>',
 * 't:/T:<hex body>', or the type letter. Undefined for the asynchronous ones (notice, ParameterStatus,
 * notification), which reply sequences leave out.
 */
export function replyLabel(msg: Buffer): string | undefined {
  const t = typeOf(msg);
  switch (t) {
    case 'N':
    case 'S':
    case 'A':
      return undefined;
    case 'E':
      return `E:${m.readErrorFields(msg).get('C')}`;
    case 'D':
      return `D:${m.readDataRow(msg).join(',')}`;
    case 'C':
      return `C:${msg.toString('utf8', 5, msg.length - 1)}`;
    case 't':
    case 'T':
      return `${t}:${msg.subarray(5).toString('hex')}`;
    case 'Z':
      return `Z:${String.fromCharCode(msg[5]!)}`;
    default:
      return t;
  }
}

/** Send a startup packet on c and answer a password login (SCRAM, MD5 or cleartext, whatever is asked) up to ReadyForQuery. */
export async function passwordLogin(c: RawClient, user: string, password: string, params: Record<string, string> = {}): Promise<RawClient> {
  c.send(m.startupMessage({ user, database: 'postgres', ...params }));
  let scram: ScramClientSession | undefined;
  for (;;) {
    const msg = await c.next();
    const t = typeOf(msg);
    if (t === 'R') {
      const { code, data } = m.readAuthentication(msg);
      if (code === 0) continue;
      if (code === 3) c.send(m.passwordMessage(password));
      else if (code === 5) c.send(m.passwordMessage(md5Response({ password }, user, data.subarray(0, 4))));
      else if (code === 10) {
        scram = new ScramClientSession({ password });
        c.send(m.saslInitialResponse('SCRAM-SHA-256', scram.clientFirst()));
      } else if (code === 11) c.send(m.saslResponse(scram!.handleServerFirst(data)));
      else if (code === 12) scram!.verifyServerFinal(data);
      else throw new Error(`unsupported authentication request ${code}`);
    } else if (t === 'E') throw new Error(`login failed: ${m.readErrorFields(msg).get('M')}`);
    else if (t === 'K') c.key = m.readBackendKeyData(msg);
    else if (t === 'Z') return c;
  }
}
