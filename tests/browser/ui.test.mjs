// weft's web UI driven in headless Chromium: one weft, fed a multi-service data set over
// OTLP/HTTP, and a fresh page per test. Every test saves a screenshot and fails on any console
// error or uncaught exception in the page.
import { test, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startWeft, sendOtlp, checkoutDataset, bigTrace, launchBrowser, newPage, screenshot, eventually, SCREENSHOTS } from "./weft.mjs";

let weft, browser, data, page, errors, expectedErrors;

async function api(path) {
  const response = await fetch(weft.url + path);
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return response.json();
}

before(async () => {
  weft = await startWeft();
  browser = await launchBrowser();
  data = checkoutDataset(12);
  await sendOtlp(weft, data.spans, data.logs);
  // Searchable within a second or so; wait for the last record of each kind.
  await eventually("the data set to be searchable", async () => {
    const logs = await api("/api/v1/logs?q=" + encodeURIComponent("heartbeat OR done OR declined OR authorized OR loaded OR checked OR received") + "&limit=500");
    const traces = await api("/api/v1/traces?limit=100");
    return logs.logs.length === data.logs.length && traces.traces.length === data.traces.length;
  });
});

after(async () => {
  await browser?.close();
  await weft?.stop();
});

beforeEach(async () => {
  ({ page, errors } = await newPage(browser));
  expectedErrors = [];
});

// A 4xx the test provokes on purpose is logged by Chromium as "Failed to load resource"; the
// test names it up front and everything else still fails the test.
const expectResponseError = (status) => expectedErrors.push(`Failed to load resource: the server responded with a status of ${status}`);

afterEach(async (t) => {
  await screenshot(page, t.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase());
  await page.close();
  assert.deepEqual(errors.filter((e) => !expectedErrors.some((x) => e.startsWith(x))), [], "console errors in the page");
});

const rows = () => page.locator("#logs tbody tr");
const waitForRows = (n) => page.waitForFunction((n) => document.querySelectorAll("#logs tbody tr").length === n, n);
const waitForTrace = (id) => page.waitForFunction((id) => document.body.dataset.renderedTrace === id, id);

test("search logs, read a record, open its trace with the logs under their spans", async () => {
  await page.goto(weft.url + "/");
  await page.keyboard.press("/");
  assert.equal(await page.evaluate(() => document.activeElement.id), "q", "`/` focuses the query box");
  await page.keyboard.type('"card declined"');
  await page.keyboard.press("Enter");
  const declined = data.traces.filter((t) => t.declined);
  await waitForRows(declined.length);
  assert.match(page.url(), /#\/logs\?q=%22card\+declined%22/, "the query is in the URL");
  assert.equal(await page.locator("#logs tbody mark").first().textContent(), "card declined");
  assert.equal(await page.locator("#result-count").textContent(), `${declined.length} matching records`);
  assert.ok((await page.locator("#histogram rect.bucket").count()) > 0, "histogram drawn");
  // Newest first: the last declined request is on top.
  const newest = declined[declined.length - 1];
  assert.match(await rows().first().textContent(), new RegExp(`card declined for order ${newest.order}`));

  // Details: attributes, resource and scope; Esc closes them and gives focus back to the row.
  await rows().first().locator("td").first().click();
  const details = page.locator("#details");
  await details.waitFor({ state: "visible" });
  for (const text of ["order.id", newest.order, "host.name", "payments.app", newest.traceId]) {
    assert.ok((await details.textContent()).includes(text), `details show ${text}`);
  }
  await screenshot(page, "logs-view");
  await page.keyboard.press("Escape");
  await details.waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.className), "log", "focus back on the row");

  // The trace link opens the waterfall with that log highlighted and in view.
  await rows().first().locator("a", { hasText: "trace" }).click();
  await waitForTrace(newest.traceId);
  assert.equal(await page.locator("#waterfall .row.span").count(), 4);
  const highlighted = page.locator("#waterfall .row.highlight");
  assert.equal(await highlighted.count(), 1);
  assert.match(await highlighted.textContent(), new RegExp(`card declined for order ${newest.order}`));
  assert.ok(await highlighted.isVisible());
  const box = await highlighted.boundingBox();
  assert.ok(box.y >= 0 && box.y + box.height <= 800, `highlighted log inside the viewport (y=${box.y})`);
  await screenshot(page, "trace-with-logs");

  // Every log row sits under the span it was written in: the nearest span row above it.
  const placement = await page.evaluate(() => [...document.querySelectorAll("#waterfall .row.logrow")].map((row) => {
    let prev = row.previousElementSibling;
    while (prev && !prev.classList.contains("span")) prev = prev.previousElementSibling;
    return { text: row.textContent, under: prev ? prev.dataset.span : null };
  }));
  const expectUnder = [
    ["received for checkout", newest.spans.front],
    ["cart loaded", newest.spans.check],
    ["stock checked", newest.spans.inv],
    ["card declined", newest.spans.pay],
    ["done", null], // no span ID: shown at the root, above the first span
  ];
  assert.equal(placement.length, expectUnder.length);
  for (const [text, span] of expectUnder) {
    const row = placement.find((p) => p.text.includes(text));
    assert.ok(row, `log "${text}" shown`);
    assert.equal(row.under, span, `log "${text}" under span ${span}`);
  }
  // The failed span is marked, and the longest child chain (frontend → checkout → payments) outlined.
  assert.equal(await page.locator(`#waterfall .row.span.failed[data-span="${newest.spans.pay}"]`).count(), 1);
  const critical = await page.evaluate(() => [...document.querySelectorAll("#waterfall .row.span")].filter((r) => r.querySelector(".bar.critical")).map((r) => r.dataset.span));
  assert.deepEqual(critical, [newest.spans.front, newest.spans.check, newest.spans.pay]);
});

