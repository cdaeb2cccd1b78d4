// sockjs-client and @stomp/stompjs in Debian's headless Chromium, through
// stompgate's SockJS endpoint, one transport at a time: the transports a
// browser needs (eventsource, iframe-eventsource, iframe-htmlfile,
// jsonp-polling) and, for comparison, xhr-streaming and websocket.
//
// Usage: node sockjs_chromium.mjs JSON_OPTIONS
//
// Options:
//   page        URL of a page that loads sockjs.min.js and stomp.umd.min.js
//               (its origin differs from stompgate's).
//   sockjs      the SockJS endpoint on stompgate, e.g. http://127.0.0.1:8090/ws.
//   transports  sockjs-client transport names; each runs in its own page,
//               restricted to that transport (SockJS's `transports` option).
//   destination topic to subscribe and publish to (one per transport:
//               destination + "." + index).
//   login, passcode, host  CONNECT headers (RabbitMQ's guest account).
//   heartbeat   stomp.js heartbeatIncoming and heartbeatOutgoing, ms.
//   drainURL    absent: each page connects, subscribes, sends, receives its
//               message and disconnects, in turn. Present: every page
//               connects and round-trips a message, all at once; then the
//               script POSTs drainURL (stompgate's admin POST /drain) and
//               reports how each page's session ends (STOMP ERROR, SockJS
//               close code and reason, ms after the POST).
//   closeWithinMs  with drainURL: how long to wait for every close.
//   trace       record stomp.js's debug lines in each page's result.
//
// Environment: STOMPGATE_CHROMIUM (default /usr/bin/chromium).
//
// Prints one JSON line with what each page saw and exits 0 when the script
// ran (the Go test judges the results), 1 when it failed as a whole, 2 on
// bad usage. It always closes the browser and gives up after 90 s in all.

import { chromium } from "playwright-core";

let opts;
try {
  opts = JSON.parse(process.argv[2] || "");
} catch {
  console.error("usage: node sockjs_chromium.mjs JSON_OPTIONS");
  process.exit(2);
}
opts = Object.assign({ login: "guest", passcode: "guest", host: "/", heartbeat: 4000, closeWithinMs: 15000 }, opts);
const executablePath = process.env.STOMPGATE_CHROMIUM || "/usr/bin/chromium";
const OVERALL_MS = 90000;
const t0 = Date.now();

const result = { ok: false, browser: null, mode: opts.drainURL ? "drain" : "roundtrip", pages: [], drain: null, error: null };

let browser = null;
let finished = false;

async function finish(err) {
  if (finished) return;
  finished = true;
  if (err) result.error = String(err && err.stack ? err.stack : err);
  result.ok = !result.error;
  result.elapsedMs = Date.now() - t0;
  if (browser) {
    await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

const overall = setTimeout(() => finish(new Error(`gave up after ${OVERALL_MS} ms`)), OVERALL_MS);
overall.unref();

// connect runs in the page: a stomp.js client over sockjs-client restricted
// to one transport connects, subscribes, sends one message and waits for it.
// It leaves the client connected in window.sj and records how the session
// ends (ERROR frame, SockJS close) there.
function connect({ sockjs, transport, destination, body, login, passcode, host, heartbeat, trace }) {
  const sj = (window.sj = {
    transport: null, // what sockjs-client chose (sock.transport)
    heartBeat: null, // CONNECTED's heart-beat header
    server: null,
    version: null,
    received: null,
    stompError: null,
    close: null, // {code, reason, wasClean, at}
    errors: [],
    trace: [], // with the trace option: stomp.js's debug lines
  });
  let sock;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      sj.errors.push("no MESSAGE within 15 s");
      resolve(sj);
    }, 15000);
    const client = new StompJs.Client({
      webSocketFactory: () => (sock = new SockJS(sockjs, null, { transports: [transport] })),
      connectHeaders: { login, passcode, host },
      heartbeatIncoming: heartbeat,
      heartbeatOutgoing: heartbeat,
      reconnectDelay: 0,
      debug: (line) => {
        if (trace) sj.trace.push(`${Date.now() % 100000} ${line.slice(0, 200)}`);
      },
    });
    sj.client = client;
    client.onConnect = (frame) => {
      sj.transport = sock.transport || null;
      sj.heartBeat = frame.headers["heart-beat"] ?? null;
      sj.server = frame.headers.server ?? null;
      sj.version = frame.headers.version ?? null;
      // The SEND is repeated until its MESSAGE arrives: a broker need not
      // confirm the SUBSCRIBE (the Spring double sends no RECEIPT for it).
      let resend = null;
      client.subscribe(destination, (m) => {
        sj.received = m.body;
        if (m.body === body) {
          clearInterval(resend);
          clearTimeout(timer);
          resolve(sj);
        }
      });
      client.publish({ destination, body });
      resend = setInterval(() => client.connected && client.publish({ destination, body }), 300);
    };
    client.onStompError = (frame) => {
      sj.stompError = frame.headers.message ?? frame.body;
    };
    client.onWebSocketClose = (e) => {
      sj.close = { code: e.code, reason: e.reason, wasClean: e.wasClean, at: Date.now() };
      clearTimeout(timer);
      resolve(sj);
    };
    client.activate();
  }).then((sj) => {
    const { client, ...seen } = sj;
    return JSON.parse(JSON.stringify(seen));
  });
}

