//! Table-driven token tests: every forged, tampered, expired or misdirected
//! token fails with the expected reason, and the accept cases pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use serde_json::{Value, json};
use tessera_verifier::{AccessClaims, VerifyError};

/// Replaces one character in the middle of a segment with another base64url
/// character.
fn flip(segment: &str) -> String {
    let mut chars: Vec<char> = segment.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

/// The header bytes of a token whose header object has a duplicate `alg`.
fn duplicate_alg_header(kid: &str) -> Vec<u8> {
    format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}","alg":"none"}}"#).into_bytes()
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let ours = TestKey::load("ours");
    let attacker = TestKey::load("attacker");
    let kid = ours.kid();
    let good = ours.sign(&header(kid), &claims());
    let good_parts = parts(&good);
    let forms = fixture_json("test_ours.public_forms.json");
    let none_token = |alg: &str, sig: &str| {
        format!(
            "{}.{}.{sig}",
            b64(json!({"alg": alg, "typ": "at+jwt", "kid": kid})
                .to_string()
                .as_bytes()),
            good_parts[1]
        )
    };
    use VerifyError as E;
    let mut cases: Vec<(String, String, E)> = Vec::new();
    let mut case =
        |name: &str, token: String, reason: E| cases.push((name.to_owned(), token, reason));

    // alg none, any casing, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        case(
            &format!("alg {alg}"),
            none_token(alg, ""),
            E::AlgorithmNotAllowed(alg.into()),
        );
        case(
            &format!("alg {alg} + sig"),
            none_token(alg, &good_parts[2]),
            E::AlgorithmNotAllowed(alg.into()),
        );
    }
    // HMAC keyed with our public key, in every textual form, with our kid.
    for (form, secret) in forms.as_object().unwrap() {
        for bits in [256u16, 384, 512] {
            let alg = format!("HS{bits}");
            let h = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
            let token = hmac_token(bits, secret.as_str().unwrap().as_bytes(), &h, &claims());
            case(
                &format!("{alg} keyed with {form}"),
                token,
                E::AlgorithmNotAllowed(alg.clone()),
            );
        }
    }
    // Payload or header changed, original signature kept.
    let changed_payload = b64(claims_with(json!({"roles": ["admin"]}))
        .to_string()
        .as_bytes());
    case(
        "payload changed",
        format!("{}.{changed_payload}.{}", good_parts[0], good_parts[2]),
        E::BadSignature,
    );
    let changed_header = b64(json!({"alg": "RS256", "typ": "AT+JWT", "kid": kid})
        .to_string()
        .as_bytes());
    case(
        "header changed",
        format!("{changed_header}.{}.{}", good_parts[1], good_parts[2]),
        E::BadSignature,
    );
    // Signature truncated, flipped, removed.
    let sig = &good_parts[2];
    let sig_bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
    case(
        "signature truncated",
        format!(
            "{}.{}.{}",
            good_parts[0],
            good_parts[1],
            b64(&sig_bytes[..sig_bytes.len() - 1])
        ),
        E::BadSignature,
    );
    case(
        "signature cut mid-character",
        format!(
            "{}.{}.{}",
            good_parts[0],
            good_parts[1],
            &sig[..sig.len() - 4]
        ),
        E::Malformed("signature is not base64url"),
    );
    case(
        "signature extended",
        format!(
            "{}.{}.{}",
            good_parts[0],
            good_parts[1],
            b64(&[sig_bytes.as_slice(), &[0]].concat())
        ),
        E::BadSignature,
    );
    case(
        "signature flipped",
        format!("{}.{}.{}", good_parts[0], good_parts[1], flip(sig)),
        E::BadSignature,
    );
    case(
        "signature removed",
        format!("{}.{}.", good_parts[0], good_parts[1]),
        E::BadSignature,
    );
    // Padding, and the standard alphabet.
    case(
        "padded signature",
        format!("{good}="),
        E::Malformed("signature is not base64url"),
    );
    case(
        "padded payload",
        format!("{}.{}==.{}", good_parts[0], good_parts[1], sig),
        E::Malformed("payload is not base64url"),
    );
    let std_alphabet = {
        // Re-sign until the signature has a character that differs between alphabets.
        let mut n = 0;
        loop {
            let t = ours.sign(&header(kid), &claims_with(json!({"jti": format!("j-{n}")})));
            let p = parts(&t);
            if p[2].contains('-') || p[2].contains('_') {
                break format!(
                    "{}.{}.{}",
                    p[0],
                    p[1],
                    p[2].replace('-', "+").replace('_', "/")
                );
            }
            n += 1;
            assert!(n < 64);
        }
    };
    case(
        "+/ base64",
        std_alphabet,
        E::Malformed("signature is not base64url"),
    );
    // Segment counts.
    case(
        "1 segment",
        good_parts[0].clone(),
        E::Malformed("not three segments"),
    );
    case(
        "2 segments",
        format!("{}.{}", good_parts[0], good_parts[1]),
        E::Malformed("not three segments"),
    );
    case(
        "4 segments",
        format!("{good}.{sig}"),
        E::Malformed("not three segments"),
    );
    case(
        "5 segments",
        format!("{good}.{sig}.{sig}"),
        E::Malformed("not three segments"),
    );
    case("empty", String::new(), E::Malformed("not three segments"));
    // An attacker's key, with our kid, or embedded as a key source.
    case(
        "attacker key, our kid",
        attacker.sign(&header(kid), &claims()),
        E::BadSignature,
    );
    for member in ["jwk", "jku", "x5u", "x5c"] {
        let source = match member {
            "jwk" => attacker.jwk.clone(),
            "x5c" => json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
            _ => json!("http://attacker.test/keys"),
        };
        let mut h = header(attacker.kid());
        h[member] = source.clone();
        case(
            &format!("embedded {member}, attacker kid"),
            attacker.sign(&h, &claims()),
            E::KeySourceHeader,
        );
        let mut h = header(kid);
        h[member] = source;
        case(
            &format!("embedded {member}, our kid"),
            attacker.sign(&h, &claims()),
            E::KeySourceHeader,
        );
        // Found by the differential fuzz target: signed by our own key, a
        // key source (here not even a valid one) was read past and the token
        // accepted, which jsonwebtoken refuses. Now refused before the key.
        let mut h = header(kid);
        h[member] = json!({"x5c": "RSA"});
        case(
            &format!("embedded {member}, signed by our key"),
            ours.sign(&h, &claims()),
            E::KeySourceHeader,
        );
    }
    let mut no_kid = header(kid);
    no_kid.as_object_mut().unwrap().remove("kid");
    case("no kid", ours.sign(&no_kid, &claims()), E::UnknownKey);
    // Unknown crit, duplicate alg.
    let mut crit = header(kid);
    crit["crit"] = json!(["exp"]);
    case("crit", ours.sign(&crit, &claims()), E::CriticalHeader);
    let mut crit = header(kid);
    crit["crit"] = json!([]);
    case("empty crit", ours.sign(&crit, &claims()), E::CriticalHeader);
    case(
        "duplicate alg",
        ours.sign_bytes(&duplicate_alg_header(kid), claims().to_string().as_bytes()),
        E::Malformed("header is not valid"),
    );
    case(
        "duplicate exp",
        ours.sign_bytes(
            header(kid).to_string().as_bytes(),
            format!(r#"{{"iss":"{ISSUER}","sub":"u","aud":"{AUDIENCE}","iat":{NOW},"exp":{},"exp":{}}}"#, NOW + 900, NOW + 99_999).as_bytes(),
        ),
        E::Malformed("payload is not valid"),
    );
    case(
        "header is an array",
        ours.sign_bytes(br#"["RS256"]"#, claims().to_string().as_bytes()),
        E::Malformed("header is not a JSON object"),
    );
    // Times.
    case(
        "expired",
        ours.sign(&header(kid), &claims_with(json!({"exp": NOW - 61}))),
        E::Expired { exp: NOW - 61 },
    );
    case(
        "not yet valid",
        ours.sign(&header(kid), &claims_with(json!({"nbf": NOW + 61}))),
        E::NotYetValid { nbf: NOW + 61 },
    );
    case(
        "issued in the future",
        ours.sign(&header(kid), &claims_with(json!({"iat": NOW + 61}))),
        E::IssuedInFuture { iat: NOW + 61 },
    );
    // Issuer and audience.
    case(
        "wrong iss",
        ours.sign(
            &header(kid),
            &claims_with(json!({"iss": "https://evil.test"})),
        ),
        E::WrongIssuer,
    );
    case(
        "iss with a trailing slash",
        ours.sign(
            &header(kid),
            &claims_with(json!({"iss": format!("{ISSUER}/")})),
        ),
        E::WrongIssuer,
    );
    case(
        "wrong aud",
        ours.sign(&header(kid), &claims_with(json!({"aud": "other"}))),
        E::WrongAudience,
    );
    case(
        "aud array without ours",
        ours.sign(&header(kid), &claims_with(json!({"aud": ["a", "b"]}))),
        E::WrongAudience,
    );
    case(
        "missing aud",
        ours.sign(&header(kid), &claims_with(json!({"aud": null}))),
        E::MissingClaim("aud"),
    );
    for claim in ["iss", "sub", "exp", "iat"] {
        case(
            &format!("missing {claim}"),
            ours.sign(&header(kid), &claims_with(json!({claim: null}))),
            E::MissingClaim(match claim {
                "iss" => "iss",
                "sub" => "sub",
                "exp" => "exp",
                _ => "iat",
            }),
        );
    }
    // Wrong JSON types.
    let wrong_types: [(&str, Value, &'static str); 8] = [
        ("exp", json!("2030-01-01"), "exp"),
        ("exp", json!(NOW as f64 + 900.5), "exp"),
        ("iat", json!(true), "iat"),
        ("nbf", json!([NOW]), "nbf"),
        ("aud", json!(7), "aud"),
        ("aud", json!([AUDIENCE, 7]), "aud"),
        ("sub", json!(1234), "sub"),
        ("iss", json!({"url": ISSUER}), "iss"),
    ];
    for (claim, value, name) in wrong_types {
        case(
            &format!("{claim} = {value}"),
            ours.sign(&header(kid), &claims_with(json!({claim: value}))),
            E::InvalidClaim(name),
        );
    }
    case(
        "roles is a string",
        ours.sign(&header(kid), &claims_with(json!({"roles": "admin"}))),
        E::InvalidClaim("roles"),
    );
    case(
        "payload is an array",
        ours.sign_bytes(header(kid).to_string().as_bytes(), b"[1,2]"),
        E::Malformed("payload is not a JSON object"),
    );
    case(
        "payload is text",
        ours.sign_bytes(
            header(kid).to_string().as_bytes(),
            b"It's a dangerous business",
        ),
        E::Malformed("payload is not a JSON object"),
    );
    // typ.
    let mut jwt_typ = header(kid);
    jwt_typ["typ"] = json!("JWT");
    case("typ JWT", ours.sign(&jwt_typ, &claims()), E::WrongType);
    let mut no_typ = header(kid);
    no_typ.as_object_mut().unwrap().remove("typ");
    case("no typ", ours.sign(&no_typ, &claims()), E::WrongType);
    // Other RSA algorithms when only RS256 is allowed.
    let mut rs384 = header(kid);
    rs384["alg"] = json!("RS384");
    case(
        "RS384",
        ours.sign_rs384(&rs384, &claims()),
        E::AlgorithmNotAllowed("RS384".into()),
    );
    let mut ps256 = header(kid);
    ps256["alg"] = json!("PS256");
    case(
        "PS256",
        ours.sign_ps256(&ps256, &claims()),
        E::AlgorithmNotAllowed("PS256".into()),
    );
    let mut lower = header(kid);
    lower["alg"] = json!("rs256");
    case(
        "alg rs256 (case matters)",
        ours.sign(&lower, &claims()),
        E::AlgorithmNotAllowed("rs256".into()),
    );
    // Size and depth.
    let big = claims_with(json!({"pad": "x".repeat(9000)}));
    case(
        "huge token",
        ours.sign(&header(kid), &big),
        E::TooLarge { max: 8192 },
    );
    case(
        "huge garbage",
        "a".repeat(100_000),
        E::TooLarge { max: 8192 },
    );
    let deep = format!(r#"{{"iss":"{ISSUER}","deep":{}}}"#, nested(200));
    case(
        "deeply nested payload",
        ours.sign_bytes(header(kid).to_string().as_bytes(), deep.as_bytes()),
        E::Malformed("payload nests too deeply"),
    );
    let deep_header = format!(
        r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}","x":{}}}"#,
        nested(200)
    );
    case(
        "deeply nested header",
        ours.sign_bytes(deep_header.as_bytes(), claims().to_string().as_bytes()),
        E::Malformed("header nests too deeply"),
    );
    let deep_in_string = claims_with(json!({"note": nested(200)}));
    let fine = ours.sign(&header(kid), &deep_in_string);
    assert!(
        verifier_accepts(&fine).await,
        "brackets inside strings are not nesting"
    );
    case(
        "header not base64",
        format!("!!!.{}.{}", good_parts[1], sig),
        E::Malformed("header is not base64url"),
    );
    case(
        "header not JSON",
        format!("{}.{}.{}", b64(b"{alg"), good_parts[1], sig),
        E::Malformed("header is not valid"),
    );

    let (verifier, _clock) = static_verifier(|_| {});
    let mut failures = Vec::new();
    for (name, token, expected) in &cases {
        match verifier.verify::<AccessClaims>(token).await {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) if e != *expected => {
                failures.push(format!("{name}: {e:?}, expected {expected:?}"))
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Every refusal was counted by reason, and nothing verified.
    let m = verifier.metrics();
    assert_eq!(m.verified, 0);
    let failed: u64 = m.failed.iter().map(|(_, n)| n).sum();
    assert_eq!(failed, cases.len() as u64);
    assert_eq!(
        m.failed("bad_signature"),
        cases.iter().filter(|c| c.2 == E::BadSignature).count() as u64
    );
}

async fn verifier_accepts(token: &str) -> bool {
    static_verifier(|_| {})
        .0
        .verify::<AccessClaims>(token)
        .await
        .is_ok()
}

#[tokio::test]
async fn good_tokens_are_accepted_in_every_allowed_shape() {
    let ours = TestKey::load("ours");
    let kid = ours.kid();
    let (verifier, _clock) = static_verifier(|_| {});
    let mut typ_app = header(kid);
    typ_app["typ"] = json!("application/at+jwt");
    let cases = [
        ("typical", ours.sign(&header(kid), &claims())),
        (
            "aud array with ours",
            ours.sign(
                &header(kid),
                &claims_with(json!({"aud": ["other", AUDIENCE]})),
            ),
        ),
        (
            "unknown extra claims",
            ours.sign(
                &header(kid),
                &claims_with(json!({"https://example.com/tenant": {"id": 7}, "amr": ["pwd"]})),
            ),
        ),
        ("typ application/at+jwt", ours.sign(&typ_app, &claims())),
        (
            "expired within leeway",
            ours.sign(&header(kid), &claims_with(json!({"exp": NOW - 59}))),
        ),
        (
            "nbf within leeway",
            ours.sign(&header(kid), &claims_with(json!({"nbf": NOW + 59}))),
        ),
        (
            "no nbf",
            ours.sign(&header(kid), &claims_with(json!({"nbf": null}))),
        ),
        (
            "only required claims",
            ours.sign(
                &header(kid),
                &json!({"iss": ISSUER, "sub": "u", "aud": AUDIENCE, "exp": NOW + 1, "iat": NOW}),
            ),
        ),
        ("unknown header members", {
            let mut h = header(kid);
            h["cty"] = json!("JWT");
            h["x-trace"] = json!(1);
            ours.sign(&h, &claims())
        }),
    ];
    for (name, token) in &cases {
        let verified = verifier
            .verify::<AccessClaims>(token)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(!verified.subject().is_empty(), "{name}");
        assert_eq!(verified.kid(), kid);
    }
    let v = verifier.verify::<AccessClaims>(&cases[0].1).await.unwrap();
    assert_eq!(v.subject(), "u-1234");
    assert_eq!(v.claims().preferred_username.as_deref(), Some("alice"));
    assert!(v.has_role("user") && !v.has_role("admin"));
    assert!(v.has_scope("profile"));
    assert_eq!(v.expires_at(), Some(NOW + 900));
    // Custom claim types work too.
    #[derive(serde::Deserialize)]
    struct Mine {
        sid: String,
    }
    let mine = verifier.verify::<Mine>(&cases[0].1).await.unwrap();
    assert_eq!(mine.claims().sid, "s-1");
}

#[tokio::test]
async fn a_repeated_token_skips_rsa_but_never_the_time_checks() {
    let ours = TestKey::load("ours");
    let (verifier, clock) = static_verifier(|_| {});
    let token = ours.sign(&header(ours.kid()), &claims());
    for _ in 0..5 {
        verifier.verify::<AccessClaims>(&token).await.unwrap();
    }
    let m = verifier.metrics();
    assert_eq!(
        (m.verified, m.token_cache_hits, m.token_cache_entries),
        (5, 4, 1)
    );
    // Past exp + leeway, the cached token is refused like any other.
    clock.advance(900 + 60);
    assert_eq!(
        verifier.verify::<AccessClaims>(&token).await.unwrap_err(),
        VerifyError::Expired { exp: NOW + 900 }
    );
    // A tampered copy is not a cache hit.
    clock.set(NOW);
    let p = parts(&token);
    let tampered = format!("{}.{}.{}", p[0], p[1], flip(&p[2]));
    assert_eq!(
        verifier
            .verify::<AccessClaims>(&tampered)
            .await
            .unwrap_err(),
        VerifyError::BadSignature
    );
}

#[tokio::test]
async fn a_header_seen_before_is_still_only_a_header() {
    // The verifier remembers header segments that passed its checks; the same
    // header on a forged or expired token changes nothing.
    let ours = TestKey::load("ours");
    let attacker = TestKey::load("attacker");
    let (verifier, _clock) = static_verifier(|c| c.token_cache = None);
    let h = header(ours.kid());
    verifier
        .verify::<AccessClaims>(&ours.sign(&h, &claims()))
        .await
        .unwrap();
    let forged = attacker.sign(&h, &claims());
    assert_eq!(
        verifier.verify::<AccessClaims>(&forged).await.unwrap_err(),
        VerifyError::BadSignature
    );
    let expired = ours.sign(&h, &claims_with(json!({"exp": NOW - 3600})));
    assert!(matches!(
        verifier.verify::<AccessClaims>(&expired).await,
        Err(VerifyError::Expired { .. })
    ));
    let other_aud = ours.sign(&h, &claims_with(json!({"aud": "other"})));
    assert_eq!(
        verifier
            .verify::<AccessClaims>(&other_aud)
            .await
            .unwrap_err(),
        VerifyError::WrongAudience
    );
    verifier
        .verify::<AccessClaims>(&ours.sign(&h, &claims()))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_cache_can_be_turned_off_and_limits_are_configurable() {
    let ours = TestKey::load("ours");
    let (verifier, _clock) = static_verifier(|c| {
        c.token_cache = None;
        c.leeway = std::time::Duration::ZERO;
        c.required_typ = None;
    });
    let token = ours.sign(&header(ours.kid()), &claims());
    for _ in 0..3 {
        verifier.verify::<AccessClaims>(&token).await.unwrap();
    }
    assert_eq!(verifier.metrics().token_cache_hits, 0);
    // Without leeway, one second past exp is expired.
    let late = ours.sign(&header(ours.kid()), &claims_with(json!({"exp": NOW})));
    assert!(matches!(
        verifier.verify::<AccessClaims>(&late).await,
        Err(VerifyError::Expired { .. })
    ));
    // Without a required typ, a plain JWT typ passes.
    let mut jwt = header(ours.kid());
    jwt["typ"] = json!("JWT");
    verifier
        .verify::<AccessClaims>(&ours.sign(&jwt, &claims()))
        .await
        .unwrap();
}

#[test]
fn unsafe_configurations_are_refused() {
    use tessera_verifier::{ConfigError, ManualClock, Verifier, VerifierConfig};
    let start = |f: &dyn Fn(&mut VerifierConfig)| {
        let mut c = VerifierConfig::new(ISSUER, [AUDIENCE]);
        f(&mut c);
        Verifier::start(c, std::sync::Arc::new(ManualClock::new(NOW))).unwrap_err()
    };
    let key = |e: ConfigError| match e {
        ConfigError::Invalid { key, .. } => key,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        key(start(&|c| c.algorithms = vec!["none".into()])),
        "algorithms"
    );
    assert_eq!(
        key(start(&|c| c.algorithms = vec!["HS256".into()])),
        "algorithms"
    );
    assert_eq!(key(start(&|c| c.algorithms.clear())), "algorithms");
    assert_eq!(key(start(&|c| c.audiences.clear())), "audiences");
    assert_eq!(key(start(&|c| c.issuer.clear())), "issuer");
    assert_eq!(
        key(start(&|c| c.leeway = std::time::Duration::from_secs(301))),
        "leeway"
    );
    // Discovery needs an http:// issuer, and fetching needs a runtime.
    assert_eq!(
        key(start(&|c| c.issuer = "ftp://issuer.test".into())),
        "issuer"
    );
    assert_eq!(
        key(start(&|c| c.issuer = "http://127.0.0.1:9".into())),
        "jwks"
    );
}
