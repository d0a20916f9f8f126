// gatelog dashboard: plain JS over the service's own API, charts by plotly.js (served by
// gatelog from the plotly package). Nothing is loaded from elsewhere.
"use strict";

const TOKEN_KEY = "gatelog.token";
const REFRESH_MS = 30000;
const PAGE_SIZE = 20;
const $ = (sel) => document.querySelector(sel);
const state = { admin: false, page: 1, busy: false, pending: false, refreshes: 0, timer: null };

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Every call goes same-origin with credentials, so that a gateway session (cookies
// forwarded to the gateway by gatelog's delegated sign-in) works as well as a token.
async function api(path, params, raw) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, String(v));
  }
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  else if (gatewayUser()) headers["New-Api-User"] = gatewayUser();
  const response = await fetch(url, { headers, credentials: "same-origin" });
  if (raw) {
    if (!response.ok) throw new ApiError(response.status, (await response.json()).message);
    return response;
  }
  const body = JSON.parse(await response.text(), exact);
  if (!response.ok || !body.success) throw new ApiError(response.status, body.message);
  return body.data;
}

// Integers past 2^53 (ids, large sums) would be rounded by JSON.parse: keep their text.
function exact(key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context && context.source
      && /^-?\d+$/.test(context.source)) return context.source;
  return value;
}

// The gateway's own UI (new-api's legacy sign-in), on this same site, keeps the signed-in
// user in localStorage "user" and sends its id as New-Api-User beside the session cookie;
// the gateway refuses the cookie without it. Read only, never written.
function gatewayUser() {
  if (document.body.dataset.gateway !== "1") return "";
  try {
    const id = JSON.parse(localStorage.getItem("user") || "null")?.id;
    return Number.isSafeInteger(id) && id > 0 ? String(id) : "";
  } catch (e) {
    return "";
  }
}

function base(path) { return state.admin ? "/api/log/" + path : "/api/log/self/" + path; }

function range() {
  const end = Math.floor(Date.now() / 1000);
  const span = Number($("#range").value);
  return { start_timestamp: end - span, end_timestamp: end, span };
}

function interval(span) { return span <= 3600 ? "minute" : span <= 7 * 86400 ? "hour" : "day"; }

const fmt = new Intl.NumberFormat();

// ------------------------------------------------------------------ sign-in

// The role claim of a gatelog JWT (the server checks it on every call; this only picks
// the view), or null for other credentials (a gateway session or access token).
function claimedRole() {
  const parts = token().split(".");
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof claims.role === "number" ? claims.role : null;
  } catch (e) {
    return null;
  }
}

async function whoAmI() {
  const role = claimedRole();
  if (role !== null) {
    const admin = role >= 10;
    await api(admin ? "/api/log/stat" : "/api/log/self/stat", { start_timestamp: 1, end_timestamp: 1 });
    return admin ? "admin" : "user";
  }
  // An admin can read the site's stat; a user gets 403 there and reads their own.
  try {
    await api("/api/log/stat", { start_timestamp: 1, end_timestamp: 1 });
    return "admin";
  } catch (e) {
    if (e.status === 403) return "user";
    throw e;
  }
}

async function start() {
  try {
    const role = await whoAmI();
    state.admin = role === "admin";
    showApp();
  } catch (e) {
    showSignIn(token() ? (e.message || "sign-in failed") : "");
  }
}

function showSignIn(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("#app").hidden = true;
  $("#signout").hidden = true;
  $("#signin").hidden = false;
  $("#who").textContent = "";
  $("#signin-error").textContent = message || "";
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

function showApp() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#signout").hidden = false;
  $("#who").textContent = state.admin ? "site view (admin)" : "my logs";
  document.body.dataset.view = state.admin ? "admin" : "user";
  for (const el of document.querySelectorAll("[data-admin]")) el.hidden = !state.admin;
  if (!state.admin && $("#usage-group").value === "channel") $("#usage-group").value = "model_name";
  refresh();
  if (!state.timer) state.timer = setInterval(refresh, REFRESH_MS);
}

$("#signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = new FormData(event.target).get("token").trim().replace(/^Bearer\s+/i, "");
  sessionStorage.setItem(TOKEN_KEY, value);
  event.target.reset();
  // An empty paste: only a gateway session (when gatelog delegates sign-in) can sign in.
  if (token() || document.body.dataset.gateway === "1") start(); else showSignIn("");
});

$("#signout").addEventListener("click", () => showSignIn(""));

// ------------------------------------------------------------------ refresh

