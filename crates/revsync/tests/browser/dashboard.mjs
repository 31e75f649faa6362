// Drives the revsync dashboard in headless Chromium for tests/dashboard_browser.rs and prints
// what it saw as one JSON object on stdout. It asserts nothing itself: the Rust test does.
//
// Usage: node dashboard.mjs <input.json>
// where input.json is {"chromium", "base", "token", "orderEvent", "deadLetter",
//                      "subscription", "email"}.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const WAIT = { timeout: 30000 };

const browser = await chromium.launch({
  executablePath: input.chromium,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const out = { dialogs: [], consoleErrors: [], requests: [] };
try {
  const page = await browser.newPage();
  // An alert() would mean that data ran as script.
  page.on("dialog", async (dialog) => {
    out.dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  page.on("console", (msg) => { if (msg.type() === "error") out.consoleErrors.push(msg.text()); });
  // Every request the page makes, to prove it loads nothing from elsewhere.
  page.on("request", (req) => out.requests.push(req.url()));

  const response = await page.goto(
    input.base + "/dashboard?token=" + encodeURIComponent(input.token), WAIT);
  out.status = response.status();
  out.finalUrl = page.url();

  const orderRow = `#events tbody tr[data-event-id="${input.orderEvent}"]`;
  await page.waitForSelector(orderRow, WAIT);
  await page.waitForSelector(`#dead-letters tbody tr[data-dead-letter-id="${input.deadLetter}"]`, WAIT);

  out.eventIds = await page.$$eval("#events tbody tr",
    (rows) => rows.map((r) => Number(r.dataset.eventId)));
  out.orderCustomer = await page.textContent(`${orderRow} .customer-name`);
  out.orderRecords = await page.$$eval(`${orderRow} ul.records li`, (items) => items.map((li) => ({
    text: li.textContent,
    outcome: li.dataset.outcome,
    href: li.querySelector("a") ? li.querySelector("a").getAttribute("href") : null,
  })));
  out.images = await page.$$eval("img", (imgs) => imgs.length);
  out.scripts = await page.$$eval("script", (s) => s.length);
  out.deadLetterMessage = await page.textContent(
    `#dead-letters tr[data-dead-letter-id="${input.deadLetter}"] .dead-letter-message`);
  out.deadLetterFields = await page.textContent(
    `#dead-letters tr[data-dead-letter-id="${input.deadLetter}"] pre.fields`);
  out.budget = await page.textContent("#budget");
  out.flows = await page.$$eval("#throughput tbody tr", (rows) => rows.map((r) => r.dataset.flow));
  out.outboxThroughput = await page.textContent("#outbox-throughput");
  out.overview = await page.$$eval("#overview .card", (cards) =>
    Object.fromEntries(cards.map((c) => [c.dataset.stat, c.querySelector(".n").textContent])));

  // Search by subscription reference, then by e-mail, through the form.
  async function search(text) {
    await page.fill("#search-input", text);
    await page.click("#search-button");
    await page.waitForFunction((t) => {
      const s = document.getElementById("search-summary").textContent;
      return s.includes(t);
    }, text, WAIT);
    return page.$$eval("#search-results tbody tr", (rows) => rows.map((r) => Number(r.dataset.eventId)));
  }
  out.searchSubscription = await search(input.subscription);
  out.searchUrl = page.url();
  out.searchEmail = await search(input.email);
  out.searchNothing = await search("no-such-reference-anywhere");
  out.searchNothingSummary = await page.textContent("#search-summary");

  // Replay the dead letter with its button.
  await page.click(`button[data-replay="${input.deadLetter}"]`);
  await page.waitForSelector("#replay-result:not([hidden])", WAIT);
  out.replayNotice = await page.textContent("#replay-result");
  await page.waitForSelector("#dead-letters-empty:not([hidden])", WAIT);
  out.deadLettersAfterReplay = await page.$$eval("#dead-letters tbody tr", (rows) => rows.length);
  out.statusText = await page.textContent("#status");
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
