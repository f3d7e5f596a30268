// zerodown dashboard: polls the controller's JSON API once a second and redraws.
// Every string from the API goes into the page through text nodes (never innerHTML),
// so a version name or a reason cannot inject markup.
"use strict";

const POLL_MS = 1000;
const HISTORY_EVERY_MS = 5000;
const TOKEN_KEY = "zerodown.token"; // the controller's token: commands (and reads)
const READ_TOKEN_KEY = "zerodown.read-token"; // api.read_token, when the spec sets one: reads
const ACTIVE = new Set(["progressing", "paused"]);

const $ = (id) => document.getElementById(id);

// h("td", {class: "x"}, "text", otherNode) → element; strings become text nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "style") {
      for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function text(id, value) {
  $(id).textContent = value === null || value === undefined || value === "" ? "-" : String(value);
}

function ago(at, now) {
  if (at === null || at === undefined) return "-";
  const s = Math.max(0, now - at);
  if (s < 120) return `${Math.round(s)}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return new Date(at * 1000).toLocaleString();
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
}

const PHASE_CLASS = {
  progressing: "info",
  paused: "warn",
  completed: "ok",
  failed: "bad",
  aborted: "bad",
  superseded: "muted",
  passed: "ok",
  successful: "ok",
  running: "info",
  pending: "muted",
  inconclusive: "warn",
  error: "bad",
};

function badge(value) {
  return h("span", { class: `badge ${PHASE_CLASS[value] || "muted"}` }, value || "-");
}

// A stable colour per release name, so the same release looks the same in every section.
const PALETTE = ["#2f6fdf", "#d9822b", "#1f9d6b", "#9b51e0", "#d64545", "#1c9bb5", "#8a6d3b"];
const releaseColors = new Map();
function releaseColor(release, stable) {
  if (release === stable) return PALETTE[0];
  if (!releaseColors.has(release)) {
    releaseColors.set(release, PALETTE[1 + (releaseColors.size % (PALETTE.length - 1))]);
  }
  return releaseColors.get(release);
}

function chip(release, stable) {
  return h(
    "span",
    { class: "chip", style: { "--c": releaseColor(release, stable) } },
    release,
  );
}

// ---- sections -------------------------------------------------------------------------------

function renderHeader(state) {
  text("service", state.service);
  document.title = `${state.service} · zerodown`;
  const router = $("router");
  router.textContent = `http://${state.router}`;
  router.href = `http://${state.router}/`;
}

function renderOverview(state) {
  const status = state.status;
  const rollout = status.rollout;
  $("stable").replaceChildren(status.stable ? chip(status.stable, status.stable) : "-");
  if (rollout) {
    $("rollout").replaceChildren(
      h("span", { class: "rev" }, `revision ${rollout.revision}: `),
      rollout.previous ? chip(rollout.previous, status.stable) : "-",
      " → ",
      chip(rollout.version, status.stable),
      h("span", { class: "strategy" }, ` ${rollout.strategy} `),
      badge(rollout.phase),
      ACTIVE.has(rollout.phase) && rollout.strategy === "canary" && state.steps.length
        ? h(
            "span",
            { class: "progress" },
            ` step ${Math.min(rollout.step + 1, state.steps.length)} of ${state.steps.length}`,
          )
        : "", // replaceChildren would print null
    );
    const why = [];
    if (rollout.reason) why.push(h("div", {}, rollout.reason));
    if (rollout.pause_reason) {
      why.push(h("div", { class: "paused" }, "paused: ", rollout.pause_reason));
    }
    $("reason").replaceChildren(...(why.length ? why : ["-"]));
  } else {
    $("rollout").replaceChildren(h("span", { class: "muted-text" }, "no rollout yet"));
    $("reason").replaceChildren("-");
  }
  text(
    "decision",
    status.last_decision ? `${status.last_decision} (${ago(status.last_decision_at, state.now)})` : "",
  );
  const phase = rollout ? rollout.phase : null;
  const active = ACTIVE.has(phase);
  const enable = {
    promote: active,
    "promote-full": active,
    pause: phase === "progressing",
    resume: phase === "paused",
    abort: active,
    rollback: Boolean(status.stable),
  };
  for (const button of $("actions").querySelectorAll("button")) {
    button.disabled = busy || !enable[button.dataset.action];
  }
}

