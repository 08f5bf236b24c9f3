// The demo upstream: shows who the filter says the caller is. HTML for browsers, JSON otherwise.
// Prints one JSON line {"port"} on stdout once it listens. UPSTREAM_PORT (default 0).
import http from 'node:http';

const escape = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const server = http.createServer((req, res) => {
  const user = req.headers['x-auth-request-user'];
  const email = req.headers['x-auth-request-email'];
  if ((req.headers.accept || '').includes('text/html')) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>wasm-iap demo upstream</title>
<h1 id="greeting">Hello, ${escape(user)}</h1>
<p>Email: <span id="email">${escape(email)}</span></p>
<p>Path: <code id="path">${escape(req.url)}</code></p>`);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ upstream: 'demo', user, email, path: req.url, headers: req.headers }));
});

server.listen(Number(process.env.UPSTREAM_PORT || 0), process.env.UPSTREAM_HOST || '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
