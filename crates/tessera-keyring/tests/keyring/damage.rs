use super::*;

fn edit_manifest(dir: &KeyDir, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.manifest_path()).unwrap()).unwrap();
    f(&mut v);
    fs::write(dir.manifest_path(), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn load_error(dir: &KeyDir) -> String {
    let err = dir.load().unwrap_err();
    // The same error from a write operation: nothing is written over a damaged keyring.
    let write_err = at(dir, t0()).generate(DEFAULT_BITS).unwrap_err();
    assert_eq!(err.to_string(), write_err.to_string());
    err.to_string()
}

#[test]
fn a_manifest_that_is_not_json_names_the_file_and_position() {
    let (_tmp, dir) = new_keyring();
    fs::write(dir.manifest_path(), "{\"format\": 1, \"keys\": [").unwrap();
    let message = load_error(&dir);
    assert!(message.contains("manifest.json"), "{message}");
    assert!(message.contains("line 1"), "{message}");
}

#[test]
fn hand_edited_manifests_are_rejected_with_the_problem_named() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 9] = [
        (
            "two active keys",
            |v| {
                v["keys"][1]["state"] = "active".into();
                v["keys"][1]["activated"] = "2026-01-01T00:00:00Z".into();
            },
            "2 keys are active",
        ),
        (
            "active key without activation time",
            |v| v["keys"][0]["activated"] = serde_json::Value::Null,
            "`activated` is not set",
        ),
        (
            "unknown state",
            |v| v["keys"][1]["state"] = "zombie".into(),
            "\"zombie\"",
        ),
        (
            "unknown field",
            |v| v["keys"][1]["comment"] = "hi".into(),
            "unknown field `comment`",
        ),
        (
            "path in kid",
            |v| v["keys"][1]["kid"] = "../../etc/passwd".into(),
            "not a key id",
        ),
        (
            "another alg",
            |v| v["keys"][1]["alg"] = "HS256".into(),
            "HS256",
        ),
        (
            "bad time",
            |v| v["keys"][1]["created"] = "yesterday".into(),
            "RFC 3339",
        ),
        ("future format", |v| v["format"] = 2.into(), "format 2"),
        (
            "duplicate",
            |v| {
                let first = v["keys"][0].clone();
                v["keys"].as_array_mut().unwrap().push(first);
            },
            "listed twice",
        ),
    ];
    for (name, edit, needle) in cases {
        let (_tmp, dir) = new_keyring();
        edit_manifest(&dir, edit);
        let message = load_error(&dir);
        assert!(message.contains("manifest.json"), "{name}: {message}");
        assert!(message.contains(needle), "{name}: {message}");
    }
}

#[test]
fn a_missing_key_file_is_named() {
    let (_tmp, dir) = new_keyring();
    let pending = dir
        .inspect()
        .unwrap()
        .manifest
        .next_pending()
        .unwrap()
        .kid
        .clone();
    fs::remove_file(dir.key_path(&pending)).unwrap();
    let message = load_error(&dir);
    assert!(message.contains(&format!("{pending}.pem")), "{message}");
    assert!(message.contains("missing private key file"), "{message}");
    assert!(message.contains("pending"), "{message}");
}

#[test]
fn a_world_readable_key_file_is_refused() {
    let (_tmp, dir) = new_keyring();
    let active = dir.load().unwrap().signer().kid().to_owned();
    let path = dir.key_path(&active);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = dir.load().unwrap_err();
    assert!(
        matches!(
            err,
            KeyringError::InsecurePermissions {
                mode: 0o644,
                expected: 0o600,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains(&format!("{active}.pem")), "{message}");
    assert!(message.contains("chmod 600"), "{message}");
}

#[test]
fn a_keys_directory_open_to_others_is_refused_on_load_and_tightened_on_write() {
    let (_tmp, dir) = new_keyring();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let err = dir.load().unwrap_err();
    assert!(
        matches!(
            err,
            KeyringError::InsecurePermissions {
                mode: 0o755,
                expected: 0o700,
                ..
            }
        ),
        "{err}"
    );
    at(&dir, t0()).generate(DEFAULT_BITS).unwrap();
    assert_eq!(mode(dir.path()), 0o700);
    dir.load().unwrap();
}

#[test]
fn a_key_file_swapped_for_another_key_is_detected() {
    let (_tmp, dir) = new_keyring();
    let m = dir.inspect().unwrap().manifest;
    let (active, pending) = (
        m.active().unwrap().kid.clone(),
        m.next_pending().unwrap().kid.clone(),
    );
    fs::copy(dir.key_path(&pending), dir.key_path(&active)).unwrap();
    let message = load_error(&dir);
    assert!(message.contains(&format!("{active}.pem")), "{message}");
    assert!(
        message.contains(&format!("holds key {pending}")),
        "{message}"
    );
}

#[test]
fn a_key_file_that_is_not_a_key_is_named() {
    let (_tmp, dir) = new_keyring();
    let pending = dir
        .inspect()
        .unwrap()
        .manifest
        .next_pending()
        .unwrap()
        .kid
        .clone();
    fs::write(
        dir.key_path(&pending),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let message = load_error(&dir);
    assert!(message.contains(&format!("{pending}.pem")), "{message}");
    assert!(message.contains("not a PKCS#8 private key"), "{message}");
}

#[test]
fn a_directory_that_was_never_initialised_says_how_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let err = KeyDir::new(tmp.path()).load().unwrap_err();
    assert!(matches!(err, KeyringError::NotInitialised { .. }), "{err}");
    assert!(err.to_string().contains("keys init"), "{err}");
}

#[test]
fn a_keyring_with_no_active_key_does_not_load_but_can_be_inspected() {
    let (_tmp, dir) = new_keyring();
    edit_manifest(&dir, |v| {
        v["keys"][0]["state"] = "retired".into();
        v["keys"][0]["retired"] = "2026-01-01T00:01:00Z".into();
    });
    let err = dir.load().unwrap_err();
    assert!(matches!(err, KeyringError::NoActiveKey { .. }), "{err}");
    assert_eq!(dir.inspect().unwrap().jwks.keys.len(), 2);
    // rotate repairs it once the pending key is old enough.
    at(&dir, t0() + 5 * MIN)
        .rotate(&policy(), false, DEFAULT_BITS)
        .unwrap();
    dir.load().unwrap();
}
