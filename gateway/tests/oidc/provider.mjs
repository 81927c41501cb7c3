// Loopback OpenID Connect provider for the gateway's integration tests.
//
// A real `oidc-provider` (panva) instance with one confidential client and one
// account, whose login + consent interaction completes by itself: a plain HTTP
// client that follows redirects and keeps cookies goes from the /auth URL to
// `${REDIRECT_URI}?code=...&state=...&iss=...` without any form to fill.
//
// Environment:
//   PORT                        port to bind on 127.0.0.1 (0 or unset = a free port)
//   CLIENT_ID                   required
//   CLIENT_SECRET               required
//   REDIRECT_URI                required, e.g. http://127.0.0.1:8080/auth/oidc/callback
//   TOKEN_ENDPOINT_AUTH_METHOD  client_secret_basic (default) or client_secret_post
//   ACCOUNT_SUB                 default "test-user"
//   ACCOUNT_EMAIL               default "test-user@example.test"
//   ACCOUNT_EMAIL_VERIFIED      "true" (default) or "false"
//   ACCOUNT_NAME                default "Test User"
//   OIDC_LOG                    "1": log every request (method, path, status) to stderr
//
// Stdout gets exactly one line, `listening http://127.0.0.1:<port>`, once the
// provider answers; everything else goes to stderr. SIGTERM/SIGINT exit 0.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// oidc-provider prints its notices with console.info (stdout) and warnings with
// console.warn (stderr); keep stdout for the single "listening" line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

const { default: Provider } = await import('oidc-provider');

function fail(msg) {
  process.stderr.write(`oidc test provider: ${msg}\n`);
  process.exit(2);
}

function required(name) {
  const v = process.env[name];
  if (!v) fail(`environment variable ${name} is required`);
  return v;
}

const PORT = Number.parseInt(process.env.PORT || '0', 10);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`bad PORT ${process.env.PORT}`);
const CLIENT_ID = required('CLIENT_ID');
const CLIENT_SECRET = required('CLIENT_SECRET');
const REDIRECT_URI = required('REDIRECT_URI');
const AUTH_METHOD = process.env.TOKEN_ENDPOINT_AUTH_METHOD || 'client_secret_basic';
if (!['client_secret_basic', 'client_secret_post'].includes(AUTH_METHOD)) {
  fail(`TOKEN_ENDPOINT_AUTH_METHOD must be client_secret_basic or client_secret_post, got ${AUTH_METHOD}`);
}
const ACCOUNT = {
  sub: process.env.ACCOUNT_SUB || 'test-user',
  email: process.env.ACCOUNT_EMAIL || 'test-user@example.test',
  email_verified: (process.env.ACCOUNT_EMAIL_VERIFIED || 'true').toLowerCase() === 'true',
  name: process.env.ACCOUNT_NAME || 'Test User',
};
const LOG = process.env.OIDC_LOG === '1';

const SCOPES = ['openid', 'email', 'profile'];

// A fresh RSA signing key per run (RS256 id_tokens); no dev keys, no warnings.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const TTL = 600; // seconds, for every artifact

// Listen first, so the issuer can carry the real port; requests are answered
// only once the provider exists (nobody knows the port before that anyway).
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
const server = http.createServer((req, res) => {
  if (LOG) {
    res.on('finish', () => {
      process.stderr.write(`oidc: ${req.method} ${req.url} -> ${res.statusCode}${res.getHeader('location') ? ` Location: ${res.getHeader('location')}` : ''}\n`);
    });
  }
  handler(req, res);
});
server.keepAliveTimeout = 1000;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: AUTH_METHOD,
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [signingJwk] },
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    // Cookies ignore the port: on 127.0.0.1 the gateway under test and this
    // provider share one cookie jar, so use names the gateway won't.
    names: {
      session: 'oidc_op_session',
      interaction: 'oidc_op_interaction',
      resume: 'oidc_op_interaction_resume',
    },
  },
  scopes: SCOPES,
  responseTypes: ['code'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Put the scope-requested claims (email, email_verified, name) in the
  // id_token of the code flow too, not only in the userinfo response.
  conformIdTokenClaims: false,
  pkce: { methods: ['S256'], required: () => true },
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(_ctx, sub) {
    if (sub !== ACCOUNT.sub) return undefined;
    return {
      accountId: ACCOUNT.sub,
      async claims() {
        return { ...ACCOUNT };
      },
    };
  },
  ttl: {
    AccessToken: TTL,
    AuthorizationCode: TTL,
    IdToken: TTL,
    Interaction: TTL,
    Session: TTL,
    Grant: TTL,
  },
  clientBasedCORS: () => true,
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc server_error: ${err?.stack || err}\n`));
if (LOG) {
  for (const ev of ['authorization.error', 'grant.error', 'userinfo.error', 'jwks.error', 'discovery.error']) {
    provider.on(ev, (_ctx, err) => process.stderr.write(`oidc ${ev}: ${err?.message} ${err?.error_description || ''}\n`));
  }
}

// The interaction: log the one account in and grant what was asked, then hand
// back to oidc-provider (303 to /auth/<uid>), which redirects to the client.
async function autoInteraction(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    const { params } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: ACCOUNT.sub, clientId: params.client_id });
    const requested = String(params.scope || '').split(' ').filter((s) => SCOPES.includes(s));
    grant.addOIDCScope(requested.join(' '));
    if (params.claims) {
      // claims request parameter (JSON): grant every claim named in it.
      const claims = typeof params.claims === 'string' ? JSON.parse(params.claims) : params.claims;
      const names = new Set();
      for (const target of ['id_token', 'userinfo']) {
        for (const name of Object.keys(claims?.[target] || {})) names.add(name);
      }
      if (names.size) grant.addOIDCClaims([...names]);
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: ACCOUNT.sub },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  } catch (err) {
    process.stderr.write(`oidc interaction error: ${err?.stack || err}\n`);
    res.statusCode = 400;
    res.setHeader('Content-Type', 'text/plain');
    res.end(`interaction failed: ${err?.message || err}${err?.error_description ? `: ${err.error_description}` : ""}\n`);
  }
}

const providerCallback = provider.callback();
handler = (req, res) => {
  if (req.method === 'GET' && /^\/interaction\/[^/?]+(\?.*)?$/.test(req.url)) {
    autoInteraction(req, res);
  } else {
    providerCallback(req, res);
  }
};

process.stderr.write(`oidc test provider: issuer ${issuer}, discovery ${issuer}/.well-known/openid-configuration, client ${CLIENT_ID} (${AUTH_METHOD}), redirect_uri ${REDIRECT_URI}, account ${ACCOUNT.sub}\n`);
process.stdout.write(`listening ${issuer}\n`);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
