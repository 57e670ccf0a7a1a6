//! ES256 and EdDSA keys beside RS256: what they publish, how they sign, how
//! they are imported, and the switch from one algorithm to another under the
//! ordinary rotation rules.

use super::*;
use tessera_keyring::{Algorithm, KeySpec, ec_thumbprint, okp_thumbprint};

/// A P-256 key made by `openssl genpkey -algorithm EC -pkeyopt
/// ec_paramgen_curve:P-256`, and its public x and y as OpenSSL printed them.
const P256_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglZfSjmggEiPJrRf2
+v7hEkENM+DTnqA8hpauDwwtNCuhRANCAARLS6DZSMsK+kfzTMEs0To+uXb/8yDB
rgN5hkNYpflRUAAdBLMf3q9pEGysDuX1/32ydE9cabwaz/GFQsQHBQH2
-----END PRIVATE KEY-----
";
const P256_X: &str = "S0ug2UjLCvpH80zBLNE6Prl2__Mgwa4DeYZDWKX5UVA";

/// An Ed25519 key made by `openssl genpkey -algorithm ed25519` (a PKCS#8 v1
/// document: no public key inside), and its public key as OpenSSL printed it.
const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIL2JJVwb75aGXo637Kzgn64kq1zz1OEY6Bziap+jXUZz
-----END PRIVATE KEY-----
";
const ED25519_X: &str = "aBE7s_Ue90eTST6Gy2cOA7VnywS4hZaPrx-G3puW9xc";

/// A P-384 key (`openssl ecparam -name secp384r1 -genkey | openssl pkcs8 -topk8`).
const P384_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDCHLVgxsds/PywB21H2
I7l2uKkCtl/es/5VEPZc+sjh63/SrJChrj83r+sbkUwIc42hZANiAARv9zUOFLJ4
pAXYuin8lnRAlM1OtTGNOoQDXWeKA7eYwQdFWeT3T0yUwBtRJsHnXVA9Bs/4WqOH
+sc5dsThkaCof4Ngft3JPLmOTjBA8RwUNOqvNZKJ+kj6/QusIwCQUrc=
-----END PRIVATE KEY-----
";

/// A P-256 key in SEC1 form (`openssl ecparam -genkey`), not PKCS#8.
const SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIEMq3j6Yx2SywXAl/5HVf37HxkT9znkvgdJ+mtRbs8YaoAoGCCqGSM49
AwEHoUQDQgAEMJvRQZw47E3d7WyL2jLDzljebtJAeALdCf6SGQ8Ek3ouKs7Wmd8y
C6wlrfaNpr5fGumpQLY3E1fb907l7LJo6g==
-----END EC PRIVATE KEY-----
";

fn keyring_of(alg: Algorithm) -> (tempfile::TempDir, KeyDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    at(&dir, t0()).init(alg).unwrap();
    (tmp, dir)
}

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn header_of(token: &str) -> serde_json::Value {
    serde_json::from_slice(&b64(token.split('.').next().unwrap())).unwrap()
}

