// The demo's browser app: authorization code + PKCE against the issuer, then
// /profile with the access token, a refresh, and RP-initiated logout. Plain
// JavaScript, no library: every step of the flow is visible here.
"use strict";

const $ = (id) => document.getElementById(id);
const PENDING = "tessera-demo-sign-in";
let config = null;
let tokens = null;

function status(text, failed = false) {
  $("status").textContent = text;
  $("status").classList.toggle("failed", failed);
}

function show(signedIn) {
  $("signed-out").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
}

const b64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
const redirectUri = () => `${location.origin}/spa`;

// A JWT's payload. The ID token comes straight from the token endpoint, so
// its signature needs no check here (OpenID Connect Core §3.1.3.7); its
// nonce does.
function payload(jwt) {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
}

async function signIn() {
  const verifier = random(32);
  const state = random(16);
  const nonce = random(16);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, nonce }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    scope: "openid profile roles",
    state,
    nonce,
    code_challenge: b64url(digest),
    code_challenge_method: "S256",
  });
  location.assign(`${config.issuer}/authorize?${query}`);
}

async function token(params) {
  const reply = await fetch(`${config.issuer}/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ ...params, client_id: config.client_id }),
  });
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.error || `HTTP ${reply.status}`);
  return body;
}

async function profile() {
  const reply = await fetch("/profile", {
    headers: { Authorization: `Bearer ${tokens.access_token}` },
  });
  if (!reply.ok) throw new Error(`/profile answered ${reply.status}`);
  const answer = await reply.json();
  $("welcome").textContent = `Signed in as ${answer.preferred_username}`;
  $("profile").textContent = JSON.stringify(answer, null, 2);
  show(true);
}

// Back from the issuer: check state and iss, redeem the code, check the nonce.
async function finish(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", "/spa");
  if (params.has("error")) throw new Error(`the issuer said ${params.get("error")}`);
  if (!pending || params.get("state") !== pending.state) throw new Error("state mismatch");
  if (params.get("iss") !== config.issuer) throw new Error("wrong issuer");
  tokens = await token({
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  });
  if (payload(tokens.id_token).nonce !== pending.nonce) throw new Error("nonce mismatch");
  await profile();
  status("Signed in.");
}

async function refresh() {
  const fresh = await token({ grant_type: "refresh_token", refresh_token: tokens.refresh_token });
  const before = tokens.access_token;
  tokens = { ...tokens, ...fresh };
  await profile();
  status(tokens.access_token !== before ? "Refreshed: a new access token." : "Refresh changed nothing.");
}

function signOut() {
  const query = new URLSearchParams({
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: redirectUri(),
    state: "signed-out",
  });
  tokens = null;
  location.assign(`${config.issuer}/end_session?${query}`);
}

const guard = (action) => () =>
  action().catch((err) => status(`Failed: ${err.message}`, true));

$("signin").addEventListener("click", guard(signIn));
$("refresh").addEventListener("click", guard(refresh));
$("signout").addEventListener("click", signOut);

(async () => {
  config = await (await fetch("/app/config.json")).json();
  const params = new URLSearchParams(location.search);
  if (params.has("code") || params.has("error")) {
    await guard(() => finish(params))();
  } else if (params.get("state") === "signed-out") {
    history.replaceState(null, "", "/spa");
    status("Signed out.");
  }
})();
