// The HTTP client against a real deliverd (started by test.sh:
// DELIVER_HTTP_URL, DELIVER_JWT_SECRET): every method, ids as exact
// bigints, errors typed as over SQL, a Consumer over HTTP, and the module's
// imports (nothing Node-only).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  AlreadyExistsError,
  AuthenticationError,
  Consumer,
  DeliverError,
  HttpClient,
  InvalidNameError,
  InvalidParameterError,
  LimitExceededError,
  NotCurrentError,
  PermissionDeniedError,
  QueueNotFoundError,
  UnavailableError,
} from '../dist/http.js';
import { appRole, client, httpUrl, jwt, putInArchive, sleep, uniqueName, until } from './helpers.js';

const url = httpUrl;
const role = appRole;

const token = jwt({ role: process.env.PGUSER || 'postgres', exp: Math.floor(Date.now() / 1000) + 3600 });
let http;
let deliver;

before(() => {
  http = new HttpClient({ url, token });
  deliver = client();
});
after(async () => {
  await deliver.close();
});

async function queue(prefix, options) {
  const q = uniqueName(prefix);
  await http.createQueue(q, options);
  return q;
}

describe('HttpClient', () => {
  it('health and ready', async () => {
    assert.equal(await http.health(), true);
    assert.equal(await http.ready(), true);
    assert.equal(await new HttpClient({ url: 'http://127.0.0.1:1' }).health(), false);
  });

  it('createQueue with options, getQueue, listQueues (intervals as seconds), dropQueue', async () => {
    const q = await queue('hq', {
      guarantee: 'exactly_once', visibilityTimeout: 90, maxAttempts: 4, fifo: true,
      dedupWindow: '1 day', retryBase: 0.5, retryMax: '2 minutes', messageTtl: '1 hour', onExpire: 'dead_letter',
      maxDepth: 5, overflow: 'reject',
    });
    const info = await http.getQueue(q);
    assert.deepEqual({ ...info, createdAt: null }, {
      name: q, guarantee: 'exactly_once', visibilityTimeout: 90, maxAttempts: 4, fifo: true,
      dedupWindow: 86400, retryBase: 0.5, retryMax: 120, archiveRetention: null,
      consumerGroups: ['default'], createdAt: null, messageTtl: 3600, onExpire: 'dead_letter', maxDepth: 5,
      overflow: 'reject', ackCommit: 'durable', priorities: false,
    });
    assert.ok(info.createdAt instanceof Date);
    assert.deepEqual(await deliver.getQueue(q), info, 'the same as over SQL');
    assert.ok((await http.listQueues()).some((x) => x.name === q));
    assert.equal(await http.dropQueue(q), true);
    assert.equal(await http.getQueue(q), null);
  });

  it('consumer groups: create, list, drop', async () => {
    const q = await queue('hg');
    await http.send(q, 'old');
    await http.createConsumerGroup(q, 'late');
    await http.createConsumerGroup(q, 'all', { startFrom: 'earliest' });
    assert.deepEqual((await http.listConsumerGroups(q)).map((g) => g.name), ['default', 'late', 'all']);
    assert.deepEqual((await http.receive(q, { group: 'all', max: 5 })).map((m) => m.payload), ['old']);
    assert.deepEqual(await http.receive(q, { group: 'late', max: 5 }), []);
    assert.equal(await http.dropConsumerGroup(q, 'late'), true);
    assert.deepEqual((await http.listConsumerGroups(q)).map((g) => g.name), ['default', 'all']);
    await http.dropQueue(q);
  });

  it('flow control: pause, resume, rate limit', async () => {
    const q = await queue('hf');
    await http.sendBatch(q, [1, 2, 3, 4].map((n) => ({ payload: n })));
    assert.equal(await http.pauseConsumerGroup(q), true);
    assert.equal(await http.pauseConsumerGroup(q, 'default'), false);
    assert.deepEqual(await http.receive(q, { max: 10 }), []);
    assert.equal((await http.listConsumerGroups(q))[0].paused, true);
    assert.deepEqual(await http.listConsumerGroups(q), await deliver.listConsumerGroups(q), 'the same as over SQL');
    assert.equal(await http.resumeConsumerGroup(q), true);
    assert.equal(await http.resumeConsumerGroup(q), false);
    await http.setConsumerGroupRate(q, 'default', 0.001, 3);
    const [g] = await http.listConsumerGroups(q);
    assert.deepEqual([g.paused, g.ratePerSecond, g.rateBurst], [false, 0.001, 3]);
    assert.deepEqual((await http.receive(q, { max: 10 })).map((m) => m.payload), [1, 2, 3]);
    assert.deepEqual(await http.receive(q, { max: 10 }), []);
    await http.setConsumerGroupRate(q, 'default', null);
    assert.deepEqual((await http.receive(q, { max: 10 })).map((m) => m.payload), [4]);
    await assert.rejects(http.setConsumerGroupRate(q, 'default', -1), InvalidParameterError);
    await assert.rejects(http.resumeConsumerGroup(q, 'nosuch'), QueueNotFoundError);
    await http.dropQueue(q);
  });

  it('setFifoKeyLimit: up to N messages of a key at once', async () => {
    const q = await queue('hfk', { fifo: true });
    await http.sendBatch(q, [1, 2, 3].map((n) => ({ payload: n, orderingKey: 'k' })));
    await http.setFifoKeyLimit(q, 2);
    assert.deepEqual((await http.receive(q, { max: 10 })).map((m) => m.payload), [1, 2]);
    await assert.rejects(http.setFifoKeyLimit(q, 0), InvalidParameterError);
    await http.dropQueue(q);
  });

  it('send (headers, ordering key, idempotency key, delay), receive, ack: ids exact bigints', async () => {
    const q = await queue('hs');
    const id = await http.send(q, { order: 1 }, { headers: { trace: 't' }, orderingKey: 'k', idempotencyKey: 'i-1' });
    assert.equal(id, 1n);
    assert.equal(await http.send(q, { order: 'again' }, { idempotencyKey: 'i-1' }), id);
    await http.send(q, 'later', { delay: 3600 });
    const [m, ...rest] = await http.receive(q, { max: 10, visibilityTimeout: 60, wait: 1 });
    assert.equal(rest.length, 0);
    assert.equal(m.messageId, 1n);
    assert.equal(typeof m.deliveryId, 'bigint');
    assert.ok(m.deliveryId > 2n ** 53n, 'delivery ids beyond 2^53 arrive exact');
    assert.deepEqual(m.payload, { order: 1 });
    assert.deepEqual(m.headers, { trace: 't' });
    assert.equal(m.orderingKey, 'k');
    assert.equal(m.attempt, 1);
    assert.ok(m.enqueuedAt instanceof Date);
    assert.ok(m.leaseExpiresAt.getTime() - Date.now() > 50000);
    assert.equal(await http.ack(q, m.deliveryId), true);
    // an id received over HTTP acks over SQL and the other way round
    await deliver.send(q, 'sql');
    const [s] = await http.receive(q);
    assert.equal(s.payload, 'sql');
    await assert.rejects(deliver.ack(q, s.deliveryId + 1n), NotCurrentError);
    assert.equal(await deliver.ack(q, s.deliveryId), true);
    const [metrics] = await http.metrics(q);
    assert.equal(metrics.delayed, 1);
    await http.dropQueue(q);
  });

  it('sendBatch, ackBatch, nack, extendLease', async () => {
    const q = await queue('hb', { retryBase: 0 });
    const ids = await http.sendBatch(q, [
      { payload: 1, orderingKey: 'a', headers: { x: 1 } },
      { payload: 2, idempotencyKey: 'b2' },
      { payload: 3 },
    ]);
    assert.deepEqual(ids, [1n, 2n, 3n]);
    const got = await http.receive(q, { max: 3 });
    assert.deepEqual(got.map((m) => [m.payload, m.orderingKey, m.headers]), [[1, 'a', { x: 1 }], [2, null, null], [3, null, null]]);
    assert.equal(await http.ackBatch(q, got.slice(0, 2).map((m) => m.deliveryId)), 2);
    const last = got[2];
    const exp = await http.extendLease(q, last.deliveryId, 120);
    assert.ok(exp.getTime() - Date.now() > 100000);
    assert.equal(await http.nack(q, last.deliveryId, { error: 'later', retryAfter: 0 }), true);
    const [again] = await http.receive(q);
    assert.equal(again.payload, 3);
    assert.equal(again.attempt, 2);
    await http.ack(q, again.deliveryId);
    const delayed = await http.sendBatch(q, [{ payload: 'd' }], { delay: 3600 });
    assert.equal(delayed.length, 1);
    assert.equal((await http.metrics(q))[0].delayed, 1);
    await http.dropQueue(q);
  });

  it('receive long-polls until a send', async () => {
    const q = await queue('hl');
    const t0 = Date.now();
    const p = http.receive(q, { wait: 8 });
    await sleep(300);
    await http.send(q, 'wake');
    const got = await p;
    assert.deepEqual(got.map((m) => m.payload), ['wake']);
    assert.ok(Date.now() - t0 < 6000);
    await http.dropQueue(q);
  });

  it('stream: each message once, acked by the gateway; resume with lastEventId; errors; the end at the token\'s expiry', async () => {
    const q = await queue('hs');
    const ids = await http.sendBatch(q, [{ payload: { n: 0 }, orderingKey: 'a' }, { payload: { n: 1 } }, { payload: { n: 2 } }]);
    const got = [];
    for await (const m of http.stream(q, { max: 10 })) {
      got.push(m);
      if (got.length === 3) break;
    }
    assert.deepEqual(got.map((m) => m.messageId), ids);
    assert.deepEqual(got.map((m) => [m.payload.n, m.orderingKey, m.attempt]), [[0, 'a', 1], [1, null, 1], [2, null, 1]]);
    assert.ok(got.every((m) => typeof m.deliveryId === 'bigint' && m.enqueuedAt instanceof Date));
    await until(async () => {
      const [m] = await http.metrics(q);
      return m.depth === 0 && m.inFlight === 0 && m.ackedTotal === 3;
    }, 10000, 'the streamed messages acked by the gateway');

    // a message seen whose ack was lost comes back: resumed after it, the gateway acks it without sending it
    // (another queue: the gateway may still serve the stream left above until its next keep-alive finds it gone)
    const q2 = await queue('hs');
    const m1 = await http.send(q2, 'seen');
    assert.deepEqual((await http.receive(q2, { visibilityTimeout: 0.3 })).map((m) => m.messageId), [m1]);
    await sleep(800);
    const m2 = await http.send(q2, 'new');
    for await (const m of http.stream(q2, { lastEventId: m1 })) {
      assert.deepEqual([m.messageId, m.payload], [m2, 'new']);
      break;
    }
    await until(async () => (await http.metrics(q2))[0].ackedTotal === 2, 10000, 'both acked');

    await assert.rejects(async () => {
      for await (const m of http.stream(uniqueName('none'))) assert.fail(`got ${m.messageId}`);
    }, (e) => e instanceof QueueNotFoundError && e.sqlstate === '42704' && e.status === 404);

    // signal: the stream ends when aborted (an empty queue)
    const q3 = await queue('hs');
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 500);
    const seen = [];
    for await (const m of http.stream(q3, { signal: ac.signal })) seen.push(m);
    assert.deepEqual(seen, []);

    // a token that expires ends the stream: the generator returns
    const short = new HttpClient({ url, token: jwt({ role: process.env.PGUSER || 'postgres', exp: Math.floor(Date.now() / 1000) + 2 }) });
    const t0 = Date.now();
    for await (const m of short.stream(q3)) assert.fail(`got ${m.messageId}`);
    assert.ok(Date.now() - t0 < 10000);
    for (const x of [q, q2, q3]) await http.dropQueue(x);
  });

  it('deadLetters and redrive', async () => {
    const q = await queue('hd', { maxAttempts: 1, retryBase: 0 });
    const [id] = await http.sendBatch(q, [{ payload: 'x' }, { payload: 'y' }]);
    for (const m of await http.receive(q, { max: 2 })) await http.nack(q, m.deliveryId, { error: `no ${m.payload}` });
    assert.deepEqual(await http.receive(q), []);
    const dead = await http.deadLetters(q, { group: 'default', max: 10 });
    assert.deepEqual(dead.map((d) => [d.messageId, d.payload, d.reason, d.lastError, d.attempts]), [
      [1n, 'x', 'nacked', 'no x', 1],
      [2n, 'y', 'nacked', 'no y', 1],
    ]);
    assert.equal((await http.deadLetters(q, { max: 1 })).length, 1);
    assert.equal(await http.redrive(q, { messageIds: [id], group: 'default' }), 1);
    assert.deepEqual((await http.receive(q, { max: 5 })).map((m) => m.payload), ['x']);
    assert.equal(await http.redrive(q), 1);
    // peek shows what a receive would get, leasing nothing; a dead letter deleted for good
    const peeked = await http.peek(q, { group: 'default', max: 5 });
    assert.deepEqual(peeked.map((m) => [m.payload, m.attempt, m.redelivery]), [['y', 1, false]]);
    assert.equal(typeof peeked[0].messageId, 'bigint');
    await http.nack(q, (await http.receive(q))[0].deliveryId, { error: 'gone' });
    assert.deepEqual(await http.receive(q), []);
    const [gone] = await http.deadLetters(q);
    assert.equal(await http.deleteDeadLetters(q, [gone.messageId], { group: 'default' }), 1);
    assert.deepEqual(await http.deadLetters(q), []);
    await http.send(q, 'y');
    const [metrics] = await http.metrics(q);
    assert.equal(metrics.group, 'default');
    assert.equal(metrics.depth, 1);
    assert.equal(metrics.inFlight, 1);
    assert.equal(typeof metrics.oldestAge, 'number');
    await http.dropQueue(q);
  });

  it('errors: the same typed errors and SQLSTATEs as over SQL, with the HTTP status', async () => {
    const q = await queue('he');
    const expect = async (promise, cls, sqlstate, status) => {
      await assert.rejects(promise, (e) => {
        assert.equal(e.constructor, cls, `${e.name} ${e.status} ${e.sqlstate}: ${e.message}`);
        assert.ok(e instanceof DeliverError);
        assert.equal(e.sqlstate, sqlstate);
        assert.equal(e.status, status);
        return true;
      });
    };
    await expect(http.send(uniqueName('missing'), 1), QueueNotFoundError, '42704', 404);
    await expect(http.receive(q, { group: 'nogroup' }), QueueNotFoundError, '42704', 404);
    await http.send(q, 1);
    const [m] = await http.receive(q);
    await http.ack(q, m.deliveryId);
    await expect(http.ack(q, m.deliveryId), NotCurrentError, '55000', 409);
    await assert.rejects(deliver.ack(q, m.deliveryId), (e) => e.constructor === NotCurrentError && e.sqlstate === '55000',
      'the same failure over SQL');
    await expect(http.extendLease(q, m.deliveryId, 10), NotCurrentError, '55000', 409);
    await expect(http.receive(q, { max: 0 }), InvalidParameterError, '22023', 422);
    await expect(http.createQueue(uniqueName('x'), { guarantee: 'twice' }), InvalidParameterError, '22023', 422);
    await expect(http.createQueue('bad name!'), InvalidNameError, '42602', 400);
    await expect(http.createQueue(q), AlreadyExistsError, '42710', 409);
    await expect(http.send(q, 1, { orderingKey: 'k'.repeat(600) }), LimitExceededError, '54000', 413);
    await assert.rejects(http.receive(q, { wait: '2 minutes' }), InvalidParameterError, 'intervals of receive are seconds over HTTP');

    const asRole = new HttpClient({ url, token: jwt({ role }) });
    await expect(asRole.send(q, 1), PermissionDeniedError, '42501', 403);
    await deliver.grantQueue(q, role, 'send');
    assert.equal(typeof (await asRole.send(q, 'granted')), 'bigint');
    await expect(asRole.receive(q), PermissionDeniedError, '42501', 403);

    await assert.rejects(new HttpClient({ url }).listQueues(), (e) => e instanceof AuthenticationError && e.status === 401);
    await assert.rejects(new HttpClient({ url, token: jwt({ role, exp: 1 }) }).listQueues(), AuthenticationError);
    await assert.rejects(new HttpClient({ url: 'http://127.0.0.1:1', token }).listQueues(),
      (e) => e instanceof UnavailableError && e.sqlstate === '08006');
    await http.dropQueue(q);
  });

  it('a token function is called per request', async () => {
    let calls = 0;
    const c = new HttpClient({ url, token: async () => { calls++; return token; } });
    await c.listQueues();
    await c.listQueues();
    assert.equal(calls, 2);
  });

  it('Consumer over HTTP: acks, nacks a throwing handler, extends leases, stops', async () => {
    const q = await queue('hc', { retryBase: 0 });
    await http.sendBatch(q, Array.from({ length: 6 }, (_, i) => ({ payload: i })));
    const done = new Set();
    let failed = false;
    let slowCalls = 0;
    const consumer = new Consumer(http, q, async (m) => {
      if (m.payload === 3 && !failed) {
        failed = true;
        throw new Error('first try fails');
      }
      if (m.payload === 5) {
        slowCalls++;
        await sleep(2500); // longer than the 1 s lease: kept by extensions
      }
      done.add(m.payload);
    }, { concurrency: 3, visibilityTimeout: 1, wait: 1, handleSignals: false });
    consumer.start();
    await until(() => done.size === 6, 20000, 'every message');
    await consumer.stop();
    assert.equal(consumer.stats.acked, 6);
    assert.equal(consumer.stats.nacked, 1);
    assert.equal(slowCalls, 1, 'the slow handler\'s message was not redelivered');
    assert.equal(consumer.stats.errors, 0);
    const [metrics] = await http.metrics(q);
    assert.equal(metrics.depth + metrics.inFlight, 0);
    await http.dropQueue(q);
  });
});

