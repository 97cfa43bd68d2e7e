// The dashboard page served at the admin port's "/": one self-contained HTML document (inline CSS and
// script, plain DOM, no request leaves the gateway) that fills itself from GET /api/v1/status and then
// follows the live event stream: nodes, pool usage, the read/write split, the mirror (shadow traffic)
// and an event log.
//
// How it talks to the API
//   * The page itself is served without auth; its data is not. The token comes from the URL fragment
//     (/#token=...; a fragment never reaches a server log), is kept in sessionStorage and cleared from
//     the address bar; when the API answers 401 a small form asks for it.
//   * Every (re)connect first reads /api/v1/status: that fills the page and tells a refused token apart
//     from a gateway that is down (a browser cannot see why a WebSocket handshake failed). Then it opens
//     /api/v1/events/stream?token=...; lost or silent streams are reopened with exponential backoff.
//   * The split is derived, not sent: each node's `leases` counts the transactions it served since the
//     gateway started, so the difference between two snapshots over their time apart is transactions/s.
//
// Stable hooks for tests and scripts: #conn[data-state], #nodes tr[data-node] with
// td[data-field=role|state|lag], #split [data-split-node] (a number, transactions/s),
// #pools tr[data-pool], #clients, #mirror[data-enabled] with [data-mirror-field=mirrored|matched|
// mismatched|lag|errors|dropped|queue], #mirror-mismatches tr[data-fingerprint] with
// td[data-field=statement|differences|node|primary_ms|mirror_ms], #events li[data-type], #event-filter, #auth.
//
// The mirror's totals come with every snapshot; its mismatches are the stream's mirror_mismatch events
// (the page takes every event type but txn_routed), so the list holds those since the page opened.
//
// Written with String.raw so the script's backslashes reach the browser as written; the page must not
// contain a backtick or a dollar sign followed by an opening brace.

