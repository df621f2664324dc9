/**
 * The HTTP client: deliverd's routes over `fetch`. It runs wherever fetch
 * does (Node 18+, browsers, Deno, Bun, edge runtimes): this module and what
 * it imports use no Node-only API.
 *
 * Ids are bigint, as over SQL: the gateway sends them as JSON strings (a
 * JavaScript number holds 53 bits, delivery ids are larger) and takes them
 * as strings. A gateway serving a cluster sends partition:epoch:id instead:
 * those stay strings (the type Id), and are taken back as they are.
 */
import { DeliverError, deliverError, InvalidParameterError, UnavailableError } from './errors.js';
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
  Id,
  IdInput,
  Interval,
  Message,
  NackOptions,
  OnExpire,
  Overflow,
  AckCommit,
  PeekOptions,
  PeekedMessage,
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
  StreamOptions,
} from './types.js';
import { maybeId, parseInterval, positionText, timeText, toDate, toNumber, wireIdText } from './util.js';

export * from './errors.js';
export type * from './types.js';
export { Consumer } from './consumer.js';
export type { ConsumerOptions, Handler, HandlerContext } from './consumer.js';

export interface HttpClientOptions {
  /** The gateway, e.g. `http://127.0.0.1:8433`. */
  url: string;
  /** Bearer token (a JWT or a token-file token), or a function returning one (called per request). */
  token?: string | (() => string | Promise<string>);
  /** Another fetch (a test double, a runtime's own); globalThis.fetch by default. */
  fetch?: typeof fetch;
  /** Headers added to every request. */
  headers?: Record<string, string>;
}

interface Row {
  [k: string]: unknown;
}

function toMessage<P>(r: Row): Message<P> {
  return {
    messageId: maybeId(r.message_id) as Id,
    deliveryId: maybeId(r.delivery_id),
    payload: r.payload as P,
    headers: (r.headers ?? null) as Record<string, unknown> | null,
    orderingKey: (r.ordering_key ?? null) as string | null,
    attempt: Number(r.attempt),
    enqueuedAt: toDate(r.enqueued_at) as Date,
    leaseExpiresAt: toDate(r.lease_expires_at),
  };
}

function toQueueInfo(r: Row): QueueInfo {
  return {
    name: r.queue_name as string,
    guarantee: r.guarantee as Guarantee,
    visibilityTimeout: parseInterval(r.visibility_timeout) as number,
    maxAttempts: Number(r.max_attempts),
    fifo: r.fifo as boolean,
    dedupWindow: parseInterval(r.dedup_window) as number,
    retryBase: parseInterval(r.retry_base) as number,
    retryMax: parseInterval(r.retry_max) as number,
    archiveRetention: parseInterval(r.archive_retention),
    consumerGroups: (r.consumer_groups ?? []) as string[],
    createdAt: toDate(r.created_at) as Date,
    messageTtl: parseInterval(r.message_ttl),
    onExpire: (r.on_expire ?? 'dead_letter') as OnExpire,
    maxDepth: toNumber(r.max_depth),
    overflow: (r.overflow ?? 'reject') as Overflow,
    ackCommit: (r.ack_commit ?? 'durable') as AckCommit,
    priorities: r.priorities === true,
  };
}

function toPeeked<P>(r: Row): PeekedMessage<P> {
  return {
    messageId: maybeId(r.message_id) as Id,
    payload: r.payload as P,
    headers: (r.headers ?? null) as Record<string, unknown> | null,
    orderingKey: (r.ordering_key ?? null) as string | null,
    attempt: Number(r.attempt),
    enqueuedAt: toDate(r.enqueued_at) as Date,
    redelivery: Boolean(r.redelivery),
  };
}

