// weft's web UI: logs search, trace waterfall with logs in place, trace search, service map.
// Plain JavaScript served by weft itself; all state lives in the URL hash so links can be shared.
"use strict";

const $ = (sel) => document.querySelector(sel);
const BANDS = ["unspecified", "trace", "debug", "info", "warn", "error", "fatal"];
const SERVICE_COLORS = ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626"];

function band(n) { return n >= 1 && n <= 24 ? BANDS[Math.floor((n - 1) / 4) + 1] : "unspecified"; }
function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
function nowNs() { return BigInt(Date.now()) * 1000000n; }
function fmtTime(ns) { const d = new Date(Number(BigInt(ns) / 1000000n)); return d.toISOString().replace("T", " ").replace("Z", ""); }
// A clock offset ("3.00 s ahead", "200.0 ms behind"); offsets are signed nanosecond strings.
function fmtClock(ns) { const n = BigInt(ns); if (n === 0n) return "in step"; return `${fmtDur((n < 0n ? -n : n).toString())} ${n < 0n ? "behind" : "ahead"}`; }
function fmtDur(ns) { const n = Number(ns); return n >= 1e9 ? (n / 1e9).toFixed(2) + " s" : n >= 1e6 ? (n / 1e6).toFixed(1) + " ms" : (n / 1e3).toFixed(0) + " µs"; }
function serviceColor(name) { let h = 0; for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0; return SERVICE_COLORS[h % SERVICE_COLORS.length]; }

function route() {
  const [path, query] = (location.hash.slice(1) || "/logs").split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}
function go(path, params) { const q = new URLSearchParams(params).toString(); location.hash = path + (q ? "?" + q : ""); }
// Sets (or, with null, removes) one URL parameter without re-rendering the view.
function replaceParam(name, value) {
  const { parts, params } = route();
  if (value == null) params.delete(name); else params.set(name, value);
  const q = params.toString();
  history.replaceState(null, "", "#/" + parts.join("/") + (q ? "?" + q : ""));
}

// ---------- tokens ----------
// When weft has read or admin tokens configured, its API answers 401 (no or unknown token) or
// 403 with reason "wrong_role"; the UI then asks for a token of the role the call needs, keeps
// it for this tab only (sessionStorage) and sends it as a bearer token. An admin token may also
// read, so it is used for reads when no read token was given.
const TOKEN_KEYS = { read: "weft.readToken", admin: "weft.adminToken" };
function storedToken(role) {
  return sessionStorage.getItem(TOKEN_KEYS[role]) || (role === "read" ? sessionStorage.getItem(TOKEN_KEYS.admin) : null);
}
let tokenPrompt = null;
function askToken(role, why) {
  if (tokenPrompt) return tokenPrompt; // several calls refused at once share one prompt
  const dialog = $("#token-dialog");
  $("#token-title").textContent = role === "admin" ? "Admin token needed to change severity rules" : "Read token needed";
  $("#token-reason").textContent = "weft says: " + why;
  $("#token-input").value = "";
  tokenPrompt = new Promise((resolve) => {
    const done = (value) => { tokenPrompt = null; dialog.close(); resolve(value); };
    $("#token-form").onsubmit = (e) => {
      e.preventDefault();
      const value = $("#token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEYS[role], value);
      done(value);
    };
    $("#token-cancel").onclick = () => done(null);
    dialog.oncancel = (e) => { e.preventDefault(); done(null); };
  });
  dialog.showModal();
  $("#token-input").focus();
  return tokenPrompt;
}
// fetch with the tab's token for `role`; asks for one (and retries) when weft refuses for want of it.
async function authFetch(url, options = {}, role = "read") {
  for (let attempt = 0; ; attempt++) {
    const token = storedToken(role);
    const headers = new Headers(options.headers || {});
    if (token) headers.set("authorization", "Bearer " + token);
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401 && response.status !== 403) return response;
    const body = await response.clone().json().catch(() => ({}));
    if (attempt >= 3 || (response.status === 403 && body.reason !== "wrong_role")) return response;
    if (token && sessionStorage.getItem(TOKEN_KEYS[role]) === token) sessionStorage.removeItem(TOKEN_KEYS[role]);
    if (!(await askToken(role, body.error || response.statusText))) return response;
  }
}

async function getJSON(url) {
  const response = await authFetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) { const e = new Error(body.error || response.statusText); e.body = body; throw e; }
  return body;
}

function show(view) {
  for (const id of ["logs-view", "trace-view", "traces-view", "events-view", "services-view", "map-view", "health-view", "heatmap-view", "severity-view"]) $("#" + id).hidden = id !== view;
  if (view !== "logs-view") stopTail();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", view.startsWith(a.dataset.view));
}

// ---------- logs ----------
// Paging state of the logs view. `searchGen` discards answers to searches the user has since
// replaced, so a slow first page can never land under a newer query's rows.
let logCursor = null, logRange = null, searchGen = 0, loadingMore = false;

function highlighter(q) {
  const words = (q.match(/"[^"]+"|[^\s()]+/g) || [])
    .filter((w) => !w.includes(":") && !/^(AND|OR|NOT)$/.test(w) && !w.startsWith("-") && !/[<>=]/.test(w))
    .map((w) => w.replace(/"/g, "").replace(/\*/g, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .filter(Boolean);
  if (!words.length) return esc;
  const re = new RegExp("(" + words.join("|") + ")", "gi");
  return (text) => esc(text).replace(re, "<mark>$1</mark>");
}

function bodyText(body) { return typeof body === "string" ? body : JSON.stringify(body); }

// `from`/`to` in the URL are RFC 3339 (UTC); the form takes "YYYY-MM-DD HH:MM:SS" in UTC too.
function parseUtc(text) {
  const t = text.trim().replace(" ", "T");
  const ms = Date.parse(/([zZ]|[+-]\d\d:?\d\d)$/.test(t) ? t : t + "Z");
  return Number.isNaN(ms) ? null : ms;
}
function fmtUtc(ms) { return new Date(ms).toISOString().replace("T", " ").replace(/\.000Z$|Z$/, ""); }

// The logs view's time range: absolute (`from`/`to`) or the last `range` seconds.
function timeRange(params) {
  const from = params.get("from"), to = params.get("to");
  if (from || to) {
    const s = parseUtc(from || ""), e = parseUtc(to || "");
    if (s == null || e == null || e <= s) throw new Error(`bad time range: from ${from || "?"} to ${to || "?"} (use "YYYY-MM-DD HH:MM:SS", UTC, from before to)`);
    return { start: BigInt(s) * 1000000n, end: BigInt(e) * 1000000n + 999999n, from: s, to: e };
  }
  const end = nowNs();
  return { start: end - BigInt(Number(params.get("range") || 3600)) * 1000000000n, end };
}

function showRangeForm(params) {
  const absolute = params.get("from") || params.get("to");
  $("#range").value = absolute ? "custom" : String(params.get("range") || 3600);
  $("#custom-range").hidden = !absolute;
  if (absolute) { $("#from").value = params.get("from") ? fmtUtc(parseUtc(params.get("from"))) : ""; $("#to").value = params.get("to") ? fmtUtc(parseUtc(params.get("to"))) : ""; }
}

function logRow(log, mark) {
  const tr = document.createElement("tr");
  tr.className = "log";
  tr.tabIndex = 0;
  const trace = log.trace_id ? ` <a class="id" href="#/trace/${log.trace_id}?log=${log.time_unix_nano}">trace</a>` : "";
  tr.innerHTML = `<td>${fmtTime(log.time_unix_nano)}</td><td>${esc(log.service)}</td>` +
    `<td class="sev sev-${band(log.severity_number)}">${esc(log.severity_text || band(log.severity_number))}</td>` +
    `<td>${esc(log.event)}</td><td class="body">${mark(bodyText(log.body))}${trace}</td>`;
  const open = () => openPanel($("#details"), logDetails(log), tr);
  tr.addEventListener("click", (e) => { if (e.target.tagName !== "A") open(); });
  tr.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target === tr) open(); });
  return tr;
}

