// Exactly-once processing: the handler's writes and the ack commit in one
// transaction; a consumer process killed with SIGKILL at random points and
// restarted leaves each message's effect exactly once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ExactlyOnceConsumer } from '../dist/index.js';
import { client, pool, sleep, uniqueName, until } from './helpers.js';

let deliver;
let sql;
before(() => {
  deliver = client({ max: 10 });
  sql = pool();
});
after(async () => {
  await deliver.close();
  await sql.end();
});

async function setup(prefix) {
  const q = uniqueName(prefix);
  const table = `effects_${q.replace(/[^a-z0-9_]/gi, '_')}`.toLowerCase();
  await deliver.createQueue(q, { guarantee: 'exactly_once', retryBase: 0 });
  // no unique key: a duplicate effect would show as a second row
  await sql.query(`CREATE TABLE ${table} (message_id bigint NOT NULL, n int NOT NULL)`);
  return { q, table };
}

async function effects(table) {
  const r = await sql.query(`SELECT count(*)::int AS rows, count(DISTINCT message_id)::int AS messages,
                                    count(DISTINCT n)::int AS payloads FROM ${table}`);
  return r.rows[0];
}

describe('exactly-once', () => {
  it('processExactlyOnce: effect and ack commit together; a throwing handler is rolled back and nacked', async () => {
    const { q, table } = await setup('eo');
    await deliver.sendBatch(q, [1, 2, 3].map((n) => ({ payload: { n }, idempotencyKey: `k${n}` })));
    let failOnce = true;
    const handler = async (m, c) => {
      await c.query(`INSERT INTO ${table} VALUES ($1, $2)`, [m.messageId.toString(), m.payload.n]);
      if (m.payload.n === 2 && failOnce) {
        failOnce = false;
        throw new Error('handler failed after its write');
      }
    };
    const r1 = await deliver.processExactlyOnce(q, handler, { max: 10 });
    assert.deepEqual(r1, { received: 3, acked: 2, failed: 1 });
    assert.deepEqual(await effects(table), { rows: 2, messages: 2, payloads: 2 }, 'the failed handler\'s write was rolled back');
    const r2 = await deliver.processExactlyOnce(q, handler, { max: 10, wait: 2 });
    assert.deepEqual(r2, { received: 1, acked: 1, failed: 0 }, 'the nacked message came again');
    assert.deepEqual(await effects(table), { rows: 3, messages: 3, payloads: 3 });
    const [dl] = await deliver.metrics(q);
    assert.equal(dl.depth + dl.inFlight, 0);
    await sql.query(`DROP TABLE ${table}`);
    await deliver.dropQueue(q);
  });

  it('a transaction that fails to commit leaves neither effect nor ack, and frees the message at once', async () => {
    const { q, table } = await setup('eofail');
    await deliver.send(q, { n: 1 }, { idempotencyKey: 'one' });
    await assert.rejects(deliver.processExactlyOnce(q, async (m, c) => {
      await c.query(`INSERT INTO ${table} VALUES ($1, $2)`, [m.messageId.toString(), m.payload.n]);
      // a deferred failure: the COMMIT itself fails
      await c.query('CREATE TEMP TABLE deferred_fail (x int UNIQUE DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP');
      await c.query('INSERT INTO deferred_fail VALUES (1), (1)');
    }), (e) => e.sqlstate === '23505');
    assert.deepEqual(await effects(table), { rows: 0, messages: 0, payloads: 0 });
    const [m] = await deliver.receive(q);
    assert.equal(m.attempt, 2, 'free at once, not after a lease');
    await sql.query(`DROP TABLE ${table}`);
    await deliver.dropQueue(q);
  });

  it('ExactlyOnceConsumer: a handler slower than the lease is not redelivered; stop() cancels the long poll', async () => {
    const { q, table } = await setup('eoslow');
    await deliver.send(q, { n: 1 }, { idempotencyKey: 'slow' });
    let calls = 0;
    const consumer = new ExactlyOnceConsumer(deliver, q, async (m, c) => {
      calls++;
      await sleep(2500);
      await c.query(`INSERT INTO ${table} VALUES ($1, $2)`, [m.messageId.toString(), m.payload.n]);
    }, { visibilityTimeout: 1, wait: 20, handleSignals: false });
    consumer.start();
    await until(() => consumer.stats.acked === 1, 10000, 'the ack');
    const t0 = Date.now();
    await consumer.stop();
    assert.ok(Date.now() - t0 < 3000, 'the 20 s long poll was cancelled');
    assert.equal(calls, 1);
    assert.deepEqual(await effects(table), { rows: 1, messages: 1, payloads: 1 });
    await sql.query(`DROP TABLE ${table}`);
    await deliver.dropQueue(q);
  });

  it('kill -9 of the consumer process at random points: effects == distinct messages, each once', async (t) => {
    const { q, table } = await setup('eokill');
    const total = 400;
    for (let i = 0; i < total; i += 100) {
      await deliver.sendBatch(q, Array.from({ length: 100 }, (_, j) => ({ payload: { n: i + j }, idempotencyKey: `m${i + j}` })));
    }
    // the producer retries a batch (say after a timeout): the keys store nothing new
    await deliver.sendBatch(q, Array.from({ length: 50 }, (_, j) => ({ payload: { n: j }, idempotencyKey: `m${j}` })));
    const script = fileURLToPath(new URL('./fixtures/exactly-once-child.js', import.meta.url));
    const start = () => {
      const child = spawn(process.execPath, [script], {
        env: { ...process.env, QUEUE: q, TABLE: table },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const lines = [];
      createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
      return { child, lines };
    };
    let kills = 0;
    for (let round = 0; round < 6; round++) {
      const { child, lines } = start();
      await until(() => lines.includes('ready'), 10000, 'the consumer process');
      const before = (await effects(table)).rows;
      await sleep(150 + Math.floor(Math.random() * 400));
      child.kill('SIGKILL');
      await once(child, 'exit');
      kills++;
      const now = await effects(table);
      t.diagnostic(`kill ${kills}: ${now.rows} of ${total} effects committed`);
      assert.equal(now.rows, now.messages, `no duplicate after kill ${kills}`);
      if (now.rows === total) break;
      assert.ok(now.rows >= before, 'committed effects stay');
    }
    // a last process finishes the queue and is stopped gracefully
    const { child, lines } = start();
    await until(() => lines.includes('ready'), 10000, 'the consumer process');
    await until(async () => (await effects(table)).rows >= total, 60000, 'every message applied');
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, lines.join('\n'));
    const e = await effects(table);
    assert.deepEqual(e, { rows: total, messages: total, payloads: total }, 'each of the distinct messages applied exactly once');
    const [m] = await deliver.metrics(q);
    assert.equal(m.depth, 0);
    assert.equal(m.inFlight, 0);
    assert.deepEqual(await deliver.receive(q, { max: 10 }), [], 'nothing left to deliver');
    assert.ok(kills >= 1);
    await sql.query(`DROP TABLE ${table}`);
    await deliver.dropQueue(q);
  });
});
