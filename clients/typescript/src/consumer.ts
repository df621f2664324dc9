/**
 * Consumer: runs a handler on a queue's messages with bounded concurrency,
 * over either client (SQL or HTTP). It acks what a handler finished, nacks
 * what a handler threw on (with the error), keeps the lease of a message
 * whose handler still runs, and stops gracefully.
 *
 * No Node-only API: `process` is used, when there is one, only to stop on
 * SIGTERM and SIGINT.
 */
import { NotCurrentError } from './errors.js';
import type { IdInput, Interval, Message, QueueClient } from './types.js';
import { errorText, sleep } from './util.js';

export interface HandlerContext {
  /**
   * Aborted when the message is no longer this consumer's: its lease was
   * lost (an extension found it not current), or a stop's timeout gave it
   * back. A handler may pass it on to what it calls.
   */
  signal: AbortSignal;
  /** Extends the lease now (the consumer also does it on its own). */
  extendLease(seconds: number): Promise<Date>;
}

export type Handler<P = unknown> = (message: Message<P>, context: HandlerContext) => Promise<void> | void;

export interface ConsumerOptions {
  /** Consumer group (`default`). */
  group?: string;
  /** Handlers running at once (1). */
  concurrency?: number;
  /** Most messages one receive takes (the concurrency); never more than the free handler slots. */
  batchSize?: number;
  /** Lease length in seconds (30); a running handler's lease is extended by this much again and again. */
  visibilityTimeout?: number;
  /** Extend a running handler's lease when this fraction of it has passed (0.5). */
  extendAt?: number;
  /** Long poll of each receive, seconds (5; over HTTP at most the gateway's max_wait). */
  wait?: number;
  /** Retry delay of a message whose handler threw (the queue's backoff by default). */
  retryAfter?: Interval | null;
  /** Seconds running handlers get to finish at stop (30); then their messages are given back. */
  stopTimeout?: number;
  /** Stop on SIGTERM and SIGINT (true, where there is a `process`). */
  handleSignals?: boolean;
  /** Pause after a failed receive, seconds (1). */
  errorBackoff?: number;
  /**
   * Told of every failure the consumer handles itself: a handler's error
   * (with its message), a failed receive, ack, nack or lease extension.
   * By default they are written with console.error, except handler errors.
   */
  onError?: (error: unknown, message?: Message<unknown>) => void;
}

export interface ConsumerStats {
  received: number;
  /** handlers that finished, acked */
  acked: number;
  /** handlers that threw, nacked */
  nacked: number;
  /** given back unprocessed (nack with retry after 0) at a stop */
  released: number;
  /** acks, nacks or extensions that failed (e.g. a lease lost: NotCurrentError) */
  errors: number;
}

/**
 * Extends a delivery's lease again and again while work on it runs: every
 * `seconds * extendAt`, by `seconds`. A NotCurrentError (the lease ran out
 * and the message went to another consumer, or it was acked) ends it and
 * calls onLost.
 */
export class LeaseKeeper {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;

  constructor(
    private readonly client: Pick<QueueClient, 'extendLease'>,
    private readonly queue: string,
    private readonly deliveryId: IdInput,
    private readonly seconds: number,
    private readonly onLost: (error: unknown) => void,
    private readonly onError: (error: unknown) => void = () => {},
    private readonly extendAt = 0.5,
  ) {}

  start(): this {
    this.schedule(this.seconds * this.extendAt * 1000);
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.extend(), Math.max(1, ms));
  }

  private async extend(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.client.extendLease(this.queue, this.deliveryId, this.seconds);
      this.schedule(this.seconds * this.extendAt * 1000);
    } catch (err) {
      if (this.stopped) return;
      if (err instanceof NotCurrentError) {
        this.stopped = true;
        this.onLost(err);
      } else {
        // a passing failure (connection): try again soon, within the lease
        this.onError(err);
        this.schedule(Math.min(1000, this.seconds * (1 - this.extendAt) * 250));
      }
    }
  }
}

