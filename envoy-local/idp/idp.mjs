// A real, OpenID-certified provider (npm oidc-provider) on loopback, standing in for Dex.
// Prints one JSON line {"issuer", "port"} on stdout once it listens.
//
// Settings (environment):
//   IDP_PORT        port to listen on (default 0: any free port)
//   IDP_ISSUER      issuer URL (default http://127.0.0.1:<port>)
//   REDIRECT_URIS   comma-separated redirect URIs of the browser client "demo"
//   POST_LOGOUT_REDIRECT_URIS  comma-separated post-logout redirect URIs of "demo"
//   API_AUDIENCE    audience of client-credentials access tokens (default "demo-upstream")
//   TOKEN_TTL       lifetime of ID and access tokens in seconds (default 600)
//   IDP_USERS       JSON object: user name -> claims to set or override, e.g.
//                   {"bob@other.com": {"groups": ["myorg:dev"]}, "eve": {"email_verified": false}}
//                   (default claims: email from the name, email_verified true, groups ["demo-users"])
//   EXTRA_CLIENTS   JSON list of further browser clients: {client_id, client_secret, redirect_uris}
//   REFRESH_ROTATION  what a refresh does to the refresh token it was given:
//                   off     (default) kept, usable again (oidc-provider's default for a
//                           confidential client until 70% of its 14-day lifetime);
//                   strict  rotated, each usable once: a reused one gets invalid_grant and the
//                           rest of the grant lives on (Keycloak "revoke refresh token",
//                           Cognito without grace);
//                   family  rotated, and a reused one revokes the whole grant, the new refresh
//                           token included (oidc-provider's reuse detection, as Auth0's).
//   IDP_TEST_COUNTS 1: GET /_test/counts answers the token-endpoint calls so far by grant type
//                   and outcome, e.g. {"refresh_token": {"ok": 3, "invalid_grant": 1}}
//   BACKCHANNEL_LOGOUT_URI  the "demo" client's back-channel logout URI (session required, so
//                   ID tokens carry "sid"): when a browser ends its IdP session (GET
//                   /session/end, then POST /session/end/confirm with logout=yes) the IdP
//                   POSTs form logout_token=<JWT> there (iss, aud, iat, jti, sub, sid, events).
//   BACKCHANNEL_LOGOUT_SESSION_REQUIRED  0: the "demo" client is registered without
//                   backchannel_logout_session_required, so its logout tokens carry no "sid",
//                   only "sub": the relying party ends every session of that user.
//
// Client-credentials clients: "demo-cli" may ask for scopes api, read and write;
// "reader-cli" (secret "reader-cli-secret") only for api and read.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

// stdout carries only the ready line; whoever started us may stop reading after it.
console.log = console.info = console.warn = console.error;
process.stdout.on('error', () => {});

const list = (value) => (value || '').split(',').map((s) => s.trim()).filter(Boolean);

function signingKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return {
    keys: [
      { ...rsa.export({ format: 'jwk' }), kid: `rsa-${Date.now()}`, alg: 'RS256', use: 'sig' },
      { ...ec.export({ format: 'jwk' }), kid: `ec-${Date.now()}`, alg: 'ES256', use: 'sig' },
    ],
  };
}

// Any user name logs in (the development login form takes any name and password); IDP_USERS
// gives some of them other claims.
const users = JSON.parse(process.env.IDP_USERS || '{}');
const accounts = {
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        const name = sub.split('@')[0];
        const email = sub.includes('@') ? sub : `${sub}@example.com`;
        return { sub, email, email_verified: true, name, preferred_username: name, groups: ['demo-users'], ...(users[sub] || {}) };
      },
    };
  },
};
const extraClients = JSON.parse(process.env.EXTRA_CLIENTS || '[]').map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));

// strict rotation: a used refresh token is forgotten rather than marked consumed, so its reuse
// is "not found" (invalid_grant) instead of the reuse that revokes the grant.
class OneUseRefreshTokens extends MemoryAdapter {
  constructor(model) {
    super(model, undefined, 15); // oidc-provider's default clock tolerance
  }

  async consume(id) {
    return this.model === 'RefreshToken' ? this.destroy(id) : super.consume(id);
  }
}
const rotation = process.env.REFRESH_ROTATION || 'off';
if (!['off', 'strict', 'family'].includes(rotation)) throw new Error(`REFRESH_ROTATION=${rotation}`);

const counts = {};
function count(ctx, outcome) {
  const grantType = ctx.oidc?.params?.grant_type || 'unknown';
  counts[grantType] ??= {};
  counts[grantType][outcome] = (counts[grantType][outcome] || 0) + 1;
}
const backchannelLogout = process.env.BACKCHANNEL_LOGOUT_URI
  ? {
    backchannel_logout_uri: process.env.BACKCHANNEL_LOGOUT_URI,
    backchannel_logout_session_required: process.env.BACKCHANNEL_LOGOUT_SESSION_REQUIRED !== '0',
  }
  : {};

const server = http.createServer();
server.listen(Number(process.env.IDP_PORT || 0), process.env.IDP_HOST || '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = process.env.IDP_ISSUER || `http://127.0.0.1:${port}`;
  const audience = process.env.API_AUDIENCE || 'demo-upstream';
  const tokenTtl = Number(process.env.TOKEN_TTL || 600);
  const provider = new Provider(issuer, {
    jwks: signingKeys(),
    findAccount: accounts.findAccount,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', 'api', 'read', 'write'],
    clients: [
      {
        // Scripts and API clients: client credentials give a JWT access token.
        client_id: 'demo-cli',
        client_secret: 'demo-cli-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api read write',
      },
      {
        client_id: 'reader-cli',
        client_secret: 'reader-cli-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api read',
      },
      {
        // Browsers: the authorization-code flow through the filter.
        client_id: 'demo',
        client_secret: 'demo-secret',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: list(process.env.REDIRECT_URIS).length ? list(process.env.REDIRECT_URIS) : ['http://127.0.0.1/oauth2/callback'],
        post_logout_redirect_uris: list(process.env.POST_LOGOUT_REDIRECT_URIS),
        token_endpoint_auth_method: 'client_secret_basic',
        ...backchannelLogout,
      },
      ...extraClients,
    ],
    features: {
      clientCredentials: { enabled: true },
      backchannelLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:wasm-iap:demo-upstream',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api read write',
          audience,
          accessTokenTTL: tokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    ttl: { IdToken: tokenTtl, AccessToken: tokenTtl },
    // The browser client may refresh: give it a refresh token without prompting for offline access.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Its own calls (back-channel logout) go to loopback, which its SSRF guard refuses.
    fetch: (url, { dispatcher, ...options }) => fetch(url, options),
    ...(rotation === 'off' ? {} : { rotateRefreshToken: true }),
    ...(rotation === 'strict' ? { adapter: OneUseRefreshTokens } : {}),
  });
  provider.proxy = true;
  provider.on('grant.success', (ctx) => count(ctx, 'ok'));
  provider.on('grant.error', (ctx, err) => count(ctx, err.error || 'error'));
  provider.on('backchannel.error', (ctx, err, client) => console.error(`back-channel logout to ${client.clientId} failed: ${err.message}`));
  const oidc = provider.callback();
  server.on('request', (req, res) => {
    if (process.env.IDP_TEST_COUNTS === '1' && req.method === 'GET' && req.url === '/_test/counts') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(counts));
    } else {
      oidc(req, res);
    }
  });
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
