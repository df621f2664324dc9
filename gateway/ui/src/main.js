// The deliver console: a single page served by deliverd at /ui. Every
// figure comes from deliverd's /v1 routes, called with the token the user
// gives (kept in this tab's sessionStorage only), so a console user can do
// what that token's role may do through the API, and nothing more. A
// read-only token (or a deliverd with read_only = on) sees no action
// buttons, and deliverd refuses the actions anyway.
import uPlot from 'uplot';

const TOKEN_KEY = 'deliver.console.token';
const POLL_MS = Number(new URLSearchParams(location.search).get('poll')) || 2000;
const HISTORY = 900;          // samples kept per queue and group (30 min at 2 s)

// ---- state ---------------------------------------------------------------

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  who: null,                  // {role, read_only, cluster}
  metrics: [],                // the last GET /v1/metrics
  history: new Map(),         // "queue\u0000group" -> {t: [], depth: [], ...}
  lastPoll: null,
  pollError: null,
  timer: null,
  page: null,                 // {render, refresh} of the page shown
};

// ---- HTTP ----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  let data = null;
  const text = await r.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text }; }
  }
  if (!r.ok) {
    if (r.status === 401) signOut(`The token was refused: ${(data && data.error) || 'HTTP 401'}.`);
    throw new ApiError(r.status, data);
  }
  return data;
}

const enc = encodeURIComponent;

// ---- DOM helpers ----------------------------------------------------------

