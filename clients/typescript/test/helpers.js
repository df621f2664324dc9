// Shared by the test files: a client of the test database (PGHOST, PGPORT,
// PGDATABASE from test.sh), the gateway test.sh started (DELIVER_HTTP_URL,
// DELIVER_JWT_SECRET) and its tokens, unique queue names, waiting for a
// condition.
import { createHmac } from 'node:crypto';
import pg from 'pg';
import { DeliverClient, HttpClient } from '../dist/index.js';

export const database = process.env.PGDATABASE || 'client_typescript';

/** A DeliverClient on its own pool; close() it at the end. */
export function client(options = {}) {
  return new DeliverClient({ database, max: 8, ...options });
}

/** A plain pg pool for the tests' own SQL. */
export function pool(options = {}) {
  return new pg.Pool({ database, max: 4, ...options });
}

/** The gateway's URL (test.sh starts deliverd). */
export const httpUrl = process.env.DELIVER_HTTP_URL;
/** The role with no rights on any queue (test.sh makes it). */
export const appRole = process.env.DELIVER_TEST_ROLE || 'client_ts_app';

const b64url = (s) => Buffer.from(s).toString('base64url');
/** An HS256 token of the gateway's secret with these claims. */
export function jwt(claims) {
  const secret = process.env.DELIVER_JWT_SECRET;
  if (!httpUrl || !secret) throw new Error('DELIVER_HTTP_URL and DELIVER_JWT_SECRET must be set (test.sh starts deliverd)');
  const head = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/** An HttpClient of the gateway as role (the superuser by default), its token valid for an hour. */
export function httpClient(role = process.env.PGUSER || 'postgres') {
  return new HttpClient({ url: httpUrl, token: jwt({ role, exp: Math.floor(Date.now() / 1000) + 3600 }) });
}

let n = 0;
/** A queue name no other test uses. */
export function uniqueName(prefix) {
  n += 1;
  return `${prefix}_${process.pid}_${n}_${Math.random().toString(36).slice(2, 7)}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves once fn() is truthy; fails after ms. */
export async function until(fn, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Two messages in the queue's archive (ids 7 and 8, the first an hour old with
 * key "k" and headers), as maintenance would have left them; `db` is a
 * DeliverClient of the superuser.
 */
export async function putInArchive(db, queue) {
  const [{ t }] = await db.query(
    "SELECT format('deliver.%I', format('q%s_archive', queue_id)) AS t FROM deliver.queue WHERE queue_name = $1",
    [queue],
  );
  await db.query(
    `INSERT INTO ${t} (message_id, enqueued_at, ordering_key, headers, payload)
     VALUES (7, now() - interval '1 hour', 'k', '{"h": 1}', '{"n": 7}'), (8, now(), NULL, NULL, '{"n": 8}')`,
  );
}
