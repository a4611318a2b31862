// The registry's dashboard: three views behind hash routes (#/, #/agents,
// #/agents/<peer id>), kept current by the live event stream.

import { ApiError, Unauthorized, follow, get, setToken, token } from './api.js';
import { barChart, formatCount, shareBar, timeLabel } from './charts.js';

const viewRoot = document.getElementById('view');
const live = document.getElementById('live');
const liveText = document.getElementById('live-text');
const tokenPanel = document.getElementById('token');
const tokenForm = document.getElementById('token-form');
const tokenInput = document.getElementById('token-input');
const tokenWhy = document.getElementById('token-why');
const forgetToken = document.getElementById('forget-token');

/** Peer id → display name, from everything loaded so far. */
const names = new Map();
/** The newest live events, newest first, for the overview's feed. */
const recentEvents = [];
const MAX_RECENT = 15;
const PER_PAGE = 25;

// ---- DOM helpers: text always goes in as text, never as markup. ----

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replaces `node`'s children, unless they would be the same: a refresh that
 * changes nothing leaves the DOM, and the keyboard focus in it, alone.
 */
function put(node, ...children) {
  const fresh = document.createElement(node.tagName);
  append(fresh, children);
  if (fresh.innerHTML === node.innerHTML) return;
  node.replaceChildren(...fresh.childNodes);
}

