//! Resource-server load benchmark (issue #4): `/profile` requests/s with the
//! server's request path on one core, against the same server's
//! unauthenticated `/healthz` in the same run, from a loopback load generator
//! on the other core.
//!
//! - fresh tokens: every request verified from scratch (signature, claims);
//!   measured on a server whose verified-token cache is off, which is what a
//!   stream of never-seen tokens costs. Target >= 0.35 x `/healthz`.
//! - repeated tokens: the demo's configuration (cache on), the same token on
//!   every request. Target >= 0.85 x `/healthz`.
//!
//! Two load generators measure the fresh-token ratio: the usual one, whose
//! connections sleep in `epoll_wait` between answers (as wrk's do), and one
//! that never sleeps ([`tessera_bench::spin_throughput`]), which spares the
//! server's core the cost of waking an idle generator on every answer. Each
//! measurement also reads how busy the server's thread was, so that a figure
//! limited by the generator rather than the server shows up as such, and each
//! round times the RSA primitive alone, so that the run prints what a fresh
//! request costs beyond `/healthz` plus one signature verification.
//!
//! - metrics (issue 22): `/profile` with a repeated token on a server built
//!   without `/metrics` (`app_without_metrics`), against the demo's, in the
//!   same rounds. Target: with >= 0.97 x without. The verifier's metrics are
//!   read at scrape time, so the request path does the same work either way;
//!   the figure checks that stays true.
//!
//! Run: `cargo bench -p tessera-resource-server --bench http`. Under `cargo
//! test --benches` it runs each part for a moment, as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods, // a benchmark reads the clock
    missing_docs
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_bench::{get_loop, spin_throughput, throughput};
use tessera_keyring::{DEFAULT_BITS, KeyDir};
use tessera_verifier::{
    Clock as _, JwksSource, KeySet, SystemClock, TokenCacheConfig, Verifier, VerifierConfig,
};

const CONNECTIONS: usize = 16;

/// One round's measurements: requests/s, and the primitive's verifications/s.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    /// `/healthz` of the cache-on server (sleeping generator).
    health_cached: f64,
    /// `/profile` with one repeated token, cache-on server.
    repeated: f64,
    /// The same on a cache-on server without `/metrics`.
    repeated_plain: f64,
    /// `/healthz` of the cache-off server (sleeping generator).
    health: f64,
    /// `/profile` on the cache-off server (sleeping generator).
    fresh: f64,
    /// `/healthz` of the cache-off server, spinning generator.
    health_spin: f64,
    /// `/profile` on the cache-off server, spinning generator.
    fresh_spin: f64,
    /// The RSA primitive alone, verifications/s on one thread.
    rsa: f64,
}

