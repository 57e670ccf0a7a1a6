//! `tessera-issuer users ...` as an operator runs it: a real process, a real
//! SQLite file, passwords only through standard input or a prompt.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use tessera_issuer::db::Db;

use crate::common;

pub(crate) struct Users {
    pub(crate) tmp: tempfile::TempDir,
}

impl Users {
    pub(crate) fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn url(&self) -> String {
        tessera_testkit::pg::test_database_url(self.tmp.path()).unwrap()
    }

    pub(crate) fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_verb("users", args, stdin)
    }

    pub(crate) fn run_verb(&self, command: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera-issuer"))
            .arg(command)
            .args(args)
            .args(["--database", &self.url()])
            .env_remove("TESSERA_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        err
    }

    /// `tessera-issuer <command> <args>` (not a `users` verb) on the same
    /// database, which must succeed: its standard output.
    pub(crate) fn top_level(&self, command: &str, args: &[&str]) -> String {
        tessera_testkit::process::stdout_of(
            Command::new(env!("CARGO_BIN_EXE_tessera-issuer"))
                .arg(command)
                .args(args)
                .args(["--database", &self.url()])
                .env_remove("TESSERA_CONFIG"),
        )
    }

    pub(crate) fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.ok(&["list", "--json"], None))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

#[tokio::test]
async fn add_list_and_the_stored_hash() {
    let u = Users::new();
    let out = u.ok(
        &[
            "add",
            "alice",
            "--role",
            "admin",
            "--role",
            "user",
            "--password-stdin",
        ],
        Some("correct horse battery\n"),
    );
    assert!(out.starts_with("added user alice (id "), "{out}");
    assert!(!out.contains("correct horse"));

    let users = u.list();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["username"], "alice");
    assert_eq!(users[0]["roles"], serde_json::json!(["admin", "user"]));
    assert_eq!(users[0]["disabled"], false);
    let id = users[0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 22, "128 random bits, base64url");
    assert!(users[0].get("password_hash").is_none());

    let table = u.ok(&["list"], None);
    assert!(
        table.lines().nth(1).unwrap().starts_with("alice"),
        "{table}"
    );
    assert!(table.contains("admin,user"));

    // Argon2id with OWASP parameters, never the password itself.
    let db = Db::connect(&u.url()).await.unwrap();
    let creds = db.credentials("alice").await.unwrap().unwrap();
    assert!(
        creds
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        creds.password_hash
    );
    assert_eq!(creds.user.id, id);
}

#[test]
fn passwords_come_from_stdin_or_a_terminal_and_meet_the_policy() {
    let u = Users::new();
    let err = u.fails(&["add", "bob"], None);
    assert!(err.contains("use --password-stdin"), "{err}");
    let err = u.fails(&["add", "bob", "--password-stdin"], Some("short\n"));
    assert!(err.contains("at least 8 characters"), "{err}");
    assert!(u.list().is_empty(), "nothing was added");
    // CRLF from a Windows-made file is not part of the password.
    u.ok(&["add", "bob", "--password-stdin"], Some("long enough\r\n"));
    let err = u.fails(&["add", "bob", "--password-stdin"], Some("long enough\n"));
    assert!(err.contains("exists already"), "{err}");
}

