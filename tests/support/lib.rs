//! Helpers shared by Tessera's cross-crate tests.

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
