// Drives the registry's dashboard in Debian's Chromium for tests/dashboard.rs.
//
// The Rust test starts and seeds the registry, then runs this script with:
//   ECCO_DASHBOARD_URL  the registry, http://127.0.0.1:PORT
//   ECCO_SCREENSHOTS    where to save the PNGs
//   ECCO_SCENARIO       JSON: what was seeded and what to expect
// They talk in lines: this script prints {"step": NAME} when it needs the
// registry to change (a heartbeat, a registration, feedback) and waits for
// "go" on stdin; it prints {"done": …} at the end. Any failed expectation
// ends it with a non-zero status and the reason on stderr.
//
// Network rule: the browser talks to 127.0.0.1 only. Background services are
// off, every proxied request goes to a dead local port and no name resolves.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.ECCO_CHROMIUM ?? '/usr/bin/chromium';
const base = new URL(process.env.ECCO_DASHBOARD_URL);
const out = process.env.ECCO_SCREENSHOTS;
const scenario = JSON.parse(process.env.ECCO_SCENARIO);
const TIMEOUT = 15_000;

if (base.hostname !== '127.0.0.1') throw new Error(`the registry must be on 127.0.0.1, not ${base.hostname}`);
const origin = base.origin;
mkdirSync(out, { recursive: true });

const input = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const log = (...args) => console.error('[dashboard.mjs]', ...args);
const started = Date.now();

/** Asks the Rust side to do `step` and waits until it has. */
async function ask(step) {
  process.stdout.write(`${JSON.stringify({ step })}\n`);
  const { value, done } = await input.next();
  if (done || value.trim() !== 'go') throw new Error(`the test did not confirm ${step}: ${value}`);
}

function expect(condition, what) {
  if (!condition) throw new Error(`expected ${what}`);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-default-apps',
    '--disable-domain-reliability',
    '--disable-client-side-phishing-detection',
    '--disable-breakpad',
    '--metrics-recording-only',
    '--no-pings',
    '--disable-features=MediaRouter,OptimizationHints,Translate,AutofillServerCommunication,CertificateTransparencyComponentUpdater,DialMediaRouteProvider,NetworkTimeServiceQuerying',
    '--disable-extensions',
    // Debian's launcher sets Google API keys, which wake sign-in and update
    // services: point them at the dead port too.
    '--gaia-url=http://127.0.0.1:9',
    '--google-apis-url=http://127.0.0.1:9',
    '--lso-url=http://127.0.0.1:9',
    '--component-updater=url-source=http://127.0.0.1:9/',
    // Loopback is never proxied; everything else would go to port 9, where
    // nothing listens, and no host name resolves except 127.0.0.1.
    '--proxy-server=http://127.0.0.1:9',
    '--proxy-bypass-list=127.0.0.1',
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
  ],
});

const problems = [];
const offsite = [];
let loads = 0;

async function newPage(viewport) {
  const context = await browser.newContext({ viewport, serviceWorkers: 'block' });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => {
    if (m.type() === 'error') {
      // Without the token, each refused read is logged by Chromium itself.
      if (scenario.mode === 'token' && /status of 401/.test(m.text())) return;
      // While the registry is down, each failed attempt is logged likewise.
      if (scenario.mode === 'reconnect' && /net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE|INCOMPLETE_CHUNKED_ENCODING)/.test(m.text())) return;
      problems.push(`console error: ${m.text()}`);
    } else if (m.type() === 'warning') log('console warning:', m.text());
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(`${origin}/`) && !url.startsWith('data:')) offsite.push(url);
  });
  page.on('load', () => {
    loads += 1;
  });
  return page;
}

