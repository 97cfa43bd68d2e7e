// Shadow traffic: copies of client statements run on a mirror (the replicas, or another server) off the
// client's path, on the mirror's own pools, and are compared with the answer the client got.
//
// The relay builds a MirrorJob when a copied request has been answered (the primary's summary is built
// from the very bytes the client received) and offers it here. Jobs wait in a bounded queue; when it is
// full they are dropped and counted: the client never waits for the mirror.

import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ServerConnection, ServerCredentials } from '../backend/server-connection.js';
import { PoolManager } from '../pool/pool.js';
import type { Config, MirrorConfig, NodeConfig } from '../config/types.js';
import type { DbNode, Topology } from '../balancer/topology.js';
import { parseLsn } from '../balancer/topology.js';
import type { EventBus } from '../observability/events.js';
import { applySettings, quoteIdent, serverState, settingsDelta } from '../session/state.js';
import { compare, SummaryBuilder, type ResultSummary } from './compare.js';
import { fingerprint, MirrorReport, type Outcome, type OutcomeCounts, type ReportRow } from './report.js';
import type { Decision } from '../router/router.js';

/** One client request to run again on the mirror, with what the client's session had when it ran. */
export interface MirrorJob {
  client: number;
  database: string;
  user: string;
  /** The statement's text, for the report's fingerprint and the mismatch event. */
  sql: string;
  /** Its fingerprint (Mirror.fingerprintOf). */
  fingerprint: string;
  /** The rows' order is part of the answer (a top-level ORDER BY). */
  ordered: boolean;
  /** The request as sent to the mirror: a Query, or an extended-protocol group ending with Sync (statement names as the gateway's registry has them). */
  request: Buffer;
  /** Named statements the request uses: made to exist on the mirror connection first (Parse under the same name). */
  statements: readonly { name: string; parse: Buffer }[];
  /** The client's session settings when the request ran (name → value). */
  settings: ReadonlyMap<string, string>;
  /** The answer the client got. */
  primary: ResultSummary;
  primaryMs: number;
  /** performance.now() when the request was sent to the primary: what a replica must have replayed by then. */
  sentAt: number;
  /** The statement writes (mirrored only with statements: all, to a server that is not a replica). */
  write: boolean;
}

/** A summary as events carry it: no samples (the differing rows travel separately). */
export type SummaryView = Pick<ResultSummary, 'ok' | 'sqlstate' | 'message' | 'tag' | 'rows' | 'columns'>;

export interface MirrorMismatchEvent {
  type: 'mirror_mismatch';
  client: number;
  database: string;
  user: string;
  /** The mirror node the copy ran on. */
  node: string;
  fingerprint: string;
  /** The statement with its constants replaced, at most 1000 characters. */
  sql: string;
  differences: string[];
  primary: SummaryView;
  mirror: SummaryView;
  /** A few rows found on one side only. */
  rows: { side: 'primary' | 'mirror'; row: string[] }[];
  primary_ms: number;
  /** Null for a copy sent behind others in one write (not timed on its own). */
  mirror_ms: number | null;
}

/** Since start (or the last reset): mirrored = matched + mismatched + lag + errors. */
export type MirrorTotals = OutcomeCounts;

export interface MirrorStatus {
  enabled: boolean;
  /** 'replicas', or the name and address of the mirror server. */
  target: string;
  statements: 'reads' | 'all';
  sample_rate: number;
  databases: string[];
  users: string[];
  queue: { length: number; capacity: number };
  /** Copies running on the mirror now. */
  running: number;
  totals: MirrorTotals;
}

export interface MirrorReportView extends MirrorStatus {
  /** One row per statement fingerprint, the most mirrored first. */
  fingerprints: ReportRow[];
}

type DropReason = 'queue_full' | 'no_target' | 'disabled' | 'target_is_primary';

/** The mirror's connections to one server. */
interface MirrorNode {
  name: string;
  pools: PoolManager;
  /** The replica this is (lag is judged against the primary's WAL position), absent for a server given by address. */
  replica: DbNode | undefined;
}

export interface MirrorOptions {
  config: Config;
  topology: Topology;
  credentials: (user: string) => ServerCredentials;
  events: EventBus;
  registry: Registry;
  maxMessageBytes: number;
}

/** The answer to one request of a batch. */
interface Answer {
  summary: ResultSummary;
  parsed: number;
  at: number;
}

