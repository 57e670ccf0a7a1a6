"""Get a token for a service client with Authlib's OAuth2Session and its
PrivateKeyJWT (RFC 7523), as a Python backend holding a private key would:
the client-credentials grant at the token endpoint read from the issuer's
RFC 8414 metadata, twice (each request signs a new assertion).

Usage: private_key_jwt.py ISSUER CLIENT_ID PRIVATE_KEY_PEM_FILE SCOPE
Prints [{"access_token", "scope", "expires_in"}, ...] as JSON.
"""
import json
import sys
import urllib.request

from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT

issuer, client_id, key_file, scope = sys.argv[1:5]
with urllib.request.urlopen(issuer + "/.well-known/oauth-authorization-server", timeout=10) as r:
    metadata = json.load(r)
assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"], metadata
assert "RS256" in metadata["token_endpoint_auth_signing_alg_values_supported"], metadata
endpoint = metadata["token_endpoint"]
with open(key_file) as f:
    private_key = f.read()
session = OAuth2Session(
    client_id, private_key, token_endpoint_auth_method="private_key_jwt", scope=scope
)
session.register_client_auth_method(PrivateKeyJWT(endpoint))
tokens = []
for _ in range(2):
    token = session.fetch_token(endpoint, grant_type="client_credentials", timeout=10)
    tokens.append({
        "access_token": token["access_token"],
        "scope": token.get("scope"),
        "expires_in": token.get("expires_in"),
    })
print(json.dumps(tokens))