function kvTable(title, obj) {
  const rows = Object.entries(obj || {}).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(typeof v === "string" ? v : JSON.stringify(v))}</td></tr>`).join("");
  return `<h4>${title}</h4>` + (rows ? `<table class="kv">${rows}</table>` : `<div class="muted">none</div>`);
}

function logDetails(log) {
  const trace = log.trace_id
    ? `<a class="id" href="#/trace/${log.trace_id}?log=${log.time_unix_nano}">${log.trace_id}</a>` +
      (log.span_id ? ` span <a class="id" href="#/logs?${new URLSearchParams({ q: `trace_id:${log.trace_id} span_id:${log.span_id}`, range: "604800" })}">${log.span_id}</a>` : "")
    : "none";
  return `<table class="kv"><tr><th>time</th><td>${fmtTime(log.time_unix_nano)}</td></tr>` +
    `<tr><th>service</th><td>${esc(log.service)}</td></tr>` +
    `<tr><th>severity</th><td class="sev-${band(log.severity_number)}">${esc(log.severity_text)} (${log.severity_number})</td></tr>` +
    `<tr><th>event</th><td>${esc(log.event)}</td></tr><tr><th>trace</th><td>${trace}</td></tr>` +
    `<tr><th>body</th><td class="wrap">${esc(bodyText(log.body))}</td></tr></table>` +
    kvTable("attributes", log.attributes) + kvTable("resource", log.resource) + kvTable("scope", log.scope);
}

// Details panels: opened from a row, closed with Esc or ×, focus goes back to the row.
let panelOpener = null;
function openPanel(panel, html, opener) {
  panel.innerHTML = `<button class="close" type="button" aria-label="Close details">×</button>` + html;
  panel.hidden = false;
  panel.querySelector(".close").addEventListener("click", closePanels);
  panelOpener = opener;
}
const PANELS = ["#details", "#span-details", "#call-details", "#log-compare-panel"];
function closePanels() {
  const wasOpen = PANELS.some((p) => !$(p).hidden);
  for (const p of PANELS) $(p).hidden = true;
  if (wasOpen && panelOpener && document.contains(panelOpener)) panelOpener.focus();
  panelOpener = null;
  for (const name of ["span", "call"]) if (route().params.has(name)) replaceParam(name, null);
}

let histogramLayout = null;

function drawHistogram(h, range) {
  const svg = $("#histogram");
  const width = svg.clientWidth || 800, height = 70;
  const buckets = h.buckets || [];
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const w = width / Math.max(1, buckets.length);
  let out = "";
  buckets.forEach((b, i) => {
    let y = height;
    for (const bandName of BANDS) {
      const n = b.counts[bandName] || 0;
      if (!n) continue;
      const bh = (n / max) * (height - 2);
      y -= bh;
      out += `<rect class="bucket" x="${i * w + 1}" y="${y}" width="${Math.max(1, w - 2)}" height="${bh}" fill="var(--${bandName === "unspecified" ? "muted" : bandName})"><title>${fmtTime(b.start_unix_nano)}: ${b.total} records</title></rect>`;
    }
  });
  out += `<rect id="zoom-selection" x="0" y="0" width="0" height="${height}" visibility="hidden"></rect>`;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.innerHTML = out;
  // Buckets cover [start, start + n × bucket_ns), which can run a little past `end`.
  histogramLayout = { start: range.start, span: BigInt(h.bucket_ns || 1) * BigInt(Math.max(1, buckets.length)) };
}

// Drag across the histogram to zoom the search into that time range.
function enableHistogramZoom() {
  const svg = $("#histogram");
  let x0 = null;
  const x = (e) => { const r = svg.getBoundingClientRect(); return Math.min(Math.max(e.clientX - r.left, 0), r.width); };
  const toMs = (px) => {
    const frac = px / svg.getBoundingClientRect().width;
    return Number((histogramLayout.start + (histogramLayout.span * BigInt(Math.round(frac * 1e6))) / 1000000n) / 1000000n);
  };
  svg.addEventListener("pointerdown", (e) => {
    if (!histogramLayout) return;
    x0 = x(e);
    svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener("pointermove", (e) => {
    const sel = $("#zoom-selection");
    if (x0 == null || !sel) return;
    const x1 = x(e), scale = (svg.viewBox.baseVal.width || 1) / svg.getBoundingClientRect().width;
    sel.setAttribute("x", Math.min(x0, x1) * scale);
    sel.setAttribute("width", Math.abs(x1 - x0) * scale);
    sel.setAttribute("visibility", "visible");
  });
  svg.addEventListener("pointerup", (e) => {
    if (x0 == null) return;
    const [a, b] = [x0, x(e)].sort((p, q) => p - q);
    x0 = null;
    if (b - a < 4) { $("#zoom-selection")?.setAttribute("visibility", "hidden"); return; }
    go("/logs", withFilters({ q: $("#q").value, from: new Date(toMs(a)).toISOString(), to: new Date(toMs(b)).toISOString() }));
  });
}

// On a search node, an answer without some ingest node's newest rows says so ("partial",
// "missing_nodes"); the view says it too, naming the nodes.
function partialText(...answers) {
  const missing = [...new Set(answers.filter((a) => a && a.partial).flatMap((a) => a.missing_nodes || []))];
  return missing.length ? `Partial answer: ${missing.join(", ")} did not answer, so ${missing.length > 1 ? "their" : "its"} newest rows (not yet in object storage) are missing.` : "";
}
function showPartial(el, ...answers) {
  el.textContent = partialText(...answers);
  el.hidden = !el.textContent;
}
// The same notice inside a panel drawn as HTML (facets, a comparison).
function partialHtml(...answers) {
  const text = partialText(...answers);
  return text ? `<div class="partial">${esc(text)}</div>` : "";
}

async function searchLogs(more) {
  const { params } = route();
  const q = params.get("q") || "";
  const err = $("#query-error");
  if (!more) {
    $("#q").value = q;
    showRangeForm(params);
    try { logRange = timeRange(params); } catch (e) { err.hidden = false; err.textContent = e.message; return; }
  }
  const gen = more ? searchGen : ++searchGen;
  const start = logRange.start.toString(), end = logRange.end.toString();
  // The typed query, narrowed by the filters peeled off the facets.
  const filters = params.getAll("f");
  const fq = fullQuery(q, filters);
  const url = new URLSearchParams({ q: fq, start, end, limit: "100" });
  if (more) { if (!logCursor || loadingMore) return; url.set("cursor", logCursor); loadingMore = true; }
  try {
    const [page, hist] = await Promise.all([
      getJSON("/api/v1/logs?" + url),
      more ? null : getJSON("/api/v1/logs/histogram?" + new URLSearchParams({ q: fq, start, end, buckets: "60" })),
    ]);
    if (!more) {
      drawChips($("#log-chips"), filters);
      drawFacets($("#log-facets"), "logs", fq, start, end);
      drawPatterns($("#log-patterns"), fq, start, end, params.get("new_since"));
      // A comparison needs a selection: something typed or peeled.
      $("#log-compare").hidden = !fq;
      logCompareQuery = { q: fq, start, end };
    }
    if (gen !== searchGen) return;
    err.hidden = true;
    // A later page adds to the notice of the first; it does not clear it.
    if (!more) showPartial($("#logs-partial"), page, hist);
    else if (page.partial) showPartial($("#logs-partial"), page);
    const body = $("#logs tbody");
    if (!more) { body.innerHTML = ""; $("#details").hidden = true; $("#log-compare-panel").hidden = true; }
    const mark = highlighter(q);
    for (const log of page.logs) body.appendChild(logRow(log, mark));
    logCursor = page.next_cursor;
    $("#more").hidden = !logCursor;
    $("#result-count").textContent = hist ? `${hist.buckets.reduce((n, b) => n + b.total, 0)} matching records` : $("#result-count").textContent;
    if (hist) drawHistogram(hist, logRange);
  } catch (e) {
    if (gen !== searchGen) return;
    err.hidden = false;
    const pos = e.body && e.body.position;
    // The server's answer carries the syntax in brief, from the same list of fields its
    // query compiler knows.
    const help = e.body && e.body.help ? `\n\n${e.body.help}` : "";
    err.textContent = pos != null ? `${q}\n${" ".repeat(pos)}^ ${e.body.message}${help}` : e.message;
  } finally {
    if (more) loadingMore = false;
  }
  if (more || logCursor) loadMoreIfVisible();
}

// Infinite scroll: when the "Load more" button scrolls into view, the next page is fetched.
function loadMoreIfVisible() {
  const more = $("#more");
  if (more.hidden || loadingMore || !logCursor) return;
  const r = more.getBoundingClientRect();
  if (r.top < window.innerHeight && r.bottom > 0) searchLogs(true);
}

// ---------- one trace ----------
// The waterfall renders thousands of rows at once, so rows are built as one HTML string and
// clicks are handled by one listener on the container.

// A clock, marking what was moved for a skewed clock (drawn, not a font glyph).
const CLOCK_ICON = '<svg class="clock" viewBox="0 0 12 12" aria-label="clock adjusted"><circle cx="6" cy="6" r="5"/><path d="M6 3v3.2l2.2 1.3"/></svg>';

// A time axis over `total` nanoseconds: a tick every 1, 2 or 5 × 10^k ns, 4 to 10 of them,
// each labelled with its time from the trace's start.
function timeAxis(total) {
  let step = 1;
  for (let i = 0; total / step > 10; i++) step *= [2, 2.5, 2][i % 3];
  const ticks = [];
  // The last label would run off the right edge: ticks past 92 % are drawn without one.
  for (let ns = 0; ns <= total; ns += step) {
    if (ns > 0 && ns / total > 0.92) { ticks.push(`<div class="tick" style="left:${((ns / total) * 100).toFixed(3)}%"></div>`); continue; }
    ticks.push(`<div class="tick" style="left:${((ns / total) * 100).toFixed(3)}%"><span>${ns === 0 ? "0" : fmtDur(ns)}</span></div>`);
  }
  return `<div class="timeaxis" aria-hidden="true"><div class="muted">time from the trace's start</div><div class="bar-area">${ticks.join("")}</div></div>`;
}
let traceState = null;

