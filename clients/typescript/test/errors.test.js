// deliver's errors over SQL become typed errors carrying the SQLSTATE,
// detail and hint.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  AlreadyExistsError,
  DeliverClient,
  DeliverError,
  DependentObjectsError,
  errorClassFor,
  InvalidNameError,
  InvalidParameterError,
  InvalidTransactionStateError,
  LimitExceededError,
  LockNotAvailableError,
  NotCurrentError,
  PermissionDeniedError,
  QueueNotFoundError,
  UnavailableError,
} from '../dist/index.js';
import { client, pool, uniqueName } from './helpers.js';

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

/** rejects with exactly this class and SQLSTATE */
async function rejectsWith(promise, cls, sqlstate) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof cls, `${e.name} (${e.sqlstate}: ${e.message}) is a ${cls.name}`);
    assert.ok(e instanceof DeliverError);
    assert.equal(e.constructor, cls);
    assert.equal(e.sqlstate, sqlstate);
    assert.equal(typeof e.message, 'string');
    return true;
  });
}

describe('SQL errors', () => {
  let q;
  before(async () => {
    q = uniqueName('errors');
    await deliver.createQueue(q, { retryBase: 0 });
  });
  after(async () => {
    await deliver.dropQueue(q);
  });

  it('42704 unknown queue or group: QueueNotFoundError', async () => {
    await rejectsWith(deliver.send(uniqueName('missing'), 1), QueueNotFoundError, '42704');
    await rejectsWith(deliver.receive(q, { group: 'nogroup' }), QueueNotFoundError, '42704');
    await rejectsWith(deliver.dropQueue(uniqueName('missing')), QueueNotFoundError, '42704');
  });

  it('55000 a delivery id that is not current: NotCurrentError, with detail', async () => {
    await deliver.send(q, 1);
    const [m] = await deliver.receive(q);
    await deliver.ack(q, m.deliveryId);
    await assert.rejects(deliver.ack(q, m.deliveryId), (e) => {
      assert.ok(e instanceof NotCurrentError);
      assert.equal(e.sqlstate, '55000');
      assert.match(e.message, /not current/);
      assert.ok(e.detail && e.detail.length > 0, 'the server\'s detail is kept');
      return true;
    });
    await rejectsWith(deliver.nack(q, m.deliveryId), NotCurrentError, '55000');
    await rejectsWith(deliver.extendLease(q, m.deliveryId, 10), NotCurrentError, '55000');
    await rejectsWith(deliver.ack(q, 12345n), NotCurrentError, '55000');
  });

  it('22023 out of range: InvalidParameterError', async () => {
    await rejectsWith(deliver.receive(q, { max: 0 }), InvalidParameterError, '22023');
    await rejectsWith(deliver.receive(q, { visibilityTimeout: -1 }), InvalidParameterError, '22023');
    await rejectsWith(deliver.createQueue(uniqueName('bad'), { guarantee: 'twice' }), InvalidParameterError, '22023');
    await rejectsWith(deliver.createQueue(uniqueName('bad'), { maxAttempts: 0 }), InvalidParameterError, '22023');
    await rejectsWith(deliver.send(q, 1, { headers: [1, 2] }), InvalidParameterError, '22023');
    await rejectsWith(deliver.send(q, 1, { delay: -5 }), InvalidParameterError, '22023');
    await rejectsWith(deliver.createConsumerGroup(q, 'g', { startFrom: 'middle' }), InvalidParameterError, '22023');
    await rejectsWith(deliver.grantQueue(q, role, 'delete'), InvalidParameterError, '22023');
  });

  it('22004, 22007, 2202E: InvalidParameterError with their own SQLSTATE', async () => {
    await rejectsWith(deliver.send(q, undefined), InvalidParameterError, '22004');
    const eo = uniqueName('eo');
    await deliver.createQueue(eo, { guarantee: 'exactly_once' });
    await rejectsWith(deliver.send(eo, 1), InvalidParameterError, '22004');
    await deliver.dropQueue(eo);
    await rejectsWith(deliver.send(q, 1, { delay: 'soon' }), InvalidParameterError, '22007');
    await rejectsWith(
      deliver.query("SELECT deliver.send_batch($1, ARRAY['1', '2']::jsonb[], ordering_keys => ARRAY['a'])", [q]),
      InvalidParameterError, '2202E');
  });

  it('42602 an invalid name: InvalidNameError (an InvalidParameterError)', async () => {
    await rejectsWith(deliver.createQueue('bad name!'), InvalidNameError, '42602');
    await assert.rejects(deliver.createQueue('-x'), InvalidParameterError);
  });

  it('42710 exists: AlreadyExistsError', async () => {
    await rejectsWith(deliver.createQueue(q), AlreadyExistsError, '42710');
    await rejectsWith(deliver.createConsumerGroup(q, 'default'), AlreadyExistsError, '42710');
  });

  it('54000 a key over 512 bytes, a payload over the limit: LimitExceededError', async () => {
    await rejectsWith(deliver.send(q, 1, { orderingKey: 'k'.repeat(513) }), LimitExceededError, '54000');
    await rejectsWith(deliver.send(q, 'x'.repeat(1024 * 1024 + 10)), LimitExceededError, '54000');
  });

  it('42501 a role without a grant: PermissionDeniedError; with send only', async () => {
    const c = await sql.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SET LOCAL ROLE ${role}`);
      const asRole = new DeliverClient(c);
      await rejectsWith(asRole.send(q, 1), PermissionDeniedError, '42501');
      await c.query('ROLLBACK');
      await deliver.grantQueue(q, role, 'send');
      await c.query('BEGIN');
      await c.query(`SET LOCAL ROLE ${role}`);
      assert.equal(typeof (await asRole.send(q, 'allowed')), 'bigint');
      await c.query('SAVEPOINT s');
      await rejectsWith(asRole.receive(q), PermissionDeniedError, '42501');
      await c.query('ROLLBACK TO SAVEPOINT s');
      await rejectsWith(asRole.createQueue(uniqueName('notmine')), PermissionDeniedError, '42501');
      await c.query('ROLLBACK');
    } finally {
      c.release();
      await deliver.revokeQueue(q, role);
    }
  });

  it('25001 an at-most-once receive inside a transaction: InvalidTransactionStateError', async () => {
    const amo = uniqueName('amo');
    await deliver.createQueue(amo, { guarantee: 'at_most_once' });
    await assert.rejects(deliver.transaction((tx) => tx.receive(amo)), (e) => {
      assert.ok(e instanceof InvalidTransactionStateError);
      assert.equal(e.sqlstate, '25001');
      return true;
    });
    await deliver.dropQueue(amo);
  });

  it('55P03 exactly-once: another open transaction is acking: LockNotAvailableError', async () => {
    const eo = uniqueName('eo');
    await deliver.createQueue(eo, { guarantee: 'exactly_once' });
    await deliver.send(eo, 1, { idempotencyKey: 'one' });
    const [m] = await deliver.receive(eo);
    const c = await sql.connect();
    try {
      await c.query('BEGIN');
      await deliver.forClient(c).ack(eo, m.deliveryId);
      await rejectsWith(deliver.ack(eo, m.deliveryId), LockNotAvailableError, '55P03');
      await c.query('ROLLBACK');
    } finally {
      c.release();
    }
    assert.equal(await deliver.ack(eo, m.deliveryId), true, 'the rolled-back ack can be done again');
    await deliver.dropQueue(eo);
  });

  it('2BP01 dropping a queue with a push subscription: DependentObjectsError', async () => {
    const pq = uniqueName('pushdep');
    const sub = uniqueName('s').toLowerCase().replace(/[^a-z0-9_]/g, '_');
    await deliver.createQueue(pq);
    await deliver.createPushSubscription(pq, sub);
    await rejectsWith(deliver.dropQueue(pq), DependentObjectsError, '2BP01');
    await deliver.dropPushSubscription(sub);
    await deliver.dropQueue(pq);
  });

  it('a connection failure: UnavailableError (08006)', async () => {
    const bad = new DeliverClient({ host: '127.0.0.1', port: 1, database: 'x', connectionTimeoutMillis: 2000 });
    await assert.rejects(bad.listQueues(), (e) => {
      assert.ok(e instanceof UnavailableError, `${e.name}: ${e.message}`);
      assert.equal(e.sqlstate, '08006');
      return true;
    });
    await bad.close();
  });
});

describe('the SQLSTATE table', () => {
  it('maps codes and classes to the same classes for both clients', () => {
    const table = {
      '42704': QueueNotFoundError,
      '55000': NotCurrentError,
      '22023': InvalidParameterError,
      '22004': InvalidParameterError,
      '22P02': InvalidParameterError,
      '2202E': InvalidParameterError,
      '42602': InvalidNameError,
      '42501': PermissionDeniedError,
      '42710': AlreadyExistsError,
      '54000': LimitExceededError,
      '55P03': LockNotAvailableError,
      '25001': InvalidTransactionStateError,
      '25006': InvalidTransactionStateError,
      '2BP01': DependentObjectsError,
      '08006': UnavailableError,
      '57P01': UnavailableError,
      '40001': UnavailableError,
      XX000: DeliverError,
    };
    for (const [code, cls] of Object.entries(table)) assert.equal(errorClassFor(code), cls, code);
  });
});
