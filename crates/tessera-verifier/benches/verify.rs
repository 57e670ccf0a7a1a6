//! Verifying a typical access token through the [`Verifier`] (keys cached),
//! beside the raw aws-lc-rs RSA verification of the same signature with the
//! same parsed key, interleaved in one run. Also: the same token repeated, which
//! the verified-token cache answers without RSA.
//!
//! Then the revocation list's cost (issue 7) and a two-issuer `VerifierSet`
//! against a single `Verifier` (issue 18).
//!
//! Run: `cargo bench -p tessera-verifier --bench verify`. Target: full
//! verification >= 0.9 x the primitive; the set >= 0.97 x the single one. Under `cargo test --benches` it runs a
//! few rounds as a smoke test.
//!
//! [`Verifier`]: tessera_verifier::Verifier

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods, // a benchmark reads the clock
    missing_docs
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_verifier::{
    AccessClaims, JwksSource, KeySet, ManualClock, TokenCacheConfig, Verifier, VerifierConfig,
};

const NOW: i64 = 1_767_225_600;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let der = std::fs::read(format!("{fixtures}/test_ours.pk8.der")).unwrap();
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{fixtures}/test_keys.jwk.json")).unwrap())
            .unwrap();
    let jwk = &jwks["ours"];
    let pair = RsaKeyPair::from_pkcs8(&der).unwrap();

    // A typical Tessera access token (RFC 9068 header and claims).
    let header = r#"{"alg":"RS256","typ":"at+jwt","kid":"test-ours"}"#;
    let token_with = |jti: usize| {
        let claims = format!(
            r#"{{"iss":"https://auth.example.com","sub":"8f14e45f-ceea-467a-9af0-0c1e6d6e1c2a","aud":"https://api.example.com","exp":{},"iat":{NOW},"nbf":{NOW},"jti":"{jti:032x}","client_id":"tessera","sid":"5d41402abc4b2a76b9719d911017c592","scope":"profile","roles":["user"],"preferred_username":"alice"}}"#,
            NOW + 900
        );
        sign_jws(&pair, header, &claims)
    };
    let token = token_with(0);

    // The primitive: the same key parsed once into aws-lc-rs, verifying the
    // same signing input and signature (hashing included, as in the verifier).
    let b = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
    let raw = RsaPublicKeyComponents {
        n: b("n"),
        e: b("e"),
    }
    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
    .unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();

    let verifier = |cache: Option<TokenCacheConfig>| {
        let (set, _) = KeySet::from_jwks_json(
            serde_json::json!({"keys": [jwk]}).to_string().as_bytes(),
            &["RS256"],
        )
        .unwrap();
        let mut config =
            VerifierConfig::new("https://auth.example.com", ["https://api.example.com"])
                .with_jwks(JwksSource::Static(set));
        config.token_cache = cache;
        Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap()
    };
    let uncached = verifier(None);
    let cached = verifier(Some(TokenCacheConfig::default()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let (rounds, batch) = if full { (60, 400) } else { (2, 5) };
    let primitive = || {
        let start = Instant::now();
        for _ in 0..batch {
            raw.verify_sig(black_box(input.as_bytes()), black_box(&sig))
                .unwrap();
        }
        start.elapsed().as_secs_f64()
    };
    let through = |v: &Verifier, token: &str| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..batch {
                black_box(v.verify::<AccessClaims>(black_box(token)).await.unwrap());
            }
            start.elapsed().as_secs_f64()
        })
    };
    // Interleaved A/B: alternate which side runs first; the median of the
    // per-round ratios cancels a shared machine's drift.
    let mut samples: Vec<[f64; 3]> = Vec::new();
    for round in 0..rounds {
        let (p, f, r) = if round % 2 == 0 {
            let p = primitive();
            (p, through(&uncached, &token), through(&cached, &token))
        } else {
            let r = through(&cached, &token);
            let f = through(&uncached, &token);
            (primitive(), f, r)
        };
        samples.push([p, f, r]);
    }
    let median = |f: &dyn Fn(&[f64; 3]) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rate = |i: usize| {
        let total: f64 = samples.iter().map(|s| s[i]).sum();
        (rounds * batch) as f64 / total
    };
    let full_ratio = median(&|s| s[0] / s[1]);
    let cached_ratio = median(&|s| s[0] / s[2]);
    assert!(cached.metrics().token_cache_hits > 0);
    assert_eq!(uncached.metrics().token_cache_hits, 0);
    println!(
        "RS256 verification of a typical access token, 2048-bit key, one core ({} backend, interleaved A/B, {rounds} rounds of {batch}):",
        tessera_verifier::BACKEND
    );
    println!(
        "  aws-lc-rs primitive (parsed key)   {:>9.0} verifications/s",
        rate(0)
    );
    println!(
        "  Verifier, every check, no cache    {:>9.0} verifications/s: median ratio {full_ratio:.3} x the primitive (target >= 0.9)",
        rate(1)
    );
    println!(
        "  Verifier, repeated token (cached)  {:>9.0} verifications/s: median ratio {cached_ratio:.3} x the primitive",
        rate(2)
    );
    // Fresh tokens through the cache: the cost of hashing and inserting when
    // every token is new (the cache's overhead on a miss).
    let fresh: Vec<String> = (1..=if full { 2000 } else { 5 }).map(token_with).collect();
    let start = Instant::now();
    rt.block_on(async {
        for t in &fresh {
            black_box(cached.verify::<AccessClaims>(t).await.unwrap());
        }
    });
    let miss_rate = fresh.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..fresh.len() {
        raw.verify_sig(black_box(input.as_bytes()), black_box(&sig))
            .unwrap();
    }
    let raw_rate = fresh.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "  Verifier, fresh tokens, cache on   {miss_rate:>9.0} verifications/s: ratio {:.3} x the primitive ({raw_rate:.0}/s, measured right after)",
        miss_rate / raw_rate
    );

    curve_verification_cost(full);
    revocation_list_cost(full, &pair, &jwks, &fresh);
    verifier_set_cost(full, jwk, &token);
}

