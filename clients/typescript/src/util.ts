/**
 * Conversions both clients share. No Node-only API here.
 */
import { InvalidParameterError } from './errors.js';
import type { Id, IdInput, Interval } from './types.js';

/** An id as a string of digits, checked: exact, never a rounded number. */
export function idText(id: IdInput): string {
  if (typeof id === 'bigint') return id.toString();
  if (typeof id === 'string') {
    if (/^-?[0-9]+$/.test(id)) return id;
    throw new InvalidParameterError(`invalid id "${id.slice(0, 40)}": not an integer`, { sqlstate: '22P02' });
  }
  if (typeof id === 'number' && Number.isSafeInteger(id)) return String(id);
  throw new InvalidParameterError(
    `invalid id ${String(id)}: pass ids as bigint or string (a number beyond 2^53 is rounded)`,
    { sqlstate: '22003' },
  );
}

/** An id as a bigint. */
export function toBigInt(id: IdInput): bigint {
  return BigInt(idText(id));
}

/** A cluster's id, as its gateway writes them (partition:epoch:id; gateway/include/globalid.h). */
const CLUSTER_ID = /^[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}$/;

/** An id for the gateway: a cluster's partition:epoch:id as it is, else as idText. */
export function wireIdText(id: IdInput): string {
  if (typeof id === 'string' && CLUSTER_ID.test(id)) return id;
  if (typeof id === 'string' && id.includes(':'))
    throw new InvalidParameterError(`invalid id "${id.slice(0, 40)}": not partition:epoch:id`, { sqlstate: '22P02' });
  return idText(id);
}

/** A nullable id from the gateway: a cluster's partition:epoch:id as a string, else a bigint. */
export function maybeId(v: unknown): Id | null {
  if (typeof v === 'string' && CLUSTER_ID.test(v)) return v;
  return maybeBigInt(v);
}

/** A nullable id from the server (int8 text or JSON string). */
export function maybeBigInt(v: unknown): bigint | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v;
  return BigInt(v as string);
}

/** An Interval as PostgreSQL interval input ('30 seconds'), or null. */
export function intervalText(v: Interval | null | undefined): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return `${v} seconds`;
  return v;
}

/** A time for a JSON body: a Date as ISO 8601, a string as it is; undefined when left out. */
export function timeText(v: Date | string | null | undefined): string | undefined {
  if (v === null || v === undefined) return undefined;
  return v instanceof Date ? v.toISOString() : v;
}

const UNIT_SECONDS: Record<string, number> = {
  year: 365.25 * 86400,
  years: 365.25 * 86400,
  mon: 30 * 86400,
  mons: 30 * 86400,
  day: 86400,
  days: 86400,
};

/**
 * Seconds of a PostgreSQL interval in the default output style
 * ("1 day 02:03:04.5", "00:00:30", "-00:00:01", "3 mons"); months count
 * as 30 days and years as 365.25 days, as `extract(epoch from ...)` does.
 * A number is taken as seconds.
 */
export function parseInterval(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') throw new TypeError(`not an interval: ${String(v)}`);
  let total = 0;
  const re = /(-?\d+(?:\.\d+)?)\s+(years?|mons?|days?)|(-)?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)/g;
  let matched = false;
  for (let m = re.exec(v); m; m = re.exec(v)) {
    matched = true;
    if (m[2]) {
      total += Number(m[1]) * (UNIT_SECONDS[m[2]] ?? 0);
    } else {
      const s = Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]);
      total += m[3] ? -s : s;
    }
  }
  if (!matched) throw new TypeError(`not an interval: ${v}`);
  return Math.round(total * 1e6) / 1e6;
}

/** A Date from a timestamptz (Date or JSON string), or null. */
export function toDate(v: unknown): Date | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v;
  return new Date(v as string);
}

/** A number from an int8 count (bigint, string or number), or null. */
export function toNumber(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  return Number(v);
}

/** Resolves after ms, or at once when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The text a failed handler's nack records. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** The text of a consumer group position, as reset_consumer_group takes it. */
export function positionText(to: 'earliest' | 'latest' | bigint | number | Date): string {
  if (to instanceof Date) return to.toISOString();
  return String(to);
}
