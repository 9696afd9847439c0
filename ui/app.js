// weft's web UI: logs search, trace waterfall with logs in place, trace search.
// Plain JavaScript served by weft itself; all state lives in the URL hash so links can be shared.
"use strict";

const $ = (sel) => document.querySelector(sel);
const BANDS = ["unspecified", "trace", "debug", "info", "warn", "error", "fatal"];
const SERVICE_COLORS = ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626"];

function band(n) { return n >= 1 && n <= 24 ? BANDS[Math.floor((n - 1) / 4) + 1] : "unspecified"; }
function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
function nowNs() { return BigInt(Date.now()) * 1000000n; }
function fmtTime(ns) { const d = new Date(Number(BigInt(ns) / 1000000n)); return d.toISOString().replace("T", " ").replace("Z", ""); }
function fmtDur(ns) { const n = Number(ns); return n >= 1e9 ? (n / 1e9).toFixed(2) + " s" : n >= 1e6 ? (n / 1e6).toFixed(1) + " ms" : (n / 1e3).toFixed(0) + " µs"; }
function serviceColor(name) { let h = 0; for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0; return SERVICE_COLORS[h % SERVICE_COLORS.length]; }

function route() {
  const [path, query] = (location.hash.slice(1) || "/logs").split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}
function go(path, params) { const q = new URLSearchParams(params).toString(); location.hash = path + (q ? "?" + q : ""); }

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) { const e = new Error(body.error || response.statusText); e.body = body; throw e; }
  return body;
}

function show(view) {
  for (const id of ["logs-view", "trace-view", "traces-view", "events-view", "services-view", "severity-view"]) $("#" + id).hidden = id !== view;
  if (view !== "logs-view") stopTail();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", view.startsWith(a.dataset.view));
}

// ---------- logs ----------
let logCursor = null;

function highlighter(q) {
  const words = (q.match(/"[^"]+"|[^\s()]+/g) || [])
    .filter((w) => !w.includes(":") && !/^(AND|OR|NOT)$/.test(w) && !w.startsWith("-") && !/[<>=]/.test(w))
    .map((w) => w.replace(/"/g, "").replace(/\*/g, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .filter(Boolean);
  if (!words.length) return esc;
  const re = new RegExp("(" + words.join("|") + ")", "gi");
  return (text) => esc(text).replace(re, "<mark>$1</mark>");
}

function logRow(log, mark) {
  const tr = document.createElement("tr");
  tr.className = "log";
  const trace = log.trace_id ? ` <a class="id" href="#/trace/${log.trace_id}?log=${log.time_unix_nano}">trace</a>` : "";
  tr.innerHTML = `<td>${fmtTime(log.time_unix_nano)}</td><td>${esc(log.service)}</td>` +
    `<td class="sev sev-${band(log.severity_number)}">${esc(log.severity_text || band(log.severity_number))}</td>` +
    `<td>${esc(log.event)}</td><td class="body">${mark(typeof log.body === "string" ? log.body : JSON.stringify(log.body))}${trace}</td>`;
  tr.addEventListener("click", (e) => {
    if (e.target.tagName === "A") return;
    const d = $("#details");
    d.hidden = false;
    d.textContent = JSON.stringify(log, null, 2);
  });
  return tr;
}

function drawHistogram(h) {
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
      out += `<rect x="${i * w + 1}" y="${y}" width="${Math.max(1, w - 2)}" height="${bh}" fill="var(--${bandName === "unspecified" ? "muted" : bandName})"><title>${b.total} records</title></rect>`;
    }
  });
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.innerHTML = out;
}

async function searchLogs(more) {
  const { params } = route();
  const q = params.get("q") || "";
  const range = Number(params.get("range") || 3600);
  $("#q").value = q;
  $("#range").value = String(range);
  const start = (nowNs() - BigInt(range) * 1000000000n).toString();
  const url = new URLSearchParams({ q, start, limit: "100" });
  if (more && logCursor) url.set("cursor", logCursor);
  const err = $("#query-error");
  try {
    const [page, hist] = await Promise.all([
      getJSON("/api/v1/logs?" + url),
      more ? null : getJSON("/api/v1/logs/histogram?" + new URLSearchParams({ q, start, buckets: "60" })),
    ]);
    err.hidden = true;
    const body = $("#logs tbody");
    if (!more) { body.innerHTML = ""; $("#details").hidden = true; }
    const mark = highlighter(q);
    for (const log of page.logs) body.appendChild(logRow(log, mark));
    logCursor = page.next_cursor;
    $("#more").hidden = !logCursor;
    if (hist) drawHistogram(hist);
  } catch (e) {
    err.hidden = false;
    const pos = e.body && e.body.position;
    err.textContent = pos != null ? `${q}\n${" ".repeat(pos)}^ ${e.body.message}` : e.message;
  }
}

