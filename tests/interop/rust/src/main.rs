//! Verifies a Tessera access token the way a Rust service using
//! `jwks_client_rs` does: a `WebSource` on our `jwks_uri`, `decode` with the
//! audience, then the issuer compared by hand (the crate does not check `iss`).
//!
//! Usage: tessera-interop-jwks-client JWKS_URI ISSUER AUDIENCE TOKEN
//! Prints `{"jwks_client_rs": <claims or {"error": ...}>}`.

use jwks_client_rs::JwksClient;
use jwks_client_rs::source::WebSource;
use serde_json::{Value, json};

async fn verify(jwks_uri: &str, issuer: &str, audience: &str, token: &str) -> Result<Value, String> {
    let url = url::Url::parse(jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
    let source = WebSource::builder().build(url).map_err(|e| e.to_string())?;
    let client: JwksClient<WebSource> = JwksClient::builder().build(source);
    let claims: Value = client
        .decode(token, &[audience])
        .await
        .map_err(|e| e.to_string())?;
    if claims["iss"] != issuer {
        return Err(format!("iss: {} is not {issuer}", claims["iss"]));
    }
    Ok(claims)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [jwks_uri, issuer, audience, token] = args.as_slice() else {
        eprintln!("usage: tessera-interop-jwks-client JWKS_URI ISSUER AUDIENCE TOKEN");
        std::process::exit(2);
    };
    let result = verify(jwks_uri, issuer, audience, token)
        .await
        .unwrap_or_else(|error| json!({ "error": error }));
    println!("{}", json!({ "jwks_client_rs": result }));
}
