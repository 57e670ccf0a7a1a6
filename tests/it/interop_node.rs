//! Interoperability with Node's JWT clients: `jose` (createRemoteJWKSet +
//! jwtVerify, with `typ: at+jwt`) and `jsonwebtoken` + `jwks-rsa` (the usual
//! Express stack) verify our RS256, ES256 and EdDSA access tokens through our
//! `jwks_uri` (jsonwebtoken has no EdDSA: the test checks it refuses).
//!
//! Needs `npm ci --prefix tests/interop` and `TESSERA_INTEROP_NODE` naming the
//! `node` binary; `.ci/run` does both. Without the variable the test says so
//! and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::workspace_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jose_and_jsonwebtoken_verify_our_tokens_through_our_jwks_uri() {
    let Some(node) =
        crate::support::interop_tool("TESSERA_INTEROP_NODE", "Node interoperability checks")
    else {
        return;
    };
    for alg in ["RS256", "ES256", "EdDSA"] {
        node_verifies(&node, alg).await;
    }
}

/// jose and jsonwebtoken on an issuer signing with `alg`. jsonwebtoken
/// (version 9, the Express tutorials' choice) has no EdDSA: it refuses those
/// tokens, and the test checks that it says so.
async fn node_verifies(node: &str, alg: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (issuer, token) = crate::support::issuer_signing_with(tmp.path(), alg).await;
    let jwks_uri = format!("{}/.well-known/jwks.json", issuer.url);
    let script = workspace_root().join("tests/interop/node_verify.mjs");
    let run = |issuer_url: String, audience: &str| {
        let args = vec![
            script.display().to_string(),
            jwks_uri.clone(),
            issuer_url,
            audience.to_owned(),
            token.clone(),
            alg.to_owned(),
        ];
        crate::support::run_json_tool(node.to_owned(), args)
    };
    let accepted = run(issuer.url.clone(), "tessera").await;
    let clients: &[&str] = if alg == "EdDSA" {
        let error = accepted["jsonwebtoken"]["error"]
            .as_str()
            .unwrap_or_default();
        assert!(!error.is_empty(), "jsonwebtoken has no EdDSA: {accepted}");
        &["jose"]
    } else {
        &["jose", "jsonwebtoken"]
    };
    for &client in clients {
        assert_eq!(
            accepted[client]["preferred_username"], "admin",
            "{client}: {accepted}"
        );
        assert_eq!(accepted[client]["iss"], issuer.url.as_str(), "{client}");
    }
    let refused = run(issuer.url.clone(), "someone-else").await;
    for &client in clients {
        let error = refused[client]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("aud"),
            "{client} must refuse another audience: {refused}"
        );
    }
    let refused = run("http://elsewhere.test".to_owned(), "tessera").await;
    for &client in clients {
        let error = refused[client]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("iss"),
            "{client} must refuse another issuer: {refused}"
        );
    }
}
