//! ES256 and EdDSA beside RS256: the vectors (RFC 8037 A.4, and an ES256
//! vector made by an independent implementation), the binding of each
//! algorithm to its key type, the JWS signature form, and JWKS filtering of
//! malformed and small-order keys.

use serde_json::{Value, json};
use tessera_verifier::{
    Algorithm, JwksSource, Jws, KeySet, ManualClock, Verifier, VerifierConfig, VerifyError,
    VerifyingKey,
};

use crate::common::*;

const ALL: [&str; 3] = ["RS256", "ES256", "EdDSA"];

fn key_of(jwk: &Value) -> VerifyingKey {
    let mut jwk = jwk.clone();
    jwk["kid"] = json!("k");
    let (set, skipped) =
        KeySet::from_jwks_json(json!({"keys": [jwk]}).to_string().as_bytes(), &ALL).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    set.get("k").unwrap().clone()
}

/// Whether `token` is a JWS whose allowed `alg` verifies under `key`.
fn signature_ok(key: &VerifyingKey, token: &str) -> bool {
    let allowed: Vec<String> = ALL.iter().map(|a| (*a).to_owned()).collect();
    Jws::parse(token, 8192)
        .and_then(|jws| {
            jws.check_alg(&allowed)?;
            jws.verify_signature(key)
        })
        .is_ok()
}

#[test]
fn rfc8037_a4_and_the_independent_es256_vector_verify_and_every_negative_fails() {
    for (name, alg) in [
        ("rfc8037_A4.json", Algorithm::EdDsa),
        ("es256_tessera.json", Algorithm::Es256),
    ] {
        let vector = fixture_json(name);
        let key = key_of(&vector["jwk"]);
        assert_eq!((key.alg(), key.bits()), (alg, 256), "{name}");
        assert!(
            signature_ok(&key, vector["token"].as_str().unwrap()),
            "{name}"
        );
        let negatives = vector["negative"].as_array().unwrap();
        assert!(negatives.len() >= 7, "{name}");
        for neg in negatives {
            assert!(
                !signature_ok(&key, neg["token"].as_str().unwrap()),
                "{name}: {} must fail",
                neg["name"]
            );
        }
    }
}

