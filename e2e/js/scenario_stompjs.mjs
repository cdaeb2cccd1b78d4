// @stomp/stompjs in Node (with the `ws` package as its WebSocket), used by
// stompgate's liveness scenario S9 (docs/scenarios.md).
//
// Usage: node scenario_stompjs.mjs WS_URL [JSON options]
//
// Options (all optional; also read from the STOMPJS_SCENARIO environment
// variable as JSON, the argument wins):
//   heartbeat    heartbeatIncoming and heartbeatOutgoing in ms. stomp.js
//                defaults to 10000; the scenario scales it down (e.g. 250)
//                so that ten periods of silence take seconds, not minutes.
//   holdMs       how long to stay silent after the first message (default
//                10 × heartbeat).
//   destination  topic to subscribe and publish to.
//   login, passcode, host  CONNECT headers (RabbitMQ's guest account).
//   timeoutMs    give up after this long (default 20000).
//
// The client connects, subscribes, publishes "first" and waits for it,
// stays silent (heart-beats only) for holdMs, publishes "second" and waits
// for it, then disconnects. It prints one JSON line with what it saw and
// exits 0 (the Go test judges the result).

import { Client } from "@stomp/stompjs";
import WebSocket from "ws";

const url = process.argv[2];
if (!url) {
  console.error("usage: node scenario_stompjs.mjs WS_URL [JSON options]");
  process.exit(2);
}
const opts = Object.assign(
  { heartbeat: 10000, destination: "/topic/stompgate-scenario-stompjs", login: "guest", passcode: "guest", host: "/", timeoutMs: 20000 },
  JSON.parse(process.env.STOMPJS_SCENARIO || "{}"),
  JSON.parse(process.argv[3] || "{}"),
);
if (opts.holdMs === undefined) opts.holdMs = 10 * opts.heartbeat;

const t0 = Date.now();
const result = {
  connected: false,
  version: null,
  heartBeat: null, // CONNECTED's heart-beat header
  received: [],
  heartbeatsIn: 0, // "<<< PONG": server heart-beats seen by stomp.js
  heartbeatsOut: 0, // ">>> PING": heart-beats stomp.js sent
  serverActivityTimeout: false, // stomp.js gave up on the server
  stompError: null,
  closedAtMs: null, // when the WebSocket closed, ms after start
  closeCode: null,
  closedDuringHold: false,
  heldMs: null,
  error: null,
};

let holding = false;
let finished = false;
const waiters = [];

function finish(err) {
  if (finished) return;
  finished = true;
  if (err) result.error = String(err);
  console.log(JSON.stringify(result));
  // Do not wait for a close handshake (stomp-js/stompjs#226).
  setTimeout(() => process.exit(0), 50);
}

function waitFor(body, ms) {
  return new Promise((resolve, reject) => {
    if (result.received.includes(body)) return resolve();
    const timer = setTimeout(() => reject(new Error(`no MESSAGE "${body}" within ${ms} ms`)), ms);
    waiters.push({ body, resolve: () => { clearTimeout(timer); resolve(); } });
  });
}

const client = new Client({
  webSocketFactory: () => new WebSocket(url, ["v12.stomp", "v11.stomp", "v10.stomp"]),
  connectHeaders: { login: opts.login, passcode: opts.passcode, host: opts.host },
  heartbeatIncoming: opts.heartbeat,
  heartbeatOutgoing: opts.heartbeat,
  reconnectDelay: 0,
  debug: (s) => {
    if (s.includes("<<< PONG")) result.heartbeatsIn++;
    else if (s.includes(">>> PING")) result.heartbeatsOut++;
    else if (s.includes("did not receive server activity")) result.serverActivityTimeout = true;
  },
});

client.onStompError = (frame) => {
  result.stompError = frame.headers.message || frame.body || "ERROR";
};

client.onWebSocketClose = (evt) => {
  if (finished) return;
  result.closedAtMs = Date.now() - t0;
  result.closeCode = evt.code;
  if (holding) result.closedDuringHold = true;
  finish("WebSocket closed");
};

client.onConnect = async (frame) => {
  result.connected = true;
  result.version = frame.headers.version;
  result.heartBeat = frame.headers["heart-beat"];
  try {
    client.subscribe(opts.destination, (msg) => {
      result.received.push(msg.body);
      for (const w of waiters.filter((w) => w.body === msg.body)) w.resolve();
    });
    client.publish({ destination: opts.destination, body: "first" });
    await waitFor("first", 5000);

    holding = true;
    const start = Date.now();
    await new Promise((resolve) => setTimeout(resolve, opts.holdMs));
    holding = false;
    result.heldMs = Date.now() - start;
    if (result.closeCode !== null) return; // finish already reported it

    client.publish({ destination: opts.destination, body: "second" });
    await waitFor("second", 5000);
    finish(null);
    client.deactivate({ force: true }).catch(() => {});
  } catch (err) {
    finish(err);
  }
};

setTimeout(() => finish(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs).unref();
client.activate();