function toDeadLetter<P>(r: Row): DeadLetter<P> {
  return {
    messageId: maybeId(r.message_id) as Id,
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

function toMetrics(r: Row): QueueMetrics {
  return {
    queue: r.queue_name as string,
    group: r.consumer_group as string,
    depth: Number(r.depth),
    inFlight: Number(r.in_flight),
    delayed: Number(r.delayed),
    deadLetters: Number(r.dead_letters),
    oldestAge: parseInterval(r.oldest_age),
    sentTotal: Number(r.sent_total),
    ackedTotal: Number(r.acked_total),
    deadTotal: Number(r.dead_total),
    workerLastRun: toDate(r.worker_last_run),
    workerLag: parseInterval(r.worker_lag),
    workerErrors: toNumber(r.worker_errors),
  };
}

/** An answer's body: JSON when it parses, else the text (null when empty). */
function parseBody(text: string): unknown {
  if (!text.length) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The typed error of a gateway answer: its {error, detail, hint, sqlstate} and status. */
function answerError(res: Response, data: unknown): DeliverError {
  const e = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  const retry = res.headers.get('Retry-After');
  return deliverError(typeof e.error === 'string' ? e.error : `HTTP ${res.status}${typeof data === 'string' ? `: ${data}` : ''}`, {
    sqlstate: typeof e.sqlstate === 'string' ? e.sqlstate : null,
    detail: typeof e.detail === 'string' ? e.detail : null,
    hint: typeof e.hint === 'string' ? e.hint : null,
    status: res.status,
    retryAfter: retry !== null && retry !== '' && !Number.isNaN(Number(retry)) ? Number(retry) : null,
  });
}

/** Seconds for a query parameter: the gateway takes numbers of seconds there. */
function seconds(name: string, v: Interval | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'string' && /^[0-9]+(\.[0-9]+)?$/.test(v.trim())) return v.trim();
  throw new InvalidParameterError(`${name} must be a number of seconds over HTTP`, { sqlstate: '22023' });
}

const enc = encodeURIComponent;

/**
 * deliver over HTTP (deliverd).
 *
 * ```ts
 * const deliver = new HttpClient({ url: 'http://127.0.0.1:8433', token });
 * await deliver.send('orders', { order: 1 });
 * ```
 */
export class HttpClient implements QueueClient {
  private readonly base: string;
  private readonly token: HttpClientOptions['token'];
  private readonly fetchFn: typeof fetch;
  private readonly extraHeaders: Record<string, string>;
  /** receive's signal aborts the request only (the gateway's receive is not cancelled): a Consumer does not abort its polls. */
  readonly cancelsReceive = false;

  constructor(options: HttpClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.token = options.token;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new TypeError('no fetch: pass options.fetch');
    this.fetchFn = f.bind(globalThis);
    this.extraHeaders = options.headers ?? {};
  }

  /**
   * One request; the decoded JSON answer, or a typed error from the
   * gateway's {error, detail, hint, sqlstate}.
   */
  async request(method: string, path: string, options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<unknown> {
    const headers: Record<string, string> = { Accept: 'application/json', ...this.extraHeaders, ...options.headers };
    const token = typeof this.token === 'function' ? await this.token() : this.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    }
    let res: Response;
    try {
      res = await this.fetchFn(this.base + path, { method, headers, body, signal: options.signal });
    } catch (err) {
      if ((err as { name?: string }).name === 'AbortError') throw err;
      throw new UnavailableError(`deliverd unreachable: ${(err as Error).message ?? String(err)}`, { sqlstate: '08006', cause: err });
    }
    const data = parseBody(await res.text());
    if (res.ok) return data;
    throw answerError(res, data);
  }

  /**
   * The queue's Server-Sent Events stream (`GET /v1/queues/{q}/stream`):
   * yields each message as its event comes. The gateway acks the messages
   * whose events it handed to the socket, so a message yielded is acked and
   * one lost on the way is not delivered again (for per-message acks use
   * receive). The generator returns when the gateway ends the stream (the
   * token expired, a shutdown) or `signal` aborts; an error event throws
   * its typed error, as does an error answer before the stream opens (an
   * unknown queue, no grant). Leaving the loop early closes the connection.
   */
  async *stream<P = unknown>(queue: string, options: StreamOptions = {}): AsyncGenerator<Message<P>, void, undefined> {
    const q = new URLSearchParams();
    if (options.max !== undefined) q.set('max', String(options.max));
    const vt = seconds('visibilityTimeout', options.visibilityTimeout);
    if (vt !== undefined) q.set('visibility_timeout', vt);
    if (options.group !== undefined) q.set('group', options.group);
    const qs = q.toString();
    const headers: Record<string, string> = { Accept: 'text/event-stream', ...this.extraHeaders };
    const token = typeof this.token === 'function' ? await this.token() : this.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (options.lastEventId !== undefined) headers['Last-Event-ID'] = wireIdText(options.lastEventId);
    if (options.signal?.aborted) return;
    const ctl = new AbortController();
    const stop = (): void => ctl.abort();
    options.signal?.addEventListener('abort', stop);
    try {
      let res: Response;
      try {
        res = await this.fetchFn(`${this.base}/v1/queues/${enc(queue)}/stream${qs ? `?${qs}` : ''}`, { headers, signal: ctl.signal });
      } catch (err) {
        if (options.signal?.aborted) return;
        throw new UnavailableError(`deliverd unreachable: ${(err as Error).message ?? String(err)}`, { sqlstate: '08006', cause: err });
      }
      if (!res.ok || !res.body) throw answerError(res, parseBody(await res.text()));
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let event: Record<string, string> = {};
      for (;;) {
        let chunk: ReadableStreamReadResult<string>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (options.signal?.aborted) return;
          throw new UnavailableError(`the stream broke: ${(err as Error).message ?? String(err)}`, { sqlstate: '08006', cause: err });
        }
        if (chunk.done) return;
        buf += chunk.value;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line !== '') {
            if (!line.startsWith(':')) {
              const i = line.indexOf(':');
              const value = i < 0 ? '' : line.slice(i + 1);
              event[i < 0 ? line : line.slice(0, i)] = value.startsWith(' ') ? value.slice(1) : value;
            }
            continue;
          }
          const kind = event.event ?? 'message';
          const data = event.data;
          event = {};
          if (data === undefined) continue;
          if (kind === 'message') yield toMessage<P>(JSON.parse(data) as Row);
          else if (kind === 'error') throw answerError(res, parseBody(data));
          else if (kind === 'end') return;
        }
      }
    } finally {
      options.signal?.removeEventListener('abort', stop);
      ctl.abort();
    }
  }

  // ---- queues

  async createQueue(name: string, options: CreateQueueOptions = {}): Promise<void> {
    await this.request('POST', '/v1/queues', {
      body: {
        name,
        guarantee: options.guarantee,
        visibility_timeout: options.visibilityTimeout,
        max_attempts: options.maxAttempts,
        fifo: options.fifo,
        dedup_window: options.dedupWindow,
        retry_base: options.retryBase,
        retry_max: options.retryMax,
        message_ttl: options.messageTtl,
        on_expire: options.onExpire,
        max_depth: options.maxDepth,
        overflow: options.overflow,
        ack_commit: options.ackCommit,
        priorities: options.priorities,
      },
    });
  }

  /** Changes a queue's settings (PATCH /v1/queues/{queue}); anything left out stays as it is. */
  async alterQueue(name: string, options: AlterQueueOptions): Promise<void> {
    await this.request('PATCH', `/v1/queues/${enc(name)}`, {
      body: {
        visibility_timeout: options.visibilityTimeout,
        max_attempts: options.maxAttempts,
        dedup_window: options.dedupWindow,
        retry_base: options.retryBase,
        retry_max: options.retryMax,
        archive_retention: options.archiveRetention,
        message_ttl: options.messageTtl,
        on_expire: options.onExpire,
        max_depth: options.maxDepth,
        overflow: options.overflow,
        ack_commit: options.ackCommit,
        priorities: options.priorities,
      },
    });
  }

  async dropQueue(name: string): Promise<boolean> {
    const r = (await this.request('DELETE', `/v1/queues/${enc(name)}`)) as Row;
    return r.dropped as boolean;
  }

  async listQueues(): Promise<QueueInfo[]> {
    return ((await this.request('GET', '/v1/queues')) as Row[]).map(toQueueInfo);
  }

  /** One queue's settings, or null when there is no such queue. */
  async getQueue(name: string): Promise<QueueInfo | null> {
    try {
      return toQueueInfo((await this.request('GET', `/v1/queues/${enc(name)}`)) as Row);
    } catch (err) {
      if (err instanceof DeliverError && err.status === 404) return null;
      throw err;
    }
  }

  // ---- consumer groups

  async createConsumerGroup(queue: string, group: string, options: { startFrom?: 'latest' | 'earliest' } = {}): Promise<void> {
    await this.request('POST', `/v1/queues/${enc(queue)}/groups`, { body: { name: group, start_from: options.startFrom } });
  }

  async dropConsumerGroup(queue: string, group: string): Promise<boolean> {
    const r = (await this.request('DELETE', `/v1/queues/${enc(queue)}/groups/${enc(group)}`)) as Row;
    return r.dropped as boolean;
  }

  async resetConsumerGroup(queue: string, group: string, to: GroupPosition): Promise<void> {
    await this.request('POST', `/v1/queues/${enc(queue)}/groups/${enc(group)}/reset`, { body: { to: positionText(to) } });
  }

  async replayArchive(queue: string, group: string, options: ReplayArchiveOptions = {}): Promise<ReplayResult> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/groups/${enc(group)}/replay`, {
      body: {
        since: timeText(options.since),
        after_id: options.afterId === undefined ? undefined : wireIdText(options.afterId),
        max_messages: options.maxMessages,
      },
    })) as Row;
    return { replayed: Number(r.replayed), lastId: maybeId(r.last_id) };
  }

  async listConsumerGroups(queue: string): Promise<ConsumerGroupInfo[]> {
    const rows = (await this.request('GET', `/v1/queues/${enc(queue)}/groups`)) as Row[];
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
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/groups/${enc(group)}/pause`)) as Row;
    return r.paused as boolean;
  }

  /** Resumes a paused consumer group and wakes its long polls. False when it was not paused. */
  async resumeConsumerGroup(queue: string, group = 'default'): Promise<boolean> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/groups/${enc(group)}/resume`)) as Row;
    return r.resumed as boolean;
  }

  /**
   * Limits a consumer group's receives to perSecond messages a second, at
   * most burst at once (default max(1, ceil(perSecond))); perSecond null
   * removes the limit.
   */
  async setConsumerGroupRate(queue: string, group: string, perSecond: number | null, burst: number | null = null): Promise<void> {
    await this.request('PUT', `/v1/queues/${enc(queue)}/groups/${enc(group)}/rate`, {
      body: { per_second: perSecond, burst },
    });
  }

  /** FIFO queues: lets up to maxInFlightPerKey messages of one ordering key out at once (1, the default: one at a time). */
  async setFifoKeyLimit(queue: string, maxInFlightPerKey: number): Promise<void> {
    await this.request('PUT', `/v1/queues/${enc(queue)}/fifo-key-limit`, { body: { max_in_flight_per_key: maxInFlightPerKey } });
  }

  // ---- sending

  async send<P = unknown>(queue: string, payload: P, options: SendOptions = {}): Promise<Id> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/messages`, {
      body: {
        payload: payload === undefined ? null : payload,
        headers: options.headers ?? undefined,
        ordering_key: options.orderingKey ?? undefined,
        idempotency_key: options.idempotencyKey ?? undefined,
        delay: options.delay ?? undefined,
        expires_at: timeText(options.expiresAt),
        priority: options.priority ?? undefined,
      },
    })) as Row;
    return maybeId(r.message_id) as Id;
  }

  async sendBatch<P = unknown>(queue: string, messages: BatchMessage<P>[], options: SendBatchOptions = {}): Promise<Id[]> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/messages/batch`, {
      body: {
        messages: messages.map((m) => ({
          payload: m.payload === undefined ? null : m.payload,
          headers: m.headers ?? undefined,
          ordering_key: m.orderingKey ?? undefined,
          idempotency_key: m.idempotencyKey ?? undefined,
        })),
        delay: options.delay ?? undefined,
        expires_at: timeText(options.expiresAt),
        priority: options.priority ?? undefined,
      },
    })) as Row;
    return ((r.message_ids ?? []) as string[]).map((id) => maybeId(id) as Id);
  }

  // ---- receiving

  /**
   * Receives up to `max` messages (intervals in seconds over HTTP; `wait`
   * at most the gateway's max_wait). Aborting the signal aborts the request
   * and resolves []; a receive the gateway completed anyway keeps its
   * messages leased until their visibility timeout.
   */
  async receive<P = unknown>(queue: string, options: ReceiveOptions = {}): Promise<Message<P>[]> {
    const q = new URLSearchParams();
    if (options.max !== undefined) q.set('max', String(options.max));
    const vt = seconds('visibilityTimeout', options.visibilityTimeout);
    if (vt !== undefined) q.set('visibility_timeout', vt);
    const wait = seconds('wait', options.wait);
    if (wait !== undefined) q.set('wait', wait);
    if (options.group !== undefined) q.set('group', options.group);
    const qs = q.toString();
    if (options.signal?.aborted) return [];
    try {
      const rows = (await this.request('POST', `/v1/queues/${enc(queue)}/receive${qs ? `?${qs}` : ''}`, { signal: options.signal })) as Row[];
      return rows.map((r) => toMessage<P>(r));
    } catch (err) {
      if (options.signal?.aborted && (err as { name?: string }).name === 'AbortError') return [];
      throw err;
    }
  }

  async ack(queue: string, deliveryId: IdInput): Promise<boolean> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/deliveries/${wireIdText(deliveryId)}/ack`)) as Row;
    return r.acked as boolean;
  }

  async ackBatch(queue: string, deliveryIds: IdInput[]): Promise<number> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/ack`, { body: { delivery_ids: deliveryIds.map(wireIdText) } })) as Row;
    return Number(r.acked);
  }

  async nack(queue: string, deliveryId: IdInput, options: NackOptions = {}): Promise<boolean> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/deliveries/${wireIdText(deliveryId)}/nack`, {
      body: {
        error: options.error ?? undefined,
        retry_after: options.retryAfter ?? undefined,
        dead_letter: options.deadLetter ? true : undefined,
      },
    })) as Row;
    return r.nacked as boolean;
  }

  async extendLease(queue: string, deliveryId: IdInput, visibilityTimeout: Interval): Promise<Date> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/deliveries/${wireIdText(deliveryId)}/extend`, {
      body: { visibility_timeout: visibilityTimeout },
    })) as Row;
    return toDate(r.lease_expires_at) as Date;
  }

  // ---- dead letters, metrics

  async deadLetters<P = unknown>(queue: string, options: DeadLettersOptions = {}): Promise<DeadLetter<P>[]> {
    const q = new URLSearchParams();
    if (options.group != null) q.set('group', options.group);
    if (options.max !== undefined) q.set('max', String(options.max));
    const qs = q.toString();
    const rows = (await this.request('GET', `/v1/queues/${enc(queue)}/dead-letters${qs ? `?${qs}` : ''}`)) as Row[];
    return rows.map((r) => toDeadLetter<P>(r));
  }

  async redrive(queue: string, options: RedriveOptions = {}): Promise<number> {
    const r = (await this.request('POST', `/v1/queues/${enc(queue)}/redrive`, {
      body: {
        message_ids: options.messageIds ? options.messageIds.map(wireIdText) : undefined,
        consumer_group: options.group ?? undefined,
        to_queue: options.toQueue ?? undefined,
      },
    })) as Row;
    return Number(r.redriven);
  }

  async deleteMessage(queue: string, messageId: IdInput): Promise<boolean> {
    const r = (await this.request('DELETE', `/v1/queues/${enc(queue)}/messages/${wireIdText(messageId)}`)) as Row;
    return r.deleted as boolean;
  }

  async deleteDeadLetters(queue: string, messageIds: IdInput[], options: DeleteDeadLettersOptions = {}): Promise<number> {
    const r = (await this.request('DELETE', `/v1/queues/${enc(queue)}/dead-letters`, {
      body: { message_ids: messageIds.map(wireIdText), consumer_group: options.group ?? undefined },
    })) as Row;
    return Number(r.deleted);
  }

  async peek<P = unknown>(queue: string, options: PeekOptions = {}): Promise<PeekedMessage<P>[]> {
    const q = new URLSearchParams();
    if (options.group != null) q.set('group', options.group);
    if (options.max !== undefined) q.set('max', String(options.max));
    const qs = q.toString();
    const rows = (await this.request('GET', `/v1/queues/${enc(queue)}/peek${qs ? `?${qs}` : ''}`)) as Row[];
    return rows.map((r) => toPeeked<P>(r));
  }

  /** One row per consumer group of the queue. */
  async metrics(queue: string): Promise<QueueMetrics[]> {
    return ((await this.request('GET', `/v1/queues/${enc(queue)}/metrics`)) as Row[]).map(toMetrics);
  }

  // ---- topic routing

  /** POST /v1/publish: the message to every queue bound to a matching pattern; the queues and ids. */
  async publish<P = unknown>(routingKey: string, payload: P, options: PublishOptions = {}): Promise<Published[]> {
    const rows = (await this.request('POST', '/v1/publish', {
      body: {
        routing_key: routingKey,
        payload: payload === undefined ? null : payload,
        headers: options.headers ?? undefined,
        ordering_key: options.orderingKey ?? undefined,
        idempotency_key: options.idempotencyKey ?? undefined,
        delay: options.delay ?? undefined,
        mandatory: options.mandatory ?? undefined,
        expires_at: timeText(options.expiresAt),
        priority: options.priority ?? undefined,
      },
    })) as Row[];
    return rows.map((r) => ({ queue: r.queue as string, messageId: maybeId(r.message_id) as Id }));
  }

  /** POST /v1/bindings; false when the queue was bound to the pattern already. */
  async bind(pattern: string, queue: string): Promise<boolean> {
    const r = (await this.request('POST', '/v1/bindings', { body: { pattern, queue } })) as Row;
    return Boolean(r.created);
  }

  /** DELETE /v1/bindings; false when there was no such binding. */
  async unbind(pattern: string, queue: string): Promise<boolean> {
    const r = (await this.request('DELETE', '/v1/bindings', { body: { pattern, queue } })) as Row;
    return Boolean(r.removed);
  }

  /** GET /v1/bindings: of one queue, or all. */
  async listBindings(queue?: string | null): Promise<Binding[]> {
    const qs = queue != null ? `?${new URLSearchParams({ queue })}` : '';
    const rows = (await this.request('GET', `/v1/bindings${qs}`)) as Row[];
    return rows.map((r) => ({ pattern: r.pattern as string, queue: r.queue as string, createdAt: toDate(r.created_at) as Date }));
  }

  /** GET /v1/routing?key=: the bindings a publish with this routing key would match. */
  async testRouting(routingKey: string): Promise<RoutingMatch[]> {
    const rows = (await this.request('GET', `/v1/routing?${new URLSearchParams({ key: routingKey })}`)) as Row[];
    return rows.map((r) => ({ queue: r.queue as string, pattern: r.pattern as string }));
  }

  /** Whether deliverd runs (GET /healthz answers 200). */
  async health(): Promise<boolean> {
    return this.probe('/healthz');
  }

  /** Whether deliverd reaches Postgres (GET /readyz answers 200). */
  async ready(): Promise<boolean> {
    return this.probe('/readyz');
  }

  private async probe(path: string): Promise<boolean> {
    try {
      const res = await this.fetchFn(this.base + path, { headers: this.extraHeaders });
      await res.text();
      return res.ok;
    } catch {
      return false;
    }
  }
}
