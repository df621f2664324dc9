// Queues, consumer groups, privileges, metrics, alerts, maintenance and
// push subscriptions over SQL.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AlreadyExistsError, DeliverClient, InvalidParameterError, NotCurrentError, QueueNotFoundError } from '../dist/index.js';
import { client, pool, putInArchive, sleep, uniqueName } from './helpers.js';

const role = process.env.DELIVER_TEST_ROLE || 'client_ts_app';
let deliver;
let sql;

before(() => {
  deliver = client();
  sql = pool();
});
after(async () => {
  await deliver.close();
  await sql.end();
});

describe('queues', () => {
  it('createQueue with every option, getQueue and listQueues report them in seconds', async () => {
    const q = uniqueName('opts');
    await deliver.createQueue(q, {
      guarantee: 'exactly_once',
      visibilityTimeout: 12.5,
      maxAttempts: 7,
      fifo: true,
      dedupWindow: '2 hours',
      retryBase: 0.25,
      retryMax: '90 seconds',
      messageTtl: 60,
      onExpire: 'drop',
      maxDepth: 1000,
      overflow: 'drop_oldest',
      ackCommit: 'durable',
    });
    const info = await deliver.getQueue(q);
    assert.deepEqual({ ...info, createdAt: undefined }, {
      name: q,
      guarantee: 'exactly_once',
      visibilityTimeout: 12.5,
      maxAttempts: 7,
      fifo: true,
      dedupWindow: 7200,
      retryBase: 0.25,
      retryMax: 90,
      archiveRetention: null,
      consumerGroups: ['default'],
      createdAt: undefined,
      messageTtl: 60,
      onExpire: 'drop',
      maxDepth: 1000,
      overflow: 'drop_oldest',
      ackCommit: 'durable',
      priorities: false,
    });
    assert.ok(info.createdAt instanceof Date);
    const all = await deliver.listQueues();
    assert.ok(all.some((x) => x.name === q));
    assert.equal(await deliver.dropQueue(q), true);
    assert.equal(await deliver.getQueue(q), null);
  });

  it('createQueue with no options takes the defaults', async () => {
    const q = uniqueName('defaults');
    await deliver.createQueue(q);
    const info = await deliver.getQueue(q);
    assert.equal(info.guarantee, 'at_least_once');
    assert.equal(info.visibilityTimeout, 30);
    assert.equal(info.maxAttempts, 5);
    assert.equal(info.fifo, false);
    assert.equal(info.dedupWindow, 300);
    assert.deepEqual([info.messageTtl, info.onExpire, info.maxDepth, info.overflow, info.ackCommit],
      [null, 'dead_letter', null, 'reject', 'durable']);
    await assert.rejects(deliver.createQueue(q), AlreadyExistsError);
    await deliver.dropQueue(q);
  });

  it('alterQueue changes only what it is given; archive on and off', async () => {
    const q = uniqueName('alter');
    await deliver.createQueue(q, { maxAttempts: 3 });
    await deliver.alterQueue(q, { visibilityTimeout: 45, archiveRetention: '1 day' });
    let info = await deliver.getQueue(q);
    assert.equal(info.visibilityTimeout, 45);
    assert.equal(info.maxAttempts, 3);
    assert.equal(info.archiveRetention, 86400);
    await deliver.alterQueue(q, { maxAttempts: 9, dedupWindow: 60, retryBase: 2, retryMax: 20 });
    info = await deliver.getQueue(q);
    assert.deepEqual([info.maxAttempts, info.dedupWindow, info.retryBase, info.retryMax, info.visibilityTimeout], [9, 60, 2, 20, 45]);
    await deliver.alterQueue(q, { archiveRetention: 0 });
    assert.equal((await deliver.getQueue(q)).archiveRetention, null);
    await assert.rejects(deliver.alterQueue(uniqueName('nope'), { maxAttempts: 2 }), QueueNotFoundError);
    await deliver.dropQueue(q);
  });

  it('purgeQueue removes every message and says how many', async () => {
    const q = uniqueName('purge');
    await deliver.createQueue(q);
    await deliver.sendBatch(q, [{ payload: 1 }, { payload: 2 }, { payload: 3 }]);
    await deliver.send(q, 4, { delay: 3600 });
    assert.equal(await deliver.purgeQueue(q), 4);
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    await deliver.dropQueue(q);
  });

  it('the archive keeps acked messages, paged by id', async () => {
    const q = uniqueName('archive');
    await deliver.createQueue(q);
    await deliver.alterQueue(q, { archiveRetention: '1 day' });
    const ids = await deliver.sendBatch(q, [{ payload: { n: 1 }, orderingKey: 'k' }, { payload: { n: 2 }, headers: { h: 1 } }]);
    const got = await deliver.receive(q, { max: 2 });
    await deliver.ackBatch(q, got.map((m) => m.deliveryId));
    // maintain rotates, closes and truncates the segment (archiving it);
    // the empty receives move the cursor on
    const fast = client({ max: 1, options: '-c deliver.rotation_interval=1ms' });
    let archived = [];
    for (let i = 0; i < 200 && archived.length < 2; i++) {
      await fast.maintain(q);
      await fast.receive(q);
      archived = await deliver.archived(q, { max: 10 });
      if (archived.length < 2) await sleep(50);
    }
    await fast.close();
    assert.deepEqual(archived.map((a) => a.messageId), ids);
    assert.deepEqual(archived[0].payload, { n: 1 });
    assert.equal(archived[0].orderingKey, 'k');
    assert.deepEqual(archived[1].headers, { h: 1 });
    assert.ok(archived[0].archivedAt instanceof Date);
    const page = await deliver.archived(q, { afterId: ids[0] });
    assert.deepEqual(page.map((a) => a.messageId), [ids[1]]);
    await deliver.dropQueue(q);
  });
});

