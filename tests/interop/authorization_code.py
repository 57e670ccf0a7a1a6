"""Sign in to Tessera as an OpenID Connect relying party built on Authlib
would: OAuth2Session with PKCE (S256) builds the authorization URL from the
issuer's discovery document, a person (played here by `requests`, which keeps
the cookies) fills in the login form, Authlib redeems the code and validates
the ID token (signature against the JWKS, iss, aud, exp, nonce, at_hash), then
calls userinfo, refreshes, and logs out through end_session.

Usage: authorization_code.py ISSUER CLIENT_ID REDIRECT_URI USERNAME PASSWORD
Prints what it saw as one JSON object.
"""
import html.parser
import json
import os
import sys
import urllib.parse
import warnings

# The issuer is plain HTTP on loopback in the tests; Authlib wants HTTPS.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
warnings.simplefilter("ignore")

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

issuer, client_id, redirect_uri, username, password = sys.argv[1:6]
TIMEOUT = 10


class Form(html.parser.HTMLParser):
    """The login page's form: where it posts, and its hidden fields."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action")
        if tag == "input" and attrs.get("type") == "hidden":
            self.fields[attrs["name"]] = attrs.get("value", "")


def login_form(page):
    form = Form()
    form.feed(page.text)
    assert form.action, page.text
    return form


seen = {}
metadata = requests.get(issuer + "/.well-known/openid-configuration", timeout=TIMEOUT).json()
seen["code_challenge_methods"] = metadata["code_challenge_methods_supported"]

session = OAuth2Session(
    client_id,
    scope="openid profile roles",
    redirect_uri=redirect_uri,
    code_challenge_method="S256",
    token_endpoint_auth_method="none",
)
verifier = generate_token(48)
nonce = generate_token(20)
url, state = session.create_authorization_url(
    metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
)

browser = requests.Session()
page = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
seen["login_page_status"] = page.status_code
seen["login_page_names_client"] = f"<strong>{client_id}</strong>" in page.text

# A wrong password first: the same page again, with the one message.
form = login_form(page)
wrong = browser.post(
    form.action,
    data={**form.fields, "username": username, "password": "not the password"},
    allow_redirects=False,
    timeout=TIMEOUT,
)
seen["wrong_password_status"] = wrong.status_code
seen["wrong_password_says"] = "The username or password is incorrect." in wrong.text

form = login_form(wrong)
answer = browser.post(
    form.action,
    data={**form.fields, "username": username, "password": password},
    allow_redirects=False,
    timeout=TIMEOUT,
)
seen["login_status"] = answer.status_code
callback = answer.headers["Location"]
query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
seen["callback_state_matches"] = query.get("state") == state
seen["callback_iss"] = query.get("iss")

token = session.fetch_token(
    metadata["token_endpoint"],
    authorization_response=callback,
    state=state,
    code_verifier=verifier,
    timeout=TIMEOUT,
)
seen["token_type"] = token["token_type"]
seen["scope"] = token.get("scope")
seen["has_refresh_token"] = "refresh_token" in token

# The ID token, as Authlib's OpenID Connect support validates it.
jwks = JsonWebKey.import_key_set(requests.get(metadata["jwks_uri"], timeout=TIMEOUT).json())
claims = jwt.decode(
    token["id_token"],
    jwks,
    claims_cls=CodeIDToken,
    claims_options={"iss": {"essential": True, "value": issuer}},
    claims_params={
        "nonce": nonce,
        "client_id": client_id,
        "access_token": token["access_token"],
    },
)
claims.validate()
seen["id_token"] = {k: claims.get(k) for k in ("iss", "aud", "nonce", "amr", "sid")}
seen["id_token_has_auth_time"] = isinstance(claims.get("auth_time"), int)
seen["id_token_alg"] = claims.header.get("alg")

# A wrong nonce fails Authlib's validation.
wrong_nonce = jwt.decode(
    token["id_token"],
    jwks,
    claims_cls=CodeIDToken,
    claims_params={"nonce": "another", "client_id": client_id},
)
try:
    wrong_nonce.validate()
    seen["wrong_nonce_refused"] = False
except Exception as err:  # authlib.jose.errors.InvalidClaimError
    seen["wrong_nonce_refused"] = "nonce" in str(err)

# The code again: refused.
replay = requests.post(
    metadata["token_endpoint"],
    data={
        "grant_type": "authorization_code",
        "code": query["code"],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": client_id,
    },
    timeout=TIMEOUT,
)
seen["replay"] = [replay.status_code, replay.json().get("error")]

# The first use's tokens were revoked by the replay: sign in again (the SSO
# session answers at once, no form), this time to keep the tokens.
verifier = generate_token(48)
nonce = generate_token(20)
url, state = session.create_authorization_url(
    metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
)
again = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
seen["sso_status"] = again.status_code
token = session.fetch_token(
    metadata["token_endpoint"],
    authorization_response=again.headers["Location"],
    state=state,
    code_verifier=verifier,
    timeout=TIMEOUT,
)

info = session.get(metadata["userinfo_endpoint"], timeout=TIMEOUT)
seen["userinfo"] = info.json()

refreshed = session.refresh_token(metadata["token_endpoint"], timeout=TIMEOUT)
seen["refreshed"] = refreshed["access_token"] != token["access_token"]

bye = browser.get(
    metadata["end_session_endpoint"],
    params={
        "id_token_hint": token["id_token"],
        "post_logout_redirect_uri": redirect_uri,
        "state": "bye",
    },
    allow_redirects=False,
    timeout=TIMEOUT,
)
seen["logout"] = [bye.status_code, bye.headers.get("Location")]
after = requests.post(
    metadata["token_endpoint"],
    data={
        "grant_type": "refresh_token",
        "refresh_token": refreshed["refresh_token"],
        "client_id": client_id,
    },
    timeout=TIMEOUT,
)
seen["refresh_after_logout"] = after.json().get("error")
print(json.dumps(seen))
