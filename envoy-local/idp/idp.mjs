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
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

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

// The demo user; the development login form accepts any user name and password.
const accounts = {
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        const name = sub.split('@')[0];
        return { sub, email: sub.includes('@') ? sub : `${sub}@example.com`, email_verified: true, name, groups: ['demo-users'] };
      },
    };
  },
};

const server = http.createServer();
server.listen(Number(process.env.IDP_PORT || 0), process.env.IDP_HOST || '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = process.env.IDP_ISSUER || `http://127.0.0.1:${port}`;
  const audience = process.env.API_AUDIENCE || 'demo-upstream';
  const tokenTtl = Number(process.env.TOKEN_TTL || 600);
  const provider = new Provider(issuer, {
    jwks: signingKeys(),
    findAccount: accounts.findAccount,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', 'api'],
    clients: [
      {
        // Scripts and API clients: client credentials give a JWT access token.
        client_id: 'demo-cli',
        client_secret: 'demo-cli-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api',
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
      },
    ],
    features: {
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:wasm-iap:demo-upstream',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
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
  });
  provider.proxy = true;
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