#[test]
fn es256_and_eddsa_keyrings_publish_rfc_jwks_and_sign_with_their_own_algorithm() {
    for (alg, kty, crv) in [
        (Algorithm::Es256, "EC", "P-256"),
        (Algorithm::EdDsa, "OKP", "Ed25519"),
    ] {
        let (_tmp, dir) = keyring_of(alg);
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.manifest_path()).unwrap()).unwrap();
        for key in manifest["keys"].as_array().unwrap() {
            assert_eq!(key["alg"], alg.name());
            assert_eq!(key["bits"], 256);
        }
        let ring = dir.load().unwrap();
        assert_eq!(ring.signer().alg(), alg);
        for jwk in &ring.jwks().keys {
            let json = serde_json::to_value(jwk).unwrap();
            assert_eq!(json["kty"], kty);
            assert_eq!(json["crv"], crv);
            assert_eq!(json["alg"], alg.name());
            assert_eq!(json["use"], "sig");
            assert!(json.get("n").is_none() && json.get("e").is_none());
            let x = b64(json["x"].as_str().unwrap());
            assert_eq!(x.len(), 32, "RFC 7518 §6.2.1.2 / RFC 8037: full width");
            let kid = match alg {
                Algorithm::Es256 => {
                    let y = b64(json["y"].as_str().unwrap());
                    assert_eq!(y.len(), 32);
                    ec_thumbprint(&x, &y)
                }
                _ => {
                    assert!(json.get("y").is_none());
                    okp_thumbprint(&x)
                }
            };
            assert_eq!(jwk.kid, kid, "the kid is the RFC 7638 thumbprint");
        }
        let token = ring
            .signer()
            .sign_jwt("at+jwt", br#"{"sub":"alice"}"#)
            .unwrap();
        let header = header_of(&token);
        assert_eq!(header["alg"], alg.name());
        assert_eq!(header["kid"], ring.signer().kid());
        let signature = b64(token.rsplit('.').next().unwrap());
        assert_eq!(signature.len(), 64, "the JWS r || s form, or Ed25519's");
        assert!(verify_with_jwks(&dir, &token));
        // Ed25519 is deterministic, ECDSA is not; both verify.
        let again = ring
            .signer()
            .sign_jwt("at+jwt", br#"{"sub":"alice"}"#)
            .unwrap();
        assert_eq!(again == token, alg == Algorithm::EdDsa);
        assert!(verify_with_jwks(&dir, &again));
        // A token claiming another algorithm for the same key is refused.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[0] = URL_SAFE_NO_PAD.encode(
            format!(
                r#"{{"alg":"RS256","kid":"{}","typ":"at+jwt"}}"#,
                ring.signer().kid()
            )
            .as_bytes(),
        );
        assert!(!verify_with_jwks(&dir, &parts.join(".")));
    }
}

#[test]
fn switching_algorithm_is_two_ordinary_rotations_and_every_token_stays_verifiable() {
    let (_tmp, dir) = new_keyring();
    let first = dir.load().unwrap();
    let rs_pending = first.manifest().next_pending().unwrap().kid.clone();
    let mut tokens = vec![first.signer().sign_jwt("at+jwt", b"{}").unwrap()];

    // The operator sets signing_alg = ES256 and rotates: the key published
    // longest (RS256) activates, and the new pending key is ES256.
    let one = at(&dir, t0() + 5 * MIN)
        .rotate(&policy(), false, Algorithm::Es256)
        .unwrap();
    assert_eq!(one.activated, rs_pending);
    let ring = dir.load().unwrap();
    assert_eq!(ring.signer().alg(), Algorithm::Rs256);
    let algs: Vec<&str> = ring.jwks().keys.iter().map(|k| k.alg.as_str()).collect();
    assert_eq!(
        algs,
        ["RS256", "RS256", "ES256"],
        "during the switch the JWKS holds both"
    );
    tokens.push(ring.signer().sign_jwt("at+jwt", b"{}").unwrap());

    // The ES256 key may not sign before it has been published for a JWKS
    // cache lifetime, exactly like any pending key.
    let err = at(&dir, t0() + 9 * MIN)
        .rotate(&policy(), false, Algorithm::Es256)
        .unwrap_err();
    assert!(
        matches!(err, KeyringError::Refused(Refusal::ActivationTooEarly { ref kid, .. }) if *kid == one.new_pending),
        "{err}"
    );
    let two = at(&dir, t0() + 10 * MIN)
        .rotate(&policy(), false, Algorithm::Es256)
        .unwrap();
    assert_eq!(two.activated, one.new_pending);
    let ring = dir.load().unwrap();
    assert_eq!(ring.signer().alg(), Algorithm::Es256);
    let token = ring.signer().sign_jwt("at+jwt", b"{}").unwrap();
    assert_eq!(header_of(&token)["alg"], "ES256");
    tokens.push(token);
    for token in &tokens {
        assert!(verify_with_jwks(&dir, token), "no token is orphaned");
    }
    let record = ring.manifest().get(&two.new_pending).unwrap();
    assert_eq!((record.alg, record.bits), (Algorithm::Es256, 256));
}

