/**
 * The shapes both clients take and return. Ids are `bigint` (delivery ids
 * are larger than 2^53 and a JavaScript number would round them), except
 * those of a gateway serving a cluster: strings `partition:epoch:id`. Intervals are taken as a number of seconds or a PostgreSQL interval
 * string ("2 minutes") and returned as seconds.
 */

/** Seconds (`30`, `0.5`) or a PostgreSQL interval (`'2 minutes'`). */
export type Interval = number | string;

/**
 * An id as deliver returns it: a bigint from a single node (over SQL or
 * HTTP), a string `partition:epoch:id` (`"3:1:42"`) from a gateway serving a
 * cluster. Pass it back as it came.
 */
export type Id = bigint | string;

/**
 * An id as callers may give it: a bigint, a string of digits, a safe
 * integer, or (HTTP only) a cluster's `partition:epoch:id`.
 */
export type IdInput = bigint | string | number;

/**
 * Where resetConsumerGroup moves a group: `earliest`, `latest`, a message id
 * (bigint or number) or a time.
 */
export type GroupPosition = 'earliest' | 'latest' | bigint | number | Date;

/** Options of replayArchive: which archived messages, how many per call. */
export interface ReplayArchiveOptions {
  /** Only those first sent at or after this time (any by default; not before now minus archive_retention). */
  since?: Date | null;
  /** Only ids after this one (0 by default): the lastId of the call before. */
  afterId?: IdInput;
  /** At most this many per call (100 by default, 1 to deliver.max_batch_size). */
  maxMessages?: number;
}

/** What replayArchive sent: how many, and the last id replayed (null when none). */
export interface ReplayResult<I extends Id = Id> {
  replayed: number;
  lastId: I | null;
}

export type Guarantee = 'at_most_once' | 'at_least_once' | 'exactly_once';
export type Privilege = 'send' | 'receive' | 'all';

/** Options of createQueue: anything left out takes deliver's default. */
export interface CreateQueueOptions {
  guarantee?: Guarantee;
  visibilityTimeout?: Interval;
  maxAttempts?: number;
  fifo?: boolean;
  dedupWindow?: Interval;
  retryBase?: Interval;
  retryMax?: Interval;
  /** A message expires this long after it was sent (none by default). */
  messageTtl?: Interval;
  /** What expiry does to a message: to the dead letters (the default) or dropped. */
  onExpire?: OnExpire;
  /** Most messages waiting (metrics' depth); a send beyond it is refused (53400). None by default. */
  maxDepth?: number;
  /** What a send beyond maxDepth does: refused (the default), or the oldest messages to the dead letters first. */
  overflow?: Overflow;
  /** How an ack that is its transaction's only work commits: 'durable' (the default) or 'async' (at-least-once queues only). */
  ackCommit?: AckCommit;
  /**
   * Priority order: a receive hands out a message of higher priority first
   * (at-least-once and exactly-once queues only). Off by default: sends with
   * a priority above 0 are refused (NotCurrentError, 55000).
   */
  priorities?: boolean;
}

/** What expiry does to a message (the queue's on_expire). */
export type OnExpire = 'dead_letter' | 'drop';

/** What a send beyond a queue's maxDepth does (the queue's overflow). */
export type Overflow = 'reject' | 'drop_oldest';

/**
 * How a queue's acks commit (its ack_commit): 'durable' waits for the WAL
 * flush; 'async' does not when the ack is its transaction's only work (after
 * a crash an acked message may be delivered again, never lost).
 */
export type AckCommit = 'durable' | 'async';

/** Options of alterQueue: anything left out stays as it is. */
export interface AlterQueueOptions {
  visibilityTimeout?: Interval;
  maxAttempts?: number;
  dedupWindow?: Interval;
  retryBase?: Interval;
  retryMax?: Interval;
  /** Keep finished messages this long (turns the archive on); 0 turns it off. */
  archiveRetention?: Interval;
  /** A message expires this long after it was sent (also those stored); 0 removes the ttl. */
  messageTtl?: Interval;
  /** What expiry does to a message. */
  onExpire?: OnExpire;
  /** The depth limit; 0 removes it. */
  maxDepth?: number;
  overflow?: Overflow;
  ackCommit?: AckCommit;
  /** Turns priority order on or off (see CreateQueueOptions.priorities). */
  priorities?: boolean;
}

