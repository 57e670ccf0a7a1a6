//! Cookie sessions end to end, over real HTTP on port 0: the issuer's
//! `/session` endpoints and the demo resource server's cookie-borne tokens,
//! as curl's cookie jar or a browser would use them, and then a real
//! Chromium driving the demo page at `/app`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_bench::Client;
use tessera_verifier::{CookieSource, RevocationConfig, SystemClock, Verifier, VerifierConfig};

/// The issuer and a resource server whose origin it allows; the resource
/// server reads the `tessera_access` cookie and polls the feed every 100 ms.
struct Stack {
    _tmp: tempfile::TempDir,
    issuer: SocketAddr,
    resource: SocketAddr,
    app_origin: String,
    admin_password: String,
}

const FEED_POLL: Duration = Duration::from_millis(100);

async fn start() -> Stack {
    let tmp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_origin = format!("http://{}", listener.local_addr().unwrap());
    let origin = app_origin.clone();
    let issuer = tessera_testkit::stack::start_issuer(tmp.path(), move |c| {
        c.allowed_origins = Some(vec![origin]);
    })
    .await;
    let mut config = VerifierConfig::new(issuer.url.clone(), ["tessera"]);
    let mut feed = RevocationConfig::default();
    feed.poll_interval = FEED_POLL;
    config.revocations = Some(feed);
    config.cookie = Some(CookieSource::new("tessera_access", [app_origin.clone()]));
    let verifier = Verifier::start(config, Arc::new(SystemClock)).unwrap();
    assert!(verifier.ready(Duration::from_secs(10)).await);
    let resource = tessera_testkit::stack::serve_resource_on(listener, verifier);
    Stack {
        _tmp: tmp,
        issuer: issuer.addr,
        resource,
        app_origin,
        admin_password: issuer.admin_password,
    }
}

/// One request: status, body, and the `name=value` of each `Set-Cookie`
/// with its attributes.
struct Answer {
    status: u16,
    body: Vec<u8>,
    set_cookies: Vec<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The value a `Set-Cookie` gives cookie `name`.
    fn cookie(&self, name: &str) -> String {
        self.set_cookies
            .iter()
            .find_map(|c| {
                c.split(';')
                    .next()?
                    .strip_prefix(&format!("{name}="))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.set_cookies))
    }
}