#[test]
fn the_faster_switch_generates_the_new_key_and_withdraws_the_old_pending_one() {
    let (_tmp, dir) = new_keyring();
    let old_pending = dir
        .load()
        .unwrap()
        .manifest()
        .next_pending()
        .unwrap()
        .kid
        .clone();
    let ed = at(&dir, t0()).generate(Algorithm::EdDsa).unwrap();
    assert_eq!((ed.alg, ed.bits), (Algorithm::EdDsa, 256));
    at(&dir, t0()).retire(&old_pending).unwrap();
    let out = at(&dir, t0() + 5 * MIN)
        .rotate(&policy(), false, Algorithm::EdDsa)
        .unwrap();
    assert_eq!(out.activated, ed.kid);
    assert_eq!(dir.load().unwrap().signer().alg(), Algorithm::EdDsa);
}

#[test]
fn openssl_p256_and_ed25519_pkcs8_keys_import_with_the_public_key_openssl_computed() {
    let (tmp, dir) = new_keyring();
    for (name, pem, alg, x) in [
        ("p256.pem", P256_PEM, Algorithm::Es256, P256_X),
        ("ed25519.pem", ED25519_PEM, Algorithm::EdDsa, ED25519_X),
    ] {
        let path = tmp.path().join(name);
        fs::write(&path, pem).unwrap();
        let record = at(&dir, t0()).import(&path).unwrap();
        assert_eq!((record.alg, record.bits), (alg, 256));
        let inspection = dir.inspect().unwrap();
        let jwk = inspection.jwks.find(&record.kid).unwrap();
        assert_eq!(jwk.x.as_deref(), Some(x), "{name}");
        assert_eq!(jwk.alg, alg.name());
        let stored = fs::read_to_string(dir.key_path(&record.kid)).unwrap();
        assert!(stored.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(mode(&dir.key_path(&record.kid)), 0o600);
    }
    // The imported P-256 key signs once it is active.
    let pending = dir
        .load()
        .unwrap()
        .manifest()
        .next_pending()
        .unwrap()
        .kid
        .clone();
    at(&dir, t0()).retire(&pending).unwrap();
    at(&dir, t0() + 5 * MIN)
        .rotate(&policy(), false, KeySpec::rsa(DEFAULT_BITS))
        .unwrap();
    let ring = dir.load().unwrap();
    assert_eq!(ring.signer().jwk().x.as_deref(), Some(P256_X));
    let token = ring.signer().sign_jwt("at+jwt", b"{}").unwrap();
    assert!(verify_with_jwks(&dir, &token));
}

#[test]
fn other_curves_and_sec1_files_are_refused_with_what_to_do() {
    let (tmp, dir) = new_keyring();
    for (name, pem, needle) in [
        ("p384.pem", P384_PEM, "only P-256"),
        ("sec1.pem", SEC1_PEM, "openssl pkcs8 -topk8"),
    ] {
        let path = tmp.path().join(name);
        fs::write(&path, pem).unwrap();
        let message = at(&dir, t0()).import(&path).unwrap_err().to_string();
        assert!(message.contains(needle), "{name}: {message}");
    }
    assert_eq!(dir.inspect().unwrap().manifest.keys.len(), 2);
}

#[test]
fn a_manifest_that_misstates_a_keys_algorithm_or_size_is_refused() {
    let (_tmp, dir) = keyring_of(Algorithm::Es256);
    let original = fs::read_to_string(dir.manifest_path()).unwrap();
    for (from, to, needle) in [
        (
            r#""alg": "ES256""#,
            r#""alg": "EdDSA""#,
            "is an ES256 key but the manifest says EdDSA",
        ),
        (r#""alg": "ES256""#, r#""alg": "ES384""#, "not supported"),
        (r#""bits": 256"#, r#""bits": 2048"#, "has 256 bits"),
    ] {
        fs::write(dir.manifest_path(), original.replacen(from, to, 1)).unwrap();
        let message = dir.load().unwrap_err().to_string();
        assert!(message.contains(needle), "{to}: {message}");
    }
}