async function shoot(page, name) {
  const file = path.join(out, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log('screenshot', file);
}

/** The text of an agent's row's health cell, or null while it has no row. */
async function rowHealth(page, peer) {
  const row = page.locator(`#agents-body tr[data-peer="${peer}"] td.health`);
  return (await row.count()) === 0 ? null : (await row.innerText()).trim();
}

async function waitFor(what, check, timeout = TIMEOUT) {
  const until = Date.now() + timeout;
  let last;
  for (;;) {
    last = await check();
    if (last === true) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (last seen: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function statValue(page, key) {
  return (await page.locator(`#health-counts .stat.${key} dd`).innerText()).trim();
}

async function markerSurvived(page) {
  return (await page.evaluate(() => window.__eccoMarker)) === 'set before the updates';
}

async function breakdown(page) {
  return page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll('#reputation-breakdown > div')].map((d) => [
        d.querySelector('dt').textContent.trim(),
        d.querySelector('dd').textContent.trim(),
      ]),
    ),
  );
}

async function main() {
  if (scenario.mode === 'token') return tokenFlow();
  if (scenario.mode === 'reconnect') return reconnectFlow();

  const page = await newPage({ width: 1280, height: 900 });
  await page.goto(`${origin}/`);
  await page.locator('#live[data-state="connected"]').waitFor();
  const counts = scenario.counts;
  await waitFor('the overview counts', async () => {
    const seen = {
      online: await statValue(page, 'online'),
      stale: await statValue(page, 'stale'),
      offline: await statValue(page, 'offline'),
      registered: await statValue(page, 'registered'),
    };
    return (
      (seen.online === String(counts.online) &&
        seen.stale === String(counts.stale) &&
        seen.offline === String(counts.offline) &&
        seen.registered === String(counts.registered)) ||
      seen
    );
  });
  const charts = await page.locator('.charts figure svg[role="img"]').evaluateAll((svgs) => svgs.map((s) => s.getAttribute('aria-label')));
  expect(charts.length === 4, `4 charts, found ${charts.length}`);
  for (const title of ['Active agents', 'Registrations', 'Requests', 'Ratings']) {
    expect(charts.some((label) => label.startsWith(title)), `a chart described as ${title}: ${charts}`);
  }
  expect(
    charts.some((label) => label.startsWith(`Registrations, last hour: ${scenario.registrations_last_hour} registrations`)),
    `the registrations chart to count ${scenario.registrations_last_hour}: ${charts}`,
  );
  const topCaps = await page.locator('section[aria-labelledby="caps-title"] tbody th').allInnerTexts();
  expect(topCaps[0] === scenario.top_capability, `${scenario.top_capability} first among the top capabilities: ${topCaps}`);
  const topAgents = await page.locator('section[aria-labelledby="top-title"] tbody th').allInnerTexts();
  expect(topAgents[0] === scenario.rated.name, `${scenario.rated.name} first by reputation: ${topAgents}`);
  await shoot(page, 'overview');

  // From here on the page must update itself: a reload would drop the marker.
  await page.evaluate(() => {
    window.__eccoMarker = 'set before the updates';
  });

  await page.getByRole('link', { name: 'Agents', exact: true }).click();
  await page.locator('#agents-body tr[data-peer]').first().waitFor();
  await waitFor('every seeded agent in the table', async () => {
    const shown = await page.locator('#agents-body tr[data-peer]').evaluateAll((rows) => rows.map((r) => r.dataset.peer));
    return scenario.agents.every((a) => shown.includes(a.peer)) || shown;
  });
  for (const agent of scenario.agents) {
    const health = await rowHealth(page, agent.peer);
    expect(health === agent.health, `${agent.name} shown ${agent.health}, not ${health}`);
    const name = await page.locator(`#agents-body tr[data-peer="${agent.peer}"] th a`).innerText();
    expect(name === agent.name, `the row of ${agent.peer} named ${agent.name}, not ${name}`);
  }

  // Filters: a capability type, a feature, a health.
  await page.getByLabel('Capability type').fill(scenario.filter.type);
  await page.getByRole('button', { name: 'Search' }).click();
  await waitFor(`only ${scenario.filter.type} agents`, async () => {
    const shown = await page.locator('#agents-body tr[data-peer]').evaluateAll((rows) => rows.map((r) => r.dataset.peer).sort());
    return JSON.stringify(shown) === JSON.stringify([...scenario.filter.type_matches].sort()) || shown;
  });
  await page.getByLabel('Capability type').fill('');
  await page.getByLabel('Feature').fill(scenario.filter.feature);
  await page.getByRole('button', { name: 'Search' }).click();
  await waitFor(`only agents with +${scenario.filter.feature}`, async () => {
    const shown = await page.locator('#agents-body tr[data-peer]').evaluateAll((rows) => rows.map((r) => r.dataset.peer).sort());
    return JSON.stringify(shown) === JSON.stringify([...scenario.filter.feature_matches].sort()) || shown;
  });
  await page.getByRole('link', { name: 'Clear' }).click();
  await waitFor('the filters cleared', async () => (await page.locator('#agents-body tr[data-peer]').count()) === scenario.agents.length);
  await page.getByLabel('Health').selectOption('stale');
  await page.getByRole('button', { name: 'Search' }).click();
  await waitFor('only the stale agent', async () => {
    const shown = await page.locator('#agents-body tr[data-peer]').evaluateAll((rows) => rows.map((r) => r.dataset.peer));
    return JSON.stringify(shown) === JSON.stringify([scenario.sleepy.peer]) || shown;
  });
  await page.getByRole('link', { name: 'Clear' }).click();
  await waitFor('the unfiltered table', async () => (await page.locator('#agents-body tr[data-peer]').count()) === scenario.agents.length);
  // Paging, a few agents at a time.
  await page.evaluate(() => {
    window.location.hash = '#/agents?per_page=2';
  });
  const pages = Math.ceil(scenario.agents.length / 2);
  await waitFor('page 1 of the agents', async () => (await page.locator('#agents-summary').innerText()).endsWith(`Page 1 of ${pages}.`));
  const first = await page.locator('#agents-body tr[data-peer]').evaluateAll((rows) => rows.map((r) => r.dataset.peer));
  expect(first.length === 2, `two agents on a page: ${first}`);
  await page.getByRole('navigation', { name: 'Pages of agents' }).getByRole('link', { name: 'Next' }).click();
  await waitFor('page 2 of the agents', async () => (await page.locator('#agents-summary').innerText()).endsWith(`Page 2 of ${pages}.`));
  const second = await page.locator('#agents-body tr[data-peer]').evaluateAll((rows) => rows.map((r) => r.dataset.peer));
  expect(second.length === 2 && second.every((p) => !first.includes(p)), `other agents on page 2: ${first} then ${second}`);
  await page.getByRole('link', { name: 'Clear' }).click();
  await waitFor('every agent on one page again', async () => (await page.locator('#agents-body tr[data-peer]').count()) === scenario.agents.length);
  await shoot(page, 'agents');

  // Live: a heartbeat turns the stale agent online, without a reload.
  expect((await rowHealth(page, scenario.sleepy.peer)) === 'Stale', 'the sleepy agent stale before its heartbeat');
  await ask('heartbeat');
  await waitFor('the sleepy agent online after its heartbeat', async () => (await rowHealth(page, scenario.sleepy.peer)) === 'Online' || (await rowHealth(page, scenario.sleepy.peer)));
  expect(await markerSurvived(page), 'no reload after the heartbeat');

  // Live: a registration made after the page loaded appears.
  await ask('register');
  await waitFor('the new agent in the table', async () => (await rowHealth(page, scenario.latecomer.peer)) === 'Online');
  const latecomer = await page.locator(`#agents-body tr[data-peer="${scenario.latecomer.peer}"] th a`).innerText();
  expect(latecomer === scenario.latecomer.name, `the new agent named ${scenario.latecomer.name}, not ${latecomer}`);
  expect(await markerSurvived(page), 'no reload after the registration');

  // A refresh that changes nothing keeps the keyboard focus where it was.
  await page.locator(`#agents-body tr[data-peer="${scenario.rated.peer}"] th a`).focus();
  const refreshed = page.waitForResponse((r) => r.url().includes('/v1/agents?'));
  await ask('quiet-heartbeat');
  await refreshed;
  await new Promise((r) => setTimeout(r, 200));
  const focused = await page.evaluate(() => document.activeElement?.closest('tr')?.dataset.peer ?? document.activeElement?.tagName);
  expect(focused === scenario.rated.peer, `the focus kept on ${scenario.rated.name}'s link across a refresh, not on ${focused}`);

  // The agent page: reputation and its breakdown, feedback, history.
  await page.locator(`#agents-body tr[data-peer="${scenario.rated.peer}"] th a`).click();
  await page.locator('#reputation-breakdown').waitFor();
  await waitFor('the agent page', async () => (await page.locator('h1').innerText()) === scenario.rated.name);
  const rated = scenario.rated;
  let parts = await breakdown(page);
  for (const label of ['Prior', 'Prior weight', 'Evidence score', 'Evidence weight', 'Confidence', 'Feedback reports', 'Distinct raters', 'Success rate', 'Mean rating']) {
    expect(label in parts, `"${label}" in the reputation breakdown: ${JSON.stringify(parts)}`);
  }
  expect(parts['Feedback reports'] === String(rated.feedback), `${rated.feedback} feedback reports: ${JSON.stringify(parts)}`);
  expect(parts['Distinct raters'] === String(rated.raters), `${rated.raters} raters: ${JSON.stringify(parts)}`);
  expect(parts.Prior === '50.0', `the prior 50.0: ${JSON.stringify(parts)}`);
  const shownScore = (await page.locator('#reputation-score').innerText()).trim();
  expect(shownScore === rated.score, `the score ${rated.score}, not ${shownScore}`);
  const feedbackRows = await page.locator('#feedback-body tr').count();
  expect(feedbackRows === Math.min(rated.feedback, 10), `${rated.feedback} feedback rows, not ${feedbackRows}`);
  const history = await page.locator('#history svg[role="img"]').getAttribute('aria-label');
  expect(/heard from in [1-9]\d* of 60/.test(history), `a health history with signs of life: ${history}`);
  const capabilities = await page.locator('section[aria-labelledby="caps-title"] tbody th').allInnerTexts();
  expect(capabilities.includes(rated.capability), `${rated.capability} among the capabilities: ${capabilities}`);
  await shoot(page, 'agent');

  // Live on the agent page: new feedback moves the breakdown.
  await ask('feedback');
  await waitFor('the new feedback counted', async () => {
    parts = await breakdown(page);
    return parts['Feedback reports'] === String(rated.feedback + 1) || parts;
  });
  expect(await markerSurvived(page), 'no reload after the feedback');
  expect(loads === 1, `one page load, not ${loads}`);
  const indicator = await page.locator('#live').innerText();
  expect((await page.locator('#live').getAttribute('data-state')) === 'connected' && /Live/.test(indicator), `the indicator connected: ${indicator}`);

  // A phone: nothing wider than the screen, tables as stacked cards.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [hash, name, ready] of [
    ['#/', 'phone-overview', '#health-counts .stat'],
    ['#/agents', 'phone-agents', '#agents-body tr[data-peer]'],
    [`#/agents/${rated.peer}`, 'phone-agent', '#reputation-breakdown'],
  ]) {
    await page.evaluate((h) => {
      window.location.hash = h;
    }, hash);
    await page.locator(ready).first().waitFor();
    // Let the charts and tables of the last answer settle before measuring.
    await new Promise((r) => setTimeout(r, 500));
    const width = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    expect(width[0] <= width[1], `${name} no wider than the phone: ${width}`);
    await shoot(page, name);
  }
  expect(await markerSurvived(page), 'no reload at phone width');
  return { loads };
}

