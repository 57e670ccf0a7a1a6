//! Helpers shared by Tessera's cross-crate tests.

// Test support: failing loudly, at once, is the point.
#![allow(clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_verifier::KeySet;

/// The workspace root (where `README.md` and `.ci/run` live).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// Checks a compact JWS's RS256 signature against a key set, the key picked by
/// the header's `kid`; returns the payload as JSON. Signature only: the claim
/// checks belong to the verifier's validator.
pub fn verify_signature(set: &KeySet, token: &str) -> Result<serde_json::Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err("not three segments".to_owned());
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|e| e.to_string());
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let key = set.get(kid).ok_or_else(|| format!("unknown kid {kid}"))?;
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    if !key.verify_rs256(signing_input.as_bytes(), &decode(signature)?) {
        return Err("bad signature".to_owned());
    }
    serde_json::from_slice(&decode(payload)?).map_err(|e| e.to_string())
}

/// An issuer running in this process on 127.0.0.1 (port 0), with its SQLite
/// database and keyring in `dir` (embedded defaults otherwise).
#[derive(Debug)]
pub struct RunningIssuer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its issuer URL (`iss`), `http://<addr>`.
    pub url: String,
    /// The first start's `admin` password.
    pub admin_password: String,
    /// Its database URL.
    pub database_url: String,
}

/// Starts an issuer in `dir` and returns once it listens. It runs until the
/// test's runtime ends.
pub async fn start_issuer(dir: &std::path::Path) -> RunningIssuer {
    let database_url = format!("sqlite://{}", dir.join("issuer.db").display());
    let config = tessera_issuer::config::RawConfig {
        keys_dir: Some(dir.join("keys")),
        database_url: Some(database_url.clone()),
        listen: "127.0.0.1:0".parse().ok(),
        ..tessera_issuer::config::RawConfig::default()
    }
    .validate()
    .unwrap_or_else(|e| panic!("issuer config: {e}"));
    let mut prepared = tessera_issuer::serve::Prepared::new(config)
        .await
        .unwrap_or_else(|e| panic!("starting the issuer: {e}"));
    let admin_password = prepared
        .take_first_admin()
        .map(|a| a.password)
        .unwrap_or_default();
    let addr = prepared.addr();
    let url = prepared.issuer().to_owned();
    tokio::spawn(prepared.run(std::future::pending()));
    RunningIssuer {
        addr,
        url,
        admin_password,
        database_url,
    }
}