/** Copies sent in one write to a mirror connection at most. */
const MAX_BATCH = 16;

/** Fingerprints (and so the statement in mismatch events) are cut at this many characters. */
const MAX_FINGERPRINT = 1000;
/** Differing rows in a mismatch event. */
const EVENT_ROWS = 5;

export class Mirror {
  private report = new MirrorReport();
  private readonly totals: MirrorTotals = { mirrored: 0, matched: 0, mismatched: 0, lag: 0, errors: 0, dropped: 0 };
  private queue: (MirrorJob | undefined)[] = [];
  private qHead = 0;
  private running = 0;
  /** A write's copy is running: nothing else starts until it is done (see pump()). */
  private writing = false;
  private readonly nodes = new Map<string, MirrorNode>();
  private turn = 0;
  private closed = false;
  /** Mismatch events sent in the current second, and which second. */
  private eventWindow = 0;
  private eventsInWindow = 0;
  private readonly metrics: {
    outcomes: Counter<'outcome'>;
    dropped: Counter<'reason'>;
    latency: Histogram<'side'>;
  };
  /** Labelled children, made once. */
  private readonly outcome: Record<Outcome, Counter.Internal>;
  private readonly side: { primary: Histogram.Internal<'side'>; mirror: Histogram.Internal<'side'> };

  constructor(private readonly opts: MirrorOptions) {
    const registers = [opts.registry];
    const self = this;
    this.metrics = {
      outcomes: new Counter({
        name: 'switchyard_mirror_statements_total',
        help: 'Statements copied to the mirror and compared, by outcome (match, mismatch, lag: a replica had not replayed the primary\'s position, error: the copy could not run)',
        labelNames: ['outcome'],
        registers,
      }),
      dropped: new Counter({
        name: 'switchyard_mirror_dropped_total',
        help: 'Copies not run: the mirror queue was full, no mirror node could take them, mirroring was switched off while they waited, or a write would have run on the primary itself',
        labelNames: ['reason'],
        registers,
      }),
      latency: new Histogram({
        name: 'switchyard_mirror_duration_seconds',
        help: 'Latency of mirrored statements on the primary (the client\'s answer) and on the mirror (the copy)',
        labelNames: ['side'],
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers,
      }),
    };
    new Gauge({
      name: 'switchyard_mirror_queue_length',
      help: 'Copies waiting for the mirror',
      registers,
      collect() {
        this.set(self.queueLength);
      },
    });
    this.outcome = {
      match: this.metrics.outcomes.labels({ outcome: 'match' }),
      mismatch: this.metrics.outcomes.labels({ outcome: 'mismatch' }),
      lag: this.metrics.outcomes.labels({ outcome: 'lag' }),
      error: this.metrics.outcomes.labels({ outcome: 'error' }),
    };
    this.side = { primary: this.metrics.latency.labels({ side: 'primary' }), mirror: this.metrics.latency.labels({ side: 'mirror' }) };
  }

  get config(): MirrorConfig {
    return this.opts.config.mirror;
  }

  /** Mirroring is on (checked per request before anything else). */
  get enabled(): boolean {
    return this.config.enabled;
  }

  private get queueLength(): number {
    return this.queue.length - this.qHead;
  }

  /**
   * Whether this client request should be copied: mirroring on, the database and user selected, the
   * sample drawn, and room in the queue (a copy that would be dropped is counted now, before the
   * gateway spends anything on it).
   */
  admit(database: string, user: string, sql: string, d: Decision): boolean {
    const c = this.config;
    if (!c.enabled) return false;
    if (c.databases.length > 0 && !c.databases.includes(database)) return false;
    if (c.users.length > 0 && !c.users.includes(user)) return false;
    if (c.sample_rate < 1 && Math.random() >= c.sample_rate) return false;
    if (this.queueLength >= c.queue_size) {
      this.drop(sql, 'queue_full', this.fingerprintOf(sql, d));
      return false;
    }
    return true;
  }

  /** A request was answered to the client: queue its copy (or drop it when the queue is full). */
  offer(job: MirrorJob): void {
    if (this.closed || !this.config.enabled) return;
    if (this.queueLength >= this.config.queue_size) return this.drop(job.sql, 'queue_full', job.fingerprint);
    this.queue.push(job);
    // Sent after the event loop's current round of I/O: copies offered for the other clients answered in
    // the same round go in the same write (a copy alone in its round goes alone, and is timed).
    if (this.pumpImmediate === undefined) {
      this.pumpImmediate = setImmediate(() => {
        this.pumpImmediate = undefined;
        this.pump();
      });
    }
  }

