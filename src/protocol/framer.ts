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
  /** True when the last push() handed out messages that exactly tile the chunk it was given. */
  whole = false;

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
   * Feed one chunk; returns the messages it completes, in order. In startup mode at most one packet
   * is returned and the rest is held until the caller switches mode and calls push() again (with an
   * empty chunk if nothing new arrived). Throws FrameError on a bad length.
   */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.whole = this.held === 0 && chunk.length > 0;
    let off = 0;

    if (this.held > 0) {
      if (this.need < 0) {
        // The header itself was split: join the few held bytes with this chunk and start over.
        chunk = Buffer.concat([...this.parts, chunk]);
        this.parts = [];
        this.held = 0;
      } else {
        const take = Math.min(this.need - this.held, chunk.length);
        this.parts.push(this.copyTail ? Buffer.from(chunk.subarray(0, take)) : chunk.subarray(0, take));
        this.held += take;
        off = take;
        if (this.held < this.need) return out;
        out.push(this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.need));
        this.parts = [];
        this.held = 0;
        this.need = -1;
        if (this.startup) return this.hold(chunk, off, out);
      }
    }

    const hdr = this.startup ? 4 : 5;
    while (chunk.length - off >= hdr) {
      const total = this.lengthAt(chunk, off);
      if (chunk.length - off < total) break;
      out.push(chunk.subarray(off, off + total));
      off += total;
      if (this.startup) return this.hold(chunk, off, out);
    }
    return this.hold(chunk, off, out);
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

  /** Keep the unconsumed tail of chunk for the next push. */
  private hold(chunk: Buffer, off: number, out: Buffer[]): Buffer[] {
    if (off >= chunk.length) return out;
    this.whole = false;
    const rest = this.copyTail ? Buffer.from(chunk.subarray(off)) : chunk.subarray(off);
    this.parts = [rest];
    this.held = rest.length;
    // In startup mode the caller may switch to typed messages before the tail is read, so the tail's
    // length is read only then; the bytes held are few (a startup packet is at most 10000 bytes).
    this.need = !this.startup && rest.length >= 5 ? this.lengthAt(rest, 0) : -1;
    return out;
  }

  /** In startup mode a complete packet may already be held: return it (or nothing). */
  drain(): Buffer[] {
    if (this.held === 0) return [];
    const parts = this.parts;
    this.parts = [];
    this.held = 0;
    this.need = -1;
    return this.push(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }
}
