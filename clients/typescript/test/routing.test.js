// Topic routing from both clients: bind/unbind/listBindings/testRouting and
// publish over SQL (in the caller's transaction) and over HTTP (deliverd,
// started by test.sh: DELIVER_HTTP_URL, DELIVER_JWT_SECRET).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidParameterError, QueueNotFoundError } from '../dist/index.js';
import { client, httpClient, uniqueName } from './helpers.js';

let deliver;
let http;
before(() => {
  deliver = client();
  http = httpClient();
});
after(async () => {
  await deliver.close();
});

// two queues with a topic of their own (keys "<topic>.eu.x" go to both, "<topic>.us.x" to the second)
async function topic(api) {
  const t = uniqueName('ts_topic');
  const eu = `${t}_eu`;
  const all = `${t}_all`;
  await deliver.createQueue(eu);
  await deliver.createQueue(all);
  assert.equal(await api.bind(`${t}.eu.*`, eu), true);
  assert.equal(await api.bind(`${t}.eu.*`, eu), false, 'bound already');
  assert.equal(await api.bind(`${t}.#`, all), true);
  return { t, eu, all };
}

for (const [name, api] of [['SQL', () => deliver], ['HTTP', () => http]]) {
  describe(`topic routing over ${name}`, () => {
    it('binds, lists, tests, publishes to every matching queue, unbinds', async () => {
      const { t, eu, all } = await topic(api());
      const listed = await api().listBindings(eu);
      assert.deepEqual(listed.map((b) => [b.pattern, b.queue]), [[`${t}.eu.*`, eu]]);
      assert.ok(listed[0].createdAt instanceof Date);
      assert.deepEqual(await api().testRouting(`${t}.eu.new`), [
        { queue: all, pattern: `${t}.#` }, { queue: eu, pattern: `${t}.eu.*` }].sort((a, b) => (a.queue < b.queue ? -1 : 1)));

      const sent = await api().publish(`${t}.eu.new`, { n: 1 }, { headers: { h: 'v' }, orderingKey: 'k' });
      assert.deepEqual(sent.map((s) => s.queue).sort(), [all, eu].sort());
      for (const s of sent) assert.equal(typeof s.messageId, 'bigint');
      const [m] = await deliver.receive(eu);
      assert.deepEqual([m.payload, m.headers, m.orderingKey], [{ n: 1 }, { h: 'v' }, 'k']);
      assert.equal(m.messageId, sent.find((s) => s.queue === eu).messageId);

      assert.deepEqual((await api().publish(`${t}.us.new`, 2)).map((s) => s.queue), [all]);
      assert.deepEqual(await api().publish(`nobody.${t}`, 3), [], 'no match: nothing sent');
      await assert.rejects(api().publish(`nobody.${t}`, 3, { mandatory: true }), QueueNotFoundError);
      await assert.rejects(api().publish(`${t}.*`, 3), InvalidParameterError);
      await assert.rejects(api().bind('a..b', eu), InvalidParameterError);
      await assert.rejects(api().bind('a', `${t}_missing`), QueueNotFoundError);

      // the idempotency key applies per queue
      const a = await api().publish(`${t}.eu.x`, 4, { idempotencyKey: 'once' });
      const b = await api().publish(`${t}.eu.x`, 4, { idempotencyKey: 'once' });
      assert.deepEqual(b, a);

      assert.equal(await api().unbind(`${t}.eu.*`, eu), true);
      assert.equal(await api().unbind(`${t}.eu.*`, eu), false);
      assert.deepEqual((await api().testRouting(`${t}.eu.x`)).map((r) => r.queue), [all]);
      await deliver.dropQueue(eu);
      await deliver.dropQueue(all);
      assert.deepEqual(await api().listBindings(all), []);
    });

    it('publish with expiresAt: every copy gets the deadline (a dead letter, or dropped, per queue)', async () => {
      const t = uniqueName('ts_exp');
      const dl = `${t}_dl`;
      const drop = `${t}_drop`;
      await deliver.createQueue(dl);
      await deliver.createQueue(drop, { onExpire: 'drop' });
      await deliver.bind(`${t}.#`, dl);
      await deliver.bind(`${t}.#`, drop);
      const gone = await api().publish(`${t}.a`, { n: 1 }, { expiresAt: new Date(Date.now() - 60_000) });
      assert.deepEqual(gone.map((s) => s.queue).sort(), [dl, drop].sort());
      const iso = await api().publish(`${t}.a`, { n: 2 }, { expiresAt: '2001-02-03T04:05:06Z' });
      const kept = await api().publish(`${t}.a`, { n: 3 }, { expiresAt: new Date(Date.now() + 3_600_000) });
      const plain = await api().publish(`${t}.a`, { n: 4 }, { expiresAt: null });
      const idIn = (sent, q) => sent.find((s) => s.queue === q).messageId;
      for (const q of [dl, drop]) {
        assert.deepEqual((await deliver.receive(q, { max: 10 })).map((m) => m.messageId),
          [idIn(kept, q), idIn(plain, q)], `${q}: only the unexpired copies are received`);
      }
      const dead = await deliver.deadLetters(dl);
      assert.deepEqual(dead.map((d) => d.messageId), [idIn(gone, dl), idIn(iso, dl)]);
      assert.ok(dead.every((d) => d.reason === 'expired' && d.attempts === 0));
      assert.deepEqual(await deliver.deadLetters(drop), [], 'on_expire drop keeps no dead letter');
      await assert.rejects(api().publish(`${t}.a`, 5, { expiresAt: 'not a time' }), (e) => e.sqlstate === '22007');
      assert.equal((await deliver.peek(dl, { max: 10 })).length, 0, 'the refused publish sent nothing');
      await deliver.dropQueue(dl);
      await deliver.dropQueue(drop);
    });
  });
}

describe('publish in a transaction (SQL)', () => {
  it('the messages exist if and only if the transaction commits', async () => {
    const { t, eu, all } = await topic(deliver);
    await assert.rejects(deliver.transaction(async (tx) => {
      await tx.publish(`${t}.eu.a`, { rolled: 'back' });
      throw new Error('application failure');
    }), /application failure/);
    await deliver.transaction(async (tx) => {
      await tx.publish(`${t}.eu.a`, { kept: true });
    });
    for (const q of [eu, all]) {
      assert.deepEqual((await deliver.receive(q, { max: 10 })).map((m) => m.payload), [{ kept: true }]);
    }
    await deliver.dropQueue(eu);
    await deliver.dropQueue(all);
  });
});
