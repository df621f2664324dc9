// The console's tests in a real browser: Debian's chromium, headless,
// driven by puppeteer-core, against the deliverd and Postgres that test.sh
// started (CONSOLE_URL, PGHOST...). Each test drives one page or one
// action, checks what the page shows against what the database says, and
// saves a screenshot as CONSOLE_RESULTS/NAME.png. One line per test:
//   console/NAME ... ok      (or ... FAILED, after its output)
//   node test/run.mjs --list     the tests
//   node test/run.mjs [NAME...]  run them (all by default)
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const tests = new Map();
const test = (name, fn) => tests.set(name, fn);

const URL_ = process.env.CONSOLE_URL;
const RESULTS = process.env.CONSOLE_RESULTS;
const SECRET = process.env.CONSOLE_JWT_SECRET;

// ---- helpers ------------------------------------------------------------

// one SQL statement as the test's superuser: its rows, fields split by |
function sql(query) {
  const out = execFileSync(process.env.PSQL || 'psql', ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query],
    { encoding: 'utf8', env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' } });
  return out.split('\n').filter((l) => l !== '');
}
const sqlOne = (q) => sql(q)[0];

const b64url = (s) => Buffer.from(s).toString('base64url');
function jwt(claims, secret = SECRET) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
const now = () => Math.floor(Date.now() / 1000);
const operator = () => jwt({ role: 'console_operator', exp: now() + 3600 });
const readOnlyOperator = () => jwt({ role: 'console_operator', exp: now() + 3600, read_only: true });

let browser;
async function openPage(name) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1360, height: 900 });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(`console: ${m.text()}`); });
  page.shot = async (suffix = '') => page.screenshot({ path: join(RESULTS, `${name}${suffix}.png`), fullPage: true });
  return page;
}

async function signIn(page, token, hash = '') {
  await page.goto(`${URL_}/ui/?poll=500${hash}`, { waitUntil: 'load' });
  await page.waitForSelector('#token');
  await page.type('#token', token);
  await page.click('#signin');
  await page.waitForSelector('#role');
}

async function go(page, hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent.trim());
const texts = (page, sel) => page.$$eval(sel, (es) => es.map((e) => e.textContent.trim()));
const num = (s) => Number(String(s).replace(/,/g, ''));