async function showTrace(id, params) {
  const summary = $("#trace-summary"), fall = $("#waterfall");
  fall.innerHTML = "";
  $("#span-details").hidden = true;
  let t;
  const fetching = performance.now();
  try { t = await getJSON("/api/v1/traces/" + encodeURIComponent(id)); }
  catch (e) { summary.textContent = `trace ${id}: ${e.message}`; return; }
  showPartial($("#trace-partial"), t);
  const rendering = performance.now();
  const s = t.summary;
  summary.innerHTML = `<b>${esc(s.root_service)}: ${esc(s.root_name)}</b> — ${fmtDur(s.duration_ns)}, ${s.span_count} spans, ` +
    `${s.error_count} errors, ${s.log_count} logs${s.incomplete ? " — <b>root span missing</b>" : ""}${t.truncated ? " — <b>truncated</b>" : ""} ` +
    `<a class="id" href="#/logs?${new URLSearchParams({ q: "trace_id:" + t.trace_id, range: "604800" })}">logs of this trace</a>`;
  // Times are drawn on the trace's clock: each span and log moved by its service's clock
  // adjustment (0 unless weft found that service's clock skewed in this trace).
  const adj = (row) => BigInt(row.clock_adjustment_ns || "0");
  const at = (ns, row) => BigInt(ns) + adj(row);
  let t0 = null, t1 = null;
  for (const sp of t.spans) {
    const a = at(sp.start_time_unix_nano, sp), b = at(sp.end_time_unix_nano, sp);
    if (t0 === null || a < t0) t0 = a;
    if (t1 === null || b > t1) t1 = b;
  }
  if (t0 === null) { t0 = BigInt(s.start_time_unix_nano); t1 = t0 + BigInt(s.duration_ns); }
  const total = Math.max(1, Number(t1 - t0));
  const pct = (ns, row) => ((Number(at(ns, row) - t0) / total) * 100).toFixed(3);
  // A moved row's mark: a clock with the adjustment; the recorded time on hover.
  const skewMark = (row, ns) => {
    const a = adj(row);
    if (a === 0n) return "";
    const sign = a > 0n ? "+" : "−", by = fmtDur((a < 0n ? -a : a).toString());
    return `<span class="skewmark" title="moved ${sign}${by} for the clock of ${esc(row.service)}; recorded at ${fmtTime(ns)}">${CLOCK_ICON}${sign}${by}</span> `;
  };
  const byId = new Map(t.spans.map((sp) => [sp.span_id, sp]));
  const children = new Map();
  const roots = [];
  for (const sp of t.spans) {
    if (sp.parent_span_id && byId.has(sp.parent_span_id)) {
      if (!children.has(sp.parent_span_id)) children.set(sp.parent_span_id, []);
      children.get(sp.parent_span_id).push(sp);
    } else roots.push(sp);
  }
  const byStart = (a, b) => (BigInt(a.start_time_unix_nano) < BigInt(b.start_time_unix_nano) ? -1 : 1);
  const lastEnding = (list) => list.reduce((best, sp) => (!best || BigInt(sp.end_time_unix_nano) > BigInt(best.end_time_unix_nano) ? sp : best), null);
  // The longest child chain: from the root that ends last, follow the child that ends last.
  const critical = new Set();
  for (let cur = lastEnding(roots); cur; cur = lastEnding(children.get(cur.span_id) || [])) critical.add(cur.span_id);
  const logsBySpan = new Map();
  t.logs.forEach((l, i) => {
    const k = byId.has(l.span_id) ? l.span_id : "";
    if (!logsBySpan.has(k)) logsBySpan.set(k, []);
    logsBySpan.get(k).push(i);
  });
  const highlightLog = params.get("log");
  const html = [];
  const addLogs = (indexes, depth) => {
    for (const i of indexes || []) {
      const l = t.logs[i], b = band(l.severity_number);
      html.push(`<div class="row logrow${highlightLog === l.time_unix_nano ? " highlight" : ""}" tabindex="0" data-log="${i}">` +
        `<div class="label" style="padding-left:${depth * 12 + 14}px">${skewMark(l, l.time_unix_nano)}<span class="sev-${b}">${esc(l.severity_text || b)}</span> ${esc(l.event)} ${esc(bodyText(l.body))}</div>` +
        `<div class="bar-area"><div class="logmark" style="left:${pct(l.time_unix_nano, l)}%;background:var(--${b === "unspecified" ? "muted" : b})"></div></div></div>`);
    }
  };
  const addSpan = (sp, depth) => {
    const left = pct(sp.start_time_unix_nano, sp), width = Math.max(0.2, (Number(sp.duration_ns) / total) * 100).toFixed(3);
    const color = serviceColor(sp.service);
    const events = sp.events.map((e) => `<div class="eventmark" title="${esc(e.name)}" style="left:${pct(e.time_unix_nano, sp)}%"></div>`).join("");
    html.push(`<div class="row span${sp.status.code === "error" ? " failed" : ""}" tabindex="0" data-span="${esc(sp.span_id)}">` +
      `<div class="label" style="padding-left:${depth * 12}px;border-left:3px solid ${color}">` +
      `${sp.status.code === "error" ? '<span class="errmark" title="error">!</span> ' : ""}${skewMark(sp, sp.start_time_unix_nano)}${esc(sp.service)} <b>${esc(sp.name)}</b> <span class="muted">${fmtDur(sp.duration_ns)}</span></div>` +
      `<div class="bar-area"><div class="bar${sp.status.code === "error" ? " error" : ""}${critical.has(sp.span_id) ? " critical" : ""}" ` +
      `style="left:${left}%;width:${width}%;background:${color}"></div>${events}</div></div>`);
    addLogs(logsBySpan.get(sp.span_id), depth + 1);
    for (const c of (children.get(sp.span_id) || []).sort(byStart)) addSpan(c, depth + 1);
  };
  html.push(timeAxis(total));
  addLogs(logsBySpan.get(""), 0);
  for (const r of roots.sort((a, b) => (at(a.start_time_unix_nano, a) < at(b.start_time_unix_nano, b) ? -1 : 1))) addSpan(r, 0);
  fall.innerHTML = html.join("");
  const skewed = t.clock_skew || [];
  const notice = $("#trace-skew");
  notice.hidden = skewed.length === 0;
  notice.innerHTML = skewed.map((k) => {
    return `the clock of <b>${esc(k.service)}</b> runs ${fmtClock(k.offset_ns)}`;
  }).join("; ") + (skewed.length ? `: its spans and logs (marked ${CLOCK_ICON}) are moved to fit their callers; hover a mark for the time it recorded.` : "");
  // The trace's length on its clock, beside the recorded one when a clock was off.
  if (skewed.length) $("#trace-summary b").insertAdjacentHTML("afterend", ` <span class="muted">(${fmtDur(total)} on the trace's clock)</span>`);
  traceState = { trace: t, byId, logsBySpan };
  const hl = fall.querySelector(".highlight");
  if (hl) { hl.scrollIntoView({ block: "center" }); hl.focus({ preventScroll: true }); }
  const selected = params.get("span") && fall.querySelector(`.row.span[data-span="${CSS.escape(params.get("span"))}"]`);
  if (selected) { selected.scrollIntoView({ block: "center" }); openTraceRow(selected); }
  // Timings for the browser tests: fetch + JSON parse, then DOM build + layout (forced here).
  void fall.offsetHeight;
  document.body.dataset.traceFetchMs = (rendering - fetching).toFixed(1);
  document.body.dataset.traceRenderMs = (performance.now() - rendering).toFixed(1);
  document.body.dataset.renderedTrace = t.trace_id;
}

function spanDetails(sp) {
  const { trace, logsBySpan } = traceState;
  const logs = (logsBySpan.get(sp.span_id) || []).map((i) => trace.logs[i]);
  const logsLink = `#/logs?${new URLSearchParams({ q: `trace_id:${sp.trace_id} span_id:${sp.span_id}`, range: "604800" })}`;
  return `<div><b>${esc(sp.service)}: ${esc(sp.name)}</b> — ${fmtDur(sp.duration_ns)}, ${esc(sp.kind)}, status ${esc(sp.status.code)}${sp.status.message ? ": " + esc(sp.status.message) : ""}</div>` +
    `<div>span <span class="id">${esc(sp.span_id)}</span>${sp.parent_span_id ? ` parent <span class="id">${esc(sp.parent_span_id)}</span>` : ""} <a class="id span-logs" href="${logsLink}">logs of this span (${logs.length})</a></div>` +
    `<h4>logs</h4>` + (logs.length ? `<table class="kv">${logs.map((l) => `<tr><td>${fmtTime(l.time_unix_nano)}</td><td class="sev-${band(l.severity_number)}">${esc(l.severity_text)}</td><td>${esc(l.event)}</td><td class="wrap">${esc(bodyText(l.body))}</td></tr>`).join("")}</table>` : `<div class="muted">none</div>`) +
    kvTable("attributes", sp.attributes) +
    `<h4>events</h4>` + (sp.events.length ? `<table class="kv">${sp.events.map((e) => `<tr><td>${fmtTime(e.time_unix_nano)}</td><td>${esc(e.name)}</td><td class="wrap">${esc(JSON.stringify(e.attributes || {}))}</td></tr>`).join("")}</table>` : `<div class="muted">none</div>`) +
    kvTable("resource", sp.resource) + kvTable("scope", sp.scope);
}