function renderTraffic(state) {
  const routes = state.status.routes;
  const stable = state.status.stable;
  // stable first, so the bar reads "what serves now" then "what is coming"
  const pools = [...(routes.pools || [])].sort(
    (a, b) => Number(b.release === stable) - Number(a.release === stable),
  );
  const total = pools.reduce((sum, p) => sum + p.weight, 0);
  const parts = [];
  if (!total) {
    parts.push(h("p", { class: "empty" }, "no traffic routed"));
  } else {
    const bar = h("div", { class: "split", role: "img", "aria-label": "traffic split" });
    for (const p of pools) {
      if (!p.weight) continue;
      const share = (100 * p.weight) / total;
      bar.append(
        h(
          "div",
          {
            class: "split-part",
            style: { width: `${share}%`, background: releaseColor(p.release, stable) },
            title: `${p.release} ${share.toFixed(1)}%`,
          },
          share >= 8 ? `${p.release} ${Math.round(share)}%` : "",
        ),
      );
    }
    parts.push(bar);
  }
  const rows = pools.map((p) => {
    const share = total ? (100 * p.weight) / total : 0;
    return h(
      "div",
      { class: "pool", "data-release": p.release },
      chip(p.release, stable),
      h(
        "div",
        { class: "pool-bar" },
        h("div", {
          class: "pool-fill",
          style: { width: `${share}%`, background: releaseColor(p.release, stable) },
        }),
      ),
      h("span", { class: "pool-share" }, `${share.toFixed(share % 1 ? 1 : 0)}%`),
      h("span", { class: "pool-backends" }, `${p.backends.length} backend(s)`),
    );
  });
  parts.push(h("div", { class: "pools" }, rows));
  const matches = routes.matches || [];
  if (matches.length) {
    parts.push(
      h(
        "ul",
        { class: "matches" },
        matches.map((m) =>
          h(
            "li",
            {},
            h("code", {}, m.header ? `header ${m.header}: ${m.value}` : `cookie ${m.cookie}=${m.value}`),
            " → ",
            chip(m.release, stable),
          ),
        ),
      ),
    );
  }
  if (routes.sticky) {
    const by = routes.sticky.cookie ? `cookie ${routes.sticky.cookie}` : `header ${routes.sticky.header}`;
    parts.push(h("p", { class: "note" }, `sticky users by ${by}`));
  }
  if (routes.preview) parts.push(h("p", { class: "note" }, `preview: ${routes.preview}`));
  parts.push(h("p", { class: "note" }, `route table generation ${routes.generation}`));
  $("traffic").replaceChildren(...parts);
}

function renderSteps(state) {
  const rollout = state.status.rollout;
  const steps = state.steps || [];
  if (!rollout) {
    $("steps").replaceChildren(h("li", { class: "empty" }, "no rollout"));
    return;
  }
  if (!steps.length) {
    // rolling and blue-green have no steps: how far is told by the new release's ready instances
    const mine = state.instances.filter((i) => i.release === rollout.version);
    const ready = mine.filter((i) => i.ready).length;
    const wanted = state.instances_wanted || mine.length;
    const lines = [
      h("li", { class: "step" }, h("span", { class: "what" }, `${rollout.strategy} rollout of ${rollout.version}`)),
      h("li", { class: "step" }, h("span", { class: "what" }, `${ready} of ${wanted} instance(s) of ${rollout.version} ready`)),
    ];
    if (rollout.switched_at) {
      lines.push(h("li", { class: "step" }, h("span", { class: "what" }, `traffic switched ${ago(rollout.switched_at, state.now)}`)));
    }
    $("steps").replaceChildren(...lines);
    return;
  }
  const active = ACTIVE.has(rollout.phase);
  $("steps").replaceChildren(
    ...steps.map((s) => {
      const done = s.n <= rollout.step;
      const current = active && s.n === rollout.step + 1;
      const cls = done ? "done" : current ? "current" : "todo";
      const mark = done ? "✓" : current ? "▶" : "";
      return h(
        "li",
        { class: `step ${cls}`, "aria-current": current ? "step" : null },
        h("span", { class: "mark" }, mark),
        h("span", { class: "n" }, `${s.n}.`),
        h("span", { class: "what" }, s.step),
        current && rollout.phase === "paused" ? h("span", { class: "badge warn" }, "paused here") : null,
      );
    }),
  );
}

