// @stomp/stompjs over sockjs-client in Node, restricted to one SockJS
// transport, used by stompgate's SockJS end-to-end tests (e2e/sockjs_test.go).
//
// Usage: node sockjs_stompjs.mjs SOCKJS_URL [JSON options]
//
// SOCKJS_URL is the SockJS endpoint (http://host:port/ws). Options (also
// read from the SOCKJS_STOMPJS environment variable as JSON, the argument
// wins):
//   transport    the one sockjs-client transport to use: websocket,
//                xhr-streaming, xhr-polling, eventsource (required).
//   heartbeat    heartbeatIncoming and heartbeatOutgoing in ms (default 500).
//   holdMs       after the first message, stay silent (heart-beats only) this
//                long, then send a second message (default 0: no hold).
//   then         "disconnect" (default): DISCONNECT once the messages came
//                back; "wait": stay connected until the server closes (a
//                drain) or timeoutMs.
//   destination  topic to subscribe and publish to.
//   login, passcode, host  CONNECT headers (RabbitMQ's guest account).
//   timeoutMs    give up after this long (default 15000).
//
// Output, one JSON object per line on stdout:
//   {"event":"ready", ...}   the messages came back (with "then":"wait", the
//                            test may now start the drain)
//   {"event":"result", ...}  the summary, last line; the process exits 0
//                            (the Go test judges the result).
// Times named ...At are epoch milliseconds (Date.now()), so that the test
// can compare them with its own clock.

import { Client } from "@stomp/stompjs";
import SockJS from "sockjs-client";

const url = process.argv[2];
if (!url) {
  console.error("usage: node sockjs_stompjs.mjs SOCKJS_URL [JSON options]");
  process.exit(2);
}
const opts = Object.assign(
  {
    heartbeat: 500,
    holdMs: 0,
    then: "disconnect",
    destination: "/topic/stompgate-sockjs-stompjs",
    login: "guest",
    passcode: "guest",
    host: "/",
    timeoutMs: 15000,
  },
  JSON.parse(process.env.SOCKJS_STOMPJS || "{}"),
  JSON.parse(process.argv[3] || "{}"),
);
if (!opts.transport) {
  console.error("option transport is required");
  process.exit(2);
}

const result = {
  event: "result",
  transport: opts.transport, // asked for
  sockjsTransport: null, // what sockjs-client opened
  startedAt: Date.now(),
  connected: false,
  connectedAt: null,
  readyAt: null, // the messages came back
  version: null,
  heartBeat: null, // CONNECTED's heart-beat header
  received: [],
  heartbeatsIn: 0, // "<<< PONG": server heart-beats seen by stomp.js
  heartbeatsOut: 0, // ">>> PING": heart-beats stomp.js sent
  serverActivityTimeout: false, // stomp.js gave up on the server
  heldMs: null,
  stompError: null, // ERROR's message header
  stompErrorAt: null,
  closeCode: null, // the SockJS close event, as stomp.js's onWebSocketClose sees it
  closeReason: null,
  closedAt: null,
  error: null,
};

let sock = null;
let finished = false;
const waiters = [];

function emit(obj) {
  console.log(JSON.stringify(obj));
}

function finish(err) {
  if (finished) return;
  finished = true;
  if (err && !result.error) result.error = String(err);
  emit(result);
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
  webSocketFactory: () => {
    sock = new SockJS(url, null, { transports: [opts.transport] });
    sock.addEventListener("open", () => { result.sockjsTransport = sock.transport; });
    return sock;
  },
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
  if (result.stompError !== null) return;
  result.stompError = frame.headers.message || frame.body || "ERROR";
  result.stompErrorAt = Date.now();
};

client.onWebSocketClose = (evt) => {
  result.closeCode = evt.code;
  result.closeReason = evt.reason ?? null;
  result.closedAt = Date.now();
  finish(null);
};

client.onConnect = async (frame) => {
  result.connected = true;
  result.connectedAt = Date.now();
  result.version = frame.headers.version;
  result.heartBeat = frame.headers["heart-beat"];
  try {
    client.subscribe(opts.destination, (msg) => {
      result.received.push(msg.body);
      for (const w of waiters.filter((w) => w.body === msg.body)) w.resolve();
    });
    client.publish({ destination: opts.destination, body: "first" });
    await waitFor("first", 5000);
    if (opts.holdMs > 0) {
      const start = Date.now();
      await new Promise((resolve) => setTimeout(resolve, opts.holdMs));
      result.heldMs = Date.now() - start;
      if (finished) return;
      client.publish({ destination: opts.destination, body: "second" });
      await waitFor("second", 5000);
    }
    result.readyAt = Date.now();
    emit({ event: "ready", transport: opts.transport, sockjsTransport: result.sockjsTransport });
    if (opts.then === "disconnect") {
      // DISCONNECT, then stomp.js closes the SockJS connection: the close
      // event ends the script.
      await client.deactivate();
    }
  } catch (err) {
    finish(err);
  }
};

setTimeout(() => finish(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);
client.activate();
