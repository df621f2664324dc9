/**
 * Exactly-once processing over SQL: the handler's writes and the message's
 * ack commit in one transaction, so a message's effect is applied once
 * whatever crashes: a consumer killed before COMMIT leaves neither effect
 * nor ack (the rolled-back receive frees the message at once, and the next
 * consumer applies it); one killed after COMMIT leaves both.
 */
import type pg from 'pg';
import { LeaseKeeper } from './consumer.js';
import type { DeliverClient } from './sql.js';
import type { Interval, Message } from './types.js';
import { errorText, sleep, toDate } from './util.js';

export interface ExactlyOnceOptions {
  /** Messages per transaction (1 by default). */
  max?: number;
  /**
   * Lease length. A number of seconds also keeps the leases of the
   * transaction's messages extended (from another pooled connection)
   * while the handlers run.
   */
  visibilityTimeout?: Interval;
  /** Long poll for the first message (0 by default). */
  wait?: Interval;
  group?: string;
  /** Retry delay of a message whose handler threw (the queue's backoff by default). */
  retryAfter?: Interval | null;
  /** Cancels a long poll in the server; the round then commits nothing and resolves. */
  signal?: AbortSignal;
  /** Told of failed lease extensions. */
  onError?: (error: unknown) => void;
}

/** What one exactly-once transaction did. */
export interface ExactlyOnceResult {
  /** messages received */
  received: number;
  /** handled and acked in the committed transaction */
  acked: number;
  /** whose handler threw (or whose ack was refused): nacked, their writes rolled back */
  failed: number;
}

/**
 * A handler of exactly-once processing: its writes on `client` (in the
 * transaction that acks the message) commit together with the ack, or not
 * at all. It must not COMMIT or ROLLBACK itself.
 */
export type ExactlyOnceHandler<P = unknown> = (message: Message<P, bigint>, client: pg.PoolClient) => Promise<void> | void;

const RECEIVE = `SELECT message_id, delivery_id, payload, headers, ordering_key, attempt, enqueued_at, lease_expires_at
  FROM deliver.receive(queue_name => $1, max_messages => coalesce($2, 1), visibility_timeout => $3::interval,
                       wait => coalesce($4::interval, '0'), consumer_group => coalesce($5, 'default'))`;

/**
 * One exactly-once transaction on `client` (a connection of deliver's
 * pool). `cancelled`: the long poll was cancelled by the signal; the
 * connection should then be closed rather than pooled again.
 */
