//! Key rotation under traffic, the way an operator does it: while clients keep
//! calling a resource server, `tessera-issuer keys rotate` runs twice (as soon
//! as the rules allow, with short configured lifetimes) and then `keys prune`.
//! Not one valid request is refused, new tokens carry the new `kid` at once,
//! tokens of a retired key keep working until they expire, and the verifier
//! never has to chase an unknown `kid`: the rules alone keep it ahead. The
//! same holds when the rotations switch from RS256 to ES256 (or EdDSA): the
//! first publishes a key of the new algorithm, the second makes it sign.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The test compares token expiry (Unix seconds) with the wall clock.
#![allow(clippy::disallowed_methods)]

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{
    claims_of, key_list, keys, kid_in_state, kid_of, login, profile, published_kids,
};
use tessera_bench::Client;
use tessera_verifier::{SystemClock, Verifier, VerifierConfig};
use tokio::time::Instant;

/// Access tokens live 4 s, verifiers cache the JWKS for 2 s, no leeway: a
/// pending key may sign 2 s after it was written, and a retired key may be
/// pruned 6 s after it retired.
const LIFETIMES: [&str; 6] = [
    "--access-token-lifetime",
    "4s",
    "--jwks-cache-lifetime",
    "2s",
    "--clock-leeway",
    "0s",
];
/// A client stops using a token this long before its `exp`, so that no
/// request can arrive after it (the verifier has no leeway).
const MARGIN: f64 = 1.0;
const CLIENTS: usize = 4;
/// Per client: a bound on the loop, far above what the test needs.
const MAX_REQUESTS: u64 = 20_000;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[derive(Clone)]
struct Held {
    token: Arc<str>,
    kid: String,
    exp: i64,
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Accepted requests per `kid`, and when the last one was.
    accepted: HashMap<String, (u64, Instant)>,
    /// Refused requests with still-valid tokens: what went wrong.
    refused: Vec<String>,
}

struct Traffic {
    pool: Mutex<Vec<Held>>,
    seen: Mutex<Seen>,
    stop: AtomicBool,
    sent: AtomicU64,
}

impl Traffic {
    fn add(&self, token: &str) -> Held {
        let held = Held {
            token: token.into(),
            kid: kid_of(token),
            exp: claims_of(token)["exp"].as_i64().unwrap(),
        };
        self.pool.lock().unwrap().push(held.clone());
        held
    }

    /// The `n`th of the tokens still valid for a while.
    fn pick(&self, n: usize) -> Option<Held> {
        let now = unix_now();
        let mut pool = self.pool.lock().unwrap();
        pool.retain(|h| h.exp as f64 - now > MARGIN);
        (!pool.is_empty()).then(|| pool[n % pool.len()].clone())
    }

