// Sending, receiving, acks, leases, dead letters and the transactional
// outbox over SQL; ids are exact bigints.  Priorities over SQL and HTTP.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { DeliverClient, InvalidParameterError, NotCurrentError } from '../dist/index.js';
import { client, httpClient, pool, sleep, uniqueName, until } from './helpers.js';

let deliver;
let http;
let sql;

before(() => {
  deliver = client();
  sql = pool();
  http = httpClient();
});
after(async () => {
  await deliver.close();
  await sql.end();
});

async function queue(prefix, options) {
  const q = uniqueName(prefix);
  await deliver.createQueue(q, options);
  return q;
}

describe('send and receive', () => {
  it('send with headers, ordering key, idempotency key; receive returns them; ids are bigint', async () => {
    const q = await queue('send');
    const id = await deliver.send(q, { order: 1, big: '9007199254740993' }, {
      headers: { trace: 'abc', n: 2 },
      orderingKey: 'user-9',
      idempotencyKey: 'k-1',
    });
    assert.equal(typeof id, 'bigint');
    assert.equal(id, 1n);
    assert.equal(await deliver.send(q, { other: true }, { idempotencyKey: 'k-1' }), id, 'a key seen before returns the first id');
    const [m, ...rest] = await deliver.receive(q, { max: 10 });
    assert.equal(rest.length, 0, 'the repeated key stored nothing');
    assert.equal(m.messageId, id);
    assert.equal(typeof m.deliveryId, 'bigint');
    assert.ok(m.deliveryId > 2n ** 53n, 'delivery ids are beyond 2^53, exact');
    assert.deepEqual(m.payload, { order: 1, big: '9007199254740993' });
    assert.deepEqual(m.headers, { trace: 'abc', n: 2 });
    assert.equal(m.orderingKey, 'user-9');
    assert.equal(m.attempt, 1);
    assert.ok(m.enqueuedAt instanceof Date);
    assert.ok(m.leaseExpiresAt instanceof Date && m.leaseExpiresAt > new Date(Date.now() - 1000));
    assert.equal(await deliver.ack(q, m.deliveryId), true);
    // the same delivery id as a string works too
    await deliver.send(q, 2);
    const [m2] = await deliver.receive(q);
    assert.equal(await deliver.ack(q, m2.deliveryId.toString()), true);
    await deliver.dropQueue(q);
  });

  it('any JSON value is a payload', async () => {
    const q = await queue('payloads');
    const values = [null, 0, 'text', [1, [2]], { a: { b: null } }, true];
    for (const v of values) await deliver.send(q, v);
    const got = await deliver.receive(q, { max: 10 });
    assert.deepEqual(got.map((m) => m.payload), values);
    await deliver.dropQueue(q);
  });

  it('sendBatch with per-message options and a delay; ids in order', async () => {
    const q = await queue('batch');
    const ids = await deliver.sendBatch(q, [
      { payload: { n: 1 }, headers: { h: 1 }, orderingKey: 'a', idempotencyKey: 'b1' },
      { payload: { n: 2 } },
      { payload: [3], idempotencyKey: 'b1' },
    ]);
    assert.deepEqual(ids, [1n, 2n, 1n], 'a key repeated in the batch gets the first one\'s id');
    const got = await deliver.receive(q, { max: 10 });
    assert.deepEqual(got.map((m) => [m.messageId, m.payload, m.headers, m.orderingKey]), [
      [1n, { n: 1 }, { h: 1 }, 'a'],
      [2n, { n: 2 }, null, null],
    ]);
    const delayed = await deliver.sendBatch(q, [{ payload: 'later' }], { delay: 1 });
    assert.deepEqual(await deliver.receive(q), [], 'a delayed message is invisible');
    const [late] = await until(async () => {
      const r = await deliver.receive(q, { wait: 2 });
      return r.length ? r : null;
    }, 10000, 'the delayed message');
    assert.equal(late.messageId, delayed[0]);
    await deliver.dropQueue(q);
  });

  it('send with a delay given as an interval string', async () => {
    const q = await queue('delay');
    await deliver.send(q, 'x', { delay: '1 hour' });
    assert.deepEqual(await deliver.receive(q), []);
    assert.equal((await deliver.metrics(q))[0].delayed, 1);
    await deliver.dropQueue(q);
  });

  it('receive: max, visibilityTimeout, long poll woken by a send, group', async () => {
    const q = await queue('receive');
    await deliver.createConsumerGroup(q, 'g2');
    await deliver.sendBatch(q, [1, 2, 3].map((payload) => ({ payload })));
    const two = await deliver.receive(q, { max: 2, visibilityTimeout: 60 });
    assert.equal(two.length, 2);
    const leased = two[0].leaseExpiresAt.getTime() - Date.now();
    assert.ok(leased > 50000 && leased < 62000, `lease of about 60 s (${leased} ms)`);
    const t0 = Date.now();
    const poll = deliver.receive(q, { max: 10, wait: 10, group: 'g2' });
    assert.equal((await poll).length, 3, 'the other group gets every message');
    const empty = deliver.receive(q, { max: 10, wait: 10, group: 'g2' });
    await sleep(300);
    await deliver.send(q, 'wake');
    const woke = await empty;
    assert.deepEqual(woke.map((m) => m.payload), ['wake']);
    assert.ok(Date.now() - t0 < 8000, 'the long poll woke at the send, not at the end of its wait');
    await deliver.dropQueue(q);
  });

  it('receive with an aborted signal cancels the long poll and leaves nothing leased', async () => {
    const q = await queue('abort');
    const ac = new AbortController();
    const t0 = Date.now();
    const p = deliver.receive(q, { wait: 30, signal: ac.signal });
    await sleep(300);
    ac.abort();
    assert.deepEqual(await p, []);
    assert.ok(Date.now() - t0 < 5000, 'cancelled at once');
    await deliver.send(q, 'after');
    assert.equal((await deliver.receive(q)).length, 1);
    await deliver.dropQueue(q);
  });
});

