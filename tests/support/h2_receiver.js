// An HTTP/2 receiver over TLS for tests/http/test_http2.cpp (label http):
// node's own http2 server, since cpp-httplib speaks only HTTP/1.1.
//
//   node h2_receiver.js CERT KEY HOLD
//
// Listens on 127.0.0.1 (an ephemeral port) and prints "port N" once ready.
// ALPN offers h2 and http/1.1, so a client that fails to negotiate h2 is
// still answered and the test sees it in `versions` instead of a refused
// connection. Each request's body is recorded when it has fully arrived; its
// answer is then held until HOLD requests are waiting (they are all answered
// together) or 300 ms after the first of them arrived. HOLD 0 never answers
// (the client must cancel). Prints "arrived K" when the K-th body is in.
// When stdin closes (and its open streams have closed, up to 2 s) it
// prints one JSON line,
// {tls_connections, sessions, streams, max_open, aborted, versions, bodies},
// and exits.
'use strict';
const http2 = require('http2');
const fs = require('fs');

const [certFile, keyFile, holdArg] = process.argv.slice(2);
const hold = Number(holdArg);
const stats = { tls_connections: 0, sessions: 0, streams: 0, max_open: 0, aborted: 0, versions: [], bodies: [] };
let open = 0;
let waiting = [];
let timer = null;

function answerAll() {
  if (timer) clearTimeout(timer);
  timer = null;
  const now = waiting;
  waiting = [];
  for (const res of now) {
    if (!res.stream || !res.stream.destroyed) res.end('ok');
  }
}

const server = http2.createSecureServer({
  cert: fs.readFileSync(certFile),
  key: fs.readFileSync(keyFile),
  allowHTTP1: true,
});
server.on('secureConnection', () => { stats.tls_connections++; });
server.on('session', () => { stats.sessions++; });
server.on('request', (req, res) => {
  stats.streams++;
  open++;
  stats.max_open = Math.max(stats.max_open, open);
  if (!stats.versions.includes(req.httpVersion)) stats.versions.push(req.httpVersion);
  // 'close' comes once per stream; a reset stream also emits 'finish' (and
  // reports writableFinished), so only writableEnded tells an answered one.
  res.on('close', () => {
    open--;
    if (!res.writableEnded) stats.aborted++;
  });
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    stats.bodies.push(Buffer.concat(chunks).toString('utf8'));
    process.stdout.write('arrived ' + stats.bodies.length + '\n');
    if (hold === 0) return;  // never answered
    waiting.push(res);
    if (waiting.length >= hold) answerAll();
    else if (!timer) timer = setTimeout(answerAll, 300);
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write('port ' + server.address().port + '\n');
});
process.stdin.resume();
process.stdin.on('end', () => {
  // The client has gone (the test closes stdin after its http_log): let the
  // streams it reset or closed settle first, up to 2 s.
  const until = Date.now() + 2000;
  const report = () => {
    if (open > 0 && Date.now() < until) return setTimeout(report, 10);
    process.stdout.write(JSON.stringify(stats) + '\n', () => process.exit(0));
  };
  report();
});
