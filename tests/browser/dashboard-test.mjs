// dashboard-test.mjs: the Entropy dashboard in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser download), against a running entropy-control. Prints TAP.
//
// Run by tests/integration/test-dashboard.py, which starts the control plane, registers simulated
// workers and creates the fixture jobs, and passes them in the environment:
//   ENTROPY_URL, ENTROPY_ADMIN_TOKEN, ENTROPY_WORKER_TOKEN, ENTROPY_FIXTURE (JSON),
//   ENTROPY_CHROMIUM, ENTROPY_SCREENSHOT, ENTROPY_PROFILE (an empty directory), ENTROPY_TIMEOUT_MS.
// The job followed live is driven here, as a worker would, over HTTP with the worker token.
import { chromium } from 'playwright-core';

const env = process.env;
const URL_BASE = env.ENTROPY_URL;
const ADMIN = env.ENTROPY_ADMIN_TOKEN;
const WORKER = env.ENTROPY_WORKER_TOKEN;
const FIXTURE = JSON.parse(env.ENTROPY_FIXTURE || '{}');
const TIMEOUT = Number(env.ENTROPY_TIMEOUT_MS || 15000);

let count = 0;
let failed = 0;

function ok(cond, desc, detail) {
  count++;
  console.log(`${cond ? '' : 'not '}ok ${count} - ${desc}`);
  if (!cond) {
    failed++;
    if (detail) for (const line of String(detail).split('\n')) console.log(`# ${line}`);
  }
  return cond;
}