test("a span's details show its attributes and logs, and its logs link back to the logs view", async () => {
  const t = data.traces[1];
  await page.goto(`${weft.url}/#/trace/${t.traceId}`);
  await waitForTrace(t.traceId);
  await page.locator(`#waterfall .row.span[data-span="${t.spans.check}"] .label`).click();
  const panel = page.locator("#span-details");
  await panel.waitFor({ state: "visible" });
  const text = await panel.textContent();
  for (const expected of ["checkout: POST /order", "order.id", t.order, "cart loaded with", "logs of this span (1)"]) {
    assert.ok(text.includes(expected), `span details show ${expected}`);
  }
  await screenshot(page, "span-details");
  // The open span is in the URL: the same link opens it again.
  assert.match(page.url(), new RegExp(`span=${t.spans.check}`));
  const link = page.url();
  await page.goto(weft.url + "/#/logs");
  await page.goto(link);
  await panel.waitFor({ state: "visible" });
  assert.ok((await panel.textContent()).includes("checkout: POST /order"), "span reopened from the link");
  await panel.locator("a.span-logs").click();
  await waitForRows(1);
  assert.match(await rows().first().textContent(), /cart loaded with/);
  assert.equal(await page.inputValue("#q"), `trace_id:${t.traceId} span_id:${t.spans.check}`);

  // Keyboard: Tab reaches the waterfall rows and Enter opens a span.
  await page.goto(`${weft.url}/#/trace/${t.traceId}`);
  await waitForTrace(t.traceId);
  await page.locator(`#waterfall .row.span[data-span="${t.spans.pay}"]`).focus();
  await page.keyboard.press("Enter");
  await panel.waitFor({ state: "visible" });
  assert.ok((await panel.textContent()).includes("payments: charge"));
  assert.ok((await panel.textContent()).includes("card.sent"), "span events listed");
});

test("trace search by service, errors and duration opens the waterfall", async () => {
  await page.goto(weft.url + "/#/traces");
  await page.fill("#t-service", "payments");
  await page.check("#t-errors");
  await page.fill("#t-min", "100ms");
  await page.click("#trace-form button[type=submit]");
  const declined = data.traces.filter((t) => t.declined);
  await page.waitForFunction((n) => document.querySelectorAll("#trace-list tbody tr").length === n, declined.length);
  const listed = await page.locator("#trace-list tbody a").evaluateAll((as) => as.map((a) => a.getAttribute("href")));
  assert.deepEqual(listed.map((h) => h.replace("#/trace/", "")).sort(), declined.map((t) => t.traceId).sort());
  assert.match(page.url(), /service=payments/);
  assert.match(page.url(), /status=error/);
  await page.locator("#trace-list tbody a").first().click();
  await page.waitForFunction(() => document.body.dataset.renderedTrace);
  assert.equal(await page.locator("#waterfall .row.span").count(), 4);
  assert.match(await page.locator("#trace-summary").textContent(), /frontend: GET \/checkout/);
});

