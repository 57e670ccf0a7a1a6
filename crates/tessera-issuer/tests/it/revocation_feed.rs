//! Revocation reaching resource servers: an issuer, a resource server whose
//! verifier follows the issuer's signed revocation feed, and the operator CLI,
//! all over real HTTP on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tessera_bench::Client;
use tessera_verifier::{
    Clock, ManualClock, OutagePolicy, RevocationConfig, SystemClock, Verifier, VerifierConfig,
};

/// A verifier of `issuer_url`'s tokens that follows its feed (at `feed_url`
/// if given), polling every `poll`.
fn follower(
    issuer_url: &str,
    feed_url: Option<String>,
    poll: Duration,
    on_outage: OutagePolicy,
    clock: Arc<dyn Clock>,
) -> Verifier {
    let mut feed = RevocationConfig::default();
    feed.url = feed_url;
    feed.poll_interval = poll;
    feed.max_outage = Duration::from_secs(60);
    feed.on_outage = on_outage;
    let mut config = VerifierConfig::new(issuer_url, ["tessera"]);
    config.revocations = Some(feed);
    Verifier::start(config, clock).unwrap()
}

/// A resource server whose verifier follows the issuer's feed every `poll`
/// (keep going on outage), once it has keys and the feed's first answer.
async fn resource_server(issuer_url: &str, poll: Duration) -> (Verifier, SocketAddr) {
    let verifier = follower(
        issuer_url,
        None,
        poll,
        OutagePolicy::KeepGoing,
        Arc::new(SystemClock),
    );
    let resource = common::serve_resource(verifier.clone()).await;
    assert!(verifier.ready(Duration::from_secs(5)).await);
    (verifier, resource)
}

/// `GET /profile`: the status and the `WWW-Authenticate` challenge.
async fn profile(resource: SocketAddr, token: &str) -> (u16, String) {
    let mut c = Client::connect(resource).await.unwrap();
    let auth = format!("Authorization: Bearer {token}");
    let (status, _) = c.get("/profile", &[&auth]).await.unwrap();
    (
        status,
        c.last_header("www-authenticate").unwrap_or_default(),
    )
}