describe('consumer groups', () => {
  it('create (latest, earliest), list, drop', async () => {
    const q = uniqueName('groups');
    await deliver.createQueue(q);
    await deliver.send(q, 'before');
    await deliver.createConsumerGroup(q, 'late');
    await deliver.createConsumerGroup(q, 'all', { startFrom: 'earliest' });
    await deliver.send(q, 'after');
    const groups = await deliver.listConsumerGroups(q);
    assert.deepEqual(groups.map((g) => g.name), ['default', 'late', 'all']);
    assert.ok(groups[0].createdAt instanceof Date);
    assert.deepEqual((await deliver.receive(q, { max: 10, group: 'late' })).map((m) => m.payload), ['after']);
    assert.deepEqual((await deliver.receive(q, { max: 10, group: 'all' })).map((m) => m.payload), ['before', 'after']);
    assert.deepEqual((await deliver.receive(q, { max: 10 })).map((m) => m.payload), ['before', 'after']);
    assert.deepEqual((await deliver.getQueue(q)).consumerGroups, ['default', 'late', 'all']);
    assert.equal(await deliver.dropConsumerGroup(q, 'late'), true);
    await assert.rejects(deliver.dropConsumerGroup(q, 'late'), QueueNotFoundError);
    await assert.rejects(deliver.createConsumerGroup(q, 'all'), AlreadyExistsError);
    await deliver.dropQueue(q);
  });
});

