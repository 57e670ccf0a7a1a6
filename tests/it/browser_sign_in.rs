//! Browser sign-in end to end, over real HTTP on port 0: the issuer, the
//! demo resource server with its `/spa` page, and the page's public client
//! registered as the demo registers it. An independent relying party
//! (Authlib) signs in and validates the ID token; then a real Chromium types
//! the credentials into the login page and ends on the demo page showing
//! `/profile`'s answer.

use std::sync::Arc;
use std::time::Duration;

use tessera_issuer::clients::{Client, ClientKind, login_client};
use tessera_verifier::{SystemClock, Verifier, VerifierConfig};

/// The issuer (with its first admin) and the resource server serving `/spa`.
struct Stack {
    _tmp: tempfile::TempDir,
    issuer: String,
    app_origin: String,
    admin_password: String,
}

async fn start() -> Stack {
    start_signing_with("RS256").await
}

/// The stack with an issuer signing with `alg` (RS256, ES256, EdDSA).
async fn start_signing_with(alg: &str) -> Stack {
    let tmp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_origin = format!("http://{}", listener.local_addr().unwrap());
    let issuer = tessera_testkit::stack::start_issuer(tmp.path(), |raw| {
        raw.signing_alg = Some(alg.to_owned());
    })
    .await;
    let db = tessera_issuer::db::Db::connect(&issuer.database_url)
        .await
        .unwrap();
    let page = format!("{app_origin}/spa");
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let client = Client {
        kind: ClientKind::Public,
        grant_types: strings(&["authorization_code", "refresh_token"]),
        scopes: strings(&["openid", "profile", "roles"]),
        default_scope: strings(&["openid", "profile"]),
        redirect_uris: vec![page.clone()],
        post_logout_redirect_uris: vec![page],
        ..login_client(tessera_resource_server::SPA_CLIENT, 0)
    };
    tessera_issuer::clients::check(&client).unwrap();
    db.add_client(&client).await.unwrap();
    let mut config = VerifierConfig::new(issuer.url.clone(), ["tessera"]);
    config.algorithms = vec![alg.to_owned()];
    let verifier = Verifier::start(config, Arc::new(SystemClock)).unwrap();
    assert!(verifier.ready(Duration::from_secs(10)).await);
    tessera_testkit::stack::serve_resource_on(listener, verifier);
    Stack {
        _tmp: tmp,
        issuer: issuer.url.clone(),
        app_origin,
        admin_password: issuer.admin_password,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_signs_in_with_code_and_pkce_and_validates_the_id_token() {
    let Some(python) = crate::support::interop_tool("TESSERA_INTEROP_PYTHON", "Authlib sign-in")
    else {
        return;
    };
    // Every signing algorithm: Authlib checks the ID token's signature and
    // its at_hash (SHA-256's left half, SHA-512's for EdDSA).
    for alg in ["RS256", "ES256", "EdDSA"] {
        authlib_signs_in(&python, alg).await;
    }
}

async fn authlib_signs_in(python: &str, alg: &str) {
    let python = python.to_owned();
    let s = start_signing_with(alg).await;
    let script = crate::support::workspace_root().join("tests/interop/authorization_code.py");
    let args = vec![
        script.display().to_string(),
        s.issuer.clone(),
        tessera_resource_server::SPA_CLIENT.to_owned(),
        format!("{}/spa", s.app_origin),
        "admin".to_owned(),
        s.admin_password.clone(),
    ];
    let seen = crate::support::run_json_tool(python, args).await;
    assert_eq!(seen["code_challenge_methods"], serde_json::json!(["S256"]));
    assert_eq!(seen["login_page_status"], 200, "{seen}");
    assert_eq!(seen["login_page_names_client"], true);
    assert_eq!(seen["wrong_password_status"], 200);
    assert_eq!(seen["wrong_password_says"], true);
    assert_eq!(seen["login_status"], 303);
    assert_eq!(seen["callback_state_matches"], true);
    assert_eq!(seen["callback_iss"], s.issuer);
    assert_eq!(seen["token_type"], "Bearer");
    assert_eq!(seen["scope"], "openid profile roles");
    assert_eq!(seen["has_refresh_token"], true);
    assert_eq!(seen["id_token"]["iss"], s.issuer, "{alg}");
    assert_eq!(seen["id_token_alg"], alg);
    assert_eq!(seen["id_token"]["aud"], tessera_resource_server::SPA_CLIENT);
    assert_eq!(seen["id_token"]["amr"], serde_json::json!(["pwd"]));
    assert_eq!(seen["id_token_has_auth_time"], true);
    assert_eq!(seen["wrong_nonce_refused"], true);
    assert_eq!(seen["replay"], serde_json::json!([400, "invalid_grant"]));
    assert_eq!(seen["sso_status"], 303, "the SSO session answers at once");
    assert_eq!(seen["userinfo"]["preferred_username"], "admin");
    assert_eq!(seen["userinfo"]["roles"], serde_json::json!(["admin"]));
    assert_eq!(seen["refreshed"], true);
    assert_eq!(
        seen["logout"],
        serde_json::json!([303, format!("{}/spa?state=bye", s.app_origin)])
    );
    assert_eq!(seen["refresh_after_logout"], "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_person_signs_in_on_the_login_page_and_sees_their_profile() {
    let Some(node) = crate::support::interop_tool("TESSERA_BROWSER_NODE", "browser sign-in") else {
        return;
    };
    let s = start().await;
    let root = crate::support::workspace_root();
    let shots = root.join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = root.join("tests/browser/sign_in.mjs");
    let args = vec![
        script.display().to_string(),
        s.app_origin.clone(),
        "admin".to_owned(),
        s.admin_password.clone(),
        shots.display().to_string(),
    ];
    let seen = crate::support::run_json_tool(node, args).await;
    assert!(
        seen["login_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/authorize?", s.issuer)),
        "{seen}"
    );
    assert_eq!(seen["login_title"], "Sign in");
    assert_eq!(seen["login_names"], tessera_resource_server::SPA_CLIENT);
    assert_eq!(seen["username_label"], "Username");
    assert_eq!(seen["password_label"], "Password");
    assert_eq!(seen["login_scripts"], 0, "the login page has no script");
    assert_eq!(
        seen["wrong_password_says"],
        "The username or password is incorrect."
    );
    assert_eq!(seen["username_kept"], "admin");
    assert_eq!(seen["back_at"], "/spa", "{seen}");
    assert_eq!(seen["welcome"], "Signed in as admin");
    assert_eq!(seen["profile"]["preferred_username"], "admin");
    assert_eq!(seen["profile"]["scope"], "openid profile roles");
    assert_eq!(seen["signed_in_status"], "Signed in.");
    let cookies = seen["cookies"].as_array().unwrap();
    let sso = cookies
        .iter()
        .find(|c| c["name"] == "tessera_sso")
        .unwrap_or_else(|| panic!("no SSO cookie: {seen}"));
    assert_eq!(sso["httpOnly"], true);
    assert_eq!(sso["sameSite"], "Lax");
    // Plain HTTP on loopback: no Secure (the browser would drop it).
    assert_eq!(sso["secure"], false);
    assert!(
        !cookies.iter().any(|c| c["name"] == "tessera_login"),
        "the pre-login cookie is gone after sign-in: {seen}"
    );
    assert_eq!(seen["refresh_status"], "Refreshed: a new access token.");
    assert_eq!(seen["signed_out_at"], "/spa");
    assert_eq!(seen["sso_cookie_after_sign_out"], false);
    assert_eq!(seen["asked_again"], true);
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
    // The docs show the login page as this test saw it.
    if std::env::var_os("TESSERA_UPDATE_DOCS_SCREENSHOTS").is_some() {
        std::fs::copy(
            shots.join("sign-in-page.png"),
            root.join("docs/images/sign-in-page.png"),
        )
        .unwrap();
    }
}