async fn send(to: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> Answer {
    let mut client = Client::connect(to).await.unwrap();
    let (status, body) = client
        .request(method, path, headers, "application/json", body)
        .await
        .unwrap();
    Answer {
        status,
        body,
        set_cookies: client.last_headers("set-cookie"),
    }
}

#[tokio::test]
async fn a_cookie_session_from_sign_in_to_a_revoked_cookie_at_the_resource_server() {
    let s = start().await;
    let origin = format!("Origin: {}", s.app_origin);
    let credentials = serde_json::json!({"username": "admin", "password": s.admin_password});
    let signed = send(
        s.issuer,
        "POST",
        "/session",
        &[&origin],
        &credentials.to_string(),
    )
    .await;
    assert_eq!(
        signed.status,
        200,
        "{}",
        String::from_utf8_lossy(&signed.body)
    );
    assert_eq!(signed.json()["username"], "admin");
    let access = signed.cookie("tessera_access");
    let refresh = signed.cookie("tessera_refresh");
    assert!(!String::from_utf8_lossy(&signed.body).contains(&access));

    // The resource server greets the cookie's user; every route takes it.
    let cookie = format!("Cookie: tessera_access={access}");
    let welcome = send(s.resource, "GET", "/welcome", &[&cookie], "").await;
    assert_eq!(
        (welcome.status, welcome.body.as_slice()),
        (200, &b"Welcome admin!"[..])
    );
    assert_eq!(
        send(s.resource, "GET", "/admin", &[&cookie], "")
            .await
            .status,
        200
    );
    // A cookie and a header together: 400.
    let bearer = format!("Authorization: Bearer {access}");
    assert_eq!(
        send(s.resource, "GET", "/welcome", &[&cookie, &bearer], "")
            .await
            .status,
        400
    );

    // A cross-origin POST with the cookie is refused at the resource server
    // and at the issuer; from the app's origin it goes through.
    let evil = "Origin: https://evil.example";
    let note = r#"{"text":"hi"}"#;
    assert_eq!(
        send(s.resource, "POST", "/notes", &[&cookie, evil], note)
            .await
            .status,
        403
    );
    assert_eq!(
        send(s.resource, "POST", "/notes", &[&cookie, &origin], note)
            .await
            .status,
        201
    );
    let refresh_cookie = format!("Cookie: tessera_refresh={refresh}");
    let forged = send(
        s.issuer,
        "POST",
        "/session/refresh",
        &[&refresh_cookie, evil],
        "",
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(forged.set_cookies.is_empty());

    // Rotation through the cookie.
    let rotated = send(
        s.issuer,
        "POST",
        "/session/refresh",
        &[&refresh_cookie, &origin],
        "",
    )
    .await;
    assert_eq!(rotated.status, 200);
    let refresh2 = rotated.cookie("tessera_refresh");
    assert_ne!(refresh2, refresh);
    let access2 = rotated.cookie("tessera_access");
    let cookie2 = format!("Cookie: tessera_access={access2}");
    assert_eq!(
        send(s.resource, "GET", "/welcome", &[&cookie2], "")
            .await
            .status,
        200
    );

    // Logout clears both cookies; within a poll of the feed the resource
    // server refuses the old access cookie, long before it expires.
    let refresh_cookie2 = format!("Cookie: tessera_refresh={refresh2}");
    let out = send(
        s.issuer,
        "POST",
        "/session/logout",
        &[&refresh_cookie2, &origin],
        "",
    )
    .await;
    assert_eq!(out.status, 204);
    assert_eq!(out.set_cookies.len(), 2);
    assert!(
        out.set_cookies.iter().all(|c| c.contains("Max-Age=0")),
        "{:?}",
        out.set_cookies
    );
    let mut refused = None;
    for _ in 0..50 {
        let answer = send(s.resource, "GET", "/welcome", &[&cookie2], "").await;
        if answer.status == 401 {
            refused = Some(answer.json());
            break;
        }
        tokio::time::sleep(FEED_POLL).await;
    }
    let refused = refused.expect("the old access cookie was still accepted after 50 polls");
    assert_eq!(refused["error_description"], "token revoked");
    let again = send(
        s.issuer,
        "POST",
        "/session/refresh",
        &[&refresh_cookie2, &origin],
        "",
    )
    .await;
    assert_eq!(again.status, 401);
}

#[tokio::test]
async fn in_chromium_the_page_signs_in_welcomes_refreshes_and_signs_out() {
    let Some(node) = crate::support::interop_tool("TESSERA_BROWSER_NODE", "browser test") else {
        return;
    };
    let s = start().await;
    let root = crate::support::workspace_root();
    let shots = root.join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = root.join("tests/browser/session.mjs");
    let args = vec![
        script.display().to_string(),
        s.app_origin.clone(),
        "admin".to_owned(),
        s.admin_password.clone(),
        shots.display().to_string(),
    ];
    let seen = crate::support::run_json_tool(node, args).await;
    assert_eq!(seen["signed_out_at_start"], true, "{seen}");
    assert_eq!(seen["wrong_password_status"], "Wrong username or password.");
    assert_eq!(seen["cookies_after_wrong_password"], 0);
    assert_eq!(seen["welcome"], "Welcome admin!");
    assert!(seen["facts"].as_str().unwrap().contains("admin"), "{seen}");
    // JavaScript never sees a token: both cookies are HttpOnly.
    for key in ["document_cookie_signed_in", "document_cookie_refreshed"] {
        assert_eq!(seen[key], "", "{key}: {seen}");
    }
    let cookies = seen["cookies_signed_in"].as_array().unwrap();
    assert_eq!(cookies.len(), 2, "{seen}");
    for c in cookies {
        assert_eq!(c["httpOnly"], true, "{c}");
        // Plain HTTP on loopback: no Secure (the browser would drop them).
        assert_eq!(c["secure"], false, "{c}");
    }
    let by_name = |name: &str| cookies.iter().find(|c| c["name"] == name).unwrap();
    assert_eq!(by_name("tessera_access")["sameSite"], "Lax");
    assert_eq!(by_name("tessera_access")["path"], "/");
    assert_eq!(by_name("tessera_refresh")["sameSite"], "Strict");
    assert_eq!(by_name("tessera_refresh")["path"], "/session");
    assert_eq!(seen["access_cookie_rotated"], true, "{seen}");
    assert_eq!(seen["note_status"], "Note saved (1 so far).");
    assert_eq!(seen["welcome_after_reload"], "Welcome admin!");
    assert_eq!(seen["signout_status"], "Signed out.");
    assert_eq!(seen["signin_form_back"], true);
    assert_eq!(seen["cookies_after_signout"], 0);
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
}
