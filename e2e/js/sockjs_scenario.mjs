// @stomp/stompjs over sockjs-client (or over a plain WebSocket, for the
// controls) in Node, for stompgate's SockJS failure scenarios
// (e2e/sockjs_scenarios_test.go): a client that connects, subscribes and
// then sends nothing at all, and reports what happens to it.
//
// Usage: node sockjs_scenario.mjs URL [JSON options]
//
// URL is the SockJS endpoint (http://host:port/ws), or with transport "raw"
// a STOMP WebSocket endpoint (ws://host:port/path). Options:
//   transport    one sockjs-client transport (websocket, xhr-streaming,
//                xhr-polling), or "raw": a plain WebSocket (the ws package).
//   heartbeat    [outgoing, incoming] heart-beats stomp.js asks for, in ms
//                (default [0, 0]: the client sends nothing and wants
//                nothing).
//   destination  topic to subscribe to.
//   login, passcode, host  CONNECT headers.
//   timeoutMs    exit after this long (default 30000).
//
// Output, one JSON object per line on stdout; "at" is epoch milliseconds
// (Date.now()), so the test can compare it with its own clock:
//   {"event":"connected","heartBeat":…,"sockjsTransport":…,"at":…}
//     CONNECTED arrived and the SUBSCRIBE was sent.
//   {"event":"message","body":…,"hFrames":…,"at":…}
//   {"event":"error","message":…,"at":…}     a STOMP ERROR frame
//   {"event":"close","code":…,"reason":…,"hFrames":…,"at":…}
//     the SockJS (or WebSocket) close; the process exits right after.
//   {"event":"timeout","hFrames":…,"at":…}   timeoutMs passed; exits.
// hFrames counts the SockJS h frames sockjs-client received.

import { Client } from "@stomp/stompjs";
import SockJS from "sockjs-client";
import WebSocket from "ws";

const url = process.argv[2];
if (!url) {
  console.error("usage: node sockjs_scenario.mjs URL [JSON options]");
  process.exit(2);
}
const opts = Object.assign(
  {
    transport: "websocket",
    heartbeat: [0, 0],
    destination: "/topic/stompgate-sockjs-scenario",
    login: "guest",
    passcode: "guest",
    host: "/",
    timeoutMs: 30000,
  },
  JSON.parse(process.argv[3] || "{}"),
);

let hFrames = 0;
let sock = null;
let ended = false;

function emit(event, fields) {
  console.log(JSON.stringify(Object.assign({ event, at: Date.now() }, fields)));
}

function end(event, fields) {
  if (ended) return;
  ended = true;
  emit(event, Object.assign({ hFrames }, fields));
  // Do not wait for a close handshake (stomp-js/stompjs#226).
  setTimeout(() => process.exit(0), 50);
}

function open() {
  if (opts.transport === "raw") {
    return new WebSocket(url, ["v12.stomp", "v11.stomp", "v10.stomp"]);
  }
  sock = new SockJS(url, null, { transports: [opts.transport] });
  sock.addEventListener("heartbeat", () => hFrames++);
  return sock;
}

const client = new Client({
  webSocketFactory: open,
  connectHeaders: { login: opts.login, passcode: opts.passcode, host: opts.host },
  heartbeatOutgoing: opts.heartbeat[0],
  heartbeatIncoming: opts.heartbeat[1],
  reconnectDelay: 0,
  debug: () => {},
});

client.onConnect = (frame) => {
  client.subscribe(opts.destination, (msg) => emit("message", { body: msg.body, hFrames }));
  emit("connected", {
    heartBeat: frame.headers["heart-beat"],
    sockjsTransport: sock ? sock.transport : "raw",
  });
};

client.onStompError = (frame) => {
  emit("error", { message: frame.headers.message || frame.body || "ERROR" });
};

client.onWebSocketClose = (evt) => {
  end("close", { code: evt.code, reason: evt.reason || "" });
};

// Not unref'd: a client whose streaming request died without an end (so
// that sockjs-client never learns) stays alive, deaf, as in a browser tab.
setTimeout(() => end("timeout", {}), opts.timeoutMs);
client.activate();
