// Runs @stomp/stompjs's Parser over streams given on stdin, for
// TestStompJSParser. Usage: node stompjs_parse.mjs /path/to/esm6/parser.js
//
// stdin:  JSON array of streams, each an array of base64 chunks.
// stdout: JSON array of {frames: [{command, headers: [[k, v]...], body}], pings},
//         body in base64.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const { Parser } = await import(pathToFileURL(process.argv[2]).href);
const streams = JSON.parse(readFileSync(0, 'utf8'));
const results = streams.map((chunks) => {
  const res = { frames: [], pings: 0 };
  const parser = new Parser(
    (f) => res.frames.push({
      command: f.command,
      headers: f.headers,
      body: Buffer.from(f.binaryBody).toString('base64'),
    }),
    () => { res.pings++; },
  );
  for (const c of chunks) {
    parser.parseChunk(new Uint8Array(Buffer.from(c, 'base64')));
  }
  return res;
});
process.stdout.write(JSON.stringify(results));