export interface QueueInfo {
  name: string;
  guarantee: Guarantee;
  /** seconds */
  visibilityTimeout: number;
  maxAttempts: number;
  fifo: boolean;
  /** seconds */
  dedupWindow: number;
  /** seconds */
  retryBase: number;
  /** seconds */
  retryMax: number;
  /** seconds; null when the archive is off */
  archiveRetention: number | null;
  consumerGroups: string[];
  createdAt: Date;
  /** seconds; null when the queue has no message_ttl */
  messageTtl: number | null;
  onExpire: OnExpire;
  /** null when the queue has no depth limit */
  maxDepth: number | null;
  overflow: Overflow;
  ackCommit: AckCommit;
  /** Receives hand out higher priorities first (createQueue's priorities). */
  priorities: boolean;
}

export interface ConsumerGroupInfo {
  name: string;
  createdAt: Date;
  /** Paused (pauseConsumerGroup): its receives return nothing. */
  paused: boolean;
  /** The rate limit in messages a second (setConsumerGroupRate); null when none. */
  ratePerSecond: number | null;
  /** The most one receive may take at once under the rate limit; null when none. */
  rateBurst: number | null;
}

export interface SendOptions {
  /** A JSON object of headers. */
  headers?: Record<string, unknown> | null;
  /** Messages of a key are delivered in commit order (FIFO queues: one at a time). */
  orderingKey?: string | null;
  /** A key seen on the queue within its dedup window returns the first id and stores nothing. */
  idempotencyKey?: string | null;
  /** Invisible until then. */
  delay?: Interval | null;
  /** Never delivered after this time: then a dead letter (reason `expired`) or dropped (the queue's onExpire). */
  expiresAt?: Date | string | null;
  /**
   * 0 (the default) to 9: a queue with priorities hands out higher ones
   * first. Outside 0..9: InvalidParameterError (22023); above 0 to a queue
   * without priorities: NotCurrentError (55000).
   */
  priority?: number | null;
}

/** One message of a batch send. */
export interface BatchMessage<P = unknown> {
  payload: P;
  headers?: Record<string, unknown> | null;
  orderingKey?: string | null;
  idempotencyKey?: string | null;
}

export interface SendBatchOptions {
  /** Delay of every message of the batch. */
  delay?: Interval | null;
  /** Deadline of every message of the batch (see SendOptions.expiresAt). */
  expiresAt?: Date | string | null;
  /** Priority of every message of the batch (see SendOptions.priority). */
  priority?: number | null;
}

/** Options of HttpClient.stream (the gateway's Server-Sent Events stream). */
export interface StreamOptions {
  /** At most this many messages per receive of the stream (the gateway's default: 10). */
  max?: number;
  /** Lease length of what the stream receives (the queue's by default). */
  visibilityTimeout?: Interval;
  /** Consumer group (`default` by default). */
  group?: string;
  /** The last message seen, when resuming: if it comes back, the gateway acks it without sending it again. */
  lastEventId?: IdInput;
  /** Stop: the stream ends (the generator returns) and its connection closes. */
  signal?: AbortSignal;
}

export interface ReceiveOptions {
  /** At most this many messages (1 by default). */
  max?: number;
  /** Lease length (the queue's by default). */
  visibilityTimeout?: Interval;
  /** Long poll: wait up to this long for a message (0 by default). */
  wait?: Interval;
  /** Consumer group (`default` by default). */
  group?: string;
  /**
   * Abort a long poll: receive then resolves with what it has (nothing).
   * Over SQL the waiting receive is cancelled in the server and rolls back,
   * so nothing stays leased. Over HTTP the request is aborted; a receive the
   * gateway completed after that keeps its messages leased until their
   * visibility timeout runs out.
   */
  signal?: AbortSignal;
}

