#!/usr/bin/env python3
"""A stock OpenID Connect relying party, Authlib, through the issuer's authorization code flow.

Run by auth-service/tests/stock_rps.rs; needs `authlib` (1.x) and `requests`. The relying party
is Authlib as shipped (`OAuth2Session` with PKCE S256, `authlib.jose` for the ID token); only the
browser is played by this script: a `requests` session that keeps cookies, reads the issuer's
sign-in form with the standard library's HTML parser and stops at the redirect to the client
(nothing serves the redirect URI: its `Location` is the authorization response).

Settings, from the environment:
  RP_ISSUER                    the issuer identifier, the base of its discovery document
  RP_CLIENT_ID                 the registered client
  RP_CLIENT_SECRET             its secret; unset or empty for a public client
  RP_REDIRECT_URI              a redirect URI registered for it
  RP_POST_LOGOUT_REDIRECT_URI  (optional) a post-logout redirect URI registered for it
  RP_SCOPE                     the scope to ask for, with `openid`
  RP_USERNAME, RP_PASSWORD     the user who signs in
  RP_LOGOUT                    (optional) `revocation`: revoke the refresh token even when
                               discovery has an end_session_endpoint

Prints one JSON object: the steps taken and what each checked; exits 0. At the first failure it
stops, names the step and the reason in that object (`failed`) and on stderr, and exits 1.
"""

import http.cookiejar
import json
import os
import sys
import time
import warnings
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError

# authlib.jose is deprecated in favour of joserfc but is Authlib 1.x's own JOSE, the one its
# OpenID Connect claims classes are written for.
warnings.filterwarnings("ignore", message=".*authlib.jose.*")
from authlib.jose import JsonWebKey, JsonWebToken  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

TIMEOUT = 10
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


class Failure(Exception):
    """A check that did not hold; the message says which."""


def check(condition, message):
    if not condition:
        raise Failure(message)


class LoopbackIsSecure(http.cookiejar.DefaultCookiePolicy):
    """Browsers treat loopback origins as secure contexts (W3C Secure Contexts §3.1), so they
    send `Secure` (and `__Host-`) cookies to http://127.0.0.1; the standard library sends them
    only over https."""

    def return_ok_secure(self, cookie, request):
        host = urlsplit(request.get_full_url()).hostname
        return host in LOOPBACK or super().return_ok_secure(cookie, request)


class Browser(requests.Session):
    """A `requests` session as a browser: cookies kept under `LoopbackIsSecure`. requests
    builds each request's `Cookie` header from a fresh jar with the default policy, so the
    header is made again here from the session's own jar."""

    def __init__(self):
        super().__init__()
        self.cookies.set_policy(LoopbackIsSecure())

    def prepare_request(self, request):
        prepared = super().prepare_request(request)
        header = requests.cookies.get_cookie_header(self.cookies, prepared)
        if header:
            prepared.headers["Cookie"] = header
        return prepared


