/**
 * deliver-client: deliver (the PostgreSQL message queue) from TypeScript.
 *
 * - DeliverClient: every SQL function of deliver over node-postgres, the
 *   transactional outbox (send inside your own transaction), exactly-once
 *   processing.
 * - HttpClient: deliverd's routes over fetch (also `deliver-client/http`,
 *   which imports nothing Node-only).
 * - Consumer: a handler with bounded concurrency, lease extension, ack/nack
 *   and a graceful stop, over either client.
 * - ExactlyOnceConsumer: the handler's writes and the ack in one transaction.
 */
export * from './errors.js';
export type * from './types.js';
export { DeliverClient } from './sql.js';
export type {
  Alert,
  AlertMetric,
  ArchivedMessage,
  Grant,
  LeaseSlots,
  MaintainResult,
  PushMetrics,
  PushSubscription,
  Queryable,
} from './sql.js';
export { HttpClient } from './http.js';
export type { HttpClientOptions } from './http.js';
export { Consumer, LeaseKeeper } from './consumer.js';
export type { ConsumerOptions, ConsumerStats, Handler, HandlerContext } from './consumer.js';
export { ExactlyOnceConsumer, exactlyOnceRound } from './exactly-once.js';
export type {
  ExactlyOnceConsumerOptions,
  ExactlyOnceHandler,
  ExactlyOnceOptions,
  ExactlyOnceResult,
  ExactlyOnceStats,
} from './exactly-once.js';