interface Running {
  message: Message<unknown>;
  controller: AbortController;
  keeper: LeaseKeeper | null;
  /** given back at a stop, or lost: no ack or nack after the handler */
  settled: boolean;
  done: Promise<void>;
}

type SignalProcess = {
  on(event: string, fn: () => void): unknown;
  off?(event: string, fn: () => void): unknown;
  removeListener(event: string, fn: () => void): unknown;
};

function defaultOnError(error: unknown, message?: Message<unknown>): void {
  if (message) return; // a handler's own error: nacked with it
  console.error('deliver consumer:', error);
}

/**
 * ```ts
 * const consumer = new Consumer(deliver, 'orders', async (msg) => {
 *   await handle(msg.payload);            // throw: nacked with the error
 * }, { concurrency: 8 });
 * await consumer.run();                   // until stop() or SIGTERM
 * ```
 */
export class Consumer<P = unknown> {
  readonly stats: ConsumerStats = { received: 0, acked: 0, nacked: 0, released: 0, errors: 0 };
  private readonly opts: Required<Omit<ConsumerOptions, 'retryAfter' | 'batchSize'>> & { retryAfter: Interval | null; batchSize: number };
  private readonly running = new Set<Running>();
  private readonly stopController = new AbortController();
  private wakeLoop: (() => void) | null = null;
  private loopDone: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private signalProcess: SignalProcess | null = null;
  private readonly onSignal = () => void this.stop();

  constructor(
    private readonly client: QueueClient,
    private readonly queue: string,
    private readonly handler: Handler<P>,
    options: ConsumerOptions = {},
  ) {
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be a positive integer');
    const vt = options.visibilityTimeout ?? 30;
    if (typeof vt !== 'number' || !(vt > 0)) throw new RangeError('visibilityTimeout must be a positive number of seconds');
    const extendAt = options.extendAt ?? 0.5;
    if (!(extendAt > 0 && extendAt < 1)) throw new RangeError('extendAt must be between 0 and 1');
    this.opts = {
      group: options.group ?? 'default',
      concurrency,
      batchSize: options.batchSize ?? concurrency,
      visibilityTimeout: vt,
      extendAt,
      wait: options.wait ?? 5,
      retryAfter: options.retryAfter ?? null,
      stopTimeout: options.stopTimeout ?? 30,
      handleSignals: options.handleSignals ?? true,
      errorBackoff: options.errorBackoff ?? 1,
      onError: options.onError ?? defaultOnError,
    };
  }

  /** Messages whose handlers run now. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Whether it receives (started and not stopping). */
  get isRunning(): boolean {
    return this.loopDone !== null && this.stopping === null;
  }

  /** Starts receiving; returns at once. */
  start(): this {
    if (this.loopDone) return this;
    if (this.opts.handleSignals) {
      const proc = (globalThis as { process?: SignalProcess }).process;
      if (proc && typeof proc.on === 'function') {
        this.signalProcess = proc;
        proc.on('SIGTERM', this.onSignal);
        proc.on('SIGINT', this.onSignal);
      }
    }
    this.loopDone = this.loop();
    return this;
  }

  /** Starts, and resolves once stopped (by stop() or a signal) and drained. */
  async run(): Promise<void> {
    this.start();
    await this.loopDone;
    await this.stopping;
  }

  /**
   * Stops: receives no more (a long poll over SQL is cancelled in the
   * server), lets running handlers finish within stopTimeout (acking or
   * nacking them), then gives back what is still running (nack with retry
   * after 0: visible at once to other consumers) and aborts those handlers'
   * signals. Resolves when done; calling it again returns the same promise.
   */
  stop(): Promise<void> {
    if (!this.stopping) this.stopping = this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.stopController.abort();
    this.wakeLoop?.();
    if (this.signalProcess) {
      const p = this.signalProcess;
      (p.off ?? p.removeListener).call(p, 'SIGTERM', this.onSignal);
      (p.off ?? p.removeListener).call(p, 'SIGINT', this.onSignal);
    }
    await this.loopDone;
    const all = Promise.all([...this.running].map((r) => r.done));
    const timer = new AbortController();
    await Promise.race([all, sleep(this.opts.stopTimeout * 1000, timer.signal)]);
    timer.abort();
    await Promise.all([...this.running].map((r) => this.giveBack(r, new Error('consumer stopped before the handler finished'))));
  }