describe('flow control', () => {
  it('pause, resume, rate limit; listConsumerGroups shows them', async () => {
    const q = uniqueName('flow');
    await deliver.createQueue(q);
    await deliver.sendBatch(q, [1, 2, 3, 4, 5].map((n) => ({ payload: n })));
    assert.equal(await deliver.pauseConsumerGroup(q), true);
    assert.equal(await deliver.pauseConsumerGroup(q, 'default'), false);
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    let [g] = await deliver.listConsumerGroups(q);
    assert.deepEqual({ ...g, createdAt: null }, { name: 'default', createdAt: null, paused: true, ratePerSecond: null, rateBurst: null });
    assert.equal(await deliver.resumeConsumerGroup(q), true);
    assert.equal(await deliver.resumeConsumerGroup(q), false);
    await deliver.setConsumerGroupRate(q, 'default', 0.001, 2);
    [g] = await deliver.listConsumerGroups(q);
    assert.deepEqual([g.paused, g.ratePerSecond, g.rateBurst], [false, 0.001, 2]);
    assert.deepEqual((await deliver.receive(q, { max: 10 })).map((m) => m.payload), [1, 2]);
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    await deliver.setConsumerGroupRate(q, 'default', 2.5);
    assert.equal((await deliver.listConsumerGroups(q))[0].rateBurst, 3);
    await deliver.setConsumerGroupRate(q, 'default', null);
    assert.deepEqual((await deliver.receive(q, { max: 10 })).map((m) => m.payload), [3, 4, 5]);
    await assert.rejects(deliver.setConsumerGroupRate(q, 'default', 0), InvalidParameterError);
    await assert.rejects(deliver.pauseConsumerGroup(q, 'nosuch'), QueueNotFoundError);
    await deliver.dropQueue(q);
  });

  it('setFifoKeyLimit: up to N messages of a key at once', async () => {
    const q = uniqueName('fifolimit');
    await deliver.createQueue(q, { fifo: true });
    await deliver.sendBatch(q, [1, 2, 3, 4].map((n) => ({ payload: n, orderingKey: 'k' })));
    await deliver.setFifoKeyLimit(q, 3);
    assert.deepEqual((await deliver.receive(q, { max: 10 })).map((m) => m.payload), [1, 2, 3]);
    assert.deepEqual(await deliver.receive(q, { max: 10 }), []);
    await assert.rejects(deliver.setFifoKeyLimit(q, 0), InvalidParameterError);
    await deliver.dropQueue(q);
  });
});