// One refresh at a time: a tick that finds one running only marks that another is
// wanted, so slow answers never pile up requests.
async function refresh() {
  if (state.busy) { state.pending = true; return; }
  state.busy = true;
  document.body.dataset.state = "loading";
  try {
    const r = range();
    const shown = { start_timestamp: r.start_timestamp, end_timestamp: r.end_timestamp };
    const results = await Promise.allSettled([
      loadFigures(shown), loadUsage(r), loadPerformance(shown), loadTop(r), loadLogs(),
    ]);
    const failed = results.filter((x) => x.status === "rejected");
    if (failed.some((x) => x.reason && x.reason.status === 401)) { showSignIn("signed out"); return; }
    $("#status").textContent = failed.length
      ? "Some parts failed: " + failed.map((x) => x.reason.message).join("; ")
      : "Updated " + new Date().toLocaleTimeString();
    state.refreshes += 1;
    document.body.dataset.refreshes = String(state.refreshes);
  } finally {
    state.busy = false;
    document.body.dataset.state = "ready";
    if (state.pending) { state.pending = false; refresh(); }
  }
}

async function loadFigures(shown) {
  const data = await api(base("stat"), { ...shown, ...tableFilters(true) });
  const figures = $("#figures");
  figures.dataset.start = shown.start_timestamp;
  figures.dataset.end = shown.end_timestamp;
  for (const el of figures.querySelectorAll("[data-figure]")) {
    const value = data[el.dataset.figure];
    el.dataset.value = String(value);
    el.textContent = typeof value === "string" ? value : fmt.format(value);
  }
}

// ------------------------------------------------------------------ charts

