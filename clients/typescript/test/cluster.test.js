// The HTTP client against a gateway serving a cluster (started by test.sh:
// DELIVER_CLUSTER_URL, DELIVER_CLUSTER_QUEUE on a router and two shard
// databases, clients/test-gateways.sh): ids are strings
// partition:epoch:id, returned as they came and taken back by every method
// that takes an id; a Consumer works over it.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { Consumer, HttpClient, InvalidParameterError, NotCurrentError } from '../dist/http.js';
import { appRole, jwt, until } from './helpers.js';

const url = process.env.DELIVER_CLUSTER_URL;
const q = process.env.DELIVER_CLUSTER_QUEUE;
const CLUSTER_ID = /^[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}$/;
let http;

// depth and in-flight of the default group over every partition (a
// cluster's gateway answers a row per partition)
async function waiting() {
  const rows = (await http.metrics(q)).filter((x) => x.group === 'default');
  assert.equal(rows.length, 4, 'a row per partition');
  return rows.reduce((a, m) => [a[0] + m.depth, a[1] + m.inFlight], [0, 0]);
}

// every message of the queue received and acked: each test starts empty
async function drain() {
  for (;;) {
    const got = await http.receive(q, { max: 100 });
    if (got.length === 0) return;
    await http.ackBatch(q, got.map((m) => m.deliveryId));
  }
}

before(() => {
  assert.ok(url && q, 'test.sh starts the cluster gateway (DELIVER_CLUSTER_URL, DELIVER_CLUSTER_QUEUE)');
  http = new HttpClient({ url, token: jwt({ role: appRole, exp: Math.floor(Date.now() / 1000) + 3600 }) });
});

