//! The `jsonwebtoken` bridge against a real issuer: `jsonwebtoken::decode`
//! itself decodes Tessera's access tokens with the key and `Validation` the
//! verifier hands out, across a key rotation, and the revocation feed still
//! applies; a JWT of another `typ` the issuer signs gets no key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tessera_verifier::jsonwebtoken::{BridgeError, jwt};
use tessera_verifier::{RevocationConfig, SystemClock, Verifier, VerifierConfig, VerifyError};

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    preferred_username: String,
    roles: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonwebtoken_decodes_real_tokens_with_the_verifiers_key_and_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let (issuer, token) = crate::support::issuer_with_admin_token(tmp.path()).await;
    let mut config = VerifierConfig::new(issuer.url.clone(), ["tessera"]);
    let mut feed = RevocationConfig::default();
    feed.poll_interval = Duration::from_millis(100);
    config.revocations = Some(feed);
    let verifier = Verifier::start(config, Arc::new(SystemClock)).unwrap();
    assert!(verifier.ready(Duration::from_secs(10)).await);

    // Existing jsonwebtoken code, its key and validation from the verifier.
    let header = jwt::decode_header(&token).unwrap();
    assert_eq!(
        header.typ.as_deref(),
        Some("at+jwt"),
        "checked, as the docs show"
    );
    let key = verifier.jsonwebtoken_key(&token).await.unwrap();
    let validation = verifier.jsonwebtoken_validation();
    let data = jwt::decode::<Claims>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims.preferred_username, "admin");
    assert!(data.claims.roles.contains(&"admin".to_owned()));
    // The same validation refuses what the verifier refuses.
    let mut elsewhere = validation.clone();
    elsewhere.set_audience(&["another-api"]);
    let err = jwt::decode::<Claims>(&token, &key, &elsewhere).unwrap_err();
    assert!(
        matches!(err.kind(), jwt::errors::ErrorKind::InvalidAudience),
        "{err:?}"
    );
    let mut forged = token.clone().into_bytes();
    let i = forged.len() - 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(jwt::decode::<Claims>(&forged, &key, &validation).is_err());

    // A JWT the issuer signs that is not an access token: its revocation
    // feed. Same key, but typ revocations+jwt: no key for it.
    let mut http = tessera_bench::Client::connect(issuer.addr).await.unwrap();
    let (status, feed_doc) = http.get("/revocations", &[]).await.unwrap();
    assert_eq!(status, 200);
    let feed_jwt = String::from_utf8(feed_doc).unwrap();
    assert_eq!(
        verifier
            .jsonwebtoken_key(feed_jwt.trim())
            .await
            .unwrap_err(),
        VerifyError::WrongType
    );

    // A rotation: the new active key's tokens decode too.
    tessera_keyring::KeyDir::new(tmp.path().join("keys"))
        .rotate(
            &tessera_keyring::RotationPolicy::default(),
            true,
            tessera_keyring::DEFAULT_BITS,
        )
        .unwrap();
    let mut rotated = None;
    for _ in 0..50 {
        let tokens =
            tessera_testkit::stack::login(issuer.addr, "admin", &issuer.admin_password).await;
        let fresh = tokens["access_token"].as_str().unwrap().to_owned();
        if jwt::decode_header(&fresh).unwrap().kid != header.kid {
            rotated = Some(fresh);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rotated = rotated.expect("the issuer signs with the new key within 5 s");
    let data = verifier
        .decode_with_jsonwebtoken::<Claims>(&rotated)
        .await
        .unwrap();
    assert_eq!(data.claims.preferred_username, "admin");

    // Revoked (logout): jsonwebtoken alone would still accept it; the
    // bridge's check refuses it once the feed has been polled.
    let sub = data.claims.sub.clone();
    assert!(!sub.is_empty());
    let (status, _) = tessera_testkit::stack::logout(issuer.addr, &rotated).await;
    assert_eq!(status, 204);
    let mut refused = None;
    for _ in 0..50 {
        match verifier.decode_with_jsonwebtoken::<Claims>(&rotated).await {
            Err(BridgeError::Verify(e)) => {
                refused = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, Some(VerifyError::Revoked));
    let key = verifier.jsonwebtoken_key(&rotated).await.unwrap();
    assert!(
        jwt::decode::<Claims>(&rotated, &key, &verifier.jsonwebtoken_validation()).is_ok(),
        "jsonwebtoken knows nothing of revocations: hence check_decoded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonwebtoken_decodes_es256_and_eddsa_tokens_with_the_bridges_key() {
    for (alg, expected) in [
        ("ES256", jwt::Algorithm::ES256),
        ("EdDSA", jwt::Algorithm::EdDSA),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (issuer, token) = crate::support::issuer_signing_with(tmp.path(), alg).await;
        let mut config = VerifierConfig::new(issuer.url.clone(), ["tessera"]);
        config.algorithms = vec!["RS256".to_owned(), alg.to_owned()];
        let verifier = Verifier::start(config, Arc::new(SystemClock)).unwrap();
        assert!(verifier.ready(Duration::from_secs(10)).await);
        // The whole allowlist: jsonwebtoken refuses it with a key of one
        // family (its rule), which is why the narrowed one exists.
        let whole = verifier.jsonwebtoken_validation();
        assert_eq!(whole.algorithms, [jwt::Algorithm::RS256, expected]);
        let key = verifier.jsonwebtoken_key(&token).await.unwrap();
        let err = jwt::decode::<Claims>(&token, &key, &whole).unwrap_err();
        assert!(matches!(
            err.kind(),
            jwt::errors::ErrorKind::InvalidAlgorithm
        ));
        let (key, validation) = verifier
            .jsonwebtoken_key_and_validation(&token)
            .await
            .unwrap();
        assert_eq!(validation.algorithms, [expected]);
        let data = jwt::decode::<Claims>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims.preferred_username, "admin", "{alg}");
        let decoded = verifier
            .decode_with_jsonwebtoken::<Claims>(&token)
            .await
            .unwrap();
        assert_eq!(decoded.claims.sub, data.claims.sub);
        // A signature of the token's own algorithm, altered: refused.
        let mut forged = token.clone().into_bytes();
        let i = forged.len() - 2;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(jwt::decode::<Claims>(&forged, &key, &validation).is_err());
        // A verifier for RS256 only hands out no key for these tokens.
        let rs_only = Verifier::start(
            VerifierConfig::new(issuer.url.clone(), ["tessera"]),
            Arc::new(SystemClock),
        )
        .unwrap();
        assert_eq!(
            rs_only.jsonwebtoken_key(&token).await.unwrap_err(),
            VerifyError::AlgorithmNotAllowed(alg.to_owned())
        );
    }
}