async function api(method, path, body, token = ADMIN) {
  const headers = { 'X-API-Token': token };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(URL_BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

// Resolves true when the selector appears within the timeout, false otherwise (the step is
// then reported as failed, and the run goes on).
async function appears(page, selector, timeout = TIMEOUT) {
  try {
    await page.waitForSelector(selector, { timeout });
    return true;
  } catch {
    return false;
  }
}

const jobRow = (id) => `#jobs-body tr[data-job-id="${id}"]`;
const jobState = (id, s) => `${jobRow(id)} [data-status="${s}"]`;

// A worker that said in its heartbeat why it takes no new job shows it next to its state, the
// reason as the tooltip; the others show nothing there.
async function noNewWorkIsShown(page) {
  const shown = await page.$$eval('#workers-body tr', (rows) => rows.map((r) => {
    const n = r.querySelector('.no-new-work');
    return [r.dataset.workerId, n ? { text: n.textContent, title: n.getAttribute('title') } : null];
  }));
  const want = (FIXTURE.workers || []).map((w) => [w, w === FIXTURE.no_new_work_worker
    ? { text: 'no new work', title: FIXTURE.no_new_work } : null]);
  const sorted = (l) => JSON.stringify([...l].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  ok(sorted(shown) === sorted(want), 'a worker that takes no new work says so, with its reason',
     `got ${sorted(shown)}\nwant ${sorted(want)}`);
}

// Each GPU by its index; one with a uuid also by the uuid's start, and the full uuid as its tooltip.
async function gpusShowTheirUuids(page) {
  const row = `#workers-body tr[data-worker-id="${FIXTURE.gpu_worker}"]`;
  const shown = await page.$$eval(`${row} .gpu`, (els) => els.map((e) => ({
    text: e.textContent, title: e.getAttribute('title'), uuid: e.dataset.gpuUuid ?? null })));
  ok(JSON.stringify(shown) === JSON.stringify(FIXTURE.gpus_shown), 'each GPU is shown by its index, and by its uuid when it has one',
     `got ${JSON.stringify(shown)}\nwant ${JSON.stringify(FIXTURE.gpus_shown)}`);
  const cell = await page.$eval(`${row} .gpu`, (e) => e.parentElement.textContent).catch(() => null);
  ok(cell === FIXTURE.gpu_cell, 'the GPU cell lists them in order', `got ${JSON.stringify(cell)}`);
  const about = await page.$eval(`${row} td`, (e) => e.getAttribute('title')).catch(() => null);
  ok(about === FIXTURE.gpu_worker_about, 'the worker id shows the version and slots it registered with',
     `got ${JSON.stringify(about)}`);
}

async function followJobLive(page) {
  const submitted = await api('POST', '/jobs', { command: 'echo', args: ['followed', 'live'], priority: 1000 });
  const id = submitted.body && submitted.body.job_id;
  if (!ok(submitted.status === 201 && id, 'submit the job to follow', JSON.stringify(submitted))) return;
  ok(await appears(page, jobState(id, 'PENDING')), 'the new job shows up PENDING');

  const w = FIXTURE.worker_for_claims;
  const claim = await api('GET', `/next-job?worker_id=${encodeURIComponent(w)}`, undefined, WORKER);
  if (!ok(claim.status === 200 && claim.body.job_id === id, 'the simulated worker claims it', JSON.stringify(claim))) return;
  ok(await appears(page, jobState(id, 'ASSIGNED')), 'it turns ASSIGNED on the page');

  const triple = { job_id: id, worker_id: w, assignment_id: claim.body.assignment_id };
  const ack = await api('POST', '/ack', triple, WORKER);
  ok(ack.status === 200, 'ack', JSON.stringify(ack));
  ok(await appears(page, jobState(id, 'RUNNING')), 'it turns RUNNING on the page');

  const done = await api('POST', '/complete', { ...triple, completion_seq: 1, exit_code: 0, result_summary: 'followed' }, WORKER);
  ok(done.status === 200, 'complete', JSON.stringify(done));
  ok(await appears(page, jobState(id, 'COMPLETED')), 'it turns COMPLETED on the page');
  ok(await appears(page, `#events li[data-event="job.completed"][data-job-id="${id}"]`),
     'the live event feed shows its completion');
}

async function abortFromPage(page) {
  const id = FIXTURE.abortable;
  ok(await appears(page, jobState(id, 'PENDING')), 'the job to abort is listed PENDING');
  page.once('dialog', (d) => d.accept());
  await page.click(`${jobRow(id)} button[data-action="abort"]`);
  ok(await appears(page, jobState(id, 'ABORTED')), 'after the abort button it shows ABORTED');
  const job = await api('GET', `/jobs/${id}`);
  ok(job.body && job.body.status === 'ABORTED', 'and the control plane has it ABORTED', JSON.stringify(job.body));
}

async function detailShowsChecksums(page) {
  const id = FIXTURE.completed;
  await page.click(jobRow(id));
  const sel = '#detail-fields [data-field="stdout_sha256"]';
  if (!ok(await appears(page, sel), 'job detail opens with the checksums')) return;
  ok((await page.textContent(sel)).trim() === FIXTURE.stdout_sha256, 'stdout SHA-256 as stored');
  ok((await page.textContent('#detail-fields [data-field="exit_code"]')).trim() === '0', 'exit code');
  ok(await appears(page, '#detail-events li[data-event="job.completed"]'), 'its history lists the completion');
}

async function filtersAndSearch(page) {
  await page.click('#filters button[data-filter="COMPLETED"]');
  const states = await page.$$eval('#jobs-body [data-status]', (els) => els.map((e) => e.dataset.status));
  ok(states.length > 0 && states.every((s) => s === 'COMPLETED'), 'the COMPLETED filter shows completed jobs only', states.join(','));
  await page.click('#filters button[data-filter="ALL"]');
  await page.fill('#search', FIXTURE.search_term);
  const ids = await page.$$eval('#jobs-body tr', (els) => els.map((e) => e.dataset.jobId));
  ok(ids.length === 1 && ids[0] === FIXTURE.searchable, 'search finds the job by its command', ids.join(','));
  await page.fill('#search', '');
}

async function drainFromPage(page) {
  const w = FIXTURE.drainable;
  await page.click(`#workers-body tr[data-worker-id="${w}"] button[data-action="drain"]`);
  ok(await appears(page, `#workers-body tr[data-worker-id="${w}"] button[data-action="undrain"]`),
     'after the drain button the worker offers Resume');
  const workers = await api('GET', '/workers');
  const rec = (workers.body || []).find((x) => x.worker_id === w);
  ok(rec && (rec.draining === true || rec.status === 'DRAINING'), 'and the control plane drains it', JSON.stringify(rec));
}

async function main() {
  const errors = [];
  const urls = [];
  const context = await chromium.launchPersistentContext(env.ENTROPY_PROFILE, {
    executablePath: env.ENTROPY_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 1000 },
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => urls.push(r.url()));

    const resp = await page.goto(`${URL_BASE}/ui`, { waitUntil: 'load', timeout: TIMEOUT });
    ok(resp && resp.status() === 200, 'GET /ui answers 200');
    const csp = resp ? (await resp.allHeaders())['content-security-policy'] || '' : '';
    ok(csp.includes("script-src 'self'"), 'the page comes with a Content-Security-Policy', csp);
    ok(await appears(page, '#login-form'), 'asks for the token');
    await page.fill('#token', ADMIN);
    await page.click('#login-form button[type="submit"]');
    ok(await appears(page, '#app:not([hidden])'), 'the dashboard opens');
    ok(await appears(page, '#live.on'), 'the live event stream is connected');

    for (const id of FIXTURE.jobs || []) ok(await appears(page, jobRow(id)), `job ${id} is listed`);
    for (const w of FIXTURE.workers || []) ok(await appears(page, `#workers-body tr[data-worker-id="${w}"]`), `worker ${w} is listed`);
    ok(await appears(page, `#workers-body tr[data-worker-id="${FIXTURE.gpu_worker}"] >> text=${FIXTURE.gpu_text}`),
       'the GPU worker shows its heartbeat metrics');
    await gpusShowTheirUuids(page);
    await noNewWorkIsShown(page);
    ok(await appears(page, `#counts [data-state="COMPLETED"] b`), 'queue depth by state is shown');

    await followJobLive(page);
    await abortFromPage(page);
    await detailShowsChecksums(page);
    await filtersAndSearch(page);
    await drainFromPage(page);

    const blank = await page.$eval('#chart', (c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return false;
      return true;
    });
    ok(!blank, 'the queue chart is drawn');
    ok((await page.evaluate(() => sessionStorage.getItem('entropy.token'))) === ADMIN, 'the token is kept for the session');
    ok(!urls.some((u) => u.includes(ADMIN)), 'the token never appears in a URL', urls.filter((u) => u.includes(ADMIN)).join('\n'));
    if (env.ENTROPY_SCREENSHOT) {
      await page.screenshot({ path: env.ENTROPY_SCREENSHOT, fullPage: true });
      ok(true, `screenshot saved to ${env.ENTROPY_SCREENSHOT}`);
    }
    ok(errors.length === 0, 'no console errors', errors.join('\n'));
  } finally {
    await context.close();
  }
}

const watchdog = setTimeout(() => { console.log('Bail out! the browser test took too long'); process.exit(1); },
                            Number(env.ENTROPY_TOTAL_TIMEOUT_MS || 180000));
try {
  await main();
} catch (e) {
  ok(false, 'the browser test ran to its end', e && e.stack ? e.stack : String(e));
}
clearTimeout(watchdog);
console.log(`1..${count}`);
process.exit(failed ? 1 : 0);