function openTraceRow(row) {
  if (!row || !traceState) return;
  if (row.dataset.span) {
    openPanel($("#span-details"), spanDetails(traceState.byId.get(row.dataset.span)), row);
    // The open span goes into the URL, so a pasted link shows it too.
    replaceParam("span", row.dataset.span);
  } else if (row.dataset.log) openPanel($("#span-details"), logDetails(traceState.trace.logs[Number(row.dataset.log)]), row);
}

// ---------- trace search ----------
async function searchTraces() {
  const { params } = route();
  const start = (nowNs() - 86400n * 1000000000n).toString(), end = (nowNs() + 1000000000n).toString();
  const q = new URLSearchParams({ limit: "50", start, end });
  for (const k of ["service", "operation", "min_duration", "status"]) if (params.get(k)) q.set(k, params.get(k));
  const filters = params.getAll("f");
  const spanQ = fullQuery(params.get("q") || "", filters);
  if (spanQ) q.set("q", spanQ);
  $("#t-q").value = params.get("q") || "";
  drawChips($("#span-chips"), filters);
  // The facets describe the spans the search matches (the trace-duration bound aside).
  const facetQ = [params.get("service") && `service:${quoteValue(params.get("service"))}`, params.get("operation") && `name:${quoteValue(params.get("operation"))}`,
    params.get("status") === "error" && "status:error", spanQ && `(${spanQ})`].filter(Boolean).join(" ");
  drawFacets($("#span-facets"), "spans", facetQ, start, end);
  $("#t-service").value = params.get("service") || "";
  $("#t-operation").value = params.get("operation") || "";
  $("#t-min").value = params.get("min_duration") || "";
  $("#t-errors").checked = params.get("status") === "error";
  const body = $("#trace-list tbody");
  body.innerHTML = "";
  try {
    const r = await getJSON("/api/v1/traces?" + q);
    $("#trace-error").hidden = true;
    showPartial($("#traces-partial"), r);
    for (const t of r.traces) {
      const tr = document.createElement("tr");
      tr.className = "log";
      tr.innerHTML = `<td>${fmtTime(t.start_time_unix_nano)}</td><td><a class="id" href="#/trace/${t.trace_id}">${esc(t.root_service)}: ${esc(t.root_name)}</a>${t.incomplete ? " (incomplete)" : ""}</td>` +
        `<td>${fmtDur(t.duration_ns)}</td><td>${t.span_count}</td><td>${t.error_count}</td><td>${t.log_count}</td><td>${esc(t.services.join(", "))}</td>`;
      body.appendChild(tr);
    }
  } catch (e) { $("#trace-error").hidden = false; $("#trace-error").textContent = e.message; }
}

// ---------- live tail ----------
// Server-sent events read through fetch rather than EventSource, which cannot send a token.
let tail = null; // the AbortController of the open tail

function stopTail() {
  if (tail) { tail.abort(); tail = null; }
  $("#live").checked = false;
  $("#tail-status").hidden = true;
}

// One event of an event stream: its `event:` name and its `data:` lines joined.
function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return { event, data: data.join("\n") };
}

function startTail() {
  stopTail();
  $("#live").checked = true;
  const q = $("#q").value;
  const status = $("#tail-status");
  status.hidden = false;
  status.textContent = "Live: connecting…";
  const mark = highlighter(q);
  let count = 0, missed = 0;
  const controller = new AbortController();
  tail = controller;
  const handle = ({ event, data }) => {
    if (event === "ready") {
      // On a search node, ingest nodes whose tail could not be opened are named.
      const ready = JSON.parse(data || "{}");
      status.textContent = "Live: waiting for new records" + (ready.partial ? ` (not from ${ready.missing_nodes.join(", ")}, which did not answer)` : "");
    }
    else if (event === "log") {
      const row = logRow(JSON.parse(data), mark);
      row.classList.add("fresh");
      $("#logs tbody").prepend(row);
      count += 1;
      status.textContent = `Live: ${count} new` + (missed ? `, ${missed} missed (too fast to show all)` : "");
    } else if (event === "missed") missed += JSON.parse(data).missed;
  };
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const response = await authFetch("/api/v1/logs/tail?" + new URLSearchParams({ q }), { signal: controller.signal, headers: { accept: "text/event-stream" } });
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          status.textContent = "Live: " + (body.error || response.statusText);
          if (response.status < 500 && response.status !== 429) return;
        } else {
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value; // weft ends lines with \n only
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              handle(parseEvent(buffer.slice(0, end)));
              buffer = buffer.slice(end + 2);
            }
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      status.textContent = "Live: connection lost, retrying…";
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
}

// ---------- catalogs ----------
async function showEvents() {
  const body = $("#event-list tbody");
  body.innerHTML = "";
  const r = await getJSON("/api/v1/events");
  for (const e of r.events) {
    const tr = document.createElement("tr");
    const rule = e.rule ? `${e.rule.id}: ${e.rule.action.min_severity ? "min " + e.rule.action.min_severity : ""} ${e.rule.action.set_severity ? "set " + e.rule.action.set_severity : ""} (${e.rule.time_left_seconds}s left)` : "";
    tr.innerHTML = `<td><a class="id" href="#/logs?q=${encodeURIComponent("event:" + e.event)}&range=86400">${esc(e.event)}</a></td>` +
      `<td>${e.count}</td><td class="wrap">${e.services.map((s) => `<a class="id" href="#/logs?q=${encodeURIComponent(`service:${s} event:${e.event}`)}&range=86400">${esc(s)}</a>`).join(", ")}</td>` +
      `<td>${e.severities.map((b) => `<span class="sev-${b}">${b}</span>`).join(" ")}</td><td>${fmtTime(e.last_seen_unix_nano)}</td><td class="wrap">${esc(rule)}</td>` +
      `<td><button class="small" type="button">Set level…</button></td>`;
    tr.querySelector("button").addEventListener("click", () => go("/severity", { event: e.event }));
    body.appendChild(tr);
  }
}