// h('tag.class#id', {attrs}, children...): text is always set as text
function h(spec, attrs, ...children) {
  const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/.exec(spec);
  const el = document.createElement(m[1]);
  for (const part of m[2].match(/[.#][\w-]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const $ = (sel) => document.querySelector(sel);

function errorBox(e) {
  const b = (e && e.body) || {};
  return h('div.error', { role: 'alert' },
    h('strong', e instanceof ApiError ? `${e.status}: ` : ''), e.message || String(e),
    b.sqlstate ? ` (SQLSTATE ${b.sqlstate})` : '',
    b.hint ? h('div.muted', b.hint) : null);
}

function fmtNum(n) {
  if (n === null || n === undefined) return '—';
  return Number(n).toLocaleString('en-US');
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Number(seconds);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${(s / 86400).toFixed(1)} d`;
}

function fmtRate(r) {
  if (r === null || r === undefined || Number.isNaN(r)) return '—';
  return `${r < 10 ? r.toFixed(2) : r.toFixed(0)}/s`;
}

function fmtBytes(b) {
  if (b === null || b === undefined) return '—';
  const n = Number(b);
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GB`;
}

function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function json(v) {
  return v === null || v === undefined ? '' : JSON.stringify(v);
}

// ---- metrics polling and history -----------------------------------------

const key = (q, g) => `${q}\u0000${g}`;

function series(q, g) {
  let s = state.history.get(key(q, g));
  if (!s) {
    s = { t: [], depth: [], in_flight: [], delayed: [], dead_letters: [], oldest: [],
          sent_rate: [], acked_rate: [], last: null };
    state.history.set(key(q, g), s);
  }
  return s;
}

// rates from the counters of two samples; a counter that went down (the
// server restarted) gives no rate
function rate(now, prev, field, dt) {
  if (!prev || dt <= 0 || now[field] < prev[field]) return null;
  return (now[field] - prev[field]) / dt;
}

function record(rows, t) {
  for (const m of rows) {
    const s = series(m.queue_name, m.consumer_group);
    const dt = s.last ? t - s.last.t : 0;
    const sr = rate(m, s.last && s.last.m, 'sent_total', dt);
    const ar = rate(m, s.last && s.last.m, 'acked_total', dt);
    s.t.push(t);
    s.depth.push(m.depth);
    s.in_flight.push(m.in_flight);
    s.delayed.push(m.delayed);
    s.dead_letters.push(m.dead_letters);
    s.oldest.push(m.oldest_age_seconds ?? 0);
    s.sent_rate.push(sr);
    s.acked_rate.push(ar);
    s.rates = { sent: sr, acked: ar };
    s.last = { t, m };
    if (s.t.length > HISTORY) {
      for (const k of ['t', 'depth', 'in_flight', 'delayed', 'dead_letters', 'oldest', 'sent_rate', 'acked_rate']) {
        s[k].shift();
      }
    }
  }
}

async function poll() {
  try {
    const rows = await api('GET', '/v1/metrics');
    state.metrics = rows;
    state.lastPoll = new Date();
    state.pollError = null;
    record(rows, Date.now() / 1000);
  } catch (e) {
    state.pollError = e;
  }
  renderStatus();
  if (state.page && state.page.refresh) {
    try { await state.page.refresh(); } catch (e) { /* the page shows its own errors */ }
  }
}

function startPolling() {
  stopPolling();
  poll();
  state.timer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

function renderStatus() {
  const el = $('#status');
  if (!el) return;
  if (state.pollError) clear(el, h('span.error', `Metrics: ${state.pollError.message}`));
  else if (state.lastPoll) {
    clear(el, `Metrics every ${POLL_MS / 1000} s, last at ${state.lastPoll.toLocaleTimeString('en-GB')}` +
      ` · ${state.history.size} queue/group series kept in this tab`);
  }
}

// ---- session -----------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.who = null;
  stopPolling();
  state.history.clear();
  renderLogin(message);
}

function renderLogin(message) {
  clear($('#nav'));
  clear($('#who'));
  clear($('#status'));
  state.page = null;
  const input = h('input#token', { type: 'password', autocomplete: 'off', placeholder: 'Bearer token' });
  const form = h('form.card.login', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      state.token = input.value.trim();
      if (!state.token) return;
      await signIn();
    },
  },
  h('h1', 'deliver console'),
  h('p.muted', 'Sign in with a deliverd token (a JWT, or a token of the token file). ' +
    'It stays in this tab only, and every request is made with it.'),
  message ? h('div.error#login-error', { role: 'alert' }, message) : null,
  h('label', { for: 'token' }, 'Token'),
  input,
  h('button.primary#signin', { type: 'submit' }, 'Sign in'));
  clear($('#main'), form);
  input.focus();
}

async function signIn() {
  try {
    const who = await api('GET', '/v1/whoami');
    state.who = who;
    sessionStorage.setItem(TOKEN_KEY, state.token);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) renderLogin(`deliverd did not answer: ${e.message}`);
    return;
  }
  renderChrome();
  startPolling();
  route();
}

function renderChrome() {
  const links = [
    ['#/', 'Overview'],
    ['#/dead-letters', 'Dead letters'],
    ['#/peek', 'Peek'],
    ['#/workers', 'Workers & alerts'],
    ['#/push', 'Push'],
  ];
  clear($('#nav'), links.map(([href, text]) => h('a', { href, 'data-nav': href }, text)));
  clear($('#who'),
    h('span#role', `role ${state.who.role}`),
    state.who.read_only ? h('span.badge.ro#read-only', 'read-only') : null,
    h('button#signout', { type: 'button', onclick: () => signOut() }, 'Sign out'));
}

const readOnly = () => !state.who || state.who.read_only;

// ---- routing -------------------------------------------------------------------

function route() {
  if (!state.who) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const [page, ...args] = parts;
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('data-nav').replace(/^#\/?/, '');
    a.classList.toggle('active', target === (page === 'queue' ? '' : page || ''));
  }
  const pages = {
    '': overviewPage,
    queue: queuePage,
    'dead-letters': deadLettersPage,
    peek: peekPage,
    workers: workersPage,
    push: pushPage,
  };
  const make = pages[page] || notFoundPage;
  if (state.page && state.page.destroy) state.page.destroy();
  const main = $('#main');
  clear(main);
  state.page = make(main, ...args);
}

window.addEventListener('hashchange', route);

function notFoundPage(main) {
  append(main, h('h1', 'No such page'), h('p', h('a', { href: '#/' }, 'To the overview')));
  return {};
}

// ---- queue list, shared by the pages that pick a queue --------------------------

async function queueNames() {
  const qs = await api('GET', '/v1/queues');
  return qs.map((q) => q.queue_name).sort();
}

async function groupNames(queue) {
  const gs = await api('GET', `/v1/queues/${enc(queue)}/groups`);
  return gs.map((g) => g.consumer_group ?? g.group_name).sort();
}

function select(id, options, value, onchange, withAll) {
  const s = h(`select#${id}`, { onchange: (ev) => onchange(ev.target.value) },
    withAll ? h('option', { value: '' }, withAll) : null,
    options.map((o) => h('option', { value: o }, o)));
  s.value = value ?? '';
  return s;
}

// ---- overview ------------------------------------------------------------------------

function overviewPage(main) {
  const body = h('div');
  const chartBox = h('div.card.chart');
  append(main, h('h1', 'Queues'), body, h('h2', 'All queues'), chartBox);
  let chart = null;

  function totals() {
    // the sum of every series, on the time points of the longest one
    let longest = null;
    for (const s of state.history.values()) if (!longest || s.t.length > longest.t.length) longest = s;
    if (!longest) return null;
    const n = longest.t.length;
    const out = { t: longest.t.slice(), depth: new Array(n).fill(0), in_flight: new Array(n).fill(0),
                  dead_letters: new Array(n).fill(0) };
    for (const s of state.history.values()) {
      const off = n - s.t.length;
      for (let i = 0; i < s.t.length; i++) {
        out.depth[off + i] += s.depth[i];
        out.in_flight[off + i] += s.in_flight[i];
        out.dead_letters[off + i] += s.dead_letters[i];
      }
    }
    return out;
  }

  function render() {
    const rows = state.metrics;
    if (!rows.length) {
      clear(body, h('p.muted#no-queues', state.pollError ? '' : 'No queue this token may read the metrics of.'));
    } else {
      clear(body, h('table#overview-table',
        h('thead', h('tr', ['queue', 'group'].map((c) => h('th', c)),
          ['depth', 'in flight', 'delayed', 'dead letters', 'oldest age', 'sent', 'acked'].map((c) => h('th.num', c)))),
        h('tbody', rows.map((m) => {
          const s = state.history.get(key(m.queue_name, m.consumer_group));
          const r = (s && s.rates) || {};
          return h('tr', { 'data-queue': m.queue_name, 'data-group': m.consumer_group },
            h('td', h('a', { href: `#/queue/${enc(m.queue_name)}` }, m.queue_name)),
            h('td', m.consumer_group),
            h('td.num.depth', fmtNum(m.depth)),
            h('td.num.in-flight', fmtNum(m.in_flight)),
            h('td.num.delayed', fmtNum(m.delayed)),
            h('td.num.dead', m.dead_letters > 0
              ? h('a', { href: `#/dead-letters/${enc(m.queue_name)}/${enc(m.consumer_group)}` }, fmtNum(m.dead_letters))
              : '0'),
            h('td.num.oldest', fmtAge(m.oldest_age_seconds)),
            h('td.num.sent-rate', fmtRate(r.sent)),
            h('td.num.acked-rate', fmtRate(r.acked)));
        }))));
    }
    const t = totals();
    if (!t) return;
    const data = [t.t, t.depth, t.in_flight, t.dead_letters];
    if (!chart) {
      clear(chartBox, h('h3', 'Depth, in flight and dead letters, all queues'));
      chart = new uPlot(chartOpts(chartBox, [
        { label: 'depth', stroke: '#2d5d9f' },
        { label: 'in flight', stroke: '#1a7f37' },
        { label: 'dead letters', stroke: '#b3261e' },
      ]), data, chartBox);
      chart.root.id = 'overview-chart';
    } else chart.setData(data);
  }
  render();
  return { refresh: render, destroy: () => chart && chart.destroy() };
}

function chartOpts(box, series, yLabel) {
  const width = Math.max(480, Math.min(box.clientWidth || 640, 1300) - 24);
  return {
    width,
    height: 220,
    series: [{}, ...series.map((s) => ({ width: 2, ...s }))],
    axes: [{}, { label: yLabel, size: 60 }],
    scales: { x: { time: true } },
    legend: { live: true },
  };
}

// ---- queue detail --------------------------------------------------------------------

function queuePage(main, queue) {
  const info = h('div.card');
  const groups = h('div');
  const charts = h('div.charts');
  append(main, h('h1', 'Queue ', h('span#queue-name', queue)),
    h('div.toolbar',
      h('a', { href: `#/dead-letters/${enc(queue)}` }, 'Dead letters'),
      h('a', { href: `#/peek/${enc(queue)}` }, 'Peek')),
    info, h('h2', 'Consumer groups'), groups, h('h2', 'Over time'),
    h('p.muted', `Sampled every ${POLL_MS / 1000} s while the console is open; the history lives in this tab.`),
    charts);
  const plots = new Map();

  api('GET', `/v1/queues/${enc(queue)}`).then((q) => {
    clear(info, h('dl.kv#queue-settings',
      ['guarantee', 'fifo', 'priorities', 'visibility_timeout', 'max_attempts', 'dedup_window', 'retry_base',
        'retry_max', 'message_ttl', 'on_expire', 'max_depth', 'overflow', 'ack_commit', 'archive_retention',
        'created_at'].filter((k) => k in q)
        .map((k) => [h('dt', k.replace(/_/g, ' ')), h('dd', q[k] === null ? '-' : String(q[k]))])));
  }, (e) => clear(info, errorBox(e)));

  function render() {
    const rows = state.metrics.filter((m) => m.queue_name === queue);
    clear(groups, rows.length ? h('table#groups-table',
      h('thead', h('tr', h('th', 'group'),
        ['depth', 'in flight', 'delayed', 'dead letters', 'oldest age', 'sent', 'acked', 'dead (total)']
          .map((c) => h('th.num', c)))),
      h('tbody', rows.map((m) => {
        const s = state.history.get(key(queue, m.consumer_group));
        const r = (s && s.rates) || {};
        return h('tr', { 'data-group': m.consumer_group },
          h('td', m.consumer_group),
          h('td.num', fmtNum(m.depth)), h('td.num', fmtNum(m.in_flight)), h('td.num', fmtNum(m.delayed)),
          h('td.num', fmtNum(m.dead_letters)), h('td.num', fmtAge(m.oldest_age_seconds)),
          h('td.num', fmtRate(r.sent)), h('td.num', fmtRate(r.acked)), h('td.num', fmtNum(m.dead_total)));
      }))) : h('p.muted', 'No metrics for this queue (it does not exist, or this token may not read them).'));
    for (const m of rows) {
      const s = state.history.get(key(queue, m.consumer_group));
      if (!s) continue;
      const sets = [
        ['counts', `${m.consumer_group}: depth, in flight, delayed, dead letters`,
          [{ label: 'depth', stroke: '#2d5d9f' }, { label: 'in flight', stroke: '#1a7f37' },
            { label: 'delayed', stroke: '#9a6700' }, { label: 'dead letters', stroke: '#b3261e' }],
          [s.t, s.depth, s.in_flight, s.delayed, s.dead_letters], 'messages'],
        ['rates', `${m.consumer_group}: sent and acked per second`,
          [{ label: 'sent/s', stroke: '#2d5d9f' }, { label: 'acked/s', stroke: '#1a7f37' }],
          [s.t, s.sent_rate, s.acked_rate], 'per second'],
        ['age', `${m.consumer_group}: oldest age (seconds)`,
          [{ label: 'oldest age', stroke: '#6f42c1' }], [s.t, s.oldest], 'seconds'],
      ];
      for (const [kind, title, ser, data, yl] of sets) {
        const id = `${m.consumer_group}/${kind}`;
        let p = plots.get(id);
        if (!p) {
          const box = h('div.card.chart', { 'data-chart': id }, h('h3', title));
          charts.append(box);
          p = new uPlot(chartOpts(box, ser, yl), data, box);
          plots.set(id, p);
        } else p.setData(data);
      }
    }
  }
  render();
  return { refresh: render, destroy: () => plots.forEach((p) => p.destroy()) };
}

// ---- dead letters ----------------------------------------------------------------------

function deadLettersPage(main, queue, group) {
  const bar = h('div.toolbar');
  const msg = h('div');
  const list = h('div');
  append(main, h('h1', 'Dead letters'), bar, msg, list);
  let rows = [];
  const selected = new Set();

  async function load() {
    if (!queue) { clear(list, h('p.muted', 'Pick a queue.')); return; }
    try {
      const qs = `?max=500${group ? `&group=${enc(group)}` : ''}`;
      rows = await api('GET', `/v1/queues/${enc(queue)}/dead-letters${qs}`);
    } catch (e) { clear(list, errorBox(e)); return; }
    for (const id of [...selected]) if (!rows.some((r) => `${r.group_name}/${r.message_id}` === id)) selected.delete(id);
    renderList();
  }

  function renderList() {
    if (!rows.length) { clear(list, h('p.muted#no-dead-letters', 'No dead letters.')); return; }
    const ro = readOnly();
    clear(list, h('table#dead-letters-table',
      h('thead', h('tr', ro ? null : h('th', h('input#select-all', {
        type: 'checkbox', title: 'select all',
        onchange: (ev) => { rows.forEach((r) => (ev.target.checked ? selected.add(`${r.group_name}/${r.message_id}`)
          : selected.delete(`${r.group_name}/${r.message_id}`))); renderList(); },
      })), ['message id', 'group', 'payload', 'reason', 'last error'].map((c) => h('th', c)),
      h('th.num', 'attempts'), h('th', 'dead at'))),
      h('tbody', rows.map((r) => {
        const id = `${r.group_name}/${r.message_id}`;
        return h('tr', { 'data-message-id': r.message_id, 'data-group': r.group_name },
          ro ? null : h('td', h('input.pick', {
            type: 'checkbox', checked: selected.has(id),
            onchange: (ev) => { if (ev.target.checked) selected.add(id); else selected.delete(id); renderActions(); },
          })),
          h('td', r.message_id), h('td', r.group_name),
          h('td.payload', h('pre', json(r.payload)), r.headers ? h('div.muted', 'headers ', json(r.headers)) : null),
          h('td.reason', r.reason), h('td.last-error', r.last_error ?? '—'),
          h('td.num.attempts', r.attempts), h('td', fmtTime(r.dead_at)));
      }))));
    renderActions();
  }

  const actions = h('span.toolbar');
  function renderActions() {
    if (readOnly()) { clear(actions, h('span.muted#read-only-note', 'Read-only: no redrive, no delete.')); return; }
    const n = selected.size;
    clear(actions,
      h('button.primary#redrive', { type: 'button', disabled: n === 0, onclick: () => act('redrive') },
        `Redrive selected (${n})`),
      h('button.danger#delete', { type: 'button', disabled: n === 0, onclick: () => confirmDelete() },
        `Delete selected (${n})`));
  }

  function confirmDelete() {
    clear(actions,
      h('span', `Delete ${selected.size} dead letter(s) for good?`),
      h('button.danger#confirm-delete', { type: 'button', onclick: () => act('delete') }, 'Delete'),
      h('button#cancel-delete', { type: 'button', onclick: renderActions }, 'Cancel'));
  }

  // one call per group: redrive and delete name their group
  async function act(kind) {
    const byGroup = new Map();
    for (const id of selected) {
      const i = id.lastIndexOf('/');
      const g = id.slice(0, i);
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g).push(id.slice(i + 1));
    }
    let n = 0;
    try {
      for (const [g, ids] of byGroup) {
        const body = { message_ids: ids, consumer_group: g };
        const r = kind === 'redrive'
          ? await api('POST', `/v1/queues/${enc(queue)}/redrive`, body)
          : await api('DELETE', `/v1/queues/${enc(queue)}/dead-letters`, body);
        n += Number(kind === 'redrive' ? r.redriven : r.deleted);
      }
      clear(msg, h('div.notice#action-result', kind === 'redrive' ? `Redriven: ${n}.` : `Deleted: ${n}.`));
      selected.clear();
    } catch (e) {
      clear(msg, errorBox(e));
      msg.firstChild.id = 'action-error';
    }
    await load();
  }

  queueNames().then(async (names) => {
    const groupsOf = queue ? await groupNames(queue).catch(() => []) : [];
    clear(bar,
      h('label', { for: 'dl-queue' }, 'queue'),
      select('dl-queue', names, queue, (q) => { location.hash = `#/dead-letters/${enc(q)}`; }, '(pick a queue)'),
      h('label', { for: 'dl-group' }, 'group'),
      select('dl-group', groupsOf, group, (g) => {
        location.hash = `#/dead-letters/${enc(queue)}${g ? `/${enc(g)}` : ''}`;
      }, '(every group)'),
      h('button#reload', { type: 'button', onclick: load }, 'Reload'),
      actions);
    renderActions();
  }, (e) => clear(bar, errorBox(e)));
  load();
  return {};
}

