// The local testbed: the real IdP, the demo upstream, and Envoy with the built filter, all
// on 127.0.0.1. Prints the URL and a working curl line; Ctrl-C stops everything.
//   node envoy-local/testbed.mjs              run until Ctrl-C
//   node envoy-local/testbed.mjs --self-test  start, check the printed flow works, stop
// WASM_IAP_ENVOY names the Envoy binary (./build.sh testbed sets it).
// WASM_IAP_PORT (default 8080, or any free port when taken) is the protected listener.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const selfTest = process.argv.includes('--self-test');
const children = [];

function stopAll(code) {
  for (const child of children) child.kill('SIGTERM');
  process.exit(code);
}
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => stopAll(0));

/** Starts a child; resolves with the JSON it prints on its first stdout line. */
function startNode(script, env) {
  const child = spawn(process.execPath, [script], { cwd: path.dirname(script), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', (line) => resolve(JSON.parse(line)));
    child.once('exit', (code) => reject(new Error(`${path.basename(script)} exited with ${code}`)));
  });
}

/** The preferred port when it is free, else one the OS hands out. */
function freePort(preferred) {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => (preferred ? freePort(0).then(resolve) : resolve(0)));
    probe.listen(preferred, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function render(template, values) {
  return template.replace(/\{\{(\w+)\}\}/g, (_, name) => {
    if (!(name in values)) throw new Error(`no value for {{${name}}}`);
    return values[name];
  });
}

async function startEnvoy(config, workdir) {
  const envoy = process.env.WASM_IAP_ENVOY;
  if (!envoy) throw new Error('WASM_IAP_ENVOY is not set: start the testbed with ./build.sh testbed');
  const configPath = path.join(workdir, 'envoy.yaml');
  const adminPath = path.join(workdir, 'admin-address');
  fs.writeFileSync(configPath, config);
  const log = fs.openSync(path.join(workdir, 'envoy.log'), 'w');
  const child = spawn(envoy, ['-c', configPath, '--disable-hot-restart', '--admin-address-path', adminPath, '--concurrency', '2', '-l', 'info'], { stdio: ['ignore', 'ignore', log] });
  children.push(child);
  let exited = false;
  child.once('exit', () => { exited = true; });
  for (let i = 0; i < 300 && !exited; i++) {
    await new Promise((r) => setTimeout(r, 100));
    if (!fs.existsSync(adminPath)) continue;
    const admin = fs.readFileSync(adminPath, 'utf8').trim();
    try {
      const listeners = await (await fetch(`http://${admin}/listeners?format=json`)).json();
      const port = listeners.listener_statuses[0].local_address.socket_address.port_value;
      if ((await fetch(`http://${admin}/ready`)).ok) return { port, admin, logPath: path.join(workdir, 'envoy.log') };
    } catch { /* not ready yet */ }
  }
  throw new Error(`Envoy did not start; see ${path.join(workdir, 'envoy.log')}`);
}

async function main() {
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasm-iap-testbed-'));
  const envoyPort = await freePort(selfTest ? 0 : Number(process.env.WASM_IAP_PORT || 8080));
  const idp = await startNode(path.join(here, 'idp', 'idp.mjs'), {
    REDIRECT_URIS: `http://127.0.0.1:${envoyPort}/oauth2/callback`,
    POST_LOGOUT_REDIRECT_URIS: `http://127.0.0.1:${envoyPort}/`,
    IDP_USERS: JSON.stringify({ 'admin@example.com': { groups: ['admins', 'demo-users'] } }),
  });
  const upstream = await startNode(path.join(here, 'upstream.mjs'), {});
  const pluginConfig = render(fs.readFileSync(path.join(here, 'plugin-config.json'), 'utf8'), { ISSUER: idp.issuer });
  const config = render(fs.readFileSync(path.join(here, 'envoy.yaml.tmpl'), 'utf8'), {
    BIND: '127.0.0.1',
    ADMIN_PORT: 0,
    ENVOY_PORT: envoyPort,
    WASM_PATH: path.join(root, 'target/wasm32-wasip1/release/wasm_iap.wasm'),
    PLUGIN_CONFIG: pluginConfig.trim().split('\n').join('\n                    '),
    CLUSTER_TYPE: 'STATIC',
    UPSTREAM_HOST: '127.0.0.1',
    UPSTREAM_PORT: upstream.port,
    IDP_HOST: '127.0.0.1',
    IDP_PORT: idp.port,
  });
  const envoy = await startEnvoy(config, workdir);
  const url = `http://127.0.0.1:${envoy.port}/`;
  const tokenCurl = `curl -s -u demo-cli:demo-cli-secret -d grant_type=client_credentials -d scope=api ${idp.issuer}/token`;
  console.log(`
wasm-iap testbed is running
  protected demo upstream  ${url}
  IdP (issuer)             ${idp.issuer}
  Envoy admin              http://${envoy.admin}/
  Envoy log                ${envoy.logPath}

An API client gets a token from the IdP and calls the upstream through the filter:
  TOKEN=$(${tokenCurl} | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')
  curl -i -H "Authorization: Bearer $TOKEN" ${url}
Without a valid token the filter answers 401:
  curl -i ${url}

A person signs in with the browser: open ${url}
  and log in at the IdP with any user name and password (demo login: alice@example.com / demo).
  Sign out: ${url}oauth2/sign_out
  Only members of the group "admins" (log in as admin@example.com) may open ${url}admin/;
  anyone else signed in sees the 403 page there. ${url}healthz needs no sign-in.

Ctrl-C stops everything.`);
  if (selfTest) await checkFlow(idp, url);
}

/** What the printed lines promise, done once: token -> 200 with identity, no token -> 401,
 * /admin/ outside the group -> 403, /healthz -> 200 without a token. */
async function checkFlow(idp, url) {
  const tokenResponse = await fetch(`${idp.issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('demo-cli:demo-cli-secret').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials&scope=api',
  });
  const { access_token: token } = await tokenResponse.json();
  const withToken = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const body = await withToken.json();
  const withoutToken = await fetch(url);
  // node:http, not fetch(): fetch sets its own Sec-Fetch-Mode (cors), as a browser's script would.
  const browser = await new Promise((resolve, reject) => {
    http.get(url, { headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' } }, resolve).on('error', reject);
  });
  browser.resume();
  const toLogin = browser.statusCode === 302 && (browser.headers.location || '').startsWith(`${idp.issuer}/auth?`);
  const admin = await fetch(`${url}admin/`, { headers: { authorization: `Bearer ${token}` } });
  const health = await fetch(`${url}healthz`);
  console.log(`self-test: with token ${withToken.status} as ${body.user}; without token ${withoutToken.status}; browser sent to log in: ${toLogin}; /admin/ outside the group ${admin.status}; /healthz without token ${health.status}`);
  const ok = withToken.status === 200 && body.user === 'demo-cli' && withoutToken.status === 401 && toLogin && admin.status === 403 && health.status === 200;
  stopAll(ok ? 0 : 1);
}

main().catch((error) => {
  console.error(`testbed failed: ${error.message}`);
  stopAll(1);
});
