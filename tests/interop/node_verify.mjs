// Verify a Tessera access token the way Node services do, two ways:
//  - `jose`: createRemoteJWKSet on our jwks_uri + jwtVerify (ALG, iss, aud, typ);
//  - `jsonwebtoken` + `jwks-rsa`: the stack of the usual Express tutorials
//    (jsonwebtoken 9 knows RS256 and ES256, not EdDSA).
// Usage: node node_verify.mjs JWKS_URI ISSUER AUDIENCE TOKEN [ALG]
// ALG is RS256 unless given (ES256, EdDSA).
// Prints {"jose": {...}, "jsonwebtoken": {...}}, each the claims or {"error": ...}.
import { createRemoteJWKSet, jwtVerify } from "jose";
import jsonwebtoken from "jsonwebtoken";
import jwksRsa from "jwks-rsa";

const [jwksUri, issuer, audience, token, alg = "RS256"] = process.argv.slice(2);
const result = {};

try {
  const jwks = createRemoteJWKSet(new URL(jwksUri));
  const { payload } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    algorithms: [alg],
    typ: "at+jwt",
  });
  result.jose = payload;
} catch (error) {
  result.jose = { error: `${error.code ?? error.name}: ${error.message}` };
}

try {
  const client = jwksRsa({ jwksUri, cache: true });
  const { header } = jsonwebtoken.decode(token, { complete: true });
  const key = await client.getSigningKey(header.kid);
  result.jsonwebtoken = jsonwebtoken.verify(token, key.getPublicKey(), {
    algorithms: [alg],
    issuer,
    audience,
  });
} catch (error) {
  result.jsonwebtoken = { error: `${error.name}: ${error.message}` };
}

console.log(JSON.stringify(result));
