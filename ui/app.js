/* Entropy dashboard: queue depth over time, jobs, workers, job detail and the live event feed of
 * one entropy-control, from its own HTTP API (same origin). No framework, no external resource.
 *
 * The admin token is typed once and kept in sessionStorage; every request sends it as the
 * X-API-Token header, never in a URL. The live feed reads GET /events/stream with fetch() and a
 * stream reader (EventSource cannot send headers) and reconnects with Last-Event-ID. Jobs,
 * workers and counts are polled every POLL_MS and refreshed at once when an event says they
 * changed. Everything from the server is put on the page as text, never as HTML. */
'use strict';

const POLL_MS = 2000;
const CHART_POINTS = 150;          /* samples kept: 5 minutes at POLL_MS */
const FEED_MAX = 200;              /* events kept in the live feed */
const TOKEN_KEY = 'entropy.token';
const ACTIVE = ['PENDING', 'ASSIGNED', 'RUNNING', 'RETRYING', 'LOST'];
const STATES = ['PENDING', 'ASSIGNED', 'RUNNING', 'RETRYING', 'LOST', 'COMPLETED', 'FAILED', 'ABORTED'];
const TERMINAL = new Set(['COMPLETED', 'FAILED', 'ABORTED']);
const COLORS = { PENDING: '#718096', ASSIGNED: '#805ad5', RUNNING: '#2f6fdd', RETRYING: '#b7791f', LOST: '#dd6b20' };

const state = {
  token: null,
  jobs: [],
  workers: [],
  counts: {},
  history: [],            /* [{t, counts}] for the chart */
  filter: 'ALL',
  search: '',
  selected: null,         /* job id shown in detail */
  lastEventId: 0,
  stream: null,           /* AbortController of the live stream */
  pollTimer: null,
  refreshTimer: null,
};

const $ = (id) => document.getElementById(id);

/* ---- DOM helpers: text only ------------------------------------------------------------------ */

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(s) {
  return el('span', { class: `state s-${s}`, dataset: { status: s } }, s);
}

function shortId(id) {
  return id && id.length > 12 ? id.slice(0, 12) + '…' : (id || '');
}

function ago(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '';
  if (seconds < 1) return 'now';
  if (seconds < 90) return `${Math.round(seconds)}s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

function since(ts) {
  return ts ? ago(Date.now() / 1000 - ts) : '';
}

function isoTime(ts) {
  return ts ? new Date(ts * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '';
}

function bytes(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

function showError(message) {
  const e = $('error');
  e.textContent = message || '';
  e.hidden = !message;
}

/* ---- API ------------------------------------------------------------------------------------- */

class AuthError extends Error {}

async function api(method, path, body) {
  const headers = { 'X-API-Token': state.token };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) throw new AuthError('the token was refused');
  const text = await resp.text();
  const type = resp.headers.get('Content-Type') || '';
  const data = text && type.startsWith('application/json') ? JSON.parse(text) : text;
  if (!resp.ok) {
    const msg = data && data.error ? data.error : `${resp.status} ${resp.statusText}`;
    const err = new Error(`${method} ${path}: ${msg}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

/* entropy_jobs{state="PENDING"} 3 -> {PENDING: 3}; plus the windowed rates. */
function parseMetrics(text) {
  const counts = {};
  const rates = {};
  for (const line of text.split('\n')) {
    let m = /^entropy_jobs\{state="([A-Z]+)"\} ([0-9.eE+-]+)$/.exec(line);
    if (m) { counts[m[1]] = Number(m[2]); continue; }
    m = /^entropy_job_(completions|failures)_per_second\{window="1m"\} ([0-9.eE+-]+)$/.exec(line);
    if (m) rates[m[1]] = Number(m[2]);
  }
  return { counts, rates };
}

/* ---- polling --------------------------------------------------------------------------------- */

async function refresh() {
  try {
    const [jobs, workers, metrics] = await Promise.all([
      api('GET', '/jobs'),
      api('GET', '/workers'),
      api('GET', '/metrics').catch(() => null),
    ]);
    state.jobs = Array.isArray(jobs) ? jobs : [];
    state.workers = Array.isArray(workers) ? workers : [];
    if (metrics) {
      const m = parseMetrics(metrics);
      state.counts = m.counts;
      renderRates(m.rates);
    } else {
      state.counts = countJobs(state.jobs);
    }
    sample();
    renderAll();
    if (state.selected) await renderDetail(state.selected);
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    showError('');
  } catch (e) {
    if (e instanceof AuthError) return logout(e.message);
    showError(`Cannot reach the control plane: ${e.message}`);
  }
}

function countJobs(jobs) {
  const counts = {};
  for (const j of jobs) counts[j.status] = (counts[j.status] || 0) + 1;
  return counts;
}

/* A refresh soon, coalescing the bursts of events one change brings. */
function refreshSoon() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh(); }, 150);
}

