// Helpers for the browser tests: start a real weft on free ports with a temporary data dir,
// send it OTLP/HTTP (JSON encoding), build the data sets, and launch Debian's Chromium.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, "../..");
export const SCREENSHOTS = process.env.WEFT_SCREENSHOTS || join(REPO, "target/browser-screenshots");
const DEADLINE_MS = 20_000;

/** Polls `probe` until it returns a truthy value or the deadline passes. */
export async function eventually(what, probe, deadlineMs = DEADLINE_MS) {
  const until = Date.now() + deadlineMs;
  let last;
  while (Date.now() < until) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/**
 * A weft server process: `weft serve` on port 0, killed and its data dir removed by `stop`.
 * `env` adds configuration variables (tokens, say); `token` is sent with every export.
 */
export async function startWeft({ env = {}, token = null } = {}) {
  const bin = process.env.WEFT_BIN || join(REPO, "target/debug/weft");
  const dataDir = mkdtempSync(join(tmpdir(), "weft-browser-"));
  const child = spawn(bin, ["serve", "--data-dir", dataDir, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "inherit"],
    // weft refuses WEFT_* variables it does not know, such as this harness's own WEFT_BIN.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("WEFT_"))), WEFT_LOG_LEVEL: "warn", ...env },
  });
  let out = "";
  child.stdout.on("data", (chunk) => (out += chunk));
  const exited = new Promise((r) => child.on("exit", r));
  const http = await eventually("weft to print its listening addresses", async () => {
    if (child.exitCode !== null) return { exited: child.exitCode };
    return /weft listening grpc=\S+ http=(\S+)/.exec(out)?.[1];
  });
  if (http.exited !== undefined) throw new Error(`weft exited with status ${http.exited} before listening`);
  return {
    url: `http://${http}`,
    token,
    async stop() {
      child.kill("SIGTERM");
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function post(weft, path, body) {
  const response = await fetch(weft.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(weft.token ? { authorization: "Bearer " + weft.token } : {}) },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${text}`);
  const answer = text ? JSON.parse(text) : {};
  if (answer.partialSuccess && (answer.partialSuccess.rejectedLogRecords || answer.partialSuccess.rejectedSpans)) {
    throw new Error(`${path}: partial success ${text}`);
  }
  return answer;
}

const str = (v) => ({ stringValue: String(v) });
const attrs = (o) => Object.entries(o).map(([key, v]) => ({ key, value: typeof v === "number" ? { intValue: String(v) } : str(v) }));
const hex = (n, bytes) => n.toString(16).padStart(bytes * 2, "0");

/** OTLP/HTTP JSON export of spans and logs, grouped per service as an SDK would send them. */
export async function sendOtlp(weft, spans, logs) {
  // One resource per service and host: an item's `resource` adds to (or replaces) the host.
  const byService = (items) => {
    const m = new Map();
    for (const it of items) {
      const key = JSON.stringify([it.service, it.resource || {}]);
      m.set(key, [...(m.get(key) || []), it]);
    }
    return [...m].map(([key, list]) => [JSON.parse(key), list]);
  };
  const resourceOf = ([service, extra]) => ({ attributes: attrs({ "service.name": service, "host.name": "web-1", ...extra }) });
  if (spans.length) {
    await post(weft, "/v1/traces", {
      resourceSpans: byService(spans).map(([origin, list]) => ({
        resource: resourceOf(origin),
        scopeSpans: [{
          scope: { name: `${origin[0]}.http` },
          spans: list.map((s) => ({
            traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId || "",
            name: s.name, kind: s.kind || 2,
            startTimeUnixNano: String(s.start), endTimeUnixNano: String(s.end),
            attributes: attrs(s.attributes || {}),
            events: (s.events || []).map((e) => ({ name: e.name, timeUnixNano: String(e.time) })),
            status: s.error ? { code: 2, message: "failed" } : { code: 1 },
          })),
        }],
      })),
    });
  }
  if (logs.length) {
    await post(weft, "/v1/logs", {
      resourceLogs: byService(logs).map(([origin, list]) => ({
        resource: resourceOf(origin),
        scopeLogs: [{
          scope: { name: `${origin[0]}.app` },
          logRecords: list.map((l) => ({
            timeUnixNano: String(l.time), severityNumber: l.severity, severityText: l.severityText,
            body: str(l.body), eventName: l.event || "",
            attributes: attrs(l.attributes || {}),
            traceId: l.traceId || "", spanId: l.spanId || "",
          })),
        }],
      })),
    });
  }
}

const SEVERITY = { DEBUG: 5, INFO: 9, WARN: 13, ERROR: 17 };
const log = (service, time, sev, event, body, traceId, spanId, attributes) =>
  ({ service, time, severity: SEVERITY[sev], severityText: sev, event, body, traceId, spanId, attributes });

/**
 * The multi-service data set: checkout requests through frontend → checkout → payments and
 * inventory, every third one declined, each span with its logs; plus logs outside any trace.
 * Times are within the last minute so the UI's default range ("last hour") shows them.
 */
export function checkoutDataset(requests = 12) {
  const ms = 1_000_000n;
  const base = BigInt(Date.now()) * ms - 60_000n * ms;
  const spans = [], logs = [], traces = [];
  for (let i = 0; i < requests; i++) {
    const traceId = hex(0xabc000 + i, 16);
    const t0 = base + BigInt(i) * 2_000n * ms;
    const declined = i % 3 === 0;
    const id = (n) => hex((i + 1) * 16 + n, 8);
    const [front, check, pay, inv] = [id(1), id(2), id(3), id(4)];
    spans.push(
      { service: "frontend", traceId, spanId: front, name: "GET /checkout", start: t0, end: t0 + 120n * ms, attributes: { "http.method": "GET", "http.route": "/checkout", "user.id": `u${i}` } },
      { service: "checkout", traceId, spanId: check, parentSpanId: front, name: "POST /order", start: t0 + 5n * ms, end: t0 + 100n * ms, attributes: { "order.id": `o-${i}` } },
      { service: "payments", traceId, spanId: pay, parentSpanId: check, name: "charge", start: t0 + 10n * ms, end: t0 + 90n * ms, error: declined, events: [{ name: "card.sent", time: t0 + 20n * ms }] },
      { service: "inventory", traceId, spanId: inv, parentSpanId: check, name: "reserve", start: t0 + 12n * ms, end: t0 + 30n * ms, attributes: { "db.system": "postgresql" } },
    );
    logs.push(
      log("frontend", t0 + 1n * ms, "INFO", "RequestReceived", `request ${i} received for checkout`, traceId, front),
      log("checkout", t0 + 6n * ms, "DEBUG", "CartLoaded", `cart loaded with ${(i % 4) + 1} items`, traceId, check),
      log("inventory", t0 + 20n * ms, "INFO", "StockChecked", `stock checked for order o-${i}`, traceId, inv),
      declined
        ? log("payments", t0 + 80n * ms, "ERROR", "PaymentDeclined", `card declined for order o-${i}`, traceId, pay, { "order.id": `o-${i}` })
        : log("payments", t0 + 80n * ms, "INFO", "PaymentAuthorized", `payment authorized for order o-${i}`, traceId, pay),
      log("frontend", t0 + 119n * ms, "INFO", "", `request ${i} done`, traceId, ""),
    );
    traces.push({ traceId, declined, spans: { front, check, pay, inv }, order: `o-${i}` });
  }
  for (let n = 0; n < 5; n++) logs.push(log("checkout", base + BigInt(n) * 1_000n * ms, "INFO", "Heartbeat", `heartbeat ${n}`));
  return { spans, logs, traces };
}

/**
 * A fleet with one cause to find: service "cart" on twenty hosts, each span its own trace; host
 * h7 is slow (900 ms and more, the rest 5-34 ms), and the hosts on kernel 6.8 (h15-h19) fail
 * every third request and log an ERROR for every other one. Times are in the last minutes.
 */
export function fleetDataset(hosts = 20, perHost = 30) {
  const ms = 1_000_000n;
  const base = BigInt(Date.now()) * ms - 5n * 60_000n * ms;
  const spans = [], logs = [], slowTraces = [];
  for (let h = 0; h < hosts; h++) {
    const resource = { "host.name": `h${h}`, "host.kernel": h >= 15 ? "6.8" : "6.1" };
    for (let i = 0; i < perHost; i++) {
      const n = h * perHost + i, traceId = hex(0xf1ee7000000 + n, 16), spanId = hex(0x5000 + n, 8);
      const start = base + BigInt(n) * 200n * ms, dur = BigInt(h === 7 ? 900 + i : 5 + i);
      spans.push({ service: "cart", resource, traceId, spanId, name: i % 2 ? "POST /pay" : "GET /cart", start, end: start + dur * ms,
        error: h >= 15 && i % 3 === 0, attributes: { "http.route": i % 2 ? "/pay" : "/cart" } });
      const failing = h >= 15 && i % 2 === 0;
      logs.push({ ...log("cart", start + ms, failing ? "ERROR" : "INFO", failing ? "CartFailed" : "CartServed", failing ? `cart ${n} failed` : `cart ${n} served`, traceId, spanId), resource });
      if (h === 7) slowTraces.push(traceId);
    }
  }
  return { spans, logs, slowTraces };
}

/** One big trace: `spanCount` spans in a tree of depth ≤ 6 across 8 services, `logCount` logs on them. */
export function bigTrace(spanCount, logCount) {
  const ms = 1_000_000n;
  const traceId = hex(0xb16b16, 16);
  const t0 = BigInt(Date.now()) * ms - 30_000n * ms;
  const spans = [];
  for (let i = 0; i < spanCount; i++) {
    const depth = i === 0 ? 0 : 1 + (i % 5);
    const parent = i === 0 ? "" : spans[Math.max(0, i - 1 - (i % 7))].spanId;
    const start = t0 + BigInt(i) * 2n * ms;
    spans.push({
      service: `svc-${i % 8}`, traceId, spanId: hex(0x100000 + i, 8), parentSpanId: parent,
      name: `op-${i % 40}`, start, end: start + BigInt(5 + (depth * 3)) * ms + (i === 0 ? BigInt(spanCount) * 3n * ms : 0n),
      error: i % 97 === 0 && i > 0,
    });
  }
  const logs = [];
  for (let j = 0; j < logCount; j++) {
    const s = spans[j % spanCount];
    logs.push(log(s.service, s.start + BigInt(j % 5) * ms, j % 50 === 0 ? "WARN" : "INFO", `Step${j % 30}`, `step ${j} in ${s.name}`, traceId, s.spanId));
  }
  return { traceId, spans, logs };
}

/** Debian's Chromium, headless, with its background networking off (this network is closed). */
export async function launchBrowser() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** A page that records console errors and uncaught exceptions, for the no-console-errors check. */
export async function newPage(browser, viewport = { width: 1280, height: 800 }) {
  const page = await browser.newPage({ viewport });
  const errors = [];
  page.on("console", (msg) => { if (msg.type() === "error") errors.push(msg.text()); });
  page.on("pageerror", (e) => errors.push(e.message));
  return { page, errors };
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}
