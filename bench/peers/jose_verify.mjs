// Verifies one token with node's `jose` for a given time, the way a Node.js service would
// (key imported once, issuer, audience, algorithm and typ checked on every call), and prints
// {"ops": N, "seconds": S}. Run by `cpubench`; the input file holds token, jwk, issuer,
// audience and seconds.
import { readFileSync } from "node:fs";
import { importJWK, jwtVerify } from "jose";

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const key = await importJWK(input.jwk, "RS256");
const options = {
  issuer: input.issuer,
  audience: input.audience,
  algorithms: ["RS256"],
  typ: "at+jwt",
};

// Refuse to measure a verifier that does not accept the token.
await jwtVerify(input.token, key, options);

const deadline = process.hrtime.bigint() + BigInt(Math.round(input.seconds * 1e9));
const start = process.hrtime.bigint();
let ops = 0;
let now = start;
while (now < deadline) {
  for (let i = 0; i < 100; i++) {
    await jwtVerify(input.token, key, options);
  }
  ops += 100;
  now = process.hrtime.bigint();
}
console.log(JSON.stringify({ ops, seconds: Number(now - start) / 1e9 }));