function startPolling() {
  stopPolling();
  refresh();
  state.pollTimer = setInterval(refresh, POLL_MS);
}

function stopPolling() {
  if (state.pollTimer) clearInterval(state.pollTimer);
  state.pollTimer = null;
}

/* ---- queue: counts and chart ----------------------------------------------------------------- */

function sample() {
  state.history.push({ t: Date.now(), counts: { ...state.counts } });
  if (state.history.length > CHART_POINTS) state.history.shift();
}

function renderCounts() {
  const box = $('counts');
  box.replaceChildren(...STATES.map((s) =>
    el('span', { class: 'count', dataset: { state: s } }, badge(s), el('b', {}, state.counts[s] || 0))));
}

function renderRates(rates) {
  const f = (x) => (typeof x === 'number' ? (x * 60).toFixed(1) : '–');
  $('rates').textContent = `last minute: ${f(rates.completions)} completed/min, ${f(rates.failures)} failed attempts/min`;
}

function drawChart() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);

  const pad = { l: 34, r: 8, t: 8, b: 18 };
  const pts = state.history;
  const max = Math.max(1, ...pts.map((p) => Math.max(...ACTIVE.map((s) => p.counts[s] || 0))));
  /* Newest sample at the right edge; the window fills from the right as samples come. */
  const step = (w - pad.l - pad.r) / (CHART_POINTS - 1);
  const x = (i) => w - pad.r - (pts.length - 1 - i) * step;
  const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  const muted = getComputedStyle(document.body).getPropertyValue('--muted') || '#888';

  ctx.strokeStyle = muted; ctx.fillStyle = muted; ctx.lineWidth = 1; ctx.font = '11px sans-serif';
  ctx.globalAlpha = 0.3;
  for (const v of [0, max / 2, max]) { ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(w - pad.r, y(v)); ctx.stroke(); }
  ctx.globalAlpha = 1;
  ctx.textAlign = 'right';
  for (const v of [0, Math.round(max / 2), max]) ctx.fillText(String(v), pad.l - 4, y(v) + 4);
  ctx.textAlign = 'left';
  ctx.fillText(`last ${Math.round((CHART_POINTS * POLL_MS) / 60000)} min`, pad.l, h - 4);

  for (const s of ACTIVE) {
    ctx.strokeStyle = COLORS[s]; ctx.lineWidth = 2; ctx.beginPath();
    pts.forEach((p, i) => { const px = x(i), py = y(p.counts[s] || 0); if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py); });
    ctx.stroke();
  }
  /* Colours through the CSSOM: the Content-Security-Policy forbids style attributes. */
  $('legend').replaceChildren(...ACTIVE.map((s) => {
    const swatch = el('i');
    swatch.style.background = COLORS[s];
    return el('span', {}, swatch, s);
  }));
}

/* ---- workers --------------------------------------------------------------------------------- */

/* Heartbeat metrics as the worker sends them; known fields get units, others are shown as sent. */
function metricCells(m) {
  if (!m || typeof m !== 'object') return ['', '', ''];
  const num = (...keys) => { for (const k of keys) if (typeof m[k] === 'number') return m[k]; return undefined; };
  const load = num('cpu_load1', 'load1', 'load_1m', 'cpu_load', 'loadavg');
  const cpus = num('cpu_count', 'cpus', 'ncpu');
  const cpuPct = num('cpu_percent', 'cpu_utilization_pct');
  let cpu = '';
  if (load !== undefined) cpu = `load ${load.toFixed(2)}${cpus ? ` / ${cpus} CPUs` : ''}`;
  else if (cpuPct !== undefined) cpu = `${Math.round(cpuPct)}%`;

  const used = num('mem_used_bytes', 'memory_used_bytes', 'mem_used');
  const total = num('mem_total_bytes', 'memory_total_bytes', 'mem_total');
  const avail = num('mem_available_bytes', 'memory_available_bytes');
  let mem = '';
  if (used !== undefined && total) mem = `${bytes(used)} / ${bytes(total)}`;
  else if (avail !== undefined && total) mem = `${bytes(total - avail)} / ${bytes(total)}`;
  else if (num('mem_percent') !== undefined) mem = `${Math.round(num('mem_percent'))}%`;

  /* A GPU is named by its index, and by the start of its uuid when the heartbeat carries one
   * (the full uuid is its tooltip). */
  const gpus = Array.isArray(m.gpus) ? m.gpus : (Array.isArray(m.gpu) ? m.gpu : []);
  const gpu = gpus.map((g, i) => {
    if (!g || typeof g !== 'object') return null;
    const util = g.utilization_pct ?? g.utilization ?? g.util;
    const gu = g.memory_used_bytes ?? g.mem_used_bytes, gt = g.memory_total_bytes ?? g.mem_total_bytes;
    const gum = g.memory_used_mib, gtm = g.memory_total_mib;
    const uuid = typeof g.uuid === 'string' && g.uuid ? g.uuid : undefined;
    let memText = '';
    if (typeof gu === 'number' && typeof gt === 'number') memText = ` ${bytes(gu)}/${bytes(gt)}`;
    else if (typeof gum === 'number' && typeof gtm === 'number') memText = ` ${bytes(gum * 1048576)}/${bytes(gtm * 1048576)}`;
    const label = `GPU${g.index ?? i}${uuid ? ` (${shortId(uuid)})` : ''}`;
    return el('span', { class: 'gpu', title: uuid, dataset: uuid ? { gpuUuid: uuid } : {} },
      `${label}: ${typeof util === 'number' ? Math.round(util) + '%' : '?'}${memText}`);
  }).filter(Boolean).flatMap((span, i) => (i ? [', ', span] : [span]));
  return [cpu, mem, gpu];
}