function section(id, title, ...children) {
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

function table(caption, columns, body, className = '') {
  return h(
    'div',
    { class: `table-wrap ${className}`.trim(), role: 'region', 'aria-label': caption, tabindex: 0 },
    h(
      'table',
      {},
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      body,
    ),
  );
}

function cell(label, ...children) {
  return h('td', { 'data-label': label }, ...children);
}

function shortId(id) {
  return id.length > 18 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

function nameOf(peer) {
  return names.get(peer) ?? shortId(peer);
}

function agentLink(peer, name) {
  return h('a', { href: `#/agents/${encodeURIComponent(peer)}` }, name ?? nameOf(peer));
}

const HEALTH = { online: 'Online', stale: 'Stale', offline: 'Offline' };

function healthBadge(health) {
  return h('span', { class: `badge ${health}` }, HEALTH[health] ?? health);
}

function score(x) {
  return Number(x).toFixed(1);
}

function percent(x) {
  return `${(Number(x) * 100).toFixed(Number(x) >= 0.995 || x === 0 ? 0 : 1)} %`;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86_400)} d ago`;
}

function when(ms) {
  return h('time', { datetime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString() }, ago(ms));
}

/** A fixed time (not "5 s ago"), so that refreshes do not rewrite it. */
function stamp(ms) {
  const date = new Date(ms);
  const today = date.toDateString() === new Date().toDateString();
  return h('time', { datetime: date.toISOString() }, today ? date.toLocaleTimeString() : date.toLocaleString());
}

function capabilityText(c) {
  return `${c.type} ${c.name}@${c.version}`;
}

function message(text, className = 'muted') {
  return h('p', { class: className }, text);
}

// ---- Errors, the read token, and loading with them. ----

function showToken(refused) {
  tokenWhy.hidden = false;
  tokenPanel.hidden = false;
  tokenPanel.dataset.refused = refused ? 'yes' : 'no';
  const title = tokenPanel.querySelector('h2');
  title.textContent = refused ? 'The read token was refused' : 'This registry needs a read token';
  tokenInput.focus();
}

tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const value = tokenInput.value.trim();
  if (!value) return;
  setToken(value);
  tokenInput.value = '';
  tokenPanel.hidden = true;
  forgetToken.hidden = false;
  stream.restart();
  refresh();
});

forgetToken.hidden = !token();
forgetToken.addEventListener('click', () => {
  setToken(null);
  forgetToken.hidden = true;
  stream.restart();
  refresh();
});

/**
 * Runs a view's loader; shows what went wrong in `errorBox` (a role=alert
 * paragraph) and asks for the token on 401. Resolves true when it worked.
 */
async function guarded(errorBox, load) {
  try {
    await load();
    errorBox.hidden = true;
    errorBox.textContent = '';
    return true;
  } catch (e) {
    if (e instanceof Unauthorized) {
      showToken(Boolean(token()));
      errorBox.textContent = 'Waiting for the read token.';
    } else if (e instanceof ApiError) {
      errorBox.textContent = `The registry refused: ${e.message} (${e.status} ${e.code}).`;
    } else if (e instanceof TypeError && /fetch/i.test(e.message)) {
      errorBox.textContent = 'The registry is unreachable; the page retries when the live stream is back.';
    } else {
      // A bug in this page: say so, and leave the details to the console.
      console.error(e.stack ?? e);
      errorBox.textContent = `This page failed: ${e.message}`;
    }
    errorBox.hidden = false;
    return false;
  }
}

function errorBox() {
  return h('p', { class: 'error', role: 'alert', hidden: true });
}

/** Each load gets a ticket; an answer to an older ticket is dropped. */
function latest() {
  let ticket = 0;
  return () => {
    const mine = ++ticket;
    return () => mine === ticket;
  };
}

// ---- Overview ----

const PERIODS = {
  hour: { label: 'Last hour', bucket: 60, window: 3600 },
  day: { label: 'Last 24 hours', bucket: 1800, window: 86_400 },
  week: { label: 'Last 7 days', bucket: 21_600, window: 604_800 },
};

const SERIES = [
  { metric: 'active_agents', title: 'Active agents', what: 'distinct agents heard from' },
  { metric: 'registrations', title: 'Registrations', what: 'registrations' },
  { metric: 'requests', title: 'Requests', what: 'requests reported through feedback' },
  { metric: 'ratings', title: 'Ratings', what: 'star ratings' },
];

function overviewView(route) {
  const errors = errorBox();
  const stats = h('dl', { class: 'stats', id: 'health-counts' });
  const period = h(
    'select',
    {
      id: 'period',
      onchange: () => {
        window.location.hash = `#/?period=${period.value}`;
      },
    },
    Object.entries(PERIODS).map(([key, p]) => h('option', { value: key }, p.label)),
  );
  const charts = h('div', { class: 'charts' });
  const capsBody = h('tbody');
  const topBody = h('tbody');
  const feed = h('ol', { class: 'feed', id: 'event-feed' });
  const root = h(
    'div',
    { class: 'view' },
    h('h1', { tabindex: -1 }, 'Overview'),
    errors,
    section('now-title', 'Agents now', stats),
    section(
      'activity-title',
      'Activity',
      h('div', { class: 'controls' }, h('label', { for: 'period' }, 'Period'), period),
      charts,
    ),
    h(
      'div',
      { class: 'columns' },
      section('caps-title', 'Top capabilities', table('Capability types by registered agents', ['Capability', 'Agents', 'Share'], capsBody)),
      section('top-title', 'Top agents by reputation', table('Registered agents by reputation', ['Agent', 'Health', 'Reputation'], topBody)),
    ),
    section('feed-title', 'Live events', h('p', { class: 'muted' }, 'As they arrive on the event stream, newest first.'), feed),
  );
  let choice = 'hour';
  const next = latest();

  function setRoute(r) {
    choice = PERIODS[r.params.get('period')] ? r.params.get('period') : 'hour';
    period.value = choice;
  }
  setRoute(route);

  function renderFeed() {
    feed.replaceChildren(
      ...(recentEvents.length === 0
        ? [h('li', { class: 'muted' }, 'Nothing yet.')]
        : recentEvents.map((e) =>
            h(
              'li',
              {},
              h('time', { datetime: new Date(e.at_ms).toISOString() }, new Date(e.at_ms).toLocaleTimeString()),
              ' ',
              h('span', { class: `kind ${e.kind}` }, e.kind.replace('_', ' ')),
              ' ',
              agentLink(e.agent),
              e.health ? [' ', healthBadge(e.health)] : null,
              e.reputation !== undefined ? ` reputation ${score(e.reputation)}` : null,
            ),
          )),
    );
  }

  async function load() {
    const current = next();
    await guarded(errors, async () => {
      const p = PERIODS[choice];
      const [overview, caps, top, ...series] = await Promise.all([
        get('/v1/analytics/overview'),
        get('/v1/analytics/top-capabilities', { limit: 10 }),
        get('/v1/analytics/top-agents', { limit: 10 }),
        ...SERIES.map((s) => get('/v1/analytics/series', { metric: s.metric, bucket_secs: p.bucket, window_secs: p.window })),
      ]);
      if (!current()) return;
      const counts = overview.agents;
      stats.replaceChildren(
        ...[
          ['online', 'Online', counts.online],
          ['stale', 'Stale', counts.stale],
          ['offline', 'Offline', counts.offline],
          ['registered', 'Registered', overview.registered],
        ].map(([key, label, n]) => h('div', { class: `stat ${key}`, 'data-health': key }, h('dt', {}, label), h('dd', {}, formatCount(n)))),
      );
      charts.replaceChildren(
        ...SERIES.map((s, i) => {
          const points = series[i].points;
          const bucketMs = series[i].bucket_secs * 1000;
          const headingId = `chart-${s.metric}`;
          return h(
            'figure',
            { class: 'figure', 'aria-labelledby': headingId },
            h('figcaption', { id: headingId }, h('strong', {}, s.title), ' ', h('span', { class: 'muted' }, `per ${describeBucket(series[i].bucket_secs)}`)),
            barChart({
              points,
              bucketMs,
              describe: (total, peak, peakAt) =>
                `${s.title}, ${p.label.toLowerCase()}: ${formatCount(total)} ${s.what} in total` +
                (peak > 0 ? `, at most ${formatCount(peak)} per ${describeBucket(series[i].bucket_secs)} (at ${timeLabel(peakAt, p.window * 1000)}).` : '.'),
            }),
          );
        }),
      );
      const most = caps.reduce((m, c) => Math.max(m, c.agents), 1);
      put(capsBody,
        ...(caps.length === 0
          ? [h('tr', {}, h('td', { colspan: 3, class: 'muted' }, 'No agents registered.'))]
          : caps.map((c) =>
              h(
                'tr',
                {},
                h('th', { scope: 'row', 'data-label': 'Capability' }, h('a', { href: `#/agents?type=${encodeURIComponent(c.capability)}` }, c.capability)),
                cell('Agents', formatCount(c.agents)),
                cell('Share', shareBar(c.agents / most, `${c.agents} agents`)),
              ),
            )),
      );
      for (const a of top) names.set(a.peer_id, a.name);
      put(topBody,
        ...(top.length === 0
          ? [h('tr', {}, h('td', { colspan: 3, class: 'muted' }, 'No agents registered.'))]
          : top.map((a) =>
              h(
                'tr',
                {},
                h('th', { scope: 'row', 'data-label': 'Agent' }, agentLink(a.peer_id, a.name)),
                cell('Health', healthBadge(a.health)),
                cell('Reputation', score(a.reputation)),
              ),
            )),
      );
      renderFeed();
    });
  }

  return {
    name: 'overview',
    title: 'Overview',
    root,
    load,
    update(r) {
      setRoute(r);
      return load();
    },
    onEvent() {
      renderFeed();
      return true;
    },
  };
}

