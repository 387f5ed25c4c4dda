"""Verifies one token with PyJWT for a given time, the way a Python service would (key parsed
once, issuer, audience and algorithm checked on every call), and prints {"ops": N, "seconds": S}.
Run by `cpubench`; the input file holds token, jwk, issuer, audience and seconds."""

import json
import sys
import time

import jwt
from jwt.algorithms import RSAAlgorithm

with open(sys.argv[1], encoding="utf-8") as f:
    data = json.load(f)
key = RSAAlgorithm.from_jwk(json.dumps(data["jwk"]))
token = data["token"]
issuer = data["issuer"]
audience = data["audience"]


def verify():
    jwt.decode(token, key, algorithms=["RS256"], issuer=issuer, audience=audience)
    # PyJWT has no typ option: check it as a service would.
    if jwt.get_unverified_header(token).get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
        raise ValueError("typ")


verify()  # refuse to measure a verifier that does not accept the token
start = time.perf_counter()
deadline = start + data["seconds"]
ops = 0
now = start
while now < deadline:
    for _ in range(100):
        verify()
    ops += 100
    now = time.perf_counter()
print(json.dumps({"ops": ops, "seconds": now - start}))