describe('acks and leases', () => {
  it('ackBatch acks all or nothing', async () => {
    const q = await queue('ackbatch');
    await deliver.sendBatch(q, [1, 2, 3].map((payload) => ({ payload })));
    const got = await deliver.receive(q, { max: 3 });
    const ids = got.map((m) => m.deliveryId);
    assert.equal(await deliver.ackBatch(q, ids.slice(0, 2)), 2);
    await assert.rejects(deliver.ackBatch(q, [ids[2], ids[0]]), NotCurrentError, 'one id not current fails the call');
    assert.equal(await deliver.ackBatch(q, [ids[2]]), 1, 'and acked nothing of it');
    assert.equal(await deliver.ackBatch(q, []), 0);
    await deliver.dropQueue(q);
  });

  it('nack with retryAfter 0 makes it visible at once, attempt counts up; error kept', async () => {
    const q = await queue('nack', { maxAttempts: 2, retryBase: 0 });
    await deliver.send(q, 'x');
    const [a] = await deliver.receive(q);
    assert.equal(await deliver.nack(q, a.deliveryId, { error: 'boom', retryAfter: 0 }), true);
    const [b] = await deliver.receive(q);
    assert.equal(b.attempt, 2);
    assert.equal(b.messageId, a.messageId);
    await assert.rejects(deliver.ack(q, a.deliveryId), NotCurrentError, 'the old delivery id is fenced');
    await deliver.nack(q, b.deliveryId, { error: 'boom again' });
    assert.deepEqual(await deliver.receive(q), [], 'the last attempt moves it to the dead letters');
    const dead = await deliver.deadLetters(q);
    assert.equal(dead.length, 1);
    assert.equal(dead[0].messageId, a.messageId);
    assert.equal(dead[0].reason, 'nacked');
    assert.equal(dead[0].lastError, 'boom again');
    assert.equal(dead[0].attempts, 2);
    assert.equal(dead[0].group, 'default');
    assert.ok(dead[0].deadAt instanceof Date);
    await deliver.dropQueue(q);
  });

  it('nack without retryAfter waits for the backoff', async () => {
    const q = await queue('backoff', { retryBase: 60 });
    await deliver.send(q, 'x');
    const [a] = await deliver.receive(q);
    await deliver.nack(q, a.deliveryId);
    assert.deepEqual(await deliver.receive(q), []);
    await deliver.dropQueue(q);
  });

  it('extendLease moves the expiry; after the lease ran out it is refused', async () => {
    const q = await queue('extend', { retryBase: 0 });
    await deliver.send(q, 'x');
    const [a] = await deliver.receive(q, { visibilityTimeout: 0.5 });
    const until2 = await deliver.extendLease(q, a.deliveryId, 120);
    assert.ok(until2.getTime() - Date.now() > 100000);
    await deliver.extendLease(q, a.deliveryId, '300 milliseconds');
    await sleep(700);
    await assert.rejects(deliver.extendLease(q, a.deliveryId, 10), NotCurrentError);
    const [b] = await deliver.receive(q);
    assert.equal(b.attempt, 2, 'the expired lease let it go again');
    await deliver.dropQueue(q);
  });

  it('deadLetters by group and max; redrive all or by id', async () => {
    const q = await queue('dead', { maxAttempts: 1, retryBase: 0 });
    await deliver.createConsumerGroup(q, 'g2');
    const ids = await deliver.sendBatch(q, [{ payload: 1 }, { payload: 2 }, { payload: 3 }]);
    for (const group of ['default', 'g2']) {
      const got = await deliver.receive(q, { max: 3, group });
      for (const m of got) await deliver.nack(q, m.deliveryId, { error: `e${m.payload}` });
      assert.deepEqual(await deliver.receive(q, { max: 3, group }), []);
    }
    assert.equal((await deliver.deadLetters(q)).length, 6);
    assert.equal((await deliver.deadLetters(q, { group: 'g2' })).length, 3);
    assert.equal((await deliver.deadLetters(q, { max: 2 })).length, 2);
    assert.equal(await deliver.redrive(q, { messageIds: [ids[0]], group: 'g2' }), 1);
    const back = await deliver.receive(q, { max: 10, group: 'g2' });
    assert.deepEqual(back.map((m) => m.payload), [1]);
    assert.notEqual(back[0].messageId, ids[0], 'a redriven message is a new message');
    assert.equal(await deliver.redrive(q), 5);
    assert.equal((await deliver.receive(q, { max: 10 })).length, 3);
    await deliver.dropQueue(q);
  });

  it('peek: the next messages, redeliveries first, nothing leased; deleteDeadLetters', async () => {
    const q = await queue('peek', { maxAttempts: 2, retryBase: 0 });
    const ids = await deliver.sendBatch(q, [{ payload: 1, orderingKey: 'k' }, { payload: 2, headers: { h: 'x' } }, { payload: 3 }]);
    const [first] = await deliver.receive(q);
    await deliver.nack(q, first.deliveryId, { error: 'again', retryAfter: 0 });
    const peeked = await deliver.peek(q, { max: 10 });
    assert.deepEqual(peeked.map((m) => [m.messageId, m.payload, m.attempt, m.redelivery, m.orderingKey, m.headers]), [
      [ids[0], 1, 2, true, 'k', null],
      [ids[1], 2, 1, false, null, { h: 'x' }],
      [ids[2], 3, 1, false, null, null],
    ]);
    assert.ok(peeked[0].enqueuedAt instanceof Date);
    assert.equal((await deliver.peek(q, { max: 1 })).length, 1);
    const [m] = await deliver.metrics(q);
    assert.equal(m.inFlight, 0, 'peek leased nothing');
    const got = await deliver.receive(q, { max: 10 });
    assert.deepEqual(got.map((r) => [r.messageId, r.attempt]), peeked.map((p) => [p.messageId, p.attempt]),
      'a receive hands out what peek showed');
    await assert.rejects(deliver.peek(q, { group: 'nobody' }), (e) => e.sqlstate === '42704');
    // the three die; two are deleted for good
    for (const r of got) await deliver.nack(q, r.deliveryId, { error: 'no', retryAfter: 0 });
    for (let round = 0; round < 2; round++) {
      for (const r of await deliver.receive(q, { max: 10 })) await deliver.nack(q, r.deliveryId, { error: 'no', retryAfter: 0 });
    }
    assert.equal((await deliver.deadLetters(q)).length, 3);
    assert.equal(await deliver.deleteDeadLetters(q, [ids[0], ids[1]], { group: 'default' }), 2);
    assert.deepEqual((await deliver.deadLetters(q)).map((d) => d.messageId), [ids[2]]);
    assert.equal(await deliver.deleteDeadLetters(q, [ids[0]]), 0);
    await deliver.dropQueue(q);
  });

  it('at-most-once: no delivery id, never handed out twice', async () => {
    const q = await queue('amo', { guarantee: 'at_most_once' });
    await deliver.sendBatch(q, [{ payload: 1 }, { payload: 2 }]);
    const got = await deliver.receive(q, { max: 10 });
    assert.deepEqual(got.map((m) => [m.payload, m.deliveryId, m.leaseExpiresAt]), [[1, null, null], [2, null, null]]);
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    await deliver.dropQueue(q);
  });

  it('ids given as unsafe numbers are refused, never rounded', async () => {
    const q = await queue('ids');
    await assert.rejects(deliver.ack(q, 2 ** 60), (e) => e.name === 'InvalidParameterError' && e.sqlstate === '22003');
    await assert.rejects(deliver.ack(q, '12abc'), (e) => e.name === 'InvalidParameterError' && e.sqlstate === '22P02');
    await deliver.dropQueue(q);
  });
});

