// Drives the `stompgate demo` page in Debian's headless Chromium through
// playwright-core, as a person would: the page connects through stompgate,
// a message typed into the box round-trips through the embedded broker, and
// stompgate's heart-beat counters on both hops (from the admin API, as the
// page shows them) move.
//
// Usage: node demo_chromium.mjs PAGE_URL SCREENSHOT.png [DRAIN_URL]
//
// With DRAIN_URL (the admin API's POST /drain) it then asks stompgate to
// drain and reads how the page reports the end of its session: the STOMP
// ERROR's message header and the WebSocket close code and reason.
//
// Environment: STOMPGATE_CHROMIUM (default /usr/bin/chromium).
//
// Prints one JSON line with what it saw and exits 0 when every check
// passed, 1 when one failed, 2 on bad usage. It always closes the browser
// and gives up after 60 s in all.

import { chromium } from "playwright-core";

const [url, screenshot, drainURL] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node demo_chromium.mjs PAGE_URL SCREENSHOT.png [DRAIN_URL]");
  process.exit(2);
}
const executablePath = process.env.STOMPGATE_CHROMIUM || "/usr/bin/chromium";
const OVERALL_MS = 60000;
const t0 = Date.now();
const since = () => Date.now() - t0;

const result = {
  ok: false,
  url,
  browser: null,
  connectedMs: null, // page loaded → #state says connected
  body: null, // the message sent and received
  roundTripMs: null, // Send clicked → the message is in #messages
  before: null, // stompgate's heart-beat counters when the message arrived
  after: null, // ... once each had moved by at least two
  movedMs: null,
  page: null, // the page's own view of its hop
  parser: null, // the page's STOMP parser on crafted input
  drain: null, // with DRAIN_URL: {status, state, close, stompError}
  screenshot,
  pageErrors: [],
  error: null,
};

let browser = null;
let finished = false;

async function finish(err) {
  if (finished) return;
  finished = true;
  if (err) result.error = String(err && err.stack ? err.stack : err);
  result.ok = !result.error;
  result.elapsedMs = since();
  if (browser) {
    await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

const overall = setTimeout(() => finish(new Error(`gave up after ${OVERALL_MS} ms`)), OVERALL_MS);
overall.unref();

const COUNTERS = ["hb-client-sent", "hb-client-received", "hb-upstream-sent", "hb-upstream-received"];

async function counters(page) {
  return page.evaluate((ids) => {
    const out = {};
    for (const id of ids) {
      const e = document.getElementById(id);
      out[id] = e ? Number(e.dataset.value) : null;
    }
    return out;
  }, COUNTERS);
}

async function text(page, id) {
  return page.evaluate((id) => document.getElementById(id)?.textContent ?? null, id);
}

// checkParser feeds the page's own STOMP parser what a broker may send:
// several frames in one message, a lone heart-beat, a frame split across
// messages, and a body with a NUL under content-length.
async function checkParser(page) {
  return page.evaluate(() => {
    const frames = [];
    let beats = 0;
    const p = new window.stompgateDemo.StompParser((f) => frames.push(f), () => beats++);
    p.push("\n");
    p.push("MESSAGE\ndestination:/topic/a\nx:a\\cb\n\none\0\nMESSAGE\ndestination:/topic/b\n\ntwo\0");
    p.push("MESSAGE\r\ncontent-length:5\r\n\r\nab\0");
    p.push("cd\0\n\n");
    const enc = new TextEncoder();
    p.push(enc.encode("RECEIPT\nreceipt-id:77\n\n\0").buffer);
    return { beats, frames: frames.map((f) => [f.command, f.headers, f.body]) };
  });
}

async function main() {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  result.browser = browser.version();
  const context = await browser.newContext({ viewport: { width: 1180, height: 860 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") result.pageErrors.push("console: " + m.text());
  });

  const resp = await page.goto(url, { waitUntil: "load" });
  if (!resp || !resp.ok()) throw new Error(`GET ${url}: ${resp ? resp.status() : "no response"}`);
  const loaded = Date.now();
  await page.waitForSelector('#state[data-state="connected"]');
  result.connectedMs = Date.now() - loaded;

  result.parser = await checkParser(page);
  const want = JSON.stringify({
    beats: 4,
    frames: [
      ["MESSAGE", { destination: "/topic/a", x: "a:b" }, "one"],
      ["MESSAGE", { destination: "/topic/b" }, "two"],
      ["MESSAGE", { "content-length": "5" }, "ab\0cd"],
      ["RECEIPT", { "receipt-id": "77" }, ""],
    ],
  });
  if (JSON.stringify(result.parser) !== want) throw new Error(`page parser: got ${JSON.stringify(result.parser)}, want ${want}`);

  const body = `hello through stompgate (${Math.random().toString(36).slice(2, 8)})`;
  result.body = body;
  await page.fill("#message-input", body);
  const sent = Date.now();
  await page.click("#send");
  await page.waitForFunction(
    (body) => [...document.querySelectorAll("#messages li .b")].some((e) => e.textContent === body),
    body,
  );
  result.roundTripMs = Date.now() - sent;

  // stompgate's counters, as the page shows them from /debug/sessions.
  await page.waitForFunction((ids) => ids.every((id) => document.getElementById(id)), COUNTERS);
  result.before = await counters(page);
  const moved = Date.now();
  // With 2 s heart-beats on both hops each counter moves about every 2 s;
  // wait until each has moved by two.
  await page.waitForFunction(
    ({ ids, before }) => ids.every((id) => Number(document.getElementById(id)?.dataset.value) >= before[id] + 2),
    { ids: COUNTERS, before: result.before },
    { timeout: 20000, polling: 250 },
  );
  result.movedMs = Date.now() - moved;
  result.after = await counters(page);

  result.page = {
    state: await text(page, "state"),
    version: await text(page, "page-version"),
    heartBeat: await text(page, "page-heart-beat"),
    periods: await text(page, "page-periods"),
    hbSent: Number(await text(page, "page-hb-sent")),
    hbReceived: Number(await text(page, "page-hb-received")),
    sessions: Number(await text(page, "session-count")),
    offered: { client: await text(page, "hb-client-offered"), upstream: await text(page, "hb-upstream-offered") },
    periodsSeenByStompgate: { client: await text(page, "hb-client-periods"), upstream: await text(page, "hb-upstream-periods") },
    lastRead: { client: await text(page, "hb-client-last-read"), upstream: await text(page, "hb-upstream-last-read") },
    close: await text(page, "close"),
    stompError: await text(page, "stomp-error"),
  };
  if (result.page.hbSent < 2 || result.page.hbReceived < 2) {
    throw new Error(`the page sent ${result.page.hbSent} and received ${result.page.hbReceived} heart-beats; want 2 or more each`);
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  if (result.pageErrors.length) throw new Error("errors in the page: " + result.pageErrors.join("; "));

  if (drainURL) {
    const resp = await fetch(drainURL, { method: "POST", signal: AbortSignal.timeout(5000) });
    result.drain = { status: resp.status };
    await page.waitForSelector('#state[data-state="closed"]');
    result.drain.state = await text(page, "state");
    result.drain.close = await text(page, "close");
    result.drain.stompError = await text(page, "stomp-error");
  }
}

main().then(() => finish(), (e) => finish(e));