#[test]
fn names_are_checked_and_stored_exactly() {
    let u = Users::new();
    for bad in ["", " padded", "tab\there"] {
        let err = u.fails(&["add", bad, "--password-stdin"], Some("long enough\n"));
        assert!(err.contains("username"), "{bad:?}: {err}");
    }
    let err = u.fails(
        &["add", "carol", "--role", "Admin", "--password-stdin"],
        Some("long enough\n"),
    );
    assert!(err.contains("not a role name"), "{err}");
    for name in ["José", "李小龍", "x'; DROP TABLE users;--"] {
        u.ok(&["add", name, "--password-stdin"], Some("long enough\n"));
    }
    let names: Vec<String> = u
        .list()
        .iter()
        .map(|x| x["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"x'; DROP TABLE users;--".to_owned()));
    assert!(names.contains(&"李小龍".to_owned()));
}

#[tokio::test]
async fn roles_disable_enable_reset_and_delete() {
    let u = Users::new();
    u.ok(
        &["add", "dave", "--password-stdin"],
        Some("first password\n"),
    );
    u.ok(&["set-roles", "dave", "admin", "billing:read"], None);
    assert_eq!(
        u.list()[0]["roles"],
        serde_json::json!(["admin", "billing:read"])
    );
    u.ok(&["set-roles", "dave"], None);
    assert_eq!(u.list()[0]["roles"], serde_json::json!([]));

    u.ok(&["disable", "dave"], None);
    assert_eq!(u.list()[0]["disabled"], true);
    assert!(u.ok(&["list"], None).contains("disabled"));
    u.ok(&["enable", "dave"], None);
    assert_eq!(u.list()[0]["disabled"], false);

    let db = Db::connect(&u.url()).await.unwrap();
    let before = db.credentials("dave").await.unwrap().unwrap().password_hash;
    u.ok(
        &["reset-password", "dave", "--password-stdin"],
        Some("second password\n"),
    );
    let after = db.credentials("dave").await.unwrap().unwrap().password_hash;
    assert_ne!(before, after);

    for args in [
        vec!["disable", "nobody"],
        vec!["set-roles", "nobody", "admin"],
        vec!["delete", "nobody"],
        vec!["reset-password", "nobody", "--password-stdin"],
    ] {
        let err = u.fails(&args, Some("whatever long\n"));
        assert!(err.contains("no user named \"nobody\""), "{args:?}: {err}");
    }
    u.ok(&["delete", "dave"], None);
    assert!(u.list().is_empty());
}

/// Operators' changes to users are in the audit trail, which `tessera-issuer
/// audit` shows (one user's, as JSON or a table).
#[tokio::test]
async fn user_changes_are_audited_and_listed() {
    let u = Users::new();
    u.ok(
        &["add", "alice", "--password-stdin"],
        Some("a long password\n"),
    );
    u.ok(
        &["add", "bob", "--password-stdin"],
        Some("another password\n"),
    );
    u.ok(&["set-roles", "alice", "admin"], None);
    u.ok(&["disable", "alice"], None);
    let audit = |args: &[&str]| u.top_level("audit", args);
    let events: serde_json::Value =
        serde_json::from_str(&audit(&["--user", "alice", "--json"])).unwrap();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["user_added", "user_roles_set", "user_disabled"]);
    let alice_id = u.list()[0]["id"].as_str().unwrap().to_owned();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["user_id"] == alice_id.as_str())
    );
    assert_eq!(events[1]["detail"]["roles"], serde_json::json!(["admin"]));
    let table = audit(&[]);
    assert_eq!(table.lines().count(), 1 + 4, "{table}");
    assert!(table.lines().nth(2).unwrap().contains("user_added"));
    assert!(!table.contains("a long password"));
}

