/**
 * Typed errors. deliver raises every error with a SQLSTATE; the SQL client
 * and the HTTP client map it onto the same classes, so
 * `err instanceof NotCurrentError` means the same over both.
 *
 * No Node-only API here: the HTTP entry point imports this module.
 */

/** Where an error came from: what the server said, over SQL or HTTP. */
export interface DeliverErrorFields {
  /** The SQLSTATE (five characters), or null when the server gave none. */
  sqlstate: string | null;
  detail?: string | null;
  hint?: string | null;
  /** The HTTP status, for errors of the HTTP client. */
  status?: number;
  /** Seconds the gateway asks to wait before a retry (HTTP 503 Retry-After). */
  retryAfter?: number | null;
  cause?: unknown;
}

/** Any error deliver raised. */
export class DeliverError extends Error {
  /** The SQLSTATE, e.g. "42704"; null only for an HTTP error the gateway gave none for. */
  readonly sqlstate: string | null;
  readonly detail: string | null;
  readonly hint: string | null;
  /** The HTTP status (HTTP client only). */
  readonly status: number | undefined;
  /** Seconds to wait before retrying (HTTP 503 with Retry-After). */
  readonly retryAfter: number | null;

  constructor(message: string, fields: DeliverErrorFields) {
    super(message);
    this.name = new.target.name;
    this.sqlstate = fields.sqlstate;
    this.detail = fields.detail ?? null;
    this.hint = fields.hint ?? null;
    this.status = fields.status;
    this.retryAfter = fields.retryAfter ?? null;
    if (fields.cause !== undefined) {
      Object.defineProperty(this, 'cause', { value: fields.cause, enumerable: false, configurable: true, writable: true });
    }
  }
}

/**
 * Bad input (SQLSTATE class 22, data exception): 22023 (a value out of
 * range, an unknown option), 22004 (a NULL where a value is needed),
 * 2202E (arrays of different lengths), 22P02/22007/22003 (not a number,
 * interval or JSON).
 */
export class InvalidParameterError extends DeliverError {}
/** 42602: a queue, group or subscription name that breaks the name rules. */
export class InvalidNameError extends InvalidParameterError {}
/** 42704: unknown queue (or consumer group, role, push subscription). */
export class QueueNotFoundError extends DeliverError {}
/** 42710: the queue, group or subscription exists already. */
export class AlreadyExistsError extends DeliverError {}
/** 42501: the role has no grant for this queue or function. */
export class PermissionDeniedError extends DeliverError {}
/**
 * 55000: a delivery id that is not current (acked, nacked, delivered again,
 * its receive rolled back; extend_lease after the lease ran out). The
 * fencing token at work: the ack of a consumer whose lease ran out fails.
 */
export class NotCurrentError extends DeliverError {}
/** 55P03: exactly-once: another open transaction is acking this delivery. */
export class LockNotAvailableError extends DeliverError {}
/** 54000: a payload, key or batch over its limit. */
export class LimitExceededError extends DeliverError {}
/** 53400: the queue holds its share of lease slots ("too many messages in flight"), or a send would take it over its maxDepth ("queue ... is full"). */
export class TooManyInFlightError extends DeliverError {}
/**
 * Class 25: 25001 (an at-most-once receive inside a transaction block),
 * 25006 (a write on a standby).
 */
export class InvalidTransactionStateError extends DeliverError {}
/** 2BP01: drop_queue of a queue that has push subscriptions. */
export class DependentObjectsError extends DeliverError {}
/** 28xxx or HTTP 401: no token, a bad or expired token, a failed login. */
export class AuthenticationError extends DeliverError {}
/**
 * The database or gateway cannot serve now, retry later: connection
 * failures (08xxx), shutdown (57P01-57P03), too many connections (53300),
 * serialization failures and deadlocks (40001, 40P01), HTTP 503.
 */
export class UnavailableError extends DeliverError {}

type ErrorClass = new (message: string, fields: DeliverErrorFields) => DeliverError;

const BY_SQLSTATE: Record<string, ErrorClass> = {
  '42704': QueueNotFoundError,
  '42710': AlreadyExistsError,
  '42501': PermissionDeniedError,
  '42602': InvalidNameError,
  '55000': NotCurrentError,
  '55P03': LockNotAvailableError,
  '54000': LimitExceededError,
  '53400': TooManyInFlightError,
  '53300': UnavailableError,
  '2BP01': DependentObjectsError,
  '40001': UnavailableError,
  '40P01': UnavailableError,
  '57P01': UnavailableError,
  '57P02': UnavailableError,
  '57P03': UnavailableError,
};

const BY_CLASS: Record<string, ErrorClass> = {
  '22': InvalidParameterError,
  '25': InvalidTransactionStateError,
  '28': AuthenticationError,
  '08': UnavailableError,
};

/** The class deliver's errors of this SQLSTATE get. */
export function errorClassFor(sqlstate: string | null | undefined): ErrorClass {
  if (!sqlstate) return DeliverError;
  return BY_SQLSTATE[sqlstate] ?? BY_CLASS[sqlstate.slice(0, 2)] ?? DeliverError;
}

/** The error class of an HTTP error that carried no SQLSTATE. */
function classForStatus(status: number): ErrorClass {
  switch (status) {
    case 400:
    case 422:
      return InvalidParameterError;
    case 401:
      return AuthenticationError;
    case 403:
      return PermissionDeniedError;
    case 404:
      return QueueNotFoundError;
    case 409:
      return NotCurrentError;
    case 413:
      return LimitExceededError;
    case 503:
      return UnavailableError;
    default:
      return DeliverError;
  }
}

/** Build the typed error of a SQLSTATE (what both clients do). */
export function deliverError(message: string, fields: DeliverErrorFields): DeliverError {
  const cls = fields.sqlstate ? errorClassFor(fields.sqlstate) : fields.status ? classForStatus(fields.status) : DeliverError;
  return new cls(message, fields);
}

/**
 * The typed error of an error thrown by node-postgres: a server error
 * (it has a five-character `code`) becomes its class; a connection error
 * becomes an UnavailableError (SQLSTATE 08006); anything else (a bug, a
 * TypeError) is returned as it is.
 */
export function fromPgError(err: unknown): unknown {
  if (err instanceof DeliverError) return err;
  if (typeof err !== 'object' || err === null) return err;
  const e = err as { code?: unknown; message?: unknown; detail?: unknown; hint?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(err);
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
    return deliverError(message, {
      sqlstate: e.code,
      detail: typeof e.detail === 'string' ? e.detail : null,
      hint: typeof e.hint === 'string' ? e.hint : null,
      cause: err,
    });
  }
  if (typeof e.code === 'string' && /^E(CONNREFUSED|CONNRESET|PIPE|NOTFOUND|TIMEDOUT|HOSTUNREACH|NETUNREACH)$/.test(e.code)) {
    return new UnavailableError(message, { sqlstate: '08006', cause: err });
  }
  if (/Connection terminated|connection (is )?closed|Client has encountered a connection error/i.test(message)) {
    return new UnavailableError(message, { sqlstate: '08006', cause: err });
  }
  return err;
}