// What the worker registered with, for the tooltip of its id; '' when it said nothing.
function workerAbout(w) {
  const parts = [];
  if (w.version) parts.push(`version ${w.version}`);
  if (w.slots) parts.push(w.slots === 1 ? '1 slot' : `${w.slots} slots`);
  return parts.join(', ');
}

// Why a live worker asks for no new job, as its last heartbeat said (a nearly full disk, results it
// could not record); nothing for a worker no longer heard from.
function noNewWork(w) {
  const reason = w.heartbeat_metrics && w.heartbeat_metrics.no_new_work;
  if (!reason || (w.status !== 'ONLINE' && w.status !== 'DRAINING')) return '';
  return el('span', { class: 'no-new-work', title: reason }, 'no new work');
}

function renderWorkers() {
  const rows = state.workers.map((w) => {
    const [cpu, mem, gpu] = metricCells(w.heartbeat_metrics);
    const draining = w.draining || w.status === 'DRAINING';
    const job = w.current_job_id
      ? el('a', { href: '#', onclick: (ev) => { ev.preventDefault(); selectJob(w.current_job_id); } }, shortId(w.current_job_id))
      : '';
    const running = state.jobs.filter((j) => j.worker_id === w.worker_id && (j.status === 'RUNNING' || j.status === 'ASSIGNED')).length;
    return el('tr', { dataset: { workerId: w.worker_id } },
      el('td', { class: 'mono', title: workerAbout(w) }, w.worker_id),
      el('td', {}, badge(w.status), noNewWork(w)),
      el('td', { dataset: { heartbeatAge: w.heartbeat_age_sec } }, ago(w.heartbeat_age_sec)),
      el('td', { class: 'mono' }, job, running > 1 ? ` +${running - 1}` : ''),
      el('td', {}, cpu), el('td', {}, mem), el('td', { class: 'wrap' }, gpu),
      el('td', { class: 'wrap' }, (w.capabilities || []).join(', ')),
      el('td', {}, el('button', {
        type: 'button', class: 'small', dataset: { action: draining ? 'undrain' : 'drain' },
        title: draining ? 'hand it new jobs again' : 'hand it no new jobs; running ones finish',
        onclick: (ev) => { ev.stopPropagation(); drain(w.worker_id, !draining); },
      }, draining ? 'Resume' : 'Drain')));
  });
  $('workers-body').replaceChildren(...rows);
  $('workers-empty').hidden = rows.length > 0;
}

async function drain(workerId, on) {
  try {
    await api('POST', '/drain', { worker_id: workerId, drain: on });
    refreshSoon();
  } catch (e) {
    if (e instanceof AuthError) return logout(e.message);
    showError(e.status === 404 && /endpoint/.test(e.message)
      ? 'This control plane has no drain endpoint (POST /drain); use entropyctl.' : e.message);
  }
}

/* ---- jobs ------------------------------------------------------------------------------------ */

function renderFilters() {
  const opts = ['ALL', ...STATES];
  $('filters').replaceChildren(...opts.map((s) => el('button', {
    type: 'button', class: 'small', 'aria-pressed': String(state.filter === s), dataset: { filter: s },
    onclick: () => { state.filter = s; renderFilters(); renderJobs(); },
  }, s === 'ALL' ? 'All' : s)));
}