// closed runs in the page: it waits until the session has ended (or
// within ms) and returns what the page saw.
function closed({ within, disconnect }) {
  const sj = window.sj;
  if (disconnect && !sj.close) sj.client.deactivate();
  return new Promise((resolve) => {
    const deadline = Date.now() + within;
    const poll = () => {
      if (sj.close || Date.now() > deadline) {
        const { client, ...seen } = sj;
        resolve(JSON.parse(JSON.stringify(seen)));
      } else setTimeout(poll, 20);
    };
    poll();
  });
}

async function openPage(context, transport, i) {
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const entry = { transport, pageErrors: [], requests: [], badResponses: [] };
  page.on("pageerror", (e) => entry.pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") entry.pageErrors.push("console: " + m.text());
  });
  // The SockJS requests the page (and its iframe) made, by path, without
  // the server and session ids: which transport actually carried it.
  page.on("request", (r) => {
    const u = new URL(r.url());
    const m = u.pathname.match(/\/[^/]+\/[^/]+\/([a-z_]+)$/);
    const name = m && u.href.startsWith(opts.sockjs) ? m[1] : u.pathname.endsWith(".html") && u.href.startsWith(opts.sockjs) ? u.pathname.replace(/.*\//, "") : null;
    if (name && !entry.requests.includes(name)) entry.requests.push(name);
  });
  // SockJS responses that were not 200 or 204, and requests that failed.
  page.on("response", (r) => {
    if (r.url().startsWith(opts.sockjs) && r.status() !== 200 && r.status() !== 204) {
      entry.badResponses.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`);
    }
  });
  page.on("requestfailed", (r) => {
    if (r.url().startsWith(opts.sockjs)) entry.badResponses.push(`${r.method()} ${new URL(r.url()).pathname} failed: ${r.failure()?.errorText}`);
  });
  const resp = await page.goto(opts.page, { waitUntil: "load" });
  if (!resp || !resp.ok()) throw new Error(`GET ${opts.page}: ${resp ? resp.status() : "no response"}`);
  const body = `${transport} through stompgate (${Math.random().toString(36).slice(2, 8)})`;
  entry.body = body;
  const started = Date.now();
  entry.connect = await page.evaluate(connect, {
    sockjs: opts.sockjs,
    transport,
    destination: `${opts.destination}.${i}`,
    body,
    login: opts.login,
    passcode: opts.passcode,
    host: opts.host,
    heartbeat: opts.heartbeat,
    trace: !!opts.trace,
  });
  entry.roundTripMs = Date.now() - started;
  return { page, entry };
}

async function main() {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
  result.browser = browser.version();
  const context = await browser.newContext();

  if (!opts.drainURL) {
    for (const [i, transport] of opts.transports.entries()) {
      const { page, entry } = await openPage(context, transport, i);
      result.pages.push(entry);
      entry.end = await page.evaluate(closed, { within: 10000, disconnect: true });
      await page.close();
    }
    return;
  }

  const opened = await Promise.all(opts.transports.map((transport, i) => openPage(context, transport, i)));
  for (const { entry } of opened) result.pages.push(entry);
  const posted = Date.now();
  const resp = await fetch(opts.drainURL, { method: "POST", signal: AbortSignal.timeout(5000) });
  result.drain = { status: resp.status, postedAt: posted };
  const ends = await Promise.all(opened.map(({ page }) => page.evaluate(closed, { within: opts.closeWithinMs, disconnect: false })));
  ends.forEach((end, i) => {
    const entry = opened[i].entry;
    entry.end = end;
    entry.closedMsAfterDrain = end.close ? end.close.at - posted : null;
  });
}

main().then(() => finish(), (e) => finish(e));