// ---- peek -----------------------------------------------------------------------------------

function peekPage(main, queue, group) {
  const bar = h('div.toolbar');
  const list = h('div');
  append(main, h('h1', 'Peek'),
    h('p.muted', 'The next messages a receive of the group would hand out, read without leasing them: ' +
      'nothing changes for the consumers.'),
    bar, list);
  const max = h('input#peek-max', { type: 'number', min: 1, max: 1000, value: 20 });

  async function load() {
    if (!queue) { clear(list, h('p.muted', 'Pick a queue.')); return; }
    try {
      const rows = await api('GET', `/v1/queues/${enc(queue)}/peek?group=${enc(group || 'default')}&max=${enc(max.value)}`);
      clear(list, rows.length ? h('table#peek-table',
        h('thead', h('tr', ['message id', 'payload', 'ordering key', 'next attempt', 'enqueued at', '']
          .map((c) => h('th', c)))),
        h('tbody', rows.map((r) => h('tr', { 'data-message-id': r.message_id },
          h('td', r.message_id),
          h('td.payload', h('pre', json(r.payload)), r.headers ? h('div.muted', 'headers ', json(r.headers)) : null),
          h('td', r.ordering_key ?? '—'), h('td.num', r.attempt), h('td', fmtTime(r.enqueued_at)),
          h('td', r.redelivery ? h('span.badge.warn', 'redelivery') : ''))))) :
        h('p.muted#peek-empty', 'Nothing to receive.'));
    } catch (e) { clear(list, errorBox(e)); }
  }

  queueNames().then(async (names) => {
    const groupsOf = queue ? await groupNames(queue).catch(() => []) : [];
    clear(bar,
      h('label', { for: 'peek-queue' }, 'queue'),
      select('peek-queue', names, queue, (q) => { location.hash = `#/peek/${enc(q)}`; }, '(pick a queue)'),
      h('label', { for: 'peek-group' }, 'group'),
      select('peek-group', groupsOf, group || 'default', (g) => { location.hash = `#/peek/${enc(queue)}/${enc(g)}`; }),
      h('label', { for: 'peek-max' }, 'max'), max,
      h('button.primary#peek', { type: 'button', onclick: load }, 'Peek'));
  }, (e) => clear(bar, errorBox(e)));
  load();
  return {};
}