describe('transactional outbox', () => {
  it('transaction(): the message exists if and only if the transaction commits', async () => {
    const q = await queue('outbox');
    await sql.query('CREATE TABLE IF NOT EXISTS outbox_accounts (id int PRIMARY KEY, balance int)');
    await sql.query('INSERT INTO outbox_accounts VALUES (7, 100) ON CONFLICT (id) DO UPDATE SET balance = 100');
    await deliver.transaction(async (tx, c) => {
      await c.query('UPDATE outbox_accounts SET balance = balance - 10 WHERE id = 7');
      await tx.send(q, { account: 7, debit: 10 });
      assert.deepEqual(await deliver.receive(q), [], 'not visible before the commit');
    });
    await assert.rejects(deliver.transaction(async (tx, c) => {
      await c.query('UPDATE outbox_accounts SET balance = balance - 10 WHERE id = 7');
      await tx.send(q, { account: 7, debit: 10, rolled: 'back' });
      throw new Error('application failure');
    }), /application failure/);
    const got = await deliver.receive(q, { max: 10 });
    assert.deepEqual(got.map((m) => m.payload), [{ account: 7, debit: 10 }]);
    assert.equal((await sql.query('SELECT balance FROM outbox_accounts WHERE id = 7')).rows[0].balance, 90);
    await deliver.dropQueue(q);
  });

  it('forClient(): send and sendBatch in the application\'s own pg transaction', async () => {
    const q = await queue('outbox2');
    const own = new pg.Client({ database: process.env.PGDATABASE || 'client_typescript' });
    await own.connect();
    const tx = new DeliverClient(own);
    await own.query('BEGIN');
    await tx.send(q, 'one');
    await tx.sendBatch(q, [{ payload: 'two' }, { payload: 'three' }]);
    await own.query('ROLLBACK');
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    await own.query('BEGIN');
    await deliver.forClient(own).send(q, 'kept');
    await own.query('COMMIT');
    assert.deepEqual((await deliver.receive(q, { max: 10 })).map((m) => m.payload), ['kept']);
    await own.end();
    await deliver.dropQueue(q);
  });

  it('ids stay bigint whatever int8 parser the application set globally', async () => {
    const q = await queue('parsers');
    const old = pg.types.getTypeParser(20);
    pg.types.setTypeParser(20, (v) => parseInt(v, 10)); // a lossy parser an application might set
    try {
      await deliver.send(q, 1);
      const [m] = await deliver.receive(q);
      assert.equal(typeof m.deliveryId, 'bigint');
      assert.equal(await deliver.ack(q, m.deliveryId), true, 'the exact id acks');
    } finally {
      pg.types.setTypeParser(20, old);
    }
    await deliver.dropQueue(q);
  });
});

