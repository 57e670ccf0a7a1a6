//! Signing a typical access token through the keyring's [`Signer`] (header +
//! claims → compact JWS), beside the raw aws-lc-rs primitive signing the same
//! bytes with the same key, in the same run: RS256 (2048-bit RSA), ES256
//! (P-256) and EdDSA (Ed25519). Prints each ratio, and the token sizes.
//!
//! Run: `cargo bench -p tessera-keyring --bench sign`. Target: every ratio ≥ 0.95.
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

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use criterion::Criterion;
use tessera_keyring::{Algorithm, KeyDir, b64url};

const PRIMITIVE: &str = "aws-lc-rs-primitive";
const SIGNER: &str = "keyring-signer-compact-jws";
/// The primitive again after the signer: the baseline is the mean of both runs,
/// which brackets any drift of a shared machine during the measurement.
const PRIMITIVE_AGAIN: &str = "aws-lc-rs-primitive-again";

/// A typical RFC 9068 access token's claims.
const CLAIMS: &[u8] = br#"{"iss":"https://auth.example.com","sub":"8f14e45f-ceea-467a-9af0-0c1e6d6e1c2a","aud":"https://api.example.com","exp":1767226500,"iat":1767225600,"nbf":1767225600,"jti":"f0e4c2f76c58916ec258f246851bea09","client_id":"tessera-demo","scope":"profile","roles":["user"],"sid":"5d41402abc4b2a76b9719d911017c592"}"#;

/// The same key as the signer's, parsed straight into aws-lc-rs.
enum Raw {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Raw {
    fn sign(&self, rng: &aws_lc_rs::rand::SystemRandom, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, rng, input, &mut sig).unwrap();
                sig
            }
            Self::Ec(pair) => pair.sign(rng, input).unwrap().as_ref().to_vec(),
            Self::Ed(pair) => pair.sign(input).as_ref().to_vec(),
        }
    }
}

fn main() {
    let out = output_dir();
    let mut c = Criterion::default()
        .output_directory(&out)
        .configure_from_args();
    let mut sizes = Vec::new();
    let mut interleaved_lines = Vec::new();
    for alg in Algorithm::ALL {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::new(tmp.path().join("keys"));
        dir.init(alg).unwrap();
        let ring = dir.load().unwrap();
        let signer = ring.signer();
        let pem = std::fs::read(dir.key_path(signer.kid())).unwrap();
        let der = pem::parse(pem).unwrap().into_contents();
        let raw = match alg {
            Algorithm::Es256 => {
                Raw::Ec(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap())
            }
            Algorithm::EdDsa => Raw::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap()),
            _ => Raw::Rsa(RsaKeyPair::from_pkcs8(&der).unwrap()),
        };
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let header = format!(
            r#"{{"alg":"{}","kid":"{}","typ":"at+jwt"}}"#,
            alg.name(),
            signer.kid()
        );
        let signing_input = format!("{}.{}", b64url(header.as_bytes()), b64url(CLAIMS));
        let sign_raw = || raw.sign(&rng, black_box(signing_input.as_bytes()));
        let sign_jwt = || signer.sign_jwt("at+jwt", black_box(CLAIMS)).unwrap();
        sizes.push((
            alg,
            sign_jwt().len(),
            serde_json::to_vec(ring.jwks()).unwrap().len(),
        ));

        let group_name = group(alg);
        let mut group = c.benchmark_group(&group_name);
        group.bench_function(PRIMITIVE, |b| b.iter(sign_raw));
        group.bench_function(SIGNER, |b| b.iter(sign_jwt));
        group.bench_function(PRIMITIVE_AGAIN, |b| b.iter(sign_raw));
        group.finish();
        // Criterion measures one function after the other; on a shared machine
        // that drifts by several percent within seconds. Alternate short
        // batches of both and take the median of the per-round ratios: drift
        // cancels out.
        if std::env::args().any(|a| a == "--bench") {
            interleaved_lines.push(interleaved(
                alg,
                || {
                    black_box(sign_raw());
                },
                || {
                    black_box(sign_jwt());
                },
            ));
        }
    }
    c.final_summary();
    for alg in Algorithm::ALL {
        report(&out, alg);
    }
    for line in interleaved_lines {
        println!("{line}");
    }
    println!();
    println!(
        "Sizes: an access token (the same claims; header with alg, kid, typ), and the JWKS of a \
         new keyring (two keys):"
    );
    let (rs, rs_jwks) = (sizes[0].1, sizes[0].2);
    for (alg, len, jwks) in &sizes {
        println!(
            "  {:<6} token {len:>5} bytes ({:.2} x RS256's), JWKS {jwks:>5} bytes ({:.2} x)",
            alg.name(),
            *len as f64 / rs as f64,
            *jwks as f64 / rs_jwks as f64
        );
    }
}

fn group(alg: Algorithm) -> String {
    format!("{}_sign_access_token", alg.name().to_lowercase())
}

fn interleaved(alg: Algorithm, mut baseline: impl FnMut(), mut subject: impl FnMut()) -> String {
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
    format!(
        "{} interleaved A/B ({ROUNDS} rounds of {BATCH}): primitive {:.0}/s, keyring signer {:.0}/s, \
         median ratio {:.3} x the primitive (target >= 0.95)",
        alg.name(),
        n / base_total,
        n / subject_total,
        ratios[ROUNDS / 2]
    )
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
fn median_ns(out: &Path, alg: Algorithm, bench: &str) -> Option<f64> {
    let dir = out
        .join(group(alg))
        .join(bench.replace(['(', ')'], "_").replace(' ', "_"));
    let text = std::fs::read_to_string(dir.join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn report(out: &Path, alg: Algorithm) {
    let (Some(first), Some(signer), Some(again)) = (
        median_ns(out, alg, PRIMITIVE),
        median_ns(out, alg, SIGNER),
        median_ns(out, alg, PRIMITIVE_AGAIN),
    ) else {
        return; // `cargo test --benches` runs each once and writes no estimates
    };
    let primitive = (first + again) / 2.0;
    println!();
    let key = match alg {
        Algorithm::Es256 => "P-256 key",
        Algorithm::EdDsa => "Ed25519 key",
        _ => "2048-bit key",
    };
    println!(
        "{}, {key}, one core ({} backend):",
        alg.name(),
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
