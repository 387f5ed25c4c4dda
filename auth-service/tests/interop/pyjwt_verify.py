"""Verifies an access token issued by auth-service with an independent implementation.

PyJWT is fed only the issuer's JWKS URL: it selects the key by `kid`, checks the RS256
signature, `iss`, `aud` and `exp`, and prints the verified claims as JSON on stdout.

Usage: python3 pyjwt_verify.py JWKS_URL TOKEN ISSUER AUDIENCE
"""

import json
import sys

import jwt


def main() -> int:
    jwks_url, token, issuer, audience = sys.argv[1:5]
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        print(f"unexpected typ: {header.get('typ')!r}", file=sys.stderr)
        return 1
    signing_key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    print(json.dumps({"kid": header["kid"], "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
