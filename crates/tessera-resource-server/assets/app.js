// The demo app: sign in, welcome, refresh, sign out, with cookies only.
// Requests to the issuer carry its cookies (credentials: "include"); the
// issuer allows this page's origin (CORS) and checks it (CSRF).
"use strict";

const $ = (id) => document.getElementById(id);
let issuer = "";

function status(text, failed = false) {
  $("status").textContent = text;
  $("status").classList.toggle("failed", failed);
}

function show(signedIn) {
  $("signin").hidden = signedIn;
  $("session").hidden = !signedIn;
  $("cookies").textContent = JSON.stringify(document.cookie);
}

function facts(session) {
  $("facts").textContent =
    `Roles: ${session.roles.join(", ") || "none"}. ` +
    `The access cookie lasts ${session.expires_in} s.`;
}

function toIssuer(path, body) {
  const init = { method: "POST", credentials: "include" };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  return fetch(issuer + path, init);
}

// GET /welcome with the access cookie; true when it answers.
async function welcome() {
  const reply = await fetch("/welcome", { credentials: "same-origin" });
  if (!reply.ok) {
    show(false);
    return false;
  }
  $("welcome").textContent = await reply.text();
  show(true);
  return true;
}

async function refresh() {
  const reply = await toIssuer("/session/refresh");
  if (!reply.ok) {
    show(false);
    status("The session has ended: sign in again.", true);
    return false;
  }
  facts(await reply.json());
  await welcome();
  status("Refreshed: new cookies.");
  return true;
}

$("signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const reply = await toIssuer("/session", {
    username: form.get("username"),
    password: form.get("password"),
  });
  if (reply.ok) {
    facts(await reply.json());
    event.target.reset();
    await welcome();
    status("Signed in.");
  } else if (reply.status === 401) {
    status("Wrong username or password.", true);
  } else if (reply.status === 429) {
    status(`Too many attempts: retry in ${reply.headers.get("Retry-After")} s.`, true);
  } else {
    status(`Sign-in failed (${reply.status}).`, true);
  }
});

$("refresh").addEventListener("click", refresh);

$("note").addEventListener("click", async () => {
  const reply = await fetch("/notes", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text: "hello from the demo page" }),
  });
  const body = await reply.json();
  if (reply.ok) {
    status(`Note saved (${body.notes} so far).`);
  } else {
    status(`Note refused (${reply.status}: ${body.error}).`, true);
  }
});

$("signout").addEventListener("click", async () => {
  const reply = await toIssuer("/session/logout");
  if (reply.status === 204 || reply.status === 401) {
    show(false);
    status(reply.status === 204 ? "Signed out." : "The session had already ended.");
  } else {
    // The session may still be live: say so rather than pretend.
    status(`Sign-out failed (${reply.status}): try again.`, true);
  }
});

(async () => {
  issuer = (await (await fetch("/app/config.json")).json()).issuer;
  // An expired access cookie is renewed once with the refresh cookie.
  if (!(await welcome())) {
    const renewed = await toIssuer("/session/refresh");
    if (renewed.ok) {
      facts(await renewed.json());
      await welcome();
    }
  }
})();
