/**
 * The SQL client: deliver's functions called over node-postgres.
 *
 * Every call is one statement with its arguments as parameters; ids come
 * back as bigint whatever type parsers the application set globally (each
 * query carries its own), JSON as parsed values, intervals as seconds.
 */
import pg from 'pg';
import { fromPgError } from './errors.js';
import type {
  AlterQueueOptions,
  BatchMessage,
  ConsumerGroupInfo,
  CreateQueueOptions,
  DeadLetter,
  DeadLettersOptions,
  DeleteDeadLettersOptions,
  GroupPosition,
  Guarantee,
  IdInput,
  Interval,
  Message,
  NackOptions,
  OnExpire,
  Overflow,
  AckCommit,
  PeekOptions,
  PeekedMessage,
  Privilege,
  Binding,
  PublishOptions,
  Published,
  RoutingMatch,
  QueueClient,
  QueueInfo,
  QueueMetrics,
  ReceiveOptions,
  RedriveOptions,
  ReplayArchiveOptions,
  ReplayResult,
  SendBatchOptions,
  SendOptions,
} from './types.js';
import { idText, intervalText, maybeBigInt, positionText, toDate, toNumber } from './util.js';
import { exactlyOnceRound } from './exactly-once.js';
import type { ExactlyOnceHandler, ExactlyOnceOptions, ExactlyOnceResult } from './exactly-once.js';

/** Anything with node-postgres's `query`: a Pool, a Client, a PoolClient. */
export interface Queryable {
  query(config: pg.QueryConfig): Promise<pg.QueryResult>;
}

/** A Pool (it hands out clients). */
function isPool(db: unknown): db is pg.Pool {
  return typeof db === 'object' && db !== null && typeof (db as pg.Pool).connect === 'function'
    && typeof (db as pg.Pool).totalCount === 'number';
}

/**
 * The type parsers of deliver's queries, whatever the application set
 * globally: int8 as bigint, json/jsonb parsed; the rest as node-postgres
 * parses it.
 */
const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (format === 'binary') return pg.types.getTypeParser(oid, 'binary') as (value: string) => unknown;
    switch (oid) {
      case 20: // int8
        return (v: string) => BigInt(v);
      case 114: // json
      case 3802: // jsonb
        return (v: string) => JSON.parse(v);
      case 25: // text
        return (v: string) => v;
      default:
        return pg.types.getTypeParser(oid, 'text') as (value: string) => unknown;
    }
  },
};

/** A message row of deliver.receive. */
function toMessage<P>(r: Record<string, unknown>): Message<P, bigint> {
  return {
    messageId: maybeBigInt(r.message_id) as bigint,
    deliveryId: maybeBigInt(r.delivery_id),
    payload: r.payload as P,
    headers: (r.headers ?? null) as Record<string, unknown> | null,
    orderingKey: (r.ordering_key ?? null) as string | null,
    attempt: Number(r.attempt),
    enqueuedAt: toDate(r.enqueued_at) as Date,
    leaseExpiresAt: toDate(r.lease_expires_at),
  };
}

function toQueueInfo(r: Record<string, unknown>): QueueInfo {
  return {
    name: r.queue_name as string,
    guarantee: r.guarantee as Guarantee,
    visibilityTimeout: Number(r.visibility_timeout),
    maxAttempts: Number(r.max_attempts),
    fifo: r.fifo as boolean,
    dedupWindow: Number(r.dedup_window),
    retryBase: Number(r.retry_base),
    retryMax: Number(r.retry_max),
    archiveRetention: toNumber(r.archive_retention),
    consumerGroups: (r.consumer_groups ?? []) as string[],
    createdAt: toDate(r.created_at) as Date,
    messageTtl: toNumber(r.message_ttl),
    onExpire: (r.on_expire ?? 'dead_letter') as OnExpire,
    maxDepth: toNumber(r.max_depth),
    overflow: (r.overflow ?? 'reject') as Overflow,
    ackCommit: (r.ack_commit ?? 'durable') as AckCommit,
    priorities: r.priorities === true,
  };
}

function toPeeked<P>(r: Record<string, unknown>): PeekedMessage<P, bigint> {
  return {
    messageId: maybeBigInt(r.message_id) as bigint,
    payload: r.payload as P,
    headers: (r.headers ?? null) as Record<string, unknown> | null,
    orderingKey: (r.ordering_key ?? null) as string | null,
    attempt: Number(r.attempt),
    enqueuedAt: toDate(r.enqueued_at) as Date,
    redelivery: Boolean(r.redelivery),
  };
}