class Forms(HTMLParser):
    """Every <form> of a page: its action, method and named fields with their values."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(
                {
                    "action": attrs.get("action") or "",
                    "method": (attrs.get("method") or "get").lower(),
                    "fields": {},
                    "types": {},
                }
            )
        elif tag == "input" and self.forms and attrs.get("name"):
            form = self.forms[-1]
            form["fields"][attrs["name"]] = attrs.get("value") or ""
            form["types"][attrs["name"]] = (attrs.get("type") or "text").lower()


def sign_in_form(html):
    parser = Forms()
    parser.feed(html)
    forms = [f for f in parser.forms if "password" in f["types"].values()]
    check(len(forms) == 1, f"the sign-in page has {len(forms)} forms with a password field")
    return forms[0]


def browser_sign_in(browser, authorization_url, username, password, redirect_uri):
    """What a user does in a browser: open the URL, fill the form, submit it. Returns the URL
    the issuer redirects to (the authorization response)."""
    page = browser.get(authorization_url, allow_redirects=False, timeout=TIMEOUT)
    check(page.status_code == 200, f"GET authorize answered {page.status_code}: {page.text[:300]}")
    check(
        page.headers.get("Content-Type", "").startswith("text/html"),
        "the sign-in page is not HTML",
    )
    form = sign_in_form(page.text)
    check(form["method"] == "post", "the sign-in form does not POST")
    hidden = [name for name, kind in form["types"].items() if kind == "hidden"]
    check(
        any("csrf" in name for name in hidden),
        f"the sign-in form carries no CSRF token (hidden fields: {hidden})",
    )
    check(
        any(c.name.startswith("__Host-") for c in browser.cookies),
        "the sign-in page set no __Host- cookie",
    )
    user_field = next(
        (n for n, kind in form["types"].items() if kind in ("text", "email") and "user" in n),
        None,
    )
    password_field = next(n for n, kind in form["types"].items() if kind == "password")
    check(user_field is not None, "the sign-in form has no username field")
    fields = dict(form["fields"])
    fields[user_field] = username
    fields[password_field] = password
    answer = browser.post(
        urljoin(page.url, form["action"]), data=fields, allow_redirects=False, timeout=TIMEOUT
    )
    check(
        answer.status_code in (302, 303),
        f"the sign-in answered {answer.status_code}, not a redirect: {answer.text[:300]}",
    )
    location = answer.headers["Location"]
    check(
        location.startswith(redirect_uri + "?"),
        f"the sign-in redirected to {location}, not to the redirect URI",
    )
    return location, hidden


def validate_id_token(id_token, jwks, issuer, client_id, nonce, access_token):
    """Authlib's own ID token validation (OpenID Connect Core §3.1.3.7): RS256 with the
    issuer's JWKS, then iss, aud, exp, iat, nonce and at_hash."""
    claims = JsonWebToken(["RS256"]).decode(
        id_token,
        key=JsonWebKey.import_key_set(jwks),
        claims_cls=CodeIDToken,
        claims_options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
            "nonce": {"essential": True, "value": nonce},
            "exp": {"essential": True},
        },
        claims_params={"nonce": nonce, "client_id": client_id, "access_token": access_token},
    )
    claims.validate(leeway=5)
    check(claims["exp"] > time.time(), "the ID token has expired")
    return claims