/** I: the ids' type (bigint from DeliverClient, Id from HttpClient). */
export interface Message<P = unknown, I extends Id = Id> {
  messageId: I;
  /** The fencing token to ack, nack or extend with; null on an at-most-once queue. */
  deliveryId: I | null;
  payload: P;
  headers: Record<string, unknown> | null;
  orderingKey: string | null;
  /** How many times this message was delivered (1 the first time). */
  attempt: number;
  enqueuedAt: Date;
  /** null on an at-most-once queue */
  leaseExpiresAt: Date | null;
}

export interface NackOptions {
  /** Kept as the message's last error (cut to 119 bytes by the server). */
  error?: string | null;
  /** Visible again after this (0: at once); the queue's backoff by default. */
  retryAfter?: Interval | null;
  /**
   * true: the message goes to its group's dead letters now (reason `rejected`),
   * whatever attempts it has left, with the transaction; not with retryAfter.
   */
  deadLetter?: boolean;
}

export interface DeadLettersOptions {
  /** One group's (every group's by default). */
  group?: string | null;
  /** At most this many (100 by default). */
  max?: number;
}

export interface DeadLetter<P = unknown, I extends Id = Id> {
  messageId: I;
  group: string;
  payload: P;
  headers: Record<string, unknown> | null;
  orderingKey: string | null;
  attempts: number;
  /** `lease expired`, `nacked`, `receiving transaction rolled back`, `rejected` (nack with deadLetter), `expired` (the message outlived its deadline) or `overflow` (dropped by a send over maxDepth) */
  reason: string;
  lastError: string | null;
  enqueuedAt: Date;
  deadAt: Date;
}

export interface RedriveOptions {
  /** Only these dead letters (all by default). */
  messageIds?: IdInput[] | null;
  /** Only this group's (every group's by default). */
  group?: string | null;
  /**
   * Send them to this queue instead, as new messages (once per message, to every
   * group there); the caller needs the right to send to it.
   */
  toQueue?: string | null;
}

export interface DeleteDeadLettersOptions {
  /** Only this group's (every group's by default). */
  group?: string | null;
}

export interface PeekOptions {
  /** At most this many (10 by default). */
  max?: number;
  /** The consumer group (`default` by default). */
  group?: string;
}

/** A message a receive would hand out next, not leased (`peek`). */
export interface PeekedMessage<P = unknown, I extends Id = Id> {
  messageId: I;
  payload: P;
  headers: Record<string, unknown> | null;
  orderingKey: string | null;
  /** the attempt a receive would make */
  attempt: number;
  enqueuedAt: Date;
  /** due for redelivery (nacked, or its lease ran out) */
  redelivery: boolean;
}

export interface QueueMetrics {
  queue: string;
  group: string;
  /** waiting messages */
  depth: number;
  /** leased messages */
  inFlight: number;
  delayed: number;
  deadLetters: number;
  /** seconds the oldest unfinished message has waited; null when none */
  oldestAge: number | null;
  sentTotal: number;
  ackedTotal: number;
  deadTotal: number;
  workerLastRun: Date | null;
  /** seconds */
  workerLag: number | null;
  workerErrors: number | null;
}

/**
 * What a Consumer needs of a client: both DeliverClient (SQL) and
 * HttpClient have it.
 */
export interface QueueClient {
  receive<P = unknown>(queue: string, options?: ReceiveOptions): Promise<Message<P>[]>;
  ack(queue: string, deliveryId: IdInput): Promise<boolean>;
  nack(queue: string, deliveryId: IdInput, options?: NackOptions): Promise<boolean>;
  extendLease(queue: string, deliveryId: IdInput, visibilityTimeout: Interval): Promise<Date>;
}

// ---- topic routing

/** Options of publish: send's (expiresAt is every copy's deadline, priority every copy's), and mandatory. */
export interface PublishOptions extends SendOptions {
  /** No queue bound to a matching pattern is an error (QueueNotFoundError, 42704) instead of []. */
  mandatory?: boolean | null;
}

/** A queue publish sent to, and the message's id in it. */
export interface Published<I extends Id = Id> {
  queue: string;
  messageId: I;
}

/** A binding: publish sends to the queue when the pattern matches the routing key. */
export interface Binding {
  pattern: string;
  queue: string;
  createdAt: Date;
}

/** A binding test_routing found: the queue and its matching pattern. */
export interface RoutingMatch {
  queue: string;
  pattern: string;
}
