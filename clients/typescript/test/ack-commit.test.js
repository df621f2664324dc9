// A queue's ackCommit from both clients: createQueue and alterQueue set it,
// listQueues and getQueue show it ('durable' by default); 'async' is
// refused on exactly-once and at-most-once queues (0A000) and bad values
// are InvalidParameterError (22023); an async queue's acks work as usual.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidParameterError, PermissionDeniedError } from '../dist/index.js';
import { appRole, client, httpClient, pool, uniqueName } from './helpers.js';

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

async function stored(q) {
  const { rows } = await sql.query('SELECT ack_commit FROM deliver.queue WHERE queue_name = $1', [q]);
  return rows[0]?.ack_commit;
}

for (const [name, make] of [['DeliverClient (SQL)', () => deliver], ['HttpClient', () => http]]) {
  describe(`ackCommit over ${name}`, () => {
    it('is durable by default, async when asked, changed with alterQueue', async () => {
      const c = make();
      const plain = uniqueName('ackd');
      const q = uniqueName('acka');
      await c.createQueue(plain);
      await c.createQueue(q, { ackCommit: 'async' });
      assert.equal((await c.getQueue(plain)).ackCommit, 'durable');
      assert.equal((await c.getQueue(q)).ackCommit, 'async');
      assert.equal((await c.listQueues()).find((i) => i.name === q).ackCommit, 'async');
      assert.equal(await stored(q), 'async');
      // other options leave it alone
      await c.alterQueue(q, { maxAttempts: 7 });
      assert.equal(await stored(q), 'async');
      await c.alterQueue(q, { ackCommit: 'durable' });
      assert.equal((await c.getQueue(q)).ackCommit, 'durable');
      await c.alterQueue(q, { ackCommit: 'async' });
      assert.equal(await stored(q), 'async');
      await c.dropQueue(plain);
      await c.dropQueue(q);
    });

    it('acks of an async queue finish their messages', async () => {
      const c = make();
      const q = uniqueName('ackw');
      await c.createQueue(q, { ackCommit: 'async' });
      const ids = await c.sendBatch(q, [{ payload: { n: 1 } }, { payload: { n: 2 } }]);
      const got = await c.receive(q, { max: 1 });
      assert.equal(got.length, 1);
      assert.equal(await c.ack(q, got[0].deliveryId), true);
      const rest = await c.receive(q, { max: 10 });
      assert.deepEqual(rest.map((m) => m.messageId), [ids[1]]);
      assert.equal(await c.ackBatch(q, rest.map((m) => m.deliveryId)), 1);
      assert.deepEqual(await c.receive(q, { max: 10 }), []);
      await c.dropQueue(q);
    });

    it('refuses async where acks must be durable (0A000) and bad values (22023)', async () => {
      const c = make();
      const eo = uniqueName('acke');
      await assert.rejects(c.createQueue(eo, { guarantee: 'exactly_once', ackCommit: 'async' }), (e) => e.sqlstate === '0A000');
      await assert.rejects(c.createQueue(eo, { guarantee: 'at_most_once', ackCommit: 'async' }), (e) => e.sqlstate === '0A000');
      await assert.rejects(c.createQueue(eo, { ackCommit: 'later' }), (e) => e instanceof InvalidParameterError && e.sqlstate === '22023');
      assert.equal(await stored(eo), undefined);
      await c.createQueue(eo, { guarantee: 'exactly_once' });
      await assert.rejects(c.alterQueue(eo, { ackCommit: 'async' }), (e) => e.sqlstate === '0A000');
      await assert.rejects(c.alterQueue(eo, { ackCommit: 'sometimes' }), (e) => e.sqlstate === '22023');
      assert.equal(await stored(eo), 'durable');
      await c.dropQueue(eo);
    });
  });
}

describe('ackCommit over HTTP needs the right to administer', () => {
  it('a role without it gets PermissionDeniedError', async () => {
    const q = uniqueName('ackp');
    await deliver.createQueue(q);
    const app = httpClient(appRole);
    await assert.rejects(app.alterQueue(q, { ackCommit: 'async' }), (e) => e instanceof PermissionDeniedError);
    assert.equal(await stored(q), 'durable');
    await deliver.dropQueue(q);
  });
});