function toDeadLetter<P>(r: Record<string, unknown>): DeadLetter<P, bigint> {
  return {
    messageId: maybeBigInt(r.message_id) as bigint,
    group: r.group_name as string,
    payload: r.payload as P,
    headers: (r.headers ?? null) as Record<string, unknown> | null,
    orderingKey: (r.ordering_key ?? null) as string | null,
    attempts: Number(r.attempts),
    reason: r.reason as string,
    lastError: (r.last_error ?? null) as string | null,
    enqueuedAt: toDate(r.enqueued_at) as Date,
    deadAt: toDate(r.dead_at) as Date,
  };
}

function toMetrics(r: Record<string, unknown>): QueueMetrics {
  return {
    queue: r.queue_name as string,
    group: r.consumer_group as string,
    depth: Number(r.depth),
    inFlight: Number(r.in_flight),
    delayed: Number(r.delayed),
    deadLetters: Number(r.dead_letters),
    oldestAge: toNumber(r.oldest_age),
    sentTotal: Number(r.sent_total),
    ackedTotal: Number(r.acked_total),
    deadTotal: Number(r.dead_total),
    workerLastRun: toDate(r.worker_last_run),
    workerLag: toNumber(r.worker_lag),
    workerErrors: toNumber(r.worker_errors),
  };
}

/** JSON text of a value for a jsonb parameter (node-postgres would turn an array into a Postgres array). */
function json(v: unknown): string | null {
  if (v === undefined) return null;
  return JSON.stringify(v);
}

/** seconds of an interval column, in SQL */
const secs = (col: string) => `extract(epoch FROM ${col})::float8 AS ${col}`;

export interface ArchivedMessage<P = unknown> {
  messageId: bigint;
  payload: P;
  headers: Record<string, unknown> | null;
  orderingKey: string | null;
  enqueuedAt: Date;
  archivedAt: Date;
}

export interface Grant {
  queue: string;
  role: string;
  privilege: Privilege;
}

export type AlertMetric = 'depth' | 'oldest_age' | 'dead_letters';

export interface Alert {
  queue: string;
  metric: AlertMetric;
  threshold: number;
  firing: boolean;
  value: number | null;
  changedAt: Date | null;
}

export interface MaintainResult {
  queue: string;
  truncated: number;
  rotated: boolean;
  expiredKeys: number;
  expiredDeadLetters: number;
  archived: number;
  expiredArchive: number;
}

export interface PushSubscription {
  name: string;
  queue: string;
  group: string | null;
  slotOptions: string | null;
  active: boolean;
  confirmedLsn: string | null;
  createdAt: Date;
}

export interface PushMetrics {
  name: string;
  queue: string;
  active: boolean;
  confirmedLsn: string | null;
  lagBytes: number | null;
  retainedWalBytes: number | null;
}

export interface LeaseSlots {
  total: number;
  free: number;
  reserved: number;
  reservePerQueue: number;
  maxPerQueue: number;
  queues: number;
}

/**
 * deliver over SQL.
 *
 * ```ts
 * const deliver = new DeliverClient('postgres://localhost/app');   // or a pg.Pool, a config
 * await deliver.send('orders', { order: 1 });
 * ```
 *
 * Given a client in a transaction (`deliver.forClient(client)`), its calls
 * run in that transaction: the transactional outbox.
 */
export class DeliverClient implements QueueClient {
  /** What the calls run on. */
  readonly db: Queryable;
  private readonly ownPool: pg.Pool | null;

  /**
   * @param db a pg.Pool, pg.Client or pg.PoolClient; a connection string;
   *   a pg.PoolConfig; or nothing (a pool from the PG* environment variables).
   *   A pool it makes itself is closed by close().
   */
  constructor(db?: Queryable | pg.Pool | pg.Client | pg.PoolClient | pg.PoolConfig | string) {
    if (db === undefined || typeof db === 'string' || typeof (db as Queryable).query !== 'function') {
      const config = typeof db === 'string' ? { connectionString: db } : (db as pg.PoolConfig | undefined);
      this.ownPool = new pg.Pool(config);
      this.db = this.ownPool;
    } else {
      this.ownPool = null;
      this.db = db as Queryable;
    }
  }

  /** A client whose calls run on `client`, e.g. inside the caller's transaction. */
  forClient(client: Queryable | pg.Client | pg.PoolClient): DeliverClient {
    return new DeliverClient(client as Queryable);
  }

  /** Ends the pool the client made itself (not one it was given). */
  async close(): Promise<void> {
    if (this.ownPool) await this.ownPool.end();
  }

  /** Runs one statement of deliver's; errors become DeliverErrors. */
  async query(text: string, values: unknown[] = [], on: Queryable = this.db): Promise<Record<string, unknown>[]> {
    try {
      const r = await on.query({ text, values, types: TYPES } as pg.QueryConfig);
      return r.rows;
    } catch (err) {
      throw fromPgError(err);
    }
  }

