// Consumer over SQL: bounded concurrency, acks, nacks with the error,
// leases extended past the visibility timeout, graceful stop and SIGTERM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Consumer } from '../dist/index.js';
import { client, sleep, uniqueName, until } from './helpers.js';

let deliver;
before(() => {
  deliver = client({ max: 10 });
});
after(async () => {
  await deliver.close();
});

async function queue(prefix, options) {
  const q = uniqueName(prefix);
  await deliver.createQueue(q, options);
  return q;
}

async function drained(q) {
  const [m] = await deliver.metrics(q);
  return m.depth === 0 && m.inFlight === 0;
}

describe('Consumer', () => {
  it('runs at most `concurrency` handlers at once and acks each message', async () => {
    const q = await queue('conc');
    await deliver.sendBatch(q, Array.from({ length: 20 }, (_, i) => ({ payload: i })));
    let running = 0;
    let most = 0;
    const seen = [];
    const consumer = new Consumer(deliver, q, async (m) => {
      running++;
      most = Math.max(most, running);
      await sleep(50);
      seen.push(m.payload);
      running--;
    }, { concurrency: 4, wait: 1, handleSignals: false });
    consumer.start();
    await until(() => seen.length === 20, 15000, 'every message handled');
    await consumer.stop();
    assert.equal(most, 4, 'four at once, never more');
    assert.deepEqual(seen.sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
    assert.equal(consumer.stats.acked, 20);
    assert.ok(await until(() => drained(q), 5000, 'acks committed'));
    assert.deepEqual(await deliver.receive(q), [], 'nothing comes back');
    await deliver.dropQueue(q);
  });

  it('nacks with the error when the handler throws, until the dead letters', async () => {
    const q = await queue('throws', { maxAttempts: 3, retryBase: 0 });
    await deliver.send(q, 'bad');
    const attempts = [];
    const errors = [];
    const consumer = new Consumer(deliver, q, async (m) => {
      attempts.push(m.attempt);
      throw new Error(`kaput ${m.attempt}`);
    }, { wait: 0.2, handleSignals: false, onError: (e, m) => errors.push([e.message, m?.payload]) });
    consumer.start();
    await until(async () => (await deliver.deadLetters(q)).length === 1, 15000, 'the dead letter');
    await consumer.stop();
    assert.deepEqual(attempts, [1, 2, 3]);
    assert.equal(consumer.stats.nacked, 3);
    assert.deepEqual(errors, [['kaput 1', 'bad'], ['kaput 2', 'bad'], ['kaput 3', 'bad']], 'onError is told of each, with its message');
    const [dead] = await deliver.deadLetters(q);
    assert.equal(dead.reason, 'nacked');
    assert.equal(dead.lastError, 'kaput 3');
    await deliver.dropQueue(q);
  });

  it('extends the lease of a handler slower than the visibility timeout: not redelivered', async () => {
    const q = await queue('slow', { retryBase: 0 });
    await deliver.send(q, 'slow');
    let calls = 0;
    const consumer = new Consumer(deliver, q, async () => {
      calls++;
      await sleep(3500);
    }, { visibilityTimeout: 1, wait: 0.2, handleSignals: false });
    consumer.start();
    await until(() => calls === 1, 5000, 'the handler started');
    // another consumer of the group looks all along: the message stays leased
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
      assert.deepEqual(await deliver.receive(q, { wait: 0.3 }), [], 'not redelivered while the handler runs');
    }
    await until(() => consumer.stats.acked === 1, 5000, 'the ack');
    await consumer.stop();
    assert.equal(calls, 1);
    assert.equal(consumer.stats.errors, 0, 'every extension and the ack succeeded');
    assert.ok(await drained(q));
    await deliver.dropQueue(q);
  });

  it('stop(): cancels the long poll, lets running handlers finish and acks them', async () => {
    const q = await queue('stop');
    await deliver.sendBatch(q, [{ payload: 1 }, { payload: 2 }]);
    const started = [];
    const finished = [];
    const consumer = new Consumer(deliver, q, async (m) => {
      started.push(m.payload);
      await sleep(800);
      finished.push(m.payload);
    }, { concurrency: 3, wait: 30, handleSignals: false });
    consumer.start();
    await until(() => started.length === 2, 5000, 'both handlers started');
    const t0 = Date.now();
    await consumer.stop();
    assert.ok(Date.now() - t0 < 3000, 'the 30 s long poll did not hold the stop');
    assert.deepEqual(finished.sort(), [1, 2], 'running handlers finished');
    assert.equal(consumer.stats.acked, 2);
    assert.equal(consumer.isRunning, false);
    await deliver.send(q, 3);
    await sleep(300);
    const [m] = await deliver.receive(q);
    assert.equal(m.payload, 3, 'a stopped consumer takes nothing more');
    assert.equal(m.attempt, 1);
    await deliver.dropQueue(q);
  });

  it('stop() with a stopTimeout gives back what still runs: visible again at once', async () => {
    const q = await queue('release');
    await deliver.send(q, 'stuck');
    let aborted = null;
    const consumer = new Consumer(deliver, q, (m, ctx) => new Promise((resolve) => {
      ctx.signal.addEventListener('abort', () => {
        aborted = ctx.signal.reason?.message ?? 'aborted';
        resolve();
      });
    }), { wait: 5, stopTimeout: 0.5, handleSignals: false });
    consumer.start();
    await until(() => consumer.inFlight === 1, 5000, 'the handler started');
    await consumer.stop();
    assert.match(aborted, /stopped/, 'the handler\'s signal was aborted');
    assert.equal(consumer.stats.released, 1);
    assert.equal(consumer.stats.acked, 0);
    const [m] = await deliver.receive(q);
    assert.equal(m.payload, 'stuck', 'released with retry after 0');
    assert.equal(m.attempt, 2);
    await deliver.dropQueue(q);
  });

  it('handles at-most-once messages without acks', async () => {
    const q = await queue('amo', { guarantee: 'at_most_once' });
    await deliver.sendBatch(q, [{ payload: 'a' }, { payload: 'b' }]);
    const got = [];
    const consumer = new Consumer(deliver, q, (m) => {
      assert.equal(m.deliveryId, null);
      got.push(m.payload);
    }, { concurrency: 2, wait: 0.5, handleSignals: false });
    consumer.start();
    await until(() => got.length === 2, 5000, 'both');
    await consumer.stop();
    assert.deepEqual(got.sort(), ['a', 'b']);
    assert.equal(consumer.stats.errors, 0);
    await deliver.dropQueue(q);
  });

  it('SIGTERM: a consumer process stops gracefully, finishing its handlers', async () => {
    const q = await queue('sigterm');
    await deliver.sendBatch(q, [{ payload: 'x' }, { payload: 'y' }, { payload: 'z' }]);
    const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/consumer-child.js', import.meta.url))], {
      env: { ...process.env, QUEUE: q, HANDLER_MS: '1000' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = [];
    createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
    await until(() => lines.filter((l) => l.startsWith('handling')).length === 2, 10000, 'two handlers running');
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    const stopped = lines.find((l) => l.startsWith('stopped'));
    assert.ok(stopped, lines.join('\n'));
    const stats = JSON.parse(stopped.slice('stopped '.length));
    assert.equal(stats.acked, 2, 'both running handlers finished and were acked');
    const rest = await deliver.receive(q, { max: 10 });
    assert.equal(rest.length, 1, 'the third message was never taken');
    assert.equal(rest[0].attempt, 1);
    await deliver.dropQueue(q);
  });
});