/** The registry goes away and comes back: the indicator says so, and the
 * page catches up with what happened meanwhile, without a reload. */
async function reconnectFlow() {
  const page = await newPage({ width: 1280, height: 900 });
  await page.goto(`${origin}/#/agents`);
  await page.locator('#live[data-state="connected"]').waitFor();
  await page.locator(`#agents-body tr[data-peer="${scenario.first.peer}"]`).waitFor();
  await page.evaluate(() => {
    window.__eccoMarker = 'set before the updates';
    // Every state the indicator goes through, in order.
    window.__eccoStates = [];
    const live = document.getElementById('live');
    new MutationObserver(() => window.__eccoStates.push(live.dataset.state)).observe(live, { attributes: true, attributeFilter: ['data-state'] });
  });
  await ask('stop');
  await page.locator('#live[data-state="lost"]').waitFor();
  const lost = await page.locator('#live').innerText();
  expect(/lost/i.test(lost), `the indicator to say the stream is lost: ${lost}`);
  await shoot(page, 'lost');
  await ask('start');
  await page.locator('#live[data-state="connected"]').waitFor({ timeout: 30_000 });
  const back = await page.locator('#live').innerText();
  expect(/Live again/.test(back), `the indicator to say the stream is back: ${back}`);
  const states = await page.evaluate(() => window.__eccoStates);
  expect(states.indexOf('reconnecting') >= 0 && states.indexOf('reconnecting') < states.indexOf('lost'), `reconnecting, then lost: ${states}`);
  expect(states.at(-1) === 'connected', `connected at last: ${states}`);
  await waitFor('the agent registered while the page was away', async () => (await rowHealth(page, scenario.while_away.peer)) === 'Online');
  expect(await markerSurvived(page), 'no reload across the outage');
  expect(loads === 1, `one page load, not ${loads}`);
  return { loads, states };
}

