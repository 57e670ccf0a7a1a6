//! Emergency: an operator revokes the active key with the CLI while the issuer
//! and a resource server run. Tokens signed with it are refused by the resource
//! server within one unknown-kid cooldown; new logins work with the promoted key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::{kid_of, profile, published_kids};
use tessera_verifier::{SystemClock, Verifier, VerifierConfig};

async fn login(issuer: std::net::SocketAddr, password: &str) -> String {
    common::login(issuer, "admin", password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_active_key_cuts_its_tokens_off_and_logins_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let keys_dir = tmp.path().join("keys");
    let started = common::start_issuer(tmp.path(), |raw| {
        raw.jwks_cache_lifetime = Some(Duration::from_secs(1));
    })
    .await;
    let (issuer, issuer_url, password) = (started.addr, started.url, started.admin_password);

    let mut vconfig = VerifierConfig::new(issuer_url, ["tessera"]);
    vconfig.unknown_kid_cooldown = Duration::from_secs(1);
    vconfig.min_cache_lifetime = Duration::from_secs(1);
    vconfig.refresh_check_interval = Duration::from_millis(50);
    let verifier = Verifier::start(vconfig, Arc::new(SystemClock)).unwrap();
    let resource = common::serve_resource(verifier).await;

    let old = login(issuer, &password).await;
    let old_kid = kid_of(&old);
    assert_eq!(profile(resource, &old).await, 200);
    assert_eq!(
        profile(resource, &old).await,
        200,
        "and from the token cache"
    );

    // The operator's emergency command.
    let out = common::keys(&keys_dir, &["revoke", &old_kid]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The running issuer drops the key from its JWKS (reload ≤ 100 ms)...
    let mut gone = false;
    for _ in 0..100 {
        if !published_kids(issuer).await.contains(&old_kid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the issuer still publishes the revoked key");
    let revoked_at = tokio::time::Instant::now();

    // ...new logins are signed with the promoted key and accepted at once...
    let new = login(issuer, &password).await;
    assert_ne!(kid_of(&new), old_kid);
    assert_eq!(profile(resource, &new).await, 200);

    // ...and the revoked key's tokens are refused within one cooldown.
    let mut refused = false;
    while revoked_at.elapsed() < Duration::from_secs(5) {
        if profile(resource, &old).await == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "a token of the revoked key is still accepted");
    // One cooldown (1 s), plus room for the login and requests in between on a
    // busy machine.
    assert!(
        revoked_at.elapsed() <= Duration::from_secs(3),
        "refused only after {:?} (cooldown 1 s)",
        revoked_at.elapsed()
    );
    assert_eq!(profile(resource, &new).await, 200);
}
