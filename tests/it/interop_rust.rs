//! Interoperability with a Rust service's usual JWKS client: `jwks_client_rs`
//! (reqwest + jsonwebtoken) fetches our `jwks_uri` and decodes our RS256,
//! ES256 and EdDSA access tokens, and refuses them for another audience or
//! issuer, or when forged.
//!
//! The client lives outside the workspace (`tests/interop/rust`, its own lock
//! file) so its dependency tree stays out of Tessera's builds. `.ci/run` builds
//! it and sets `TESSERA_INTEROP_RUST` to the binary; without the variable the
//! test says so and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_client_rs_decodes_our_tokens_through_our_jwks_uri() {
    let Some(binary) =
        crate::support::interop_tool("TESSERA_INTEROP_RUST", "jwks_client_rs checks")
    else {
        return;
    };
    for alg in ["RS256", "ES256", "EdDSA"] {
        jwks_client_rs_decodes(&binary, alg).await;
    }
}

/// jwks_client_rs (which takes the algorithm from the JWK) on an issuer
/// signing with `alg`.
async fn jwks_client_rs_decodes(binary: &str, alg: &str) {
    let binary = binary.to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let (issuer, token) = crate::support::issuer_signing_with(tmp.path(), alg).await;
    let jwks_uri = format!("{}/.well-known/jwks.json", issuer.url);
    let run = |issuer_url: String, audience: &str, token: String| {
        let args = vec![jwks_uri.clone(), issuer_url, audience.to_owned(), token];
        let output = crate::support::run_json_tool(binary.clone(), args);
        async move { output.await["jwks_client_rs"].clone() }
    };
    let error = |v: &Value| v["error"].as_str().unwrap_or_default().to_lowercase();

    let accepted = run(issuer.url.clone(), "tessera", token.clone()).await;
    assert_eq!(accepted["preferred_username"], "admin", "{alg}: {accepted}");
    assert_eq!(accepted["iss"], issuer.url.as_str());

    let refused = run(issuer.url.clone(), "someone-else", token.clone()).await;
    assert!(error(&refused).contains("audience"), "{refused}");

    let refused = run("http://elsewhere.test".to_owned(), "tessera", token.clone()).await;
    assert!(error(&refused).contains("iss"), "{refused}");

    // The last signature byte changed (a base64url character that is not the
    // final, partly-padding one).
    let mut forged = token.into_bytes();
    let i = forged.len() - 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let refused = run(issuer.url.clone(), "tessera", forged).await;
    assert!(error(&refused).contains("signature"), "{refused}");
}
