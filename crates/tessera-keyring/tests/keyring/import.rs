use super::*;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn pkcs1_and_pkcs8_keys_become_pending_pkcs8_keys() {
    let (tmp, dir) = new_keyring();
    let mut rng = rsa::rand_core::OsRng;
    let a = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let b = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let pkcs1 = write(
        tmp.path(),
        "a.pem",
        &a.to_pkcs1_pem(LineEnding::LF).unwrap(),
    );
    let pkcs8 = write(
        tmp.path(),
        "b.pem",
        &b.to_pkcs8_pem(LineEnding::CRLF).unwrap(),
    );

    for (path, key) in [(pkcs1, &a), (pkcs8, &b)] {
        let kid = at(&dir, t0()).import(&path).unwrap().kid;
        use rsa::traits::PublicKeyParts as _;
        let expected =
            tessera_keyring::rsa_thumbprint(&key.n().to_bytes_be(), &key.e().to_bytes_be());
        assert_eq!(kid, expected);
        assert_eq!(state_of(&dir, &kid), "pending");
        let stored = fs::read_to_string(dir.key_path(&kid)).unwrap();
        assert!(stored.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(mode(&dir.key_path(&kid)), 0o600);
        let err = at(&dir, t0()).import(&path).unwrap_err();
        assert!(matches!(err, KeyringError::DuplicateKey { .. }), "{err}");
    }
    assert_eq!(dir.load().unwrap().jwks().keys.len(), 4);
}

#[test]
fn small_public_encrypted_or_garbage_pems_are_refused() {
    let (tmp, dir) = new_keyring();
    let mut rng = rsa::rand_core::OsRng;
    let small = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let cases = [
        (
            "small.pem",
            small.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            "1024",
        ),
        (
            "public.pem",
            small
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
            "PUBLIC KEY",
        ),
        (
            "enc.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                .to_owned(),
            "encrypted",
        ),
        ("junk.pem", "hello".to_owned(), "not a PEM"),
    ];
    for (name, text, needle) in cases {
        let path = write(tmp.path(), name, &text);
        let err = at(&dir, t0()).import(&path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(name), "{message}");
        assert!(message.contains(needle), "{name}: {message}");
    }
    assert_eq!(
        dir.inspect().unwrap().manifest.keys.len(),
        2,
        "nothing was added"
    );
}