function jobMatches(j) {
  if (state.filter !== 'ALL' && j.status !== state.filter) return false;
  if (!state.search) return true;
  const hay = [j.job_id, j.command, ...(j.args || []), j.worker_id, j.last_error].join(' ').toLowerCase();
  return hay.includes(state.search);
}

function renderJobs() {
  const list = state.jobs.filter(jobMatches).slice(0, 500);
  const rows = list.map((j) => el('tr', {
    dataset: { jobId: j.job_id }, class: j.job_id === state.selected ? 'selected' : null,
    onclick: () => selectJob(j.job_id),
  },
  el('td', { class: 'mono', title: j.job_id }, shortId(j.job_id)),
  el('td', { class: 'status' }, badge(j.status)),
  el('td', { class: 'cmd', title: [j.command, ...(j.args || [])].join(' ') }, [j.command, ...(j.args || [])].join(' ')),
  el('td', { class: 'mono' }, j.worker_id || ''),
  el('td', {}, `${j.attempt_count}/${j.max_attempts}`),
  el('td', { title: isoTime(j.updated_at) }, since(j.updated_at)),
  el('td', {}, TERMINAL.has(j.status) ? '' : el('button', {
    type: 'button', class: 'small danger', dataset: { action: 'abort' },
    onclick: (ev) => { ev.stopPropagation(); abortJob(j.job_id); },
  }, 'Abort'))));
  $('jobs-body').replaceChildren(...rows);
  $('jobs-empty').hidden = rows.length > 0;
}

async function abortJob(jobId) {
  if (!window.confirm(`Abort job ${jobId}?`)) return;
  try {
    await api('POST', '/abort', { job_id: jobId, reason: 'aborted from the dashboard' });
    refreshSoon();
  } catch (e) {
    if (e instanceof AuthError) return logout(e.message);
    showError(e.message);
  }
}

/* ---- job detail ------------------------------------------------------------------------------ */

function selectJob(jobId) {
  state.selected = jobId;
  renderJobs();
  renderDetail(jobId);
}

const DETAIL_FIELDS = [
  ['status', 'State', (v) => badge(v)],
  ['command', 'Command', (v, j) => [v, ...(j.args || [])].join(' ')],
  ['working_dir', 'Working directory'],
  ['priority', 'Priority'],
  ['attempt_count', 'Attempts', (v, j) => `${v} of ${j.max_attempts}`],
  ['worker_id', 'Worker'],
  ['assignment_id', 'Assignment'],
  ['assignment_expires_at', 'Lease expires', isoTime],
  ['heartbeat_age_sec', 'Worker heartbeat', ago],
  ['created_at', 'Created', isoTime],
  ['scheduled_at', 'Scheduled', isoTime],
  ['updated_at', 'Updated', isoTime],
  ['retry_at', 'Retry at', isoTime],
  ['exit_code', 'Exit code'],
  ['result_summary', 'Result'],
  ['last_error', 'Last error'],
  ['stdout_path', 'stdout'],
  ['stdout_sha256', 'stdout SHA-256'],
  ['stderr_path', 'stderr'],
  ['stderr_sha256', 'stderr SHA-256'],
  ['artifact_location', 'Artifact'],
  ['artifact_upload_state', 'Upload'],
  ['artifact_upload_error', 'Upload error'],
  ['timeout_ms', 'Timeout', (v) => (v ? `${v} ms` : '')],
  ['requirements', 'Requirements', (v) => (v || []).join(', ')],
  ['updated_by', 'Updated by'],
];

async function renderDetail(jobId) {
  let job, events;
  try {
    [job, events] = await Promise.all([
      api('GET', `/jobs/${encodeURIComponent(jobId)}`),
      api('GET', `/events?job_id=${encodeURIComponent(jobId)}&limit=100`),
    ]);
  } catch (e) {
    if (e instanceof AuthError) return logout(e.message);
    showError(e.message);
    return;
  }
  if (state.selected !== jobId) return;
  $('detail').hidden = false;
  $('detail-id').textContent = jobId;
  const fields = [];
  for (const [key, label, fmt] of DETAIL_FIELDS) {
    const v = job[key];
    if (v === null || v === undefined || v === '' || (Array.isArray(v) && !v.length)) continue;
    const shown = fmt ? fmt(v, job) : String(v);
    if (shown === '') continue;
    fields.push(el('dt', {}, label), el('dd', { class: key.endsWith('sha256') || key.endsWith('_id') ? 'mono' : null, dataset: { field: key } }, shown));
  }
  if (!TERMINAL.has(job.status))
    fields.push(el('dt', {}, ''), el('dd', {}, el('button', {
      type: 'button', class: 'danger', dataset: { action: 'abort' }, onclick: () => abortJob(jobId),
    }, 'Abort this job')));
  $('detail-fields').replaceChildren(...fields);
  $('detail-events').replaceChildren(...(events || []).map(eventItem));
}