  /** The pool behind this client (for transactions), or an error. */
  pool(what: string): pg.Pool {
    if (!isPool(this.db)) throw new TypeError(`${what} needs a DeliverClient made with a pool, not a single client`);
    return this.db;
  }

  /**
   * Runs fn inside a transaction on one pooled connection: BEGIN, fn,
   * COMMIT (ROLLBACK when fn throws). Whatever fn sends with `tx` exists if
   * and only if the transaction commits.
   */
  async transaction<T>(fn: (tx: DeliverClient, client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.connect('transaction()');
    let destroy = false;
    try {
      await this.query('BEGIN', [], client);
      try {
        const result = await fn(new DeliverClient(client), client);
        await this.query('COMMIT', [], client);
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => { destroy = true; });
        throw err;
      }
    } catch (err) {
      if (isConnectionError(err)) destroy = true;
      throw err;
    } finally {
      client.release(destroy ? true : undefined);
    }
  }

  /** A connection of the pool, for calls of its own. */
  async connect(what = 'connect()'): Promise<pg.PoolClient> {
    try {
      return await this.pool(what).connect();
    } catch (err) {
      throw fromPgError(err);
    }
  }

  // ---- queues

  async createQueue(name: string, options: CreateQueueOptions = {}): Promise<void> {
    await this.query(
      `SELECT deliver.create_queue(queue_name => $1, guarantee => $2, visibility_timeout => $3::interval,
        max_attempts => $4, fifo => $5, dedup_window => $6::interval, retry_base => $7::interval,
        retry_max => $8::interval, message_ttl => $9::interval, on_expire => $10, max_depth => $11::bigint,
        overflow => $12, ack_commit => $13, priorities => $14::boolean)`,
      [name, options.guarantee ?? null, intervalText(options.visibilityTimeout), options.maxAttempts ?? null,
        options.fifo ?? null, intervalText(options.dedupWindow), intervalText(options.retryBase),
        intervalText(options.retryMax), intervalText(options.messageTtl), options.onExpire ?? null,
        options.maxDepth ?? null, options.overflow ?? null, options.ackCommit ?? null, options.priorities ?? null],
    );
  }

  async alterQueue(name: string, options: AlterQueueOptions): Promise<void> {
    await this.query(
      `SELECT deliver.alter_queue(queue_name => $1, visibility_timeout => $2::interval, max_attempts => $3,
        dedup_window => $4::interval, retry_base => $5::interval, retry_max => $6::interval,
        archive_retention => $7::interval, message_ttl => $8::interval, on_expire => $9,
        max_depth => $10::bigint, overflow => $11, ack_commit => $12, priorities => $13::boolean)`,
      [name, intervalText(options.visibilityTimeout), options.maxAttempts ?? null, intervalText(options.dedupWindow),
        intervalText(options.retryBase), intervalText(options.retryMax), intervalText(options.archiveRetention),
        intervalText(options.messageTtl), options.onExpire ?? null, options.maxDepth ?? null,
        options.overflow ?? null, options.ackCommit ?? null, options.priorities ?? null],
    );
  }

  async dropQueue(name: string): Promise<boolean> {
    const rows = await this.query('SELECT deliver.drop_queue($1) AS dropped', [name]);
    return rows[0]!.dropped as boolean;
  }

  /** Removes every message; returns how many. */
  async purgeQueue(name: string): Promise<number> {
    const rows = await this.query('SELECT deliver.purge_queue($1) AS purged', [name]);
    return Number(rows[0]!.purged);
  }

  private static readonly QUEUE_COLUMNS = `queue_name, guarantee, ${secs('visibility_timeout')}, max_attempts, fifo,
    ${secs('dedup_window')}, ${secs('retry_base')}, ${secs('retry_max')}, ${secs('archive_retention')},
    consumer_groups, created_at, ${secs('message_ttl')}, on_expire, max_depth, overflow, ack_commit, priorities`;

  async listQueues(): Promise<QueueInfo[]> {
    const rows = await this.query(`SELECT ${DeliverClient.QUEUE_COLUMNS} FROM deliver.list_queues()`);
    return rows.map(toQueueInfo);
  }

  /** One queue's settings, or null when there is no such queue. */
  async getQueue(name: string): Promise<QueueInfo | null> {
    const rows = await this.query(`SELECT ${DeliverClient.QUEUE_COLUMNS} FROM deliver.list_queues() WHERE queue_name = $1`, [name]);
    return rows.length ? toQueueInfo(rows[0]!) : null;
  }