async function showServices() {
  const body = $("#service-list tbody");
  body.innerHTML = "";
  const r = await getJSON("/api/v1/services");
  for (const s of r.services) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td><a class="id" href="#/logs?q=${encodeURIComponent("service:" + s.service)}&range=86400">${esc(s.service)}</a> ` +
      `<a class="id" href="#/traces?service=${encodeURIComponent(s.service)}">traces</a></td>` +
      `<td>${s.span_count}</td><td>${s.log_count}</td><td>${fmtTime(s.last_seen_unix_nano)}</td>` +
      `<td class="clock-offset" title="${s.clock_offset_pairs} calls">${s.clock_offset_ns === null ? "—" : fmtClock(s.clock_offset_ns)}</td>` +
      `<td><button class="small" type="button">Set level…</button></td>`;
    tr.querySelector("button").addEventListener("click", () => go("/severity", { service: s.service }));
    body.appendChild(tr);
  }
}

// ---------- service map ----------
// Services as boxes in columns by call depth (callers left of what they call), calls as arrows
// whose width grows with the rate and which turn red with errors. The same calls are listed in
// a table below; a call (arrow or row) opens the traces behind it, a service its trace search.
const MAP = { column: 360, row: 72, boxW: 160, boxH: 40, pad: 24 };
function fmtRate(r) { return r >= 10 ? r.toFixed(0) + "/s" : r >= 1 ? r.toFixed(1) + "/s" : (r * 60).toFixed(r * 60 >= 1 ? 1 : 3) + "/min"; }
function fmtRatio(x) { return (x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 1) + " %"; }
const callKey = (c) => `${c.parent}>${c.child}`;

function layoutServices(services, calls) {
  const names = services.map((s) => s.service);
  const depth = new Map(names.map((n) => [n, 0]));
  // Longest path from a service nobody calls; a cycle stops deepening after one round per service.
  for (let round = 0; round < names.length; round++) {
    let changed = false;
    for (const c of calls) {
      const d = depth.get(c.parent) + 1;
      if (d > depth.get(c.child) && d < names.length) { depth.set(c.child, d); changed = true; }
    }
    if (!changed) break;
  }
  const columns = [];
  for (const n of [...names].sort()) (columns[depth.get(n)] ||= []).push(n);
  const at = new Map();
  columns.forEach((col, x) => (col || []).forEach((n, y) => at.set(n, { x: MAP.pad + x * MAP.column, y: MAP.pad + y * MAP.row })));
  const width = MAP.pad * 2 + (columns.length - 1) * MAP.column + MAP.boxW;
  const height = MAP.pad * 2 + (Math.max(1, ...columns.map((c) => (c || []).length)) - 1) * MAP.row + MAP.boxH;
  return { at, width, height };
}

function drawServiceMap(map) {
  const svg = $("#service-map");
  const { at, width, height } = layoutServices(map.services, map.calls);
  const maxRate = Math.max(1e-9, ...map.calls.map((c) => c.rate_per_second));
  let out = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>`;
  for (const c of map.calls) {
    const a = at.get(c.parent), b = at.get(c.child);
    if (!a || !b) continue;
    const x1 = a.x + MAP.boxW, y1 = a.y + MAP.boxH / 2, y2 = b.y + MAP.boxH / 2;
    // A call to a service in the same or an earlier column loops below the boxes.
    const forward = b.x > a.x;
    const x2 = forward ? b.x : b.x + MAP.boxW / 2;
    const yEnd = forward ? y2 : b.y + MAP.boxH;
    const d = forward
      ? `M${x1},${y1} C${x1 + 60},${y1} ${x2 - 60},${y2} ${x2},${y2}`
      : `M${a.x + MAP.boxW / 2},${a.y + MAP.boxH} C${a.x + MAP.boxW / 2},${a.y + MAP.boxH + 50} ${x2},${yEnd + 50} ${x2},${yEnd}`;
    const w = 1.5 + 4.5 * (c.rate_per_second / maxRate);
    const failing = c.errors > 0;
    const label = `${fmtRate(c.rate_per_second)} · ${fmtRatio(c.error_ratio)} err · p99 ${fmtDur(c.p99_ns)}`;
    const [rate, rest] = [fmtRate(c.rate_per_second), `${fmtRatio(c.error_ratio)} err · p99 ${fmtDur(c.p99_ns)}`];
    const mx = forward ? (x1 + x2) / 2 : (a.x + x2) / 2 + MAP.boxW / 4, my = forward ? (y1 + y2) / 2 - 6 : Math.max(a.y, b.y) + MAP.boxH + 44;
    out += `<g class="call${failing ? " failing" : ""}" tabindex="0" data-call="${esc(callKey(c))}"><title>${esc(c.parent)} → ${esc(c.child)}: ${c.calls} calls, ${label}</title>` +
      `<path class="hit" d="${d}"/><path class="edge" d="${d}" stroke-width="${w.toFixed(1)}" marker-end="url(#arrow)"/>` +
      `<text x="${mx}" y="${my - 12}" text-anchor="middle"><tspan x="${mx}">${esc(rate)}</tspan><tspan x="${mx}" dy="13">${esc(rest)}</tspan></text></g>`;
  }
  for (const s of map.services) {
    const p = at.get(s.service);
    const failing = map.calls.some((c) => c.child === s.service && c.errors > 0);
    // A clock off by more than 10 ms is worth a mark on the map.
    const skewed = s.clock_offset_ns !== undefined && Math.abs(Number(s.clock_offset_ns)) >= 1e7;
    const clock = skewed ? `, clock ${fmtClock(s.clock_offset_ns)}` : "";
    out += `<g class="service${failing ? " failing" : ""}" tabindex="0" data-service="${esc(s.service)}"><title>${esc(s.service)}: ${s.span_count} spans, ${s.log_count} logs${clock} — open its traces</title>` +
      `<rect x="${p.x}" y="${p.y}" width="${MAP.boxW}" height="${MAP.boxH}" rx="5" style="stroke:${serviceColor(s.service)}"/>` +
      `<text x="${p.x + 10}" y="${p.y + 17}" class="name">${esc(s.service)}</text>` +
      `<text x="${p.x + 10}" y="${p.y + 32}" class="muted">${s.span_count} spans · ${s.log_count} logs</text>` +
      (skewed ? `<g class="clock-offset"><circle cx="${p.x + 6}" cy="${p.y - 9}" r="4.5"/><path d="M${p.x + 6},${p.y - 12} V${p.y - 9} H${p.x + 8.5}"/>` +
        `<text x="${p.x + 14}" y="${p.y - 5}">clock ${esc(fmtClock(s.clock_offset_ns))}</text></g>` : "") + `</g>`;
  }
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 60}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height + 60);
  svg.innerHTML = out;
}

function callDetails(c, range) {
  const traces = (q) => `#/traces?${new URLSearchParams(q)}`;
  const exemplars = c.exemplars.length
    ? `<table class="kv">${c.exemplars.map((e) => `<tr><td><a class="id exemplar" href="#/trace/${e.trace_id}">${e.trace_id}</a></td><td>${fmtDur(e.duration_ns)}</td><td>${e.error ? '<span class="errmark" title="error">!</span> failed' : ""}</td></tr>`).join("")}</table>`
    : `<div class="muted">none</div>`;
  return `<div><b>${esc(c.parent)} → ${esc(c.child)}</b></div>` +
    `<table class="kv"><tr><th>calls</th><td>${c.calls} (${fmtRate(c.rate_per_second)})</td></tr>` +
    `<tr><th>errors</th><td>${c.errors} (${fmtRatio(c.error_ratio)})</td></tr>` +
    `<tr><th>latency</th><td>p50 ${fmtDur(c.p50_ns)}, p99 ${fmtDur(c.p99_ns)}</td></tr></table>` +
    `<h4>traces behind it: failed first, then the slowest (each opens with its logs)</h4>${exemplars}` +
    `<h4>more</h4><div><a class="id" href="${traces({ service: c.child })}">traces of ${esc(c.child)}</a> · ` +
    `<a class="id" href="${traces({ service: c.child, status: "error" })}">failed traces of ${esc(c.child)}</a> · ` +
    `<a class="id" href="#/logs?${new URLSearchParams({ q: `service:${c.child} severity>=WARN`, range })}">warnings and errors of ${esc(c.child)}</a></div>`;
}

let mapState = null;
async function showMap() {
  const { params } = route();
  const range = String(Number(params.get("range")) || 3600);
  $("#map-range").value = range;
  // A call opened before leaving the map stays closed on return, unless the URL names it.
  $("#call-details").hidden = true;
  const end = nowNs(), start = end - BigInt(range) * 1000000000n;
  let map;
  try { map = await getJSON("/api/v1/service-map?" + new URLSearchParams({ start: start.toString(), end: end.toString() })); }
  catch (e) { $("#map-error").hidden = false; $("#map-error").textContent = "service map: " + e.message; return; }
  $("#map-error").hidden = true;
  $("#map-empty").hidden = map.calls.length > 0;
  mapState = { map, byKey: new Map(map.calls.map((c) => [callKey(c), c])), range };
  drawServiceMap(map);
  const body = $("#call-list tbody");
  body.innerHTML = "";
  for (const c of [...map.calls].sort((a, b) => b.calls - a.calls)) {
    const tr = document.createElement("tr");
    tr.className = "log";
    tr.tabIndex = 0;
    tr.dataset.call = callKey(c);
    tr.innerHTML = `<td>${esc(c.parent)}</td><td>${esc(c.child)}</td><td>${c.calls}</td><td>${fmtRate(c.rate_per_second)}</td>` +
      `<td class="${c.errors ? "sev-error" : ""}">${c.errors}</td><td>${fmtRatio(c.error_ratio)}</td><td>${fmtDur(c.p50_ns)}</td><td>${fmtDur(c.p99_ns)}</td>`;
    body.appendChild(tr);
  }
  const open = params.get("call");
  if (open && mapState.byKey.has(open)) openCall(open, document.querySelector(`#call-list tr[data-call="${CSS.escape(open)}"]`));
}

function openCall(key, opener) {
  const c = mapState && mapState.byKey.get(key);
  if (!c) return;
  openPanel($("#call-details"), callDetails(c, mapState.range), opener);
  replaceParam("call", key);
}

function onMapActivate(e) {
  const target = e.target.closest("[data-call], [data-service]");
  if (!target) return;
  if (target.dataset.call) openCall(target.dataset.call, target);
  else go("/traces", { service: target.dataset.service });
}