// wait until fn() (in node) holds, up to ms
async function until(fn, ms = 15000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    try { if (await fn()) return; } catch (e) { if (Date.now() > end) throw e; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- the data the pages show ----------------------------------------------

function setUp() {
  for (const q of [
    `SELECT deliver.create_queue('orders', max_attempts => 3, retry_base => '0')`,
    `SELECT deliver.create_consumer_group('orders', 'audit')`,
    `SELECT deliver.create_queue('billing', max_attempts => 1, retry_base => '0')`,
    `SELECT deliver.create_queue('payments', 'exactly_once')`,
    `SELECT deliver.create_queue('secret')`,
    `SELECT deliver.grant_queue(q, 'console_operator', 'all') FROM unnest(ARRAY['orders', 'billing', 'payments']) q`,
    `SELECT deliver.send_batch('orders', array_agg(jsonb_build_object('order', i, 'item', 'book ' || i)),
                               ordering_keys => array_agg('customer-' || (i % 3))) FROM generate_series(1, 12) i`,
    `SELECT deliver.send('orders', '{"order": 99, "note": "later"}', delay => '1 hour')`,
    `SELECT count(*) FROM deliver.receive('orders', 2, visibility_timeout => '1 hour')`,
    `SELECT deliver.nack('orders', delivery_id, 'timeout calling the warehouse', '0') FROM deliver.receive('orders', 1)`,
    `SELECT deliver.send_batch('billing', array_agg(jsonb_build_object('invoice', 'INV-' || i, 'amount', i * 10)))
       FROM generate_series(1, 4) i`,
    `SELECT count(*) FILTER (WHERE deliver.nack('billing', delivery_id, 'card declined for ' || (payload->>'invoice'), '0'))
       FROM deliver.receive('billing', 10)`,
    `SELECT count(*) FROM deliver.receive('billing', 10)`,
    `SELECT deliver.send('payments', jsonb_build_object('payment', i), idempotency_key => 'pay-' || i)
       FROM generate_series(1, 3) i`,
    `SELECT deliver.send('secret', '{"not": "yours"}')`,
    `SELECT deliver.set_alert('orders', 'depth', 5)`,
    `SELECT deliver.set_alert('billing', 'dead_letters', 10)`,
    `SELECT deliver.create_push_subscription('orders', 'console_push')`,
    `SELECT deliver.send('orders', '{"order": 13}')`,
  ]) sql(q);
}

// ---- the tests ---------------------------------------------------------------

test('ui_files', async () => {
  // the files: no token needed, fixed types, safe headers; nothing else
  let r = await fetch(`${URL_}/ui`, { redirect: 'manual' });
  assert.equal(r.status, 308);
  assert.equal(r.headers.get('location'), '/ui/');
  r = await fetch(`${URL_}/ui/`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  assert.match(r.headers.get('content-security-policy'), /default-src 'self'/);
  assert.match(await r.text(), /<script src="app.js"/);
  for (const [path, type] of [['app.js', 'text/javascript; charset=utf-8'], ['app.css', 'text/css; charset=utf-8'],
    ['uplot.css', 'text/css; charset=utf-8'], ['index.html', 'text/html; charset=utf-8'],
    ['favicon.svg', 'image/svg+xml']]) {
    r = await fetch(`${URL_}/ui/${path}`);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get('content-type'), type, path);
  }
  for (const path of ['/ui/..%2F..%2Fdeliverd.conf', '/ui/%2e%2e/deliverd.conf', '/ui/.gitignore',
    '/ui/nope.html', '/ui/app.js/x', '/ui/..', '/ui/%00app.js', '/ui/app.js%00', '/ui/build.mjs']) {
    r = await fetch(`${URL_}${path}`);
    assert.equal(r.status, 404, path);
  }
  r = await fetch(`${URL_}/ui/`, { method: 'POST' });
  assert.equal(r.status, 405);
  // the data needs a token
  r = await fetch(`${URL_}/v1/whoami`);
  assert.equal(r.status, 401);
  r = await fetch(`${URL_}/v1/metrics`);
  assert.equal(r.status, 401);
  r = await fetch(`${URL_}/v1/whoami`, { headers: { Authorization: `Bearer ${operator()}` } });
  assert.deepEqual(await r.json(), { role: 'console_operator', read_only: false, cluster: false });
  r = await fetch(`${URL_}/v1/whoami`, { headers: { Authorization: `Bearer ${readOnlyOperator()}` } });
  assert.deepEqual(await r.json(), { role: 'console_operator', read_only: true, cluster: false });
  // a read_only claim that is no boolean is no token
  r = await fetch(`${URL_}/v1/whoami`,
    { headers: { Authorization: `Bearer ${jwt({ role: 'console_operator', read_only: 'yes' })}` } });
  assert.equal(r.status, 401);
});

test('bad_token', async (page) => {
  // a token that is no token, one signed with another secret, one expired
  for (const [token, why] of [
    ['not-a-token-at-all-0123456789', /invalid token/],
    [jwt({ role: 'console_operator' }, 'another secret of at least 32 characters!'), /invalid token signature/],
    [jwt({ role: 'console_operator', exp: now() - 10 }), /token expired/],
  ]) {
    await page.goto(`${URL_}/ui/`, { waitUntil: 'load' });
    await page.evaluate(() => sessionStorage.clear());
    await page.goto(`${URL_}/ui/`, { waitUntil: 'load' });
    await page.waitForSelector('#token');
    await page.type('#token', token);
    await page.click('#signin');
    await page.waitForSelector('#login-error');
    const msg = await text(page, '#login-error');
    assert.match(msg, /The token was refused/);
    assert.match(msg, why);
    assert.equal(await page.$('#role'), null, 'not signed in');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the refused token is not kept');
  }
  await page.shot();
  // the console's refusal is deliverd's: a 401 was logged for each
  page.errors = page.errors.filter((e) => !/401/.test(e));
});

test('overview', async (page) => {
  await signIn(page, operator());
  await page.waitForSelector('#overview-table tr[data-queue="orders"][data-group="default"]');
  // the queues of the token's role only: not "secret"
  const queues = await page.$$eval('#overview-table tbody tr', (rs) => rs.map((r) => r.dataset.queue));
  assert.deepEqual([...new Set(queues)].sort(), ['billing', 'orders', 'payments']);
  assert.equal(queues.length, 4, 'orders has two groups');
  // the figures are the database's
  const row = 'tr[data-queue="orders"][data-group="default"]';
  const [depth, inFlight, delayed, dead] = sqlOne(
    `SELECT depth, in_flight, delayed, dead_letters FROM deliver.metrics('orders') WHERE consumer_group = 'default'`)
    .split('|').map(Number);
  assert.equal(inFlight, 2);
  assert.equal(delayed, 1);
  await until(async () => num(await text(page, `${row} .depth`)) === depth, 5000, 'depth');
  assert.equal(num(await text(page, `${row} .in-flight`)), inFlight);
  assert.equal(num(await text(page, `${row} .delayed`)), delayed);
  assert.equal(num(await text(page, `tr[data-queue="billing"] .dead`)), 4);
  assert.equal(dead, 0);
  assert.match(await text(page, `${row} .oldest`), /s$/);
  // rates: messages sent now show as a send rate, and the depth follows
  sql(`SELECT deliver.send_batch('orders', array_agg(jsonb_build_object('burst', i))) FROM generate_series(1, 20) i`);
  await page.waitForFunction((sel) => parseFloat(document.querySelector(sel)?.textContent) > 0,
    { polling: 50, timeout: 10000 }, `${row} .sent-rate`);
  await until(async () => num(await text(page, `${row} .depth`)) === depth + 20, 5000, 'depth + 20');
  await page.waitForSelector('#overview-chart canvas');
  await new Promise((r) => setTimeout(r, 4000));   // more points on the chart
  await page.shot();
});

test('queue_detail', async (page) => {
  await signIn(page, operator(), '#/queue/orders');
  await page.waitForSelector('#queue-settings');
  const settings = await text(page, '#queue-settings');
  assert.match(settings, /guarantee\s*at_least_once/);
  assert.match(settings, /max attempts\s*3/);
  assert.match(settings, /priorities\s*false/);
  assert.match(settings, /max depth\s*-/);
  await page.waitForSelector('#groups-table tr[data-group="audit"]');
  assert.deepEqual(await page.$$eval('#groups-table tbody tr', (rs) => rs.map((r) => r.dataset.group)).then((g) => g.sort()),
    ['audit', 'default']);
  // three charts per group, drawn: the depth line is on the canvas
  await page.waitForFunction(() => document.querySelectorAll('[data-chart] canvas').length === 6, { timeout: 10000 });
  sql(`SELECT deliver.send_batch('orders', array_agg(jsonb_build_object('more', i))) FROM generate_series(1, 10) i`);
  await new Promise((r) => setTimeout(r, 2500));    // a few samples, before and after
  const drawn = await page.$eval('[data-chart="default/counts"] canvas', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - 45) < 12 && Math.abs(d[i + 1] - 93) < 12 && Math.abs(d[i + 2] - 159) < 12 && d[i + 3] > 200) n++;
    }
    return n;
  });
  assert.ok(drawn > 20, `the depth series is drawn (${drawn} pixels)`);
  // the rates chart's legend shows a send rate once the batch came
  const depth = Number(sqlOne(`SELECT depth FROM deliver.metrics('orders') WHERE consumer_group = 'audit'`));
  await until(async () => num(await page.$eval('#groups-table tr[data-group="audit"] td:nth-child(2)',
    (e) => e.textContent)) === depth, 5000, 'audit depth');
  await page.shot();
});

