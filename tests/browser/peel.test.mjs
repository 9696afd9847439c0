// Layer peeling in headless Chromium, on a fleet with one cause to find (see fleetDataset):
// facets peel layers off the log search and the trace search, the service health view leads to
// a latency heatmap, a rectangle dragged over the slow band lists h7's traces and names h7 as
// what is different, and exemplars open the waterfall. Screenshots feed the README's walkthrough.
import { test, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { startWeft, sendOtlp, fleetDataset, launchBrowser, newPage, screenshot, eventually } from "./weft.mjs";

let weft, browser, data, page, errors;

async function api(path) {
  const response = await fetch(weft.url + path);
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return response.json();
}

before(async () => {
  weft = await startWeft();
  browser = await launchBrowser();
  data = fleetDataset();
  await sendOtlp(weft, data.spans, data.logs);
  await eventually("the fleet to be searchable", async () => {
    const logs = await api("/api/v1/logs/facets?fields=service");
    const spans = await api("/api/v1/spans/facets?fields=service");
    return logs.total === data.logs.length && spans.total === data.spans.length;
  });
});

after(async () => {
  await browser?.close();
  await weft?.stop();
});

beforeEach(async () => {
  ({ page, errors } = await newPage(browser, { width: 1400, height: 900 }));
});

afterEach(async (t) => {
  await screenshot(page, t.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase());
  await page.close();
  assert.deepEqual(errors, [], "console errors in the page");
});

const facetValue = (field, value) => page.locator(`#log-facets .facet-value[data-field="${field}"][data-value="${value}"]`);
const resultCount = () => page.locator("#result-count").textContent();
const waitForCount = (n) => page.waitForFunction((n) => document.querySelector("#result-count").textContent === `${n} matching records`, n);

test("facets peel layers off a log search: a click keeps a value, Alt-click excludes one, chips remove them", async () => {
  await page.goto(weft.url + "/#/logs?range=3600");
  await waitForCount(data.logs.length);
  // Every field of the records, declared or not, with its values and counts.
  await facetValue("severity", "error").waitFor();
  assert.match(await facetValue("resource.host.kernel", "6.1").textContent(), /450/);
  assert.match(await facetValue("severity", "error").textContent(), /75/);

  // Peel: only the errors. The kernel facet now shows one value.
  await facetValue("severity", "error").click();
  await waitForCount(75);
  assert.match(page.url(), /f=severity%3Aerror/, "the filter is in the URL");
  assert.equal(await page.locator("#log-chips .chip").count(), 1);
  await page.waitForFunction(() => document.querySelectorAll('#log-facets .facet-value[data-field="resource.host.kernel"]').length === 1);
  assert.match(await facetValue("resource.host.kernel", "6.8").textContent(), /75/);
  await screenshot(page, "peel-facets");

  // What marks the errors against the other records: kernel 6.8, on every one of them.
  await page.click("#log-compare");
  const panel = page.locator("#log-compare-panel");
  await panel.waitFor({ state: "visible" });
  await page.waitForFunction(() => document.querySelectorAll("#log-compare-panel table.compare tr").length > 1);
  // The event they log marks all of them and none of the rest; then kernel 6.8, on all of them
  // and on 75 of the other 525 (its hosts' INFO records).
  const top = await panel.locator("table.compare tr").evaluateAll((rows) => rows.slice(1, 3).map((r) => r.textContent));
  assert.match(top[0], /event\s*CartFailed\s*100\.0 %\s*0\.0 %/);
  assert.match(top[1], /resource\.host\.kernel\s*6\.8\s*100\.0 %\s*14\.3 %/);
  assert.doesNotMatch(await panel.textContent(), /severity/, "the field the selection is made by is not compared");
  await page.keyboard.press("Escape");
  await panel.waitFor({ state: "hidden" });

  // Alt-click excludes one host: 15 records fewer.
  await facetValue("resource.host.name", "h15").click({ modifiers: ["Alt"] });
  await waitForCount(60);
  const chips = page.locator("#log-chips .chip");
  assert.equal(await chips.count(), 2);
  assert.equal(await chips.nth(1).evaluate((c) => c.classList.contains("exclude")), true);

  // The URL alone restores the peeled search.
  const url = page.url();
  await page.goto("about:blank");
  await page.goto(url);
  await waitForCount(60);

  // Removing the chips gives the whole selection back.
  await chips.first().locator("button").click();
  await waitForCount(data.logs.length - 30);
  await page.locator("#log-chips .chip button").click();
  await waitForCount(data.logs.length);
  assert.equal(await page.locator("#log-chips").isHidden(), true);
});

test("log patterns list the kinds of lines; a pattern peels like a facet value, and the new one is one click away", async () => {
  // The range around the fleet's two minutes: the failing hosts (h15-h19) log only in its
  // second half, so their pattern is the new one.
  const first = Number(data.logs[0].time / 1_000_000n), last = Number(data.logs.at(-1).time / 1_000_000n);
  const from = new Date(first - 1000).toISOString(), to = new Date(last + 1000).toISOString();
  await page.goto(weft.url + "/#/logs?" + new URLSearchParams({ from, to }));
  await waitForCount(data.logs.length);
  const patterns = page.locator("#log-patterns .facet-value");
  await page.waitForFunction(() => document.querySelectorAll("#log-patterns .facet-value").length === 2);
  assert.deepEqual(await patterns.evaluateAll((b) => b.map((e) => [e.dataset.value, e.querySelector(".n").textContent])),
    [["cart <*> served", "525"], ["cart <*> failed", "75"]]);

  // Click: only the failures; the filter is a chip in the URL.
  await patterns.nth(1).click();
  await waitForCount(75);
  assert.deepEqual(new URLSearchParams(page.url().split("?")[1]).getAll("f"), ["pattern:cart <*> failed"], "the filter is in the URL");
  assert.equal(await page.locator("#log-chips .chip").count(), 1);
  await page.locator("#log-chips .chip button").click();
  await waitForCount(data.logs.length);

  // Alt-click: everything but the served lines.
  await page.locator('#log-patterns .facet-value[data-value="cart <*> served"]').click({ modifiers: ["Alt"] });
  await waitForCount(75);
  assert.equal(await page.locator("#log-chips .chip.exclude").count(), 1);
  await page.locator("#log-chips .chip button").click();
  await waitForCount(data.logs.length);

  // New in the second half: only the failures' pattern.
  await page.locator("#log-patterns [data-new-since]").click();
  await page.waitForFunction(() => document.querySelectorAll("#log-patterns .facet-value.new").length === 1);
  assert.equal(await page.locator("#log-patterns .facet-value.new").getAttribute("data-value"), "cart <*> failed");
  assert.match(page.url(), /new_since=\d+/);
  await screenshot(page, "log-patterns");
});

test("trace search has span facets; a facet value narrows the traces", async () => {
  await page.goto(weft.url + "/#/traces?service=cart&status=error");
  const kernel = page.locator('#span-facets .facet-value[data-field="resource.host.kernel"]');
  await page.waitForFunction(() => document.querySelectorAll('#span-facets .facet-value[data-field="resource.host.kernel"]').length === 1);
  assert.match(await kernel.textContent(), /6\.8/, "only kernel 6.8 fails");
  await page.locator('#span-facets .facet-value[data-field="resource.host.name"][data-value="h16"]').click();
  await page.waitForFunction(() => document.querySelectorAll("#trace-list tbody tr").length === 10);
  assert.match(page.url(), /f=resource.host.name%3Ah16/);
});

test("service health leads to the heatmap; a dragged rectangle over the slow band finds h7 and its traces", async () => {
  await page.goto(weft.url + "/#/health");
  const rows = page.locator("#health-list tbody tr");
  await page.waitForFunction(() => document.querySelectorAll("#health-list tbody tr").length === 2);
  // Both operations of cart: errors, p99 above 900 ms, and the slowest trace is one of h7's.
  for (let i = 0; i < 2; i++) {
    const text = await rows.nth(i).textContent();
    assert.match(text, /cart/);
    const slowest = await rows.nth(i).locator("a.exemplar").getAttribute("href");
    assert.ok(data.slowTraces.includes(slowest.replace("#/trace/", "")), `${slowest} is one of h7's`);
  }
  assert.equal(await page.locator("#health-list svg.spark").count(), 4, "a sparkline of error ratio and of p99 per row");
  await screenshot(page, "peel-health");

  await rows.first().locator("td").first().click();
  await page.waitForFunction(() => location.hash.startsWith("#/heatmap") && document.querySelectorAll("#heatmap rect.cell").length > 0);
  assert.match(await page.locator("#h-q").inputValue(), /^service:"cart" name:"/);

  // Drag from the top-left to the right edge, down to the row of 500 ms: the slow band.
  const box = await page.locator("#heatmap").boundingBox();
  const rowOf = (ms) => page.evaluate((ms) => {
    const { layout: L } = window.__heatmapForTests();
    let l = L.lo; while (l < L.hi && Number(window.__bucketStartForTests(l + 1)) <= ms * 1e6) l++;
    return 4 + (L.hi - l + 0.5) * L.rh;
  }, ms);
  const svgHeight = await page.evaluate(() => window.__heatmapForTests().layout.height);
  const yOf = (svgY) => box.y + (svgY / svgHeight) * box.height;
  await page.mouse.move(box.x + 60, box.y + 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2, yOf(await rowOf(600)), { steps: 5 });
  await page.mouse.move(box.x + box.width - 2, yOf(await rowOf(600)), { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => document.body.dataset.selectionReady && document.querySelectorAll("#selection-traces tbody tr").length > 0);
  const traceLinks = await page.locator("#selection-traces tbody a").evaluateAll((as) => as.map((a) => a.getAttribute("href").replace("#/trace/", "")));
  assert.ok(traceLinks.length > 0);
  for (const id of traceLinks) assert.ok(data.slowTraces.includes(id), `${id} is one of h7's traces`);
  const top = await page.locator("#selection-compare tbody tr").first().textContent();
  assert.match(top, /resource\.host\.name\s*h7\s*100\.0 %\s*0\.0 %/, "h7 is what is different");
  assert.match(page.url(), /sel=/, "the selection is in the URL");
  await screenshot(page, "peel-heatmap");

  // A listed trace opens the waterfall with its logs.
  await page.locator("#selection-traces tbody a").first().click();
  await page.waitForFunction((id) => document.body.dataset.renderedTrace === id, traceLinks[0]);
  assert.equal(await page.locator("#waterfall .logrow").count(), 1, "the span's log is under it");
});

test("a heatmap cell opens its slowest trace", async () => {
  await page.goto(weft.url + "/#/heatmap?range=3600");
  await page.waitForFunction(() => document.querySelectorAll("#heatmap rect.cell").length > 0);
  // The highest row's cells are h7's.
  const cell = await page.evaluate(() => {
    const cells = [...document.querySelectorAll("#heatmap rect.cell")];
    const top = cells.reduce((a, b) => (Number(b.dataset.l) > Number(a.dataset.l) ? b : a));
    const r = top.getBoundingClientRect();
    return { x: r.x + r.width / 2, y: r.y + r.height / 2, exemplar: top.dataset.exemplar };
  });
  assert.ok(data.slowTraces.includes(cell.exemplar));
  await page.mouse.click(cell.x, cell.y);
  await page.waitForFunction((id) => document.body.dataset.renderedTrace === id, cell.exemplar);
});
