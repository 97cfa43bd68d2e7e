// LISTEN/NOTIFY in transaction pooling: one listening server connection per (database, user) relays notifications to every subscribed client.

import type { ServerConnection } from '../backend/server-connection.js';
import { readNotification } from '../protocol/messages.js';
import { quoteIdent } from './state.js';

export interface NotifySubscriber {
  /** A NotificationResponse for a channel the subscriber listens on (a copy it may keep). */
  deliverNotification(msg: Buffer): void;
}

export type NotifyHubEvent =
  | { type: 'listener_connected'; database: string; user: string; channels: number }
  | { type: 'listener_lost'; database: string; user: string; message: string };

/** Opens the listening connections; one hub per (database, user), created on first LISTEN. */
export class NotifyHubs {
  private readonly hubs = new Map<string, NotifyHub>();
  private closed = false;

  constructor(
    private readonly open: (database: string, user: string) => Promise<ServerConnection>,
    private readonly onEvent?: (e: NotifyHubEvent) => void,
  ) {}

  hub(database: string, user: string): NotifyHub {
    const key = `${database}\0${user}`;
    let h = this.hubs.get(key);
    if (!h) {
      h = new NotifyHub(database, user, () => this.open(database, user), () => this.closed, this.onEvent);
      this.hubs.set(key, h);
    }
    return h;
  }

  /** The primary changed: every listening connection moves to it (they reconnect and listen again). */
  reconnectAll(reason: string): void {
    for (const h of this.hubs.values()) h.drop(reason);
  }

  close(): void {
    this.closed = true;
    for (const h of this.hubs.values()) h.close();
  }
}

export class NotifyHub {
  private readonly channels = new Map<string, Set<NotifySubscriber>>();
  private conn: ServerConnection | undefined;
  private connecting: Promise<ServerConnection> | undefined;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    readonly database: string,
    readonly user: string,
    private readonly open: () => Promise<ServerConnection>,
    private readonly shuttingDown: () => boolean,
    private readonly onEvent?: (e: NotifyHubEvent) => void,
  ) {}

  /** Subscribe; resolves once the server listens on the channel, so a NOTIFY sent after that reaches the subscriber. */
  async listen(sub: NotifySubscriber, channel: string): Promise<void> {
    let subs = this.channels.get(channel);
    if (!subs) {
      subs = new Set();
      this.channels.set(channel, subs);
    }
    subs.add(sub);
    // LISTEN is idempotent on the server: no need to know whether another subscriber got there first.
    // A connection closed under the query (dropped for a new primary) is replaced once and asked again.
    for (let attempt = 0; ; attempt++) {
      const conn = await this.connection();
      try {
        const r = await conn.query(`LISTEN ${quoteIdent(channel)}`);
        if (r.error) throw r.error;
        return;
      } catch (e) {
        if (!conn.closed || attempt > 0 || this.shuttingDown()) throw e;
      }
    }
  }

  unlisten(sub: NotifySubscriber, channel: string): void {
    const subs = this.channels.get(channel);
    if (!subs?.delete(sub) || subs.size > 0) return;
    this.channels.delete(channel);
    if (this.conn && !this.conn.closed) void this.conn.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => {});
  }

  unlistenAll(sub: NotifySubscriber, channels: Iterable<string>): void {
    for (const ch of channels) this.unlisten(sub, ch);
  }

  /** Channels with at least one subscriber. */
  get channelCount(): number {
    return this.channels.size;
  }

  private connection(): Promise<ServerConnection> {
    if (this.conn && !this.conn.closed) return Promise.resolve(this.conn);
    this.connecting ??= this.open().then(
      (conn) => {
        this.connecting = undefined;
        this.conn = conn;
        conn.onNotification = (msg) => this.dispatch(msg);
        conn.onClose((err) => this.lost(conn, err));
        this.onEvent?.({ type: 'listener_connected', database: this.database, user: this.user, channels: this.channels.size });
        return conn;
      },
      (e: unknown) => {
        this.connecting = undefined;
        throw e;
      },
    );
    return this.connecting;
  }

  private dispatch(msg: Buffer): void {
    const { channel } = readNotification(msg);
    const subs = this.channels.get(channel);
    if (!subs) return;
    const copy = Buffer.from(msg); // the read buffer is reused after this call
    for (const s of subs) s.deliverNotification(copy);
  }

  /** The listening connection died: reconnect and listen again on every channel still wanted. */
  private lost(conn: ServerConnection, err: Error | undefined): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    if (this.shuttingDown()) return;
    this.onEvent?.({ type: 'listener_lost', database: this.database, user: this.user, message: err?.message ?? 'closed' });
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.channels.size === 0 || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.shuttingDown() || this.channels.size === 0) return;
      void this.connection()
        .then((c) => Promise.all([...this.channels.keys()].map((ch) => c.query(`LISTEN ${quoteIdent(ch)}`))))
        .catch(() => this.scheduleRetry());
    }, 1000);
    this.retry.unref();
  }

  /** Close the listening connection; lost() opens a new one (through open(), to whatever node it reaches now). */
  drop(reason: string): void {
    this.conn?.close(reason);
    // One being opened may reach the old node: closed on arrival, and lost() opens another.
    void this.connecting?.then((c) => c.close(reason)).catch(() => {});
  }

  close(): void {
    clearTimeout(this.retry);
    this.conn?.close('gateway shutting down');
    this.conn = undefined;
  }
}
