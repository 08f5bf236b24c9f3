// An upstream that verifies wasm-iap's signed identity assertion with Node `jose`, an
// implementation independent of ours, against the JWKS fetched from the gateway.
// Prints one JSON line {"port": N} on stdout once it listens.
//
// Every request is answered 200 with JSON:
//   {"path", "headers" (as received, lower-case names, values joined by ", "),
//    "assertion": null when the header is absent, else
//      {"verified": true, "header": <protected header>, "payload": <claims>} or
//      {"verified": false, "error": "<jose's error code and message>"}}
//
// Settings (environment):
//   JOSE        path of jose's ESM entry (envoy-local/idp/node_modules/jose/dist/webapi/index.js)
//   JWKS_URL    the gateway's JWKS (http://127.0.0.1:<port>/.well-known/wasm-iap/jwks.json)
//   HEADER      the assertion's header (default x-wasm-iap-jwt-assertion)
//   ISSUER      expected iss (default wasm-iap)
//   AUDIENCE    expected aud (default: the request's Host without port)
import http from 'node:http';
import { pathToFileURL } from 'node:url';

console.log = console.info = console.warn = console.error;
process.stdout.on('error', () => {});

const jose = await import(pathToFileURL(process.env.JOSE).href);
const header = (process.env.HEADER || 'x-wasm-iap-jwt-assertion').toLowerCase();
const issuer = process.env.ISSUER || 'wasm-iap';
// Fetched on first use and again for an unknown kid, as jose does for any app.
const jwks = jose.createRemoteJWKSet(new URL(process.env.JWKS_URL), { cooldownDuration: 0 });

async function verify(token, host) {
  const audience = process.env.AUDIENCE || host.replace(/:\d+$/, '').toLowerCase();
  try {
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
      issuer,
      audience,
      algorithms: ['ES256', 'EdDSA'],
      requiredClaims: ['iss', 'aud', 'sub', 'iat', 'exp'],
    });
    return { verified: true, header: protectedHeader, payload };
  } catch (e) {
    return { verified: false, error: `${e.code || e.name}: ${e.message}` };
  }
}

const server = http.createServer(async (req, res) => {
  const headers = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i].toLowerCase();
    headers[name] = headers[name] ? `${headers[name]}, ${req.rawHeaders[i + 1]}` : req.rawHeaders[i + 1];
  }
  const token = req.headers[header];
  const assertion = token === undefined ? null : await verify(String(token), req.headers.host || '');
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ path: req.url, headers, assertion }));
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