const LAYOUT = {
  margin: { l: 50, r: 10, t: 10, b: 40 }, barmode: "stack", autosize: true,
  legend: { orientation: "h", y: -0.2 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
};
const CONFIG = { displaylogo: false, responsive: true };

// A chart that cannot be drawn says why in its place (no stale bars left standing).
function note(id, text) {
  const el = document.getElementById(id);
  window.Plotly.purge(el);
  const div = document.createElement("div");
  div.className = "empty";
  div.textContent = text;
  el.replaceChildren(div);
}

// A series the service refuses as too large (groups x buckets past its limit, e.g. top
// users over 30 days on a site with many users): said in the chart, the rest unaffected.
function refused(id, e) {
  if (!(e instanceof ApiError) || e.status !== 400) throw e;
  note(id, "Not shown: " + e.message);
}

function draw(id, traces, layout) {
  const el = document.getElementById(id);
  if (!traces.length) {
    note(id, "No data in this range");
    return;
  }
  if (el.querySelector(".empty")) el.innerHTML = "";
  window.Plotly.react(el, traces, { ...LAYOUT, ...(layout || {}) }, CONFIG);
}

function metric(bucket, name) {
  return name === "tokens" ? bucket.prompt_tokens + bucket.completion_tokens : bucket[name];
}

async function loadUsage(r) {
  const groupBy = $("#usage-group").value;
  const name = $("#usage-metric").value;
  let data;
  try {
    data = await api(base("series"), {
      start_timestamp: r.start_timestamp, end_timestamp: r.end_timestamp,
      interval: interval(r.span), group_by: groupBy,
    });
  } catch (e) {
    refused("chart-usage", e);
    return;
  }
  const traces = (data.series || []).map((s) => ({
    type: "bar", name: String(s.key === "" ? "(none)" : s.key),
    x: s.buckets.map((b) => new Date(b.timestamp * 1000)),
    y: s.buckets.map((b) => metric(b, name)),
  }));
  draw("chart-usage", traces, { xaxis: { type: "date" } });
}

async function loadPerformance(shown) {
  const byModel = await api(base("performance"), { ...shown, group_by: "model_name" });
  const models = byModel.groups.filter((g) => g.requests > 0);
  const bars = (field, unit) => ["p50", "p95", "p99"].map((p) => ({
    type: "bar", name: p, x: models.map((g) => g.key),
    y: models.map((g) => g[field][p]), hovertemplate: "%{x} " + p + ": %{y} " + unit,
  })).filter((t) => t.y.some((v) => v !== null));
  draw("chart-latency", bars("use_time", "s"), { barmode: "group" });
  draw("chart-ttft", bars("frt_ms", "ms"), { barmode: "group" });
  if (state.admin) {
    const byChannel = await api("/api/log/performance", { ...shown, group_by: "channel" });
    const channels = byChannel.groups;
    draw("chart-errors", channels.length ? [{
      type: "bar", x: channels.map((g) => "channel " + g.key),
      y: channels.map((g) => g.error_rate), name: "error rate",
    }] : [], { yaxis: { tickformat: ".1%" } });
  }
}

async function loadTop(r) {
  if (!state.admin) return;
  for (const [groupBy, id] of [["username", "chart-users"], ["token_name", "chart-tokens"]]) {
    let data;
    try {
      data = await api("/api/log/series", {
        start_timestamp: r.start_timestamp, end_timestamp: r.end_timestamp,
        interval: "day", group_by: groupBy,
      });
    } catch (e) {
      refused(id, e);
      continue;
    }
    const top = (data.series || []).slice().sort((a, b) => b.quota - a.quota).slice(0, 10).reverse();
    draw(id, top.length ? [{
      type: "bar", orientation: "h", x: top.map((s) => s.quota),
      y: top.map((s) => String(s.key === "" ? "(none)" : s.key)), name: "quota",
    }] : [], { margin: { l: 110, r: 10, t: 10, b: 30 } });
  }
}

// ------------------------------------------------------------------ the log table

function tableFilters(forStat) {
  const form = new FormData($("#filters"));
  const out = {};
  for (const [k, v] of form.entries()) {
    const value = String(v).trim();
    if (!value || (k === "type" && value === "0")) continue;
    if (!state.admin && (k === "username" || k === "channel")) continue;
    if (forStat && (k === "keyword" || k === "type")) continue;
    out[k] = value;
  }
  return out;
}

function cell(name, value) {
  if (name === "created_at") return new Date(value * 1000).toLocaleString();
  if (typeof value === "boolean") return value ? "yes" : "no";
  return String(value);
}

async function loadLogs() {
  const filters = { ...tableFilters(false), ...range() };
  delete filters.span;
  const params = { ...filters, p: state.page, page_size: PAGE_SIZE };
  let items;
  let total = null;
  if (filters.keyword) {
    items = await api(base("search"), params);
  } else {
    const data = await api(state.admin ? "/api/log/" : "/api/log/self", params);
    items = data.items;
    total = data.total;
  }
  const columns = items.length ? Object.keys(items[0]).filter((c) => c !== "other") : [];
  const head = $("#log-table thead");
  const body = $("#log-table tbody");
  head.replaceChildren();
  body.replaceChildren();
  if (columns.length) {
    const tr = document.createElement("tr");
    for (const c of columns) { const th = document.createElement("th"); th.textContent = c; tr.append(th); }
    head.append(tr);
  }
  for (const item of items) {
    const tr = document.createElement("tr");
    for (const c of columns) {
      const td = document.createElement("td");
      td.textContent = cell(c, item[c]);
      if (c === "content") td.className = "content";
      tr.append(td);
    }
    body.append(tr);
  }
  const pages = total === null ? null : Math.max(1, Math.ceil(total / PAGE_SIZE));
  $("#page-info").textContent = pages === null
    ? "page " + state.page : "page " + state.page + " of " + pages + " (" + fmt.format(total) + " logs)";
  $("#log-table").dataset.page = String(state.page);
  $("#log-table").dataset.total = total === null ? "" : String(total);
  $("#prev").disabled = state.page <= 1;
  $("#next").disabled = pages === null ? items.length < PAGE_SIZE : state.page >= pages;
}

function reloadTable() {
  loadLogs().then(() => { $("#status").textContent = "Updated " + new Date().toLocaleTimeString(); },
    (e) => { $("#status").textContent = "Logs failed: " + e.message; });
}

$("#filters").addEventListener("submit", (event) => { event.preventDefault(); state.page = 1; refresh(); });
$("#prev").addEventListener("click", () => { if (state.page > 1) { state.page -= 1; reloadTable(); } });
$("#next").addEventListener("click", () => { state.page += 1; reloadTable(); });
$("#range").addEventListener("change", () => { state.page = 1; refresh(); });
$("#usage-group").addEventListener("change", () => loadUsage(range()));
$("#usage-metric").addEventListener("change", () => loadUsage(range()));

// Export: the same filters, fetched with the same credentials, saved as a file. The
// export endpoint takes the list filters, not a keyword search: with a keyword the file
// would hold more than the table shows, so nothing is downloaded and the reason is said.
async function exportAs(format) {
  const filters = { ...tableFilters(false), ...range(), format };
  delete filters.span;
  if (filters.keyword) {
    $("#status").textContent = "Export takes the filters, not the keyword search: clear the search to export";
    return;
  }
  try {
    const response = await api(base("export"), filters, true);
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "gatelog-logs." + (format === "csv" ? "csv" : "ndjson");
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (e) {
    $("#status").textContent = "Export failed: " + e.message;
  }
}
$("#export-csv").addEventListener("click", () => exportAs("csv"));
$("#export-ndjson").addEventListener("click", () => exportAs("ndjson"));

// Without a pasted token, the gateway's session may sign us in (when gatelog delegates
// sign-in to the gateway); otherwise there is nothing to try before the form.
if (token() || document.body.dataset.gateway === "1") start(); else showSignIn("");