export const DASHBOARD_HTML: string = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>switchyard</title>
<style>
  :root {
    --bg: #0f1419; --panel: #161d25; --line: #25303c; --text: #d8dee6; --muted: #8593a3;
    --ok: #3fb96f; --warn: #e0a030; --bad: #e5534b; --info: #4aa3ff;
    --primary: #f0a030; --fenced: #9b6bd3;
    --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
  header { display: flex; align-items: center; gap: 18px; flex-wrap: wrap; padding: 12px 20px; border-bottom: 1px solid var(--line); background: var(--panel); }
  header h1 { font-size: 18px; margin: 0; letter-spacing: .02em; }
  header .meta { color: var(--muted); display: flex; gap: 14px; flex-wrap: wrap; }
  header .meta b { color: var(--text); font-weight: 600; }
  #conn { margin-left: auto; display: inline-flex; align-items: center; gap: 8px; padding: 3px 10px; border: 1px solid var(--line); border-radius: 999px; font-size: 13px; }
  #conn::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: var(--muted); }
  #conn[data-state="live"]::before { background: var(--ok); box-shadow: 0 0 6px var(--ok); }
  #conn[data-state="connecting"]::before, #conn[data-state="reconnecting"]::before { background: var(--warn); }
  #conn[data-state="unauthorized"]::before, #conn[data-state="stale"]::before { background: var(--bad); }
  main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; padding: 16px 20px 24px; }
  section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
  section.wide { grid-column: 1 / -1; }
  @media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); } }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .08em; color: var(--muted); margin: 0 0 10px; display: flex; align-items: center; gap: 10px; }
  h2 .aside { margin-left: auto; text-transform: none; letter-spacing: 0; font-weight: normal; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  td { padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
  tr:last-child td { border-bottom: 0; }
  td.num, th.num { text-align: right; }
  .mono { font-family: var(--mono); font-size: 12.5px; }
  .muted { color: var(--muted); }
  .small { font-size: 12px; }
  .empty td { color: var(--muted); font-style: italic; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 4px; font-size: 12px; font-weight: 600; border: 1px solid currentColor; }
  .role-primary { color: var(--primary); }
  .role-replica { color: var(--info); }
  .role-fenced { color: var(--fenced); }
  .state-active { color: var(--ok); }
  .state-pending, .state-lagging, .state-draining { color: var(--warn); }
  .state-banned, .state-down { color: var(--bad); }
  .note { max-width: 340px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .note.error { color: var(--bad); }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
  .split-summary { display: flex; gap: 18px; flex-wrap: wrap; align-items: baseline; margin-bottom: 8px; }
  .split-summary .big { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .bar { display: flex; height: 14px; border-radius: 4px; overflow: hidden; background: #0b1015; border: 1px solid var(--line); }
  .bar > span { display: block; height: 100%; transition: width .4s ease; }
  #split-bar { height: 22px; margin-bottom: 10px; }
  #split-nodes { list-style: none; margin: 0 0 10px; padding: 0; display: grid; gap: 6px; }
  #split-nodes li { display: grid; grid-template-columns: 110px 70px minmax(0, 1fr) 56px; gap: 10px; align-items: center; }
  #split-nodes .rate { text-align: right; font-family: var(--mono); }
  #split-history { width: 100%; height: 110px; display: block; background: #0b1015; border: 1px solid var(--line); border-radius: 4px; }
  .legend { display: flex; justify-content: space-between; color: var(--muted); font-size: 12px; margin-top: 4px; }
  .usage { width: 100%; min-width: 60px; }
  .scroll { overflow-x: auto; }
  .nowrap { white-space: nowrap; }
  .usage .active { background: var(--info); }
  .usage .opening { background: repeating-linear-gradient(45deg, var(--info) 0 3px, transparent 3px 6px); }
  .usage .idle { background: #2f4256; }
  tr.waiting td[data-field="waiting"] { color: var(--bad); font-weight: 600; }
  #clients { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 12px; }
  #clients .chip { border: 1px solid var(--line); border-radius: 999px; padding: 2px 10px; font-size: 12.5px; }
  #clients .chip b { font-variant-numeric: tabular-nums; margin-left: 4px; }
  .totals { display: flex; gap: 22px; flex-wrap: wrap; margin-bottom: 10px; }
  .totals div { display: flex; flex-direction: column; }
  .totals b { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .totals span { color: var(--muted); font-size: 12px; }
  #mirror[data-enabled="false"] .totals b { color: var(--muted); }
  #mirror .totals b.bad { color: var(--bad); }
  #mirror .totals b.warn { color: var(--warn); }
  #mirror-mismatches td { vertical-align: top; }
  #mirror-mismatches .sql { max-width: 520px; overflow-wrap: anywhere; }
  #mirror-mismatches ul { margin: 2px 0 0; padding-left: 16px; }
  .log-tools { display: flex; gap: 8px; align-items: center; }
  select, button, input { font: inherit; color: var(--text); background: #0b1015; border: 1px solid var(--line); border-radius: 4px; padding: 3px 8px; }
  button { cursor: pointer; }
  button:hover { border-color: var(--muted); }
  #events { list-style: none; margin: 0; padding: 0; max-height: 360px; overflow-y: auto; font-family: var(--mono); font-size: 12.5px; border: 1px solid var(--line); border-radius: 4px; background: #0b1015; }
  #events li { display: grid; grid-template-columns: 96px 170px minmax(0, 1fr); gap: 10px; padding: 3px 10px; border-bottom: 1px solid #1a222b; }
  #events li:last-child { border-bottom: 0; }
  #events .time { color: var(--muted); }
  #events .type { color: var(--info); overflow: hidden; text-overflow: ellipsis; }
  #events li.warn .type { color: var(--warn); }
  #events li.bad .type { color: var(--bad); }
  #events li.meta .type { color: var(--muted); }
  #events .fields { overflow-wrap: anywhere; }
  #events .fields i { color: var(--muted); font-style: normal; }
  #auth { max-width: 460px; margin: 60px auto; padding: 20px; background: var(--panel); border: 1px solid var(--line); border-radius: 8px; }
  #auth h2 { margin-bottom: 6px; }
  #auth p { color: var(--muted); margin: 0 0 12px; }
  #auth .row { display: flex; gap: 8px; }
  #auth input { flex: 1; }
  #auth-message { color: var(--bad); min-height: 1.4em; margin-top: 8px; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<header>
  <h1>switchyard</h1>
  <div class="meta">
    <span>version <b id="version">–</b></span>
    <span>pool mode <b id="mode">–</b></span>
    <span>uptime <b id="uptime">–</b></span>
    <span>updated <b id="updated">–</b></span>
  </div>
  <span id="conn" role="status" aria-live="polite" data-state="connecting">connecting…</span>
</header>

<form id="auth" hidden>
  <h2>Admin token</h2>
  <p>This gateway's API needs its admin token (admin.token in the config). It is kept in this tab only.</p>
  <div class="row">
    <input id="auth-token" type="password" autocomplete="off" aria-label="admin token" placeholder="admin token" required>
    <button type="submit">Open</button>
  </div>
  <div id="auth-message" role="alert"></div>
</form>

<main id="dashboard">
  <section class="wide" aria-labelledby="nodes-title">
    <h2 id="nodes-title">Nodes <span class="aside small" id="nodes-summary"></span></h2>
    <div class="scroll"><table id="nodes">
      <thead><tr>
        <th>Node</th><th>Role</th><th>State</th><th class="num">Lag</th><th class="num">LSN</th>
        <th class="num">Timeline</th><th class="num">In use</th><th class="num">Weight</th><th>Note</th>
      </tr></thead>
      <tbody><tr class="empty"><td colspan="9">waiting for the gateway…</td></tr></tbody>
    </table></div>
  </section>

  <section id="split" aria-labelledby="split-title">
    <h2 id="split-title">Read/write split <span class="aside small" id="split-mode"></span></h2>
    <div class="split-summary">
      <span><span class="big" id="split-total">–</span> <span class="muted">txn/s</span></span>
      <span><span class="swatch" style="background: var(--info)"></span>replicas <b id="split-replica-share">–</b></span>
      <span><span class="swatch" style="background: var(--primary)"></span>primary <b id="split-primary-share">–</b></span>
    </div>
    <div class="bar" id="split-bar" aria-hidden="true"></div>
    <ul id="split-nodes"></ul>
    <svg id="split-history" viewBox="0 0 600 110" preserveAspectRatio="none" role="img" aria-label="transactions per second over the last minute, by node"></svg>
    <div class="legend"><span>last 60 s</span><span id="split-history-max"></span></div>
  </section>

  <section aria-labelledby="pools-title">
    <h2 id="pools-title">Pools <span class="aside small muted" id="pool-size"></span></h2>
    <div class="scroll"><table id="pools">
      <thead><tr>
        <th>Node</th><th>Database/user</th><th>Usage</th><th class="num" title="leased to a client">Active</th><th class="num">Idle</th>
        <th class="num" title="being opened">Open.</th><th class="num" title="clients waiting for a connection">Wait</th><th class="num" title="longest wait now">Max wait</th>
      </tr></thead>
      <tbody><tr class="empty"><td colspan="8">no server connections yet</td></tr></tbody>
    </table></div>
    <div id="clients" aria-label="clients by state"></div>
  </section>

  <section class="wide" id="mirror" data-enabled="false" aria-labelledby="mirror-title">
    <h2 id="mirror-title">Mirror <span class="aside small muted" id="mirror-state">–</span></h2>
    <div class="totals">
      <div><b data-mirror-field="mirrored">–</b><span>mirrored</span></div>
      <div><b data-mirror-field="matched">–</b><span>matched</span></div>
      <div><b data-mirror-field="mismatched">–</b><span>mismatched</span></div>
      <div><b data-mirror-field="lag" title="a replica had not replayed the primary's position yet">–</b><span>lag</span></div>
      <div><b data-mirror-field="errors" title="the copy could not run on the mirror">–</b><span>errors</span></div>
      <div><b data-mirror-field="dropped" title="copies not run: the queue was full or no mirror node could take them">–</b><span>dropped</span></div>
      <div><b data-mirror-field="queue" title="copies waiting / queue size">–</b><span>queue</span></div>
    </div>
    <div class="scroll"><table id="mirror-mismatches" aria-label="recent mirror mismatches, newest first">
      <thead><tr>
        <th>Time</th><th>Statement</th><th>Differences</th><th>Node</th><th class="num">Primary</th><th class="num">Mirror</th>
      </tr></thead>
      <tbody><tr class="empty"><td colspan="6">no mismatches since the page opened</td></tr></tbody>
    </table></div>
  </section>

  <section class="wide" aria-labelledby="events-title">
    <h2 id="events-title">Events
      <span class="aside log-tools">
        <span class="muted" id="event-count">0</span>
        <label class="muted" for="event-filter">type</label>
        <select id="event-filter"><option value="">all</option></select>
        <button type="button" id="event-clear">clear</button>
      </span>
    </h2>
    <ol id="events" role="log" aria-label="gateway events, newest first"></ol>
  </section>
</main>

<noscript><p style="padding: 20px">The dashboard needs JavaScript; the same data is at /api/v1/status.</p></noscript>

<script>
(function () {
  'use strict';

  var TOKEN_KEY = 'switchyard.admin_token';
  var MAX_EVENTS = 200;
  var MAX_MISMATCHES = 20;
  var HISTORY = 60;
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 10000;
  // Snapshots arrive every second; this much silence means the connection is dead without a close.
  var STALE_MS = 5000;
  var REPLICA_COLORS = ['#4aa3ff', '#36c2b4', '#8f7cff', '#5fd47a', '#ff7ab6', '#c9d34a', '#6fd0f0', '#b0a0ff'];
  var WARN = set(['client_auth_failed', 'client_error', 'server_lost', 'pool_exhausted', 'listener_lost', 'switch_refused', 'replica_lagging', 'query_retried', 'replica_draining', 'mirror_mismatch']);
  var BAD = set(['node_down', 'replica_banned', 'primary_changed', 'role_changed']);
  var META = set(['stream_started', 'stream_lost']);

  var token = takeToken();
  var ws = null;
  var backoff = BACKOFF_MIN_MS;
  var retryTimer = 0;
  var lastMessageAt = 0;
  // The previous snapshot's lease counts, for the rates; reset on every new stream.
  var prev = null;
  var rateHistory = [];
  var poolSize = null;
  var uptime = null;
  var filter = '';
  var seenTypes = {};
  var colors = {};

  function set(list) { var o = {}; list.forEach(function (k) { o[k] = true; }); return o; }
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // ---------------------------------------------------------------- token

  function takeToken() {
    var fromHash = /(?:^|&)token=([^&]*)/.exec(location.hash.replace(/^#/, ''));
    var t = null;
    try {
      if (fromHash) {
        t = decodeURIComponent(fromHash[1]);
        sessionStorage.setItem(TOKEN_KEY, t);
      } else {
        t = sessionStorage.getItem(TOKEN_KEY);
      }
    } catch (e) {
      // Storage can be off (private modes): the token then lives for this page only.
      if (fromHash) t = decodeURIComponent(fromHash[1]);
    }
    // Out of the address bar, so it is not bookmarked, shared or kept in history.
    if (fromHash) clearFragment();
    return t;
  }
  function clearFragment() {
    try { window.history.replaceState(null, '', location.pathname + location.search); } catch (e) { location.hash = ''; }
  }

  function askForToken(message) {
    $('dashboard').hidden = true;
    $('auth').hidden = false;
    $('auth-message').textContent = message || '';
    $('auth-token').focus();
  }

  $('auth').addEventListener('submit', function (ev) {
    ev.preventDefault();
    token = $('auth-token').value.trim();
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* kept in memory only */ }
    $('auth-token').value = '';
    $('auth').hidden = true;
    $('dashboard').hidden = false;
    backoff = BACKOFF_MIN_MS;
    connect();
  });

  // ---------------------------------------------------------------- connection

  function setConn(state, text) {
    var c = $('conn');
    c.setAttribute('data-state', state);
    c.textContent = text;
  }

  function api(path) {
    var headers = token ? { authorization: 'Bearer ' + token } : {};
    return fetch(path, { headers: headers, cache: 'no-store' }).then(function (res) {
      if (!res.ok) {
        var err = new Error(path + ' answered ' + res.status);
        err.status = res.status;
        throw err;
      }
      return res.json();
    });
  }

  function connect() {
    clearTimeout(retryTimer);
    setConn('connecting', 'connecting…');
    api('/api/v1/status').then(function (status) {
      fillStatus(status);
      if (poolSize === null) {
        api('/api/v1/config').then(function (cfg) {
          if (cfg && cfg.pool && typeof cfg.pool.size === 'number') {
            poolSize = cfg.pool.size;
            $('pool-size').textContent = poolSize + ' per database/user';
          }
        }, function () { /* the bars scale to what is open instead */ });
      }
      openStream();
    }, function (err) {
      if (err.status === 401) {
        setConn('unauthorized', 'token needed');
        askForToken(token ? 'The gateway refused that token.' : '');
        return;
      }
      retry();
    });
  }

  function openStream() {
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/v1/events/stream' + (token ? '?token=' + encodeURIComponent(token) : '');
    var sock = new WebSocket(url);
    ws = sock;
    lastMessageAt = Date.now();
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      lastMessageAt = Date.now();
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      onMessage(m);
    };
    sock.onclose = function () {
      if (ws !== sock) return;
      ws = null;
      logLocal('stream_lost', 'the event stream closed');
      retry();
    };
    sock.onerror = function () { /* a close follows */ };
  }

  function retry() {
    clearTimeout(retryTimer);
    var wait = backoff;
    backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    var until = Date.now() + wait;
    var tick = function () {
      var left = Math.max(0, until - Date.now());
      if (left === 0) { connect(); return; }
      setConn('reconnecting', 'reconnecting in ' + Math.ceil(left / 1000) + ' s');
      retryTimer = setTimeout(tick, Math.min(left, 1000));
    };
    tick();
  }

  setInterval(function () {
    if (ws && ws.readyState === WebSocket.OPEN && Date.now() - lastMessageAt > STALE_MS) {
      // A half-open connection may never report its close: drop it and start over.
      var dead = ws;
      ws = null;
      dead.onclose = null;
      try { dead.close(); } catch (e) { /* already gone */ }
      setConn('stale', 'no data');
      logLocal('stream_lost', 'no data for ' + Math.round(STALE_MS / 1000) + ' s');
      retry();
    }
    if (uptime) $('uptime').textContent = duration(uptime.s + (Date.now() - uptime.at) / 1000);
  }, 1000);

  function onMessage(m) {
    if (m.type === 'stream_started') {
      backoff = BACKOFF_MIN_MS;
      prev = null;
      setConn('live', 'live');
      logEvent(m);
    } else if (m.type === 'snapshot') {
      applySnapshot(m);
    } else if (typeof m.type === 'string') {
      logEvent(m);
      if (m.type === 'mirror_mismatch') addMismatch(m);
    }
  }

  // ---------------------------------------------------------------- status and snapshots

  function fillStatus(s) {
    $('version').textContent = s.version || '–';
    $('mode').textContent = s.mode || '–';
    if (typeof s.uptime_s === 'number') uptime = { s: s.uptime_s, at: Date.now() };
    if (Array.isArray(s.nodes)) renderNodes(s.nodes);
    if (Array.isArray(s.pools)) renderPools(s.pools);
    if (Array.isArray(s.clients)) {
      var byState = {};
      s.clients.forEach(function (c) { byState[c.state] = (byState[c.state] || 0) + 1; });
      renderClients(byState);
    }
    if (s.routing) renderSplitMode(s.routing.split);
    renderMirror(s.mirror);
  }

  function applySnapshot(m) {
    var at = Date.parse(m.at) || Date.now();
    var nodes = Array.isArray(m.nodes) ? m.nodes : [];
    renderNodes(nodes);
    renderPools(Array.isArray(m.pools) ? m.pools : []);
    renderClients(m.clients || {});
    renderSplitMode(m.read_write_split);
    renderMirror(m.mirror);

    var leases = {};
    nodes.forEach(function (n) { leases[n.name] = n.leases || 0; });
    var rates = null;
    if (prev && at > prev.at) {
      var dt = (at - prev.at) / 1000;
      rates = {};
      nodes.forEach(function (n) {
        var before = prev.leases[n.name];
        // A node new since the last snapshot (or re-added under its name, counting from zero again) has no rate yet.
        rates[n.name] = before === undefined || leases[n.name] < before ? 0 : (leases[n.name] - before) / dt;
      });
    }
    prev = { at: at, leases: leases };
    renderSplit(nodes, rates);
    $('updated').textContent = clock(new Date(at));
  }

  // ---------------------------------------------------------------- nodes

  function sortNodes(nodes) {
    var rank = { primary: 0, replica: 1, fenced: 2 };
    return nodes.slice().sort(function (a, b) {
      return (rank[a.role] === undefined ? 3 : rank[a.role]) - (rank[b.role] === undefined ? 3 : rank[b.role]) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    });
  }

  function colorOf(n) {
    if (n.role === 'primary') return 'var(--primary)';
    if (n.role === 'fenced') return 'var(--fenced)';
    if (!colors[n.name]) colors[n.name] = REPLICA_COLORS[Object.keys(colors).length % REPLICA_COLORS.length];
    return colors[n.name];
  }

  function renderNodes(nodes) {
    var body = $('nodes').tBodies[0];
    var sorted = sortNodes(nodes);
    if (sorted.length === 0) {
      replaceRows(body, [emptyRow(9, 'no nodes')]);
      return;
    }
    var rows = sorted.map(function (n) {
      var tr = el('tr');
      tr.setAttribute('data-node', n.name);
      tr.setAttribute('data-role', n.role);
      tr.setAttribute('data-state', n.state);

      var name = el('td');
      name.appendChild(el('div', null, n.name));
      name.appendChild(el('div', 'muted small mono', n.host + ':' + n.port));
      tr.appendChild(name);

      var role = field('role', el('span', 'badge role-' + n.role, n.role));
      tr.appendChild(role);

      var stateText = n.state + (n.healthy === false && n.state !== 'down' ? ' (unhealthy)' : '');
      tr.appendChild(field('state', el('span', 'badge state-' + n.state, stateText)));

      var lag = field('lag', null, 'num mono');
      if (n.role === 'replica') {
        lag.textContent = n.lag_bytes === null && n.lag_ms === null ? 'unknown' : bytes(n.lag_bytes) + ' · ' + millis(n.lag_ms);
        if (n.lag_bytes !== null) lag.setAttribute('data-lag-bytes', String(n.lag_bytes));
        if (n.lag_ms !== null) lag.setAttribute('data-lag-ms', String(n.lag_ms));
        if (n.replay_timestamp) lag.title = 'last replayed transaction: ' + n.replay_timestamp;
      } else {
        lag.textContent = '–';
      }
      tr.appendChild(lag);

      tr.appendChild(field('lsn', lsn(n.lsn), 'num mono'));
      tr.appendChild(field('timeline', n.timeline === null || n.timeline === undefined ? '–' : n.timeline, 'num mono'));
      tr.appendChild(field('in_use', n.connections_in_use, 'num mono'));
      tr.appendChild(field('weight', n.weight, 'num mono'));

      var note = field('note', null, 'note small');
      if (n.error) {
        note.textContent = n.error;
        note.title = n.error;
        note.className += ' error';
      } else {
        note.textContent = n.source === 'api' ? 'added through the API' : '';
        note.className += ' muted';
      }
      tr.appendChild(note);
      return tr;
    });
    replaceRows(body, rows);

    var up = nodes.filter(function (n) { return n.state === 'active'; }).length;
    $('nodes-summary').textContent = up + ' of ' + nodes.length + ' active';
  }

  function field(name, content, cls) {
    var td = el('td', cls || null);
    td.setAttribute('data-field', name);
    if (content instanceof Node) td.appendChild(content);
    else if (content !== null && content !== undefined) td.textContent = String(content);
    return td;
  }

  function emptyRow(span, text) {
    var tr = el('tr', 'empty');
    var td = el('td', null, text);
    td.colSpan = span;
    tr.appendChild(td);
    return tr;
  }

  function replaceRows(body, rows) {
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (r) { body.appendChild(r); });
  }

  // ---------------------------------------------------------------- split

  function renderSplitMode(on) {
    if (on === undefined) return;
    $('split-mode').textContent = on ? 'splitting: reads go to replicas' : 'not splitting: everything goes to the primary';
  }

  function renderSplit(nodes, rates) {
    var sorted = sortNodes(nodes);
    var total = 0, primary = 0, replicas = 0;
    if (rates) {
      sorted.forEach(function (n) {
        var r = rates[n.name] || 0;
        total += r;
        if (n.role === 'primary') primary += r;
        else if (n.role === 'replica') replicas += r;
      });
    }
    $('split-total').textContent = rates ? total.toFixed(1) : '–';
    $('split-replica-share').textContent = rates && total > 0 ? Math.round(100 * replicas / total) + '%' : '–';
    $('split-primary-share').textContent = rates && total > 0 ? Math.round(100 * primary / total) + '%' : '–';

    var bar = $('split-bar');
    while (bar.firstChild) bar.removeChild(bar.firstChild);
    var list = $('split-nodes');
    while (list.firstChild) list.removeChild(list.firstChild);
    var top = 0;
    sorted.forEach(function (n) { if (rates && rates[n.name] > top) top = rates[n.name]; });

    sorted.forEach(function (n) {
      var r = rates ? rates[n.name] || 0 : null;
      var color = colorOf(n);
      if (r && total > 0) {
        var seg = el('span');
        seg.style.width = (100 * r / total) + '%';
        seg.style.background = color;
        seg.title = n.name + ': ' + r.toFixed(1) + ' txn/s';
        bar.appendChild(seg);
      }
      var li = el('li');
      li.setAttribute('data-split-row', n.name);
      var name = el('span');
      var sw = el('span', 'swatch');
      sw.style.background = color;
      name.appendChild(sw);
      name.appendChild(document.createTextNode(n.name));
      li.appendChild(name);
      li.appendChild(el('span', 'badge role-' + n.role, n.role));
      var mini = el('div', 'bar');
      var fill = el('span');
      fill.style.width = (r && top > 0 ? 100 * r / top : 0) + '%';
      fill.style.background = color;
      mini.appendChild(fill);
      li.appendChild(mini);
      var rate = el('span', 'rate', r === null ? '–' : r.toFixed(1));
      rate.setAttribute('data-split-node', n.name);
      rate.title = 'transactions per second on ' + n.name;
      li.appendChild(rate);
      list.appendChild(li);
    });

    if (rates) {
      // Stacked with the replicas at the bottom, the primary on top, in the colours of the list above.
      var stack = [];
      sorted.slice().reverse().forEach(function (n) { if (rates[n.name] > 0) stack.push({ rate: rates[n.name], color: colorOf(n) }); });
      rateHistory.push({ total: total, stack: stack });
      if (rateHistory.length > HISTORY) rateHistory.shift();
      drawHistory();
    }
  }

  function drawHistory() {
    var NS = 'http://www.w3.org/2000/svg';
    var svg = $('split-history');
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var max = 1;
    rateHistory.forEach(function (h) { max = Math.max(max, h.total); });
    var W = 600, H = 110, slot = W / HISTORY;
    var offset = HISTORY - rateHistory.length;
    rateHistory.forEach(function (h, i) {
      var x = (offset + i) * slot + 1;
      var y = H;
      h.stack.forEach(function (part) {
        var height = H * part.rate / max;
        y -= height;
        var rect = document.createElementNS(NS, 'rect');
        rect.setAttribute('x', String(x));
        rect.setAttribute('y', String(y));
        rect.setAttribute('width', String(Math.max(1, slot - 2)));
        rect.setAttribute('height', String(height));
        rect.style.fill = part.color; // a style, not the attribute: the colours may be CSS variables
        svg.appendChild(rect);
      });
    });
    $('split-history-max').textContent = 'peak ' + max.toFixed(1) + ' txn/s';
  }

  // ---------------------------------------------------------------- pools and clients

  function renderPools(pools) {
    var body = $('pools').tBodies[0];
    if (pools.length === 0) {
      replaceRows(body, [emptyRow(8, 'no server connections yet')]);
      return;
    }
    var sorted = pools.slice().sort(function (a, b) {
      var ka = a.node + '/' + a.database + '/' + a.user, kb = b.node + '/' + b.database + '/' + b.user;
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
    replaceRows(body, sorted.map(function (p) {
      var tr = el('tr', p.waiting > 0 ? 'waiting' : null);
      tr.setAttribute('data-pool', p.node + '/' + p.database + '/' + p.user);
      tr.appendChild(field('node', p.node));
      tr.appendChild(field('database', p.database + '/' + p.user, 'mono small nowrap'));

      var open = p.active + p.idle + p.opening;
      var cap = poolSize || Math.max(1, open);
      var usage = field('usage');
      var bar = el('div', 'bar usage');
      bar.title = open + ' of ' + (poolSize || '?') + ' connections open, ' + p.active + ' in use';
      [['active', p.active], ['opening', p.opening], ['idle', p.idle]].forEach(function (s) {
        if (!s[1]) return;
        var seg = el('span', s[0]);
        seg.style.width = Math.min(100, 100 * s[1] / cap) + '%';
        bar.appendChild(seg);
      });
      usage.appendChild(bar);
      tr.appendChild(usage);

      tr.appendChild(field('active', p.active, 'num mono'));
      tr.appendChild(field('idle', p.idle, 'num mono'));
      tr.appendChild(field('opening', p.opening, 'num mono'));
      tr.appendChild(field('waiting', p.waiting, 'num mono'));
      tr.appendChild(field('maxwait', p.maxwait_ms ? millis(p.maxwait_ms) : '–', 'num mono'));
      return tr;
    }));
  }

  function renderClients(byState) {
    var box = $('clients');
    while (box.firstChild) box.removeChild(box.firstChild);
    var states = Object.keys(byState).sort();
    var total = 0;
    states.forEach(function (s) { total += byState[s]; });
    var all = el('span', 'chip', 'clients');
    all.appendChild(el('b', null, total));
    box.appendChild(all);
    states.forEach(function (s) {
      var chip = el('span', 'chip', s);
      chip.setAttribute('data-client-state', s);
      chip.appendChild(el('b', null, byState[s]));
      box.appendChild(chip);
    });
  }

  // ---------------------------------------------------------------- mirror

  function renderMirror(s) {
    if (!s || !s.totals) return;
    var box = $('mirror');
    box.setAttribute('data-enabled', String(!!s.enabled));
    $('mirror-state').textContent = s.enabled ? 'on · ' + s.statements + ' → ' + s.target + ' · sample rate ' + s.sample_rate : 'off';
    var t = s.totals;
    var values = { mirrored: t.mirrored, matched: t.matched, mismatched: t.mismatched, lag: t.lag, errors: t.errors, dropped: t.dropped };
    values.queue = s.queue ? s.queue.length + '/' + s.queue.capacity : '–';
    Object.keys(values).forEach(function (k) {
      var b = box.querySelector('[data-mirror-field="' + k + '"]');
      if (!b) return;
      b.textContent = String(values[k]);
      b.className = k === 'mismatched' && t.mismatched > 0 ? 'bad' : (k === 'errors' || k === 'dropped' || k === 'lag') && t[k] > 0 ? 'warn' : '';
    });
  }

  function addMismatch(e) {
    var body = $('mirror-mismatches').tBodies[0];
    var placeholder = body.querySelector('tr.empty');
    if (placeholder) body.removeChild(placeholder);
    var tr = el('tr');
    tr.setAttribute('data-fingerprint', e.fingerprint || '');
    tr.appendChild(field('time', clock(e.at ? new Date(e.at) : new Date()), 'mono small muted nowrap'));
    var stmt = field('statement', e.sql, 'mono small sql');
    stmt.title = (e.database ? e.user + '@' + e.database + ', client ' + e.client + '\n' : '') + (e.sql || '');
    tr.appendChild(stmt);
    var diff = field('differences', null, 'small');
    diff.appendChild(el('div', null, (e.differences || []).join('; ')));
    // A few of the rows found on one side only, so the difference can be seen without the API.
    var rows = Array.isArray(e.rows) ? e.rows.slice(0, 3) : [];
    if (rows.length > 0) {
      var ul = el('ul', 'mono muted');
      rows.forEach(function (r) { ul.appendChild(el('li', null, r.side + ': ' + (Array.isArray(r.row) ? r.row.join(', ') : JSON.stringify(r.row)))); });
      diff.appendChild(ul);
    }
    tr.appendChild(diff);
    tr.appendChild(field('node', e.node));
    tr.appendChild(field('primary_ms', typeof e.primary_ms === 'number' ? e.primary_ms.toFixed(2) + ' ms' : '–', 'num mono nowrap'));
    tr.appendChild(field('mirror_ms', typeof e.mirror_ms === 'number' ? e.mirror_ms.toFixed(2) + ' ms' : '–', 'num mono nowrap'));
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > MAX_MISMATCHES) body.removeChild(body.lastChild);
  }

  // ---------------------------------------------------------------- events

  function logLocal(type, message) {
    logEvent({ type: type, at: new Date().toISOString(), message: message });
  }

  function logEvent(e) {
    var list = $('events');
    var li = el('li', BAD[e.type] ? 'bad' : WARN[e.type] ? 'warn' : META[e.type] ? 'meta' : null);
    li.setAttribute('data-type', e.type);
    var at = e.at ? new Date(e.at) : new Date();
    li.appendChild(el('span', 'time', clock(at)));
    li.appendChild(el('span', 'type', e.type));
    var fields = el('span', 'fields');
    Object.keys(e).forEach(function (k) {
      if (k === 'type' || k === 'at') return;
      var v = e[k];
      if (k === 'types' && Array.isArray(v) && v.length === 0) return;
      if (fields.firstChild) fields.appendChild(document.createTextNode(' '));
      fields.appendChild(el('i', null, k + '='));
      fields.appendChild(document.createTextNode(typeof v === 'string' ? v : JSON.stringify(v)));
    });
    li.appendChild(fields);
    if (filter && filter !== e.type) li.hidden = true;
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);

    if (!seenTypes[e.type]) {
      seenTypes[e.type] = true;
      var sel = $('event-filter');
      var names = Object.keys(seenTypes).sort();
      var opt = el('option', null, e.type);
      opt.value = e.type;
      sel.insertBefore(opt, sel.options[names.indexOf(e.type) + 1] || null);
    }
    countEvents();
  }

  function countEvents() {
    var list = $('events');
    var shown = 0;
    for (var i = 0; i < list.children.length; i++) if (!list.children[i].hidden) shown++;
    $('event-count').textContent = filter ? shown + ' of ' + list.children.length : String(list.children.length);
  }

  $('event-filter').addEventListener('change', function () {
    filter = this.value;
    var items = $('events').children;
    for (var i = 0; i < items.length; i++) items[i].hidden = !!filter && items[i].getAttribute('data-type') !== filter;
    countEvents();
  });

  $('event-clear').addEventListener('click', function () {
    var list = $('events');
    while (list.firstChild) list.removeChild(list.firstChild);
    countEvents();
  });

  // ---------------------------------------------------------------- formatting

  function pad(n, w) { var s = String(n); while (s.length < w) s = '0' + s; return s; }
  function clock(d) { return pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' + pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3); }
  function bytes(n) {
    if (n === null || n === undefined) return '?';
    if (n < 1024) return n + ' B';
    var units = ['kB', 'MB', 'GB', 'TB'], v = n / 1024, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(1) + ' ' + units[i];
  }
  function millis(ms) {
    if (ms === null || ms === undefined) return '?';
    return ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(1) + ' s';
  }
  function lsn(n) {
    // PostgreSQL's X/X notation: the high and low 32 bits of the byte position, in hex.
    if (typeof n !== 'number' || n < 0) return '–';
    return Math.floor(n / 4294967296).toString(16).toUpperCase() + '/' + (n % 4294967296).toString(16).toUpperCase();
  }
  function duration(s) {
    s = Math.floor(s);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + pad(m, 2) + 'm';
    return m + 'm ' + pad(s % 60, 2) + 's';
  }

  connect();
})();
</script>
</body>
</html>
`;
