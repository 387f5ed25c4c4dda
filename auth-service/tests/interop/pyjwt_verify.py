"""Verifies an access token issued by auth-service with an independent implementation.

PyJWT is fed only the issuer's JWKS URL: it selects the key by `kid`, checks the signature
with the one algorithm given (RS256 unless told: ES256, EdDSA), `iss`, `aud` and `exp`, and
prints the verified claims and the JWK's `alg` as JSON on stdout.

Usage: python3 pyjwt_verify.py JWKS_URL TOKEN ISSUER AUDIENCE [ALG]
"""

import json
import sys

import jwt


def main() -> int:
    jwks_url, token, issuer, audience = sys.argv[1:5]
    alg = sys.argv[5] if len(sys.argv) > 5 else "RS256"
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        print(f"unexpected typ: {header.get('typ')!r}", file=sys.stderr)
        return 1
    signing_key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[alg],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    jwk_alg = signing_key._jwk_data.get("alg")
    print(json.dumps({"kid": header["kid"], "alg": header["alg"], "jwk_alg": jwk_alg, "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
