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

use tessera_bench::{get_loop, throughput};
use tessera_keyring::{DEFAULT_BITS, KeyDir};
use tessera_verifier::{
    Clock as _, JwksSource, KeySet, SystemClock, TokenCacheConfig, Verifier, VerifierConfig,
};

const CONNECTIONS: usize = 16;

/// One round: /healthz (cache-on server), /healthz (cache-off server),
/// /profile fresh, /profile repeated; requests/s.
type Round = (f64, f64, f64, f64);

/// The demo's routes on a single-threaded runtime in a thread of its own: one
/// core for the server's request path.
fn start_server(keys: KeySet, cache: bool) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
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
            axum::serve(listener, tessera_resource_server::app(verifier))
                .await
                .unwrap();
        });
    });
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

    let cached = start_server(keys.clone(), true);
    let uncached = start_server(keys, false);
    // The load generator: the other core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let measure = |addr: SocketAddr, path: &'static str, headers: &'static [&'static str]| {
        rt.block_on(throughput(addr, CONNECTIONS, move |c| {
            get_loop(c, path, headers, 200, run_for)
        }))
        .unwrap()
    };
    let headers: &'static [&'static str] = Box::leak(vec![bearer].into_boxed_slice());
    // Short interleaved rounds, alternating the order: the median of the
    // per-round ratios cancels the drift of a shared machine.
    let rounds = if full { 10 } else { 1 };
    let mut samples = Vec::new();
    for round in 0..rounds {
        let mut health = [0.0; 2];
        let (mut fresh, mut repeated) = (0.0, 0.0);
        let mut steps: Vec<u8> = vec![0, 1, 2, 3];
        if round % 2 == 1 {
            steps.reverse();
        }
        for step in steps {
            match step {
                0 => health[0] = measure(cached, "/healthz", &[]),
                1 => repeated = measure(cached, "/profile", headers),
                2 => fresh = measure(uncached, "/profile", headers),
                _ => health[1] = measure(uncached, "/healthz", &[]),
            }
        }
        samples.push((health[0], health[1], fresh, repeated));
    }
    let median = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mean =
        |f: &dyn Fn(&Round) -> f64| samples.iter().map(f).sum::<f64>() / samples.len() as f64;
    let fresh_ratio = median(&|s| s.2 / s.1);
    let repeated_ratio = median(&|s| s.3 / s.0);
    println!(
        "Resource server (loopback; server request path on one core; {CONNECTIONS} keep-alive connections; {rounds} interleaved rounds of {:.1} s per measurement):",
        run_for.as_secs_f64()
    );
    println!(
        "  /healthz (baseline)        {:>8.0} req/s (cache-on server), {:.0} req/s (cache-off server)",
        mean(&|s| s.0),
        mean(&|s| s.1)
    );
    println!(
        "  /profile, fresh tokens     {:>8.0} req/s: median ratio {fresh_ratio:.3} x /healthz of the same server (target >= 0.35)",
        mean(&|s| s.2)
    );
    println!(
        "  /profile, repeated token   {:>8.0} req/s: median ratio {repeated_ratio:.3} x /healthz of the same server (target >= 0.85)",
        mean(&|s| s.3)
    );
}
