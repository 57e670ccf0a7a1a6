//! Signing a typical access token through the keyring's [`Signer`] (header +
//! claims → compact JWS), beside the raw aws-lc-rs RSA primitive signing the same
//! bytes with the same key, in the same run. Prints the ratio at the end.
//!
//! Run: `cargo bench -p tessera-keyring --bench sign`. Target: ratio ≥ 0.95.
//!
//! [`Signer`]: tessera_keyring::Signer

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods // a benchmark reads the clock
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use criterion::Criterion;
use tessera_keyring::{DEFAULT_BITS, KeyDir, b64url};

const GROUP: &str = "rs256_sign_access_token";
const PRIMITIVE: &str = "aws-lc-rs-primitive";
const SIGNER: &str = "keyring-signer-compact-jws";
/// The primitive again after the signer: the baseline is the mean of both runs,
/// which brackets any drift of a shared machine during the measurement.
const PRIMITIVE_AGAIN: &str = "aws-lc-rs-primitive-again";

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    dir.init(DEFAULT_BITS).unwrap();
    let ring = dir.load().unwrap();
    let signer = ring.signer();

    // The same key, parsed straight into aws-lc-rs.
    let pem = std::fs::read(dir.key_path(signer.kid())).unwrap();
    let raw = RsaKeyPair::from_pkcs8(pem::parse(pem).unwrap().contents()).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();

    // A typical RFC 9068 access token's claims.
    let claims = br#"{"iss":"https://auth.example.com","sub":"8f14e45f-ceea-467a-9af0-0c1e6d6e1c2a","aud":"https://api.example.com","exp":1767226500,"iat":1767225600,"nbf":1767225600,"jti":"f0e4c2f76c58916ec258f246851bea09","client_id":"tessera-demo","scope":"profile","roles":["user"],"sid":"5d41402abc4b2a76b9719d911017c592"}"#;
    let header = format!(
        r#"{{"alg":"RS256","kid":"{}","typ":"at+jwt"}}"#,
        signer.kid()
    );
    let signing_input = format!("{}.{}", b64url(header.as_bytes()), b64url(claims));

    let out = output_dir();
    let mut c = Criterion::default()
        .output_directory(&out)
        .configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    // The two things compared: the same signing input, the same key.
    let sign_raw = || {
        let mut sig = vec![0; raw.public_modulus_len()];
        raw.sign(
            &RSA_PKCS1_SHA256,
            &rng,
            black_box(signing_input.as_bytes()),
            &mut sig,
        )
        .unwrap();
        sig
    };
    let sign_jwt = || signer.sign_jwt("at+jwt", black_box(claims)).unwrap();

    group.bench_function(PRIMITIVE, |b| b.iter(sign_raw));
    group.bench_function(SIGNER, |b| b.iter(sign_jwt));
    group.bench_function(PRIMITIVE_AGAIN, |b| b.iter(sign_raw));
    group.finish();
    c.final_summary();
    report(&out);

    // Criterion measures one function after the other; on a shared machine that
    // drifts by several percent within seconds. Alternate short batches of both
    // and take the median of the per-round ratios: drift cancels out.
    if std::env::args().any(|a| a == "--bench") {
        interleaved(
            || {
                black_box(sign_raw());
            },
            || {
                black_box(sign_jwt());
            },
        );
    }
}

fn interleaved(mut baseline: impl FnMut(), mut subject: impl FnMut()) {
    const ROUNDS: usize = 60;
    const BATCH: u32 = 20;
    let time = |f: &mut dyn FnMut()| {
        let start = std::time::Instant::now();
        for _ in 0..BATCH {
            f();
        }
        start.elapsed().as_secs_f64()
    };
    let (mut ratios, mut base_total, mut subject_total) = (Vec::new(), 0.0, 0.0);
    for round in 0..ROUNDS {
        let (b, s) = if round % 2 == 0 {
            let b = time(&mut baseline);
            (b, time(&mut subject))
        } else {
            let s = time(&mut subject);
            (time(&mut baseline), s)
        };
        base_total += b;
        subject_total += s;
        ratios.push(b / s);
    }
    ratios.sort_by(f64::total_cmp);
    let n = f64::from(BATCH) * ROUNDS as f64;
    println!(
        "Interleaved A/B ({ROUNDS} rounds of {BATCH}): primitive {:.0}/s, keyring signer {:.0}/s, \
         median ratio {:.3} x the primitive (target >= 0.95)",
        n / base_total,
        n / subject_total,
        ratios[ROUNDS / 2]
    );
}

/// Where criterion writes its estimates: set explicitly so `report` reads the same place.
fn output_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("criterion")
}

/// Median nanoseconds per iteration from this run's estimates, if it measured.
fn median_ns(out: &Path, bench: &str) -> Option<f64> {
    let dir = out
        .join(GROUP)
        .join(bench.replace(['(', ')'], "_").replace(' ', "_"));
    let text = std::fs::read_to_string(dir.join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn report(out: &Path) {
    let (Some(first), Some(signer), Some(again)) = (
        median_ns(out, PRIMITIVE),
        median_ns(out, SIGNER),
        median_ns(out, PRIMITIVE_AGAIN),
    ) else {
        return; // `cargo test --benches` runs each once and writes no estimates
    };
    let primitive = (first + again) / 2.0;
    println!();
    println!(
        "RS256, 2048-bit key, one core ({} backend):",
        tessera_keyring::BACKEND
    );
    println!(
        "  {PRIMITIVE:<30} {:>8.0} signatures/s (baseline: {:.0} before, {:.0} after)",
        1e9 / primitive,
        1e9 / first,
        1e9 / again
    );
    println!("  {SIGNER:<30} {:>8.0} signatures/s", 1e9 / signer);
    println!(
        "  ratio: {:.3} x the primitive (target >= 0.95)",
        primitive / signer
    );
}