test('dead_letters', async (page) => {
  await signIn(page, operator(), '#/dead-letters/billing');
  await page.waitForSelector('#dead-letters-table');
  const want = sql(`SELECT message_id, group_name, payload->>'invoice', reason, last_error, attempts
                      FROM deliver.dead_letters('billing') ORDER BY dead_at, message_id`);
  assert.equal(want.length, 4);
  const rows = await page.$$eval('#dead-letters-table tbody tr', (rs) => rs.map((r) => ({
    id: r.dataset.messageId, group: r.dataset.group, payload: r.querySelector('.payload').textContent,
    reason: r.querySelector('.reason').textContent, error: r.querySelector('.last-error').textContent,
    attempts: r.querySelector('.attempts').textContent,
  })));
  assert.equal(rows.length, want.length);
  rows.forEach((r, i) => {
    const [id, group, invoice, reason, error, attempts] = want[i].split('|');
    assert.equal(r.id, id);
    assert.equal(r.group, group);
    assert.ok(r.payload.includes(invoice), `payload of ${id} shows ${invoice}`);
    assert.equal(r.reason, reason);
    assert.equal(r.error, error);
    assert.equal(r.attempts, attempts);
  });
  assert.equal(rows[0].reason, 'nacked');
  assert.match(rows[0].error, /^card declined for INV-/);
  // the group filter
  await page.waitForSelector('#dl-group option[value="default"]');
  await page.select('#dl-group', 'default');
  await page.waitForFunction(() => location.hash === '#/dead-letters/billing/default');
  await page.waitForSelector('#dead-letters-table');
  await page.waitForSelector('#redrive');    // an operator may redrive and delete
  await page.waitForSelector('#delete');
  assert.equal(await page.$('#read-only-note'), null);
  await page.shot();
});