// ---------- layer peeling: facets and filter chips ----------
// Filters peeled off a facet live in the URL as repeated `f` parameters: `field:value` keeps
// only that value, `-field:value` excludes it. The query sent is the typed query AND them.
function quoteValue(v) { return '"' + String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"'; }
function filterQuery(f) {
  const exclude = f.startsWith("-"), body = exclude ? f.slice(1) : f, at = body.indexOf(":");
  return (exclude ? "-" : "") + body.slice(0, at) + ":" + quoteValue(body.slice(at + 1));
}
function fullQuery(q, filters) {
  const typed = q.trim();
  return [typed && (filters.length ? `(${typed})` : typed), ...filters.map(filterQuery)].filter(Boolean).join(" ");
}
// `params` (an object) as URL pairs, with the current view's filters kept.
function withFilters(params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== "" && v != null);
  for (const f of route().params.getAll("f")) pairs.push(["f", f]);
  return pairs;
}
function setFilters(filters) {
  const { parts, params } = route();
  params.delete("f");
  for (const f of filters) params.append("f", f);
  location.hash = "#/" + parts.join("/") + "?" + params.toString();
}
function drawChips(el, filters) {
  el.innerHTML = filters.map((f, i) => {
    const exclude = f.startsWith("-"), text = exclude ? f.slice(1) : f;
    return `<span class="chip${exclude ? " exclude" : ""}" title="${exclude ? "excluded" : "only"}: ${esc(text)}">${esc(text)}` +
      `<button type="button" data-remove="${i}" aria-label="Remove filter ${esc(f)}">×</button></span>`;
  }).join("");
  el.hidden = !filters.length;
}
function onChipClick(e) {
  const button = e.target.closest("[data-remove]");
  if (!button) return;
  const filters = route().params.getAll("f");
  filters.splice(Number(button.dataset.remove), 1);
  setFilters(filters);
}
// Click: keep only this value (peel a layer); Alt-click: exclude it.
function onFacetClick(e) {
  const value = e.target.closest(".facet-value");
  if (!value) return;
  const filter = (e.altKey ? "-" : "") + value.dataset.field + ":" + value.dataset.value;
  const filters = route().params.getAll("f").filter((f) => f !== filter);
  setFilters([...filters, filter]);
}
// Fields worth a facet: more than nothing, fewer than near-unique; the fixed ones first.
const MAX_FACETS = 12, MAX_FACET_DISTINCT = 100;
const facetGen = { logs: 0, spans: 0 };
async function drawFacets(el, signal, q, start, end) {
  const gen = ++facetGen[signal];
  try {
    const fields = await getJSON(`/api/v1/${signal}/fields?` + new URLSearchParams({ q, start, end }));
    const chosen = fields.fields.filter((f) => f.exact && f.distinct <= MAX_FACET_DISTINCT).slice(0, MAX_FACETS).map((f) => f.field);
    if (!chosen.length) { if (gen === facetGen[signal]) el.innerHTML = partialHtml(fields) + `<div class="muted">nothing matches</div>`; return; }
    const found = await getJSON(`/api/v1/${signal}/facets?` + new URLSearchParams({ q, start, end, fields: chosen.join(","), limit: "6" }));
    if (gen !== facetGen[signal]) return;
    el.innerHTML = partialHtml(fields, found) + found.facets.map((f) => `<div class="facet" data-field="${esc(f.field)}"><h4 title="${esc(f.field)}">${esc(f.field)} <span class="muted">${f.distinct}</span></h4>` +
      f.values.map((v) => `<button type="button" class="facet-value" data-field="${esc(f.field)}" data-value="${esc(v.value)}" title="${esc(f.field)}=${esc(v.value)}: ${v.count} of ${found.total}. Click: only this; Alt-click: exclude">` +
        `<span class="fill" style="width:${((v.count / Math.max(1, found.total)) * 100).toFixed(1)}%"></span><span class="v">${esc(v.value)}</span><span class="n">${v.count}</span></button>`).join("") +
      `</div>`).join("");
    el.dataset.total = String(found.total);
  } catch (e) {
    if (gen === facetGen[signal]) el.innerHTML = `<div class="muted">facets: ${esc(e.message)}</div>`;
  }
}

// The kinds of lines among the matching records (their bodies' templates), largest first. A
// pattern peels like a facet value (`pattern:"…"`); "new in the second half" keeps the patterns
// with no record before the middle of the range (the URL's `new_since`, nanoseconds).
const MAX_PATTERNS_SHOWN = 8;
let patternGen = 0;
async function drawPatterns(el, q, start, end, newSince) {
  const gen = ++patternGen;
  const middle = ((BigInt(start) + BigInt(end)) / 2n).toString();
  const params = { q, start, end, limit: String(MAX_PATTERNS_SHOWN), buckets: "20" };
  if (newSince) params.new_since = newSince;
  let found;
  try { found = await getJSON("/api/v1/logs/patterns?" + new URLSearchParams(params)); }
  catch (e) { if (gen === patternGen) el.innerHTML = `<div class="muted">patterns: ${esc(e.message)}</div>`; return; }
  if (gen !== patternGen) return;
  const toggle = newSince
    ? `<button type="button" class="small" data-new-since="" title="Show every pattern again (new since ${esc(fmtTime(newSince))})">new since ${esc(fmtTime(newSince).slice(11, 19))} ×</button>`
    : `<button type="button" class="small" data-new-since="${middle}" title="Only the patterns with no record before ${esc(fmtTime(middle))}">new in the second half</button>`;
  const estimate = found.estimated ? ` <span class="muted" title="counts estimated from ${found.sampled_records} of ${found.total} records">≈</span>` : "";
  const rows = found.patterns.map((p) => `<button type="button" class="facet-value${newSince ? " new" : ""}" data-field="pattern" data-value="${esc(p.pattern)}" ` +
    `title="${esc(p.pattern)}: ${p.count} of ${found.total}, ${esc(p.severities.join(", "))}; e.g. ${esc(p.sample?.body ?? "")}. Click: only these; Alt-click: exclude">` +
    `<span class="fill" style="width:${((p.count / Math.max(1, found.total)) * 100).toFixed(1)}%"></span><span class="v">${esc(p.pattern)}</span><span class="n">${p.count}</span></button>`).join("");
  el.innerHTML = partialHtml(found) + `<div class="facet" data-field="pattern"><h4><span>patterns${estimate}</span>${toggle}</h4>` +
    (rows || `<div class="muted">${newSince ? "nothing new" : "no bodies"}</div>`) + `</div>`;
  el.dataset.total = String(found.total);
}
function onPatternToggle(e) {
  const button = e.target.closest("[data-new-since]");
  if (!button) return;
  const { parts, params } = route();
  if (button.dataset.newSince) params.set("new_since", button.dataset.newSince); else params.delete("new_since");
  location.hash = "#/" + parts.join("/") + "?" + params.toString();
}

// What marks the records on screen: field values more common in them than in the rest of the
// time range. A value opens as a filter, like a facet's.
let logCompareQuery = null;
async function showLogComparison() {
  if (!logCompareQuery) return;
  const opener = $("#log-compare");
  let c;
  try { c = await getJSON("/api/v1/logs/compare?" + new URLSearchParams({ ...logCompareQuery, limit: "15", patterns: "true" })); }
  catch (e) { openPanel($("#log-compare-panel"), `<div class="error">${esc(e.message)}</div>`, opener); return; }
  const rows = c.findings.map((f) => `<tr><td>${esc(f.field)}</td><td><button type="button" class="facet-value" data-field="${esc(f.field)}" data-value="${esc(f.value)}" title="only ${esc(f.field)}=${esc(f.value)}"><span class="v">${esc(f.value)}</span></button></td>` +
    `<td>${fmtRatio(f.selection_share)}</td><td>${fmtRatio(f.baseline_share)}</td></tr>`).join("");
  const patternRows = (c.patterns || []).map((f) => `<tr><td>pattern</td><td><button type="button" class="facet-value" data-field="pattern" data-value="${esc(f.pattern)}" title="only the records of ${esc(f.pattern)}"><span class="v">${esc(f.pattern)}</span></button></td>` +
    `<td>${fmtRatio(f.selection_share)}</td><td>${fmtRatio(f.baseline_share)}</td></tr>`).join("");
  const all = rows + patternRows;
  openPanel($("#log-compare-panel"), partialHtml(c) + `<h4>What marks these ${c.selection_total} records against the other ${c.baseline_total}</h4>` +
    (all ? `<table class="kv compare"><tr><th>field</th><th>value</th><th>here</th><th>rest</th></tr>${all}</table>` : `<div class="muted">nothing stands out</div>`), opener);
}