def run(env, report):
    """The flow, step by step; each step is named in `report["steps"]` as it starts, and what
    it checked is added to `report`."""
    step = report["steps"].append
    issuer = env["RP_ISSUER"]
    client_id = env["RP_CLIENT_ID"]
    secret = env.get("RP_CLIENT_SECRET") or None
    redirect_uri = env["RP_REDIRECT_URI"]
    post_logout = env.get("RP_POST_LOGOUT_REDIRECT_URI") or None
    report["client"] = "confidential" if secret else "public"

    step("discovery")
    discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    metadata = requests.get(discovery_url, timeout=TIMEOUT).json()
    check(
        metadata.get("issuer") == issuer,
        f"discovery names issuer {metadata.get('issuer')!r}, not {issuer!r} (Discovery §4.3)",
    )
    check(
        "S256" in metadata.get("code_challenge_methods_supported", []),
        "discovery lists no S256 code challenge method",
    )
    report["discovery"] = True
    jwks = requests.get(metadata["jwks_uri"], timeout=TIMEOUT).json()

    auth_method = "client_secret_basic" if secret else "none"
    client = OAuth2Session(
        client_id,
        secret,
        scope=env["RP_SCOPE"],
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
        revocation_endpoint_auth_method=auth_method,
    )
    step("authorization")
    code_verifier = generate_token(48)
    nonce = generate_token(32)
    authorization_url, state = client.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
    )

    browser = Browser()
    location, hidden = browser_sign_in(
        browser, authorization_url, env["RP_USERNAME"], env["RP_PASSWORD"], redirect_uri
    )
    report["sign_in_form"] = {"hidden_fields": sorted(hidden)}
    response = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    check("error" not in response, f"the authorization failed: {response}")
    check(response.get("state") == state, "the authorization response's state is not ours")
    # RFC 9207 §2.4: Authlib does not check `iss` itself, an RP that trusts the metadata does.
    if metadata.get("authorization_response_iss_parameter_supported"):
        check(response.get("iss") == issuer, f"the authorization response's iss is {response.get('iss')!r}")
        report["authorization_response_iss"] = True

    step("code_exchange")
    token = client.fetch_token(
        metadata["token_endpoint"],
        authorization_response=location,
        state=state,
        code_verifier=code_verifier,
    )
    check(token.get("token_type", "").lower() == "bearer", f"token_type is {token.get('token_type')!r}")
    check("id_token" in token, "the token response has no id_token for the openid scope")
    check("refresh_token" in token, "the token response has no refresh_token")
    report["code_exchange"] = True

    step("id_token")
    claims = validate_id_token(
        token["id_token"], jwks, issuer, client_id, nonce, token["access_token"]
    )
    report["id_token"] = {
        "checked": ["signature RS256 with the JWKS", "iss", "aud", "exp", "iat", "nonce", "at_hash"],
        "sub": claims["sub"],
        "aud": claims["aud"],
        "has_sid": "sid" in claims,
    }

    step("userinfo")
    userinfo = client.get(metadata["userinfo_endpoint"], timeout=TIMEOUT)
    check(userinfo.status_code == 200, f"userinfo answered {userinfo.status_code}: {userinfo.text[:300]}")
    userinfo = userinfo.json()
    # Core §5.3.2: the UserInfo sub must be the ID token's.
    check(userinfo.get("sub") == claims["sub"], "userinfo's sub is not the ID token's")
    report["userinfo"] = {"sub": userinfo["sub"], "preferred_username": userinfo.get("preferred_username")}

    step("refresh")
    first_refresh = token["refresh_token"]
    refreshed = client.refresh_token(metadata["token_endpoint"], refresh_token=first_refresh)
    check(refreshed.get("access_token") not in (None, token["access_token"]), "the refresh gave no new access token")
    refresh_token = refreshed.get("refresh_token") or first_refresh
    if "id_token" in refreshed:
        # Core §12.2: a refreshed ID token names the same iss, sub and aud.
        again = JsonWebToken(["RS256"]).decode(
            refreshed["id_token"], key=JsonWebKey.import_key_set(jwks)
        )
        again.validate(leeway=5)
        check(
            (again["iss"], again["sub"], again["aud"]) == (claims["iss"], claims["sub"], claims["aud"]),
            "the refreshed ID token names another iss, sub or aud",
        )
    # The refreshed access token is the RP's from now on: it still reads the user's claims.
    step("userinfo_after_refresh")
    again = client.get(metadata["userinfo_endpoint"], timeout=TIMEOUT)
    check(
        again.status_code == 200,
        f"userinfo with the refreshed access token answered {again.status_code}: {again.text[:300]}",
    )
    check(again.json().get("sub") == claims["sub"], "userinfo's sub changed after the refresh")
    report["refresh"] = {
        "rotated": refresh_token != first_refresh,
        "id_token": "id_token" in refreshed,
        "userinfo": True,
    }

    step("logout")
    if metadata.get("end_session_endpoint") and env.get("RP_LOGOUT") != "revocation":
        # RP-Initiated Logout 1.0 §2: the RP sends the browser there with the ID token.
        params = {"id_token_hint": token["id_token"], "client_id": client_id}
        logout_state = generate_token(16)
        if post_logout:
            params.update(post_logout_redirect_uri=post_logout, state=logout_state)
        answer = browser.get(
            metadata["end_session_endpoint"], params=params, allow_redirects=False, timeout=TIMEOUT
        )
        if post_logout:
            check(answer.status_code in (302, 303), f"end_session answered {answer.status_code}: {answer.text[:300]}")
            back = answer.headers["Location"]
            check(back.startswith(post_logout), f"end_session redirected to {back}")
            back_state = parse_qs(urlsplit(back).query).get("state", [None])[0]
            check(back_state == logout_state, "end_session did not return the logout state")
        else:
            check(answer.status_code == 200, f"end_session answered {answer.status_code}")
        report["logout"] = "end_session_endpoint"
    else:
        client.revoke_token(
            metadata["revocation_endpoint"], token=refresh_token, token_type_hint="refresh_token"
        ).raise_for_status()
        report["logout"] = "revocation_endpoint"

    step("refresh_after_logout")
    try:
        client.refresh_token(metadata["token_endpoint"], refresh_token=refresh_token)
    except OAuthError as error:
        check(error.error == "invalid_grant", f"the refresh after logout failed with {error.error}, not invalid_grant")
    else:
        raise Failure("the refresh token still works after the logout")
    report["refresh_after_logout"] = "invalid_grant"


def main():
    report = {"rp": "authlib", "steps": []}
    try:
        run(os.environ, report)
    except Exception as error:  # noqa: BLE001 - every failure is reported, Authlib's and ours
        message = str(error) if isinstance(error, Failure) else f"{type(error).__name__}: {error}"
        report["failed"] = {"step": (report["steps"] or ["start"])[-1], "error": message}
        print(json.dumps(report, sort_keys=True))
        print(f"authlib RP: {report['failed']['step']}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
