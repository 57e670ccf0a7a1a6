//! The keyring in the database, as operators and instances use it: the `keys`
//! CLI against it (on SQLite here, on PostgreSQL too when
//! `TESSERA_TEST_POSTGRES_URL` is set), its key-encryption key, two operators
//! rotating at once, and a rotation reaching every instance of the issuer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tessera_bench::Client;
use tessera_testkit::pg::{ScratchDatabase, postgres_required, postgres_url};
use tokio::time::Instant;

/// A database for the keyring: a SQLite file, and a scratch PostgreSQL
/// database when a server is configured.
fn databases(dir: &Path) -> Vec<(String, Option<ScratchDatabase>)> {
    let mut all = vec![(
        format!("sqlite://{}", dir.join("keyring.db").display()),
        None,
    )];
    match postgres_url() {
        Some(admin) => {
            let scratch = ScratchDatabase::create_blocking(&admin).unwrap();
            all.push((scratch.url().to_owned(), Some(scratch)));
        }
        None => {
            assert!(!postgres_required(), "TESSERA_TEST_POSTGRES_URL is not set");
            eprintln!("TESSERA_TEST_POSTGRES_URL is not set: SQLite only");
        }
    }
    all
}

/// `tessera-issuer keys <args>` on the database keyring at `url`, the KEK in
/// the environment (`kek` empty: none at all).
fn keys(url: &str, kek: &str, args: &[&str]) -> Output {
    // A short cache lifetime: rotations become allowed after a second.
    keys_with_cache_lifetime(url, kek, "1s", args)
}

fn keys_with_cache_lifetime(url: &str, kek: &str, lifetime: &str, args: &[&str]) -> Output {
    let mut cmd = common::cli(&["keys"]);
    cmd.args(args)
        .args(["--keyring", "database", "--database", url])
        .args(["--jwks-cache-lifetime", lifetime])
        // Where a file keyring would go: it must stay untouched.
        .arg("--keys-dir")
        .arg(untouched_keys_dir());
    if !kek.is_empty() {
        cmd.env("TESSERA_KEY_ENCRYPTION_KEY", kek);
    }
    cmd.output().unwrap()
}

fn untouched_keys_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tessera-no-keys-here-{}", std::process::id()))
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn states(url: &str, kek: &str) -> Vec<(String, String)> {
    let list: Value = serde_json::from_str(&ok(&keys(url, kek, &["list", "--json"]))).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until the pending key may be activated (its `safe_to_activate_at`:
/// published for the cache `lifetime`, from a whole-second stamp).
fn wait_until_rotation_allowed(url: &str, kek: &str, lifetime: &str) {
    let list: Value = serde_json::from_str(&ok(&keys_with_cache_lifetime(
        url,
        kek,
        lifetime,
        &["list", "--json"],
    )))
    .unwrap();
    let pending = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "pending")
        .unwrap();
    let safe_at =
        humantime::parse_rfc3339_weak(pending["safe_to_activate_at"].as_str().unwrap()).unwrap();
    if let Ok(wait) = safe_at.duration_since(std::time::SystemTime::UNIX_EPOCH + epoch_now()) {
        std::thread::sleep(wait + Duration::from_millis(50));
    }
}

#[allow(clippy::disallowed_methods)] // compared with the CLI's wall-clock stamps
fn epoch_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
}

fn new_kek() -> String {
    ok(&common::cli(&["keys", "new-kek"]).output().unwrap())
        .trim()
        .to_owned()
}