describe('nack to the dead letters, redrive to another queue, deleteMessage', () => {
  it('nack with deadLetter, redrive with toQueue, deleteMessage', async () => {
    const q = await queue('insp', { maxAttempts: 5 });
    const to = await queue('insp_to');
    const [id] = await deliver.sendBatch(q, [{ payload: 1, orderingKey: 'k', headers: { h: 1 } }, { payload: 2 }]);
    const [m] = await deliver.receive(q);
    assert.equal(await deliver.nack(q, m.deliveryId, { error: 'bad', deadLetter: true }), true);
    const dead = await deliver.deadLetters(q);
    assert.deepEqual(dead.map((d) => [d.messageId, d.reason, d.lastError, d.attempts]), [[id, 'rejected', 'bad', 1]]);
    await assert.rejects(deliver.nack(q, m.deliveryId, { deadLetter: true }), NotCurrentError);
    assert.equal(await deliver.redrive(q, { toQueue: to }), 1);
    assert.deepEqual(await deliver.deadLetters(q), []);
    const [moved] = await deliver.receive(to);
    assert.deepEqual([moved.payload, moved.orderingKey, moved.headers, moved.attempt], [1, 'k', { h: 1 }, 1]);
    await assert.rejects(deliver.redrive(q, { toQueue: q }), (e) => e.sqlstate === '22023');
    // the second message: deleted before any receive reached it
    const [, second] = [id, id + 1n];
    assert.equal(await deliver.deleteMessage(q, second), true);
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    assert.equal(await deliver.deleteMessage(q, second), false);
    assert.equal(await deliver.deleteMessage(q, 999999n), false);
    await deliver.dropQueue(q);
    await deliver.dropQueue(to);
  });
});