/// Issue 20: ES256 and EdDSA tokens through the Verifier (no token cache:
/// every check), beside aws-lc-rs verifying the same signature with the same
/// parsed key, interleaved.
fn curve_verification_cost(full: bool) {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
        Ed25519KeyPair, ParsedPublicKey,
    };
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let vector = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(format!("{fixtures}/{name}")).unwrap()).unwrap()
    };
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap();
    let es = vector("es256_tessera.json");
    let ed = vector("rfc8037_A4.json");
    let es_pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &b64(&es["private_key_pkcs8_base64url"]),
    )
    .unwrap();
    let ed_private = &ed["jwk_private_published_test_key"];
    let ed_pair =
        Ed25519KeyPair::from_seed_and_public_key(&b64(&ed_private["d"]), &b64(&ed_private["x"]))
            .unwrap();
    let claims = format!(
        r#"{{"iss":"https://auth.example.com","sub":"8f14e45f-ceea-467a-9af0-0c1e6d6e1c2a","aud":"https://api.example.com","exp":{},"iat":{NOW},"nbf":{NOW},"jti":"{:032x}","client_id":"tessera","sid":"5d41402abc4b2a76b9719d911017c592","scope":"profile","roles":["user"],"preferred_username":"alice"}}"#,
        NOW + 900,
        7
    );
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut ed_jwk = ed["jwk"].clone();
    ed_jwk["kid"] = serde_json::json!("ed-test");
    let cases: [(
        &str,
        serde_json::Value,
        &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
    ); 2] = [
        ("ES256", es["jwk"].clone(), &ECDSA_P256_SHA256_FIXED),
        ("EdDSA", ed_jwk, &ED25519),
    ];
    println!(
        "ES256 and EdDSA verification of the same typical access token, one core ({} backend, interleaved A/B):",
        tessera_verifier::BACKEND
    );
    for (alg, jwk, algorithm) in cases {
        let header = format!(
            r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{}"}}"#,
            jwk["kid"].as_str().unwrap()
        );
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode(&claims)
        );
        let sig = match alg {
            "ES256" => es_pair
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            _ => ed_pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        let public = match alg {
            "ES256" => {
                let mut point = vec![4u8];
                point.extend(b64(&jwk["x"]));
                point.extend(b64(&jwk["y"]));
                point
            }
            _ => b64(&jwk["x"]),
        };
        let raw = ParsedPublicKey::new(algorithm, &public).unwrap();
        let (set, _) = KeySet::from_jwks_json(
            serde_json::json!({"keys": [jwk]}).to_string().as_bytes(),
            &[alg],
        )
        .unwrap();
        let mut config =
            VerifierConfig::new("https://auth.example.com", ["https://api.example.com"])
                .with_jwks(JwksSource::Static(set));
        config.algorithms = vec![alg.to_owned()];
        config.token_cache = None;
        let verifier = Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (rounds, batch) = if full { (60, 400) } else { (2, 5) };
        let primitive = || {
            let start = Instant::now();
            for _ in 0..batch {
                raw.verify_sig(black_box(input.as_bytes()), black_box(&sig))
                    .unwrap();
            }
            start.elapsed().as_secs_f64()
        };
        let through = || {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..batch {
                    black_box(
                        verifier
                            .verify::<AccessClaims>(black_box(&token))
                            .await
                            .unwrap(),
                    );
                }
                start.elapsed().as_secs_f64()
            })
        };
        let (mut ratios, mut t_raw, mut t_full) = (Vec::new(), 0.0, 0.0);
        for round in 0..rounds {
            let (p, f) = if round % 2 == 0 {
                let p = primitive();
                (p, through())
            } else {
                let f = through();
                (primitive(), f)
            };
            ratios.push(p / f);
            t_raw += p;
            t_full += f;
        }
        ratios.sort_by(f64::total_cmp);
        let n = (rounds * batch) as f64;
        println!(
            "  {alg:<6} aws-lc-rs primitive {:>9.0}/s, Verifier (every check) {:>9.0}/s: median ratio {:.3} x the primitive (target >= 0.9); token {} bytes",
            n / t_raw,
            n / t_full,
            ratios[ratios.len() / 2],
            token.len()
        );
    }
}