  // ---- consumer groups

  async createConsumerGroup(queue: string, group: string, options: { startFrom?: 'latest' | 'earliest' } = {}): Promise<void> {
    await this.query(
      `SELECT deliver.create_consumer_group(queue_name => $1, consumer_group => $2, start_from => coalesce($3, 'latest'))`,
      [queue, group, options.startFrom ?? null],
    );
  }

  async dropConsumerGroup(queue: string, group: string): Promise<boolean> {
    const rows = await this.query('SELECT deliver.drop_consumer_group($1, $2) AS dropped', [queue, group]);
    return rows[0]!.dropped as boolean;
  }

  /**
   * Moves the group's position (seek): `earliest` delivers every stored message
   * again, `latest` none of them; a message id or a time: its sending transaction
   * and later ones. The group's leases end.
   */
  async resetConsumerGroup(queue: string, group: string, to: GroupPosition): Promise<void> {
    await this.query('SELECT deliver.reset_consumer_group($1, $2, $3)', [queue, group, positionText(to)]);
  }

  /**
   * Sends archived messages again, to this group only, as new messages (new ids,
   * keeping their first time of sending, key, headers and payload), by id, at most
   * `maxMessages` per call: call again with `afterId: lastId` until `replayed` is 0.
   */
  async replayArchive(queue: string, group: string, options: ReplayArchiveOptions = {}): Promise<ReplayResult<bigint>> {
    const rows = await this.query(
      `SELECT replayed, last_id FROM deliver.replay_archive(queue_name => $1, consumer_group => $2,
         since => $3::timestamptz, after_id => coalesce($4::bigint, 0), max_messages => coalesce($5::int, 100))`,
      [queue, group, options.since ?? null, options.afterId === undefined ? null : idText(options.afterId),
        options.maxMessages ?? null],
    );
    return { replayed: Number(rows[0]!.replayed), lastId: maybeBigInt(rows[0]!.last_id) };
  }

  async listConsumerGroups(queue: string): Promise<ConsumerGroupInfo[]> {
    const rows = await this.query(
      'SELECT consumer_group, created_at, paused, rate_per_second, rate_burst FROM deliver.list_consumer_groups($1)',
      [queue],
    );
    return rows.map((r) => ({
      name: r.consumer_group as string,
      createdAt: toDate(r.created_at) as Date,
      paused: r.paused as boolean,
      ratePerSecond: (r.rate_per_second ?? null) as number | null,
      rateBurst: (r.rate_burst ?? null) as number | null,
    }));
  }

  // ---- flow control (administration)

  /** Pauses a consumer group: its receives return nothing until it is resumed. False when it was paused already. */
  async pauseConsumerGroup(queue: string, group = 'default'): Promise<boolean> {
    const rows = await this.query('SELECT deliver.pause_consumer_group($1, $2) AS paused', [queue, group]);
    return rows[0]!.paused as boolean;
  }

  /** Resumes a paused consumer group and wakes its long polls. False when it was not paused. */
  async resumeConsumerGroup(queue: string, group = 'default'): Promise<boolean> {
    const rows = await this.query('SELECT deliver.resume_consumer_group($1, $2) AS resumed', [queue, group]);
    return rows[0]!.resumed as boolean;
  }

  /**
   * Limits a consumer group's receives to perSecond messages a second, at
   * most burst at once (default max(1, ceil(perSecond))); perSecond null
   * removes the limit.
   */
  async setConsumerGroupRate(queue: string, group: string, perSecond: number | null, burst: number | null = null): Promise<void> {
    await this.query('SELECT deliver.set_consumer_group_rate($1, $2, $3::float8, $4::int)', [queue, group, perSecond, burst]);
  }

  /** FIFO queues: lets up to maxInFlightPerKey messages of one ordering key out at once (1, the default: one at a time). */
  async setFifoKeyLimit(queue: string, maxInFlightPerKey: number): Promise<void> {
    await this.query('SELECT deliver.set_fifo_key_limit($1, $2::int)', [queue, maxInFlightPerKey]);
  }

  // ---- sending

  /** Sends one message; returns its id (the first one's, for an idempotency key seen before). */
  async send<P = unknown>(queue: string, payload: P, options: SendOptions = {}): Promise<bigint> {
    const rows = await this.query(
      `SELECT deliver.send(queue_name => $1, payload => $2::jsonb, headers => $3::jsonb, ordering_key => $4,
        idempotency_key => $5, delay => $6::interval, expires_at => $7::timestamptz, priority => $8::int) AS id`,
      [queue, json(payload), json(options.headers ?? undefined), options.orderingKey ?? null,
        options.idempotencyKey ?? null, intervalText(options.delay), options.expiresAt ?? null,
        options.priority ?? null],
    );
    return rows[0]!.id as bigint;
  }