// ---------- one trace ----------
async function showTrace(id, params) {
  const summary = $("#trace-summary"), fall = $("#waterfall");
  fall.innerHTML = "";
  $("#span-details").hidden = true;
  let t;
  try { t = await getJSON("/api/v1/traces/" + encodeURIComponent(id)); }
  catch (e) { summary.textContent = e.message; return; }
  const s = t.summary;
  summary.innerHTML = `<b>${esc(s.root_service)}: ${esc(s.root_name)}</b> — ${fmtDur(s.duration_ns)}, ${s.span_count} spans, ` +
    `${s.error_count} errors, ${s.log_count} logs${s.incomplete ? " — <b>root span missing</b>" : ""} ` +
    `<a class="id" href="#/logs?q=${encodeURIComponent("trace_id:" + t.trace_id)}&range=604800">logs of this trace</a>`;
  const t0 = BigInt(s.start_time_unix_nano), total = Math.max(1, Number(s.duration_ns));
  const pct = (ns) => (Number(BigInt(ns) - t0) / total) * 100;
  const byId = new Map(t.spans.map((sp) => [sp.span_id, sp]));
  const children = new Map();
  const roots = [];
  for (const sp of t.spans) {
    if (sp.parent_span_id && byId.has(sp.parent_span_id)) {
      if (!children.has(sp.parent_span_id)) children.set(sp.parent_span_id, []);
      children.get(sp.parent_span_id).push(sp);
    } else roots.push(sp);
  }
  // The longest child chain: from each span, follow the child that ends last.
  const critical = new Set();
  let cur = roots.slice().sort((a, b) => Number(BigInt(b.end_time_unix_nano) - BigInt(a.end_time_unix_nano)))[0];
  while (cur) {
    critical.add(cur.span_id);
    const kids = children.get(cur.span_id) || [];
    cur = kids.slice().sort((a, b) => Number(BigInt(b.end_time_unix_nano) - BigInt(a.end_time_unix_nano)))[0];
  }
  const logsBySpan = new Map();
  for (const l of t.logs) {
    const k = byId.has(l.span_id) ? l.span_id : "";
    if (!logsBySpan.has(k)) logsBySpan.set(k, []);
    logsBySpan.get(k).push(l);
  }
  const highlightLog = params.get("log");
  const frag = document.createDocumentFragment();
  const addLogs = (list, depth) => {
    for (const l of list || []) {
      const row = document.createElement("div");
      row.className = "row logrow" + (highlightLog === l.time_unix_nano ? " highlight" : "");
      row.innerHTML = `<div class="label" style="padding-left:${depth * 12 + 14}px">` +
        `<span class="sev-${band(l.severity_number)}">${esc(l.severity_text)}</span> ${esc(l.event)} ${esc(typeof l.body === "string" ? l.body : JSON.stringify(l.body))}</div>` +
        `<div class="bar-area"><div class="logmark" style="left:${pct(l.time_unix_nano)}%;background:var(--${band(l.severity_number)})"></div></div>`;
      frag.appendChild(row);
    }
  };
  const addSpan = (sp, depth) => {
    const row = document.createElement("div");
    row.className = "row span";
    row.dataset.spanId = sp.span_id;
    const left = pct(sp.start_time_unix_nano), width = Math.max(0.2, (Number(sp.duration_ns) / total) * 100);
    const events = sp.events.map((e) => `<div class="logmark" title="${esc(e.name)}" style="left:${pct(e.time_unix_nano)}%;background:var(--fg)"></div>`).join("");
    row.innerHTML = `<div class="label" style="padding-left:${depth * 12}px;border-left:3px solid ${serviceColor(sp.service)}">` +
      `${esc(sp.service)} <b>${esc(sp.name)}</b> <span style="color:var(--muted)">${fmtDur(sp.duration_ns)}</span></div>` +
      `<div class="bar-area"><div class="bar${sp.status.code === "error" ? " error" : ""}${critical.has(sp.span_id) ? " critical" : ""}" ` +
      `style="left:${left}%;width:${width}%;background:${serviceColor(sp.service)}"></div>${events}</div>`;
    row.querySelector(".label").addEventListener("click", () => {
      const d = $("#span-details");
      d.hidden = false;
      const q = encodeURIComponent(`trace_id:${sp.trace_id} span_id:${sp.span_id}`);
      d.innerHTML = `<a class="id" href="#/logs?q=${q}&range=604800">logs of this span</a>\n` + esc(JSON.stringify(sp, null, 2));
    });
    frag.appendChild(row);
    addLogs(logsBySpan.get(sp.span_id), depth + 1);
    for (const c of (children.get(sp.span_id) || []).sort((a, b) => (BigInt(a.start_time_unix_nano) < BigInt(b.start_time_unix_nano) ? -1 : 1))) addSpan(c, depth + 1);
  };
  addLogs(logsBySpan.get(""), 0);
  for (const r of roots) addSpan(r, 0);
  fall.appendChild(frag);
  const hl = fall.querySelector(".highlight");
  if (hl) hl.scrollIntoView({ block: "center" });
}