// ---------- service health ----------
function sparkline(values, color) {
  const w = 120, h = 20, max = Math.max(...values.map((v) => v ?? 0), 1e-9);
  const pts = values.map((v, i) => `${((i / Math.max(1, values.length - 1)) * w).toFixed(1)},${(h - 1 - ((v ?? 0) / max) * (h - 2)).toFixed(1)}`).join(" ");
  return `<svg class="spark" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none"><polyline points="${pts}" stroke="${color}"></polyline></svg>`;
}
let healthState = null;
async function showHealth() {
  const { params } = route();
  const range = String(Number(params.get("range")) || 3600);
  $("#health-range").value = range;
  const end = nowNs() + 1000000000n, start = end - BigInt(range) * 1000000000n;
  let stats;
  try { stats = await getJSON("/api/v1/spans/stats?" + new URLSearchParams({ group_by: "service,name", series: "30", start: start.toString(), end: end.toString(), limit: "500" })); }
  catch (e) { $("#health-error").hidden = false; $("#health-error").textContent = "service health: " + e.message; return; }
  $("#health-error").hidden = true;
  showPartial($("#health-partial"), stats);
  healthState = { range };
  const body = $("#health-list tbody");
  body.innerHTML = "";
  // The worst first: failing operations, then the slowest.
  const groups = [...stats.groups].sort((a, b) => b.error_ratio - a.error_ratio || Number(b.p99_ns) - Number(a.p99_ns));
  for (const g of groups) {
    const [service, name] = g.key;
    const tr = document.createElement("tr");
    tr.className = "log";
    tr.tabIndex = 0;
    tr.dataset.service = service ?? "";
    tr.dataset.name = name ?? "";
    const slowest = g.exemplars[g.exemplars.length - 1];
    tr.innerHTML = `<td>${esc(service)}</td><td>${esc(name)}</td><td>${g.count}</td><td>${fmtRate(g.rate)}</td>` +
      `<td class="${g.errors ? "sev-error" : ""}">${g.errors}</td><td>${fmtRatio(g.error_ratio)}</td><td>${sparkline(g.series.map((p) => (p.count ? p.errors / p.count : 0)), "var(--error)")}</td>` +
      `<td>${fmtDur(g.p50_ns)}</td><td>${fmtDur(g.p99_ns)}</td><td>${sparkline(g.series.map((p) => (p.p99_ns ? Number(p.p99_ns) : null)), "var(--accent)")}</td>` +
      `<td>${slowest ? `<a class="id exemplar" href="#/trace/${slowest.trace_id}">${fmtDur(slowest.duration_ns)}</a>` : ""}</td>`;
    body.appendChild(tr);
  }
}
function onHealthActivate(e) {
  if (e.target.closest("a")) return;
  const row = e.target.closest("tr[data-service]");
  if (!row) return;
  go("/heatmap", { q: `service:${quoteValue(row.dataset.service)} name:${quoteValue(row.dataset.name)}`, range: healthState ? healthState.range : "3600" });
}

// ---------- latency heatmap ----------
// Heatmap rows are four of weft's latency buckets, which hold one duration each below 64 ns and
// cut each doubling into 64 above it: a row is a sixteenth of a doubling (LatencyHistogram::
// heatmap_row on the server). The start of row r is the start of bucket 4r.
function bucketStart(row) {
  const b = BigInt(Math.max(0, row) * 4);
  if (b < 64n) return b;
  return (64n + ((b - 64n) % 64n)) << ((b - 64n) / 64n);
}
let heatmapState = null;
async function showHeatmap() {
  const { params } = route();
  const q = params.get("q") || "", range = String(Number(params.get("range")) || 3600);
  $("#h-q").value = q;
  $("#heatmap-range").value = range;
  $("#selection").hidden = true;
  const end = nowNs() + 1000000000n, start = end - BigInt(range) * 1000000000n;
  let h;
  try { h = await getJSON("/api/v1/spans/heatmap?" + new URLSearchParams({ q, start: start.toString(), end: end.toString(), buckets: "60" })); }
  catch (e) { $("#heatmap-error").hidden = false; $("#heatmap-error").textContent = "heatmap: " + e.message; $("#heatmap").innerHTML = ""; return; }
  $("#heatmap-error").hidden = true;
  showPartial($("#heatmap-partial"), h);
  $("#heatmap-count").textContent = `${h.total} spans`;
  heatmapState = { h, q, range, start: BigInt(h.start_unix_nano), width: BigInt(h.bucket_ns) };
  drawHeatmap(h);
  const sel = params.get("sel");
  if (sel) { const [t0, t1, l0, l1] = sel.split(",").map(Number); if ([t0, t1, l0, l1].every(Number.isFinite)) selectCells(t0, t1, l0, l1); }
}
const HM = { left: 56, top: 4, bottom: 16 };
function drawHeatmap(h) {
  const svg = $("#heatmap");
  const width = svg.clientWidth || 900, height = svg.clientHeight || 280;
  const lows = h.latency_buckets.map((b) => b.bucket);
  const lo = lows.length ? Math.min(...lows) : 0, hi = lows.length ? Math.max(...lows) : 0;
  const rows = hi - lo + 1, cw = (width - HM.left) / h.buckets, rh = (height - HM.top - HM.bottom) / rows;
  const max = Math.max(1, ...h.cells.map((c) => c.count));
  heatmapState.layout = { lo, hi, rows, cw, rh, width, height };
  let out = "";
  for (const c of h.cells) {
    const x = HM.left + c.t * cw, y = HM.top + (hi - c.l) * rh, level = Math.log(1 + c.count) / Math.log(1 + max);
    out += `<rect class="cell" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, cw - 0.5).toFixed(1)}" height="${Math.max(1, rh - 0.5).toFixed(1)}" ` +
      `fill="var(--accent)" fill-opacity="${(0.12 + 0.88 * level).toFixed(3)}" data-t="${c.t}" data-l="${c.l}"${c.exemplar ? ` data-exemplar="${c.exemplar}"` : ""}>` +
      `<title>${c.count} spans, ${fmtDur(bucketStart(c.l))} to ${fmtDur(bucketStart(c.l + 1))}${c.exemplar ? "; click for the slowest trace" : ""}</title></rect>`;
  }
  // Duration labels on a few rows.
  const step = Math.max(1, Math.ceil(rows / 8));
  for (let l = lo; l <= hi; l += step) out += `<text x="2" y="${(HM.top + (hi - l + 1) * rh).toFixed(1)}">${fmtDur(bucketStart(l))}</text>`;
  out += `<text x="${HM.left}" y="${height - 3}">${fmtTime(h.start_unix_nano)}</text>`;
  out += `<rect id="heatmap-selection" x="0" y="0" width="0" height="0" visibility="hidden"></rect>`;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.innerHTML = out;
}
// The cell under a point of the SVG, clamped to the grid.
function heatmapCellAt(e) {
  const { layout: L, h } = heatmapState, r = $("#heatmap").getBoundingClientRect();
  const x = ((e.clientX - r.left) / r.width) * L.width, y = ((e.clientY - r.top) / r.height) * L.height;
  const t = Math.min(h.buckets - 1, Math.max(0, Math.floor((x - HM.left) / L.cw)));
  const l = Math.min(L.hi, Math.max(L.lo, L.hi - Math.floor((y - HM.top) / L.rh)));
  return { t, l };
}
function enableHeatmapSelection() {
  const svg = $("#heatmap");
  let from = null, moved = false;
  svg.addEventListener("pointerdown", (e) => {
    if (!heatmapState || !heatmapState.layout || !heatmapState.h.cells.length) return;
    from = heatmapCellAt(e); moved = false;
    svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener("pointermove", (e) => {
    if (!from) return;
    const to = heatmapCellAt(e);
    if (to.t !== from.t || to.l !== from.l) moved = true;
    drawSelection(from, to);
  });
  svg.addEventListener("pointerup", (e) => {
    if (!from) return;
    const to = heatmapCellAt(e), start = from;
    from = null;
    if (!moved) {
      // A click: the cell's slowest trace. (The pointer is captured, so the event's target is
      // the SVG; the cell is found by its place.)
      const cell = heatmapState.h.cells.find((c) => c.t === start.t && c.l === start.l);
      if (cell && cell.exemplar) go("/trace/" + cell.exemplar, {});
      return;
    }
    const [t0, t1] = [start.t, to.t].sort((a, b) => a - b), [l0, l1] = [start.l, to.l].sort((a, b) => a - b);
    replaceParam("sel", [t0, t1, l0, l1].join(","));
    selectCells(t0, t1, l0, l1);
  });
}
function drawSelection(a, b) {
  const L = heatmapState.layout, sel = $("#heatmap-selection");
  const [t0, t1] = [a.t, b.t].sort((x, y) => x - y), [l0, l1] = [a.l, b.l].sort((x, y) => x - y);
  sel.setAttribute("x", HM.left + t0 * L.cw);
  sel.setAttribute("width", (t1 - t0 + 1) * L.cw);
  sel.setAttribute("y", HM.top + (L.hi - l1) * L.rh);
  sel.setAttribute("height", (l1 - l0 + 1) * L.rh);
  sel.setAttribute("visibility", "visible");
}
// The spans of cells t0..t1 × l0..l1: their traces, and what sets them apart from the rest of
// those minutes.
async function selectCells(t0, t1, l0, l1) {
  const S = heatmapState;
  drawSelection({ t: t0, l: l0 }, { t: t1, l: l1 });
  const start = S.start + BigInt(t0) * S.width, end = S.start + BigInt(t1 + 1) * S.width;
  const band = `duration>=${bucketStart(l0)} duration<${bucketStart(l1 + 1)}`;
  const selection = S.q.trim() ? `(${S.q}) ${band}` : band;
  const baseline = S.q.trim() ? `(${S.q}) -(${band})` : "";
  $("#selection").hidden = false;
  $("#selection-title").textContent = `Spans from ${fmtDur(bucketStart(l0))} to ${fmtDur(bucketStart(l1 + 1))}, ${fmtTime(start)} to ${fmtTime(end)}`;
  const range = { start: start.toString(), end: end.toString() };
  const [traces, compare] = await Promise.all([
    getJSON("/api/v1/traces?" + new URLSearchParams({ q: selection, limit: "20", ...range })).catch((e) => ({ error: e.message })),
    getJSON("/api/v1/spans/compare?" + new URLSearchParams({ q: selection, ...(baseline ? { baseline } : {}), limit: "10", ...range })).catch((e) => ({ error: e.message })),
  ]);
  const tb = $("#selection-traces tbody");
  tb.innerHTML = traces.error ? `<tr><td colspan="4" class="error">${esc(traces.error)}</td></tr>` : traces.traces.map((t) =>
    `<tr><td>${fmtTime(t.start_time_unix_nano)}</td><td><a class="id" href="#/trace/${t.trace_id}">${esc(t.root_service)}: ${esc(t.root_name)}</a></td><td>${fmtDur(t.duration_ns)}</td><td>${t.error_count}</td></tr>`).join("");
  const cb = $("#selection-compare tbody");
  cb.innerHTML = compare.error ? `<tr><td colspan="4" class="error">${esc(compare.error)}</td></tr>` : compare.findings.map((f) =>
    `<tr><td>${esc(f.field)}</td><td><a class="id" href="#/traces?${new URLSearchParams({ q: `${f.field}:${quoteValue(f.value)}` })}">${esc(f.value)}</a></td>` +
    `<td>${fmtRatio(f.selection_share)}</td><td>${fmtRatio(f.baseline_share)}</td></tr>`).join("") || `<tr><td colspan="4" class="muted">nothing stands out</td></tr>`;
  document.body.dataset.selectionReady = `${t0},${t1},${l0},${l1}`;
}
// The heatmap's geometry, for the browser tests' drags.
window.__heatmapForTests = () => heatmapState;
window.__bucketStartForTests = (b) => bucketStart(b).toString();

// ---------- severity ----------
function selectorText(sel) { return ["service", "scope", "event"].filter((k) => sel[k]).map((k) => `${k}=${sel[k]}`).join(" ") || "(everything)"; }
function actionText(a) { return [a.min_severity && "drop below " + a.min_severity, a.set_severity && "set " + a.set_severity].filter(Boolean).join(", "); }

async function showSeverity() {
  const { params } = route();
  $("#r-service").value = params.get("service") || "";
  $("#r-event").value = params.get("event") || "";
  const rules = await getJSON("/api/v1/severity/rules");
  const body = $("#rule-list tbody");
  body.innerHTML = "";
  for (const r of rules.rules) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${esc(r.id)}</td><td>${esc(selectorText(r.selector))}</td><td>${esc(actionText(r.action))}</td>` +
      `<td>${Math.floor(r.time_left_seconds / 60)}m ${r.time_left_seconds % 60}s</td><td>${esc(r.created_by)}</td><td>${esc(r.reason)}</td>` +
      `<td>${r.dropped}</td><td><button class="small" type="button">Delete</button></td>`;
    tr.querySelector("button").addEventListener("click", async () => {
      const response = await authFetch("/api/v1/severity/rules/" + encodeURIComponent(r.id), { method: "DELETE" }, "admin");
      if (!response.ok) { showRuleError(await response.json().catch(() => ({}))); return; }
      showSeverity();
    });
    body.appendChild(tr);
  }
  const audit = await getJSON("/api/v1/severity/audit");
  const ab = $("#audit-list tbody");
  ab.innerHTML = "";
  for (const e of audit.entries.slice(0, 200)) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${fmtTime(e.at_unix_nano)}</td><td>${esc(e.action)}</td><td>${esc(e.by)}</td>` +
      `<td>${esc(e.rule.id)} ${esc(selectorText(e.rule.selector || {}))} ${esc(actionText(e.rule.action || {}))}</td><td>${esc(e.reason)}</td>`;
    ab.appendChild(tr);
  }
}

function showRuleError(body) {
  const err = $("#rule-error");
  err.hidden = false;
  err.textContent = "weft refused the change: " + (body.error || "unknown error");
}

$("#rule-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const selector = {};
  for (const k of ["service", "scope", "event"]) { const v = $("#r-" + k).value.trim(); if (v) selector[k] = v; }
  const action = {};
  if ($("#r-min").value) action.min_severity = $("#r-min").value;
  if ($("#r-set").value) action.set_severity = $("#r-set").value;
  const response = await authFetch("/api/v1/severity/rules", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ selector, action, ttl: $("#r-ttl").value, reason: $("#r-reason").value }),
  }, "admin");
  if (!response.ok) { showRuleError(await response.json().catch(() => ({}))); return; }
  $("#rule-error").hidden = true;
  showSeverity();
});