export async function exactlyOnceRound<P>(deliver: DeliverClient, client: pg.PoolClient, queue: string,
  handler: ExactlyOnceHandler<P>, options: ExactlyOnceOptions = {}): Promise<{ result: ExactlyOnceResult; cancelled: boolean }> {
  const result: ExactlyOnceResult = { received: 0, acked: 0, failed: 0 };
  const tx = deliver.forClient(client);
  const signal = options.signal;
  const pid = (client as unknown as { processID: number | null }).processID;
  let receiving = false;
  let cancelled = false;
  let cancelling: Promise<unknown> | null = null;
  const onAbort = () => {
    if (!receiving) return;
    cancelled = true;
    cancelling = deliver.db.query({ text: 'SELECT pg_cancel_backend($1)', values: [pid] }).catch(() => undefined);
  };
  const keepers: LeaseKeeper[] = [];
  try {
    await tx.query('BEGIN');
    let messages: Message<P, bigint>[] = [];
    if (!signal?.aborted) {
      signal?.addEventListener('abort', onAbort, { once: true });
      receiving = true;
      try {
        messages = (await tx.query(RECEIVE, [queue, options.max ?? null, intervalArg(options.visibilityTimeout),
          intervalArg(options.wait), options.group ?? null])).map((r) => ({
          messageId: r.message_id as bigint,
          deliveryId: (r.delivery_id ?? null) as bigint | null,
          payload: r.payload as P,
          headers: (r.headers ?? null) as Record<string, unknown> | null,
          orderingKey: (r.ordering_key ?? null) as string | null,
          attempt: Number(r.attempt),
          enqueuedAt: toDate(r.enqueued_at) as Date,
          leaseExpiresAt: toDate(r.lease_expires_at),
        }));
      } catch (err) {
        if (cancelled && (err as { sqlstate?: string }).sqlstate === '57014') {
          await client.query('ROLLBACK');
          return { result, cancelled };
        }
        throw err;
      } finally {
        receiving = false;
        signal?.removeEventListener('abort', onAbort);
        if (cancelling) await cancelling;
      }
    }
    result.received = messages.length;
    const vt = options.visibilityTimeout;
    if (typeof vt === 'number' && deliver.cancelsReceive) {
      for (const m of messages) {
        if (m.deliveryId === null) continue;
        keepers.push(new LeaseKeeper(deliver, queue, m.deliveryId, vt, () => {}, options.onError ?? (() => {})).start());
      }
    }
    for (const m of messages) {
      if (m.deliveryId === null) throw new TypeError('exactly-once processing needs an at-least-once or exactly-once queue');
      await tx.query('SAVEPOINT deliver_message');
      try {
        await handler(m, client);
        await tx.ack(queue, m.deliveryId);
        await tx.query('RELEASE SAVEPOINT deliver_message');
        result.acked++;
      } catch (err) {
        await tx.query('ROLLBACK TO SAVEPOINT deliver_message');
        result.failed++;
        // a nack takes effect at once, whatever becomes of the transaction
        await tx.nack(queue, m.deliveryId, { error: errorText(err), retryAfter: options.retryAfter ?? null })
          .catch(() => undefined);
      }
    }
    await tx.query('COMMIT');
    return { result, cancelled };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    for (const k of keepers) k.stop();
  }
}

function intervalArg(v: Interval | undefined): string | null {
  if (v === undefined) return null;
  return typeof v === 'number' ? `${v} seconds` : v;
}

export interface ExactlyOnceConsumerOptions {
  /** Consumer group (`default`). */
  group?: string;
  /** Transactions at once, each on a connection of its own (1). */
  concurrency?: number;
  /** Messages per transaction (1). */
  batchSize?: number;
  /** Lease length in seconds (30), extended while handlers run. */
  visibilityTimeout?: number;
  /** Long poll of each receive, seconds (5). */
  wait?: number;
  /** Retry delay of a message whose handler threw (the queue's backoff by default). */
  retryAfter?: Interval | null;
  /**
   * Seconds a transaction in progress gets at stop (30); then its
   * connection is terminated, the transaction rolls back and its messages
   * are free at once.
   */
  stopTimeout?: number;
  /** Stop on SIGTERM and SIGINT (true). */
  handleSignals?: boolean;
  /** Pause after a failed transaction, seconds (1). */
  errorBackoff?: number;
  /** Told of failed transactions and lease extensions. */
  onError?: (error: unknown) => void;
}

export interface ExactlyOnceStats {
  /** committed transactions that held messages */
  transactions: number;
  /** messages handled and acked (committed) */
  acked: number;
  /** messages whose handler threw: nacked */
  failed: number;
  /** transactions that failed (rolled back) */
  errors: number;
}

/**
 * Runs exactlyOnceRound in a loop on `concurrency` connections until
 * stopped.
 *
 * ```ts
 * const consumer = new ExactlyOnceConsumer(deliver, 'payments', async (msg, client) => {
 *   await client.query('INSERT INTO ledger (message_id, amount) VALUES ($1, $2)',
 *                      [msg.messageId, msg.payload.amount]);
 * });
 * await consumer.run();
 * ```
 */