test("service map: services in call order, calls with their numbers; a call opens the traces behind it, a service its trace search", async () => {
  // Runs before the tests that add traces of their own: the calls are the data set's.
  const n = data.traces.length, declined = data.traces.filter((t) => t.declined);
  await page.goto(weft.url + "/#/map");
  await page.waitForFunction(() => document.querySelectorAll("#call-list tbody tr").length === 3);
  const cells = (key) => page.locator(`#call-list tr[data-call="${key}"] td`).allTextContents();
  const payments = await cells("checkout>payments");
  assert.deepEqual(payments.slice(0, 3), ["checkout", "payments", String(n)]);
  assert.equal(payments[4], String(declined.length));
  assert.equal(payments[5], `${((declined.length / n) * 100).toFixed(1)} %`);
  assert.deepEqual((await cells("frontend>checkout")).slice(0, 5), ["frontend", "checkout", String(n), (await cells("frontend>checkout"))[3], "0"]);
  assert.equal((await cells("checkout>inventory"))[2], String(n));
  // The map: four services, callers left of what they call; only the failing call is red.
  assert.equal(await page.locator("#service-map g.service").count(), 4);
  assert.equal(await page.locator("#service-map g.call").count(), 3);
  assert.deepEqual(await page.locator("#service-map g.call.failing").evaluateAll((g) => g.map((e) => e.dataset.call)), ["checkout>payments"]);
  assert.deepEqual(await page.locator("#service-map g.service.failing").evaluateAll((g) => g.map((e) => e.dataset.service)), ["payments"]);
  const x = async (s) => Number(await page.locator(`#service-map g.service[data-service="${s}"] rect`).getAttribute("x"));
  assert.ok((await x("frontend")) < (await x("checkout")) && (await x("checkout")) < (await x("payments")), "columns by call depth");
  assert.equal(await x("payments"), await x("inventory"));
  await screenshot(page, "service-map");

  // A call on the map opens its numbers and the traces behind it, failed ones first.
  await page.locator('#service-map g.call[data-call="checkout>payments"] text').click();
  const panel = page.locator("#call-details");
  await panel.waitFor({ state: "visible" });
  assert.match(page.url(), /call=checkout%3Epayments/);
  assert.match(await panel.textContent(), new RegExp(`${n} calls|calls${n}`));
  const exemplars = await panel.locator("a.exemplar").allTextContents();
  const declinedIds = new Set(declined.map((t) => t.traceId));
  // Each minute keeps its three most telling calls; an answer shows up to ten.
  assert.ok(exemplars.length >= 1 && exemplars.length <= 10, `${exemplars.length} exemplars`);
  const failedShown = Math.min(exemplars.length, declined.length);
  assert.ok(exemplars.slice(0, failedShown).every((id) => declinedIds.has(id)), "failed traces first");
  // A reload keeps the open call (it is in the URL); Esc closes it.
  await page.reload();
  await panel.waitFor({ state: "visible" });
  await page.keyboard.press("Escape");
  await panel.waitFor({ state: "hidden" });
  assert.doesNotMatch(page.url(), /call=/);
  // An exemplar opens the waterfall with the trace's logs in place.
  await page.locator('#call-list tr[data-call="checkout>payments"]').click();
  await panel.waitFor({ state: "visible" });
  await panel.locator("a.exemplar").first().click();
  await waitForTrace(exemplars[0]);
  assert.equal(await page.locator("#waterfall .row.span").count(), 4);
  assert.match(await page.locator("#waterfall").textContent(), /card declined for order/);

  // A service opens its trace search.
  await page.goto(weft.url + "/#/map?range=900");
  assert.equal(await page.inputValue("#map-range"), "900");
  await page.locator('#service-map g.service[data-service="inventory"]').click();
  await page.waitForFunction((n) => document.querySelectorAll("#trace-list tbody tr").length === n, n);
  assert.match(page.url(), /#\/traces\?service=inventory/);
});

test("a bad query shows the position and what was expected", async () => {
  expectResponseError(400);
  await page.goto(weft.url + "/#/logs?q=" + encodeURIComponent("service:checkout AND ("));
  const error = page.locator("#query-error");
  await error.waitFor({ state: "visible" });
  const lines = (await error.textContent()).split("\n");
  assert.equal(lines[0], "service:checkout AND (");
  assert.match(lines[1], /^ *\^ /);
  assert.equal(lines[1].indexOf("^"), lines[0].length, "caret under the end of the query");
  assert.match(lines.slice(2).join("\n"), /syntax: .*service:checkout severity>=WARN/, "the syntax is shown");
});

test("histogram drag zooms into an absolute range that the URL carries", async () => {
  await page.goto(weft.url + "/#/logs?q=&range=900");
  await waitForRows(data.logs.length);
  const svg = await page.locator("#histogram").boundingBox();
  // Buckets of the last 15 minutes; the data sits in the last ~60 s, the right edge.
  await page.mouse.move(svg.x + svg.width * 0.5, svg.y + 30);
  await page.mouse.down();
  await page.mouse.move(svg.x + svg.width * 0.75, svg.y + 30, { steps: 5 });
  assert.equal(await page.locator("#zoom-selection").getAttribute("visibility"), "visible");
  await page.mouse.up();
  // Nothing was logged between 7.5 and 3.75 minutes ago: the zoomed range is empty.
  await page.waitForFunction(() => /from=/.test(location.hash) && document.querySelectorAll("#logs tbody tr").length === 0);
  const params = new URLSearchParams(page.url().split("?")[1]);
  const from = Date.parse(params.get("from")), to = Date.parse(params.get("to"));
  const now = Date.now();
  assert.ok(Math.abs(now - 7.5 * 60_000 - from) < 30_000, `from ≈ 7.5 min ago: ${params.get("from")}`);
  assert.ok(Math.abs(now - 3.75 * 60_000 - to) < 30_000, `to ≈ 3.75 min ago: ${params.get("to")}`);
  assert.equal(await page.inputValue("#range"), "custom");
  assert.ok(await page.locator("#from").isVisible());

  // Typing an absolute range that covers the data finds all of it; the link survives a reload.
  const times = data.logs.map((l) => Number(l.time / 1_000_000n));
  const iso = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  await page.fill("#from", iso(Math.min(...times) - 1000));
  await page.fill("#to", iso(Math.max(...times) + 1000));
  await page.click("#log-form button[type=submit]");
  await waitForRows(data.logs.length);
  await page.reload();
  await waitForRows(data.logs.length);
  assert.equal(await page.inputValue("#from"), iso(Math.min(...times) - 1000));

  await page.fill("#to", "not a time");
  await page.click("#log-form button[type=submit]");
  await page.locator("#query-error").waitFor({ state: "visible" });
  assert.match(await page.locator("#query-error").textContent(), /YYYY-MM-DD HH:MM:SS/);
});

test("events and services catalogs link into filtered searches", async () => {
  await page.goto(weft.url + "/#/events");
  const row = page.locator("#event-list tbody tr", { hasText: "PaymentDeclined" });
  await row.waitFor();
  const declined = data.traces.filter((t) => t.declined).length;
  assert.equal(await row.locator("td").nth(1).textContent(), String(declined));
  assert.match(await row.textContent(), /payments/);
  assert.match(await row.textContent(), /error/);
  await row.locator("a").first().click();
  await waitForRows(declined);
  assert.equal(await page.inputValue("#q"), "event:PaymentDeclined");

  await page.goto(weft.url + "/#/services");
  const services = page.locator("#service-list tbody tr");
  await page.waitForFunction(() => document.querySelectorAll("#service-list tbody tr").length === 4);
  assert.deepEqual((await services.locator("td:first-child a:first-child").allTextContents()).sort(), ["checkout", "frontend", "inventory", "payments"]);
  await services.filter({ hasText: "inventory" }).locator("a", { hasText: "traces" }).click();
  await page.waitForFunction((n) => document.querySelectorAll("#trace-list tbody tr").length === n, data.traces.length);
});

test("severity panel: create a rule from a service, see it listed and audited, delete it", async () => {
  await page.goto(weft.url + "/#/services");
  const payments = page.locator("#service-list tbody tr", { hasText: "payments" });
  await payments.waitFor();
  await payments.locator("button", { hasText: "Set level" }).click();
  await page.waitForFunction(() => location.hash.startsWith("#/severity"));
  assert.equal(await page.inputValue("#r-service"), "payments", "selector prefilled from the service");
  await page.selectOption("#r-min", "WARN");
  await page.selectOption("#r-ttl", "15m");
  await page.fill("#r-reason", "INC-4711 noisy payments");
  await page.click("#rule-form button[type=submit]");
  const rule = page.locator("#rule-list tbody tr", { hasText: "INC-4711" });
  await rule.waitFor();
  assert.match(await rule.textContent(), /service=payments/);
  assert.match(await rule.textContent(), /drop below WARN/);
  assert.match(await rule.locator("td").nth(3).textContent(), /^1[45]m \d+s$/, "time left of a 15 minute rule");
  const audit = page.locator("#audit-list tbody tr", { hasText: "INC-4711" });
  await audit.first().waitFor();
  assert.match(await audit.first().textContent(), /create/);
  const [created] = (await api("/api/v1/severity/rules")).rules;
  assert.equal(created.reason, "INC-4711 noisy payments");
  await screenshot(page, "severity-panel");

  // A refusal shows the server's message: an empty selector needs `force`.
  expectResponseError(400);
  await page.fill("#r-service", "");
  await page.fill("#r-reason", "everything");
  await page.click("#rule-form button[type=submit]");
  const refusal = page.locator("#rule-error");
  await refusal.waitFor({ state: "visible" });
  assert.match(await refusal.textContent(), /^weft refused the change: .*force/);

  await rule.locator("button", { hasText: "Delete" }).click();
  await rule.waitFor({ state: "detached" });
  assert.deepEqual((await api("/api/v1/severity/rules")).rules, []);
  await page.waitForFunction(() => [...document.querySelectorAll("#audit-list tbody tr")].some((r) => /delete/.test(r.textContent) && /INC-4711|payments/.test(r.textContent)));
});

test("with tokens configured, the UI asks for a read token, keeps it for the tab, and for an admin token before a change", async () => {
  const READ = "read-secret-000001", TEAM_A = "team-a-secret-0001";
  const secured = await startWeft({
    env: {
      WEFT_INGEST_TOKENS: "collector=ingest-secret-0001",
      WEFT_READ_TOKENS: `oncall=${READ}`,
      WEFT_ADMIN_TOKENS: `lead=admin-secret-00001,team-a=${TEAM_A}:checkout*`,
    },
    token: "ingest-secret-0001",
  });
  try {
    const now = BigInt(Date.now()) * 1_000_000n;
    await sendOtlp(secured, [], [{ service: "checkout", time: now, severity: 17, severityText: "ERROR", event: "Boom", body: "guarded record" }]);
    await eventually("the record to be searchable", async () => {
      const response = await fetch(secured.url + "/api/v1/logs?q=guarded", { headers: { authorization: "Bearer " + READ } });
      return response.ok && (await response.json()).logs.length === 1;
    });
    expectResponseError(401);
    expectResponseError(403);
    await page.goto(secured.url + "/#/logs?q=guarded&range=3600");
    const dialog = page.locator("#token-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.match(await page.locator("#token-title").textContent(), /Read token/);
    assert.match(await page.locator("#token-reason").textContent(), /read token/);
    await page.fill("#token-input", READ);
    await page.click("#token-use");
    await waitForRows(1);
    assert.match(await rows().first().textContent(), /guarded record/);
    assert.ok(await dialog.isHidden());

    // Kept for this tab: a reload does not ask again.
    await page.reload();
    await waitForRows(1);
    assert.ok(await dialog.isHidden());

    // A change needs an admin token: the read token is refused, and the UI asks for one.
    await page.goto(secured.url + "/#/severity?service=checkout");
    await page.selectOption("#r-min", "WARN");
    await page.fill("#r-reason", "INC-9 from the UI");
    await page.click("#rule-form button[type=submit]");
    await dialog.waitFor({ state: "visible" });
    assert.match(await page.locator("#token-title").textContent(), /Admin token/);
    await page.fill("#token-input", TEAM_A);
    await page.click("#token-use");
    const rule = page.locator("#rule-list tbody tr", { hasText: "INC-9" });
    await rule.waitFor();
    assert.match(await rule.textContent(), /team-a/, "the rule names the token that made it");

    // Outside the token's scope: the server's message, no prompt.
    await page.fill("#r-service", "payments");
    await page.fill("#r-reason", "INC-10");
    await page.click("#rule-form button[type=submit]");
    const refusal = page.locator("#rule-error");
    await refusal.waitFor({ state: "visible" });
    assert.match(await refusal.textContent(), /checkout\*/);
    assert.ok(await dialog.isHidden());
  } finally {
    await secured.stop();
  }
});

test("live tail streams new matching records into the table", async () => {
  await page.goto(weft.url + "/#/logs?q=" + encodeURIComponent("service:tailtest"));
  await page.waitForFunction(() => document.querySelector("#result-count").textContent === "0 matching records");
  await page.check("#live");
  await page.waitForFunction(() => /waiting for new records/.test(document.querySelector("#tail-status").textContent));
  const now = BigInt(Date.now()) * 1_000_000n;
  await sendOtlp(weft, [], [
    { service: "tailtest", time: now, severity: 17, severityText: "ERROR", event: "Boom", body: "tail me please" },
    { service: "other", time: now, severity: 17, severityText: "ERROR", event: "Boom", body: "not me" },
  ]);
  await waitForRows(1);
  assert.match(await rows().first().textContent(), /tail me please/);
  assert.match(await page.locator("#tail-status").textContent(), /1 new/);
  await page.uncheck("#live");
  assert.ok(await page.locator("#tail-status").isHidden());
});

test("an answer without an ingest node's newest rows says so, naming the node; a whole one says nothing", async () => {
  // A search node marks such answers "partial" with the nodes missing (tests/integration/
  // cluster.rs); here this node's real answers are marked so on their way to the page.
  const trace = data.traces[0];
  await page.goto(`${weft.url}/#/logs?q=${encodeURIComponent("service:checkout")}`);
  await page.locator("#logs tbody tr").first().waitFor();
  assert.equal(await page.locator("#logs-partial").isHidden(), true, "a whole answer carries no notice");
  await page.route(/\/api\/v1\/(logs|traces|spans)/, async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    await route.fulfill({ response, json: { ...body, partial: true, missing_nodes: ["ingest-b"] } });
  });
  await page.goto(`${weft.url}/#/logs?q=${encodeURIComponent("service:payments")}`);
  await page.locator("#logs-partial").waitFor({ state: "visible" });
  assert.match(await page.locator("#logs-partial").textContent(), /Partial answer: ingest-b did not answer/);
  // The facets beside it, the comparison, service health and the heatmap say it too.
  await page.locator("#log-facets .partial").waitFor({ state: "visible" });
  assert.match(await page.locator("#log-facets .partial").textContent(), /ingest-b/);
  await page.locator("#log-compare").click();
  await page.locator("#log-compare-panel .partial").waitFor({ state: "visible" });
  assert.match(await page.locator("#log-compare-panel .partial").textContent(), /ingest-b/);
  await page.goto(`${weft.url}/#/health`);
  await page.locator("#health-partial").waitFor({ state: "visible" });
  assert.match(await page.locator("#health-partial").textContent(), /ingest-b/);
  await page.goto(`${weft.url}/#/heatmap?q=${encodeURIComponent("service:checkout")}`);
  await page.locator("#heatmap-partial").waitFor({ state: "visible" });
  assert.match(await page.locator("#heatmap-partial").textContent(), /ingest-b/);
  await page.goto(`${weft.url}/#/traces?service=checkout`);
  await page.locator("#traces-partial").waitFor({ state: "visible" });
  assert.match(await page.locator("#traces-partial").textContent(), /ingest-b/);
  await page.goto(`${weft.url}/#/trace/${trace.traceId}`);
  await waitForTrace(trace.traceId);
  assert.match(await page.locator("#trace-partial").textContent(), /ingest-b/);
  assert.equal(await page.locator("#trace-partial").isVisible(), true);
});

test("a trace whose root span never arrived still renders, marked incomplete", async () => {
  const ms = 1_000_000n, t0 = BigInt(Date.now()) * ms - 10_000n * ms;
  const traceId = "7a11".padEnd(32, "0");
  await sendOtlp(weft, [
    { service: "checkout", traceId, spanId: "c0ffee0000000001", parentSpanId: "feedfacefeedface", name: "POST /order", start: t0, end: t0 + 50n * ms },
    { service: "payments", traceId, spanId: "c0ffee0000000002", parentSpanId: "c0ffee0000000001", name: "charge", start: t0 + 5n * ms, end: t0 + 40n * ms },
  ], [{ service: "payments", time: t0 + 6n * ms, severity: 13, severityText: "WARN", event: "Retry", body: "retrying charge", traceId, spanId: "c0ffee0000000002" }]);
  await eventually("the rootless trace", async () => {
    const t = await api(`/api/v1/traces/${traceId}`);
    return t.spans.length === 2 && t.logs.length === 1;
  });
  await page.goto(`${weft.url}/#/trace/${traceId}`);
  await waitForTrace(traceId);
  assert.match(await page.locator("#trace-summary").textContent(), /root span missing/);
  assert.deepEqual(await page.locator("#waterfall .row").evaluateAll((rows) => rows.map((r) => r.dataset.span || r.textContent.trim())),
    ["c0ffee0000000001", "c0ffee0000000002", "WARN Retry retrying charge"]);
});

test("a trace with a skewed service: a time axis, the moved spans and logs marked, and a notice naming the service", async () => {
  const ms = 1_000_000n, t0 = BigInt(Date.now()) * ms - 20_000n * ms;
  const traceId = "5ce4".padEnd(32, "0");
  // payments' clock runs 3 s ahead: its call (really +100..+700 ms) and its log are recorded 3 s late.
  await sendOtlp(weft, [
    { service: "checkout", traceId, spanId: "5ce4000000000001", name: "POST /checkout", start: t0, end: t0 + 1000n * ms },
    { service: "payments", traceId, spanId: "5ce4000000000002", parentSpanId: "5ce4000000000001", name: "charge", start: t0 + 3100n * ms, end: t0 + 3700n * ms },
    { service: "ledger", traceId, spanId: "5ce4000000000003", parentSpanId: "5ce4000000000002", name: "append", start: t0 + 200n * ms, end: t0 + 300n * ms },
  ], [{ service: "payments", time: t0 + 3400n * ms, severity: 9, severityText: "INFO", event: "Charged", body: "card charged", traceId, spanId: "5ce4000000000002" }]);
  await eventually("the skewed trace", async () => {
    const t = await api(`/api/v1/traces/${traceId}`);
    return t.spans.length === 3 && t.logs.length === 1;
  });
  await page.goto(`${weft.url}/#/trace/${traceId}`);
  await waitForTrace(traceId);
  // The notice names the service and how far its clock is off.
  const notice = page.locator("#trace-skew");
  assert.equal(await notice.isVisible(), true);
  // The midpoint rule centres the call in its caller: 2.9 s, as the call was 100 ms off centre.
  assert.match(await notice.textContent(), /the clock of payments runs 2\.90 s ahead/);
  // The axis: labelled ticks from 0 across the trace.
  const ticks = await page.locator("#waterfall .timeaxis .tick span").allTextContents();
  assert.ok(ticks.length >= 4 && ticks.length <= 11, `${ticks}`);
  assert.match(await page.locator("#trace-summary").textContent(), /1\.00 s on the trace's clock/);
  assert.equal(ticks[0], "0");
  assert.match(ticks[1], /ms$/);
  // The moved span and log carry a clock mark with the adjustment and, on hover, the time recorded.
  const marks = page.locator("#waterfall .skewmark");
  assert.equal(await marks.count(), 2, "the payments span and its log");
  assert.match(await marks.first().textContent(), /^−2\.90 s$/);
  assert.equal(await marks.first().locator("svg.clock").count(), 1, "a clock icon");
  assert.match(await marks.first().getAttribute("title"), /recorded at/);
  // Moved back, the charge bar lies inside the checkout bar, and the ledger's (unmoved) inside it.
  const bars = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll("#waterfall .row.span")].map((r) => {
    const bar = r.querySelector(".bar").getBoundingClientRect();
    return [r.querySelector(".label b").textContent, [bar.left, bar.right]];
  })));
  const inside = (inner, outer) => inner[0] >= outer[0] - 1 && inner[1] <= outer[1] + 1;
  assert.ok(inside(bars.charge, bars["POST /checkout"]), JSON.stringify(bars));
  assert.ok(inside(bars.append, bars.charge), JSON.stringify(bars));
  await screenshot(page, "trace-skew");

  // Across traces: billing's client spans call fx-rates, whose clock runs 3 s ahead. The
  // running estimate shows in the services list and above fx-rates on the map.
  const calls = [];
  for (let i = 0; i < 12; i++) {
    const id = `f${String(i).padStart(3, "0")}`.padEnd(32, "0"), start = t0 + BigInt(i) * 100n * ms;
    calls.push(
      { service: "billing", traceId: id, spanId: "f000000000000001", name: "GET /rates", kind: 3, start, end: start + 50n * ms },
      { service: "fx-rates", traceId: id, spanId: "f000000000000002", parentSpanId: "f000000000000001", name: "rates", start: start + 3010n * ms, end: start + 3040n * ms },
    );
  }
  await sendOtlp(weft, calls, []);
  await eventually("fx-rates' clock offset", async () => {
    const r = await api("/api/v1/services");
    return r.services.some((s) => s.service === "fx-rates" && s.clock_offset_ns !== null);
  });
  await page.goto(weft.url + "/#/services");
  const fx = page.locator("#service-list tbody tr", { hasText: "fx-rates" });
  await fx.waitFor();
  assert.equal(await fx.locator("td.clock-offset").textContent(), "3.00 s ahead");
  assert.equal(await page.locator("#service-list tbody tr", { hasText: "billing" }).locator("td.clock-offset").textContent(), "in step", "the caller is the reference");
  await page.goto(weft.url + "/#/map");
  const mark = page.locator('#service-map g.service[data-service="fx-rates"] .clock-offset text');
  await mark.waitFor();
  assert.match(await mark.textContent(), /clock 3\.00 s ahead/);
  await screenshot(page, "service-map-clock");
  assert.equal(await page.locator('#service-map g.service[data-service="billing"] .clock-offset').count(), 0);
});