  /** Gives a running message back at once and aborts its handler. */
  private async giveBack(r: Running, reason: Error): Promise<void> {
    if (r.settled) return;
    r.settled = true;
    r.keeper?.stop();
    r.controller.abort(reason);
    this.running.delete(r);
    this.wakeLoop?.();
    await this.release(r.message);
  }

  /** nack with retry after 0: the message is visible again at once. */
  private async release(m: Message<unknown>): Promise<void> {
    if (m.deliveryId === null) return;
    try {
      await this.client.nack(this.queue, m.deliveryId, { retryAfter: 0, error: 'released: consumer stopped' });
      this.stats.released++;
    } catch (err) {
      this.stats.errors++;
      this.opts.onError(err);
    }
  }

  private async loop(): Promise<void> {
    const cancels = (this.client as { cancelsReceive?: boolean }).cancelsReceive === true;
    const stop = this.stopController.signal;
    while (!stop.aborted) {
      const free = this.opts.concurrency - this.running.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wakeLoop = resolve));
        this.wakeLoop = null;
        continue;
      }
      let messages: Message<P>[];
      try {
        messages = await this.client.receive<P>(this.queue, {
          max: Math.min(this.opts.batchSize, free),
          visibilityTimeout: this.opts.visibilityTimeout,
          wait: this.opts.wait,
          group: this.opts.group,
          signal: cancels ? stop : undefined,
        });
      } catch (err) {
        this.stats.errors++;
        this.opts.onError(err);
        await sleep(this.opts.errorBackoff * 1000, stop);
        continue;
      }
      this.stats.received += messages.length;
      for (const m of messages) {
        if (stop.aborted) await this.release(m);
        else this.dispatch(m);
      }
    }
  }

  private dispatch(message: Message<P>): void {
    const controller = new AbortController();
    const r: Running = { message, controller, keeper: null, settled: false, done: Promise.resolve() };
    const id = message.deliveryId;
    if (id !== null) {
      r.keeper = new LeaseKeeper(this.client, this.queue, id, this.opts.visibilityTimeout,
        (err) => {
          // the lease is gone: someone else may have the message now
          r.settled = true;
          this.stats.errors++;
          this.opts.onError(err);
          controller.abort(err);
        },
        (err) => {
          this.stats.errors++;
          this.opts.onError(err);
        },
        this.opts.extendAt).start();
    }
    const context: HandlerContext = {
      signal: controller.signal,
      extendLease: (seconds: number) => {
        if (id === null) return Promise.reject(new TypeError('an at-most-once message has no lease'));
        return this.client.extendLease(this.queue, id, seconds);
      },
    };
    this.running.add(r);
    r.done = (async () => {
      let error: unknown = null;
      let failed = false;
      try {
        await this.handler(message, context);
      } catch (err) {
        failed = true;
        error = err;
      }
      r.keeper?.stop();
      if (failed) this.opts.onError(error, message);
      if (!r.settled && id !== null) {
        r.settled = true;
        try {
          if (failed) {
            await this.client.nack(this.queue, id, { error: errorText(error), retryAfter: this.opts.retryAfter });
            this.stats.nacked++;
          } else {
            await this.client.ack(this.queue, id);
            this.stats.acked++;
          }
        } catch (err) {
          this.stats.errors++;
          this.opts.onError(err);
        }
      } else if (id === null) {
        if (failed) this.stats.nacked++;
        else this.stats.acked++;
      }
      this.running.delete(r);
      this.wakeLoop?.();
    })();
  }
}