    async fn client(&self, resource: SocketAddr, first: usize) {
        let mut client = Client::connect(resource).await.unwrap();
        let mut n = first;
        for _ in 0..MAX_REQUESTS {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            n += 1;
            let Some(held) = self.pick(n) else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let auth = format!("Authorization: Bearer {}", held.token);
            let (status, body) = client.get("/profile", &[&auth]).await.unwrap();
            self.sent.fetch_add(1, Ordering::Relaxed);
            self.record(&held, status, &body);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn record(&self, held: &Held, status: u16, body: &[u8]) {
        let mut seen = self.seen.lock().unwrap();
        {
            if status == 200 {
                let entry = seen
                    .accepted
                    .entry(held.kid.clone())
                    .or_insert((0, Instant::now()));
                *entry = (entry.0 + 1, Instant::now());
            } else {
                seen.refused.push(format!(
                    "{status} for kid {} with exp {} at {:.3}: {}",
                    held.kid,
                    held.exp,
                    unix_now(),
                    String::from_utf8_lossy(body)
                ));
            }
        }
    }
}

/// Runs `keys rotate` until the rules allow it (exit code 3 is a rule's
/// refusal); returns how many times it was refused first.
async fn rotate_when_allowed(dir: &Path, signing_alg: Option<&str>) -> usize {
    let mut args = vec!["rotate"];
    args.extend(LIFETIMES);
    if let Some(alg) = signing_alg {
        args.extend(["--signing-alg", alg]);
    }
    for refusals in 0..100 {
        let out = keys(dir, &args);
        match out.status.code() {
            Some(0) => return refusals,
            Some(3) => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => panic!("rotate: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    panic!("rotate was refused for 10 s");
}

/// The metadata's `access_token_signing_alg_values_supported`, checked to
/// equal `id_token_signing_alg_values_supported`.
async fn signing_algs_listed(issuer: SocketAddr) -> Vec<String> {
    let (_, body) = tessera_testkit::stack::call(
        issuer,
        "GET",
        "/.well-known/openid-configuration",
        &[],
        "",
        "",
    )
    .await;
    let metadata: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let listed = |field: &str| -> Vec<String> {
        metadata[field]
            .as_array()
            .unwrap_or_else(|| panic!("no {field} in {metadata}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let access = listed("access_token_signing_alg_values_supported");
    assert_eq!(access, listed("id_token_signing_alg_values_supported"));
    access
}

/// Logs in until a new token is signed by `kid` (the issuer reloads its keyring
/// every 100 ms); returns that token.
async fn first_token_of(issuer: SocketAddr, password: &str, kid: &str, traffic: &Traffic) {
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(5) {
        let tokens = login(issuer, "admin", password).await;
        let held = traffic.add(tokens["access_token"].as_str().unwrap());
        if held.kid == kid {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("new tokens are not signed by {kid} 5 s after the rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_twice_and_pruning_under_traffic_refuses_no_valid_token() {
    under_traffic(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_rs256_to_es256_under_traffic_refuses_no_valid_token() {
    under_traffic(Some("ES256")).await;
}

/// The operator's algorithm switch: `--signing-alg` given to both rotations,
/// verifiers configured for the old and the new algorithm.
// The summary line is the test's report, as in a #[test] function.
#[allow(clippy::print_stderr)]
async fn under_traffic(signing_alg: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let keys_dir = tmp.path().join("keys");
    let started = common::start_issuer(tmp.path(), |raw| {
        raw.access_token_lifetime = Some(Duration::from_secs(4));
        raw.jwks_cache_lifetime = Some(Duration::from_secs(2));
        raw.clock_leeway = Some(Duration::ZERO);
    })
    .await;
    let (issuer, issuer_url, password) = (started.addr, started.url, started.admin_password);
    let k0 = kid_in_state(&keys_dir, "active");
    let k1 = kid_in_state(&keys_dir, "pending");

    // The resource server's verifier: the issuer's JWKS lifetime (2 s), the
    // same (zero) leeway, and the default 30 s unknown-kid cooldown.
    let mut vconfig = VerifierConfig::new(issuer_url, ["tessera"]);
    if let Some(alg) = signing_alg {
        vconfig.algorithms = vec!["RS256".to_owned(), alg.to_owned()];
    }
    vconfig.leeway = Duration::ZERO;
    vconfig.min_cache_lifetime = Duration::from_secs(1);
    vconfig.refresh_check_interval = Duration::from_millis(50);
    let verifier = Verifier::start(vconfig, Arc::new(SystemClock)).unwrap();
    let metrics = verifier.clone();
    let resource = common::serve_resource(verifier).await;

    let traffic = Arc::new(Traffic {
        pool: Mutex::new(Vec::new()),
        seen: Mutex::new(Seen::default()),
        stop: AtomicBool::new(false),
        sent: AtomicU64::new(0),
    });
    let last_k0 = traffic.add(
        login(issuer, "admin", &password).await["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(last_k0.kid, k0);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let traffic = Arc::clone(&traffic);
            tokio::spawn(async move { traffic.client(resource, i).await })
        })
        .collect();
    // A stream of fresh logins joins the pool.
    let logins = {
        let traffic = Arc::clone(&traffic);
        let password = password.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                if traffic.stop.load(Ordering::Relaxed) {
                    break;
                }
                let tokens = login(issuer, "admin", &password).await;
                traffic.add(tokens["access_token"].as_str().unwrap());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Rotation 1: k1 signs, k0 retires, k2 waits.
    let refused = rotate_when_allowed(&keys_dir, signing_alg).await;
    let rotated_at = Instant::now();
    assert_eq!(kid_in_state(&keys_dir, "active"), k1);
    let k2 = kid_in_state(&keys_dir, "pending");
    let alg_of = |kid: &str| {
        key_list(&keys_dir)
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["alg"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (old_alg, new_alg) = ("RS256", signing_alg.unwrap_or("RS256"));
    assert_eq!(
        alg_of(&k1),
        old_alg,
        "the key published longest signs first"
    );
    assert_eq!(alg_of(&k2), new_alg);
    // Metadata names what verifiers must accept now: the active key's
    // algorithm first, then the pending one's.
    let expected: Vec<&str> = if new_alg == old_alg {
        vec![old_alg]
    } else {
        vec![old_alg, new_alg]
    };
    assert_eq!(signing_algs_listed(issuer).await, expected);
    first_token_of(issuer, &password, &k1, &traffic).await;
    // The last token k0 signed is still in use; it is accepted until it expires.
    let last_k0 = traffic
        .pool
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.kid == k0)
        .max_by_key(|h| h.exp)
        .cloned()
        .unwrap_or(last_k0);

    // Rotation 2: k2 signs, k1 retires.
    rotate_when_allowed(&keys_dir, signing_alg).await;
    assert_eq!(kid_in_state(&keys_dir, "active"), k2);
    first_token_of(issuer, &password, &k2, &traffic).await;
    let newest = login(issuer, "admin", &password).await;
    let token = newest["access_token"].as_str().unwrap();
    assert_eq!(
        tessera_testkit::jws::header_of(token)["alg"],
        new_alg,
        "the new key signs with its own algorithm"
    );
    let mut expected: Vec<&str> = vec![new_alg, old_alg];
    expected.dedup();
    assert_eq!(signing_algs_listed(issuer).await, expected);

    // k0's tokens expire before k0 may be pruned; once expired they are
    // refused for that reason (k0 is still published).
    let wait = last_k0.exp as f64 - unix_now();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait + 0.05)).await;
    }
    assert!(published_kids(issuer).await.contains(&k0));
    let expired_before = metrics.metrics().failed("expired");
    assert_eq!(profile(resource, &last_k0.token).await, 401);
    assert_eq!(metrics.metrics().failed("expired"), expired_before + 1);

    // Prune deletes k0 once safe (6 s after it retired) and keeps k1.
    let mut args = vec!["prune"];
    args.extend(LIFETIMES);
    let mut pruned = false;
    for _ in 0..100 {
        let out = keys(&keys_dir, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !key_list(&keys_dir).iter().any(|k| k["kid"] == k0.as_str()) {
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pruned, "k0 was never pruned");
    assert!(
        rotated_at.elapsed() >= Duration::from_secs(6),
        "pruned {:?} after retiring, before the safe time",
        rotated_at.elapsed()
    );
    assert_eq!(
        key_list(&keys_dir)
            .iter()
            .filter(|k| k["kid"] == k1.as_str())
            .map(|k| k["state"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["retired"]
    );
    let since = Instant::now();
    while published_kids(issuer).await.contains(&k0) {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "k0 still published"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Traffic goes on a little with k0 gone from the issuer's JWKS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    traffic.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    logins.await.unwrap();

    let seen = traffic.seen.lock().unwrap();
    let sent = traffic.sent.load(Ordering::Relaxed);
    assert!(
        seen.refused.is_empty(),
        "{} of {sent} valid requests refused, e.g. {:?}",
        seen.refused.len(),
        &seen.refused[..seen.refused.len().min(5)]
    );
    assert!(sent >= 2_000, "only {sent} requests");
    for kid in [&k0, &k1, &k2] {
        assert!(
            seen.accepted.contains_key(kid),
            "no accepted token of {kid}"
        );
    }
    // Tokens of a retired key kept working after its retirement.
    assert!(seen.accepted[&k0].1 > rotated_at);
    // The verifier had every new key before its first token: no request made
    // it fetch the JWKS for an unknown kid.
    let m = metrics.metrics();
    assert_eq!(m.unknown_kid_refetches, 0, "{m:?}");
    assert_eq!(m.failed("unknown_key"), 0, "{m:?}");
    eprintln!(
        "{sent} requests, none refused; accepted per kid: {:?}; {} JWKS fetches; \
         the first rotate was refused {refused} times",
        seen.accepted.values().map(|a| a.0).collect::<Vec<_>>(),
        m.jwks_fetches
    );
}
