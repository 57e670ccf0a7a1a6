"""Read an issuer's RFC 8414 metadata with Authlib, as an OAuth client library
would, from both well-known locations; validate it, and check it names the
issuer and its endpoints.

Usage: rfc8414_metadata.py ISSUER
Prints "ok" and exits 0, or prints the error and exits 1.
"""
import json
import sys
import urllib.request

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

issuer = sys.argv[1]
try:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        with urllib.request.urlopen(issuer + path, timeout=10) as response:
            metadata = AuthorizationServerMetadata(json.load(response))
        metadata.validate()
        assert metadata["issuer"] == issuer, metadata["issuer"]
        for endpoint in ("jwks_uri", "token_endpoint", "revocation_endpoint"):
            assert metadata[endpoint].startswith(issuer + "/"), (endpoint, metadata[endpoint])
        assert "refresh_token" in metadata["grant_types_supported"]
except Exception as error:  # noqa: BLE001 - the test reads the message
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)
print("ok")