describe('HttpClient against a cluster gateway', () => {
  it('send and sendBatch return partition:epoch:id strings, over more than one partition', async () => {
    await drain();
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push(await http.send(q, { i }, { orderingKey: `k${i}` }));
    assert.ok(ids.every((id) => typeof id === 'string' && CLUSTER_ID.test(id)), ids.join(' '));
    assert.ok(new Set(ids.map((id) => id.split(':')[0])).size > 1, 'twenty keys land on more than one partition');
    const batch = await http.sendBatch(q, [{ payload: 'a' }, { payload: 'b' }, { payload: 'c' }]);
    assert.equal(batch.length, 3);
    assert.ok(batch.every((id) => CLUSTER_ID.test(id)));
    assert.equal(new Set([...ids, ...batch]).size, 23, 'every id differs');
    await drain();
  });

  it('receive, ack, nack, extendLease and ackBatch with the ids as received', async () => {
    await drain();
    const sent = await http.sendBatch(q, [1, 2, 3, 4].map((n) => ({ payload: { n } })));
    const got = [];
    await until(async () => {
      got.push(...(await http.receive(q, { max: 10 })));
      return got.length >= 4;
    }, 10000, 'the four messages received');
    assert.deepEqual(got.map((m) => m.messageId).sort(), [...sent].sort());
    assert.ok(got.every((m) => CLUSTER_ID.test(m.deliveryId) && m.attempt === 1 && m.leaseExpiresAt instanceof Date));
    const [a, b, c, d] = got;
    assert.equal(await http.ack(q, a.deliveryId), true);
    await assert.rejects(http.ack(q, a.deliveryId), NotCurrentError, 'acked once only: the delivery is no longer current');
    const until2 = await http.extendLease(q, b.deliveryId, 120);
    assert.ok(until2.getTime() > Date.now() + 60_000, 'the lease extended');
    assert.equal(await http.nack(q, c.deliveryId, { retryAfter: 0, error: 'again' }), true);
    let again = [];
    await until(async () => {
      again = await http.receive(q, { max: 10 });
      return again.length > 0;
    }, 10000, 'the nacked message back');
    assert.deepEqual(again.map((m) => [m.messageId, m.attempt]), [[c.messageId, 2]]);
    assert.equal(await http.ackBatch(q, [b.deliveryId, again[0].deliveryId, d.deliveryId]), 3);
    assert.deepEqual(await waiting(), [0, 0]);
  });

  it('a Consumer over the cluster gateway acks what its handler took', async () => {
    await drain();
    const sent = await http.sendBatch(q, [{ payload: 'x' }, { payload: 'y' }]);
    const seen = [];
    const consumer = new Consumer(http, q, async (m) => { seen.push(m.messageId); }, { wait: 1, handleSignals: false });
    const done = consumer.run();
    await until(async () => seen.length >= 2, 10000, 'both handled');
    await consumer.stop();
    await done;
    assert.deepEqual([...seen].sort(), [...sent].sort());
    await until(async () => (await http.receive(q)).length === 0, 5000, 'nothing left');
  });

  it('priorities: send, sendBatch and publish pass a priority to the partition; the switch is set on every partition', async () => {
    await drain();
    // the queue has no priorities: the shard's deliver answers 55000
    await assert.rejects(http.send(q, 1, { priority: 3 }), (e) => e instanceof NotCurrentError && e.sqlstate === '55000');
    await assert.rejects(http.sendBatch(q, [{ payload: 1 }], { priority: 3 }),
      (e) => e instanceof NotCurrentError && e.sqlstate === '55000');
    await assert.rejects(http.send(q, 1, { priority: 10 }), (e) => e instanceof InvalidParameterError && e.sqlstate === '22023');
    await assert.rejects(http.sendBatch(q, [{ payload: 1 }], { priority: 10 }), (e) => e instanceof InvalidParameterError);
    await assert.rejects(http.publish('prio.x', 1, { priority: 10 }), (e) => e instanceof InvalidParameterError);
    assert.ok(CLUSTER_ID.test(await http.send(q, 1, { priority: 0 })));
    assert.equal((await http.sendBatch(q, [{ payload: 2 }], { priority: 0 })).length, 1);
    assert.deepEqual(await waiting(), [2, 0], 'the two sent with priority 0, nothing else');
    await drain();
    // a queue with priorities (the superuser makes it): one key, so one
    // partition, hands them out by priority
    const admin = new HttpClient({ url, token: jwt({ role: process.env.PGUSER || 'postgres', exp: Math.floor(Date.now() / 1000) + 3600 }) });
    const pq = `${q}_prio`;
    await admin.createQueue(pq, { priorities: true });
    try {
      // getQueue: a node's answer (partition 0's settings and groups)
      const info = await admin.getQueue(pq);
      assert.equal(info.name, pq);
      assert.equal(info.priorities, true);
      assert.equal(info.guarantee, 'at_least_once');
      assert.deepEqual(info.consumerGroups, ['default']);
      const orderingKey = 'one-partition';
      await admin.send(pq, 'low', { orderingKey, priority: 1 });
      await admin.sendBatch(pq, [{ payload: 'mid', orderingKey }], { priority: 5 });
      await admin.bind('prio.#', pq);
      const published = await admin.publish('prio.x', 'high', { orderingKey, priority: 9 });
      assert.deepEqual(published.map((x) => x.queue), [pq]);
      await admin.send(pq, 'none', { orderingKey });
      const got = await admin.receive(pq, { max: 10 });
      assert.deepEqual(got.map((m) => m.payload), ['high', 'mid', 'low', 'none']);
      assert.equal(await admin.ackBatch(pq, got.map((m) => m.deliveryId)), 4);
      await admin.alterQueue(pq, { priorities: false });
      assert.equal((await admin.getQueue(pq)).priorities, false);
      await assert.rejects(admin.send(pq, 1, { orderingKey, priority: 2 }),
        (e) => e instanceof NotCurrentError && e.sqlstate === '55000');
    } finally {
      await admin.unbind('prio.#', pq);
      await admin.dropQueue(pq);
    }
  });

  it('malformed cluster ids are refused before any request', async () => {
    for (const bad of ['1:2', 'a:b:c', '1:2:3:4', '1234567:1:1', ':1:1']) {
      await assert.rejects(http.ack(q, bad), InvalidParameterError, bad);
    }
  });

  // last: a stream left by its client is served until the gateway's next
  // keep-alive finds it gone, and may lease what a later test sends meanwhile
  it('the stream hands out cluster ids and acks them', async () => {
    await drain();
    const id = await http.send(q, 'streamed');
    for await (const m of http.stream(q, { max: 5 })) {
      assert.deepEqual([m.messageId, m.payload], [id, 'streamed']);
      assert.ok(CLUSTER_ID.test(m.deliveryId));
      break;
    }
    await until(async () => (await waiting()).every((n) => n === 0), 10000, 'the streamed message acked by the gateway');
  });
});