describe('the http entry point', () => {
  it('imports nothing Node-only (no node: modules, no pg)', () => {
    const seen = new Set();
    const visit = (file) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const [, spec] of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]/g)) {
        assert.ok(spec.startsWith('./'), `${file} imports ${spec}`);
        visit(fileURLToPath(new URL(spec, `file://${file}`)));
      }
      assert.doesNotMatch(text, /\brequire\(|from ['"]node:|import\(['"]node:/, file);
    };
    visit(fileURLToPath(new URL('../dist/http.js', import.meta.url)));
    assert.ok(seen.size >= 4, [...seen].join(', '));
  });
});

describe('HttpClient: nack to the dead letters, redrive to another queue, deleteMessage', () => {
  it('nack with deadLetter, redrive with toQueue, deleteMessage', async () => {
    const q = await queue('hinsp', { maxAttempts: 5 });
    const to = await queue('hinsp_to');
    const [id, second] = await http.sendBatch(q, [{ payload: 'x', orderingKey: 'k' }, { payload: 'y' }]);
    const [m] = await http.receive(q);
    assert.equal(await http.nack(q, m.deliveryId, { error: 'bad', deadLetter: true }), true);
    const dead = await http.deadLetters(q);
    assert.deepEqual(dead.map((d) => [d.messageId, d.reason, d.lastError]), [[id, 'rejected', 'bad']]);
    assert.equal(await http.redrive(q, { toQueue: to }), 1);
    const [moved] = await http.receive(to);
    assert.deepEqual([moved.payload, moved.orderingKey], ['x', 'k']);
    await assert.rejects(http.redrive(q, { toQueue: 'hinsp_nowhere' }), QueueNotFoundError);
    assert.equal(await http.deleteMessage(q, second), true);
    assert.deepEqual(await http.receive(q, { max: 10 }), []);
    assert.equal(await http.deleteMessage(q, second), false);
    await http.dropQueue(q);
    await http.dropQueue(to);
  });
});