// ---- workers and alerts -----------------------------------------------------------------

function workersPage(main) {
  const workers = h('div');
  const alerts = h('div');
  append(main, h('h1', 'Maintenance workers'), workers, h('h1', 'Alerts'), alerts);

  async function load() {
    try {
      const ws = await api('GET', '/v1/workers');
      // a deliverd in cluster mode: each shard's workers, with its name
      const sharded = ws.some((w) => 'shard' in w);
      clear(workers, ws.length ? h('table#workers-table',
        h('thead', h('tr', [...(sharded ? ['shard'] : []), 'database', 'pid', 'started at', 'last run',
          'last run took', 'runs', 'errors', 'expired', 'dead', 'released', 'last error'].map((c) => h('th', c)))),
        h('tbody', ws.map((w) => h('tr', { 'data-database': w.database, ...(sharded ? { 'data-shard': w.shard } : {}) },
          sharded ? h('td', w.shard) : null,
          h('td', w.database), h('td', w.pid ?? '—'), h('td', fmtTime(w.started_at)),
          h('td', fmtTime(w.last_run_at)), h('td', w.last_run_duration ?? '—'),
          h('td.num', fmtNum(w.runs)), h('td.num', w.errors > 0 ? h('span.badge.bad', fmtNum(w.errors)) : '0'),
          h('td.num', fmtNum(w.expired_total)), h('td.num', fmtNum(w.dead_total)),
          h('td.num', fmtNum(w.released_total)),
          h('td', w.last_error ? `${w.last_error} (${fmtTime(w.last_error_at)})` : '—'))))) :
        h('p.muted', 'No maintenance worker (see deliver.database).'));
    } catch (e) { clear(workers, errorBox(e)); }
    try {
      const as = await api('GET', '/v1/alerts');
      // cluster mode: an alert is a partition's, set on a shard
      const sharded = as.some((a) => 'shard' in a);
      clear(alerts, as.length ? h('table#alerts-table',
        h('thead', h('tr', ['queue', ...(sharded ? ['partition', 'shard'] : []), 'metric', 'threshold', 'state',
          'value at the change', 'since'].map((c) => h('th', c)))),
        h('tbody', as.map((a) => h('tr', { 'data-queue': a.queue_name, 'data-metric': a.metric },
          h('td', a.queue_name), sharded ? [h('td.num', a.partition), h('td', a.shard)] : null,
          h('td', a.metric), h('td.num', a.threshold),
          h('td', a.firing ? h('span.badge.bad.firing', 'firing') : h('span.badge.good', 'ok')),
          h('td.num', a.value ?? '—'), h('td', fmtTime(a.changed_at)))))) :
        h('p.muted', 'No alert is set (deliver.set_alert).'));
    } catch (e) { clear(alerts, errorBox(e)); }
  }
  load();
  return { refresh: load };
}