describe('resetConsumerGroup', () => {
  it('earliest, latest, a message id, a time', async () => {
    const q = await queue('seek');
    const ids = [];
    for (const n of [1, 2, 3]) ids.push(await deliver.send(q, n));
    for (const m of await deliver.receive(q, { max: 10 })) await deliver.ack(q, m.deliveryId);
    await deliver.resetConsumerGroup(q, 'default', 'earliest');
    const again = await deliver.receive(q, { max: 10 });
    assert.deepEqual(again.map((m) => m.messageId), ids);
    await deliver.resetConsumerGroup(q, 'default', 'latest');
    await assert.rejects(deliver.ack(q, again[0].deliveryId), NotCurrentError);
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    await deliver.resetConsumerGroup(q, 'default', ids[1]);
    assert.deepEqual((await deliver.receive(q, { max: 10 })).map((m) => m.messageId), ids.slice(1));
    await deliver.resetConsumerGroup(q, 'default', new Date(Date.now() + 3600 * 1000));
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    await assert.rejects(deliver.resetConsumerGroup(q, 'default', 0n), (e) => e.sqlstate === '22023');
    await deliver.dropQueue(q);
  });
});

// the priorities a queue stored, in id order (0 for none), delayed messages too
async function storedPriorities(q) {
  const { rows: [info] } = await sql.query('SELECT queue_id, segments FROM deliver.queue WHERE queue_name = $1', [q]);
  const parts = [...Array(info.segments).keys()].map((s) => `SELECT message_id, priority FROM deliver.q${info.queue_id}_s${s}`);
  parts.push(`SELECT message_id, priority FROM deliver.q${info.queue_id}_delayed`);
  const { rows } = await sql.query(`SELECT coalesce(priority, 0)::int AS p FROM (${parts.join(' UNION ALL ')}) m ORDER BY message_id`);
  return rows.map((r) => r.p);
}

