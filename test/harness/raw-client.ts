// A raw v3 protocol client for tests that must send what no driver would (bad lengths, odd startup packets).

import net from 'node:net';
import { Framer } from '../../src/protocol/framer.js';
import { MessageQueue } from '../../src/protocol/message-queue.js';
import * as m from '../../src/protocol/messages.js';

export class RawClient {
  private readonly framer = new Framer(1 << 30);
  private readonly queue = new MessageQueue();
  /** Resolves when the gateway closes the connection. */
  readonly closed: Promise<void>;

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
