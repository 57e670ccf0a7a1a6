//! The RFC example signatures through the verifier's key handling: the published
//! tokens verify, every derived negative fails, and JWKS filtering is strict.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera_verifier::{JwksError, KeySet, VerifyingKey};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn key_from_jwk(jwk: &Value) -> VerifyingKey {
    let b = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
    VerifyingKey::from_rsa_components(&b("n"), &b("e")).unwrap()
}

/// Checks only the RS256 signature of a compact JWS (the full JWT checks come
/// with the validator).
fn signature_ok(key: &VerifyingKey, token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let Ok(sig) = URL_SAFE_NO_PAD.decode(parts[2]) else {
        return false;
    };
    key.verify_rs256(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
}

#[test]
fn rfc_example_signatures_verify_and_every_negative_fails() {
    for name in ["rfc7515_A2", "rfc7520_4_1"] {
        let vector = fixture(&format!("{name}.json"));
        let key = key_from_jwk(&vector["jwk"]);
        assert_eq!(key.bits(), 2048, "{name}");
        assert!(
            signature_ok(&key, vector["token"].as_str().unwrap()),
            "{name}"
        );
        let negatives = vector["negative"].as_array().unwrap();
        assert!(negatives.len() >= 4, "{name}");
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
fn a_published_jwks_with_a_kid_loads_and_verifies() {
    let jwks = fixture("rfc7520_4_1.jwks.json");
    let (set, skipped) = KeySet::from_jwks_json(jwks.to_string().as_bytes(), &["RS256"]).unwrap();
    assert!(skipped.is_empty());
    let key = set.get("bilbo.baggins@hobbiton.example").unwrap();
    let vector = fixture("rfc7520_4_1.json");
    assert!(signature_ok(key, vector["token"].as_str().unwrap()));
}

#[test]
fn jwk_filtering_skips_unusable_keys_and_keeps_the_rest() {
    let good = fixture("rfc7515_A2.jwks.json")["keys"][0].clone();
    let with = |changes: Value| {
        let mut k = good.clone();
        for (field, v) in changes.as_object().unwrap() {
            if v.is_null() {
                k.as_object_mut().unwrap().remove(field);
            } else {
                k[field] = v.clone();
            }
        }
        k
    };
    let small_n = URL_SAFE_NO_PAD.encode([0xC5u8; 128]); // 1024 bits
    // (key, the reason it is skipped, or None if it must be kept)
    let cases: Vec<(Value, Option<&str>)> = vec![
        (with(json!({"kid": "plain"})), None),
        (
            with(json!({"kid": "sig", "use": "sig", "alg": "RS256"})),
            None,
        ),
        (with(json!({"kid": "ops", "key_ops": ["verify"]})), None),
        (
            with(json!({"kid": "enc", "use": "enc"})),
            Some("use \"enc\""),
        ),
        (
            with(json!({"kid": "hs", "alg": "HS256"})),
            Some("alg \"HS256\" is not allowed"),
        ),
        (
            with(json!({"kid": "ps", "alg": "PS256"})),
            Some("alg \"PS256\" is not allowed"),
        ),
        (
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            Some("kty \"oct\""),
        ),
        (
            json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"}),
            Some("ES256 is not an allowed algorithm"),
        ),
        (with(json!({"kid": null})), Some("no kid")),
        (
            with(json!({"kid": "small", "n": small_n})),
            Some("1024-bit"),
        ),
        (
            with(json!({"kid": "padded", "e": "AQAB=="})),
            Some("base64url"),
        ),
        (with(json!({"kid": "no-n", "n": null})), Some("no n")),
        (
            with(json!({"kid": "even-e", "e": "AQAA"})),
            Some("exponent"),
        ),
        (with(json!({"kid": "e-one", "e": "AQ"})), Some("exponent")),
        (
            with(json!({"kid": "ops-sign", "key_ops": ["sign"]})),
            Some("key_ops"),
        ),
        (with(json!({"kid": 7})), Some("malformed JWK")),
        (with(json!({"kid": "plain"})), Some("duplicate kid")),
    ];
    let set_json = json!({"keys": cases.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()});
    let (set, skipped) =
        KeySet::from_jwks_json(set_json.to_string().as_bytes(), &["RS256"]).unwrap();
    let kept: Vec<&str> = {
        let mut v: Vec<&str> = set.kids().collect();
        v.sort_unstable();
        v
    };
    assert_eq!(kept, ["ops", "plain", "sig"]);
    let expected_skips: Vec<&str> = cases.iter().filter_map(|(_, r)| *r).collect();
    assert_eq!(skipped.len(), expected_skips.len(), "{skipped:#?}");
    for (skip, needle) in skipped.iter().zip(expected_skips) {
        assert!(
            skip.reason.contains(needle),
            "{skip:?} should mention {needle:?}"
        );
    }
}

#[test]
fn a_set_with_no_usable_key_is_an_error_not_an_empty_set() {
    for doc in [
        json!({"keys": []}),
        json!({"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}),
    ] {
        let err = KeySet::from_jwks_json(doc.to_string().as_bytes(), &["RS256"]).unwrap_err();
        assert!(matches!(err, JwksError::NoUsableKeys { .. }), "{err}");
    }
    for doc in ["", "[]", "{\"keys\": {}}", "{\"kty\": \"RSA\"}"] {
        let err = KeySet::from_jwks_json(doc.as_bytes(), &["RS256"]).unwrap_err();
        assert!(matches!(err, JwksError::Malformed(_)), "{doc}: {err}");
    }
    // An allowlist without RS256 leaves nothing usable.
    let jwks = fixture("rfc7520_4_1.jwks.json").to_string();
    let err = KeySet::from_jwks_json(jwks.as_bytes(), &["ES256"]).unwrap_err();
    assert!(matches!(err, JwksError::NoUsableKeys { .. }), "{err}");
}

#[test]
fn rfc7515_a2_verifies_through_the_layers_with_its_2011_exp_on_an_injected_clock() {
    use tessera_verifier::{Claim, Jws, Validation, VerifyError};
    let vector = fixture("rfc7515_A2.json");
    let key = key_from_jwk(&vector["jwk"]);
    let token = vector["token"].as_str().unwrap();
    let jws = Jws::parse(token, 8192).unwrap();
    assert_eq!(jws.header().alg, "RS256");
    jws.check_alg(&["RS256".to_owned()]).unwrap();
    jws.verify_signature(&key).unwrap();
    // The example has no aud, sub or iat: a validation asking for what it has.
    let validation = Validation {
        issuer: "joe".to_owned(),
        audiences: Vec::new(),
        leeway: 0,
        required: vec![Claim::Iss, Claim::Exp],
    };
    const EXP: i64 = 1_300_819_380; // 2011-03-22T18:43:00Z
    let claims = validation.validate(jws.payload(), EXP - 10).unwrap();
    assert_eq!(claims.exp, Some(EXP));
    assert_eq!(claims.iss.as_deref(), Some("joe"));
    assert_eq!(
        validation.validate(jws.payload(), EXP).unwrap_err(),
        VerifyError::Expired { exp: EXP }
    );
    assert_eq!(
        validation
            .validate(jws.payload(), 1_767_225_600)
            .unwrap_err(),
        VerifyError::Expired { exp: EXP }
    );
    // Every derived negative fails at the JWS layer.
    for neg in vector["negative"].as_array().unwrap() {
        let token = neg["token"].as_str().unwrap();
        let refused = Jws::parse(token, 8192).and_then(|jws| {
            jws.check_alg(&["RS256".to_owned()])?;
            jws.verify_signature(&key)
        });
        assert!(refused.is_err(), "{} must fail", neg["name"]);
    }
}

#[test]
fn rfc7520_4_1_is_a_valid_jws_but_not_a_jwt() {
    use tessera_verifier::{Jws, Validation, VerifyError};
    let vector = fixture("rfc7520_4_1.json");
    let key = key_from_jwk(&vector["jwk"]);
    let jws = Jws::parse(vector["token"].as_str().unwrap(), 8192).unwrap();
    jws.verify_signature(&key).unwrap();
    let validation = Validation {
        issuer: "x".to_owned(),
        audiences: vec!["x".to_owned()],
        leeway: 0,
        required: tessera_verifier::DEFAULT_REQUIRED.to_vec(),
    };
    assert!(matches!(
        validation.validate(jws.payload(), 0),
        Err(VerifyError::Malformed(_))
    ));
}