/// Disabling a user, resetting a password and the operator's `revoke-*`
/// commands end sessions and put what they cover on the revocation list.
#[tokio::test]
async fn disable_reset_and_revoke_commands_fill_the_revocation_list() {
    use tessera_issuer::db::NewSession;
    let u = Users::new();
    u.ok(
        &["add", "alice", "--password-stdin"],
        Some("a long password\n"),
    );
    u.ok(
        &["add", "bob", "--password-stdin"],
        Some("another password\n"),
    );
    let db = Db::connect(&u.url()).await.unwrap();
    let id = |name: &str| {
        u.list().iter().find(|x| x["username"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (alice, bob) = (id("alice"), id("bob"));
    for (sid, user) in [("s1", &alice), ("s2", &alice), ("s3", &bob)] {
        let session = NewSession {
            id: sid,
            user_id: user,
            client_id: "tessera",
            scope: "profile",
            sso: None,
        };
        db.start_session(&session, Some(sid.as_bytes()), 1)
            .await
            .unwrap();
    }
    let out = u.ok(&["disable", "alice"], None);
    assert!(out.contains("2 session(s) ended"), "{out}");
    assert!(!db.session_active("s1").await.unwrap());
    assert!(db.session_active("s3").await.unwrap(), "bob's untouched");

    let cli = |args: &[&str]| u.top_level(args[0], &args[1..]);
    cli(&["revoke-session", "s3"]);
    assert!(!db.session_active("s3").await.unwrap());
    cli(&["revoke-token", "-a-jti-starting-with-a-dash"]);
    cli(&["revoke-user", "bob"]);
    u.ok(
        &["reset-password", "alice", "--password-stdin"],
        Some("a new long password\n"),
    );

    let now = i64::MAX / 2;
    let entries = db.revocations_since(0, 0).await.unwrap();
    let listed: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.kind.name(), e.value.as_str(), e.why.as_str()))
        .collect();
    // Alice's second user entry (the reset) replaces her first, or is
    // covered by it when both fall in one second: one entry either way.
    let is_alice = |(kind, value, _): &&(&str, &str, &str)| *kind == "sub" && *value == alice;
    assert_eq!(listed.iter().filter(is_alice).count(), 1, "{listed:?}");
    let rest: Vec<_> = listed.iter().filter(|e| !is_alice(e)).copied().collect();
    assert_eq!(
        rest,
        [
            // Disabling ends her sessions and revokes them by sid as well.
            ("sid", "s1", "user_disabled"),
            ("sid", "s2", "user_disabled"),
            ("sid", "s3", "operator"),
            ("jti", "-a-jti-starting-with-a-dash", "operator"),
            // Bob's one session was already revoked: only his user entry.
            ("sub", bob.as_str(), "operator"),
        ]
    );
    let entries: Vec<_> = entries.iter().filter(|e| e.kind.name() == "sub").collect();
    // A user entry covers tokens issued before it was made; all entries expire.
    assert!(entries.iter().all(|e| e.issued_before.is_some()));
    assert!(db.revocations_since(0, now).await.unwrap().is_empty());
}

/// Deleting a user and taking a role away used to revoke nothing; and the
/// CLI's own `access_token_lifetime` decided how long an entry lived. Now
/// both revoke, for the longest lifetime the service recorded.
#[tokio::test]
async fn delete_and_role_removal_revoke_for_the_recorded_lifetime() {
    use tessera_issuer::db::NewSession;
    let u = Users::new();
    u.ok(
        &["add", "carol", "--password-stdin"],
        Some("a long password\n"),
    );
    u.ok(
        &["add", "dave", "--password-stdin"],
        Some("another password\n"),
    );
    let db = Db::connect(&u.url()).await.unwrap();
    // As a service issuing two-hour tokens records at start.
    let (two_hours, day) = (
        std::time::Duration::from_secs(7_200),
        std::time::Duration::from_secs(86_400),
    );
    db.record_lifetimes(two_hours, day, day).await.unwrap();
    let carol = u.list().iter().find(|x| x["username"] == "carol").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dave = u.list().iter().find(|x| x["username"] == "dave").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Adding roles takes nothing away.
    let out = u.ok(&["set-roles", "carol", "admin", "billing"], None);
    assert!(!out.contains("revoked"), "{out}");
    assert!(db.revocations_since(0, 0).await.unwrap().is_empty());
    // Taking one away revokes her tokens, for two hours (plus leeway), not
    // the one minute this CLI run is configured with.
    let out = u.ok(
        &[
            "set-roles",
            "carol",
            "billing",
            "--access-token-lifetime",
            "1m",
        ],
        None,
    );
    assert!(out.contains("revoked (roles removed: admin)"), "{out}");
    let entries = db.revocations_since(0, 0).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].kind.name(), entries[0].value.as_str()),
        ("sub", carol.as_str())
    );
    assert_eq!(entries[0].expires_at - entries[0].created_at, 7_200 + 300);

    let session = NewSession {
        id: "s9",
        user_id: &dave,
        client_id: "tessera",
        scope: "profile",
        sso: None,
    };
    db.start_session(&session, Some(b"s9"), 1).await.unwrap();
    u.ok(&["delete", "dave"], None);
    let listed: Vec<(String, String, String)> = db
        .revocations_since(entries[0].id, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind.name().to_owned(), e.value, e.why))
        .collect();
    let own = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        listed,
        [
            own("sub", &dave, "user_deleted"),
            own("sid", "s9", "user_deleted")
        ]
    );
    assert!(u.list().iter().all(|x| x["username"] != "dave"));
}