#[test]
fn a_der_or_wrong_length_ecdsa_signature_is_refused_as_a_bad_signature() {
    let vector = fixture_json("es256_tessera.json");
    let key = key_of(&vector["jwk"]);
    for name in [
        "sig_der_encoded",
        "sig_truncated_63_bytes",
        "sig_extended_65_bytes",
    ] {
        let neg = vector["negative"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap();
        let jws = Jws::parse(neg["token"].as_str().unwrap(), 8192).unwrap();
        assert_eq!(
            jws.verify_signature(&key).unwrap_err(),
            VerifyError::BadSignature,
            "{name}"
        );
    }
}

/// A verifier holding one key of each type, allowing `algorithms`.
fn three_key_verifier(algorithms: &[&str]) -> Verifier {
    let ours = TestKey::load("ours");
    let (es, ed) = (CurveKey::es256(), CurveKey::eddsa());
    let jwks = json!({"keys": [ours.jwk.clone(), es.jwk().clone(), ed.jwk().clone()]});
    let (set, _) = KeySet::from_jwks_json(jwks.to_string().as_bytes(), algorithms).unwrap();
    let mut cfg = VerifierConfig::new(ISSUER, [AUDIENCE]).with_jwks(JwksSource::Static(set));
    cfg.algorithms = algorithms.iter().map(|a| (*a).to_owned()).collect();
    Verifier::start(cfg, std::sync::Arc::new(ManualClock::new(NOW))).unwrap()
}

#[tokio::test]
async fn each_algorithm_verifies_with_its_own_key_type_only() {
    let verifier = three_key_verifier(&ALL);
    let ours = TestKey::load("ours");
    let (es, ed) = (CurveKey::es256(), CurveKey::eddsa());
    for token in [
        ours.sign(&header(ours.kid()), &claims()),
        es.sign(&es.header(), &claims()),
        ed.sign(&ed.header(), &claims()),
    ] {
        let verified = verifier.verify::<Value>(&token).await.unwrap();
        assert_eq!(verified.claims()["sub"], "u-1234");
    }
    // A header naming another algorithm than its key's is refused before the
    // signature is looked at, whatever the signature is.
    let cases = [
        ("ES256", ours.kid(), es.signature(b"x")),
        ("EdDSA", ours.kid(), ed.signature(b"x")),
        ("RS256", es.kid(), vec![0; 256]),
        ("EdDSA", es.kid(), ed.signature(b"x")),
        ("RS256", ed.kid(), vec![0; 256]),
        ("ES256", ed.kid(), es.signature(b"x")),
    ];
    for (alg, kid, signature) in cases {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": alg, "typ": "at+jwt", "kid": kid})
                .to_string()
                .as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let token = format!("{input}.{}", b64(&signature));
        assert_eq!(
            verifier.verify::<Value>(&token).await.unwrap_err(),
            VerifyError::KeyAlgorithmMismatch(Algorithm::from_name(alg).unwrap().name()),
            "{alg} with {kid}"
        );
    }
    // A genuine ES256 signature under a header that claims EdDSA for the
    // same key: still refused.
    let forged_header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": es.kid()});
    let good = es.sign(&es.header(), &claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let header_b64 = b64(forged_header.to_string().as_bytes());
    parts[0] = &header_b64;
    assert!(verifier.verify::<Value>(&parts.join(".")).await.is_err());
}

#[tokio::test]
async fn the_default_allowlist_is_rs256_only_and_refuses_es256_and_eddsa_tokens() {
    let config = VerifierConfig::new(ISSUER, [AUDIENCE]);
    assert_eq!(config.algorithms, ["RS256"]);
    let verifier = three_key_verifier(&["RS256"]);
    let (es, ed) = (CurveKey::es256(), CurveKey::eddsa());
    for (key, alg) in [(&es, "ES256"), (&ed, "EdDSA")] {
        let token = key.sign(&key.header(), &claims());
        assert_eq!(
            verifier.verify::<Value>(&token).await.unwrap_err(),
            VerifyError::AlgorithmNotAllowed(alg.to_owned())
        );
    }
    // An allowlist that follows a migration from RS256 to ES256 takes both,
    // and still refuses what it does not list.
    let migrating = three_key_verifier(&["RS256", "ES256"]);
    let ours = TestKey::load("ours");
    assert!(
        migrating
            .verify::<Value>(&ours.sign(&header(ours.kid()), &claims()))
            .await
            .is_ok()
    );
    assert!(
        migrating
            .verify::<Value>(&es.sign(&es.header(), &claims()))
            .await
            .is_ok()
    );
    assert_eq!(
        migrating
            .verify::<Value>(&ed.sign(&ed.header(), &claims()))
            .await
            .unwrap_err(),
        VerifyError::AlgorithmNotAllowed("EdDSA".to_owned())
    );
}

#[test]
fn an_allowlist_names_algorithms_exactly_and_never_hmac_or_none() {
    for bad in ["es256", "ES384", "Ed25519", "HS256", "none", "PS256"] {
        let mut cfg = VerifierConfig::new(ISSUER, [AUDIENCE]);
        cfg.algorithms = vec![bad.to_owned()];
        let err = Verifier::start(cfg, std::sync::Arc::new(ManualClock::new(NOW))).unwrap_err();
        assert!(err.to_string().contains("algorithms"), "{bad}: {err}");
    }
}

#[test]
fn curve_jwks_are_filtered_strictly_and_the_rest_kept() {
    let es = CurveKey::es256().jwk().clone();
    let ed = CurveKey::eddsa().jwk().clone();
    let with = |base: &Value, changes: Value| {
        let mut k = base.clone();
        for (field, v) in changes.as_object().unwrap() {
            if v.is_null() {
                k.as_object_mut().unwrap().remove(field);
            } else {
                k[field] = v.clone();
            }
        }
        k
    };
    let mut off_curve_y = unb64(es["y"].as_str().unwrap());
    off_curve_y[31] ^= 1;
    let cases: Vec<(Value, Option<&str>)> = vec![
        (with(&es, json!({"kid": "es"})), None),
        (
            with(&es, json!({"kid": "es-no-alg", "alg": null, "use": null})),
            None,
        ),
        (with(&ed, json!({"kid": "ed"})), None),
        (with(&ed, json!({"kid": "ed-alg", "alg": "EdDSA"})), None),
        (
            with(&es, json!({"kid": "es-short", "x": b64(&[7u8; 31])})),
            Some("32 bytes"),
        ),
        (
            with(&es, json!({"kid": "es-off", "y": b64(&off_curve_y)})),
            Some("not on the curve"),
        ),
        (
            with(
                &es,
                json!({"kid": "es-zero", "x": b64(&[0; 32]), "y": b64(&[0; 32])}),
            ),
            Some("not on the curve"),
        ),
        (
            with(&es, json!({"kid": "es-no-y", "y": null})),
            Some("no y"),
        ),
        (
            with(&es, json!({"kid": "p384", "crv": "P-384"})),
            Some("curve \"P-384\""),
        ),
        (
            with(&es, json!({"kid": "es-no-crv", "crv": null})),
            Some("without crv"),
        ),
        (
            with(&es, json!({"kid": "es-as-rs", "alg": "RS256"})),
            Some("does not match"),
        ),
        (
            with(&es, json!({"kid": "es384", "alg": "ES384"})),
            Some("alg \"ES384\" is not allowed"),
        ),
        (
            with(
                &ed,
                json!({"kid": "ed-identity", "x": b64(&{
                    let mut one = [0u8; 32];
                    one[0] = 1;
                    one
                })}),
            ),
            Some("small order"),
        ),
        (
            with(
                &ed,
                json!({"kid": "ed-order-8", "x": "JuiVj8KyJ7BFw_SJ8u-Y8NXfrAXTxjM5sTgCiG1T_AU"}),
            ),
            Some("small order"),
        ),
        (
            with(&ed, json!({"kid": "ed448", "crv": "Ed448"})),
            Some("curve \"Ed448\""),
        ),
        (
            with(&ed, json!({"kid": "x25519", "crv": "X25519"})),
            Some("curve \"X25519\""),
        ),
        (
            with(&ed, json!({"kid": "ed-as-es", "alg": "ES256"})),
            Some("does not match"),
        ),
        (
            with(&ed, json!({"kid": "ed-long", "x": b64(&[9u8; 33])})),
            Some("32 bytes"),
        ),
        (
            with(&ed, json!({"kid": "ed-enc", "use": "enc"})),
            Some("use \"enc\""),
        ),
    ];
    let set_json = json!({"keys": cases.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()});
    let (set, skipped) = KeySet::from_jwks_json(set_json.to_string().as_bytes(), &ALL).unwrap();
    let mut kept: Vec<&str> = set.kids().collect();
    kept.sort_unstable();
    assert_eq!(kept, ["ed", "ed-alg", "es", "es-no-alg"]);
    let expected: Vec<&str> = cases.iter().filter_map(|(_, r)| *r).collect();
    assert_eq!(skipped.len(), expected.len(), "{skipped:#?}");
    for (skip, needle) in skipped.iter().zip(expected) {
        assert!(
            skip.reason.contains(needle),
            "{skip:?} should mention {needle:?}"
        );
    }
    // With only RS256 allowed, the same keys are all skipped.
    let err = KeySet::from_jwks_json(set_json.to_string().as_bytes(), &["RS256"]).unwrap_err();
    assert!(matches!(
        err,
        tessera_verifier::JwksError::NoUsableKeys { .. }
    ));
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}