  /** Sends messages in order, all or nothing; returns their ids in order. */
  async sendBatch<P = unknown>(queue: string, messages: BatchMessage<P>[], options: SendBatchOptions = {}): Promise<bigint[]> {
    const column = <T>(f: (m: BatchMessage<P>) => T | null | undefined): (T | null)[] | null =>
      messages.some((m) => f(m) != null) ? messages.map((m) => f(m) ?? null) : null;
    const rows = await this.query(
      `SELECT deliver.send_batch(queue_name => $1, payloads => $2::jsonb[], headers => $3::jsonb[],
        ordering_keys => $4::text[], idempotency_keys => $5::text[], delay => $6::interval,
        expires_at => $7::timestamptz, priority => $8::int)::text[] AS ids`,
      [queue, messages.map((m) => json(m.payload)), column((m) => (m.headers == null ? null : json(m.headers))),
        column((m) => m.orderingKey), column((m) => m.idempotencyKey), intervalText(options.delay),
        options.expiresAt ?? null, options.priority ?? null],
    );
    return ((rows[0]!.ids ?? []) as string[]).map((id) => BigInt(id));
  }

  // ---- receiving

  /**
   * Receives up to `max` messages, leasing them for the visibility timeout
   * (at-least-once, exactly-once) or removing them (at-most-once).
   * With a signal on a pooled client, aborting cancels a long poll in the
   * server (its receive rolls back: nothing stays leased) and resolves [].
   */
  async receive<P = unknown>(queue: string, options: ReceiveOptions = {}): Promise<Message<P, bigint>[]> {
    const text = `SELECT message_id, delivery_id, payload, headers, ordering_key, attempt, enqueued_at, lease_expires_at
      FROM deliver.receive(queue_name => $1, max_messages => coalesce($2, 1), visibility_timeout => $3::interval,
                           wait => coalesce($4::interval, '0'), consumer_group => coalesce($5, 'default'))`;
    const values = [queue, options.max ?? null, intervalText(options.visibilityTimeout), intervalText(options.wait),
      options.group ?? null];
    const signal = options.signal;
    if (!signal || !isPool(this.db)) return (await this.query(text, values)).map((r) => toMessage<P>(r));
    if (signal.aborted) return [];
    return this.cancellable(signal, async (client) => (await this.query(text, values, client)).map((r) => toMessage<P>(r)));
  }

  /**
   * Runs fn on a pooled connection; when the signal aborts meanwhile, the
   * statement in progress is cancelled (pg_cancel_backend from another
   * pooled connection), a cancelled statement resolves [] and the
   * connection is closed rather than pooled again (so a late cancel cannot
   * hit the next user's statement).
   */
  private async cancellable<T>(signal: AbortSignal, fn: (client: pg.PoolClient) => Promise<T[]>): Promise<T[]> {
    const pool = this.pool('a cancellable call');
    const client = await this.connect('a cancellable call');
    const pid = (client as unknown as { processID: number | null }).processID;
    let cancelling: Promise<unknown> | null = null;
    const onAbort = () => {
      cancelling = pool.query('SELECT pg_cancel_backend($1)', [pid]).catch(() => undefined);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await fn(client);
    } catch (err) {
      if (signal.aborted && (err as { sqlstate?: string }).sqlstate === '57014') return [];
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (cancelling) await cancelling;
      client.release(cancelling ? true : undefined);
    }
  }

  /** Acks a delivery; false when this transaction had acked it already. */
  async ack(queue: string, deliveryId: IdInput): Promise<boolean> {
    const rows = await this.query('SELECT deliver.ack($1, $2::bigint) AS acked', [queue, idText(deliveryId)]);
    return rows[0]!.acked as boolean;
  }

  /** Acks deliveries, all or nothing; returns how many. */
  async ackBatch(queue: string, deliveryIds: IdInput[]): Promise<number> {
    const rows = await this.query('SELECT deliver.ack_batch($1, $2::bigint[]) AS acked', [queue, deliveryIds.map(idText)]);
    return Number(rows[0]!.acked);
  }

  /** Gives a message back (visible again after retryAfter, or the backoff); takes effect at once. */
  async nack(queue: string, deliveryId: IdInput, options: NackOptions = {}): Promise<boolean> {
    const rows = options.deadLetter
      ? await this.query(
        'SELECT deliver.nack(queue_name => $1, delivery_id => $2::bigint, error => $3, retry_after => $4::interval,'
        + ' dead_letter => true) AS nacked',
        [queue, idText(deliveryId), options.error ?? null, intervalText(options.retryAfter)],
      )
      : await this.query(
        'SELECT deliver.nack(queue_name => $1, delivery_id => $2::bigint, error => $3, retry_after => $4::interval) AS nacked',
        [queue, idText(deliveryId), options.error ?? null, intervalText(options.retryAfter)],
      );
    return rows[0]!.nacked as boolean;
  }

