// Splits a byte stream into whole protocol messages, validating every length before it holds a byte more.
//
// Invariant: a message handed out is either a subarray of the chunk just pushed or a fresh Buffer joined
// once when a message spanned chunks; nothing here ever writes into a buffer it has handed out. A chunk
// from a 'data' event is never reused by Node, so its frames stay valid however long they wait in a write
// queue. A caller that reuses its read buffer sets copyTail (bytes held across pushes are copied) and
// must itself stop reusing a buffer whose frames it keeps (see ServerConnection's reader).

import { MAX_STARTUP_PACKET_BYTES } from './messages.js';

/** Raised for a length that is impossible (below the minimum) or larger than allowed. */
export class FrameError extends Error {
  constructor(
    message: string,
    /** SQLSTATE to report: 08P01 for a malformed length, 54000 for a message over the limit. */
    readonly code: string,
  ) {
    super(message);
    this.name = 'FrameError';
  }
}

export class Framer {
  /** When true, the next message is an untyped startup-phase packet (no type byte). */
  startup: boolean;

  /**
   * After scan(): a message completed from bytes held since earlier chunks (a fresh buffer), if any.
   * It comes before the run in `scanned`.
   */
  head: Buffer | undefined;
  /** After scan(): the buffer `starts` indexes (the chunk, part of it, or a copy joined with held header bytes). */
  scanned: Buffer = Buffer.alloc(0);
  /** After scan() returned n: message i occupies scanned[starts[i], starts[i + 1]); the run ends at starts[n]. Reused. */
  readonly starts: number[] = [0];

  private parts: Buffer[] = [];
  private held = 0;
  /** Total length of the message being assembled, or -1 while its header is incomplete. */
  private need = -1;

  /** Copy bytes held across pushes: set when the caller reuses its chunk buffers. */
  private readonly copyTail: boolean;

  constructor(
    private readonly maxMessageBytes: number,
    opts: { startup?: boolean; copyTail?: boolean } = {},
  ) {
    this.startup = opts.startup ?? false;
    this.copyTail = opts.copyTail ?? false;
  }

  /** Bytes held for an incomplete message. */
  get pending(): number {
    return this.held;
  }

  /**
   * Feed one chunk of typed messages without allocating a view per message: afterwards `head` (maybe) and
   * then the n messages of the run scanned[starts[0], starts[n]) are the whole messages completed, in order;
   * a trailing partial message is held. A relay can write head and the run as they are: two writes at most,
   * however many messages. Throws FrameError on a bad length.
   */
  scan(chunk: Buffer): number {
    this.head = undefined;
    if (this.held > 0) {
      if (this.need < 0) {
        // The header itself was split: join the few held bytes with this chunk and start over.
        chunk = Buffer.concat([...this.parts, chunk]);
        this.release();
      } else {
        const take = Math.min(this.need - this.held, chunk.length);
        this.parts.push(this.keep(chunk.subarray(0, take)));
        this.held += take;
        if (this.held < this.need) {
          this.scanned = chunk;
          this.starts[0] = 0;
          return 0;
        }
        this.head = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.need);
        this.release();
        chunk = chunk.subarray(take);
      }
    }
    this.scanned = chunk;
    const starts = this.starts;
    let off = 0;
    let n = 0;
    while (chunk.length - off >= 5) {
      const total = this.lengthAt(chunk, off);
      if (chunk.length - off < total) break;
      starts[n++] = off;
      off += total;
    }
    starts[n] = off;
    if (off < chunk.length) this.hold(chunk.subarray(off));
    return n;
  }

  /**
   * Feed one chunk; returns the messages it completes, in order, as buffers. In startup mode at most one
   * packet is returned and the rest is held until the caller switches mode and calls drain().
   * Throws FrameError on a bad length.
   */
  push(chunk: Buffer): Buffer[] {
    if (this.startup) return this.pushStartup(chunk);
    return this.messages(this.scan(chunk));
  }

  /** The n messages of the last scan() (head included) as buffers. */
  messages(n: number): Buffer[] {
    const out: Buffer[] = this.head ? [this.head] : [];
    const buf = this.scanned;
    for (let i = 0; i < n; i++) out.push(buf.subarray(this.starts[i], this.starts[i + 1]));
    return out;
  }

  /** Startup packets: untyped, small, one at a time (the mode may change after each). */
  private pushStartup(chunk: Buffer): Buffer[] {
    if (this.held > 0) {
      chunk = Buffer.concat([...this.parts, chunk]);
      this.release();
    }
    if (chunk.length < 4) {
      if (chunk.length > 0) this.hold(chunk);
      return [];
    }
    const total = this.lengthAt(chunk, 0);
    if (chunk.length < total) {
      this.hold(chunk);
      return [];
    }
    if (chunk.length > total) this.hold(chunk.subarray(total));
    return [chunk.subarray(0, total)];
  }

  /** Re-read what is held (after the caller switched modes). */
  drain(): Buffer[] {
    if (this.held === 0) return [];
    const parts = this.parts;
    this.release();
    return this.push(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }

  /** Total frame length of the message whose header starts at off (validated). */
  private lengthAt(buf: Buffer, off: number): number {
    if (this.startup) {
      const len = buf.readInt32BE(off);
      if (len < 8 || len > MAX_STARTUP_PACKET_BYTES) {
        throw new FrameError(`invalid startup packet length ${len}`, '08P01');
      }
      return len;
    }
    const len = buf.readInt32BE(off + 1);
    if (len < 4) {
      throw new FrameError(`invalid message length ${len} for message type '${String.fromCharCode(buf[off]!)}'`, '08P01');
    }
    if (len + 1 > this.maxMessageBytes) {
      throw new FrameError(`message of ${len + 1} bytes exceeds the limit of ${this.maxMessageBytes} bytes`, '54000');
    }
    return len + 1;
  }

  private keep(b: Buffer): Buffer {
    return this.copyTail ? Buffer.from(b) : b;
  }

  /** Hold an incomplete message. Its length is validated now if its header is here, before more arrives. */
  private hold(rest: Buffer): void {
    this.parts = [this.keep(rest)];
    this.held = rest.length;
    // In startup mode the caller may switch to typed messages before the tail is read, so the tail's
    // length is read only then; the bytes held are few (a startup packet is at most 10000 bytes).
    this.need = !this.startup && rest.length >= 5 ? this.lengthAt(rest, 0) : -1;
  }

  private release(): void {
    this.parts = [];
    this.held = 0;
    this.need = -1;
  }
}