// ---- push subscriptions -------------------------------------------------------------------

function pushPage(main) {
  const list = h('div');
  append(main, h('h1', 'Push subscriptions'),
    h('p.muted', 'Lag: the WAL written since the subscription\'s consumer last confirmed a position.'),
    list);
  async function load() {
    try {
      const ps = await api('GET', '/v1/push-subscriptions');
      // cluster mode: a subscription is a partition's, made on a shard
      const sharded = ps.some((p) => 'shard' in p);
      clear(list, ps.length ? h('table#push-table',
        h('thead', h('tr', ['subscription', ...(sharded ? ['shard'] : []), 'queue', ...(sharded ? ['partition'] : []),
          'group', 'state', 'confirmed LSN', 'lag', 'WAL retained', 'created at'].map((c) => h('th', c)))),
        h('tbody', ps.map((p) => h('tr', { 'data-subscription': p.subscription_name },
          h('td', p.subscription_name), sharded ? h('td', p.shard) : null, h('td', p.queue_name),
          sharded ? h('td.num', p.partition) : null, h('td', p.consumer_group ?? '(all)'),
          h('td', p.active ? h('span.badge.good', 'connected') : h('span.badge.warn', 'idle')),
          h('td', p.confirmed_lsn ?? '—'), h('td.num.lag', fmtBytes(p.lag_bytes)),
          h('td.num', fmtBytes(p.retained_wal_bytes)), h('td', fmtTime(p.created_at)))))) :
        h('p.muted#no-push', 'No push subscription.'));
    } catch (e) { clear(list, errorBox(e)); }
  }
  load();
  return { refresh: load };
}

// ---- start -------------------------------------------------------------------------------------

if (state.token) signIn();
else renderLogin();
