// Message expiry from both clients: createQueue and alterQueue with
// messageTtl and onExpire, send and sendBatch with expiresAt (a Date or a
// string); expired messages are never received and become dead letters
// with reason 'expired' (or are dropped).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidParameterError, PermissionDeniedError, TooManyInFlightError } from '../dist/index.js';
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

async function settings(q) {
  const { rows } = await sql.query(
    'SELECT extract(epoch FROM message_ttl)::float8 AS ttl, on_expire FROM deliver.queue WHERE queue_name = $1', [q]);
  return rows[0];
}

const past = () => new Date(Date.now() - 60_000);
const future = () => new Date(Date.now() + 3_600_000);

for (const [name, make] of [['DeliverClient (SQL)', () => deliver], ['HttpClient', () => http]]) {
  describe(`expiry over ${name}`, () => {
    it('expiresAt: expired messages are dead letters, the others are received', async () => {
      const c = make();
      const q = uniqueName('exp');
      await c.createQueue(q);
      const gone = await c.send(q, { n: 1 }, { expiresAt: past() });
      const kept = await c.send(q, { n: 2 }, { expiresAt: future() });
      const plain = await c.send(q, { n: 3 }, { expiresAt: null });
      const iso = await c.send(q, { n: 4 }, { expiresAt: '2001-02-03T04:05:06Z' });
      const batch = await c.sendBatch(q, [{ payload: { n: 5 } }, { payload: { n: 6 } }], { expiresAt: past() });
      const later = await c.sendBatch(q, [{ payload: { n: 7 } }], { expiresAt: future().toISOString() });
      assert.deepEqual((await c.peek(q, { max: 10 })).map((m) => m.messageId), [kept, plain, ...later]);
      const got = await c.receive(q, { max: 10 });
      assert.deepEqual(got.map((m) => m.messageId), [kept, plain, ...later]);
      const dead = await c.deadLetters(q);
      assert.deepEqual(dead.map((d) => d.messageId), [gone, iso, ...batch]);
      assert.ok(dead.every((d) => d.reason === 'expired' && d.attempts === 0));
      await c.dropQueue(q);
    });

    it('messageTtl and onExpire at creation, changed with alterQueue', async () => {
      const c = make();
      const q = uniqueName('ttl');
      await c.createQueue(q, { messageTtl: 3600, onExpire: 'drop', maxDepth: 50, overflow: 'drop_oldest' });
      assert.deepEqual(await settings(q), { ttl: 3600, on_expire: 'drop' });
      const info = await c.getQueue(q);
      assert.deepEqual([info.messageTtl, info.onExpire, info.maxDepth, info.overflow], [3600, 'drop', 50, 'drop_oldest']);
      await c.send(q, { n: 1 }, { expiresAt: past() });
      assert.equal((await c.receive(q, { max: 10 })).length, 0);
      assert.equal((await c.deadLetters(q)).length, 0, 'on_expire drop keeps no dead letter');
      await c.alterQueue(q, { messageTtl: '2 hours', onExpire: 'dead_letter' });
      assert.deepEqual(await settings(q), { ttl: 7200, on_expire: 'dead_letter' });
      await c.alterQueue(q, { messageTtl: 0 });
      assert.deepEqual(await settings(q), { ttl: null, on_expire: 'dead_letter' });
      await c.alterQueue(q, { maxAttempts: 3 });
      assert.deepEqual(await settings(q), { ttl: null, on_expire: 'dead_letter' }, 'left out: unchanged');
      await c.send(q, { n: 2 }, { expiresAt: past() });
      assert.equal((await c.receive(q, { max: 10 })).length, 0);
      assert.deepEqual((await c.deadLetters(q)).map((d) => d.reason), ['expired']);
      await c.dropQueue(q);
    });

    it('maxDepth: a send beyond it is refused (53400), nothing written; alterQueue changes it', async () => {
      const c = make();
      const q = uniqueName('depth');
      await c.createQueue(q, { maxDepth: 2, overflow: 'reject' });
      const { rows } = await sql.query('SELECT max_depth::int AS d, overflow FROM deliver.queue WHERE queue_name = $1', [q]);
      assert.deepEqual(rows[0], { d: 2, overflow: 'reject' });
      await c.sendBatch(q, [{ payload: 1 }, { payload: 2 }]);
      await assert.rejects(c.send(q, 3), (e) => e instanceof TooManyInFlightError && e.sqlstate === '53400');
      await assert.rejects(c.sendBatch(q, [{ payload: 3 }]), (e) => e.sqlstate === '53400');
      assert.equal((await c.peek(q, { max: 10 })).length, 2, 'the refused sends wrote nothing');
      await c.alterQueue(q, { maxDepth: 0 });
      await c.send(q, 3);
      await assert.rejects(c.createQueue(uniqueName('depth'), { maxDepth: -1 }), (e) => e.sqlstate === '22023');
      await c.dropQueue(q);
    });

    it("overflow 'drop_oldest': the oldest messages go to the dead letters (reason overflow)", async () => {
      const c = make();
      const q = uniqueName('dropold');
      await c.createQueue(q, { maxDepth: 2, overflow: 'drop_oldest' });
      const ids = await c.sendBatch(q, [{ payload: 1 }, { payload: 2 }]);
      const [third] = await c.sendBatch(q, [{ payload: 3 }]);
      assert.deepEqual((await c.deadLetters(q)).map((d) => [d.messageId, d.reason]), [[ids[0], 'overflow']]);
      assert.deepEqual((await c.receive(q, { max: 10 })).map((m) => m.messageId), [ids[1], third]);
      await c.dropQueue(q);
    });

    it('bad settings are InvalidParameterError (22023)', async () => {
      const c = make();
      const q = uniqueName('bad');
      await assert.rejects(c.createQueue(q, { messageTtl: -1 }), (e) => e instanceof InvalidParameterError && e.sqlstate === '22023');
      await assert.rejects(c.createQueue(q, { onExpire: 'keep' }), (e) => e instanceof InvalidParameterError && e.sqlstate === '22023');
      await c.createQueue(q);
      await assert.rejects(c.alterQueue(q, { messageTtl: '400 days' }), (e) => e.sqlstate === '22023');
      await assert.rejects(c.send(q, {}, { expiresAt: 'not a time' }), (e) => e.sqlstate === '22007');
      await c.dropQueue(q);
    });
  });
}

describe('alterQueue over HTTP needs the right to administer', () => {
  it('a role without it gets PermissionDeniedError', async () => {
    const q = uniqueName('perm');
    await deliver.createQueue(q);
    const app = httpClient(appRole);
    await assert.rejects(app.alterQueue(q, { messageTtl: 5 }), (e) => e instanceof PermissionDeniedError);
    assert.deepEqual(await settings(q), { ttl: null, on_expire: 'dead_letter' });
    await deliver.dropQueue(q);
  });
});