test("a 2,000-span trace with 5,000 logs renders, and paging scrolls through its logs", async () => {
  const big = bigTrace(2000, 5000);
  await sendOtlp(weft, big.spans, big.logs);
  await eventually("the big trace to be complete", async () => {
    const t = await api(`/api/v1/traces/${big.traceId}`);
    return t.spans.length === 2000 && t.logs.length === 5000;
  });
  // Timed from the click on a link to the rows laid out, including the fetch and JSON parse.
  const timings = [];
  for (let run = 0; run < 3; run++) {
    await page.goto(weft.url + "/#/traces");
    await page.evaluate((id) => {
      const a = document.createElement("a");
      a.id = "big-link";
      a.href = `#/trace/${id}`;
      document.body.prepend(a);
      delete document.body.dataset.renderedTrace;
    }, big.traceId);
    const ms = await page.evaluate((id) => new Promise((resolve) => {
      const t0 = performance.now();
      document.getElementById("big-link").click();
      const check = () => {
        if (document.body.dataset.renderedTrace === id) {
          void document.getElementById("waterfall").getBoundingClientRect(); // force layout
          requestAnimationFrame(() => resolve({
            total: performance.now() - t0,
            fetch: Number(document.body.dataset.traceFetchMs),
            render: Number(document.body.dataset.traceRenderMs),
          }));
        } else setTimeout(check, 1);
      };
      check();
    }), big.traceId);
    timings.push(ms);
  }
  assert.equal(await page.locator("#waterfall .row.span").count(), 2000);
  assert.equal(await page.locator("#waterfall .row.logrow").count(), 5000);
  const best = timings.reduce((a, b) => (a.total < b.total ? a : b));
  const ms = (k) => timings.map((t) => t[k].toFixed(0)).join(" / ");
  const line = `big trace (2,000 spans, 5,000 logs): click → painted ${ms("total")} ms = fetch + JSON parse ${ms("fetch")} ms + DOM build and layout ${ms("render")} ms`;
  console.log(line);
  writeFileSync(join(SCREENSHOTS, "big-trace-timing.json"), JSON.stringify({ timings, best }, null, 2));

  // The logs view pages through the 5,000 logs as the table scrolls.
  await page.goto(weft.url + "/#/logs?q=" + encodeURIComponent(`trace_id:${big.traceId}`));
  await waitForRows(100);
  await page.locator("#more").scrollIntoViewIfNeeded();
  await waitForRows(200);
  await page.locator("#more").scrollIntoViewIfNeeded();
  await waitForRows(300);
  const times = await page.locator("#logs tbody tr td:first-child").allTextContents();
  assert.deepEqual([...times].sort().reverse(), times, "newest first across pages");
  assert.equal(new Set(await page.locator("#logs tbody tr td.body").allTextContents()).size, 300, "no record twice");
});

test("dark theme and a wide screen", async () => {
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.goto(weft.url + "/#/logs?q=" + encodeURIComponent("severity>=WARN"));
  await page.waitForFunction(() => document.querySelectorAll("#logs tbody tr").length > 0);
  await page.click("#theme");
  assert.ok(await page.evaluate(() => document.documentElement.classList.contains("dark")));
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, "rgb(17, 20, 24)");
  // The table takes all the width the facet sidebar leaves.
  const [table, facets] = await page.evaluate(() => ["#logs", "#log-facets"].map((s) => document.querySelector(s).getBoundingClientRect().width));
  assert.ok(table + facets > 1850, `table and facets use the wide screen (${table} + ${facets} px)`);
  await page.reload();
  assert.ok(await page.evaluate(() => document.documentElement.classList.contains("dark")), "theme remembered");
});
