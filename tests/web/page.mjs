// Opens an HTML report in Debian's Chromium (headless, a fresh profile, the network off) and
// prints what the page shows as JSON: the timeline's rows, the failures, the rows left when the
// `ok` status filter is unchecked, the tooltip of a focused bar, every request the page made,
// and its paint timings. Saves a screenshot when asked.
// Usage: node page.mjs PAGE.html PROFILE_DIR [SCREENSHOT.png]
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";

const [page_path, profile, shot] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1280, height: 860 },
  offline: true,
});
try {
  const page = context.pages()[0] || (await context.newPage());
  const requests = [];
  const blocked = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("requestfailed", (r) => blocked.push(r.url()));
  page.on("console", (m) => { if (m.type() === "error") { blocked.push("console: " + m.text()); } });
  const url = pathToFileURL(page_path).href;
  const t0 = Date.now();
  await page.goto(url, { waitUntil: "load" });
  const load_ms = Date.now() - t0;
  const read = () => page.evaluate(() => ({
    rows: [...document.querySelectorAll("#rows .row")].map((r) => ({
      host: r.dataset.host, status: r.dataset.status, hidden: r.hidden,
      bars: r.querySelectorAll(".bar").length,
    })),
    failures: [...document.querySelectorAll("#failures .failure")].map((f) => ({
      host: f.dataset.host, hidden: f.hidden, text: f.querySelector("pre").textContent,
    })),
    shown: document.getElementById("shown").textContent,
  }));
  const before = await read();
  await page.uncheck("input[name=status][value=ok]");
  const after_ok = await read();
  await page.check("input[name=status][value=ok]");
  await page.fill("#host-filter", process.env.HOST_FILTER || "h02");
  const after_host = await read();
  await page.fill("#host-filter", "");
  await page.focus("#rows .row .bar");
  const tip = await page.evaluate(() => {
    const t = document.getElementById("tip");
    return { hidden: t.hidden, text: t.textContent };
  });
  await page.evaluate(() => document.activeElement.blur());
  const paint = await page.evaluate(() => Object.fromEntries(
    performance.getEntriesByType("paint").map((e) => [e.name, e.startTime])));
  if (shot) { await page.screenshot({ path: shot }); }
  console.log(JSON.stringify({ url, requests, blocked, before, after_ok, after_host, tip, paint, load_ms }));
} finally {
  await context.close();
}