/* ---- live events ----------------------------------------------------------------------------- */

function eventItem(e) {
  const who = [e.job_id && `job ${shortId(e.job_id)}`, e.worker_id && `worker ${e.worker_id}`].filter(Boolean).join(', ');
  return el('li', { class: `lvl-${e.level}`, dataset: { eventId: e.id, event: e.event, jobId: e.job_id || '' } },
    el('span', { class: 'muted' }, new Date(e.ts * 1000).toLocaleTimeString(), ' '),
    el('span', { class: 'ev' }, e.event), ' ', who ? el('span', { class: 'mono' }, who) : '',
    e.message ? el('div', { class: 'muted' }, e.message) : '');
}

function addEvent(e) {
  if (typeof e.id === 'number') {
    if (e.id <= state.lastEventId) return;
    state.lastEventId = e.id;
  }
  const list = $('events');
  list.prepend(eventItem(e));
  while (list.children.length > FEED_MAX) list.lastChild.remove();
  if (/^(job|worker)\./.test(e.event)) refreshSoon();
}

function setLive(on) {
  const b = $('live');
  b.textContent = on ? 'live' : 'offline';
  b.className = `live ${on ? 'on' : 'off'}`;
}

/* Server-sent events from a byte stream: blocks end with a blank line; id, event, data fields. */
function sseParser(onMessage) {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + (buf[i] === '\r' ? 4 : 2));
      const msg = { id: null, event: 'message', data: [] };
      for (const line of block.split(/\r?\n/)) {
        if (!line || line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'data') msg.data.push(value);
        else if (field === 'id') msg.id = value;
        else if (field === 'event') msg.event = value;
      }
      if (msg.data.length) onMessage(msg);
    }
  };
}

async function streamOnce(signal) {
  const headers = { 'X-API-Token': state.token, Accept: 'text/event-stream' };
  if (state.lastEventId) headers['Last-Event-ID'] = String(state.lastEventId);
  const resp = await fetch('/events/stream', { headers, signal, cache: 'no-store' });
  if (resp.status === 401) throw new AuthError('the token was refused');
  if (!resp.ok || !resp.body) throw new Error(`event stream: ${resp.status}`);
  setLive(true);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  const feed = sseParser((msg) => {
    if (msg.event === 'truncated') {
      /* The store is behind our last id (restored): follow from its newest event. */
      if (msg.id !== null) state.lastEventId = Number(msg.id);
      refreshSoon();
      return;
    }
    try { addEvent(JSON.parse(msg.data.join('\n'))); } catch (e) { /* not an event: ignore */ }
  });
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    feed(value);
  }
}

/* Follows the stream for as long as we are logged in, reconnecting with a bounded backoff. */
async function follow() {
  const ctrl = new AbortController();
  state.stream = ctrl;
  let delay = 500;
  while (!ctrl.signal.aborted) {
    try {
      await streamOnce(ctrl.signal);
      delay = 500;
    } catch (e) {
      if (ctrl.signal.aborted) break;
      if (e instanceof AuthError) return logout(e.message);
    }
    setLive(false);
    if (ctrl.signal.aborted) break;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

async function startFeed() {
  /* The recent past from GET /events, then live from the newest id on (no gap, no repeat). */
  try {
    const recent = await api('GET', '/events?limit=50');
    for (const e of (recent || []).slice().reverse()) addEvent(e);
  } catch (e) {
    if (e instanceof AuthError) return logout(e.message);
  }
  follow();
}

/* ---- session --------------------------------------------------------------------------------- */

function renderAll() {
  renderCounts();
  drawChart();
  renderWorkers();
  renderJobs();
}

function login(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  renderFilters();
  startPolling();
  startFeed();
}

function logout(reason) {
  stopPolling();
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  setLive(false);
  $('app').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = reason ? `Disconnected: ${reason}.` : '';
  $('token').value = '';
  $('token').focus();
}

function init() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (t) login(t);
  });
  $('logout').addEventListener('click', () => logout());
  $('search').addEventListener('input', (ev) => { state.search = ev.target.value.trim().toLowerCase(); renderJobs(); });
  $('detail-close').addEventListener('click', () => { state.selected = null; $('detail').hidden = true; renderJobs(); });
  window.addEventListener('resize', drawChart);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
  else logout();
}

document.addEventListener('DOMContentLoaded', init);