  private pumpImmediate: NodeJS.Immediate | undefined;

  private drop(sql: string, reason: DropReason, fp: string): void {
    this.totals.dropped++;
    this.metrics.dropped.inc({ reason });
    this.report.dropped(sql, fp);
  }

  /** Fingerprints by routing decision: texts that differ only in constants share one decision, so one is worked out per decision. */
  private readonly fingerprints = new WeakMap<Decision, string>();

  /** The statement's fingerprint for the report (d: the router's decision for sql). */
  fingerprintOf(sql: string, d: Decision): string {
    let fp = this.fingerprints.get(d);
    if (fp === undefined) {
      fp = fingerprint(sql);
      // Kept per statement shape in the report: bounded whatever the statement's length.
      if (fp.length > MAX_FINGERPRINT) fp = fp.slice(0, MAX_FINGERPRINT - 1) + '…';
      this.fingerprints.set(d, fp);
    }
    return fp;
  }

  private take(): MirrorJob | undefined {
    if (this.qHead >= this.queue.length) return undefined;
    const job = this.queue[this.qHead];
    this.queue[this.qHead++] = undefined;
    // Compact now and then so the array does not grow without bound.
    if (this.qHead >= 1024 && this.qHead * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.qHead);
      this.qHead = 0;
    }
    return job;
  }

  /**
   * Copies run at most pool_size at a time per mirror server, in queue order. A write is a barrier: it
   * starts once every copy before it is done, and nothing after it starts until it is done. So the
   * mirror applies writes in the order the primary answered them, and a copied read sees exactly the
   * copied writes answered before it (run concurrently, a read could overtake the INSERT its client
   * made just before it and be reported as a mismatch).
   */
  private pump(): void {
    for (;;) {
      if (this.writing) return;
      const targets = this.targets();
      const limit = this.config.pool_size * Math.max(1, targets.length);
      if (this.running >= limit) return;
      const next = this.qHead < this.queue.length ? this.queue[this.qHead] : undefined;
      if (!next) return;
      // While a copy is out, those arriving wait to go together in the next write; another write goes out
      // side by side only when a full batch is waiting.
      if (this.running > 0 && this.queueLength < MAX_BATCH) return;
      const barrier = next.write && targets.length > 0 && !targets[0]!.replica;
      if (barrier && this.running > 0) return;
      const job = this.take()!;
      if (targets.length === 0 || (job.write && targets[0]!.replica)) {
        this.drop(job.sql, 'no_target', job.fingerprint);
        continue;
      }
      const node = targets[this.turn++ % targets.length]!;
      const batch = barrier ? [job] : this.batchAfter(job);
      this.running++;
      if (barrier) this.writing = true;
      void this.run(batch, node).finally(() => {
        this.running--;
        if (barrier) this.writing = false;
        this.pump();
      });
    }
  }

  /**
   * Reads queued right behind job that can share its write to a mirror connection: same database, user
   * and settings. Under a backlog this turns one write and one read per copy into one per batch (on two
   * cores shared with the database those system calls are most of a copy's cost); with no backlog a copy
   * goes alone.
   */
  private batchAfter(job: MirrorJob): MirrorJob[] {
    const batch = [job];
    while (batch.length < MAX_BATCH && this.qHead < this.queue.length) {
      const next = this.queue[this.qHead]!;
      if (next.write || next.database !== job.database || next.user !== job.user || settingsDelta(job.settings, next.settings)) break;
      batch.push(this.take()!);
    }
    return batch;
  }

  /** The servers copies can go to now: the replicas that are up (in turn), or the configured server. */
  private targets(): MirrorNode[] {
    const t = this.config.target;
    if (t !== 'replicas') return [this.nodeFor(t.name, t, undefined)];
    const out: MirrorNode[] = [];
    for (const n of this.opts.topology.replicas) {
      if (!n.healthy || n.banned || n.draining) continue;
      out.push(this.nodeFor(n.name, n.config, n));
    }
    // A replica that left (removed, promoted) keeps no mirror connections.
    if (this.nodes.size > out.length) {
      for (const [key, m] of this.nodes) {
        if (m.replica && (m.replica.removed || m.replica.role !== 'replica')) {
          m.pools.close();
          this.nodes.delete(key);
        }
      }
    }
    return out;
  }

  private nodeFor(name: string, endpoint: NodeConfig | { name: string; host: string; port: number }, replica: DbNode | undefined): MirrorNode {
    const key = `${name}\0${endpoint.host}\0${endpoint.port}`;
    let n = this.nodes.get(key);
    if (n && n.replica !== replica) {
      n.pools.close();
      n = undefined;
    }
    if (!n) {
      const c = this.opts.config;
      n = {
        name,
        replica,
        pools: new PoolManager({
          node: `mirror:${name}`,
          endpoint: { name, host: endpoint.host, port: endpoint.port },
          // The mirror's own cap: pool_size connections per (database, user), no per-database overrides.
          pool: {
            ...c.pool,
            size: this.config.pool_size,
            max_db_connections: this.config.pool_size * 1000,
            databases: {},
            users: {},
            queue_timeout_ms: this.config.timeout_ms,
          },
          tls: c.server_tls,
          maxMessageBytes: this.opts.maxMessageBytes,
          credentials: this.opts.credentials,
        }),
      };
      this.nodes.set(key, n);
    }
    return n;
  }

  /**
   * Run copies on node, in one write, and compare each with its client's answer. The first is timed from
   * the write to its ReadyForQuery; the others waited behind it on the server, so their time is not a
   * latency and is left out of the mirror's latency figures.
   */
  private async run(batch: MirrorJob[], node: MirrorNode): Promise<void> {
    const first = batch[0]!;
    let conn: ServerConnection;
    try {
      conn = await node.pools.acquire(first.database, first.user);
    } catch {
      for (const job of batch) this.record(job, 'error');
      return;
    }
    let reusable = false;
    // One deadline for the whole copy: the settings and the replay position are asked of the mirror too,
    // and a server that stops answering (stopped, partitioned) must not hold a mirror connection forever.
    // Destroying the connection rejects whatever is waiting on it.
    const timer = setTimeout(() => {
      conn.destroy(new Error(`the mirror did not answer within mirror.timeout_ms (${this.config.timeout_ms} ms)`));
    }, this.config.timeout_ms);
    let done = 0;
    try {
      // The config refuses the primary's own address; an alias of it (another name, a pooler in front)
      // is found here, before a write would run on the primary a second time.
      if (first.write && (await this.isPrimary(conn, first))) {
        reusable = true;
        done = batch.length;
        for (const job of batch) this.drop(job.sql, 'target_is_primary', job.fingerprint);
        return;
      }
      const ss = serverState(conn);
      await applySettings(conn, ss, first.settings);
      const parts: Buffer[] = [];
      /** Per copy, the statements parsed ahead of it (each at most once in a batch). */
      const fresh: string[][] = [];
      const sent = new Set<string>();
      for (const job of batch) {
        const mine: string[] = [];
        for (const st of job.statements) {
          if (sent.has(st.name) || ss.touch(st.name)) continue;
          sent.add(st.name);
          parts.push(st.parse);
          mine.push(st.name);
        }
        fresh.push(mine);
        parts.push(job.request);
      }
      const start = performance.now();
      const answers = await this.exchange(conn, parts.length === 1 ? parts[0]! : Buffer.concat(parts), batch);
      const mirrorMs = answers[0]!.at - start;
      let replayed: number | undefined;
      for (let k = 0; k < batch.length; k++) {
        const job = batch[k]!;
        const { summary, parsed } = answers[k]!;
        // The fresh Parses went first and the server answers in order, skipping everything after an error
        // up to Sync: the first `parsed` of them made their statement, whatever failed later (Bind, Execute).
        const mine = fresh[k]!;
        for (let i = 0; i < Math.min(parsed, mine.length); i++) ss.prepared.set(mine[i]!, true);
        const cmp = compare(job.primary, summary, EVENT_ROWS);
        let outcome: Outcome = cmp.verdict;
        if (outcome === 'mismatch' && node.replica) {
          replayed ??= parseLsn((await conn.query('SELECT pg_catalog.pg_last_wal_replay_lsn()')).rows[0]?.[0] ?? null);
          if (await this.behind(replayed, job.sentAt)) outcome = 'lag';
        }
        const ms = k === 0 ? mirrorMs : undefined;
        this.record(job, outcome, ms);
        done++;
        if (outcome === 'mismatch') this.mismatchEvent(job, node, summary, cmp, ms);
      }
      await this.trim(conn, ss);
      reusable = conn.txStatus === 'I';
    } catch {
      for (const job of batch.slice(done)) this.record(job, 'error');
    } finally {
      clearTimeout(timer);
      node.pools.release(conn, reusable && !conn.closed, 'keep');
    }
  }

  /** Start times of servers (by mirror connection, and by primary node): two running servers never share one. */
  private readonly serverStart = new WeakMap<object, Promise<string | null>>();

  /** Whether the mirror connection reaches the primary itself (fails closed: an error fails the copy). */
  private async isPrimary(conn: ServerConnection, job: MirrorJob): Promise<boolean> {
    let mine = this.serverStart.get(conn);
    if (mine === undefined) {
      mine = startTimeOf(conn);
      this.serverStart.set(conn, mine);
    }
    const primary = this.opts.topology.primary;
    let theirs = this.serverStart.get(primary);
    if (theirs === undefined) {
      theirs = (async () => {
        const c = await primary.pools.acquire(job.database, job.user);
        try {
          return await startTimeOf(c);
        } finally {
          primary.pools.release(c, true, 'keep');
        }
      })();
      this.serverStart.set(primary, theirs);
      theirs.catch(() => this.serverStart.delete(primary));
    }
    return (await mine) === (await theirs);
  }

  /**
   * Whether a replica that had replayed `replayed` (read right after its copy ran) was behind what the
   * primary's statement could have seen: the primary's WAL position read by its first check sent after
   * the statement was. Waits a few check intervals for that sample; without one (no monitor), false.
   */
  private async behind(replayed: number, sentAt: number): Promise<boolean> {
    const topo = this.opts.topology;
    const interval = this.opts.config.monitor.interval_ms;
    for (let i = 0; i < 5; i++) {
      const lsn = topo.lsnAfter(sentAt);
      if (lsn !== undefined) return replayed < lsn;
      if (this.opts.config.monitor.user === undefined) return false;
      await new Promise((r) => setTimeout(r, interval));
    }
    return false;
  }

  /** Keep the mirror connection's statement cache bounded, as the client connections' are. */
  private async trim(conn: ServerConnection, ss: ReturnType<typeof serverState>): Promise<void> {
    const max = this.opts.config.pool.prepared_statements_cache_size;
    while (ss.prepared.size > max) {
      const victim = ss.prepared.keys().next().value!;
      ss.prepared.delete(victim);
      await conn.query(`DEALLOCATE ${quoteIdent(victim)}`);
    }
  }

  /**
   * Write the requests and summarise each answer up to its ReadyForQuery (run() destroys the connection
   * after timeout_ms). Per request: its summary, the ParseCompletes that came (which of the Parses ahead
   * of it made their statement), and when its ReadyForQuery arrived.
   */
  private exchange(conn: ServerConnection, bytes: Buffer, batch: readonly MirrorJob[]): Promise<Answer[]> {
    // Closed already (the deadline passed): no answer and no close would ever come.
    if (conn.closed) return Promise.reject(new Error('the mirror connection is closed'));
    const answers: Answer[] = [];
    let builder = new SummaryBuilder({ ordered: batch[0]!.ordered });
    let parsed = 0;
    return new Promise<Answer[]>((resolve, reject) => {
      const done = (err: Error | undefined) => {
        conn.detach();
        if (err) reject(err);
        else resolve(answers);
      };
      /** True once the last request is answered. */
      const feed = (buf: Buffer): boolean => {
        let off = 0;
        while (off < buf.length) {
          const end = off + 1 + buf.readInt32BE(off + 1);
          const t = buf[off];
          if (t === 0x5a /* Z */) {
            answers.push({ summary: builder.finish(), parsed, at: performance.now() });
            if (answers.length === batch.length) return true;
            builder = new SummaryBuilder({ ordered: batch[answers.length]!.ordered });
            parsed = 0;
          } else {
            if (t === 0x31 /* 1 ParseComplete */) parsed++;
            builder.add(buf.subarray(off, end));
          }
          off = end;
        }
        return false;
      };
      conn.attach({
        onServerData: (head, run) => {
          // Nothing else is in flight on this connection: the last ReadyForQuery ends the batch.
          if ((head && feed(head)) || feed(run)) done(undefined);
          return false;
        },
        onServerClose: (err) => done(err ?? new Error('the mirror server closed the connection')),
      });
      conn.write(bytes);
    });
  }

  private record(job: MirrorJob, outcome: Outcome, mirrorMs?: number): void {
    this.totals.mirrored++;
    if (outcome === 'match') this.totals.matched++;
    else if (outcome === 'mismatch') this.totals.mismatched++;
    else if (outcome === 'lag') this.totals.lag++;
    else this.totals.errors++;
    this.outcome[outcome].inc();
    this.side.primary.observe(job.primaryMs / 1000);
    if (mirrorMs !== undefined) this.side.mirror.observe(mirrorMs / 1000);
    this.report.record(job.sql, outcome, job.primaryMs, mirrorMs, job.fingerprint);
  }

  private mismatchEvent(job: MirrorJob, node: MirrorNode, summary: ResultSummary, cmp: ReturnType<typeof compare>, mirrorMs: number | undefined): void {
    const max = this.config.max_events_per_second;
    const second = Math.floor(performance.now() / 1000);
    if (second !== this.eventWindow) {
      this.eventWindow = second;
      this.eventsInWindow = 0;
    }
    if (this.eventsInWindow >= max) return;
    this.eventsInWindow++;
    const fp = job.fingerprint;
    const event: MirrorMismatchEvent = {
      type: 'mirror_mismatch',
      client: job.client,
      database: job.database,
      user: job.user,
      node: node.name,
      fingerprint: fp,
      sql: fp,
      differences: cmp.differences,
      primary: view(job.primary),
      mirror: view(summary),
      rows: cmp.rows,
      primary_ms: round(job.primaryMs),
      mirror_ms: mirrorMs === undefined ? null : round(mirrorMs),
    };
    this.opts.events.emit(event);
  }

  status(): MirrorStatus {
    const c = this.config;
    return {
      enabled: c.enabled,
      target: c.target === 'replicas' ? 'replicas' : `${c.target.name} (${c.target.host}:${c.target.port})`,
      statements: c.statements,
      sample_rate: c.sample_rate,
      databases: [...c.databases],
      users: [...c.users],
      queue: { length: this.queueLength, capacity: c.queue_size },
      running: this.running,
      totals: { ...this.totals },
    };
  }

  /** GET /api/v1/mirror/report: the status and one row per statement fingerprint. */
  reportView(): MirrorReportView {
    return { ...this.status(), fingerprints: this.report.rows() };
  }

  /** Start the report afresh (counts and latencies; the metrics keep counting). */
  resetReport(): void {
    this.report = new MirrorReport();
    for (const k of Object.keys(this.totals) as (keyof MirrorTotals)[]) this.totals[k] = 0;
  }

  /**
   * New settings (a reload, the admin API): applied to the next copy. A changed target closes the old
   * target's connections; turning mirroring off drops what is queued.
   */
  apply(next: MirrorConfig): void {
    const cur = this.opts.config.mirror;
    const targetChanged = JSON.stringify(cur.target) !== JSON.stringify(next.target) || cur.pool_size !== next.pool_size;
    this.opts.config.mirror = next;
    if (targetChanged) this.closeNodes();
    if (!next.enabled) {
      // Copies waiting when mirroring is switched off are not run: counted as dropped.
      for (let job = this.take(); job; job = this.take()) this.drop(job.sql, 'disabled', job.fingerprint);
      this.queue = [];
      this.qHead = 0;
    }
    this.pump();
  }

  private closeNodes(): void {
    for (const n of this.nodes.values()) n.pools.close();
    this.nodes.clear();
  }

  close(): void {
    this.closed = true;
    clearImmediate(this.pumpImmediate);
    this.queue = [];
    this.qHead = 0;
    this.closeNodes();
  }
}

async function startTimeOf(conn: ServerConnection): Promise<string | null> {
  const r = await conn.query('SELECT pg_catalog.pg_postmaster_start_time()::text');
  if (r.error) throw r.error;
  return r.rows[0]?.[0] ?? null;
}

function view(s: ResultSummary): SummaryView {
  const v: SummaryView = { ok: s.ok, rows: s.rows, columns: s.columns };
  if (s.sqlstate !== undefined) v.sqlstate = s.sqlstate;
  if (s.message !== undefined) v.message = s.message;
  if (s.tag !== undefined) v.tag = s.tag;
  return v;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