#[test]
fn the_keys_cli_works_against_the_database_keyring() {
    let tmp = tempfile::tempdir().unwrap();
    let kek = new_kek();
    assert_eq!(kek.len(), 43, "{kek}");
    assert_ne!(kek, new_kek(), "random each time");
    for (url, _scratch) in databases(tmp.path()) {
        // No KEK: refused with what to do, nothing created.
        let out = keys(&url, "", &["init"]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("TESSERA_KEY_ENCRYPTION_KEY"),
            "{}",
            stderr(&out)
        );

        let init = ok(&keys(&url, &kek, &["init"]));
        assert!(init.contains("the database keyring"), "{init}");
        let listed = states(&url, &kek);
        let st: Vec<&str> = listed.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(st, ["active", "pending"], "{url}");
        // The JWKS: public keys only.
        let jwks = ok(&keys(&url, &kek, &["jwks"]));
        assert!(
            jwks.contains(&listed[0].0) && !jwks.contains("\"d\""),
            "{jwks}"
        );

        // Another KEK reads nothing, and says why.
        let out = keys(&url, &new_kek(), &["list"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("cannot be decrypted"),
            "{}",
            stderr(&out)
        );
        // Nothing went to a keys directory.
        assert!(!untouched_keys_dir().exists());

        // The rules hold as with files: too early (exit 3), then allowed.
        // (An hour's cache lifetime for this one: however slow the machine,
        // the pending key is too young.)
        let early = keys_with_cache_lifetime(&url, &kek, "1h", &["rotate"]);
        assert_eq!(early.status.code(), Some(3), "{}", stderr(&early));
        wait_until_rotation_allowed(&url, &kek, "1s");
        ok(&keys(&url, &kek, &["rotate"]));
        let after: Vec<String> = states(&url, &kek).into_iter().map(|(_, s)| s).collect();
        assert_eq!(after, ["retired", "active", "pending"], "{url}");
        let pending = states(&url, &kek).pop().unwrap().0;
        ok(&keys(&url, &kek, &["retire", &pending]));
        let pruned = ok(&keys(&url, &kek, &["prune", "--force"]));
        assert!(pruned.contains(&pending), "{pruned}");
        // A KEK file works as well as the variable, and must be private.
        let file = tmp.path().join("kek");
        std::fs::write(&file, &kek).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut cmd = common::cli(&["keys", "list", "--keyring", "database"]);
        cmd.args(["--database", &url, "--key-encryption-key-file"])
            .arg(&file);
        ok(&cmd.output().unwrap());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = cmd.output().unwrap();
        assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    }
}

#[test]
fn the_database_keyring_seals_and_serves_es256_and_eddsa_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let kek = new_kek();
    for (url, _scratch) in databases(tmp.path()) {
        ok(&keys(&url, &kek, &["init", "--alg", "ES256"]));
        ok(&keys(&url, &kek, &["generate", "--alg", "EdDSA"]));
        let jwks: serde_json::Value =
            serde_json::from_str(&ok(&keys(&url, &kek, &["jwks"]))).unwrap();
        let kinds: Vec<(String, String)> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["alg"].as_str().unwrap().into(),
                    k["crv"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("ES256".into(), "P-256".into()),
                ("ES256".into(), "P-256".into()),
                ("EdDSA".into(), "Ed25519".into())
            ],
            "{url}"
        );
        assert!(!jwks.to_string().contains("\"d\""), "public keys only");
        let listed: serde_json::Value =
            serde_json::from_str(&ok(&keys(&url, &kek, &["list", "--json"]))).unwrap();
        let algs: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["alg"].as_str().unwrap())
            .collect();
        assert_eq!(algs, ["ES256", "ES256", "EdDSA"], "{url}");
    }
}

/// Two operators rotating at once (two CLI processes): exactly one rotation.
/// The second, run after the first under the keyring lock, finds only the key
/// the first just added, younger than the cache lifetime. That lifetime (4 s
/// here) must exceed the time between the two runs, which is mostly their key
/// generation; in production it is minutes.
#[test]
fn two_operators_rotating_at_once_rotate_once() {
    let tmp = tempfile::tempdir().unwrap();
    let kek = new_kek();
    for (url, _scratch) in databases(tmp.path()) {
        ok(&keys(&url, &kek, &["init"]));
        wait_until_rotation_allowed(&url, &kek, "4s");
        let operators: Vec<_> = (0..2)
            .map(|_| {
                let (url, kek) = (url.clone(), kek.clone());
                std::thread::spawn(move || keys_with_cache_lifetime(&url, &kek, "4s", &["rotate"]))
            })
            .collect();
        let codes: Vec<Option<i32>> = operators
            .into_iter()
            .map(|o| o.join().unwrap().status.code())
            .collect();
        let mut sorted = codes.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [Some(0), Some(3)],
            "{url}: one rotates, one is refused"
        );
        let after: Vec<String> = states(&url, &kek).into_iter().map(|(_, s)| s).collect();
        assert_eq!(after, ["retired", "active", "pending"], "{url}");
    }
}