/// Issue 18: the same token through a two-issuer `VerifierSet` and through
/// the single `Verifier` of its issuer, interleaved; without the token cache
/// (every check, RSA included) and with it (a repeated token: then choosing
/// the member is a larger share of the work).
fn verifier_set_cost(full: bool, jwk: &serde_json::Value, token: &str) {
    use tessera_verifier::VerifierSet;
    let member = |issuer: &str, cache: Option<TokenCacheConfig>| {
        let (set, _) = KeySet::from_jwks_json(
            serde_json::json!({"keys": [jwk]}).to_string().as_bytes(),
            &["RS256"],
        )
        .unwrap();
        let mut config = VerifierConfig::new(issuer, ["https://api.example.com"])
            .with_jwks(JwksSource::Static(set));
        config.token_cache = cache;
        Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap()
    };
    let pair_of = |cache: Option<TokenCacheConfig>| {
        let single = member("https://auth.example.com", cache);
        let set = VerifierSet::new()
            .with(member("https://partners.example.com", cache))
            .unwrap()
            .with(member("https://auth.example.com", cache))
            .unwrap()
            .build()
            .unwrap();
        (single, set)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let run = |v: &Verifier, batch: usize| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..batch {
                black_box(v.verify::<AccessClaims>(black_box(token)).await.unwrap());
            }
            start.elapsed().as_secs_f64()
        })
    };
    println!(
        "VerifierSet (issue 18): two issuers, the token's the second added, vs the single Verifier of its issuer, interleaved:"
    );
    for (what, cache, rounds, batch) in [
        ("every check (no cache)", None, 40, 200),
        (
            "repeated token (cached)",
            Some(TokenCacheConfig::default()),
            40,
            20_000,
        ),
    ] {
        let (rounds, batch) = if full { (rounds, batch) } else { (2, 5) };
        let (single, set) = pair_of(cache);
        let mut ratios = Vec::new();
        let (mut t_single, mut t_set) = (0.0, 0.0);
        for round in 0..rounds {
            let (a, b) = if round % 2 == 0 {
                let a = run(&single, batch);
                (a, run(&set, batch))
            } else {
                let b = run(&set, batch);
                (run(&single, batch), b)
            };
            ratios.push(a / b);
            t_single += a;
            t_set += b;
        }
        ratios.sort_by(f64::total_cmp);
        let n = (rounds * batch) as f64;
        println!(
            "  {what:<24} {:>9.0}/s through the set, {:>9.0}/s single: median ratio {:.3} (target >= 0.97)",
            n / t_set,
            n / t_single,
            ratios[ratios.len() / 2]
        );
    }
}