/// CPU time (ns) the named thread of this process has run, from Linux's
/// schedstat; `None` elsewhere.
fn thread_cpu_ns(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        if std::fs::read_to_string(path.join("comm")).ok()?.trim() == name {
            let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
            return stat.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// The demo's routes on a single-threaded runtime in a thread of its own: one
/// core for the server's request path.
fn start_server(keys: KeySet, cache: bool, metrics: bool, name: &str) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name(name.to_owned());
    thread
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut config = VerifierConfig::new("http://issuer.bench", ["tessera"])
                    .with_jwks(JwksSource::Static(keys));
                config.token_cache = cache.then(TokenCacheConfig::default);
                let verifier = Verifier::start(config, Arc::new(SystemClock)).unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = if metrics {
                    tessera_resource_server::app(verifier)
                } else {
                    tessera_resource_server::app_without_metrics(verifier)
                };
                axum::serve(listener, app).await.unwrap();
            });
        })
        .unwrap();
    rx.recv().unwrap()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let run_for = Duration::from_secs_f64(if full { 1.0 } else { 0.2 });
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    dir.init(DEFAULT_BITS).unwrap();
    let keyring = dir.load().unwrap();
    let jwks = serde_json::to_vec(keyring.jwks()).unwrap();
    let (keys, _) = KeySet::from_jwks_json(&jwks, &["RS256"]).unwrap();
    let now = SystemClock.now();
    let claims = serde_json::json!({
        "iss": "http://issuer.bench", "sub": "8f14e45f-ceea-467a-9af0-0c1e6d6e1c2a",
        "aud": "tessera", "exp": now + 3600, "iat": now, "nbf": now,
        "jti": "f0e4c2f76c58916ec258f246851bea09", "client_id": "tessera",
        "sid": "5d41402abc4b2a76b9719d911017c592", "scope": "profile",
        "roles": ["user"], "preferred_username": "alice",
    });
    let token = keyring
        .signer()
        .sign_jwt("at+jwt", &serde_json::to_vec(&claims).unwrap())
        .unwrap();
    let bearer: &'static str = Box::leak(format!("Authorization: Bearer {token}").into_boxed_str());

    // The primitive, for the decomposition: the same key through the verifier's
    // crypto seam (aws-lc-rs, parsed once), the token's signing input and signature.
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    // The keyring publishes its next key too: the one that signed the token.
    let key = keys
        .kids()
        .filter_map(|kid| keys.get(kid))
        .find(|key| key.verify_rs256(signing_input.as_bytes(), &signature))
        .unwrap()
        .clone();
    let rsa_rate = |batch: u32| {
        let start = Instant::now();
        for _ in 0..batch {
            assert!(key.verify_rs256(
                std::hint::black_box(signing_input.as_bytes()),
                std::hint::black_box(&signature),
            ));
        }
        f64::from(batch) / start.elapsed().as_secs_f64()
    };

    const CACHED: &str = "rs-cached";
    const UNCACHED: &str = "rs-uncached";
    const PLAIN: &str = "rs-plain";
    let cached = start_server(keys.clone(), true, true, CACHED);
    let uncached = start_server(keys.clone(), false, true, UNCACHED);
    let plain = start_server(keys, true, false, PLAIN);
    // The sleeping load generator: a tokio runtime whose one worker takes the
    // other core. The spinning one runs on this thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let headers: &'static [&'static str] = Box::leak(vec![bearer].into_boxed_slice());
    // The least busy the measured server's thread was in any measurement.
    let mut least_busy = f64::INFINITY;
    let mut measure =
        |server: &str, addr: SocketAddr, path: &'static str, token: bool, spin: bool| {
            let headers: &'static [&'static str] = if token { headers } else { &[] };
            let (cpu, start) = (thread_cpu_ns(server), Instant::now());
            let rate = if spin {
                spin_throughput(addr, CONNECTIONS, path, headers, 200, run_for).unwrap()
            } else {
                rt.block_on(throughput(addr, CONNECTIONS, move |c| {
                    get_loop(c, path, headers, 200, run_for)
                }))
                .unwrap()
            };
            if let (Some(before), Some(after)) = (cpu, thread_cpu_ns(server)) {
                let busy = (after - before) as f64 / start.elapsed().as_nanos() as f64;
                least_busy = least_busy.min(busy);
            }
            rate
        };
    // Short interleaved rounds, alternating the order: the median of the
    // per-round ratios cancels the drift of a shared machine.
    let rounds = if full { 10 } else { 1 };
    let mut samples = Vec::new();
    for round in 0..rounds {
        let mut r = Round::default();
        let mut steps: Vec<u8> = (0..8).collect();
        if round % 2 == 1 {
            steps.reverse();
        }
        for step in steps {
            match step {
                0 => r.health_cached = measure(CACHED, cached, "/healthz", false, false),
                1 => r.repeated = measure(CACHED, cached, "/profile", true, false),
                2 => r.fresh = measure(UNCACHED, uncached, "/profile", true, false),
                3 => r.health = measure(UNCACHED, uncached, "/healthz", false, false),
                4 => r.health_spin = measure(UNCACHED, uncached, "/healthz", false, true),
                5 => r.fresh_spin = measure(UNCACHED, uncached, "/profile", true, true),
                6 => r.repeated_plain = measure(PLAIN, plain, "/profile", true, false),
                _ => r.rsa = rsa_rate(if full { 4000 } else { 40 }),
            }
        }
        samples.push(r);
    }
    let median = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mean =
        |f: &dyn Fn(&Round) -> f64| samples.iter().map(f).sum::<f64>() / samples.len() as f64;
    let us = |rate: f64| 1e6 / rate;
    println!(
        "Resource server (loopback; server request path on one core; {CONNECTIONS} keep-alive connections; {rounds} interleaved rounds of {:.1} s per measurement):",
        run_for.as_secs_f64()
    );
    println!(
        "  /healthz (baseline)        {:>8.0} req/s (cache-on server), {:.0} req/s (cache-off server)",
        mean(&|s| s.health_cached),
        mean(&|s| s.health)
    );
    println!(
        "  /profile, repeated token   {:>8.0} req/s: median ratio {:.3} x /healthz of the same server (target >= 0.85)",
        mean(&|s| s.repeated),
        median(&|s| s.repeated / s.health_cached)
    );
    println!(
        "  /profile, fresh tokens     {:>8.0} req/s: median ratio {:.3} x /healthz of the same server (target >= 0.35)",
        mean(&|s| s.fresh),
        median(&|s| s.fresh / s.health)
    );
    println!(
        "  /profile, repeated token, with /metrics {:>8.0} req/s vs without {:>8.0} req/s: median ratio {:.3} (target >= 0.97)",
        mean(&|s| s.repeated),
        mean(&|s| s.repeated_plain),
        median(&|s| s.repeated / s.repeated_plain)
    );
    println!("With a load generator that never sleeps (no wake-up paid on the server's core):");
    println!(
        "  /healthz (baseline)        {:>8.0} req/s (cache-off server)",
        mean(&|s| s.health_spin)
    );
    println!(
        "  /profile, fresh tokens     {:>8.0} req/s: median ratio {:.3} x /healthz of the same server (target >= 0.35)",
        mean(&|s| s.fresh_spin),
        median(&|s| s.fresh_spin / s.health_spin)
    );
    let rsa = median(&|s| s.rsa);
    let beyond = median(&|s| us(s.fresh_spin) - us(s.health_spin) - us(s.rsa));
    println!(
        "Decomposition (spinning generator, medians): a fresh /profile costs /healthz ({:.1} us) + one RSA verification alone ({:.1} us, {rsa:.0}/s) + {beyond:.1} us; with nothing beyond the RSA verification the ratio would be {:.3}",
        median(&|s| us(s.health_spin)),
        us(rsa),
        median(&|s| us(s.health_spin) / (us(s.health_spin) + us(s.rsa))),
    );
    if least_busy.is_finite() {
        println!(
            "The measured server's thread was busy at least {:.0} % of every measurement (below ~95 % the generator, not the server, set the figure)",
            least_busy * 100.0
        );
    }
}