  /** Sets the lease to run out visibilityTimeout from now; returns the new expiry. */
  async extendLease(queue: string, deliveryId: IdInput, visibilityTimeout: Interval): Promise<Date> {
    const rows = await this.query('SELECT deliver.extend_lease($1, $2::bigint, $3::interval) AS expires', [
      queue, idText(deliveryId), intervalText(visibilityTimeout)]);
    return toDate(rows[0]!.expires) as Date;
  }

  /** The next messages a receive of the group would hand out, not leased: nothing changes. */
  async peek<P = unknown>(queue: string, options: PeekOptions = {}): Promise<PeekedMessage<P, bigint>[]> {
    const rows = await this.query(
      `SELECT message_id, payload, headers, ordering_key, attempt, enqueued_at, redelivery
         FROM deliver.peek(queue_name => $1, max_messages => coalesce($2, 10), consumer_group => coalesce($3, 'default'))`,
      [queue, options.max ?? null, options.group ?? null],
    );
    return rows.map((r) => toPeeked<P>(r));
  }

  // ---- dead letters and the archive

  async deadLetters<P = unknown>(queue: string, options: DeadLettersOptions = {}): Promise<DeadLetter<P, bigint>[]> {
    const rows = await this.query(
      `SELECT message_id, group_name, payload, headers, ordering_key, attempts, reason, last_error, enqueued_at, dead_at
         FROM deliver.dead_letters(queue_name => $1, consumer_group => $2, max_messages => coalesce($3, 100))`,
      [queue, options.group ?? null, options.max ?? null],
    );
    return rows.map((r) => toDeadLetter<P>(r));
  }

  /** Sends dead letters back to their group (or to toQueue) as new messages; returns how many. */
  async redrive(queue: string, options: RedriveOptions = {}): Promise<number> {
    const ids = options.messageIds ? options.messageIds.map(idText) : null;
    const rows = options.toQueue != null
      ? await this.query(
        'SELECT deliver.redrive(queue_name => $1, message_ids => $2::bigint[], consumer_group => $3, to_queue => $4) AS redriven',
        [queue, ids, options.group ?? null, options.toQueue],
      )
      : await this.query(
        'SELECT deliver.redrive(queue_name => $1, message_ids => $2::bigint[], consumer_group => $3) AS redriven',
        [queue, ids, options.group ?? null],
      );
    return Number(rows[0]!.redriven);
  }

  /**
   * Deletes a message that some consumer group has not finished: no group gets it
   * (again), a lease on it ends; false when no group had it unfinished.
   */
  async deleteMessage(queue: string, messageId: IdInput): Promise<boolean> {
    const rows = await this.query('SELECT deliver.delete_message($1, $2::bigint) AS deleted', [queue, idText(messageId)]);
    return rows[0]!.deleted as boolean;
  }

  /** Deletes these dead letters for good (of one group, or of every group); returns how many. */
  async deleteDeadLetters(queue: string, messageIds: IdInput[], options: DeleteDeadLettersOptions = {}): Promise<number> {
    const rows = await this.query(
      'SELECT deliver.delete_dead_letters(queue_name => $1, message_ids => $2::bigint[], consumer_group => $3) AS deleted',
      [queue, messageIds.map(idText), options.group ?? null],
    );
    return Number(rows[0]!.deleted);
  }

  /** Finished messages of a queue whose archive is on, by id after `afterId`. */
  async archived<P = unknown>(queue: string, options: { max?: number; afterId?: IdInput } = {}): Promise<ArchivedMessage<P>[]> {
    const rows = await this.query(
      `SELECT message_id, payload, headers, ordering_key, enqueued_at, archived_at
         FROM deliver.archived(queue_name => $1, max_messages => coalesce($2, 100), after_id => coalesce($3::bigint, 0))`,
      [queue, options.max ?? null, options.afterId === undefined ? null : idText(options.afterId)],
    );
    return rows.map((r) => ({
      messageId: r.message_id as bigint,
      payload: r.payload as P,
      headers: (r.headers ?? null) as Record<string, unknown> | null,
      orderingKey: (r.ordering_key ?? null) as string | null,
      enqueuedAt: toDate(r.enqueued_at) as Date,
      archivedAt: toDate(r.archived_at) as Date,
    }));
  }

  // ---- state and metrics