async fn access_token(issuer: SocketAddr, username: &str, password: &str) -> String {
    common::login(issuer, username, password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls `/profile` with `token` until it is refused, at most `limit`; how
/// long that took, and the challenge.
async fn refused_within(resource: SocketAddr, token: &str, limit: Duration) -> (Duration, String) {
    let started = tokio::time::Instant::now();
    while started.elapsed() < limit {
        let (status, challenge) = profile(resource, token).await;
        if status == 401 {
            return (started.elapsed(), challenge);
        }
        assert_eq!(status, 200, "accepted or refused, nothing else");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("still accepted after {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_logout_the_resource_server_refuses_the_access_token_within_one_poll() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = common::start_issuer(tmp.path(), |_| {}).await;
    let poll = Duration::from_millis(300);
    let (verifier, resource) = resource_server(&issuer.url, poll).await;

    let password = &issuer.admin_password;
    let kept = access_token(issuer.addr, "admin", password).await;
    let logged_out = access_token(issuer.addr, "admin", password).await;
    for token in [&kept, &logged_out, &logged_out] {
        assert_eq!(profile(resource, token).await.0, 200, "valid, then cached");
    }

    let (status, body) = common::logout(issuer.addr, &logged_out).await;
    assert!(
        (200..300).contains(&status),
        "{status} {}",
        String::from_utf8_lossy(&body)
    );

    // Within one poll interval (plus the time a request takes on a busy
    // machine), though the token was in the verified-token cache.
    let (took, challenge) =
        refused_within(resource, &logged_out, poll + Duration::from_secs(2)).await;
    assert!(
        took <= poll + Duration::from_millis(500),
        "refused only after {took:?} (poll interval {poll:?})"
    );
    assert!(
        challenge.contains("error=\"invalid_token\"")
            && challenge.contains("error_description=\"token revoked\""),
        "{challenge}"
    );
    // The other session of the same user is untouched.
    assert_eq!(profile(resource, &kept).await.0, 200);
    assert!(verifier.metrics().failed("revoked") >= 1);
    let health = verifier.revocations().unwrap();
    assert!(
        health.loaded && health.entries >= 1 && !health.outage,
        "{health:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_user_cuts_every_session_of_that_user_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = common::start_issuer(tmp.path(), |_| {}).await;
    let database = tessera_testkit::pg::test_database_url(tmp.path()).unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write as _;
        let mut child = common::cli(args)
            .args(["--database", &database])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        &["users", "add", "bob", "--password-stdin"],
        Some("bob's long password\n"),
    );
    let poll = Duration::from_millis(200);
    let (verifier, resource) = resource_server(&issuer.url, poll).await;

    let bob = "bob's long password";
    let bobs = [
        access_token(issuer.addr, "bob", bob).await,
        access_token(issuer.addr, "bob", bob).await,
    ];
    let admin = access_token(issuer.addr, "admin", &issuer.admin_password).await;
    for token in bobs.iter().chain([&admin]) {
        assert_eq!(profile(resource, token).await.0, 200);
    }

    run(&["revoke-user", "bob"], None);
    #[allow(clippy::disallowed_methods)] // the issuer's clock is the system's
    let revoked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Made by another process, so the issuer sees it within its one-second
    // refresh, and the resource server within one poll after that.
    for token in &bobs {
        let (took, challenge) = refused_within(resource, token, Duration::from_secs(5)).await;
        assert!(took <= Duration::from_secs(3), "{took:?}");
        assert!(challenge.contains("token revoked"), "{challenge}");
    }
    assert_eq!(
        profile(resource, &admin).await.0,
        200,
        "another user's token"
    );
    assert!(verifier.metrics().failed("revoked") >= 2);

    // Tokens bob gets after the revocation are his to use: the entry covers
    // tokens issued up to its second, so wait for the next one.
    loop {
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if now > revoked_at {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = access_token(issuer.addr, "bob", bob).await;
    assert_eq!(profile(resource, &fresh).await.0, 200);
}

/// What [`feed_relay`] does.
const RELAY: u8 = 0;
/// Answers 503.
const DOWN: u8 = 1;
/// Answers 200 with something that is not a feed document.
const GARBAGE: u8 = 2;

/// A stand-in for the path between resource server and issuer: relays
/// `/revocations` to the issuer, or fails as `mode` says.
async fn feed_relay(issuer: SocketAddr, mode: Arc<AtomicU8>) -> SocketAddr {
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    let relay = move |uri: Uri, headers: HeaderMap| {
        let mode = Arc::clone(&mode);
        async move {
            match mode.load(Ordering::SeqCst) {
                DOWN => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
                GARBAGE => return (StatusCode::OK, "eyJ.not-a.document").into_response(),
                _ => {}
            }
            let mut c = Client::connect(issuer).await.unwrap();
            let inm = headers
                .get("if-none-match")
                .map(|v| format!("If-None-Match: {}", v.to_str().unwrap()));
            let extra: Vec<&str> = inm.iter().map(String::as_str).collect();
            let path = uri.path_and_query().unwrap().as_str();
            let (status, body) = c.get(path, &extra).await.unwrap();
            let etag = c.last_header("etag").unwrap_or_default();
            (
                StatusCode::from_u16(status).unwrap(),
                [("etag", etag)],
                body,
            )
                .into_response()
        }
    };
    let app = axum::Router::new().route("/revocations", axum::routing::get(relay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_outage_keeps_going_by_default_and_fails_closed_when_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = common::start_issuer(tmp.path(), |_| {}).await;
    let down = Arc::new(AtomicU8::new(RELAY));
    let relay = feed_relay(issuer.addr, Arc::clone(&down)).await;
    let feed_url = Some(format!("http://{relay}/revocations"));
    let poll = Duration::from_millis(100);
    // The verifiers' clock is moved by hand past the 60 s outage bound.
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let keep = follower(
        &issuer.url,
        feed_url.clone(),
        poll,
        OutagePolicy::KeepGoing,
        clock.clone(),
    );
    let closed = follower(
        &issuer.url,
        feed_url,
        poll,
        OutagePolicy::FailClosed,
        clock.clone(),
    );
    let keep_rs = common::serve_resource(keep.clone()).await;
    let closed_rs = common::serve_resource(closed.clone()).await;
    for v in [&keep, &closed] {
        assert!(
            v.ready(Duration::from_secs(5)).await,
            "{:?}",
            v.revocations()
        );
    }

    let password = &issuer.admin_password;
    let token = access_token(issuer.addr, "admin", password).await;
    let revoked_meanwhile = access_token(issuer.addr, "admin", password).await;
    for rs in [keep_rs, closed_rs] {
        assert_eq!(profile(rs, &token).await.0, 200);
    }

    // The feed goes away; within the bound both go on.
    down.store(DOWN, Ordering::SeqCst);
    let failed_polls = |v: &Verifier| v.metrics().revocation_poll_errors;
    let before = failed_polls(&closed);
    while failed_polls(&closed) < before + 2 || failed_polls(&keep) < 2 {
        tokio::time::sleep(poll / 2).await;
    }
    clock.advance(30);
    for rs in [keep_rs, closed_rs] {
        assert_eq!(profile(rs, &token).await.0, 200, "within the bound");
    }

    // A logout during the outage cannot be seen.
    let (status, _) = common::logout(issuer.addr, &revoked_meanwhile).await;
    assert!((200..300).contains(&status));

    // Past the bound: keep-going accepts (and says so in its health),
    // fail-closed refuses every token with 503.
    clock.advance(31);
    assert_eq!(profile(keep_rs, &token).await.0, 200);
    assert_eq!(profile(keep_rs, &revoked_meanwhile).await.0, 200);
    let health = keep.revocations().unwrap();
    assert!(health.outage && !health.failing_closed, "{health:?}");
    assert!(health.last_error.is_some());
    assert_eq!(profile(closed_rs, &token).await.0, 503);
    assert!(closed.revocations().unwrap().failing_closed);
    let mut c = Client::connect(closed_rs).await.unwrap();
    let (status, _) = c.get("/readyz", &[]).await.unwrap();
    assert_eq!(status, 503, "not ready while failing closed");

    // The feed comes back: both catch up, the logout included.
    down.store(RELAY, Ordering::SeqCst);
    refused_within(keep_rs, &revoked_meanwhile, Duration::from_secs(3)).await;
    let started = tokio::time::Instant::now();
    while profile(closed_rs, &token).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(profile(closed_rs, &revoked_meanwhile).await.0, 401);
    assert!(!keep.revocations().unwrap().outage);
}

/// A feed that answers with something unusable (too big, malformed) never
/// leaves a verifier with an empty list: one that had a list keeps it (a
/// revoked token stays refused) and says why in its health; one that never
/// had one follows its outage policy and says it has no list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_feed_document_never_empties_the_list() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = common::start_issuer(tmp.path(), |_| {}).await;
    let mode = Arc::new(AtomicU8::new(RELAY));
    let relay = feed_relay(issuer.addr, Arc::clone(&mode)).await;
    let feed_url = Some(format!("http://{relay}/revocations"));
    let poll = Duration::from_millis(100);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let had_list = follower(
        &issuer.url,
        feed_url.clone(),
        poll,
        OutagePolicy::KeepGoing,
        Arc::clone(&clock),
    );
    let had_list_rs = common::serve_resource(had_list.clone()).await;
    assert!(had_list.ready(Duration::from_secs(5)).await);
    let password = &issuer.admin_password;
    let revoked = access_token(issuer.addr, "admin", password).await;
    let (status, _) = common::logout(issuer.addr, &revoked).await;
    assert!((200..300).contains(&status));
    refused_within(had_list_rs, &revoked, Duration::from_secs(3)).await;

    mode.store(GARBAGE, Ordering::SeqCst);
    let errors = had_list.metrics().revocation_poll_errors;
    for _ in 0..100 {
        if had_list.metrics().revocation_poll_errors >= errors + 2 {
            break;
        }
        tokio::time::sleep(poll / 2).await;
    }
    let health = had_list.revocations().unwrap();
    assert!(health.loaded && health.entries >= 1, "{health:?}");
    assert!(
        health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("revocation feed")),
        "{health:?}"
    );
    assert_eq!(profile(had_list_rs, &revoked).await.0, 401, "still revoked");

    // Started while the feed is unusable: no list. Fail-closed refuses every
    // token; keep-going accepts, and its health says it holds no list.
    let fresh = access_token(issuer.addr, "admin", password).await;
    let closed = follower(
        &issuer.url,
        feed_url.clone(),
        poll,
        OutagePolicy::FailClosed,
        Arc::clone(&clock),
    );
    let keep = follower(&issuer.url, feed_url, poll, OutagePolicy::KeepGoing, clock);
    let (closed_rs, keep_rs) = (
        common::serve_resource_now(closed.clone()).await,
        common::serve_resource_now(keep.clone()).await,
    );
    for _ in 0..100 {
        let polled = |v: &Verifier| v.metrics().revocation_poll_errors >= 1 && v.health().usable;
        if polled(&closed) && polled(&keep) {
            break;
        }
        tokio::time::sleep(poll / 2).await;
    }
    assert_eq!(profile(closed_rs, &fresh).await.0, 503);
    assert!(closed.revocations().unwrap().failing_closed);
    assert_eq!(profile(keep_rs, &fresh).await.0, 200);
    let health = keep.revocations().unwrap();
    assert!(!health.loaded && health.last_error.is_some(), "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_client_cuts_its_own_tokens_and_its_users_and_keeps_it_out() {
    use tessera_issuer::clients::{
        Client, ClientKind, decode_hash, login_client, secret_hash_text,
    };
    let tmp = tempfile::tempdir().unwrap();
    let issuer = common::start_issuer(tmp.path(), |_| {}).await;
    let poll = Duration::from_millis(300);
    let (_verifier, resource) = resource_server(&issuer.url, poll).await;
    // A service client that may also log users in (password grant).
    let secret = tessera_issuer::clients::new_secret();
    let db = tessera_issuer::db::Db::connect(&issuer.database_url)
        .await
        .unwrap();
    let client = Client {
        kind: ClientKind::Confidential,
        grant_types: vec!["client_credentials".to_owned(), "password".to_owned()],
        secret_sha256: decode_hash(&secret_hash_text(&secret)),
        ..login_client("backoffice", 0)
    };
    db.add_client(&client).await.unwrap();
    let basic = {
        use base64::Engine as _;
        format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("backoffice:{secret}"))
        )
    };
    let token_for = |form: String| {
        let basic = basic.clone();
        async move {
            let mut c = tessera_bench::Client::connect(issuer.addr).await.unwrap();
            let (status, body) = c
                .request(
                    "POST",
                    "/token",
                    &[&basic],
                    "application/x-www-form-urlencoded",
                    &form,
                )
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (status, own) = token_for("grant_type=client_credentials".to_owned()).await;
    assert_eq!(status, 200, "{own}");
    let own = own["access_token"].as_str().unwrap().to_owned();
    let password_form = format!(
        "grant_type=password&username=admin&password={}",
        issuer.admin_password
    );
    let (status, users) = token_for(password_form).await;
    assert_eq!(status, 200, "{users}");
    let users = users["access_token"].as_str().unwrap().to_owned();
    // Another client's token is not touched.
    let bystander = access_token(issuer.addr, "admin", &issuer.admin_password).await;
    for token in [&own, &users, &bystander] {
        assert_eq!(profile(resource, token).await.0, 200);
    }

    let out = common::cli(&["revoke-client", "backoffice"])
        .args(["--database", &issuer.database_url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("backoffice: disabled") && said.contains("1 session(s) ended"),
        "{said}"
    );

    for token in [&own, &users] {
        let (_, challenge) = refused_within(resource, token, Duration::from_secs(5)).await;
        assert!(challenge.contains("token revoked"), "{challenge}");
    }
    assert_eq!(profile(resource, &bystander).await.0, 200);
    // Disabled: no new token (the registry reloads within a second).
    let mut refused = false;
    for _ in 0..40 {
        let (status, body) = token_for("grant_type=client_credentials".to_owned()).await;
        if status != 200 {
            assert_eq!(body["error"], "invalid_client", "{body}");
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "a revoked client still gets tokens");
}