describe('HttpClient: resetConsumerGroup', () => {
  it('earliest, a message id, latest', async () => {
    const q = await queue('hseek');
    const ids = [];
    for (const n of [1, 2, 3]) ids.push(await http.send(q, n));
    for (const m of await http.receive(q, { max: 10 })) await http.ack(q, m.deliveryId);
    await http.resetConsumerGroup(q, 'default', 'earliest');
    assert.deepEqual((await http.receive(q, { max: 10 })).map((m) => m.messageId), ids);
    await http.resetConsumerGroup(q, 'default', ids[2]);
    assert.deepEqual((await http.receive(q, { max: 10 })).map((m) => m.messageId), ids.slice(2));
    await http.resetConsumerGroup(q, 'default', 'latest');
    assert.deepEqual(await http.receive(q, { max: 10 }), []);
    await assert.rejects(http.resetConsumerGroup(q, 'nobody', 'latest'), QueueNotFoundError);
    await http.dropQueue(q);
  });
});

describe('HttpClient: replayArchive', () => {
  it('a page at a time, ids as bigints; errors typed', async () => {
    const q = await queue('hreplay');
    await http.alterQueue(q, { archiveRetention: 86400 });
    await http.createConsumerGroup(q, 'audit');
    await putInArchive(deliver, q);
    const first = await http.replayArchive(q, 'audit', { maxMessages: 1 });
    assert.deepEqual(first, { replayed: 1, lastId: 7n });
    const second = await http.replayArchive(q, 'audit', { afterId: first.lastId, since: new Date(Date.now() - 7200 * 1000) });
    assert.deepEqual(second, { replayed: 1, lastId: 8n });
    assert.deepEqual(await http.replayArchive(q, 'audit', { afterId: 8 }), { replayed: 0, lastId: null });
    const got = await http.receive(q, { group: 'audit', max: 10 });
    assert.deepEqual(got.map((m) => m.payload), [{ n: 7 }, { n: 8 }]);
    assert.equal(got[0].orderingKey, 'k');
    assert.deepEqual(await http.receive(q, { max: 10 }), []);
    await assert.rejects(http.replayArchive(q, 'audit', { maxMessages: 0 }), InvalidParameterError);
    await assert.rejects(http.replayArchive(q, 'nobody'), QueueNotFoundError);
    const plain = await queue('hreplay');
    await assert.rejects(http.replayArchive(plain, 'default'), (e) => e instanceof NotCurrentError && e.sqlstate === '55000');
    await http.dropQueue(q);
    await http.dropQueue(plain);
  });
});