  /** One row per consumer group of a queue, or of every queue the caller may read. */
  async metrics(queue?: string | null): Promise<QueueMetrics[]> {
    const rows = await this.query(
      `SELECT queue_name, consumer_group, depth, in_flight, delayed, dead_letters, ${secs('oldest_age')},
              sent_total, acked_total, dead_total, worker_last_run, ${secs('worker_lag')}, worker_errors
         FROM deliver.metrics($1)`,
      [queue ?? null],
    );
    return rows.map(toMetrics);
  }

  async leaseSlots(): Promise<LeaseSlots> {
    const rows = await this.query('SELECT * FROM deliver.lease_slots()');
    const r = rows[0]!;
    return {
      total: Number(r.total), free: Number(r.free), reserved: Number(r.reserved),
      reservePerQueue: Number(r.reserve_per_queue), maxPerQueue: Number(r.max_per_queue), queues: Number(r.queues),
    };
  }

  /** One maintenance pass over a queue (or every queue). */
  async maintain(queue?: string | null): Promise<MaintainResult[]> {
    const rows = await this.query('SELECT * FROM deliver.maintain($1)', [queue ?? null]);
    return rows.map((r) => ({
      queue: r.queue as string, truncated: Number(r.truncated), rotated: r.rotated as boolean,
      expiredKeys: Number(r.expired_keys), expiredDeadLetters: Number(r.expired_dead_letters),
      archived: Number(r.archived), expiredArchive: Number(r.expired_archive),
    }));
  }

  /** Sets (null: removes) an alert threshold on a queue's metric. */
  async setAlert(queue: string, metric: AlertMetric, threshold: number | null): Promise<void> {
    await this.query('SELECT deliver.set_alert($1, $2, $3::numeric)', [queue, metric, threshold === null ? null : String(threshold)]);
  }

  async listAlerts(queue?: string | null): Promise<Alert[]> {
    const rows = await this.query(
      'SELECT queue_name, metric, threshold::float8 AS threshold, firing, value::float8 AS value, changed_at FROM deliver.list_alerts($1)',
      [queue ?? null],
    );
    return rows.map((r) => ({
      queue: r.queue_name as string, metric: r.metric as AlertMetric, threshold: Number(r.threshold),
      firing: r.firing as boolean, value: toNumber(r.value), changedAt: toDate(r.changed_at),
    }));
  }

  // ---- privileges

  async grantQueue(queue: string, role: string, privilege: Privilege = 'all'): Promise<void> {
    await this.query('SELECT deliver.grant_queue($1, $2, $3)', [queue, role, privilege]);
  }

  async revokeQueue(queue: string, role: string, privilege: Privilege = 'all'): Promise<void> {
    await this.query('SELECT deliver.revoke_queue($1, $2, $3)', [queue, role, privilege]);
  }

  async listGrants(queue?: string | null): Promise<Grant[]> {
    const rows = await this.query('SELECT queue_name, role_name, privilege FROM deliver.list_grants($1)', [queue ?? null]);
    return rows.map((r) => ({ queue: r.queue_name as string, role: r.role_name as string, privilege: r.privilege as Privilege }));
  }

  /** Whether the current user may send, receive, or do all on a queue. */
  async hasQueuePrivilege(queue: string, privilege: Privilege): Promise<boolean> {
    const rows = await this.query('SELECT deliver.has_queue_privilege($1, $2) AS ok', [queue, privilege]);
    return rows[0]!.ok as boolean;
  }

  // ---- push subscriptions (slots; see PushConsumer in the README)

  /** Creates a push subscription (a logical slot); returns its starting LSN. Run it outside a transaction. */
  async createPushSubscription(queue: string, name: string, options: { group?: string | null } = {}): Promise<string> {
    const rows = await this.query('SELECT deliver.create_push_subscription($1, $2, $3)::text AS lsn', [queue, name, options.group ?? null]);
    return rows[0]!.lsn as string;
  }

  async dropPushSubscription(name: string): Promise<boolean> {
    const rows = await this.query('SELECT deliver.drop_push_subscription($1) AS dropped', [name]);
    return rows[0]!.dropped as boolean;
  }

  async listPushSubscriptions(): Promise<PushSubscription[]> {
    const rows = await this.query(
      `SELECT subscription_name, queue_name, consumer_group, slot_options, active, confirmed_lsn::text AS confirmed_lsn, created_at
         FROM deliver.list_push_subscriptions()`,
    );
    return rows.map((r) => ({
      name: r.subscription_name as string, queue: r.queue_name as string, group: (r.consumer_group ?? null) as string | null,
      slotOptions: (r.slot_options ?? null) as string | null, active: r.active as boolean,
      confirmedLsn: (r.confirmed_lsn ?? null) as string | null, createdAt: toDate(r.created_at) as Date,
    }));
  }