test('redrive', async (page) => {
  const [id, invoice] = sqlOne(`SELECT message_id, payload->>'invoice' FROM deliver.dead_letters('billing')
                                 ORDER BY dead_at, message_id LIMIT 1`).split('|');
  const before = Number(sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing')`));
  await signIn(page, operator(), '#/dead-letters/billing');
  await page.waitForSelector(`#dead-letters-table tr[data-message-id="${id}"] input.pick`);
  await page.waitForSelector('#redrive');    // the toolbar comes with the list of queues
  assert.ok(await page.$eval('#redrive', (b) => b.disabled), 'nothing selected: no redrive');
  await page.click(`#dead-letters-table tr[data-message-id="${id}"] input.pick`);
  await page.waitForFunction(() => !document.querySelector('#redrive').disabled);
  await page.click('#redrive');
  await page.waitForSelector('#action-result');
  assert.equal(await text(page, '#action-result'), 'Redriven: 1.');
  await page.waitForFunction((i) => !document.querySelector(`#dead-letters-table tr[data-message-id="${i}"]`),
    {}, id);
  // the database: one dead letter fewer, and its message is back in the queue
  assert.equal(Number(sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing')`)), before - 1);
  assert.equal(sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing') WHERE message_id = ${id}`), '0');
  assert.equal(sqlOne(`SELECT count(*) FROM deliver.peek('billing', 100) WHERE payload->>'invoice' = '${invoice}'`), '1');
  await page.shot();
});

test('delete_dead_letter', async (page) => {
  const [id, invoice] = sqlOne(`SELECT message_id, payload->>'invoice' FROM deliver.dead_letters('billing')
                                 ORDER BY dead_at, message_id LIMIT 1`).split('|');
  const before = Number(sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing')`));
  const depth = sqlOne(`SELECT depth FROM deliver.metrics('billing')`);
  await signIn(page, operator(), '#/dead-letters/billing');
  await page.waitForSelector(`#dead-letters-table tr[data-message-id="${id}"] input.pick`);
  await page.waitForSelector('#delete');
  await page.click(`#dead-letters-table tr[data-message-id="${id}"] input.pick`);
  await page.waitForFunction(() => !document.querySelector('#delete').disabled);
  await page.click('#delete');
  // it asks first; cancel keeps it
  await page.waitForSelector('#cancel-delete');
  await page.click('#cancel-delete');
  await page.waitForSelector('#delete');
  assert.equal(Number(sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing')`)), before);
  await page.click('#delete');
  await page.waitForSelector('#confirm-delete');
  await page.shot('-confirm');
  await page.click('#confirm-delete');
  await page.waitForSelector('#action-result');
  assert.equal(await text(page, '#action-result'), 'Deleted: 1.');
  await page.waitForFunction((i) => !document.querySelector(`#dead-letters-table tr[data-message-id="${i}"]`),
    {}, id);
  // gone for good: not a dead letter, not sent again
  assert.equal(Number(sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing')`)), before - 1);
  assert.equal(sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing') WHERE message_id = ${id}`), '0');
  assert.equal(sqlOne(`SELECT count(*) FROM deliver.peek('billing', 100) WHERE payload->>'invoice' = '${invoice}'`), '0');
  assert.equal(sqlOne(`SELECT depth FROM deliver.metrics('billing')`), depth);
  await page.shot();
});

test('peek', async (page) => {
  const state = () => sqlOne(`SELECT string_agg(concat_ws(':', consumer_group, depth, in_flight), ' ' ORDER BY 1)
                                FROM deliver.metrics('orders')`);
  const before = state();
  await signIn(page, operator(), '#/peek/orders/default');
  await page.waitForSelector('#peek-table');
  await page.waitForSelector('#peek-max');    // the toolbar comes with the list of queues
  await page.$eval('#peek-max', (e) => { e.value = '5'; });
  await page.click('#peek');
  await page.waitForFunction(() => document.querySelectorAll('#peek-table tbody tr').length === 5);
  const ids = await page.$$eval('#peek-table tbody tr', (rs) => rs.map((r) => r.dataset.messageId));
  assert.deepEqual(ids, sql(`SELECT message_id FROM deliver.peek('orders', 5)`));
  // the nacked message comes first, marked, with its next attempt
  const first = await texts(page, '#peek-table tbody tr:first-child td');
  assert.equal(first[0], sqlOne(`SELECT message_id FROM deliver.peek('orders', 1) WHERE redelivery`));
  assert.equal(first[3], '2');
  assert.equal(first[5], 'redelivery');
  assert.equal(await page.$$eval('#peek-table .badge', (b) => b.length), 1, 'one redelivery');
  await page.shot();
  // peeking leased nothing and moved nothing
  assert.equal(state(), before);
  assert.equal(sqlOne(`SELECT in_flight FROM deliver.metrics('orders') WHERE consumer_group = 'default'`), '2');
  // the other group starts at message 1
  await page.waitForSelector('#peek-group option[value="audit"]');
  await page.select('#peek-group', 'audit');
  await page.waitForFunction(() => location.hash === '#/peek/orders/audit');
  await page.waitForFunction(() => document.querySelector('#peek-table tbody tr')?.dataset.messageId === '1');
});

test('workers_alerts', async (page) => {
  // the worker serves this database; the depth alert of orders fires
  await until(() => sqlOne(`SELECT firing FROM deliver.list_alerts('orders')`) === 't', 20000, 'the alert to fire');
  await signIn(page, operator(), '#/workers');
  await page.waitForSelector('#workers-table tr[data-database="console"]');
  const runs = await text(page, '#workers-table tr[data-database="console"] td:nth-child(6)');
  assert.ok(num(runs) > 0, `the worker ran (${runs})`);
  await page.waitForSelector('#alerts-table tr[data-queue="orders"][data-metric="depth"] .firing');
  assert.equal(await page.$('#alerts-table tr[data-queue="billing"] .firing'), null, 'billing is below its threshold');
  assert.equal(await text(page, '#alerts-table tr[data-queue="billing"] td:nth-child(3)'), '10');
  await page.shot();
  // a role that may not read the workers gets the database's refusal
  const p2 = await browser.newPage();
  try {
    await signIn(p2, jwt({ role: 'console_stranger', exp: now() + 600 }), '#/workers');
    await p2.waitForSelector('.error');
    assert.match(await text(p2, '.error'), /403: permission denied for function worker_status/);
  } finally { await p2.close(); }
});

test('push', async (page) => {
  await signIn(page, operator(), '#/push');
  await page.waitForSelector('#push-table tr[data-subscription="console_push"]');
  const cells = await texts(page, '#push-table tr[data-subscription="console_push"] td');
  assert.equal(cells[1], 'orders');
  assert.equal(cells[3], 'idle');
  const lag = Number(sqlOne(`SELECT lag_bytes FROM deliver.push_metrics() WHERE subscription_name = 'console_push'`));
  assert.ok(lag > 0, 'the subscription lags');
  assert.match(cells[5], /^\d+(\.\d)? (B|kB|MB)$/);
  await page.shot();
});

test('read_only', async (page) => {
  const before = sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing')`);
  await signIn(page, readOnlyOperator(), '#/dead-letters/billing');
  await page.waitForSelector('#read-only');
  await page.waitForSelector('#dead-letters-table');
  await page.waitForSelector('#read-only-note');
  assert.equal(await page.$('#redrive'), null, 'no redrive button');
  assert.equal(await page.$('#delete'), null, 'no delete button');
  assert.equal(await page.$('input.pick'), null, 'nothing to select');
  await page.shot();
  // deliverd refuses the actions of a read-only token, whatever the page shows
  const answers = await page.evaluate(async (ids) => {
    const token = sessionStorage.getItem('deliver.console.token');
    const call = async (method, path, body) => {
      const r = await fetch(path, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
                                    body: JSON.stringify(body) });
      return [r.status, (await r.json()).sqlstate];
    };
    return [
      await call('POST', '/v1/queues/billing/redrive', { message_ids: ids }),
      await call('DELETE', '/v1/queues/billing/dead-letters', { message_ids: ids }),
      await call('POST', '/v1/queues/billing/receive?max=10', undefined),
      await call('POST', '/v1/queues/billing/messages', { payload: {} }),
    ];
  }, sql(`SELECT message_id FROM deliver.dead_letters('billing')`));
  assert.deepEqual(answers, [[403, '42501'], [403, '42501'], [403, '42501'], [403, '42501']]);
  assert.equal(sqlOne(`SELECT count(*) FROM deliver.dead_letters('billing')`), before);
  // it still reads: peek, the overview
  await go(page, '#/peek/orders/default');
  await page.waitForSelector('#peek-table');
  page.errors = page.errors.filter((e) => !/403/.test(e));
});

// ---- the runner ------------------------------------------------------------------

const args = process.argv.slice(2);
if (args[0] === '--list') {
  for (const name of tests.keys()) console.log(`console/${name}`);
  process.exit(0);
}
const selected = args.length ? args.map((a) => a.replace(/^console\//, '')) : [...tests.keys()];
for (const n of selected) if (!tests.has(n)) { console.error(`console: no test ${n}`); process.exit(2); }

const puppeteer = (await import('puppeteer-core')).default;
setUp();
browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
let failed = 0;
for (const name of selected) {
  const page = await openPage(name);
  try {
    await tests.get(name)(page);
    assert.deepEqual(page.errors, [], 'no error in the page');
    console.log(`console/${name} ... ok`);
  } catch (e) {
    failed++;
    console.log(e && e.stack ? e.stack : String(e));
    for (const err of page.errors) console.log(err);
    try { await page.shot('-failed'); } catch { /* the page is gone */ }
    console.log(`console/${name} ... FAILED`);
  } finally {
    await page.close();
  }
}
await browser.close();
process.exit(failed ? 1 : 0);
