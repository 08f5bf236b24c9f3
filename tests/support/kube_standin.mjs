// A stand-in for kube-apiserver on loopback, over TLS, that requires a client certificate
// signed by a given CA (as a real apiserver does of a front proxy such as kube-oidc-proxy).
// No npm packages. Prints one JSON line {"port": N} on stdout once it listens.
//
// It answers enough of the API for `kubectl get pods`: /version, /api, /apis, /api/v1,
// the pods of namespace "default" (one pod, "demo"), that pod, and 404 Status otherwise.
// An upgrade request (Connection: Upgrade, Upgrade: SPDY/3.1 or websocket: `kubectl exec`,
// `port-forward`, `attach`) gets 101 Switching Protocols, then every byte sent on the
// connection is echoed back (an exec stream stand-in).
//
// Every request is recorded, in arrival order, as one JSON object:
//   {"method", "path" (path and query), "headers": [[name, value], ...] (as sent: names in
//    their case, repeats kept, in order), "client_cn" (the client certificate's subject CN),
//    "client_o" (its subject O, a string or list), "upgrade" (true for upgrade requests),
//    "body" (UTF-8 text; "" for upgrades)}
// The record is written before the answer, so whoever has the answer may read the record.
//
// Settings (environment):
//   KUBE_CERT, KUBE_KEY  server certificate and key (PEM files)
//   KUBE_CA              CA certificate (PEM file) client certificates must be signed by
//   KUBE_PORT            port to listen on (default 0: any free port)
//   RECORD_FILE          file to append each record to, one JSON line each (optional)
// GET /_recorded answers all records so far as a JSON list (not itself recorded).
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';

// stdout carries only the ready line; whoever started us may stop reading after it.
console.log = console.info = console.warn = console.error;
process.stdout.on('error', () => {});

const recorded = [];
const recordFile = process.env.RECORD_FILE;

function record(req, body, upgrade) {
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  const subject = (req.socket.getPeerCertificate && req.socket.getPeerCertificate().subject) || {};
  const entry = {
    method: req.method,
    path: req.url,
    headers,
    client_cn: subject.CN ?? null,
    client_o: subject.O ?? null,
    upgrade,
    body,
  };
  recorded.push(entry);
  if (recordFile) fs.appendFileSync(recordFile, `${JSON.stringify(entry)}\n`);
}

const status = (code, reason, message) => ({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message,
  reason,
  details: {},
  code,
});

const pod = {
  kind: 'Pod',
  apiVersion: 'v1',
  metadata: {
    name: 'demo',
    namespace: 'default',
    uid: '5b6d3f2e-0000-4000-8000-000000000001',
    resourceVersion: '1',
    creationTimestamp: '2024-01-01T00:00:00Z',
  },
  spec: { containers: [{ name: 'main', image: 'busybox' }] },
  status: { phase: 'Running', containerStatuses: [{ name: 'main', ready: true, restartCount: 0, image: 'busybox', imageID: '', started: true, state: { running: { startedAt: '2024-01-01T00:00:00Z' } } }] },
};

const routes = {
  '/version': () => ({
    major: '1',
    minor: '32',
    gitVersion: 'v1.32.4',
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2024-01-01T00:00:00Z',
    goVersion: 'go1.23.0',
    compiler: 'gc',
    platform: 'linux/amd64',
  }),
  // Plain APIVersions, not aggregated discovery: kubectl falls back to legacy discovery.
  '/api': () => ({
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1:6443' }],
  }),
  '/apis': () => ({ kind: 'APIGroupList', apiVersion: 'v1', groups: [] }),
  '/api/v1': () => ({
    kind: 'APIResourceList',
    groupVersion: 'v1',
    resources: [
      { name: 'namespaces', singularName: 'namespace', namespaced: false, kind: 'Namespace', verbs: ['get', 'list'], shortNames: ['ns'] },
      { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['get', 'list'], shortNames: ['po'], categories: ['all'] },
      { name: 'pods/exec', singularName: '', namespaced: true, kind: 'PodExecOptions', verbs: ['create', 'get'] },
    ],
  }),
  '/api/v1/namespaces': () => ({
    kind: 'NamespaceList',
    apiVersion: 'v1',
    metadata: { resourceVersion: '1' },
    items: [{ kind: 'Namespace', apiVersion: 'v1', metadata: { name: 'default', uid: '5b6d3f2e-0000-4000-8000-000000000002', resourceVersion: '1', creationTimestamp: '2024-01-01T00:00:00Z' }, status: { phase: 'Active' } }],
  }),
  // Always a PodList, also when Accept asks for a Table: kubectl prints that too.
  '/api/v1/namespaces/default/pods': () => ({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '1' }, items: [pod] }),
  '/api/v1/namespaces/default/pods/demo': () => pod,
};

function send(res, code, value) {
  const body = JSON.stringify(value);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = https.createServer({
  cert: fs.readFileSync(process.env.KUBE_CERT),
  key: fs.readFileSync(process.env.KUBE_KEY),
  ca: fs.readFileSync(process.env.KUBE_CA),
  requestCert: true,
  rejectUnauthorized: true,
});

server.on('request', (req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const path = req.url.split('?')[0];
    if (req.method === 'GET' && path === '/_recorded') return send(res, 200, recorded);
    record(req, Buffer.concat(chunks).toString('utf8'), false);
    const route = routes[path];
    if (req.method === 'GET' && route) return send(res, 200, route());
    if (route) return send(res, 405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
    return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
  });
});

server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => {});
  record(req, '', true);
  const upgrade = req.headers.upgrade || '';
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Connection: Upgrade', `Upgrade: ${upgrade}`];
  // Enough for a real client to accept the switch: the protocol it offered first.
  const streamProtocol = (req.headers['x-stream-protocol-version'] || '').split(',')[0].trim();
  if (streamProtocol) lines.push(`X-Stream-Protocol-Version: ${streamProtocol}`);
  const key = req.headers['sec-websocket-key'];
  if (key) {
    const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    lines.push(`Sec-WebSocket-Accept: ${accept}`);
    const protocol = (req.headers['sec-websocket-protocol'] || '').split(',')[0].trim();
    if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  }
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (head && head.length) socket.write(head);
  socket.pipe(socket);
});

// A failed handshake (e.g. no client certificate) must not stop the server.
server.on('tlsClientError', () => {});

server.listen(Number(process.env.KUBE_PORT || 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