function renderInstances(state) {
  const stable = state.status.stable;
  const byRelease = new Map();
  for (const i of state.instances) {
    if (!byRelease.has(i.release)) byRelease.set(i.release, []);
    byRelease.get(i.release).push(i);
  }
  if (!byRelease.size) {
    $("instances").replaceChildren(h("p", { class: "empty" }, "no instances"));
    return;
  }
  const groups = [];
  for (const [release, list] of byRelease) {
    const ready = list.filter((i) => i.ready).length;
    groups.push(
      h(
        "div",
        { class: "release-group", "data-release": release },
        h(
          "div",
          { class: "release-head" },
          chip(release, stable),
          h("span", { class: ready ? "ready-count" : "ready-count none" }, `${ready}/${list.length} ready`),
        ),
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["instance", "address", "phase", "ready", "up", "note"].map((c) => h("th", {}, c)))),
          h(
            "tbody",
            {},
            list.map((i) =>
              h(
                "tr",
                {},
                h("td", { class: "mono" }, i.id),
                h("td", { class: "mono" }, i.address),
                h("td", {}, i.phase),
                h("td", {}, i.ready ? h("span", { class: "badge ok" }, "ready") : h("span", { class: "badge bad" }, "not ready")),
                h("td", {}, ago(i.launched_at, state.now)),
                h("td", { class: "note" }, i.failure || i.retire_reason || ""),
              ),
            ),
          ),
        ),
      ),
    );
  }
  if (state.instances_wanted) {
    groups.push(h("p", { class: "note" }, `${state.instances_wanted} wanted per release`));
  }
  $("instances").replaceChildren(...groups);
}

function fmt(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function metricsTable(metrics) {
  return h(
    "table",
    { class: "metrics" },
    h(
      "thead",
      {},
      h("tr", {}, ["metric", "phase", "last value", "baseline", "ok / fail / ? / err", "message"].map((c) => h("th", {}, c))),
    ),
    h(
      "tbody",
      {},
      metrics.map((m) => {
        const last = m.last || {};
        return h(
          "tr",
          {},
          h("td", {}, m.name, m.dry_run ? h("span", { class: "badge muted" }, "dry run") : null),
          h("td", {}, badge(m.phase)),
          h("td", { class: "mono" }, fmt(last.value)),
          h("td", { class: "mono" }, fmt(last.baseline)),
          h("td", { class: "mono" }, `${m.successful} / ${m.failed} / ${m.inconclusive} / ${m.errors}`),
          h("td", { class: "note" }, m.message || last.message || ""),
        );
      }),
    ),
  );
}

function renderChecks(state) {
  const rollout = state.status.rollout;
  const checks = rollout && rollout.checks ? Object.entries(rollout.checks) : [];
  if (!checks.length) {
    $("checks").replaceChildren(h("p", { class: "empty" }, "no checks for this rollout"));
    return;
  }
  const rows = [];
  for (const [key, c] of checks) {
    rows.push(
      h(
        "tr",
        { "data-check": key },
        h("td", { class: "mono" }, key),
        h("td", {}, c.kind),
        h("td", {}, badge(c.state)),
        h("td", {}, c.reason || ""),
      ),
    );
    const result = c.detail && c.detail.result;
    if (result && Array.isArray(result.metrics) && result.metrics.length) {
      rows.push(h("tr", { class: "sub" }, h("td", { colspan: 4 }, metricsTable(result.metrics))));
    }
  }
  $("checks").replaceChildren(
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["check", "kind", "state", "why"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows),
    ),
  );
}

// The decision log keeps every event seen since the page opened (status carries the last 20;
// the first load fetches up to EVENTS_KEPT), so a busy rollout does not push reasons off the page.
const EVENTS_KEPT = 500;
const eventLog = new Map();

function remember(events) {
  for (const e of events) eventLog.set(e.id, e);
  if (eventLog.size > EVENTS_KEPT) {
    const ids = [...eventLog.keys()].sort((a, b) => a - b);
    for (const id of ids.slice(0, ids.length - EVENTS_KEPT)) eventLog.delete(id);
  }
}

function renderEvents() {
  const events = [...eventLog.values()].sort((a, b) => b.id - a.id);
  if (!events.length) {
    $("events").replaceChildren(h("li", { class: "empty" }, "nothing yet"));
    return;
  }
  $("events").replaceChildren(
    ...events.map((e) =>
      h(
        "li",
        { class: `event kind-${String(e.kind).replace(/[^a-z0-9_-]/gi, "")}` },
        h("time", { title: new Date(e.at * 1000).toISOString() }, clock(e.at)),
        h("span", { class: "ev-kind" }, e.kind),
        h("span", { class: "ev-rev" }, e.revision ? `#${e.revision}` : ""),
        h("span", { class: "ev-msg" }, e.message),
      ),
    ),
  );
}

