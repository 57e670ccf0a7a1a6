//! The operator's side of browser sign-in, through the real CLI: registering
//! a browser client (redirect and post-logout URIs, third party), the checks
//! on it, and listing and withdrawing a user's consent.

use tessera_issuer::db::{Db, NewSession};

use crate::users_cli::Users;

#[tokio::test]
async fn browser_clients_and_consents_from_the_command_line() {
    let u = Users::new();
    let clients = |args: &[&str]| {
        let out = u.run_verb("clients", args, None);
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = clients(&[
        "add",
        "partner",
        "--public",
        "--third-party",
        "--grant",
        "authorization_code",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--redirect-uri",
        "https://partner.example/cb",
        "--post-logout-redirect-uri",
        "https://partner.example/",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("added public client partner"), "{out}");
    let (_, shown, _) = clients(&["show", "partner", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["third_party"], true);
    assert_eq!(
        shown["grant_types"],
        serde_json::json!(["authorization_code"])
    );
    assert_eq!(
        shown["post_logout_redirect_uris"],
        serde_json::json!(["https://partner.example/"])
    );
    let (_, text, _) = clients(&["show", "partner"]);
    assert!(text.contains("third"), "{text}");
    // A code client needs a redirect URI; a redirect URI must be https (or
    // loopback http) without a fragment; so must a post-logout one.
    for bad in [
        vec![
            "add",
            "nowhere",
            "--public",
            "--grant",
            "authorization_code",
        ],
        vec![
            "add",
            "plain",
            "--public",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "http://partner.example/cb",
        ],
        vec![
            "update",
            "partner",
            "--post-logout-redirect-uri",
            "https://partner.example/#bye",
        ],
    ] {
        let (code, _, err) = clients(&bad);
        assert_eq!(code, Some(1), "{bad:?}");
        assert!(err.contains("redirect URI"), "{bad:?}: {err}");
    }
    // A new client gets no password grant unless asked.
    let (_, _, _) = clients(&["add", "plain-api", "--public"]);
    let (_, shown, _) = clients(&["show", "plain-api", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["grant_types"], serde_json::json!([]));
    // --first-party takes the consent page away again.
    let (code, _, err) = clients(&["update", "partner", "--first-party"]);
    assert_eq!(code, Some(0), "{err}");
    let (_, shown, _) = clients(&["show", "partner", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&shown).unwrap()["third_party"],
        false
    );

    // A consent alice gave, and her session through it.
    u.ok(
        &["add", "alice", "--password-stdin"],
        Some("a long password\n"),
    );
    let db = Db::connect(&u.url()).await.unwrap();
    let alice = u.list()[0]["id"].as_str().unwrap().to_owned();
    db.grant_consent(&alice, "partner", &["openid".into(), "profile".into()], 1)
        .await
        .unwrap();
    let session = NewSession {
        id: "s-partner",
        user_id: &alice,
        client_id: "partner",
        scope: "openid profile",
        sso: None,
    };
    db.start_session(&session, Some(b"s-partner"), 1)
        .await
        .unwrap();
    let listed = u.ok(&["consents", "alice"], None);
    assert!(
        listed.contains("partner") && listed.contains("openid,profile"),
        "{listed}"
    );
    let out = u.ok(&["withdraw-consent", "alice", "partner"], None);
    assert!(out.contains("consent to partner withdrawn"), "{out}");
    assert!(out.contains("1 session(s) with partner ended"), "{out}");
    assert!(!db.session_active("s-partner").await.unwrap());
    assert_eq!(db.consent(&alice, "partner").await.unwrap(), None);
    let again = u.ok(&["withdraw-consent", "alice", "partner"], None);
    assert!(
        again.contains("had not allowed partner anything"),
        "{again}"
    );
    let err = u.fails(&["consents", "nobody"], None);
    assert!(err.contains("nobody"), "{err}");
}