for (const [name, make] of [['DeliverClient (SQL)', () => deliver], ['HttpClient', () => http]]) {
  describe(`priorities over ${name}`, () => {
    it('send, sendBatch and publish pass a priority to a queue with priorities; priorities on and off', async () => {
      const c = make();
      const q = uniqueName('prio');
      const key = uniqueName('prio');
      await c.createQueue(q, { priorities: true });
      await c.send(q, { n: 1 }, { priority: 7 });
      await c.sendBatch(q, [{ payload: { n: 2 } }, { payload: { n: 3 } }], { priority: 3 });
      await c.send(q, { n: 4 }, { priority: null });
      await c.send(q, { n: 5 }, { priority: 0, delay: 3600 });
      await c.send(q, { n: 6 }, { priority: 9, delay: 3600 });
      await c.bind(`${key}.#`, q);
      assert.equal((await c.publish(`${key}.x`, { n: 7 }, { priority: 5 })).length, 1);
      assert.deepEqual(await storedPriorities(q), [7, 3, 3, 0, 0, 9, 5]);
      await c.alterQueue(q, { priorities: false });
      await assert.rejects(c.send(q, 1, { priority: 1 }), NotCurrentError, 'priorities off: refused');
      await c.alterQueue(q, { maxAttempts: 4 });
      await assert.rejects(c.send(q, 1, { priority: 1 }), NotCurrentError, 'left out: still off');
      assert.equal((await c.getQueue(q)).priorities, false);
      await c.alterQueue(q, { priorities: true });
      assert.equal((await c.getQueue(q)).priorities, true);
      await c.send(q, { n: 8 }, { priority: 1 });
      assert.deepEqual((await storedPriorities(q)).slice(-1), [1]);
      // receives hand out the highest priority first (the delayed ones are not due)
      const got = await c.receive(q, { max: 10 });
      assert.deepEqual(got.map((m) => m.payload.n), [1, 7, 2, 3, 8, 4]);
      await c.unbind(`${key}.#`, q);
      await c.dropQueue(q);
    });

    it('refuses priority 10 (InvalidParameterError, 22023) and a priority to a queue without priorities (NotCurrentError, 55000)', async () => {
      const c = make();
      const q = uniqueName('prio');
      const plain = uniqueName('noprio');
      const key = uniqueName('prio');
      await c.createQueue(q, { priorities: true });
      await c.createQueue(plain);
      for (const bad of [10, -1]) {
        await assert.rejects(c.send(q, 1, { priority: bad }), (e) => e instanceof InvalidParameterError && e.sqlstate === '22023');
        await assert.rejects(c.sendBatch(q, [{ payload: 1 }], { priority: bad }),
          (e) => e instanceof InvalidParameterError && e.sqlstate === '22023');
      }
      await assert.rejects(c.send(plain, 1, { priority: 1 }), (e) => e instanceof NotCurrentError && e.sqlstate === '55000');
      await assert.rejects(c.sendBatch(plain, [{ payload: 1 }], { priority: 9 }),
        (e) => e instanceof NotCurrentError && e.sqlstate === '55000');
      await c.bind(`${key}.#`, q);
      await c.bind(`${key}.#`, plain);
      await assert.rejects(c.publish(`${key}.x`, 1, { priority: 10 }), InvalidParameterError);
      await assert.rejects(c.publish(`${key}.x`, 1, { priority: 2 }), NotCurrentError, 'one queue without priorities: nothing sent');
      assert.deepEqual(await storedPriorities(q), []);
      assert.equal((await c.publish(`${key}.x`, 1, { priority: 0 })).length, 2);
      await c.send(plain, 1, { priority: 0 });
      assert.deepEqual(await storedPriorities(plain), [0, 0]);
      const amo = uniqueName('prio_amo');
      await assert.rejects(c.createQueue(amo, { guarantee: 'at_most_once', priorities: true }), (e) => e.sqlstate === '0A000');
      await c.unbind(`${key}.#`, q);
      await c.unbind(`${key}.#`, plain);
      await c.dropQueue(q);
      await c.dropQueue(plain);
    });
  });
}