// ---------- wiring ----------
function render() {
  const { parts, params } = route();
  if (parts[0] === "trace" && parts[1]) { show("trace-view"); showTrace(parts[1], params); }
  else if (parts[0] === "traces") { show("traces-view"); searchTraces(); }
  else if (parts[0] === "events") { show("events-view"); showEvents(); }
  else if (parts[0] === "services") { show("services-view"); showServices(); }
  else if (parts[0] === "map") { show("map-view"); showMap(); }
  else if (parts[0] === "health") { show("health-view"); showHealth(); }
  else if (parts[0] === "heatmap") { show("heatmap-view"); showHeatmap(); }
  else if (parts[0] === "severity") { show("severity-view"); showSeverity(); }
  else { show("logs-view"); searchLogs(false); }
}

function submitLogSearch() {
  if ($("#range").value !== "custom") { go("/logs", withFilters({ q: $("#q").value, range: $("#range").value })); return; }
  const from = parseUtc($("#from").value), to = parseUtc($("#to").value);
  if (from == null || to == null || to <= from) {
    $("#query-error").hidden = false;
    $("#query-error").textContent = 'custom range: give "from" and "to" as YYYY-MM-DD HH:MM:SS (UTC), from before to';
    return;
  }
  go("/logs", withFilters({ q: $("#q").value, from: new Date(from).toISOString(), to: new Date(to).toISOString() }));
}
$("#log-form").addEventListener("submit", (e) => { e.preventDefault(); submitLogSearch(); });
$("#range").addEventListener("change", () => {
  if ($("#range").value !== "custom") { submitLogSearch(); return; }
  // Start the custom range from what is on screen, so it can be edited rather than typed.
  $("#custom-range").hidden = false;
  if (logRange) { $("#from").value = fmtUtc(Number(logRange.start / 1000000n)); $("#to").value = fmtUtc(Number(logRange.end / 1000000n)); }
  $("#from").focus();
});
$("#more").addEventListener("click", () => searchLogs(true));
window.addEventListener("scroll", loadMoreIfVisible, { passive: true });
enableHistogramZoom();
$("#waterfall").addEventListener("click", (e) => { if (e.target.tagName !== "A") openTraceRow(e.target.closest(".row")); });
$("#waterfall").addEventListener("keydown", (e) => { if (e.key === "Enter") openTraceRow(e.target.closest(".row")); });
for (const el of [$("#service-map"), $("#call-list")]) {
  el.addEventListener("click", onMapActivate);
  el.addEventListener("keydown", (e) => { if (e.key === "Enter") onMapActivate(e); });
}
$("#map-range").addEventListener("change", () => go("/map", { range: $("#map-range").value }));
for (const el of [$("#log-facets"), $("#log-patterns"), $("#span-facets"), $("#log-compare-panel")]) el.addEventListener("click", onFacetClick);
$("#log-patterns").addEventListener("click", onPatternToggle);
$("#log-compare").addEventListener("click", showLogComparison);
for (const el of [$("#log-chips"), $("#span-chips")]) el.addEventListener("click", onChipClick);
$("#health-range").addEventListener("change", () => go("/health", { range: $("#health-range").value }));
$("#health-list").addEventListener("click", onHealthActivate);
$("#health-list").addEventListener("keydown", (e) => { if (e.key === "Enter") onHealthActivate(e); });
$("#heatmap-form").addEventListener("submit", (e) => { e.preventDefault(); go("/heatmap", { q: $("#h-q").value, range: $("#heatmap-range").value }); });
$("#heatmap-range").addEventListener("change", () => go("/heatmap", { q: $("#h-q").value, range: $("#heatmap-range").value }));
enableHeatmapSelection();
$("#live").addEventListener("change", () => ($("#live").checked ? startTail() : stopTail()));
$("#trace-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const p = { service: $("#t-service").value, operation: $("#t-operation").value, min_duration: $("#t-min").value, q: $("#t-q").value };
  if ($("#t-errors").checked) p.status = "error";
  for (const k of Object.keys(p)) if (!p[k]) delete p[k];
  go("/traces", withFilters(p));
});
$("#theme").addEventListener("click", () => {
  document.documentElement.classList.toggle("dark");
  localStorage.setItem("weft-theme", document.documentElement.classList.contains("dark") ? "dark" : "light");
});
if (localStorage.getItem("weft-theme") === "dark" || (!localStorage.getItem("weft-theme") && matchMedia("(prefers-color-scheme: dark)").matches)) {
  document.documentElement.classList.add("dark");
}
document.addEventListener("keydown", (e) => {
  if (e.key === "/" && document.activeElement.tagName !== "INPUT") { e.preventDefault(); show("logs-view"); $("#q").focus(); }
  if (e.key === "Escape") closePanels();
});
window.addEventListener("hashchange", render);
render();
