// The Jaeger UI in front of weft, in headless Chromium: a built Jaeger UI (its `build/`
// directory) is served as Jaeger's own query service serves it, with `/api/` going to a weft
// fed the browser tests' multi-service data set. The search page, a trace, trace search and the
// System Architecture page are opened as a user would; every `/api/` request the UI makes is
// listed with weft's status. Not part of `./scripts/test`: the Jaeger UI is built from its
// repository (see README.md here), which CI cannot reach.
//
//   node tests/jaeger-ui/check.mjs /path/to/jaeger-ui/packages/jaeger-ui/build
import http from "node:http";
import { readFileSync, existsSync, statSync } from "node:fs";
import { join, extname } from "node:path";
import assert from "node:assert/strict";
import { startWeft, sendOtlp, checkoutDataset, launchBrowser, newPage, screenshot, eventually } from "../browser/weft.mjs";

const buildDir = process.argv[2];
if (!buildDir || !existsSync(join(buildDir, "index.html"))) {
  console.error("usage: node tests/jaeger-ui/check.mjs <jaeger-ui build directory (holds index.html)>");
  process.exit(2);
}
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2", ".json": "application/json" };

/** Jaeger's query service, minus the storage: static files with the SPA fallback, /api/ to weft. */
function serveJaegerUi(weftUrl) {
  const target = new URL(weftUrl);
  const server = http.createServer((req, res) => {
    if (req.url.startsWith("/api/")) {
      const upstream = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      });
      upstream.on("error", (e) => { res.writeHead(502); res.end(String(e)); });
      req.pipe(upstream);
      return;
    }
    let file = join(buildDir, decodeURIComponent(new URL(req.url, "http://x").pathname));
    if (!existsSync(file) || statSync(file).isDirectory()) file = join(buildDir, "index.html");
    res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

const weft = await startWeft();
const browser = await launchBrowser();
const { server, url } = await serveJaegerUi(weft.url);
const requests = new Map();
let page;
try {
  const data = checkoutDataset(12);
  await sendOtlp(weft, data.spans, data.logs);
  await eventually("the data set to be searchable", async () => {
    const r = await (await fetch(weft.url + "/api/v1/traces?limit=100")).json();
    const deps = await (await fetch(weft.url + "/api/dependencies")).json();
    return r.traces.length === data.traces.length && deps.data.length === 3;
  });
  const opened = await newPage(browser, { width: 1400, height: 900 });
  page = opened.page;
  const errors = opened.errors;
  page.on("response", (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith("/api/")) requests.set(`${r.request().method()} ${u.pathname}`, { status: r.status(), query: u.search });
  });

  // Search page: the services load, and a search by service lists its traces.
  await page.goto(url + "/search");
  await page.getByText("Find Traces", { exact: false }).first().waitFor();
  await eventually("GET /api/v3/services", async () => requests.has("GET /api/v3/services"));
  const body = () => page.locator("body").textContent();
  assert.doesNotMatch(await body(), /Error loading services/);
  const end = Date.now() * 1000, start = end - 3600 * 1e6;
  await page.goto(`${url}/search?service=payments&operation=charge&start=${start}&end=${end}&limit=20&lookback=1h&tags=${encodeURIComponent('{"error":"true"}')}`);
  const declined = data.traces.filter((t) => t.declined);
  // Each listed trace links to /trace/<id>: exactly the declined ones.
  const listed = () => page.locator('table a[href^="/trace/"]').evaluateAll((as) => [...new Set(as.map((a) => a.getAttribute("href").split("/trace/")[1].split(/[?#]/)[0]))]);
  await eventually("the declined traces listed", async () => (await listed()).length === declined.length);
  assert.deepEqual((await listed()).sort(), declined.map((t) => t.traceId).sort());
  assert.match(await body(), new RegExp(`${declined.length} traces`));
  assert.doesNotMatch(await body(), /error loading traces/i);
  await screenshot(page, "jaeger-ui-search");
  // A duration as typed into the form, every operation of the service.
  await page.goto(`${url}/search?service=frontend&start=${start}&end=${end}&limit=20&lookback=1h&minDuration=100ms`);
  await eventually("every request listed", async () => (await listed()).length === data.traces.length);
  await page.goto(`${url}/search?service=frontend&start=${start}&end=${end}&limit=20&lookback=1h&minDuration=1s`);
  await eventually("the empty answer", async () => /No trace results/i.test(await body()));

  // One trace: its spans and, among a span's logs, weft's log record.
  const id = declined[0].traceId;
  await page.goto(`${url}/trace/${id}`);
  await eventually("the trace's spans", async () => (await body()).includes("charge") && (await body()).includes("POST /order"));
  await screenshot(page, "jaeger-ui-trace");

  // System Architecture: the dependency graph of the four services.
  await page.goto(`${url}/dependencies`);
  await eventually("GET /api/dependencies", async () => requests.get("GET /api/dependencies")?.status === 200);
  // Laid out (in a worker) as nodes labelled by service, edges labelled by call count.
  const labels = () => page.locator(".DAG--nodeLabel").evaluateAll((ls) => ls.filter((l) => l.getBoundingClientRect().width > 0).map((l) => l.textContent).sort());
  await eventually("the services in the graph", async () => (await labels()).length === 4);
  assert.deepEqual(await labels(), ["checkout", "frontend", "inventory", "payments"]);
  await screenshot(page, "jaeger-ui-dependencies");

  const failed = [...requests].filter(([, r]) => r.status >= 400);
  for (const [what, r] of [...requests].sort()) console.log(`${r.status} ${what}${r.query ? " " + decodeURIComponent(r.query).slice(0, 160) : ""}`);
  assert.deepEqual(failed, [], "every /api/ request the UI made was answered");
  const pageErrors = errors.filter((e) => !/favicon|analytics/i.test(e));
  if (pageErrors.length) console.log("page errors:", pageErrors);
  console.log("jaeger ui check: ok");
} catch (e) {
  if (page) await screenshot(page, "jaeger-ui-failure");
  for (const [what, r] of [...requests].sort()) console.log(`${r.status} ${what}${r.query ? " " + decodeURIComponent(r.query).slice(0, 200) : ""}`);
  throw e;
} finally {
  server.close();
  await browser.close();
  await weft.stop();
}
