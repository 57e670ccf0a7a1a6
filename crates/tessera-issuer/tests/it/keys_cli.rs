//! `tessera-issuer keys ...` run as an operator runs it: a real process on a temp
//! directory, checked by its exit code, its output and the files it leaves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Keys {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Keys {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        Self { _tmp: tmp, dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera-issuer"));
        cmd.arg("keys").args(args).arg("--keys-dir").arg(&self.dir);
        // The tests' environment must not leak settings into the CLI.
        for var in [
            "TESSERA_CONFIG",
            "TESSERA_KEYS_DIR",
            "TESSERA_JWKS_CACHE_LIFETIME",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        tessera_testkit::process::stdout_of(&mut self.cmd(args))
    }

    fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.ok(&["list", "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn kid_in(&self, state: &str) -> String {
        self.list()
            .iter()
            .find(|k| k["state"] == state)
            .unwrap_or_else(|| panic!("no {state} key"))["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn count(&self, state: &str) -> usize {
        self.list().iter().filter(|k| k["state"] == state).count()
    }
}

/// Runs `attempt` until `done` says so, every 100 ms for at most 10 s: for the
/// few tests where the real clock must pass a rule's deadline.
fn poll(mut attempt: impl FnMut() -> Output, done: impl Fn(&Output) -> bool) -> Output {
    for _ in 0..100 {
        let out = attempt();
        if done(&out) {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("gave up after 10 s");
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn one_error_line(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn init_creates_private_files_a_manifest_and_a_listing() {
    let k = Keys::new();
    let out = k.ok(&["init"]);
    assert!(out.contains("active key:"), "{out}");
    assert_eq!(mode(&k.dir), 0o700);

    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(k.dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], 1);
    let keys = manifest["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for key in keys {
        let kid = key["kid"].as_str().unwrap();
        assert_eq!(kid.len(), 43);
        let file = k.dir.join(format!("{kid}.pem"));
        assert_eq!(mode(&file), 0o600);
        assert!(
            fs::read_to_string(file)
                .unwrap()
                .contains("BEGIN PRIVATE KEY")
        );
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["bits"], 2048);
    }

    let table = k.ok(&["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in [
        "KID",
        "STATE",
        "CREATED",
        "ACTIVATED",
        "RETIRED",
        "SAFE-TO-PRUNE-AT",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    let active = k.kid_in("active");
    let pending = k.kid_in("pending");
    assert!(
        lines[1].starts_with(&active) && lines[1].contains(" active "),
        "{table}"
    );
    assert!(
        lines[2].starts_with(&pending) && lines[2].contains(" pending "),
        "{table}"
    );

    // A second init refuses; --if-empty makes it a no-op for provisioning scripts.
    let again = k.run(&["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(one_error_line(&again).contains("already holds 2 key(s)"));
    assert!(k.ok(&["init", "--if-empty"]).contains("nothing to do"));
    assert_eq!(k.list().len(), 2);
}

#[test]
fn rotate_too_early_exits_3_with_the_safe_time_and_force_overrides() {
    let k = Keys::new();
    k.ok(&["init"]);
    let before = fs::read(k.dir.join("manifest.json")).unwrap();
    let pending = k.kid_in("pending");

    let refused = k.run(&["rotate"]);
    assert_eq!(refused.status.code(), Some(3));
    let err = one_error_line(&refused);
    assert!(
        err.contains(&pending) && err.contains("safe from 20") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read(k.dir.join("manifest.json")).unwrap(), before);

    let active = k.kid_in("active");
    let forced = k.run(&["rotate", "--force"]);
    assert!(forced.status.success());
    assert!(
        stderr(&forced).starts_with("WARNING: --force"),
        "{}",
        stderr(&forced)
    );
    assert_eq!(k.kid_in("active"), pending);
    assert_eq!(k.kid_in("retired"), active);
    assert_eq!(k.count("pending"), 1);
}

#[test]
fn short_configured_lifetimes_satisfy_the_rules_without_force() {
    let k = Keys::new();
    let config = k.dir.with_file_name("tessera.toml");
    fs::write(
        &config,
        "jwks_cache_lifetime = \"1s\"\naccess_token_lifetime = \"1s\"\nclock_leeway = \"0s\"\n",
    )
    .unwrap();
    let with_config = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", config.to_str().unwrap()]);
        k.run(&all)
    };
    assert!(with_config(&["init"]).status.success());
    let old = k.kid_in("active");
    // Refused (exit 3) until the pending key has been published for 1 s.
    let rotated = poll(|| with_config(&["rotate"]), |o| o.status.code() != Some(3));
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    // The same lifetimes through the environment: kept until 1 s + 1 s + 0 s after retiring.
    let prune = || {
        k.cmd(&["prune"])
            .env("TESSERA_JWKS_CACHE_LIFETIME", "1s")
            .env("TESSERA_ACCESS_TOKEN_LIFETIME", "1s")
            .env("TESSERA_CLOCK_LEEWAY", "0s")
            .output()
            .unwrap()
    };
    let first = prune();
    assert!(first.status.success(), "{}", stderr(&first));
    let first = String::from_utf8(first.stdout).unwrap();
    assert!(
        first.starts_with(&format!("kept: retired key {old}")),
        "{first}"
    );
    let pruned = poll(prune, |o| !o.stdout.starts_with(b"kept"));
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert_eq!(
        String::from_utf8(pruned.stdout).unwrap(),
        format!("pruned key {old}\n")
    );
    assert!(!k.dir.join(format!("{old}.pem")).exists());
}

#[test]
fn prune_keeps_what_is_not_safe_and_says_until_when() {
    let k = Keys::new();
    k.ok(&["init"]);
    k.ok(&["rotate", "--force"]);
    let retired = k.kid_in("retired");
    let out = k.ok(&["prune"]);
    assert!(
        out.starts_with(&format!("kept: retired key {retired}")),
        "{out}"
    );
    assert!(out.contains("safe from 20"), "{out}");
    assert!(k.dir.join(format!("{retired}.pem")).exists());
    let listed = k.list();
    let row = listed
        .iter()
        .find(|r| r["kid"] == retired.as_str())
        .unwrap();
    assert!(row["safe_to_prune_at"].is_string());

    let forced = k.run(&["prune", "--force"]);
    assert!(forced.status.success());
    assert!(stderr(&forced).contains("WARNING"));
    assert!(!k.dir.join(format!("{retired}.pem")).exists());
    assert_eq!(k.count("retired"), 0);
}

#[test]
fn retire_revoke_and_jwks() {
    let k = Keys::new();
    k.ok(&["init"]);
    let active = k.kid_in("active");
    let pending = k.kid_in("pending");

    let jwks: serde_json::Value = serde_json::from_str(&k.ok(&["jwks"])).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [active.as_str(), pending.as_str()]);
    for jwk in jwks["keys"].as_array().unwrap() {
        let mut fields: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["alg", "e", "kid", "kty", "n", "use"]);
    }

    let refused = k.run(&["retire", &active]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(one_error_line(&refused).contains("use `rotate`"));

    let revoked = k.run(&["revoke", &active]);
    assert!(revoked.status.success());
    let warning = stderr(&revoked);
    assert!(
        warning.starts_with("WARNING: revoked the ACTIVE key"),
        "{warning}"
    );
    assert!(warning.contains(&pending), "{warning}");
    assert_eq!(k.kid_in("active"), pending);
    let jwks = k.ok(&["jwks"]);
    assert!(
        !jwks.contains(&active),
        "a revoked key leaves the JWKS at once"
    );

    let unknown = k.run(&["revoke", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(one_error_line(&unknown).contains("no key with kid nope"));
}

#[test]
fn import_takes_a_pem_key_as_pending() {
    let source = Keys::new();
    source.ok(&["init"]);
    let pem = source.dir.join(format!("{}.pem", source.kid_in("pending")));

    let k = Keys::new();
    k.ok(&["init"]);
    let out = k.ok(&["import", pem.to_str().unwrap()]);
    assert!(out.starts_with("imported "), "{out}");
    assert_eq!(k.count("pending"), 2);

    let junk = k.dir.with_file_name("junk.pem");
    fs::write(&junk, "not a key").unwrap();
    let refused = k.run(&["import", junk.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(one_error_line(&refused).contains("junk.pem"));
}

#[test]
fn damaged_keyrings_fail_with_one_line_naming_the_file() {
    let k = Keys::new();
    k.ok(&["init"]);
    let manifest = k.dir.join("manifest.json");
    let good = fs::read(&manifest).unwrap();

    fs::write(&manifest, b"{ not json").unwrap();
    let out = k.run(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("manifest.json"));

    fs::write(&manifest, &good).unwrap();
    let active = k.kid_in("active");
    let key = k.dir.join(format!("{active}.pem"));
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = k.run(&["rotate", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_error_line(&out);
    assert!(
        err.contains(&format!("{active}.pem")) && err.contains("0644"),
        "{err}"
    );

    fs::remove_file(&key).unwrap();
    let out = k.run(&["jwks"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("missing private key file"));
}

#[test]
fn config_errors_are_reported_before_anything_is_touched() {
    let k = Keys::new();
    let config = k.dir.with_file_name("bad.toml");
    fs::write(&config, "keys_directory = \"/tmp\"\n").unwrap();
    let out = k.run(&["init", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_error_line(&out);
    assert!(
        err.contains("bad.toml") && err.contains("keys_directory"),
        "{err}"
    );
    assert!(!k.dir.exists());

    let out = k.run(&["init", "--key-bits", "1024"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("key_bits"));

    let out = k.run(&["init", "--clock-leeway", "tomorrow"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn refresh_lifetimes_are_read_from_the_environment_and_validated() {
    let k = Keys::new();
    // Idle longer than absolute is refused, naming the setting: proof that both
    // environment variables reached the validation.
    let out = k
        .cmd(&["list"])
        .env("TESSERA_REFRESH_IDLE_LIFETIME", "2days")
        .env("TESSERA_REFRESH_ABSOLUTE_LIFETIME", "1day")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("refresh_idle_lifetime"));
    let out = k
        .cmd(&["list", "--refresh-absolute-lifetime", "forever"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn two_concurrent_rotations_leave_exactly_one_active_key() {
    let k = Keys::new();
    k.ok(&["init"]);
    let children: Vec<_> = (0..2)
        .map(|_| {
            k.cmd(&["rotate", "--force"])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(k.count("active"), 1);
    assert_eq!(k.count("retired"), 2);
    assert_eq!(k.count("pending"), 1);
    assert!(k.run(&["jwks"]).status.success());
}

#[test]
fn a_held_lock_makes_the_second_rotation_wait_then_fail_with_exit_4() {
    let k = Keys::new();
    k.ok(&["init"]);
    let lock = fs::File::open(k.dir.join(".lock")).unwrap();
    lock.lock().unwrap();
    let out = k.run(&["rotate", "--force", "--lock-timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(one_error_line(&out).contains("locked by another process"));
    drop(lock);
    assert!(k.run(&["rotate", "--force"]).status.success());
}

#[test]
fn the_scheduled_rotation_script_rotates_when_safe_and_never_forces() {
    let k = Keys::new();
    k.ok(&["init"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rotate-keys.sh");
    let run = || {
        Command::new("bash")
            .arg(&script)
            .env("TESSERA_ISSUER_BIN", env!("CARGO_BIN_EXE_tessera-issuer"))
            .env("TESSERA_KEYS_DIR", &k.dir)
            .env("TESSERA_JWKS_CACHE_LIFETIME", "3s")
            .env_remove("TESSERA_CONFIG")
            .output()
            .unwrap()
    };
    let active = k.kid_in("active");
    // Right after init the pending key is too fresh: no rotation, but no failure.
    let early = run();
    assert!(early.status.success(), "{}", stderr(&early));
    assert!(
        stderr(&early).contains("not safe yet"),
        "{}",
        stderr(&early)
    );
    assert_eq!(k.kid_in("active"), active);

    let out = poll(run, |o| !stderr(o).contains("not safe yet"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(k.kid_in("active"), active);
    assert_eq!(k.kid_in("retired"), active);
    // The retired key stays: 15 min + 3 s + 60 s have not passed.
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept: retired key"));
}

#[test]
fn alg_flags_and_the_signing_alg_setting_choose_what_new_keys_are() {
    let k = Keys::new();
    let out = k.ok(&["init", "--alg", "EdDSA"]);
    assert!(out.contains("active key:"), "{out}");
    let algs = |k: &Keys| -> Vec<String> {
        k.list()
            .iter()
            .map(|key| key["alg"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(algs(&k), ["EdDSA", "EdDSA"]);
    for key in k.list() {
        assert_eq!(key["bits"], 256);
    }
    let table = k.ok(&["list"]);
    assert!(table.lines().next().unwrap().contains("ALG"), "{table}");
    assert!(table.lines().nth(1).unwrap().contains(" EdDSA "), "{table}");

    // The setting, by flag or environment, is the default; --alg wins.
    let out = k.ok(&["generate", "--signing-alg", "ES256"]);
    assert!(out.contains("(ES256, P-256)"), "{out}");
    let out = tessera_testkit::process::stdout_of(
        k.cmd(&["generate"]).env("TESSERA_SIGNING_ALG", "ES256"),
    );
    assert!(out.contains("(ES256, P-256)"), "{out}");
    let out = k.ok(&["generate", "--signing-alg", "ES256", "--alg", "RS256"]);
    assert!(out.contains("(2048-bit RS256)"), "{out}");
    assert_eq!(algs(&k), ["EdDSA", "EdDSA", "ES256", "ES256", "RS256"]);

    // A rotation whose new pending key has another algorithm than the one
    // it activates says when the switch takes effect.
    let out = k.ok(&["rotate", "--force", "--alg", "ES256"]);
    assert!(
        out.contains("the active key signs EdDSA; the pending key is ES256"),
        "{out}"
    );

    // Names that are not an algorithm Tessera offers are one error line.
    for bad in [
        ["generate", "--alg", "HS256"],
        ["generate", "--signing-alg", "ES384"],
    ] {
        let out = k.run(&bad);
        assert!(!out.status.success());
        let err = one_error_line(&out);
        assert!(err.contains("RS256, ES256 or EdDSA"), "{err}");
    }
}

#[test]
fn importing_openssl_p256_and_ed25519_keys_reports_their_algorithm() {
    let k = Keys::new();
    k.ok(&["init"]);
    let tmp = tempfile::tempdir().unwrap();
    let made = |name: &str, args: &[&str]| -> Option<PathBuf> {
        let path = tmp.path().join(name);
        let status = Command::new("openssl")
            .args(["genpkey", "-out"])
            .arg(&path)
            .args(args)
            .status()
            .ok()?;
        status.success().then_some(path)
    };
    // openssl is on every machine this runs on (CI installs it); without it
    // the keyring's own tests still import the same formats from fixtures.
    let Some(p256) = made(
        "p256.pem",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ) else {
        panic!("openssl genpkey failed: is openssl installed?");
    };
    let ed = made("ed.pem", &["-algorithm", "ed25519"]).unwrap();
    let out = k.ok(&["import", p256.to_str().unwrap()]);
    assert!(out.contains("(ES256, P-256)"), "{out}");
    let out = k.ok(&["import", ed.to_str().unwrap()]);
    assert!(out.contains("(EdDSA, Ed25519)"), "{out}");
    let jwks: serde_json::Value = serde_json::from_str(&k.ok(&["jwks"])).unwrap();
    let ktys: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kty"].as_str().unwrap())
        .collect();
    assert_eq!(ktys, ["RSA", "RSA", "EC", "OKP"]);
}