describe('privileges', () => {
  it('grantQueue, listGrants, hasQueuePrivilege, revokeQueue', async () => {
    const q = uniqueName('grants');
    await deliver.createQueue(q);
    await deliver.grantQueue(q, role, 'send');
    assert.deepEqual(await deliver.listGrants(q), [{ queue: q, role, privilege: 'send' }]);
    await deliver.grantQueue(q, role, 'receive');
    assert.deepEqual((await deliver.listGrants(q)).map((g) => g.privilege).sort(), ['receive', 'send']);

    // as the role: may send and receive
    const c = await sql.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SET LOCAL ROLE ${role}`);
      const asRole = new DeliverClient(c);
      assert.equal(await asRole.hasQueuePrivilege(q, 'send'), true);
      assert.equal(await asRole.hasQueuePrivilege(q, 'all'), true);
      await c.query('ROLLBACK');
    } finally {
      c.release();
    }
    await deliver.revokeQueue(q, role, 'receive');
    assert.deepEqual(await deliver.listGrants(q), [{ queue: q, role, privilege: 'send' }]);
    await deliver.revokeQueue(q, role);
    assert.deepEqual(await deliver.listGrants(q), []);
    assert.ok(Array.isArray(await deliver.listGrants()));
    assert.equal(await deliver.hasQueuePrivilege(q, 'all'), true); // the owner
    await deliver.dropQueue(q);
  });
});

describe('state', () => {
  it('metrics of one queue and of every queue', async () => {
    const q = uniqueName('metrics');
    await deliver.createQueue(q);
    await deliver.createConsumerGroup(q, 'other');
    await deliver.sendBatch(q, [{ payload: 1 }, { payload: 2 }, { payload: 3 }]);
    await deliver.send(q, 4, { delay: 600 });
    const [m] = await deliver.receive(q);
    const rows = await deliver.metrics(q);
    const def = rows.find((r) => r.group === 'default');
    const other = rows.find((r) => r.group === 'other');
    assert.equal(def.queue, q);
    assert.equal(def.depth, 2);
    assert.equal(def.inFlight, 1);
    assert.equal(def.delayed, 1);
    assert.equal(def.deadLetters, 0);
    assert.equal(def.sentTotal, 3);
    assert.equal(other.depth, 3);
    assert.equal(typeof def.oldestAge, 'number');
    await deliver.ack(q, m.deliveryId);
    assert.equal((await deliver.metrics(q)).find((r) => r.group === 'default').ackedTotal, 1);
    assert.ok((await deliver.metrics()).some((r) => r.queue === q));
    await assert.rejects(deliver.metrics(uniqueName('nope')), QueueNotFoundError);
    await deliver.dropQueue(q);
  });

  it('leaseSlots', async () => {
    const s = await deliver.leaseSlots();
    assert.ok(s.total > 0 && s.free <= s.total && s.maxPerQueue > 0);
  });

  it('maintain', async () => {
    const q = uniqueName('maintain');
    await deliver.createQueue(q);
    const rows = await deliver.maintain(q);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].queue, q);
    assert.equal(typeof rows[0].rotated, 'boolean');
    assert.equal(typeof rows[0].truncated, 'number');
    await deliver.dropQueue(q);
  });

  it('setAlert, listAlerts, an alert removed with null', async () => {
    const q = uniqueName('alerts');
    await deliver.createQueue(q);
    await deliver.setAlert(q, 'depth', 100);
    await deliver.setAlert(q, 'oldest_age', 2.5);
    const alerts = await deliver.listAlerts(q);
    assert.deepEqual(alerts.map((a) => [a.metric, a.threshold, a.firing]).sort(), [['depth', 100, false], ['oldest_age', 2.5, false]]);
    await deliver.setAlert(q, 'depth', null);
    assert.deepEqual((await deliver.listAlerts(q)).map((a) => a.metric), ['oldest_age']);
    assert.ok((await deliver.listAlerts()).some((a) => a.queue === q));
    await deliver.dropQueue(q);
  });

  it('push subscriptions: create, list, metrics, drop', async () => {
    const q = uniqueName('push');
    const name = uniqueName('sub').toLowerCase().replace(/[^a-z0-9_]/g, '_');
    await deliver.createQueue(q);
    const lsn = await deliver.createPushSubscription(q, name);
    assert.match(lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    const subs = await deliver.listPushSubscriptions();
    const s = subs.find((x) => x.name === name);
    assert.equal(s.queue, q);
    assert.equal(s.group, null);
    assert.equal(s.active, false);
    assert.ok((await deliver.pushMetrics()).some((m) => m.name === name && typeof m.lagBytes === 'number'));
    assert.equal(await deliver.dropPushSubscription(name), true);
    await assert.rejects(deliver.dropPushSubscription(name), QueueNotFoundError);
    await deliver.dropQueue(q);
  });
});

describe('replayArchive', () => {
  it('archived messages sent again to one group, a page at a time; errors', async () => {
    const q = uniqueName('replay');
    await deliver.createQueue(q);
    await deliver.alterQueue(q, { archiveRetention: '1 day' });
    await deliver.createConsumerGroup(q, 'audit');
    await putInArchive(deliver, q);
    const first = await deliver.replayArchive(q, 'audit', { maxMessages: 1 });
    assert.deepEqual(first, { replayed: 1, lastId: 7n });
    const second = await deliver.replayArchive(q, 'audit', { afterId: first.lastId, since: new Date(Date.now() - 7200 * 1000) });
    assert.deepEqual(second, { replayed: 1, lastId: 8n });
    assert.deepEqual(await deliver.replayArchive(q, 'audit', { afterId: '8' }), { replayed: 0, lastId: null });
    const got = await deliver.receive(q, { group: 'audit', max: 10 });
    assert.deepEqual(got.map((m) => m.payload), [{ n: 7 }, { n: 8 }]);
    assert.equal(got[0].orderingKey, 'k');
    assert.deepEqual(got[0].headers, { h: 1 });
    assert.equal(got[0].attempt, 1);
    assert.ok(got[0].enqueuedAt.getTime() < Date.now() - 30 * 60 * 1000, 'the first time of sending is kept');
    assert.deepEqual(await deliver.receive(q, { max: 10 }), [], 'the other groups get nothing');
    await assert.rejects(deliver.replayArchive(q, 'audit', { maxMessages: 0 }), (e) => e instanceof InvalidParameterError && e.sqlstate === '22023');
    await assert.rejects(deliver.replayArchive(q, 'audit', { since: new Date(Date.now() - 2 * 86400 * 1000) }),
      (e) => e instanceof InvalidParameterError && e.sqlstate === '22023');
    await assert.rejects(deliver.replayArchive(q, 'nobody'), QueueNotFoundError);
    const plain = uniqueName('replay');
    await deliver.createQueue(plain);
    await assert.rejects(deliver.replayArchive(plain, 'default'), (e) => e instanceof NotCurrentError && e.sqlstate === '55000');
    await deliver.dropQueue(q);
    await deliver.dropQueue(plain);
  });
});
