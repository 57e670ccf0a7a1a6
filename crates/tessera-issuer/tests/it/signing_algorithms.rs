//! An issuer configured with `signing_alg = "ES256"` or `"EdDSA"`, over real
//! HTTP: its JWKS and metadata, every token it signs (access, refresh
//! rotation, the revocation feed), and a resource server that follows it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_testkit::jws::header_of;
use tessera_testkit::stack::call;
use tessera_verifier::{OutagePolicy, RevocationConfig, SystemClock, Verifier, VerifierConfig};

async fn get_json(to: std::net::SocketAddr, path: &str) -> Value {
    let (status, body) = call(to, "GET", path, &[], "", "").await;
    assert_eq!(status, 200, "{path}");
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_and_eddsa_issuers_sign_everything_with_their_algorithm_and_are_followed() {
    for (alg, kty, crv) in [("ES256", "EC", "P-256"), ("EdDSA", "OKP", "Ed25519")] {
        let tmp = tempfile::tempdir().unwrap();
        let issuer = common::start_issuer(tmp.path(), |raw| {
            raw.signing_alg = Some(alg.to_owned());
        })
        .await;

        // The first start made the keyring with the configured algorithm.
        let jwks = get_json(issuer.addr, "/.well-known/jwks.json").await;
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "active and pending");
        for key in keys {
            assert_eq!(
                (key["kty"].as_str(), key["crv"].as_str()),
                (Some(kty), Some(crv))
            );
            assert_eq!(key["alg"], alg);
        }
        let metadata = get_json(issuer.addr, "/.well-known/openid-configuration").await;
        for field in [
            "id_token_signing_alg_values_supported",
            "access_token_signing_alg_values_supported",
        ] {
            assert_eq!(metadata[field], serde_json::json!([alg]), "{field}");
        }

        // A resource server for this algorithm, following the feed.
        let mut feed = RevocationConfig::default();
        feed.poll_interval = Duration::from_millis(200);
        feed.on_outage = OutagePolicy::KeepGoing;
        let mut config = VerifierConfig::new(issuer.url.clone(), ["tessera"]);
        config.algorithms = vec![alg.to_owned()];
        config.revocations = Some(feed);
        let verifier = Verifier::start(config, Arc::new(SystemClock)).unwrap();
        let resource = common::serve_resource(verifier.clone()).await;
        assert!(
            verifier.ready(Duration::from_secs(5)).await,
            "keys and the {alg}-signed revocation feed"
        );

        let tokens = common::login(issuer.addr, "admin", &issuer.admin_password).await;
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(header_of(access)["alg"], alg);
        assert_eq!(common::profile(resource, access).await, 200);

        // The refresh grant signs the new access token the same way.
        let form = format!(
            "grant_type=refresh_token&refresh_token={}",
            tokens["refresh_token"].as_str().unwrap()
        );
        let (status, body) = call(
            issuer.addr,
            "POST",
            "/token",
            &[],
            "application/x-www-form-urlencoded",
            &form,
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let refreshed: Value = serde_json::from_slice(&body).unwrap();
        let renewed = refreshed["access_token"].as_str().unwrap();
        assert_eq!(header_of(renewed)["alg"], alg);
        assert_eq!(common::profile(resource, renewed).await, 200);

        // Logout checks the token with the issuer's own key of that
        // algorithm; the feed then tells the resource server.
        let (status, body) = common::logout(issuer.addr, renewed).await;
        assert!(status < 300, "{status} {}", String::from_utf8_lossy(&body));
        let mut refused = false;
        for _ in 0..300 {
            if common::profile(resource, renewed).await == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "{alg}: the logged-out token is still accepted");

        // A verifier left at the default (RS256 only) refuses this issuer:
        // nothing changes for existing users until they opt in.
        let default = Verifier::start(
            VerifierConfig::new(issuer.url.clone(), ["tessera"]),
            Arc::new(SystemClock),
        )
        .unwrap();
        let other = common::login(issuer.addr, "admin", &issuer.admin_password).await;
        assert!(
            default
                .verify::<Value>(other["access_token"].as_str().unwrap())
                .await
                .is_err()
        );
        issuer.stop().await;
    }
}

#[test]
fn an_unknown_signing_alg_is_a_configuration_error_naming_the_setting() {
    let raw = tessera_issuer::config::RawConfig {
        signing_alg: Some("HS256".to_owned()),
        ..Default::default()
    };
    let err = raw.validate().unwrap_err().to_string();
    assert!(
        err.contains("signing_alg") && err.contains("HS256"),
        "{err}"
    );
    let lower = tessera_issuer::config::RawConfig {
        signing_alg: Some("eddsa".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        lower.validate().unwrap().signing_alg,
        tessera_keyring::Algorithm::EdDsa
    );
}