/** A registry with a read token: the page asks for it, then works. */
async function tokenFlow() {
  const page = await newPage({ width: 1280, height: 900 });
  await page.goto(`${origin}/`);
  const panel = page.locator('#token');
  await panel.waitFor({ state: 'visible' });
  await page.locator('#live[data-state="unauthorized"]').waitFor();
  await shoot(page, 'token');
  await page.getByLabel('Read token', { exact: true }).fill('wrong');
  await page.getByRole('button', { name: 'Use this token' }).click();
  await waitFor('the wrong token refused', async () => (await panel.isVisible()) && /refused/.test(await panel.locator('h2').innerText()));
  await page.getByLabel('Read token', { exact: true }).fill(scenario.token);
  await page.getByRole('button', { name: 'Use this token' }).click();
  await page.locator('#live[data-state="connected"]').waitFor();
  await waitFor('the overview with the token', async () => (await statValue(page, 'registered')) === String(scenario.counts.registered));
  expect(!(await panel.isVisible()), 'the token prompt gone');
  const stored = await page.evaluate(() => sessionStorage.getItem('ecco-registry-read-token'));
  expect(stored === scenario.token, 'the token kept in sessionStorage');
  return { loads };
}

try {
  const summary = await main();
  expect(offsite.length === 0, `no request beyond the registry: ${offsite}`);
  expect(problems.length === 0, `no console errors: ${problems.join(' | ')}`);
  process.stdout.write(`${JSON.stringify({ done: true, ms: Date.now() - started, ...summary })}\n`);
  await close();
  process.exit(0);
} catch (e) {
  console.error(`FAILED: ${e.stack ?? e}`);
  if (problems.length) console.error(`console problems: ${problems.join(' | ')}`);
  await close();
  process.exit(1);
}

/** Closes the browser, giving up after 5 s: the test must end either way. */
async function close() {
  await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
}
