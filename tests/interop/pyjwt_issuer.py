"""A foreign issuer: an RSA key (or, with ALG ES256, a P-256 key) made with
`cryptography`, its JWKS and RFC 8414 metadata served on 127.0.0.1 (port 0),
and an access token signed with PyJWT.

Usage: pyjwt_issuer.py AUDIENCE [ALG]
Prints one JSON line {"issuer", "token"}, then serves until standard input closes.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

audience = sys.argv[1]
algorithm = sys.argv[2] if len(sys.argv) > 2 else "RS256"
if algorithm == "ES256":
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
else:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
jwk.update(kid="py-1", use="sig", alg=algorithm)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        base = f"http://127.0.0.1:{self.server.server_port}"
        if self.path == "/.well-known/jwks.json":
            body = {"keys": [jwk]}
        elif self.path == "/.well-known/oauth-authorization-server":
            body = {"issuer": base, "jwks_uri": f"{base}/.well-known/jwks.json"}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "max-age=300")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
base = f"http://127.0.0.1:{server.server_port}"
now = int(time.time())
claims = {
    "iss": base,
    "sub": "py-user",
    "aud": audience,
    "iat": now,
    "nbf": now,
    "exp": now + 300,
    "jti": "py-jti-1",
    "roles": ["admin"],
    "preferred_username": "python",
}
token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": "py-1", "typ": "at+jwt"})
print(json.dumps({"issuer": base, "token": token}), flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # until the test closes our standard input
server.shutdown()