/// A compact JWS of `header` and `payload` signed RS256 with `pair`.
fn sign_jws(pair: &RsaKeyPair, header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Issue 7: verification with a revocation list of 100,000 live entries vs
/// an empty one (same feed, same verifier settings), interleaved, for a fresh
/// token (RSA) and a repeated one (cached; the lookups are then most of the
/// work). The lists come from a feed document served over loopback and signed
/// like the issuer's, so the verifiers hold exactly what they would in use.
fn revocation_list_cost(full: bool, pair: &RsaKeyPair, jwks: &serde_json::Value, fresh: &[String]) {
    use std::time::Duration;
    use tessera_verifier::RevocationConfig;
    const ENTRIES: usize = 100_000;
    let sign = |payload: &str| {
        let header = r#"{"alg":"RS256","typ":"revocations+jwt","kid":"test-ours"}"#;
        sign_jws(pair, header, payload)
    };
    let document = |entries: usize| {
        let entries: Vec<serde_json::Value> = (0..entries)
            .map(|i| {
                let hash = aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    format!("sid:{i:032x}").as_bytes(),
                );
                serde_json::json!({"kind": "sid", "hash": URL_SAFE_NO_PAD.encode(hash), "exp": NOW + 1200})
            })
            .collect();
        sign(
            &serde_json::json!({
                "iss": "https://auth.example.com", "iat": NOW, "cursor": "bench.1",
                "snapshot": true, "entries": entries,
            })
            .to_string(),
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (full_doc, empty_doc) = (document(ENTRIES), document(0));
    let serve = |body: String| {
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/revocations",
                axum::routing::get(move || {
                    let body = body.clone();
                    async move { ([("etag", "\"bench.1\"")], body) }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            addr
        })
    };
    let follower = |addr: std::net::SocketAddr| {
        let (set, _) = KeySet::from_jwks_json(
            serde_json::json!({"keys": [jwks["ours"]]})
                .to_string()
                .as_bytes(),
            &["RS256"],
        )
        .unwrap();
        let mut config =
            VerifierConfig::new("https://auth.example.com", ["https://api.example.com"])
                .with_jwks(JwksSource::Static(set));
        let mut feed = RevocationConfig::default();
        feed.url = Some(format!("http://{addr}/revocations"));
        // Polled once for the benchmark: the list is loaded, then left alone.
        feed.poll_interval = Duration::from_secs(3600);
        feed.max_outage = Duration::from_secs(7200);
        config.revocations = Some(feed);
        let _guard = rt.enter();
        Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap()
    };
    let with_list = follower(serve(full_doc));
    let without = follower(serve(empty_doc));
    for (v, n) in [(&with_list, ENTRIES), (&without, 0)] {
        rt.block_on(async {
            assert!(
                v.ready(Duration::from_secs(30)).await,
                "{:?}",
                v.revocations()
            );
        });
        assert_eq!(v.revocations().unwrap().entries, n);
    }
    let (cached_rounds, cached_batch) = if full { (40, 20_000) } else { (2, 5) };
    let run = |v: &Verifier, tokens: &[&str]| {
        rt.block_on(async {
            let start = Instant::now();
            for t in tokens {
                black_box(v.verify::<AccessClaims>(black_box(t)).await.unwrap());
            }
            start.elapsed().as_secs_f64()
        })
    };
    // Both sides over the same tokens, which one first alternating by round:
    // (time with the list, time without).
    let both = |round: usize, tokens: &[&str]| {
        if round.is_multiple_of(2) {
            let a = run(&with_list, tokens);
            (a, run(&without, tokens))
        } else {
            let b = run(&without, tokens);
            (run(&with_list, tokens), b)
        }
    };
    // Fresh tokens: each chunk goes once through each side, so neither side
    // has seen a token before (each verifier has its own token cache).
    let batch = fresh.len().div_ceil(20).max(1);
    let mut fresh_ratios = Vec::new();
    let mut rates = [0.0f64; 4];
    for (round, chunk) in fresh.chunks(batch).enumerate() {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let (a, b) = both(round, &chunk);
        fresh_ratios.push(b / a);
        rates[0] += a;
        rates[1] += b;
    }
    // Repeated tokens: the fresh ones again, now in both token caches, so
    // the lookups hit different parts of the list as different users' tokens
    // would (one token over and over would keep its entries in L1).
    let repeated: Vec<&str> = fresh
        .iter()
        .map(String::as_str)
        .cycle()
        .take(cached_batch)
        .collect();
    let mut cached_ratios = Vec::new();
    for round in 0..cached_rounds {
        let (a, b) = both(round, &repeated);
        cached_ratios.push(b / a);
        rates[2] += a;
        rates[3] += b;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let fresh_n = fresh.len() as f64;
    let cached_n = (cached_ratios.len() * cached_batch) as f64;
    println!(
        "Revocation list cost (issue 7): {ENTRIES} live entries vs an empty list, same feed and settings, interleaved:"
    );
    println!(
        "  fresh tokens (RSA)      {:>9.0}/s with the list, {:>9.0}/s without: median ratio {:.3} (target >= 0.95)",
        fresh_n / rates[0],
        fresh_n / rates[1],
        median(&mut fresh_ratios)
    );
    println!(
        "  repeated tokens (cached, {} distinct) {:>9.0}/s with the list, {:>9.0}/s without: median ratio {:.3} (target >= 0.95)",
        fresh.len(),
        cached_n / rates[2],
        cached_n / rates[3],
        median(&mut cached_ratios)
    );
    assert_eq!(with_list.metrics().failed("revoked"), 0);
}
