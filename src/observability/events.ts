// The one typed event bus every part reports to; logs (and later metrics and the WebSocket stream) read from it.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { PoolEvent } from '../pool/pool.js';
import type { NodeEvent } from '../balancer/topology.js';
import type { NotifyHubEvent } from '../session/notify-hub.js';
import type { MirrorMismatchEvent } from '../mirror/mirror.js';

export type GatewayEvent =
  | { type: 'client_connected'; client: number; address: string }
  | { type: 'client_authenticated'; client: number; address: string; user: string; database: string; method: string }
  | { type: 'client_auth_failed'; client: number; address: string; user: string; reason: string }
  | { type: 'client_error'; client: number; address: string; code: string; message: string }
  | { type: 'client_disconnected'; client: number; address: string; duration_ms: number; database?: string; bytes_in?: number; bytes_out?: number }
  | { type: 'server_lost'; client: number; server: number; message: string }
  | { type: 'config_reloaded'; changed: string[]; restart_required: string[] }
  | { type: 'pin_started'; client: number; server: number; reason: string }
  | { type: 'pin_ended'; client: number; server: number; reason: string }
  | { type: 'txn_routed'; client: number; node: string; target: 'primary' | 'replica'; reason: string }
  | { type: 'txn_switched'; client: number; from: string; to: string; reason: string }
  | { type: 'switch_refused'; client: number; node: string; reason: string }
  | { type: 'query_retried'; client: number; node: string; message: string }
  | { type: 'admin_command'; client: number; user: string; command: string }
  | MirrorMismatchEvent
  | NodeEvent
  | NotifyHubEvent
  | PoolEvent;

const WARN: ReadonlySet<GatewayEvent['type']> = new Set(['client_auth_failed', 'client_error', 'server_lost', 'pool_exhausted', 'listener_lost', 'node_down', 'switch_refused', 'replica_banned', 'replica_lagging', 'primary_changed', 'query_retried', 'mirror_mismatch']);
const DEBUG: ReadonlySet<GatewayEvent['type']> = new Set(['client_connected', 'client_disconnected', 'server_opened', 'server_closed']);
/** One per client transaction: logged only at trace level. */
const TRACE: ReadonlySet<GatewayEvent['type']> = new Set(['txn_routed']);

export class EventBus {
  private readonly emitter = new EventEmitter();
  /** Counts of every event type since start. */
  readonly counts = new Map<string, number>();

  constructor(private readonly log?: Logger) {
    this.emitter.setMaxListeners(100);
  }

  private readonly watched = new Map<string, number>();

  /**
   * Someone wants events of a per-transaction type (a WebSocket stream asked for it by name); returns
   * the function that stops it. Such events are built only while wanted (wants()), so the per-transaction
   * path pays nothing for them otherwise.
   */
  watch(type: GatewayEvent['type']): () => void {
    this.watched.set(type, (this.watched.get(type) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.watched.get(type) ?? 1) - 1;
      if (n > 0) this.watched.set(type, n);
      else this.watched.delete(type);
    };
  }

  /** Whether an event of a per-transaction type would reach anyone: a watcher, or the log at trace level. */
  wants(type: GatewayEvent['type']): boolean {
    return this.watched.has(type) || (this.log?.isLevelEnabled('trace') ?? false);
  }

  emit(event: GatewayEvent): void {
    this.counts.set(event.type, (this.counts.get(event.type) ?? 0) + 1);
    if (this.log) {
      const type = event.type;
      const level = WARN.has(type) ? 'warn' : DEBUG.has(type) ? 'debug' : TRACE.has(type) ? 'trace' : 'info';
      // Checked first: building the line costs more than the event when nobody reads it.
      if (this.log.isLevelEnabled(level)) {
        const { type: _t, ...rest } = event;
        this.log[level]({ event: type, ...rest }, type);
      }
    }
    this.emitter.emit('event', event);
  }

  on(listener: (event: GatewayEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
