//! The one-command demo, as a person would use it: start it, paste the printed
//! commands into a shell, read the statuses, press Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_printed_commands_walk_the_whole_flow_and_ctrl_c_stops_both() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera-demo"))
        .args([
            "--issuer-listen",
            "127.0.0.1:0",
            "--resource-listen",
            "127.0.0.1:0",
        ])
        .arg("--keys-dir")
        .arg(tmp.path().join("keys"))
        .arg("--database")
        .arg(format!("sqlite://{}", tmp.path().join("demo.db").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    // The guide is a few dozen lines; reading stops at its last one.
    for _ in 0..200 {
        let line = lines.next().expect("the demo exited early").unwrap();
        let done = line.starts_with("Ctrl-C stops");
        printed.push(line);
        if done {
            break;
        }
    }
    let text = printed.join("\n");
    assert!(text.contains("demo user demo-admin: password "), "{text}");
    assert!(text.contains("demo user demo-user: password "), "{text}");
    let begin = printed
        .iter()
        .position(|l| l.contains("---- begin ----"))
        .unwrap();
    let end = printed
        .iter()
        .position(|l| l.contains("---- end ----"))
        .unwrap();
    let script = printed[begin..=end].join("\n");

    let stdout = tessera_testkit::process::stdout_of(Command::new("bash").arg("-c").arg(&script));
    let results: Vec<&str> = stdout.lines().collect();
    // /profile JSON, then the statuses in order, then the JWKS.
    assert!(
        results[0].contains("\"preferred_username\":\"demo-admin\""),
        "{stdout}"
    );
    assert_eq!(
        &results[1..7],
        ["200", "403", "200", "204", "400", "401"],
        "{stdout}"
    );
    assert!(results[7].starts_with("{\"keys\":["), "{stdout}");
    // The cookie walk-through: sign-in's facts (no token), the welcome
    // page, refresh, a note from the app's origin and from another, sign
    // out, and the old access cookie refused after a feed poll.
    let facts: serde_json::Value = serde_json::from_str(results[8]).unwrap();
    assert_eq!(
        facts,
        serde_json::json!({"username": "demo-user", "roles": ["user"], "expires_in": 900})
    );
    assert_eq!(results[9], "Welcome demo-user!");
    assert_eq!(
        &results[10..15],
        ["200", "201", "403", "204", "401"],
        "{stdout}"
    );
    // The service walk-through: client credentials read /reports; the
    // admin's token lacks the scope; /me/optional without and with a token.
    let reports: serde_json::Value = serde_json::from_str(results[15]).unwrap();
    assert_eq!(reports["for"], "reports-job", "{stdout}");
    assert_eq!(results[16], "403", "{stdout}");
    assert_eq!(results[17], r#"{"signed_in":false}"#);
    let me: serde_json::Value = serde_json::from_str(results[18]).unwrap();
    assert_eq!(me["preferred_username"], "demo-admin");
    assert_eq!(results.len(), 19, "{stdout}");
    assert!(
        text.contains("/app in a browser"),
        "the page's URL is printed: {text}"
    );
    // The browser sign-in page: printed, served, and its client registered
    // with that page as its redirect URI (the issuer shows its login page
    // for it, naming it, rather than an error).
    let spa = printed
        .iter()
        .find_map(|l| l.strip_prefix("browser sign-in (code + PKCE, OpenID Connect): open "))
        .and_then(|rest| rest.strip_suffix(" in a browser"))
        .unwrap_or_else(|| panic!("no /spa line: {text}"));
    let issuer = printed[0]
        .strip_prefix("tessera-demo: issuer ")
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    let page = tessera_testkit::process::stdout_of(Command::new("curl").args(["-s", spa]));
    assert!(page.contains("<script src=\"/spa/spa.js\""), "{page}");
    let authorize = format!(
        "{issuer}/authorize?response_type=code&client_id=tessera-demo-spa&redirect_uri={spa}\
         &scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
         &code_challenge_method=S256"
    );
    let login = tessera_testkit::process::stdout_of(Command::new("curl").args(["-s", &authorize]));
    assert!(
        login.contains("to continue to <strong>tessera-demo-spa</strong>"),
        "{login}"
    );

    // Ctrl-C: both servers stop cleanly.
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(
        rest.iter().any(|l| l == "tessera-demo: stopped cleanly"),
        "{rest:?}"
    );
}
