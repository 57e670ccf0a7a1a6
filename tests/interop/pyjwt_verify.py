"""Verify a Tessera access token the way a Python service would: PyJWT's
PyJWKClient on the issuer's jwks_uri, one algorithm (RS256 unless ALG names
ES256 or EdDSA), with iss/aud/exp checks.

Usage: pyjwt_verify.py JWKS_URI ISSUER AUDIENCE TOKEN [ALG]
Prints the claims as JSON and exits 0, or prints the error and exits 1.
"""
import json
import sys

import jwt

jwks_uri, issuer, audience, token = sys.argv[1:5]
algorithm = sys.argv[5] if len(sys.argv) > 5 else "RS256"
try:
    signing_key = jwt.PyJWKClient(jwks_uri).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[algorithm],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
except Exception as error:  # noqa: BLE001 - the test reads the message
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)
print(json.dumps(claims))