async fn jwks(addr: SocketAddr) -> Vec<u8> {
    let mut c = Client::connect(addr).await.unwrap();
    let (status, body) = c.get("/.well-known/jwks.json", &[]).await.unwrap();
    assert_eq!(status, 200);
    body
}

/// Two issuer instances on one database keyring: the first creates it, both
/// serve the same JWKS; a CLI rotation reaches both within their poll
/// interval, with the same bytes, and each signs with the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reaches_every_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let kek = new_kek();
    let kek_file = tmp.path().join("kek");
    std::fs::write(&kek_file, &kek).unwrap();
    std::fs::set_permissions(&kek_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (url, _scratch) in databases(tmp.path()) {
        let start = |first: bool| {
            let (url, kek_file) = (url.clone(), kek_file.clone());
            async move {
                let raw = tessera_issuer::config::RawConfig {
                    database_url: Some(url),
                    keyring: Some(tessera_issuer::config::KeyringKind::Database),
                    key_encryption_key_file: Some(kek_file),
                    listen: Some("127.0.0.1:0".parse().unwrap()),
                    issuer_url: Some("https://auth.tessera.test".to_owned()),
                    jwks_cache_lifetime: Some(Duration::from_secs(1)),
                    keys_reload_interval: Some(Duration::from_millis(100)),
                    ..Default::default()
                };
                let mut prepared = tessera_issuer::serve::Prepared::new(raw.validate().unwrap())
                    .await
                    .unwrap();
                let addr = prepared.addr();
                let admin = prepared.take_first_admin().map(|a| a.password);
                assert_eq!(admin.is_some(), first);
                tokio::spawn(prepared.run(std::future::pending()));
                (addr, admin)
            }
        };
        let (a, password) = start(true).await;
        let (b, _) = start(false).await;
        let password = password.unwrap();
        let before = jwks(a).await;
        assert_eq!(before, jwks(b).await, "{url}: one keyring, the same JWKS");
        let old_token = common::login(a, "admin", &password).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let old_kid = common::kid_of(&old_token);

        // An operator rotates once the pending key has been published for the
        // (1 s) cache lifetime.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (url, kek) = (url.clone(), kek.clone());
            let out = tokio::task::spawn_blocking(move || keys(&url, &kek, &["rotate"]))
                .await
                .unwrap();
            if out.status.success() {
                break;
            }
            assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
            assert!(Instant::now() < deadline, "rotation refused for too long");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rotated_at = Instant::now();
        // Both instances serve the new JWKS within their poll interval.
        let (after_a, after_b) = loop {
            let (ja, jb) = (jwks(a).await, jwks(b).await);
            if ja != before && jb != before && ja == jb {
                break (ja, jb);
            }
            assert!(
                rotated_at.elapsed() < Duration::from_secs(3),
                "{url}: the rotation did not reach both instances"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(after_a, after_b);
        eprintln!(
            "{url}: both instances served the rotation after {:?}",
            rotated_at.elapsed()
        );
        // Both sign with the new active key; the old one stays published.
        for instance in [a, b] {
            let token = common::login(instance, "admin", &password).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_ne!(common::kid_of(&token), old_kid, "{url}");
        }
        let published: Value = serde_json::from_slice(&after_a).unwrap();
        assert!(
            published["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == old_kid.as_str()),
            "{url}: the retired key stays published"
        );
    }
}