function describeBucket(secs) {
  if (secs % 3600 === 0) return secs === 3600 ? 'hour' : `${secs / 3600} hours`;
  if (secs % 60 === 0) return secs === 60 ? 'minute' : `${secs / 60} minutes`;
  return `${secs} s`;
}

// ---- Agents ----

/** The SDK query text from the filters: `type +feature … more`. */
function buildQuery(type, feature, more) {
  const parts = [type.trim() || '*'];
  for (const f of feature.split(/[\s,]+/).filter(Boolean)) parts.push(`+${f.replace(/^\+/, '')}`);
  if (more.trim()) parts.push(more.trim());
  const q = parts.join(' ');
  return q === '*' ? '' : q;
}

function agentsView(route) {
  const errors = errorBox();
  const typeInput = h('input', { id: 'f-type', name: 'type', list: 'cap-types', placeholder: 'llm/* or llm/chat', autocomplete: 'off' });
  const featureInput = h('input', { id: 'f-feature', name: 'feature', placeholder: 'summarize', autocomplete: 'off' });
  const moreInput = h('input', { id: 'f-more', name: 'more', placeholder: 'price<=0.01 ~french', autocomplete: 'off' });
  const healthSelect = h(
    'select',
    { id: 'f-health', name: 'health' },
    h('option', { value: '' }, 'Any'),
    Object.entries(HEALTH).map(([value, label]) => h('option', { value }, label)),
  );
  const datalist = h('datalist', { id: 'cap-types' });
  const summary = h('p', { class: 'summary', id: 'agents-summary', 'aria-live': 'polite' });
  const body = h('tbody', { id: 'agents-body' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of agents' });
  let params = new URLSearchParams();

  const form = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': 'Search agents',
      onsubmit: (event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        for (const [key, input] of [['type', typeInput], ['feature', featureInput], ['more', moreInput], ['health', healthSelect]]) {
          if (input.value.trim()) next.set(key, input.value.trim());
        }
        const hash = `#/agents${next.toString() ? `?${next}` : ''}`;
        if (window.location.hash === hash) load();
        else window.location.hash = hash;
      },
    },
    h('div', { class: 'field' }, h('label', { for: 'f-type' }, 'Capability type'), typeInput, datalist),
    h('div', { class: 'field' }, h('label', { for: 'f-feature' }, 'Feature'), featureInput),
    h(
      'div',
      { class: 'field wide' },
      h('label', { for: 'f-more' }, 'More conditions ', h('span', { class: 'muted' }, '(query language)')),
      moreInput,
    ),
    h('div', { class: 'field' }, h('label', { for: 'f-health' }, 'Health'), healthSelect),
    h('div', { class: 'field buttons' }, h('button', { type: 'submit' }, 'Search'), h('a', { href: '#/agents', class: 'button secondary' }, 'Clear')),
  );

  const root = h(
    'div',
    { class: 'view' },
    h('h1', { tabindex: -1 }, 'Agents'),
    form,
    errors,
    summary,
    table('Registered agents', ['Name', 'Peer id', 'Best capability', 'Health', 'Reputation', 'Match'], body, 'agents'),
    pager,
  );
  const next = latest();
  let typesLoaded = false;

  function setRoute(r) {
    params = r.params;
    typeInput.value = params.get('type') ?? '';
    featureInput.value = params.get('feature') ?? '';
    moreInput.value = params.get('more') ?? '';
    healthSelect.value = HEALTH[params.get('health')] ? params.get('health') : '';
  }
  setRoute(route);

  function pageLink(page, label, enabled) {
    if (!enabled) return h('span', { class: 'button secondary', 'aria-disabled': 'true' }, label);
    const p = new URLSearchParams(params);
    p.set('page', String(page));
    return h('a', { class: 'button secondary', href: `#/agents?${p}` }, label);
  }

  async function load() {
    const current = next();
    await guarded(errors, async () => {
      const page = Math.max(1, Number.parseInt(params.get('page') ?? '1', 10) || 1);
      const perPage = Math.min(100, Math.max(1, Number.parseInt(params.get('per_page') ?? '', 10) || PER_PAGE));
      const q = buildQuery(params.get('type') ?? '', params.get('feature') ?? '', params.get('more') ?? '');
      const result = await get('/v1/agents', { q, health: params.get('health') ?? '', page, per_page: perPage });
      if (!current()) return;
      for (const a of result.items) names.set(a.peer_id, a.name);
      const pages = Math.max(1, Math.ceil(result.total / result.per_page));
      summary.textContent =
        `${formatCount(result.total)} ${result.total === 1 ? 'agent' : 'agents'}` +
        (q ? ` matching ${q}` : '') +
        (params.get('health') ? `, ${params.get('health')}` : '') +
        `. Page ${result.page} of ${pages}.`;
      put(body,
        ...(result.items.length === 0
          ? [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No agent matches.'))]
          : result.items.map((a) =>
              h(
                'tr',
                { 'data-peer': a.peer_id },
                h('th', { scope: 'row', 'data-label': 'Name' }, agentLink(a.peer_id, a.name)),
                cell('Peer id', h('code', { title: a.peer_id }, shortId(a.peer_id))),
                cell('Best capability', capabilityText(a.capability)),
                h('td', { 'data-label': 'Health', class: 'health' }, healthBadge(a.health)),
                cell('Reputation', score(a.reputation)),
                cell('Match', q ? percent(a.match_score) : '—'),
              ),
            )),
      );
      put(pager, pageLink(result.page - 1, 'Previous', result.page > 1), pageLink(result.page + 1, 'Next', result.page < pages));
      if (!typesLoaded) {
        const caps = await get('/v1/analytics/top-capabilities', { limit: 100 });
        datalist.replaceChildren(...caps.map((c) => h('option', { value: c.capability })));
        typesLoaded = true;
      }
    });
  }

  return {
    name: 'agents',
    title: 'Agents',
    root,
    load,
    update(r) {
      setRoute(r);
      return load();
    },
    onEvent: () => true,
  };
}

// ---- One agent ----

const HOURS = { 1: 'Last hour', 24: 'Last 24 hours', 168: 'Last 7 days' };

function agentView(route) {
  const id = route.id;
  const errors = errorBox();
  const missing = h('p', { class: 'notice', role: 'status', hidden: true }, 'This agent is not registered (any more).');
  const title = h('h1', { tabindex: -1 }, nameOf(id));
  const badge = h('span', { class: 'title-badge' });
  const status = h('dl', { class: 'facts', id: 'agent-status' });
  const reputation = h('div', { id: 'reputation' });
  const hoursSelect = h(
    'select',
    {
      id: 'history-hours',
      onchange: () => {
        window.location.hash = `#/agents/${encodeURIComponent(id)}?hours=${hoursSelect.value}`;
      },
    },
    Object.entries(HOURS).map(([value, label]) => h('option', { value }, label)),
  );
  const history = h('div', { id: 'history' });
  const capsBody = h('tbody');
  const addresses = h('ul', { class: 'addresses' });
  const feedbackBody = h('tbody', { id: 'feedback-body' });
  const feedbackSummary = h('p', { class: 'summary' });
  const feedbackPager = h('nav', { class: 'pager', 'aria-label': 'Pages of feedback' });
  const content = h(
    'div',
    { class: 'agent-content' },
    h(
      'div',
      { class: 'columns' },
      section('status-title', 'Status', status),
      section('rep-title', 'Reputation', reputation),
    ),
    section(
      'history-title',
      'Health history',
      h('div', { class: 'controls' }, h('label', { for: 'history-hours' }, 'Period'), hoursSelect),
      history,
    ),
    section('caps-title', 'Capabilities', table('Capabilities', ['Type', 'Name', 'Version', 'Features', 'Constraints'], capsBody)),
    section('addr-title', 'Addresses', addresses),
    section('feedback-title', 'Recent feedback', feedbackSummary, table('Feedback, newest first', ['When', 'Rater', 'Capability', 'Outcome', 'Latency', 'Rating'], feedbackBody), feedbackPager),
  );
  const root = h(
    'div',
    { class: 'view' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/agents' }, '← All agents')),
    h('div', { class: 'title-row' }, title, badge),
    h('p', { class: 'muted peer' }, h('code', {}, id)),
    errors,
    missing,
    content,
  );
  let hours = 1;
  let feedbackPage = 1;
  const next = latest();

  function setRoute(r) {
    hours = HOURS[r.params.get('hours')] ? Number(r.params.get('hours')) : 1;
    feedbackPage = Math.max(1, Number.parseInt(r.params.get('feedback_page') ?? '1', 10) || 1);
    hoursSelect.value = String(hours);
  }
  setRoute(route);

  function feedbackLink(page, label, enabled) {
    if (!enabled) return h('span', { class: 'button secondary', 'aria-disabled': 'true' }, label);
    return h('a', { class: 'button secondary', href: `#/agents/${encodeURIComponent(id)}?hours=${hours}&feedback_page=${page}` }, label);
  }

  async function load() {
    const current = next();
    await guarded(errors, async () => {
      const path = `/v1/agents/${encodeURIComponent(id)}`;
      const detail = await get(path).catch((e) => {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      });
      if (detail === null) {
        if (!current()) return;
        content.hidden = true;
        badge.replaceChildren();
        missing.hidden = false;
        return;
      }
      const [activity, feedback] = await Promise.all([
        get(`${path}/activity`, { hours }),
        get(`${path}/feedback`, { page: feedbackPage, per_page: 10 }),
      ]);
      if (!current()) return;
      missing.hidden = true;
      content.hidden = false;
      names.set(id, detail.name);
      title.textContent = detail.name;
      document.title = `${detail.name} · Ecco registry`;
      badge.replaceChildren(healthBadge(detail.health));
      renderStatus(detail);
      renderReputation(detail.reputation);
      renderHistory(activity);
      renderCapabilities(detail.capabilities.capabilities);
      put(addresses,
        ...(detail.addresses.length === 0 ? [h('li', { class: 'muted' }, 'None given.')] : detail.addresses.map((a) => h('li', {}, h('code', {}, a)))),
      );
      renderFeedback(feedback);
    });
  }

  function fact(label, ...value) {
    return h('div', {}, h('dt', {}, label), h('dd', {}, ...value));
  }

  function renderStatus(d) {
    status.replaceChildren(
      fact('Health', healthBadge(d.health)),
      fact('Last seen', when(d.last_seen_ms)),
      fact('Uptime', percent(d.uptime), h('span', { class: 'muted' }, ' of the time since registering')),
      fact('Registered', when(d.registered_at_ms)),
      fact('Updated', when(d.updated_at_ms)),
    );
  }

  function renderReputation(r) {
    const b = r.breakdown;
    const formula =
      b.evidence_score === null
        ? `No feedback yet: the score is the prior, ${score(b.prior)}.`
        : `(${score(b.prior)} × ${b.prior_weight.toFixed(2)} + ${score(b.evidence_score)} × ${b.evidence_weight.toFixed(2)}) ÷ (${b.prior_weight.toFixed(2)} + ${b.evidence_weight.toFixed(2)}) = ${score(r.score)}`;
    const rows = [
      ['Prior', score(b.prior)],
      ['Prior weight', b.prior_weight.toFixed(2)],
      ['Evidence score', b.evidence_score === null ? '—' : score(b.evidence_score)],
      ['Evidence weight', b.evidence_weight.toFixed(2)],
      ['Confidence', percent(b.confidence)],
      ['Feedback reports', formatCount(b.feedback)],
      ['Distinct raters', formatCount(b.raters)],
      ['Success rate', b.success_rate === null ? '—' : percent(b.success_rate)],
      ['Mean rating', b.mean_rating === null ? '—' : `${b.mean_rating.toFixed(2)} / 5`],
    ];
    reputation.replaceChildren(
      h('p', { class: 'score' }, h('span', { class: 'big', id: 'reputation-score' }, score(r.score)), h('span', { class: 'muted' }, ' / 100')),
      h('meter', { min: 0, max: 100, low: 40, high: 70, optimum: 100, value: r.score, 'aria-label': 'Reputation score out of 100' }),
      h('p', { class: 'formula' }, h('span', { class: 'visually-hidden' }, 'How the score is made: '), formula),
      h('dl', { class: 'breakdown', id: 'reputation-breakdown' }, rows.map(([label, value]) => fact(label, value))),
    );
  }

  function renderHistory(activity) {
    const heard = activity.buckets.filter((b) => b.minutes > 0).length;
    const bucketMs = activity.bucket_secs * 1000;
    history.replaceChildren(
      h('p', { class: 'muted' }, `Share of each ${describeBucket(activity.bucket_secs)} in which the agent was heard from (registration or heartbeat).`),
      barChart({
        points: activity.buckets,
        bucketMs,
        measure: (b) => b.share,
        max: 1,
        className: 'presence',
        describe: () =>
          `Health history, ${HOURS[activity.hours]?.toLowerCase() ?? `last ${activity.hours} hours`}: heard from in ${heard} of ${activity.buckets.length} periods of ${describeBucket(activity.bucket_secs)}.`,
        tip: (b) => `${timeLabel(b.t_ms, activity.hours * 3_600_000)}: heard from in ${b.minutes} min (${percent(b.share)})`,
      }),
    );
  }

  function renderCapabilities(capabilities) {
    put(capsBody,
      ...capabilities.map((c) =>
        h(
          'tr',
          {},
          h('th', { scope: 'row', 'data-label': 'Type' }, c.type),
          cell('Name', c.name),
          cell('Version', c.version),
          cell('Features', (c.features ?? []).length ? c.features.join(', ') : '—'),
          cell(
            'Constraints',
            Object.keys(c.constraints ?? {}).length
              ? Object.entries(c.constraints)
                  .map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(', ')}]` : v}`)
                  .join(' ')
              : '—',
          ),
        ),
      ),
    );
  }

  function renderFeedback(page) {
    const pages = Math.max(1, Math.ceil(page.total / page.per_page));
    feedbackSummary.textContent =
      page.total === 0 ? 'No feedback yet.' : `${formatCount(page.total)} ${page.total === 1 ? 'report' : 'reports'}. Page ${page.page} of ${pages}.`;
    put(feedbackBody,
      ...page.items.map((f) =>
        h(
          'tr',
          {},
          h('th', { scope: 'row', 'data-label': 'When' }, stamp(f.at_ms)),
          cell('Rater', agentLink(f.rater)),
          cell('Capability', f.capability),
          cell('Outcome', h('span', { class: f.success ? 'ok' : 'fail' }, f.success ? 'Success' : 'Failure')),
          cell('Latency', `${formatCount(f.latency_ms)} ms`),
          cell(
            'Rating',
            f.rating === null || f.rating === undefined
              ? '—'
              : [h('span', { 'aria-hidden': 'true', class: 'stars' }, '★'.repeat(f.rating) + '☆'.repeat(5 - f.rating)), h('span', { class: 'visually-hidden' }, `${f.rating} of 5 stars`)],
          ),
        ),
      ),
    );
    put(feedbackPager, feedbackLink(page.page - 1, 'Newer', page.page > 1), feedbackLink(page.page + 1, 'Older', page.page < pages));
  }

  return {
    name: 'agent',
    id,
    title: nameOf(id),
    root,
    load,
    update(r) {
      setRoute(r);
      return load();
    },
    // Another agent's feedback can change this one's raters' trust.
    onEvent: (event) => event.agent === id || event.kind === 'reputation',
  };
}

