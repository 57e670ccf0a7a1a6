//! Writes the seed corpora, `fuzz/seeds/<target>/`, from the fixed keys and
//! the cases of the test tables (the verifier's negative table, the RFC
//! vectors, real issuer requests and manifests). Run by `fuzz/run seeds`;
//! the output is committed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera_fuzz::*;

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    verify_token(&out.join("verify_token"));
    jwks(&out.join("jwks"));
    feed_document(&out.join("feed_document"));
    manifest(&out.join("manifest"));
    issuer_bodies(&out.join("issuer_bodies"));
    feed_cursor(&out.join("feed_cursor"));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/tessera-verifier/tests/fixtures")
        .join(name)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn with(base: &Value, changes: Value) -> Vec<u8> {
    let mut claims = base.clone();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() && k.starts_with('-') {
            claims.as_object_mut().unwrap().remove(&k[1..]);
        } else {
            claims[k] = v.clone();
        }
    }
    claims.to_string().into_bytes()
}

fn verify_token(dir: &Path) {
    let keys = Keys::get();
    let good = good_claims();
    // The negative table's claims cases (tests/it/reject.rs), each signed
    // properly, with every key.
    let claim_cases: Vec<(&str, Vec<u8>)> = vec![
        ("good", good.to_string().into_bytes()),
        ("expired", with(&good, json!({"exp": NOW - 61}))),
        ("nbf-future", with(&good, json!({"nbf": NOW + 61}))),
        ("iat-future", with(&good, json!({"iat": NOW + 61}))),
        ("wrong-iss", with(&good, json!({"iss": "https://evil.test"}))),
        ("iss-slash", with(&good, json!({"iss": format!("{ISSUER}/")}))),
        ("wrong-aud", with(&good, json!({"aud": "other"}))),
        ("aud-list", with(&good, json!({"aud": ["a", AUDIENCE]}))),
        ("aud-null", with(&good, json!({"aud": null}))),
        ("no-sub", with(&good, json!({"-sub": null}))),
        ("exp-string", with(&good, json!({"exp": "2030-01-01"}))),
        ("exp-float", with(&good, json!({"exp": NOW as f64 + 900.5}))),
        ("iat-bool", with(&good, json!({"iat": true}))),
        ("aud-mixed", with(&good, json!({"aud": [AUDIENCE, 7]}))),
        ("roles-string", with(&good, json!({"roles": "admin"}))),
        ("not-object", b"[1,2,3]".to_vec()),
        ("duplicate-sub", br#"{"sub":"a","sub":"b","iss":"https://issuer.test","aud":"api","exp":1800000600,"iat":1799999990}"#.to_vec()),
        ("unicode", with(&good, json!({"sub": "\u{1F600}\\u0000"}))),
    ];
    for (selector, (alg, kid, _, key)) in keys.keys.iter().enumerate() {
        let selector = u8::try_from(selector).unwrap();
        for (name, claims) in &claim_cases {
            write(
                dir,
                &format!("{alg}-{name}"),
                &signed_input(selector, b"", claims),
            );
        }
        let header_cases: Vec<(&str, Value)> = vec![
            ("typ-jwt", json!({"alg": alg, "typ": "JWT", "kid": kid})),
            ("no-typ", json!({"alg": alg, "kid": kid})),
            ("no-kid", json!({"alg": alg, "typ": "at+jwt"})),
            (
                "unknown-kid",
                json!({"alg": alg, "typ": "at+jwt", "kid": "nope"}),
            ),
            (
                "crit",
                json!({"alg": alg, "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
            ),
            (
                "alg-none",
                json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
            ),
            (
                "alg-lower",
                json!({"alg": alg.to_lowercase(), "typ": "at+jwt", "kid": kid}),
            ),
            (
                "alg-hs256",
                json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
            ),
            (
                "jwk-embedded",
                json!({"alg": alg, "typ": "at+jwt", "kid": kid, "jwk": {"kty": "RSA"}}),
            ),
        ];
        for (name, header) in header_cases {
            write(
                dir,
                &format!("{alg}-header-{name}"),
                &signed_input(
                    selector,
                    header.to_string().as_bytes(),
                    &good.to_string().into_bytes(),
                ),
            );
        }
        // Raw tokens: a good one and its structural negatives.
        let token = compact(key, &access_header(alg, kid), good.to_string().as_bytes());
        let (input, sig) = token.rsplit_once('.').unwrap();
        let raw_cases = vec![
            ("good", token.clone()),
            ("padded", format!("{token}=")),
            ("std-alphabet", token.replace('-', "+").replace('_', "/")),
            ("sig-removed", format!("{input}.")),
            ("sig-cut", format!("{input}.{}", &sig[..sig.len() - 3])),
            ("four-segments", format!("{token}.{sig}")),
            ("whitespace", format!(" {token}\n")),
        ];
        for (name, text) in raw_cases {
            let mut bytes = vec![0];
            bytes.extend_from_slice(text.as_bytes());
            write(dir, &format!("{alg}-raw-{name}"), &bytes);
        }
    }
    // The RFC vectors and their negatives, as raw tokens.
    for file in [
        "rfc7515_A2.json",
        "rfc7520_4_1.json",
        "rfc8037_A4.json",
        "es256_tessera.json",
    ] {
        let vector: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
        let mut tokens = vec![vector["token"].as_str().unwrap().to_owned()];
        if let Some(negatives) = vector["negative"].as_array() {
            for n in negatives {
                if let Some(t) = n["token"].as_str() {
                    tokens.push(t.to_owned());
                }
            }
        }
        for (i, token) in tokens.iter().enumerate() {
            let mut bytes = vec![0];
            bytes.extend_from_slice(token.as_bytes());
            write(dir, &format!("vector-{file}-{i}"), &bytes);
        }
    }
}

fn jwks(dir: &Path) {
    let keys = Keys::get();
    write(dir, "ours", keys.jwks().to_string().as_bytes());
    for file in ["rfc7515_A2.jwks.json", "rfc7520_4_1.jwks.json"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        write(dir, file, &bytes);
    }
    let (_, _, rsa, _) = &keys.keys[0];
    let (_, _, ec, _) = &keys.keys[1];
    let (_, _, ed, _) = &keys.keys[2];
    let mut small = rsa.clone();
    small["n"] = json!(URL_SAFE_NO_PAD.encode([0xc5u8; 128]));
    let mut wrong_curve = ec.clone();
    wrong_curve["crv"] = json!("P-384");
    let mut off_curve = ec.clone();
    off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
    let mut small_order = ed.clone();
    small_order["x"] = json!(URL_SAFE_NO_PAD.encode([0u8; 32]));
    let mut private = ec.clone();
    private["d"] = json!("AAAA");
    let mut enc = rsa.clone();
    enc["use"] = json!("enc");
    let cases = vec![
        ("small-rsa", json!({"keys": [small]})),
        ("wrong-curve", json!({"keys": [wrong_curve]})),
        ("off-curve", json!({"keys": [off_curve]})),
        ("small-order", json!({"keys": [small_order]})),
        ("private", json!({"keys": [private]})),
        ("enc", json!({"keys": [enc]})),
        ("duplicate-kid", json!({"keys": [rsa, rsa]})),
        ("no-keys", json!({})),
        ("keys-object", json!({"keys": {"kty": "RSA"}})),
    ];
    for (name, set) in cases {
        write(dir, name, set.to_string().as_bytes());
    }
}

fn feed_document(dir: &Path) {
    let entry = |kind: &str, value: &str, exp: i64| {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("{kind}:{value}").as_bytes(),
        );
        json!({"kind": kind, "hash": URL_SAFE_NO_PAD.encode(digest.as_ref()), "exp": exp})
    };
    let snapshot = json!({
        "iss": ISSUER, "iat": NOW, "cursor": "e1.2.abcdefghijk", "snapshot": true,
        "entries": [entry("sid", "sid-1", NOW + 600), entry("jti", "jti-9", NOW + 600)],
    });
    let mut user = entry("sub", "user-1", NOW + 600);
    user["iat_before"] = json!(NOW);
    let delta = json!({
        "iss": ISSUER, "iat": NOW, "since": "e1.2.abcdefghijk", "cursor": "e1.3.bcdefghijkl",
        "snapshot": false, "entries": [user, {"kind": "future", "hash": "x", "exp": NOW + 5}],
    });
    let wrong_since = json!({
        "iss": ISSUER, "iat": NOW, "since": "e1.1.zzz", "cursor": "e1.4.x", "snapshot": false, "entries": [],
    });
    let old = json!({"iss": ISSUER, "iat": NOW - 1000, "cursor": "e1.2.a", "snapshot": true, "entries": []});
    let bad_hash = json!({"iss": ISSUER, "iat": NOW, "cursor": "e1.2.a", "snapshot": true,
        "entries": [{"kind": "sid", "hash": "short", "exp": NOW + 5}]});
    for (selector, (alg, _, _, key)) in Keys::get().keys.iter().enumerate() {
        let selector = u8::try_from(selector).unwrap();
        let mut signed = vec![1, selector];
        signed.extend_from_slice(snapshot.to_string().as_bytes());
        signed.push(b'\n');
        signed.extend_from_slice(delta.to_string().as_bytes());
        write(dir, &format!("{alg}-snapshot-then-delta"), &signed);
        for (name, doc) in [
            ("wrong-since", &wrong_since),
            ("old", &old),
            ("bad-hash", &bad_hash),
        ] {
            let mut bytes = vec![1, selector];
            bytes.extend_from_slice(snapshot.to_string().as_bytes());
            bytes.push(b'\n');
            bytes.extend_from_slice(doc.to_string().as_bytes());
            write(dir, &format!("{alg}-{name}"), &bytes);
        }
        let _ = key;
    }
    // Raw: a signed document as text, and one with the access-token typ.
    let (alg, kid, _, key) = &Keys::get().keys[1];
    let header = json!({"alg": alg, "typ": "revocations+jwt", "kid": kid}).to_string();
    let doc = compact(key, header.as_bytes(), snapshot.to_string().as_bytes());
    write(
        dir,
        "raw-snapshot",
        &[b"\x00".as_slice(), doc.as_bytes()].concat(),
    );
    let as_token = compact(
        key,
        &access_header(alg, kid),
        snapshot.to_string().as_bytes(),
    );
    write(
        dir,
        "raw-at-jwt-typ",
        &[b"\x00".as_slice(), as_token.as_bytes()].concat(),
    );
}

fn manifest(dir: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tessera_keyring::KeyDir::new(tmp.path().join("keys"));
    keys.init(tessera_keyring::Algorithm::Es256).unwrap();
    write(dir, "init", &std::fs::read(keys.manifest_path()).unwrap());
    keys.generate(tessera_keyring::Algorithm::EdDsa).unwrap();
    write(
        dir,
        "pending",
        &std::fs::read(keys.manifest_path()).unwrap(),
    );
    let policy = tessera_keyring::RotationPolicy::default();
    keys.rotate(&policy, true, tessera_keyring::Algorithm::Es256)
        .unwrap();
    write(
        dir,
        "rotated",
        &std::fs::read(keys.manifest_path()).unwrap(),
    );
}

fn issuer_bodies(dir: &Path) {
    let cases: Vec<(u8, &str, Vec<u8>)> = vec![
        (0, "refresh", b"grant_type=refresh_token&refresh_token=abc".to_vec()),
        (0, "code", format!("grant_type=authorization_code&code=abc&redirect_uri={SPA_REDIRECT}&client_id={SPA_CLIENT}&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").into_bytes()),
        (0, "unsupported", b"grant_type=password&username=alice&password=x".to_vec()),
        (0, "assertion", b"grant_type=client_credentials&client_id=reports-job&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c".to_vec()),
        (1, "client-credentials", b"grant_type=client_credentials&scope=reports%3Aread".to_vec()),
        (1, "bad-scope", b"grant_type=client_credentials&scope=admin".to_vec()),
        (2, "login", br#"{"username":"alice","password":"wrong horse"}"#.to_vec()),
        (2, "login-unknown", br#"{"username":"bob","password":"correct horse","client_id":"x"}"#.to_vec()),
        (3, "revoke", b"token=abc&token_type_hint=refresh_token".to_vec()),
        (4, "introspect", b"token=a.b.c".to_vec()),
        (5, "authorize-login", format!("username=alice&password=wrong&client_id={SPA_CLIENT}&redirect_uri={SPA_REDIRECT}&response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=s&csrf=x").into_bytes()),
        (6, "consent", b"request=abc&csrf=x&decision=allow".to_vec()),
        (7, "session", br#"{"username":"alice","password":"wrong"}"#.to_vec()),
        (8, "session-refresh", b"{}".to_vec()),
        (9, "end-session", b"id_token_hint=a.b.c&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb".to_vec()),
        (10, "userinfo", b"access_token=a.b.c".to_vec()),
        (11, "authorize", format!("response_type=code&client_id={SPA_CLIENT}&redirect_uri={SPA_REDIRECT}&scope=openid%20profile&state=s&nonce=n&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256").into_bytes()),
        (0x80, "token-as-json", br#"{"grant_type":"refresh_token"}"#.to_vec()),
        (0x82, "login-as-form", b"username=alice&password=x".to_vec()),
    ];
    for (selector, name, body) in cases {
        let mut bytes = vec![selector];
        bytes.extend_from_slice(&body);
        write(dir, name, &bytes);
    }
}

fn feed_cursor(dir: &Path) {
    // The feed's real cursors, from the harness issuer: its first answer's.
    let app = &issuer().app;
    let (status, body) =
        runtime().block_on(send(app, request("GET", "/revocations", &[], Vec::new())));
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let payload = text.trim().split('.').nth(1).unwrap();
    let document: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let cursor = document["cursor"].as_str().unwrap().to_owned();
    let (epoch, rest) = cursor.split_once('.').unwrap();
    let cases = vec![
        ("current", cursor.clone()),
        ("start", format!("{epoch}.0")),
        (
            "no-tag",
            format!("{epoch}.{}", rest.split('.').next().unwrap()),
        ),
        ("ahead", format!("{epoch}.999999.-")),
        ("other-epoch", "zzzz.1.-".to_owned()),
        ("negative", format!("{epoch}.-1")),
        ("huge", format!("{epoch}.99999999999999999999")),
        ("long-tag", format!("{epoch}.1.{}", "a".repeat(17))),
        ("empty", String::new()),
    ];
    for (name, since) in cases {
        write(dir, name, since.as_bytes());
    }
}
