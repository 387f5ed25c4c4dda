// A stock OpenID Connect relying party, openid-client (v6), through the issuer's authorization
// code flow.
//
// Run by auth-service/tests/stock_rps.rs after `npm ci` in this folder. The relying party is
// openid-client as shipped; only the browser is played here: fetch with a cookie jar, the
// issuer's sign-in form read from its HTML, and a stop at the redirect to the client (nothing
// serves the redirect URI: its Location is the authorization response).
//
// Settings, from the environment (as for authlib_rp.py):
//   RP_ISSUER, RP_CLIENT_ID, RP_CLIENT_SECRET (unset or empty: a public client),
//   RP_REDIRECT_URI, RP_POST_LOGOUT_REDIRECT_URI (optional), RP_SCOPE, RP_USERNAME, RP_PASSWORD,
//   RP_LOGOUT (optional; `revocation`: revoke the refresh token even with an end_session_endpoint)
//
// Prints one JSON object: the steps taken and what each checked; exits 0. At the first failure
// it stops, names the step and the reason in that object (`failed`) and on stderr, and exits 1.

import * as client from 'openid-client';

class Failure extends Error {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

/** A browser's cookie jar for one loopback origin (which browsers treat as secure, so
 * `Secure` and `__Host-` cookies are kept and sent over http://127.0.0.1). */
class Browser {
  constructor() {
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const response = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return response;
  }
}

function decodeEntities(text) {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function attributes(tag) {
  const found = {};
  for (const m of tag.matchAll(/([a-zA-Z_:-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g)) {
    found[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return found;
}

/** The forms of a page with their action, method and named inputs (a small tag scanner:
 * enough for a server-rendered form, as a browser's parser would read it). */
function forms(html) {
  const found = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[1]);
    const inputs = [...m[2].matchAll(/<input\b([^>]*)>/gi)]
      .map((i) => attributes(i[1]))
      .filter((i) => i.name);
    found.push({
      action: attrs.action ?? '',
      method: (attrs.method ?? 'get').toLowerCase(),
      inputs: inputs.map((i) => ({ name: i.name, type: (i.type ?? 'text').toLowerCase(), value: i.value ?? '' })),
    });
  }
  return found;
}

async function browserSignIn(browser, authorizationUrl, username, password, redirectUri) {
  const page = await browser.request(authorizationUrl);
  const html = await page.text();
  check(page.status === 200, `GET authorize answered ${page.status}: ${html.slice(0, 300)}`);
  check((page.headers.get('content-type') ?? '').startsWith('text/html'), 'the sign-in page is not HTML');
  const candidates = forms(html).filter((f) => f.inputs.some((i) => i.type === 'password'));
  check(candidates.length === 1, `the sign-in page has ${candidates.length} forms with a password field`);
  const [form] = candidates;
  check(form.method === 'post', 'the sign-in form does not POST');
  const hidden = form.inputs.filter((i) => i.type === 'hidden').map((i) => i.name);
  check(hidden.some((n) => n.includes('csrf')), `the sign-in form carries no CSRF token (hidden fields: ${hidden})`);
  check([...browser.cookies.keys()].some((n) => n.startsWith('__Host-')), 'the sign-in page set no __Host- cookie');
  const userField = form.inputs.find((i) => ['text', 'email'].includes(i.type) && i.name.includes('user'));
  const passwordField = form.inputs.find((i) => i.type === 'password');
  check(userField, 'the sign-in form has no username field');
  const body = new URLSearchParams();
  for (const input of form.inputs) {
    const value = input === userField ? username : input === passwordField ? password : input.value;
    body.append(input.name, value);
  }
  const answer = await browser.request(new URL(form.action, authorizationUrl), { method: 'POST', body });
  check([302, 303].includes(answer.status), `the sign-in answered ${answer.status}, not a redirect: ${(await answer.text()).slice(0, 300)}`);
  const location = answer.headers.get('location');
  check(location.startsWith(`${redirectUri}?`), `the sign-in redirected to ${location}, not to the redirect URI`);
  return { location, hidden };
}

/** The flow, step by step; each step is named in `report.steps` as it starts, and what it
 * checked is added to `report`. */
async function run(env, report) {
  const step = (name) => report.steps.push(name);
  const issuer = env.RP_ISSUER;
  const clientId = env.RP_CLIENT_ID;
  const secret = env.RP_CLIENT_SECRET || undefined;
  const redirectUri = env.RP_REDIRECT_URI;
  const postLogout = env.RP_POST_LOGOUT_REDIRECT_URI || undefined;
  report.client = secret ? 'confidential' : 'public';

  step('discovery');

  // allowInsecureRequests: the test issuer is plain http on loopback (documented for testing);
  // enableNonRepudiationChecks: verify the ID token's signature with the JWKS too.
  const config = await client.discovery(
    new URL(issuer),
    clientId,
    secret ? { client_secret: secret } : undefined,
    secret ? client.ClientSecretBasic(secret) : client.None(),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  );
  const metadata = config.serverMetadata();
  check(metadata.issuer === issuer, `discovery names issuer ${metadata.issuer}, not ${issuer}`);
  report.discovery = true;

  step('authorization');
  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: env.RP_SCOPE,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });

  const browser = new Browser();
  const { location, hidden } = await browserSignIn(browser, authorizationUrl, env.RP_USERNAME, env.RP_PASSWORD, redirectUri);
  report.sign_in_form = { hidden_fields: hidden.sort() };

  step('code_exchange');
  // Checks state, iss (RFC 9207, the metadata announces it), then redeems the code with the
  // verifier and validates the ID token (signature, iss, aud, exp, iat, nonce).
  const tokens = await client.authorizationCodeGrant(config, new URL(location), {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  check(tokens.token_type?.toLowerCase() === 'bearer', `token_type is ${tokens.token_type}`);
  check(tokens.refresh_token, 'the token response has no refresh_token');
  report.code_exchange = true;
  report.authorization_response_iss = metadata.authorization_response_iss_parameter_supported === true;
  step('id_token');
  const claims = tokens.claims();
  report.id_token = {
    checked: ['signature RS256 with the JWKS', 'iss', 'aud', 'exp', 'iat', 'nonce'],
    sub: claims.sub,
    aud: claims.aud,
    has_sid: 'sid' in claims,
  };

  step('userinfo');
  // Core §5.3.2: fetchUserInfo refuses a sub other than the ID token's.
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  report.userinfo = { sub: userinfo.sub, preferred_username: userinfo.preferred_username };

  step('refresh');
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  check(refreshed.access_token && refreshed.access_token !== tokens.access_token, 'the refresh gave no new access token');
  const refreshToken = refreshed.refresh_token ?? tokens.refresh_token;
  // The refreshed access token is the RP's from now on: it still reads the user's claims.
  step('userinfo_after_refresh');
  await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  report.refresh = {
    rotated: refreshToken !== tokens.refresh_token,
    id_token: refreshed.id_token !== undefined,
    userinfo: true,
  };

  step('logout');
  if (metadata.end_session_endpoint && env.RP_LOGOUT !== 'revocation') {
    // RP-Initiated Logout 1.0 §2: the browser is sent there with the ID token.
    const logoutState = client.randomState();
    const parameters = { id_token_hint: tokens.id_token };
    if (postLogout) Object.assign(parameters, { post_logout_redirect_uri: postLogout, state: logoutState });
    const answer = await browser.request(client.buildEndSessionUrl(config, parameters));
    if (postLogout) {
      check([302, 303].includes(answer.status), `end_session answered ${answer.status}: ${(await answer.text()).slice(0, 300)}`);
      const back = new URL(answer.headers.get('location'));
      check(back.href.startsWith(postLogout), `end_session redirected to ${back}`);
      check(back.searchParams.get('state') === logoutState, 'end_session did not return the logout state');
    } else {
      check(answer.status === 200, `end_session answered ${answer.status}`);
    }
    report.logout = 'end_session_endpoint';
  } else {
    await client.tokenRevocation(config, refreshToken, { token_type_hint: 'refresh_token' });
    report.logout = 'revocation_endpoint';
  }

  step('refresh_after_logout');
  try {
    await client.refreshTokenGrant(config, refreshToken);
  } catch (error) {
    check(error instanceof client.ResponseBodyError, `the refresh after logout failed with ${error}`);
    check(error.error === 'invalid_grant', `the refresh after logout failed with ${error.error}, not invalid_grant`);
    report.refresh_after_logout = 'invalid_grant';
    return;
  }
  throw new Failure('the refresh token still works after the logout');
}

const report = { rp: 'openid-client', steps: [] };
try {
  await run(process.env, report);
  console.log(JSON.stringify(report));
} catch (error) {
  let detail = error instanceof Failure ? error.message : `${error.name}: ${error.message}`;
  if (error.cause instanceof Response) {
    const body = await error.cause.text().catch(() => '');
    const challenge = error.cause.headers.get('www-authenticate') ?? '';
    detail += ` (HTTP ${error.cause.status} ${challenge} ${body.slice(0, 300)})`;
  } else if (error.cause && !(error instanceof Failure)) {
    detail += ` (${JSON.stringify(error.cause)})`;
  }
  report.failed = { step: report.steps.at(-1) ?? 'start', error: detail };
  console.log(JSON.stringify(report));
  console.error(`openid-client RP: ${report.failed.step}: ${detail}`);
  process.exitCode = 1;
}