  async pushMetrics(): Promise<PushMetrics[]> {
    const rows = await this.query(
      `SELECT subscription_name, queue_name, active, confirmed_lsn::text AS confirmed_lsn,
              lag_bytes::float8 AS lag_bytes, retained_wal_bytes::float8 AS retained_wal_bytes
         FROM deliver.push_metrics()`,
    );
    return rows.map((r) => ({
      name: r.subscription_name as string, queue: r.queue_name as string, active: r.active as boolean,
      confirmedLsn: (r.confirmed_lsn ?? null) as string | null, lagBytes: toNumber(r.lag_bytes),
      retainedWalBytes: toNumber(r.retained_wal_bytes),
    }));
  }

  // ---- topic routing

  /**
   * Sends the message once to every queue with a binding whose pattern
   * matches the routing key, in one transaction (inside yours, if this
   * client is a transaction's); returns the queues, by name, with the
   * message's id in each ([] when nothing matched, unless mandatory).
   */
  async publish<P = unknown>(routingKey: string, payload: P, options: PublishOptions = {}): Promise<Published<bigint>[]> {
    const rows = await this.query(
      `SELECT queue_name, message_id FROM deliver.publish(routing_key => $1, payload => $2::jsonb, headers => $3::jsonb,
        ordering_key => $4, idempotency_key => $5, delay => $6::interval, mandatory => coalesce($7, false),
        expires_at => $8::timestamptz, priority => $9::int)`,
      [routingKey, json(payload), json(options.headers ?? undefined), options.orderingKey ?? null,
        options.idempotencyKey ?? null, intervalText(options.delay), options.mandatory ?? null,
        options.expiresAt ?? null, options.priority ?? null],
    );
    return rows.map((r) => ({ queue: r.queue_name as string, messageId: r.message_id as bigint }));
  }

  /** Binds the queue to the pattern; false when it was bound to it already. Not for PUBLIC. */
  async bind(pattern: string, queue: string): Promise<boolean> {
    const rows = await this.query('SELECT deliver.bind($1, $2) AS created', [pattern, queue]);
    return rows[0]!.created as boolean;
  }

  /** Removes the binding; false when there was none. Not for PUBLIC. */
  async unbind(pattern: string, queue: string): Promise<boolean> {
    const rows = await this.query('SELECT deliver.unbind($1, $2) AS removed', [pattern, queue]);
    return rows[0]!.removed as boolean;
  }

  /** The bindings, of one queue or of all, by queue and pattern. */
  async listBindings(queue?: string | null): Promise<Binding[]> {
    const rows = await this.query('SELECT pattern, queue_name, created_at FROM deliver.list_bindings($1)', [queue ?? null]);
    return rows.map((r) => ({ pattern: r.pattern as string, queue: r.queue_name as string, createdAt: toDate(r.created_at) as Date }));
  }

  /** The bindings a publish with this routing key would match (nothing is sent). */
  async testRouting(routingKey: string): Promise<RoutingMatch[]> {
    const rows = await this.query('SELECT queue_name, pattern FROM deliver.test_routing($1)', [routingKey]);
    return rows.map((r) => ({ queue: r.queue_name as string, pattern: r.pattern as string }));
  }

  // ---- exactly-once processing

  /**
   * One exactly-once transaction: BEGIN, receive up to `max` messages, run
   * the handler on each with the transaction's client and ack it, COMMIT.
   * A handler's writes and its message's ack commit together or not at
   * all. A handler that throws has its writes rolled back (to a savepoint)
   * and its message nacked with the error; the others still commit. A
   * crash or a failed COMMIT rolls everything back, and the rolled-back
   * receive frees the messages at once for the next try. While handlers
   * run, their leases are extended from another pooled connection.
   */
  async processExactlyOnce<P = unknown>(queue: string, handler: ExactlyOnceHandler<P>,
    options: ExactlyOnceOptions = {}): Promise<ExactlyOnceResult> {
    const client = await this.connect('processExactlyOnce()');
    let destroy = true;
    try {
      const r = await exactlyOnceRound(this, client, queue, handler, options);
      destroy = r.cancelled;
      return r.result;
    } finally {
      client.release(destroy ? true : undefined);
    }
  }

  /** Whether receive's signal cancels a long poll in the server (a pool: yes). */
  get cancelsReceive(): boolean {
    return isPool(this.db);
  }
}

function isConnectionError(err: unknown): boolean {
  const s = (err as { sqlstate?: string | null }).sqlstate;
  return typeof s === 'string' && s.startsWith('08');
}
