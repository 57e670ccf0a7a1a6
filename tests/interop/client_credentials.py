"""Get a token for a service client with Authlib's OAuth2Session, as a Python
backend would: the client-credentials grant at the issuer's token endpoint
(read from its RFC 8414 metadata), authenticating with METHOD
(client_secret_basic or client_secret_post).

Usage: client_credentials.py ISSUER CLIENT_ID CLIENT_SECRET METHOD SCOPE
Prints {"access_token", "scope", "expires_in", "refresh_token"} as JSON.
"""
import json
import sys
import urllib.request

from authlib.integrations.requests_client import OAuth2Session

issuer, client_id, secret, method, scope = sys.argv[1:6]
with urllib.request.urlopen(issuer + "/.well-known/oauth-authorization-server", timeout=10) as r:
    metadata = json.load(r)
assert "client_credentials" in metadata["grant_types_supported"], metadata
assert method in metadata["token_endpoint_auth_methods_supported"], metadata
session = OAuth2Session(client_id, secret, token_endpoint_auth_method=method, scope=scope)
token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials", timeout=10)
print(json.dumps({
    "access_token": token["access_token"],
    "scope": token.get("scope"),
    "expires_in": token.get("expires_in"),
    "refresh_token": token.get("refresh_token"),
}))
