// A STOMP frame over stompgate's frame limit, sent the way stompjs 2.x (and
// @stomp/stompjs with splitLargeFrames) sends a large frame: split across
// several WebSocket messages written back to back. Used by
// TestNodeOversizedSplitFrameGetsErrorAnd1009 (e2e/oversize_split_test.go).
//
// Usage: node oversize_split.mjs WS_URL RUNS [JSON options]
//
// Options (all optional):
//   bodyBytes   SEND body size (default 70 KiB)
//   chunkBytes  WebSocket message size the frame is cut into (default 16 KiB)
//   timeoutMs   per-run limit (default 10000)
//
// Each run opens a WebSocket (subprotocol v12.stomp), sends CONNECT, waits
// for CONNECTED, then sends one SEND frame of bodyBytes as consecutive
// chunkBytes text messages without waiting between them, and records
// whether a STOMP ERROR frame arrived and the close code the client saw
// (the `ws` close event code: 1006 for an abnormal close) and any 'error'
// event (e.g. ECONNRESET). It prints one JSON line per run and exits 0: the
// Go test judges the results.

import WebSocket from "ws";

const url = process.argv[2];
const runs = Number.parseInt(process.argv[3] || "1", 10);
if (!url || !(runs > 0)) {
  console.error("usage: node oversize_split.mjs WS_URL RUNS [JSON options]");
  process.exit(2);
}
const opts = Object.assign(
  { bodyBytes: 70 * 1024, chunkBytes: 16 * 1024, timeoutMs: 10000 },
  JSON.parse(process.argv[4] || "{}"),
);

const CONNECT = "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0";
const SEND = "SEND\ndestination:/app/x\n\n" + "x".repeat(opts.bodyBytes) + "\0";

function chunks(s, n) {
  const out = [];
  for (let i = 0; i < s.length; i += n) out.push(s.slice(i, i + n));
  return out;
}

// parseFrames returns the STOMP frames in one WebSocket message as
// {command, headers}; heart-beat EOLs are skipped.
function parseFrames(data) {
  const frames = [];
  for (let part of data.split("\0")) {
    part = part.replace(/^[\r\n]+/, "");
    if (part === "") continue;
    const head = part.split("\n\n", 1)[0];
    const lines = head.split(/\r?\n/);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      if (i > 0 && !(l.slice(0, i) in headers)) headers[l.slice(0, i)] = l.slice(i + 1);
    }
    frames.push({ command: lines[0], headers });
  }
  return frames;
}

function oneRun(run) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const r = {
      run,
      connected: false,
      chunksSent: 0,
      error: false,
      errorMessage: null,
      frames: [],
      closeCode: null,
      closeReason: null,
      socketError: null,
      wsError: null,
      sendError: null,
      timedOut: false,
      ms: null,
    };
    let done = false;
    let ws;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      r.ms = Date.now() - t0;
      resolve(r);
    };
    const timer = setTimeout(() => {
      r.timedOut = true;
      try {
        ws.terminate();
      } catch {}
      finish();
    }, opts.timeoutMs);

    ws = new WebSocket(url, "v12.stomp");
    ws.on("open", () => ws.send(CONNECT));
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? Buffer.from(data).toString("utf8") : data.toString();
      for (const f of parseFrames(text)) {
        r.frames.push(f.command);
        if (f.command === "CONNECTED" && !r.connected) {
          r.connected = true;
          // All chunks at once, as stompjs writes a split frame.
          for (const c of chunks(SEND, opts.chunkBytes)) {
            ws.send(c, (err) => {
              if (err && !r.sendError) r.sendError = String(err.message || err);
            });
            r.chunksSent++;
          }
        } else if (f.command === "ERROR") {
          r.error = true;
          if (r.errorMessage === null) r.errorMessage = f.headers.message ?? "";
        }
      }
    });
    // ws does not re-emit its socket's errors (a TCP reset is handled by
    // destroying the socket): listen on the socket itself.
    const describe = (err) => (err.code ? `${err.code}: ${err.message}` : String(err.message || err));
    ws.on("upgrade", (res) => {
      res.socket.on("error", (err) => {
        if (r.socketError === null) r.socketError = describe(err);
      });
    });
    ws.on("error", (err) => {
      if (r.wsError === null) r.wsError = describe(err);
    });
    ws.on("close", (code, reason) => {
      r.closeCode = code;
      r.closeReason = reason.toString();
      finish();
    });
  });
}

for (let i = 1; i <= runs; i++) {
  const r = await oneRun(i);
  console.log(JSON.stringify(r));
}
process.exit(0);
