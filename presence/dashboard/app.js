// The presence dashboard (contract §12). It reads the public API with the operator's token, as any
// caller does: GET /stats, /metrics, /users, /users/{uid}/presence, /users/{uid}/sessions,
// /messages/{id}/receipts, and /changes/stream (read with fetch, since EventSource cannot send a header).
// The token lives in sessionStorage (this tab only) and travels as the bearer header, never in a URL.
// What it holds is bounded (the last CHANGES_KEPT changes, METRICS_SAMPLES samples) and what it draws
// is throttled (at most one render every RENDER_GAP_MS, one /stats every STATS_GAP_MS), however fast
// changes come.
"use strict";

(() => {
  const TOKEN_KEY = "presence.token";
  const CHANGES_KEPT = 200;
  const CHANGES_SHOWN = 50;
  const RENDER_GAP_MS = 250;
  const STATS_GAP_MS = 1000; // at most one /stats a second, however many presence changes arrive,
  const STATS_SHARE = 10; // and never more than a tenth of the time /stats takes (0.1 to 0.2 s at 10^5 users)
  const STATS_POLL_MS = 10000; // and one every 10 s without any
  const METRICS_POLL_MS = 2000;
  const METRICS_WINDOW_S = 300;
  const METRICS_SAMPLES = METRICS_WINDOW_S * 1000 / METRICS_POLL_MS + 1;
  const RATE_WINDOW_MS = 10000;
  const RETRY_MAX_MS = 30000;
  const SESSIONS_SHOWN = 50;
  const PALETTE = ["#2656c9", "#1f8a4c", "#b42318", "#9a6700", "#7c3aed", "#0e7490", "#be185d",
                   "#4d7c0f", "#c2410c", "#475569"];

  const $ = (id) => document.getElementById(id);

  class Unauthorized extends Error {}
  class Unreachable extends Error {}
  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  let token = null;
  let paused = false; // the list of changes frozen, for reading at hundreds a second
  let session = null; // the running board: its timers, its stream's abort controller

  // --- the API --------------------------------------------------------------------------------------

  function url(path) {
    // Relative to the page (…/dashboard), so that the service may sit behind a path prefix.
    return new URL(path, document.baseURI).toString();
  }

  async function call(path, { signal, accept = "application/json", headers = {} } = {}) {
    let response;
    try {
      response = await fetch(url(path), {
        headers: { Authorization: `Bearer ${token}`, Accept: accept, ...headers },
        cache: "no-store",
        credentials: "omit",
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new Unreachable("the service cannot be reached");
    }
    if (response.status === 401) throw new Unauthorized("the token was refused");
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch { /* not the JSON error shape */ }
      const detail = body && body.error ? body.error : { code: "http_" + response.status, message: response.statusText };
      throw new ApiFailure(response.status, detail.code, detail.message);
    }
    return response;
  }

  async function json(path, options) {
    return (await call(path, options)).json();
  }

  function segment(value) {
    return encodeURIComponent(value);
  }

  // --- small DOM helpers (no innerHTML: every value is text) -----------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function when(iso, { withDate = false } = {}) {
    if (!iso) return el("span", { className: "small" }, "—");
    const date = new Date(iso);
    const text = withDate ? date.toLocaleString() : date.toLocaleTimeString();
    return el("time", { datetime: iso, title: iso }, text);
  }

  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  const integer = new Intl.NumberFormat();

  function rate(value) {
    return value >= 10 ? integer.format(Math.round(value)) : value.toFixed(1);
  }

  // --- notices ---------------------------------------------------------------------------------------

  const notices = new Map(); // source → message; the most important shown

  function notice(source, message, { bad = false } = {}) {
    if (message) notices.set(source, { message, bad });
    else notices.delete(source);
    const box = $("notice");
    const shown = [...notices.values()];
    if (shown.length === 0) {
      box.hidden = true;
      return;
    }
    const worst = shown.find((n) => n.bad) || shown[0];
    box.textContent = worst.message;
    box.classList.toggle("bad", worst.bad);
    box.hidden = false;
  }

  function explain(error) {
    if (error instanceof Unreachable) {
      return `The service cannot be reached at ${location.host}: it may be stopped, or the network is down. Retrying…`;
    }
    if (error instanceof ApiFailure) {
      return `The service answered ${error.status} (${error.code}): ${error.message}`;
    }
    return `Unexpected error: ${error.message}`;
  }

  function live(state, text) {
    const box = $("live");
    box.textContent = text;
    box.classList.toggle("on", state === "on");
    box.classList.toggle("off", state === "off");
  }

  // --- signing in and out ----------------------------------------------------------------------------

  function showLogin(message) {
    stop();
    $("board").hidden = true;
    $("forget").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    live("idle", "not connected");
    notices.clear();
    notice("none", null);
    $("token").focus();
  }

  function refused() {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    showLogin("The token was refused (401 unauthorized): enter one of the service's API tokens.");
  }

  async function signIn(candidate) {
    token = candidate;
    try {
      await call("stats");
    } catch (error) {
      token = null;
      if (error instanceof Unauthorized) {
        showLogin("That token was refused (401 unauthorized): check it and try again.");
      } else if (error instanceof Unreachable) {
        showLogin(`The service cannot be reached at ${location.host}: it may be stopped, or the network is down.`);
      } else {
        showLogin(explain(error));
      }
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, candidate);
    start();
  }

  function forget() {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    $("token").value = "";
    showLogin("");
  }

  // Any call that sees a 401 signs out; any other failure is shown and retried by its own loop.
  function failed(source, error) {
    if (error.name === "AbortError") return;
    if (error instanceof Unauthorized) {
      refused();
      return;
    }
    notice(source, explain(error), { bad: true });
  }

  // --- the running board -----------------------------------------------------------------------------

  function start() {
    stop();
    $("login").hidden = true;
    $("board").hidden = false;
    $("forget").hidden = false;
    $("login-error").hidden = true;
    session = {
      abort: new AbortController(),
      timers: new Set(),
      changes: [], // the newest last; never more than CHANGES_KEPT
      arrivals: [], // [second, changes arrived in it], for the last RATE_WINDOW_MS only
      renderPending: false,
      lastRender: 0,
      statsRunning: false,
      statsAgain: false,
      lastStats: 0,
      statsPoll: null,
      statsTook: 0, // how long the last /stats took, in ms
      samples: [], // [{t, counters: Map(series → value)}], never more than METRICS_SAMPLES
      chart: null,
      chartSeries: "",
    };
    renderChanges();
    refreshStats();
    pollMetrics();
    follow(session);
  }

  function stop() {
    if (!session) return;
    session.abort.abort();
    for (const timer of session.timers) clearTimeout(timer);
    if (session.chart) session.chart.destroy();
    $("events-chart").replaceChildren();
    session = null;
  }

  function later(current, ms, fn) {
    const timer = setTimeout(() => {
      current.timers.delete(timer);
      if (session === current) fn();
    }, ms);
    current.timers.add(timer);
    return timer;
  }

  // --- now: /stats -------------------------------------------------------------------------------------

  // At most one /stats in flight and one a STATS_GAP_MS; a request while one runs is merged into the next.
  function refreshStats() {
    const current = session;
    if (!current) return;
    if (current.statsRunning) {
      current.statsAgain = true;
      return;
    }
    const gap = Math.max(STATS_GAP_MS, STATS_SHARE * current.statsTook);
    const wait = current.lastStats + gap - performance.now();
    if (wait > 0) {
      if (!current.statsAgain) {
        current.statsAgain = true;
        later(current, wait, () => { current.statsAgain = false; refreshStats(); });
      }
      return;
    }
    current.statsRunning = true;
    current.lastStats = performance.now();
    loadStats(current).finally(() => {
      current.statsRunning = false;
      if (session !== current) return;
      if (current.statsAgain) {
        current.statsAgain = false;
        refreshStats();
      }
    });
  }

  async function loadStats(current) {
    try {
      const asked = performance.now();
      const stats = await json("stats", { signal: current.abort.signal });
      if (session !== current) return;
      current.statsTook = performance.now() - asked;
      notice("stats", null);
      renderStats(stats);
      if (stats.users_online === 0 && stats.connections === 0) {
        const users = await json("users?limit=1", { signal: current.abort.signal });
        if (session !== current) return;
        notice("empty", users.users.length === 0
          ? "The database is empty: no webhook has been received yet. Point CometChat's webhooks at POST /hook on this service."
          : null);
      } else {
        notice("empty", null);
      }
    } catch (error) {
      failed("stats", error);
    } finally {
      // One poll pending at a time, due STATS_POLL_MS after the last answer, whatever asked for that one.
      if (session === current) {
        clearTimeout(current.statsPoll);
        current.timers.delete(current.statsPoll);
        current.statsPoll = later(current, STATS_POLL_MS, refreshStats);
      }
    }
  }

  function renderStats(stats) {
    $("users-online").textContent = integer.format(stats.users_online);
    $("connections").textContent = integer.format(stats.connections);
    const platforms = Object.entries(stats.connections_by_platform).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const total = Math.max(1, stats.connections);
    const rows = platforms.map(([platform, count]) => {
      const bar = el("span");
      bar.style.width = `${(100 * count / total).toFixed(1)}%`; // CSSOM, which the CSP allows (no style attribute)
      return el("tr", { "data-platform": platform },
        el("th", { scope: "row" }, platform),
        el("td", { className: "count" }, integer.format(count)),
        el("td", { className: "share" }, el("div", { className: "meter" }, bar)));
    });
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 3, className: "small" }, "No live connection.")));
    $("platforms").tBodies[0].replaceChildren(...rows);
    $("stats-at").textContent = `As of ${new Date().toLocaleTimeString()}.`;
  }

  // --- events per second: /metrics ------------------------------------------------------------------

  const EVENTS_LINE = /^presence_events_total\{([^}]*)\}\s+([0-9.eE+-]+)/;
  const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

  function parseEvents(text) {
    const counters = new Map();
    for (const line of text.split("\n")) {
      const match = EVENTS_LINE.exec(line);
      if (!match) continue;
      const labels = {};
      for (const [, name, value] of match[1].matchAll(LABEL)) labels[name] = value;
      counters.set(`${labels.trigger} · ${labels.outcome}`, Number(match[2]));
    }
    return counters;
  }

  async function pollMetrics() {
    const current = session;
    if (!current) return;
    try {
      const response = await call("metrics", { signal: current.abort.signal, accept: "text/plain" });
      const counters = parseEvents(await response.text());
      if (session !== current) return;
      notice("metrics", null);
      current.samples.push({ t: Date.now() / 1000, counters });
      if (current.samples.length > METRICS_SAMPLES) current.samples.shift();
      drawEvents(current);
    } catch (error) {
      failed("metrics", error);
    }
    if (session === current) later(current, METRICS_POLL_MS, pollMetrics);
  }

  // Rates between consecutive samples; a counter that went down was reset (a restart, another replica).
  function eventRates(samples) {
    const names = new Set();
    for (const sample of samples) for (const name of sample.counters.keys()) names.add(name);
    const series = [...names].sort();
    const times = [];
    const values = series.map(() => []);
    for (let i = 1; i < samples.length; i++) {
      const before = samples[i - 1];
      const after = samples[i];
      const seconds = Math.max(0.001, after.t - before.t);
      times.push(after.t);
      series.forEach((name, k) => {
        const now = after.counters.get(name) || 0;
        const then = before.counters.get(name) || 0;
        values[k].push((now >= then ? now - then : now) / seconds);
      });
    }
    return { series, times, values };
  }

  function drawEvents(current) {
    const { series, times, values } = eventRates(current.samples);
    const latest = values.reduce((sum, v) => sum + (v.length ? v[v.length - 1] : 0), 0);
    $("events-rate").textContent = times.length ? rate(latest) : "–";
    const empty = $("events-empty");
    if (series.length === 0) {
      empty.textContent = "No webhook event counted by this replica since it started.";
      empty.hidden = false;
    } else {
      empty.hidden = true;
    }
    if (times.length === 0 || typeof uPlot === "undefined") return;
    const box = $("events-chart");
    const key = series.join("\n");
    if (!current.chart || current.chartSeries !== key) {
      if (current.chart) current.chart.destroy();
      box.replaceChildren();
      current.chart = new uPlot({
        width: Math.max(280, box.clientWidth),
        height: 220,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        axes: [{}, { label: "events/s", size: 50 }],
        legend: { live: false }, // the names only: values on hover would be unreadable at this pace
        series: [{}, ...series.map((name, k) => ({
          label: name,
          stroke: PALETTE[k % PALETTE.length],
          width: 1.5,
          value: (u, v) => (v === null || v === undefined ? "–" : rate(v)),
        }))],
      }, [times, ...values], box);
      current.chartSeries = key;
    } else {
      current.chart.setData([times, ...values]);
    }
  }

  let resizing = null;

  // After the layout settles, not inside the observer's callback (which a resize would call again).
  function resizeChart() {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (session && session.chart) {
        session.chart.setSize({ width: Math.max(280, $("events-chart").clientWidth), height: 220 });
      }
    }, 100);
  }

  // --- the latest changes: /changes/stream --------------------------------------------------------------

  // Server-Sent Events, parsed as the HTML standard says: lines end in \r\n, \n or \r; a blank line ends an event.
  class EventParser {
    constructor(onEvent, onComment) {
      this.buffer = "";
      this.onEvent = onEvent;
      this.onComment = onComment;
      this.reset();
    }

    reset() {
      this.data = [];
      this.type = "";
      this.id = null;
    }

    push(text) {
      this.buffer += text;
      const lineEnd = /\r\n|\r(?!$)|\n/g; // a \r at the very end may be half of a \r\n
      let start = 0;
      let match;
      while ((match = lineEnd.exec(this.buffer)) !== null) {
        this.line(this.buffer.slice(start, match.index));
        start = lineEnd.lastIndex;
      }
      this.buffer = this.buffer.slice(start);
    }

    line(line) {
      if (line === "") {
        if (this.data.length) this.onEvent({ id: this.id, type: this.type || "message", data: this.data.join("\n") });
        this.reset();
        return;
      }
      if (line.startsWith(":")) {
        this.onComment();
        return;
      }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.data.push(value);
      else if (field === "event") this.type = value;
      else if (field === "id") this.id = value;
    }
  }

  async function follow(current) {
    let lastId = null;
    let retry = 1000;
    while (session === current) {
      const headers = {};
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      try {
        live("idle", "connecting…");
        const response = await call("changes/stream", { signal: current.abort.signal, accept: "text/event-stream", headers });
        live("on", "live");
        notice("stream", null);
        retry = 1000;
        const parser = new EventParser((event) => {
          if (event.id !== null) lastId = event.id;
          received(current, event);
        }, () => {});
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
        }
      } catch (error) {
        if (error.name === "AbortError" || session !== current) return;
        if (error instanceof Unauthorized) {
          refused();
          return;
        }
        if (error instanceof ApiFailure && error.code === "cursor_expired") {
          lastId = null; // what was missed is gone: follow on from now, and read the counts again
          refreshStats();
          continue;
        }
        failed("stream", error);
      }
      if (session !== current) return;
      live("off", `reconnecting in ${Math.round(retry / 1000)} s`);
      await new Promise((resolve) => later(current, retry, resolve));
      retry = Math.min(RETRY_MAX_MS, retry * 2);
    }
  }

  function received(current, event) {
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return;
    }
    current.changes.push(change);
    if (current.changes.length > CHANGES_KEPT) current.changes.splice(0, current.changes.length - CHANGES_KEPT);
    const second = Math.floor(performance.now() / 1000);
    const last = current.arrivals[current.arrivals.length - 1];
    if (last && last[0] === second) last[1] += 1;
    else current.arrivals.push([second, 1]);
    if (change.type === "presence") refreshStats();
    scheduleRender(current);
  }

  function scheduleRender(current) {
    if (current.renderPending) return;
    current.renderPending = true;
    const wait = Math.max(0, current.lastRender + RENDER_GAP_MS - performance.now());
    later(current, wait, () => {
      current.renderPending = false;
      current.lastRender = performance.now();
      renderChanges();
    });
  }

  function describe(change) {
    if (change.type === "presence") {
      const p = change.presence;
      const count = p.connections.length;
      return [el("span", { className: `tag ${p.status === "online" ? "online" : "offline"}` }, p.status),
              el("strong", {}, change.uid), ` · ${count} connection${count === 1 ? "" : "s"}`,
              count ? ` (${[...new Set(p.connections.map((c) => c.platform || "unknown"))].join(", ")})` : ""];
    }
    if (change.type === "receipt") {
      return [el("span", { className: "tag receipt" }, change.kind), el("strong", {}, change.uid),
              ` · message ${change.message_id} in ${change.conversation_id}`];
    }
    if (change.type === "group_receipt") {
      return [el("span", { className: "tag group_receipt" }, `${change.kind} by all`),
              `message ${change.message_id} in ${change.conversation_id}`];
    }
    return [el("span", { className: "tag" }, String(change.type))];
  }

  function renderChanges() {
    if (!session) return;
    const current = session;
    const now = performance.now();
    const oldest = Math.floor((now - RATE_WINDOW_MS) / 1000);
    while (current.arrivals.length && current.arrivals[0][0] <= oldest) current.arrivals.shift();
    const arrived = current.arrivals.reduce((sum, [, count]) => sum + count, 0);
    $("changes-rate").textContent = rate(arrived / (RATE_WINDOW_MS / 1000));
    // The rate decays when changes stop: render again while the window still holds some.
    if (current.arrivals.length) scheduleRender(current);
    if (paused) return;
    const shown = current.changes.slice(-CHANGES_SHOWN).reverse();
    $("changes").replaceChildren(...shown.map((change) =>
      el("li", { "data-seq": change.seq, "data-type": change.type },
        el("span", { className: "seq" }, `#${change.seq}`),
        when(change.at),
        el("span", { className: "what" }, describe(change)))));
    $("changes-empty").hidden = shown.length > 0;
  }

  // --- a user: presence and sessions --------------------------------------------------------------------

  async function lookUpUser(uid) {
    const box = $("user-result");
    box.replaceChildren(el("p", { className: "small" }, `Looking up ${uid}…`));
    const signal = session ? session.abort.signal : undefined;
    try {
      const [presence, history] = await Promise.all([
        json(`users/${segment(uid)}/presence`, { signal }),
        json(`users/${segment(uid)}/sessions?limit=${SESSIONS_SHOWN}`, { signal }),
      ]);
      box.replaceChildren(...renderUser(presence, history.sessions, history.next_cursor !== null));
    } catch (error) {
      if (error instanceof ApiFailure && error.status === 404) {
        box.replaceChildren(el("p", { className: "error", role: "alert" }, `Unknown user: ${error.message}.`));
      } else if (error instanceof Unauthorized) {
        refused();
      } else if (error.name !== "AbortError") {
        box.replaceChildren(el("p", { className: "error", role: "alert" }, explain(error)));
      }
    }
  }

  // Where the status came from (contract §10): the kind of event that decided it.
  const SOURCES = { webhook: "a webhook", reconcile: "reconciliation with CometChat", expired: "expiry (no recent signal)" };

  function renderUser(presence, sessions, more) {
    const head = el("div", { className: "result-head" },
      el("span", { className: "uid" }, presence.uid),
      el("span", { className: `tag ${presence.status === "online" ? "online" : "offline"}`, id: "user-status" }, presence.status));
    const facts = el("dl", { className: "facts" },
      el("dt", {}, "Last seen"), el("dd", {}, when(presence.last_seen_at, { withDate: true })),
      el("dt", {}, "Status since"), el("dd", {}, when(presence.status_updated_at, { withDate: true })),
      el("dt", {}, "Decided by"), el("dd", { id: "user-status-source" }, SOURCES[presence.status_source] || presence.status_source),
      el("dt", {}, "Live connections"), el("dd", {}, String(presence.connections.length)));
    const connections = presence.connections.length === 0 ? el("p", { className: "small" }, "No live connection.") :
      el("div", { className: "table-wrap" }, el("table", { id: "user-connections" },
        el("thead", {}, el("tr", {}, ["Platform", "Device", "Session", "Connected"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, presence.connections.map((c) => el("tr", {},
          el("td", {}, c.platform || "unknown"), el("td", {}, c.device_id || "—"), el("td", {}, c.session_id),
          el("td", {}, when(c.connected_at, { withDate: true })))))));
    return [head, facts, el("h3", {}, "Live connections"), connections,
            el("h3", {}, more ? `Sessions (the newest ${sessions.length})` : "Sessions"),
            timeline(sessions, new Set(presence.connections.map((c) => c.session_id)))];
  }

  // Each session a bar on one time axis, from the oldest connection shown to now.
  // ``live``: the session ids the presence counts as live now (with PRESENCE_CONNECTION_TTL, a session
  // never reported disconnected may no longer be one: it is "no recent signal", not "live").
  function timeline(sessions, live) {
    if (sessions.length === 0) return el("p", { className: "small" }, "No session recorded.");
    const now = Date.now();
    const starts = sessions.map((s) => Date.parse(s.connected_at || s.disconnected_at || new Date(now).toISOString()));
    const origin = Math.min(...starts);
    const span = Math.max(1, now - origin);
    return el("ol", { className: "timeline", id: "user-sessions" }, sessions.map((s, i) => {
      const from = starts[i];
      const to = s.disconnected_at ? Date.parse(s.disconnected_at) : now;
      const bar = el("span", { className: `span${s.disconnected_at ? " closed" : ""}` });
      bar.style.left = `${(100 * (from - origin) / span).toFixed(2)}%`;
      bar.style.width = `${(100 * Math.max(0, to - from) / span).toFixed(2)}%`;
      return el("li", { "data-session": s.session_id },
        el("div", {}, el("strong", {}, s.platform || "unknown"), ` · ${s.session_id} · `,
          when(s.connected_at, { withDate: true }), " → ",
          s.disconnected_at ? when(s.disconnected_at, { withDate: true })
            : live.has(s.session_id) ? el("span", { className: "tag online" }, "live")
            : el("span", { className: "tag offline" }, "no recent signal"),
          s.connected_at ? ` (${duration(to - from)})` : ""),
        el("div", { className: "track", "aria-hidden": "true" }, bar));
    }));
  }

  // --- a message: receipts ------------------------------------------------------------------------------

  async function lookUpMessage(id) {
    const box = $("message-result");
    box.replaceChildren(el("p", { className: "small" }, `Looking up message ${id}…`));
    const signal = session ? session.abort.signal : undefined;
    try {
      const message = await json(`messages/${segment(id)}/receipts`, { signal });
      box.replaceChildren(...renderMessage(message));
    } catch (error) {
      if (error instanceof ApiFailure && error.status === 404) {
        box.replaceChildren(el("p", { className: "error", role: "alert" }, `Unknown message: ${error.message}.`));
      } else if (error instanceof Unauthorized) {
        refused();
      } else if (error.name !== "AbortError") {
        box.replaceChildren(el("p", { className: "error", role: "alert" }, explain(error)));
      }
    }
  }

  function renderMessage(m) {
    const group = m.conversation_id.startsWith("group_");
    const facts = el("dl", { className: "facts", id: "message-facts" },
      el("dt", {}, "Conversation"), el("dd", {}, m.conversation_id),
      el("dt", {}, "Sender"), el("dd", {}, m.sender || "unknown"),
      el("dt", {}, "Delivered to"), el("dd", {}, `${m.delivered_count} reader${m.delivered_count === 1 ? "" : "s"}`),
      el("dt", {}, "Read by"), el("dd", {}, `${m.read_count} reader${m.read_count === 1 ? "" : "s"}`),
      group && [el("dt", {}, "Delivered to all"), el("dd", {}, m.delivered_to_all ? when(m.delivered_to_all_at, { withDate: true }) : "not yet")],
      group && [el("dt", {}, "Read by all"), el("dd", {}, m.read_by_all ? when(m.read_by_all_at, { withDate: true }) : "not yet")],
      m.edited_at && [el("dt", {}, "Edited"), el("dd", {}, when(m.edited_at, { withDate: true }))],
      m.deleted_at && [el("dt", {}, "Deleted"), el("dd", {}, when(m.deleted_at, { withDate: true }))]);
    const readers = m.receipts.length === 0 ? el("p", { className: "small" }, "No receipt yet.") :
      el("div", { className: "table-wrap" }, el("table", { id: "message-receipts" },
        el("thead", {}, el("tr", {}, ["Reader", "Delivered", "Read"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, m.receipts.map((r) => el("tr", { "data-reader": r.uid },
          el("td", {}, r.uid), el("td", {}, when(r.delivered_at, { withDate: true })), el("td", {}, when(r.read_at, { withDate: true })))))));
    return [el("div", { className: "result-head" }, el("span", { className: "uid" }, `Message ${m.message_id}`)),
            facts, el("h3", {}, "Per reader"), readers];
  }

  // --- wiring -------------------------------------------------------------------------------------------

  function onSubmit(id, handler) {
    $(id).addEventListener("submit", (event) => {
      event.preventDefault(); // never submitted: nothing typed here goes into a URL
      handler(event.currentTarget);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    onSubmit("login-form", () => {
      const candidate = $("token").value.trim();
      if (candidate) signIn(candidate);
    });
    onSubmit("user-form", () => {
      const uid = $("uid").value.trim();
      if (uid) lookUpUser(uid);
    });
    onSubmit("message-form", () => {
      const id = $("message-id").value.trim();
      if (id) lookUpMessage(id);
    });
    $("forget").addEventListener("click", forget);
    $("pause").addEventListener("click", (event) => {
      paused = !paused;
      event.currentTarget.setAttribute("aria-pressed", String(paused));
      event.currentTarget.textContent = paused ? "Resume" : "Pause";
      if (!paused) renderChanges();
    });
    if (typeof ResizeObserver !== "undefined") new ResizeObserver(resizeChart).observe($("events-chart"));
    const kept = sessionStorage.getItem(TOKEN_KEY);
    if (kept) signIn(kept);
    else showLogin("");
  });
})();
