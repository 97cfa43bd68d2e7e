// A scripted stand-in for PostgreSQL, for failures a real server cannot be made to produce (malformed
// messages, answers held back at an exact point).

import net from 'node:net';
import { Framer } from '../../src/protocol/framer.js';
import * as m from '../../src/protocol/messages.js';

export interface FakeServerScript {
  /** Answer a simple Query; return the bytes to send (default: CommandComplete + ReadyForQuery). */
  onQuery?: (sql: string, socket: net.Socket) => Buffer | Promise<Buffer>;
  /** Called at each Sync of the extended protocol before ReadyForQuery is sent (delay it by awaiting). */
  onSync?: () => void | Promise<void>;
}

export class FakeServer {
  private readonly sockets = new Set<net.Socket>();
  connections = 0;

  private constructor(private readonly server: net.Server) {}

  static start(script: FakeServerScript = {}): Promise<FakeServer> {
    const server = net.createServer();
    const fake = new FakeServer(server);
    server.on('connection', (socket) => fake.serve(socket, script));
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(fake)));
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  private serve(socket: net.Socket, script: FakeServerScript): void {
    this.connections++;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const framer = new Framer(1 << 20, { startup: true });
    let chain = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      for (const msg of framer.push(chunk)) chain = chain.then(() => this.answer(socket, framer, msg, script));
      if (!framer.startup) for (const msg of framer.drain()) chain = chain.then(() => this.answer(socket, framer, msg, script));
    });
  }

  private async answer(socket: net.Socket, framer: Framer, msg: Buffer, script: FakeServerScript): Promise<void> {
    if (framer.startup) {
      const pkt = m.readUntypedPacket(msg);
      if (pkt.kind === 'ssl') return void socket.write('N');
      framer.startup = false;
      socket.write(
        Buffer.concat([
          m.authenticationOk(),
          m.parameterStatus('server_version', '15.99'),
          m.parameterStatus('client_encoding', 'UTF8'),
          m.backendKeyData(4242, 1),
          m.readyForQuery('I'),
        ]),
      );
      return;
    }
    const type = String.fromCharCode(msg[0]!);
    if (type === 'Q') {
      const sql = msg.toString('utf8', 5, msg.length - 1);
      const reply = script.onQuery ? await script.onQuery(sql, socket) : Buffer.concat([m.frame('C', Buffer.from('SELECT 0\0')), m.readyForQuery('I')]);
      socket.write(reply);
    } else if (type === 'S') {
      await script.onSync?.();
      socket.write(m.readyForQuery('I'));
    } else if (type === 'X') socket.end();
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