/// `introspection-client` prints a secret and the configuration entry for
/// it; an issuer started with that entry answers `/introspect` to that
/// secret, and to nothing else.
#[tokio::test]
async fn an_introspection_client_made_by_the_cli_can_introspect() {
    let u = Users::new();
    let out = u.top_level("introspection-client", &["orders-api"]);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client secret (give it to the caller; shown once): "))
        .unwrap()
        .to_owned();
    let stanza = &out[out.find("[[introspection_clients]]").unwrap()..];
    assert!(!stanza.contains(&secret), "the file gets only the hash");
    let config = u.tmp.path().join("issuer.toml");
    std::fs::write(&config, stanza).unwrap();
    let issuer = common::IssuerProcess::start(
        common::bin(),
        u.tmp.path(),
        &["--config", config.to_str().unwrap()],
    );
    let password = issuer.admin_password.clone().unwrap();
    let token = common::login(issuer.addr, "admin", &password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ask = |secret: String| {
        let token = token.clone();
        async move {
            post_as(
                issuer.addr,
                "orders-api",
                &secret,
                "/introspect",
                &format!("token={token}"),
            )
            .await
        }
    };
    let (status, body) = ask(secret.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["username"], "admin");
    let (status, body) = ask(format!("{secret}x")).await;
    assert_eq!(status, 401, "{body}");
}

/// `tessera-issuer clients ...` against a running issuer's database: a
/// registered confidential client gets tokens with its own scope and
/// audience, only with its current secret, and none once disabled; the CLI
/// refuses settings that do not fit together and never prints a stored secret.
#[tokio::test]
async fn clients_registered_by_the_cli_get_exactly_what_they_were_registered_for() {
    let u = Users::new();
    let clients = |args: &[&str], stdin: Option<&str>| {
        let out = u.run_verb("clients", args, stdin);
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let issuer = common::IssuerProcess::start(common::bin(), u.tmp.path(), &[]);
    let (code, out, err) = clients(
        &[
            "add",
            "backoffice",
            "--confidential",
            "--grant",
            "password",
            "--scope",
            "orders:read",
            "--scope",
            "orders:write",
            "--default-scope",
            "orders:read",
            "--audience",
            "orders-api",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client secret (shown once): "))
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 43, "256 random bits");
    // Listed and shown without the secret or its hash; the login client the
    // first start registered is there too.
    let (_, listed, _) = clients(&["list", "--json"], None);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["backoffice", "tessera-web"]);
    let (_, shown, _) = clients(&["show", "backoffice", "--json"], None);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["type"], "confidential");
    assert_eq!(
        shown["scopes"],
        serde_json::json!(["orders:read", "orders:write"])
    );
    assert!(!shown.to_string().contains(&secret));
    assert!(shown.get("secret_sha256").is_none());
    // Settings that do not fit together, and short secrets, are refused.
    for (args, stdin) in [
        (
            vec!["add", "x1", "--scope", "a", "--default-scope", "b"],
            None,
        ),
        (vec!["add", "x2", "--public", "--introspect"], None),
        (vec!["add", "x3", "--grant", "implicit"], None),
        (vec!["add", "x4", "--secret-stdin"], Some("too short\n")),
        (vec!["add", "backoffice"], None),
        (vec!["update", "nobody", "--disable"], None),
    ] {
        let (code, _, err) = clients(&args, stdin);
        assert_eq!(code, Some(1), "{args:?} should fail");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }

    let (addr, password) = (issuer.addr, issuer.admin_password.clone().unwrap());
    let password = password.as_str();
    let token = |secret: String, scope: &'static str| async move {
        let form = format!("grant_type=password&username=admin&password={password}{scope}");
        post_as(addr, "backoffice", &secret, "/token", &form).await
    };
    let (status, body) = token(secret.clone(), "").await;
    assert_eq!(status, 200, "{body}");
    let claims = common::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], "backoffice");
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["aud"], "orders-api");
    assert!(
        body.get("refresh_token").is_none(),
        "not allowed to refresh"
    );
    let (status, body) = token(secret.clone(), "&scope=admin").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &serde_json::json!("invalid_scope"))
    );

    // A new secret from standard input: the old one keeps working for the
    // grace (24 hours unless told), so services move over without downtime.
    let new_secret = "a-new-secret-of-forty-characters-0123456";
    let (code, out, err) = clients(
        &["rotate-secret", "backoffice", "--secret-stdin"],
        Some(&format!("{new_secret}\n")),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains(new_secret));
    assert!(out.contains("old secret stays valid for 1day"), "{out}");
    // Within the registry's one-second reload (bounded: 20 × 300 ms). Each
    // refusal before it counts as a failure for this client and address,
    // so the polls are spaced: at most four, and five are free.
    let mut new_works = false;
    for _ in 0..20 {
        if token(new_secret.to_owned(), "").await.0 == 200 {
            new_works = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(new_works, "the new secret does not work");
    assert_eq!(
        token(secret.clone(), "").await.0,
        200,
        "the old one, in its grace"
    );
    let (_, shown, _) = clients(&["show", "backoffice"], None);
    assert!(shown.contains("old secret     valid until"), "{shown}");
    // Rotated again with no grace: both earlier secrets stop at once.
    let newest = "the-newest-secret-of-forty-characters-01";
    let (code, out, err) = clients(
        &[
            "rotate-secret",
            "backoffice",
            "--grace",
            "0s",
            "--secret-stdin",
        ],
        Some(&format!("{newest}\n")),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("the old secret no longer works"), "{out}");
    let mut old_refused = false;
    for _ in 0..20 {
        if token(new_secret.to_owned(), "").await.0 == 401 {
            old_refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(old_refused, "the previous secret still works");
    let new_secret = newest;
    assert_eq!(token(new_secret.to_owned(), "").await.0, 200);

    // A service that signs its assertions: registered with its public keys
    // (a private key is refused), shown by kid, no secret generated.
    let keys = tessera_keyring::KeyDir::new(u.tmp.path().join("client-keys"));
    keys.init(tessera_keyring::DEFAULT_BITS).unwrap();
    let signer_kid = keys.load().unwrap().signer().kid().to_owned();
    let jwks_file = u.tmp.path().join("reports-job.jwks.json");
    let jwks = serde_json::json!({"keys": [keys.load().unwrap().signer().jwk()]});
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let jwks_arg = jwks_file.to_str().unwrap();
    let mut private = jwks.clone();
    private["keys"][0]["d"] = serde_json::json!("AQAB");
    let private_file = u.tmp.path().join("private.jwks.json");
    std::fs::write(&private_file, private.to_string()).unwrap();
    let (code, _, err) = clients(
        &["add", "leaky", "--jwks", private_file.to_str().unwrap()],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("private key"), "{err}");
    let (code, out, err) = clients(
        &[
            "add",
            "reports-job",
            "--grant",
            "client_credentials",
            "--scope",
            "reports:read",
            "--jwks",
            jwks_arg,
            "--token-lifetime",
            "5m",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("client secret"), "{out}");
    let (_, shown, _) = clients(&["show", "reports-job"], None);
    assert!(shown.contains("private_key_jwt"), "{shown}");
    assert!(shown.contains(&signer_kid), "{shown}");
    assert!(shown.contains("300s"), "{shown}");
    let (code, _, err) = clients(&["rotate-secret", "reports-job"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("no secret"), "{err}");

    // Disabled: refused, as an unknown client is.
    let (code, _, err) = clients(&["update", "backoffice", "--disable"], None);
    assert_eq!(code, Some(0), "{err}");
    let mut refused = None;
    for _ in 0..50 {
        let (status, body) = token(new_secret.to_owned(), "").await;
        if status != 200 {
            refused = Some((status, body["error"].clone()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(refused, Some((401, serde_json::json!("invalid_client"))));
    let (code, _, _) = clients(&["remove", "backoffice"], None);
    assert_eq!(code, Some(0));
    let (_, listed, _) = clients(&["list"], None);
    assert!(!listed.contains("backoffice"), "{listed}");
    assert!(listed.contains("tessera-web"), "{listed}");
}

/// `POST path` with a form, the client authenticated with HTTP Basic, on a
/// new connection: the status and the JSON answer.
async fn post_as(
    addr: std::net::SocketAddr,
    client_id: &str,
    secret: &str,
    path: &str,
    form: &str,
) -> (u16, serde_json::Value) {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    let mut c = tessera_bench::Client::connect(addr).await.unwrap();
    let auth = format!("Authorization: Basic {basic}");
    let (status, body) = c
        .request(
            "POST",
            path,
            &[&auth],
            "application/x-www-form-urlencoded",
            form,
        )
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}
