//! Helpers of the cross-crate tests alone (what every suite shares is in
//! `tessera-testkit`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_verifier::KeySet;

/// The workspace root (where `README.md` and `.ci/run` live).
pub(crate) fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// Checks a compact JWS's RS256 signature against a key set, the key picked by
/// the header's `kid`; returns the payload as JSON. Signature only: the claim
/// checks belong to the verifier's validator.
pub(crate) fn verify_signature(set: &KeySet, token: &str) -> Result<serde_json::Value, String> {
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

/// The third-party tool `var` names (a `TESSERA_INTEROP_*` variable that
/// `.ci/run` sets), or `None` after saying that `checks` are skipped.
pub(crate) fn interop_tool(var: &str, checks: &str) -> Option<String> {
    let tool = std::env::var(var).ok();
    if tool.is_none() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("{var} is not set: skipping the {checks}");
        }
    }
    tool
}

/// Runs a third-party tool (a verifier, a relying party, a browser script),
/// `program [args]`, off the runtime; returns the JSON it prints (asserts
/// it exits 0).
pub(crate) async fn run_json_tool(program: String, mut args: Vec<String>) -> serde_json::Value {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&program)
            .args(args.drain(..))
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{program} printed no JSON: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("the tool task failed: {e}"))
}

/// A fresh issuer in `dir` and an access token of its first admin.
pub(crate) async fn issuer_with_admin_token(
    dir: &std::path::Path,
) -> (tessera_testkit::stack::InProcessIssuer, String) {
    issuer_signing_with(dir, "RS256").await
}

/// [`issuer_with_admin_token`], with `signing_alg` (RS256, ES256, EdDSA).
pub(crate) async fn issuer_signing_with(
    dir: &std::path::Path,
    signing_alg: &str,
) -> (tessera_testkit::stack::InProcessIssuer, String) {
    let issuer = tessera_testkit::stack::start_issuer(dir, |raw| {
        raw.signing_alg = Some(signing_alg.to_owned());
    })
    .await;
    let tokens = tessera_testkit::stack::login(issuer.addr, "admin", &issuer.admin_password).await;
    let token = tokens["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token in {tokens}"))
        .to_owned();
    (issuer, token)
}