function renderHistory(revisions, now, stable) {
  if (!revisions.length) {
    $("history").replaceChildren(h("p", { class: "empty" }, "no revisions"));
    return;
  }
  const sorted = [...revisions].sort((a, b) => b.revision - a.revision);
  $("history").replaceChildren(
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["rev", "version", "strategy", "started", "outcome", "reason"].map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        sorted.map((r) =>
          h(
            "tr",
            {},
            h("td", { class: "mono" }, r.revision),
            h("td", {}, chip(r.version, stable)),
            h("td", {}, r.strategy),
            h("td", {}, ago(r.created_at, now)),
            h("td", {}, badge(r.outcome)),
            h("td", { class: "note" }, r.reason || ""),
          ),
        ),
      ),
    ),
  );
}

// ---- polling --------------------------------------------------------------------------------

let busy = false;
let lastHistoryAt = 0;
let lastEventId = null;
let lastState = null;

let readDismissed = false; // the user cancelled the read-token dialog: wait for the button
// The button was pressed: ask at the next refresh. A flag of its own, not `readDismissed = false`:
// the dialog's close event comes a task after the click that closed it, so a cancel still being
// processed would overwrite a press made right after it.
let readAskWanted = false;

class NeedsToken extends Error {}

// Reads carry the read token, else the controller's token, else nothing (reads are open unless
// the spec sets api.read_token). A 401 forgets the token that was refused.
async function getJSON(path) {
  const key = [READ_TOKEN_KEY, TOKEN_KEY].find((k) => sessionStorage.getItem(k));
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${sessionStorage.getItem(key)}`;
  const response = await fetch(path, { cache: "no-store", headers });
  if (response.status === 401) {
    if (key) sessionStorage.removeItem(key);
    throw new NeedsToken(`${path}: HTTP 401`);
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function showLocked() {
  const conn = $("conn");
  conn.textContent = "this controller needs a read token";
  conn.className = "conn down";
  $("read-token-button").hidden = false;
  document.body.dataset.state = "locked";
}

function render(state) {
  lastState = state;
  renderHeader(state);
  renderOverview(state);
  renderTraffic(state);
  renderSteps(state);
  renderInstances(state);
  renderChecks(state);
  remember(state.events || []);
  renderEvents();
}

async function refresh() {
  try {
    if (!eventLog.size) remember(await getJSON(`/api/events?after=0&limit=${EVENTS_KEPT}`));
    const state = await getJSON("/api/status");
    render(state);
    const newest = (state.events || []).reduce((m, e) => Math.max(m, e.id), 0);
    if (newest !== lastEventId || Date.now() - lastHistoryAt > HISTORY_EVERY_MS) {
      renderHistory(await getJSON("/api/history"), state.now, state.status.stable);
      lastEventId = newest;
      lastHistoryAt = Date.now();
    }
    const conn = $("conn");
    conn.textContent = `live · ${new Date(state.now * 1000).toLocaleTimeString([], { hour12: false })}`;
    conn.className = "conn live";
    $("read-token-button").hidden = true;
    document.body.dataset.state = "live";
  } catch (err) {
    if (err instanceof NeedsToken) {
      showLocked();
      // ask once; after a cancel the header button asks again (no dialog every second)
      if (!readDismissed || readAskWanted) {
        readAskWanted = false;
        readDismissed = !(await askToken("read"));
      }
      return;
    }
    const conn = $("conn");
    conn.textContent = `controller unreachable (${err.message})`;
    conn.className = "conn down";
    document.body.dataset.state = "error";
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

// ---- actions --------------------------------------------------------------------------------

const TOKEN_DIALOGS = {
  admin: {
    key: TOKEN_KEY,
    title: "Controller token",
    text: "Actions need the token in .zerodown/token. It is kept in this tab only.",
  },
  read: {
    key: READ_TOKEN_KEY,
    title: "Read token",
    text:
      "This controller shows its state only with a token: the read token (api.read_token in " +
      "zerodown.yaml) or the token in .zerodown/token. It is kept in this tab only.",
  },
};

// The saved token of this kind, or the one the user types in (null when cancelled).
function askToken(kind = "admin") {
  const { key, title, text } = TOKEN_DIALOGS[kind];
  const saved = sessionStorage.getItem(key);
  if (saved) return Promise.resolve(saved);
  const dialog = $("token-dialog");
  if (dialog.open) return Promise.resolve(null); // already asking (for the other kind)
  const input = $("token-input");
  $("token-title").textContent = title;
  $("token-text").textContent = text;
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const token = input.value.trim();
        if (dialog.returnValue === "ok" && token) {
          sessionStorage.setItem(key, token);
          resolve(token);
        } else {
          resolve(null);
        }
      },
      { once: true },
    );
    // returnValue outlives the dialog: a stale "ok" must not make Escape count as yes
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function askRevision() {
  const dialog = $("rollback-dialog");
  const input = $("rollback-input");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue !== "ok") return resolve(undefined);
        const value = input.value.trim();
        resolve(value === "" ? null : Number.parseInt(value, 10));
      },
      { once: true },
    );
    // returnValue outlives the dialog: a stale "ok" must not make Escape count as yes
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function rolloutActive() {
  const rollout = lastState && lastState.status.rollout;
  return Boolean(rollout && ACTIVE.has(rollout.phase));
}

function errorText(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

function showResult(message, ok) {
  const el = $("action-result");
  el.textContent = message;
  el.className = `action-result ${ok ? "ok" : "bad"}`;
}

async function act(action) {
  let path = `/api/${action}`;
  let body = { who: "dashboard" };
  if (action === "promote-full") {
    path = "/api/promote";
    body.full = true;
  } else if (action === "abort") {
    if (!window.confirm("Abort the rollout? Traffic goes back to the stable release.")) return;
  } else if (action === "rollback" && rolloutActive()) {
    // the controller answers a rollback during a rollout by aborting it; say so first
    const r = lastState.status.rollout;
    const back = lastState.status.stable || "the stable release";
    if (!window.confirm(`Roll back: abort revision ${r.revision} (${r.version}) and send all traffic to ${back}?`)) return;
    body = { who: "dashboard", to: null };
  } else if (action === "rollback") {
    const to = await askRevision();
    if (to === undefined) return;
    if (to !== null && !(to > 0)) return showResult("rollback: the revision must be a number", false);
    body = { who: "dashboard", to };
  }
  const token = await askToken();
  if (!token) return;
  busy = true;
  showResult(`${action}…`, true);
  if (lastState) renderOverview(lastState);
  try {
    const response = await fetch(path, {
      method: "POST",
      cache: "no-store",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    if (!response.ok) {
      showResult(`${action} failed: ${errorText(data, response.status)}`, false);
    } else {
      showResult(`${action}: done`, true);
    }
  } catch (err) {
    showResult(`${action} failed: ${err.message}`, false);
  } finally {
    busy = false;
    if (lastState) renderOverview(lastState);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  // Only the refresh loop asks for the read token: a second asker racing it could find the
  // dialog open, take that for a cancel, and never ask again. The next refresh asks.
  $("read-token-button").addEventListener("click", () => {
    readAskWanted = true;
  });
  for (const button of $("actions").querySelectorAll("button")) {
    button.disabled = true;
    button.addEventListener("click", () => act(button.dataset.action));
  }
  refresh();
});

// ---- rollback plan (GET /api/plan, as `zerodown plan`): what triggers a rollback, how long it
// takes at worst, who can start it, how, and what blocks it. Refreshed every few seconds; it
// changes only with the rollout. Self-contained: it only reads getJSON and h from above.
const PLAN_EVERY_MS = 5000;

function planRow(label, value) {
  return h("div", { class: "plan-row" }, h("span", { class: "k" }, label), " ", value);
}

function renderPlan(plan) {
  const worst =
    plan.worst_case === null
      ? "not bounded: no analysis watches for a regression"
      : `${plan.worst_case.toFixed(2)}s (${plan.worst_case_formula}; via ${plan.worst_case_via})`;
  const triggers = plan.triggers
    .filter((t) => t.kind !== "probe")
    .map((t) =>
      h("li", {}, `${t.name}: ${t.condition} → ${t.effect}`,
        t.detect === null ? "" : ` (within ${t.detect.toFixed(2)}s)`),
    );
  const what = plan.current ? `rollout of ${plan.version}` : "next deploy";
  $("plan").replaceChildren(
    planRow("for", `${what} (${plan.strategy}) over ${plan.stable || "-"}`),
    planRow("worst case", worst),
    planRow("how", plan.how),
    planRow("who", plan.who.join("; ")),
    planRow("blocked by", plan.blockers.join("; ") || "nothing"),
    planRow("caution", plan.caution.join("; ") || "not raised"),
    h("ul", { class: "plan-triggers" }, triggers),
  );
}

async function refreshPlan() {
  try {
    renderPlan(await getJSON("/api/plan"));
  } catch {
    // locked or unreachable: the status refresh already says so in the header
  } finally {
    setTimeout(refreshPlan, PLAN_EVERY_MS);
  }
}

document.addEventListener("DOMContentLoaded", refreshPlan);
