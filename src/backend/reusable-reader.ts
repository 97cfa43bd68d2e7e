// Reads a plain TCP socket into one reused buffer, and adopts accepted sockets into that mode.

import net from 'node:net';

const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Reads through Node's onread into one reused buffer, which skips the stream machinery and a fresh
 * allocation per read. The owner calls replace() whenever a frame in the buffer may outlive the read
 * callback (a write of it still queued), so frames handed out stay valid until they are written.
 */
export class ReusableReader {
  private buf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  handler: ((chunk: Buffer) => void) | undefined;
  readonly onread = {
    buffer: () => this.buf,
    callback: (n: number, b: Buffer): boolean => {
      this.handler?.(b.subarray(0, n));
      return true; // keep reading: backpressure pauses the socket explicitly
    },
  };

  /** The current buffer is referenced elsewhere: read into a new one from now on. */
  replace(): void {
    this.buf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  }
}

interface HandleOwner {
  _handle: unknown;
}
interface ConnectionCounter {
  _connections: number;
}

/**
 * Move a socket accepted by server (created with pauseOnConnect, so it has read nothing) onto a new
 * net.Socket that reads through reader. Node offers onread only to sockets it creates with connect(),
 * so the accepted handle is re-wrapped; returns undefined (keep the original socket) when the handle
 * is not where this Node version keeps it.
 */
export function adoptAccepted(server: net.Server, socket: net.Socket, reader: ReusableReader): net.Socket | undefined {
  const owner = socket as unknown as HandleOwner;
  const handle = owner._handle;
  const counter = server as unknown as ConnectionCounter;
  if (!handle || typeof counter._connections !== 'number') return undefined;
  owner._handle = null;
  // The original socket will never close now, so it must not keep server.close() waiting.
  counter._connections--;
  const adopted = new net.Socket({ handle: handle as never, onread: reader.onread, readable: true, writable: true } as net.SocketConstructorOpts);
  return adopted;
}