// ---------- trace search ----------
async function searchTraces() {
  const { params } = route();
  const q = new URLSearchParams({ limit: "50", start: (nowNs() - 86400n * 1000000000n).toString() });
  for (const k of ["service", "operation", "min_duration", "status"]) if (params.get(k)) q.set(k, params.get(k));
  $("#t-service").value = params.get("service") || "";
  $("#t-operation").value = params.get("operation") || "";
  $("#t-min").value = params.get("min_duration") || "";
  $("#t-errors").checked = params.get("status") === "error";
  const body = $("#trace-list tbody");
  body.innerHTML = "";
  try {
    const r = await getJSON("/api/v1/traces?" + q);
    $("#trace-error").hidden = true;
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
let tail = null;

function stopTail() {
  if (tail) { tail.close(); tail = null; }
  $("#live").checked = false;
  $("#tail-status").hidden = true;
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
  tail = new EventSource("/api/v1/logs/tail?" + new URLSearchParams({ q }));
  tail.addEventListener("ready", () => { status.textContent = "Live: waiting for new records"; });
  tail.addEventListener("log", (e) => {
    const row = logRow(JSON.parse(e.data), mark);
    row.classList.add("fresh");
    $("#logs tbody").prepend(row);
    count += 1;
    status.textContent = `Live: ${count} new` + (missed ? `, ${missed} missed (too fast to show all)` : "");
  });
  tail.addEventListener("missed", (e) => { missed += JSON.parse(e.data).missed; });
  tail.onerror = () => { status.textContent = "Live: connection lost, retrying…"; };
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
      `<td><button class="small" type="button">Set level…</button></td>`;
    tr.querySelector("button").addEventListener("click", () => go("/severity", { service: s.service }));
    body.appendChild(tr);
  }
}

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
      const response = await fetch("/api/v1/severity/rules/" + encodeURIComponent(r.id), { method: "DELETE" });
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
  const response = await fetch("/api/v1/severity/rules", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ selector, action, ttl: $("#r-ttl").value, reason: $("#r-reason").value }),
  });
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
  else if (parts[0] === "severity") { show("severity-view"); showSeverity(); }
  else { show("logs-view"); searchLogs(false); }
}

$("#log-form").addEventListener("submit", (e) => { e.preventDefault(); go("/logs", { q: $("#q").value, range: $("#range").value }); });
$("#range").addEventListener("change", () => go("/logs", { q: $("#q").value, range: $("#range").value }));
$("#more").addEventListener("click", () => searchLogs(true));
$("#live").addEventListener("change", () => ($("#live").checked ? startTail() : stopTail()));
$("#trace-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const p = { service: $("#t-service").value, operation: $("#t-operation").value, min_duration: $("#t-min").value };
  if ($("#t-errors").checked) p.status = "error";
  for (const k of Object.keys(p)) if (!p[k]) delete p[k];
  go("/traces", p);
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
  if (e.key === "Escape") { $("#details").hidden = true; $("#span-details").hidden = true; }
});
window.addEventListener("hashchange", render);
render();