function missingView() {
  return {
    name: 'missing',
    title: 'Not found',
    root: h('div', { class: 'view' }, h('h1', { tabindex: -1 }, 'No such page'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview'))),
    load: async () => {},
    onEvent: () => false,
  };
}

// ---- Routing ----

function parseRoute() {
  const hash = window.location.hash || '#/';
  // Other fragments (the skip link) are not routes.
  if (!hash.startsWith('#/')) return null;
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query ?? '');
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return { name: 'overview', params };
  if (parts[0] === 'agents' && parts.length === 1) return { name: 'agents', params };
  if (parts[0] === 'agents' && parts.length === 2) return { name: 'agent', id: decodeURIComponent(parts[1]), params };
  return { name: 'missing', params };
}

const VIEWS = { overview: overviewView, agents: agentsView, agent: agentView, missing: missingView };
let current = null;
let firstRender = true;

async function navigate() {
  const route = parseRoute();
  if (!route) return;
  for (const link of document.querySelectorAll('[data-nav]')) {
    const active = link.dataset.nav === route.name || (link.dataset.nav === 'agents' && route.name === 'agent');
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (current && current.name === route.name && current.update && (route.name !== 'agent' || current.id === route.id)) {
    await current.update(route);
    return;
  }
  current = VIEWS[route.name](route);
  viewRoot.replaceChildren(current.root);
  document.title = `${current.title} · Ecco registry`;
  if (!firstRender) current.root.querySelector('h1')?.focus();
  firstRender = false;
  await current.load();
}

function refresh() {
  return current?.load();
}

// Events come in bursts (every agent heartbeats): refresh once the burst
// settles, but at least every 1.5 s while it lasts.
let pending = null;
let burstStarted = 0;
function scheduleRefresh() {
  const now = Date.now();
  if (pending === null) burstStarted = now;
  clearTimeout(pending);
  const wait = Math.max(0, Math.min(250, burstStarted + 1500 - now));
  pending = setTimeout(() => {
    pending = null;
    refresh();
  }, wait);
}

// ---- Live stream ----

const LIVE = {
  connecting: 'Connecting to live updates…',
  connected: 'Live',
  reconnecting: 'Live updates interrupted: reconnecting…',
  lost: 'Live updates lost: retrying',
  unauthorized: 'Live updates need the read token',
};
let lastState = 'connecting';

const stream = follow({
  onEvent({ data }) {
    if (!data || typeof data.agent !== 'string') return;
    recentEvents.unshift(data);
    recentEvents.length = Math.min(recentEvents.length, MAX_RECENT);
    if (current?.onEvent(data)) scheduleRefresh();
  },
  onState(state, retryMs) {
    live.dataset.state = state;
    let text = LIVE[state] ?? state;
    if (state === 'lost' && retryMs) text += ` in ${Math.max(1, Math.round(retryMs / 1000))} s`;
    if (state === 'connected' && (lastState === 'reconnecting' || lastState === 'lost')) {
      text = 'Live again';
      // Events were missed while away.
      scheduleRefresh();
    }
    if (state === 'unauthorized') showToken(Boolean(token()));
    liveText.textContent = text;
    lastState = state;
  },
});

document.getElementById('skip').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('main').focus();
});
window.addEventListener('hashchange', navigate);
navigate();