export class ExactlyOnceConsumer<P = unknown> {
  readonly stats: ExactlyOnceStats = { transactions: 0, acked: 0, failed: 0, errors: 0 };
  private readonly stopController = new AbortController();
  private readonly clients = new Set<pg.PoolClient>();
  private workers: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private readonly opts: Required<Omit<ExactlyOnceConsumerOptions, 'retryAfter'>> & { retryAfter: Interval | null };
  private readonly onSignal = () => void this.stop();
  private signalProcess: { on(e: string, f: () => void): unknown; removeListener(e: string, f: () => void): unknown } | null = null;

  constructor(
    private readonly deliver: DeliverClient,
    private readonly queue: string,
    private readonly handler: ExactlyOnceHandler<P>,
    options: ExactlyOnceConsumerOptions = {},
  ) {
    deliver.pool('ExactlyOnceConsumer');
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be a positive integer');
    this.opts = {
      group: options.group ?? 'default',
      concurrency,
      batchSize: options.batchSize ?? 1,
      visibilityTimeout: options.visibilityTimeout ?? 30,
      wait: options.wait ?? 5,
      retryAfter: options.retryAfter ?? null,
      stopTimeout: options.stopTimeout ?? 30,
      handleSignals: options.handleSignals ?? true,
      errorBackoff: options.errorBackoff ?? 1,
      onError: options.onError ?? ((err) => console.error('deliver exactly-once consumer:', err)),
    };
  }

  start(): this {
    if (this.workers) return this;
    if (this.opts.handleSignals && typeof globalThis.process?.on === 'function') {
      this.signalProcess = globalThis.process;
      process.on('SIGTERM', this.onSignal);
      process.on('SIGINT', this.onSignal);
    }
    const workers: Promise<void>[] = [];
    for (let i = 0; i < this.opts.concurrency; i++) workers.push(this.work());
    this.workers = Promise.all(workers).then(() => undefined);
    return this;
  }

  /** Starts, and resolves once stopped and drained. */
  async run(): Promise<void> {
    this.start();
    await this.workers;
    await this.stopping;
  }

  /**
   * Receives no more (long polls are cancelled), lets transactions in
   * progress commit within stopTimeout, then terminates the connections of
   * those still running (they roll back; their messages are free at once).
   */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.stopController.abort();
    if (this.signalProcess) {
      this.signalProcess.removeListener('SIGTERM', this.onSignal);
      this.signalProcess.removeListener('SIGINT', this.onSignal);
    }
    const timer = new AbortController();
    await Promise.race([this.workers, sleep(this.opts.stopTimeout * 1000, timer.signal)]);
    timer.abort();
    for (const c of this.clients) {
      const pid = (c as unknown as { processID: number | null }).processID;
      await this.deliver.db.query({ text: 'SELECT pg_terminate_backend($1)', values: [pid] }).catch(() => undefined);
    }
    await this.workers;
  }

  private async work(): Promise<void> {
    const stop = this.stopController.signal;
    let client: pg.PoolClient | null = null;
    const drop = (c: pg.PoolClient, destroy: boolean) => {
      this.clients.delete(c);
      c.release(destroy ? true : undefined);
    };
    while (!stop.aborted) {
      try {
        if (!client) {
          client = await this.deliver.connect('ExactlyOnceConsumer');
          this.clients.add(client);
        }
        const { result, cancelled } = await exactlyOnceRound(this.deliver, client, this.queue, this.handler, {
          max: this.opts.batchSize,
          visibilityTimeout: this.opts.visibilityTimeout,
          wait: this.opts.wait,
          group: this.opts.group,
          retryAfter: this.opts.retryAfter,
          signal: stop,
          onError: this.opts.onError,
        });
        if (result.received > 0) this.stats.transactions++;
        this.stats.acked += result.acked;
        this.stats.failed += result.failed;
        if (cancelled) {
          drop(client, true);
          client = null;
        }
      } catch (err) {
        this.stats.errors++;
        if (client) drop(client, true);
        client = null;
        if (!stop.aborted) this.opts.onError(err);
        await sleep(this.opts.errorBackoff * 1000, stop);
      }
    }
    if (client) drop(client, false);
  }
}
