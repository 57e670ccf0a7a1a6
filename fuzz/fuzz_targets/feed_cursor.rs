//! The issuer's revocation cursor: `GET /revocations?since=<input>` through
//! the router, with entries in the feed. Beyond "never panics": the answer
//! is a document (200, a compact JWS whose payload names the next cursor),
//! nothing new (304), or a refusal of the cursor (400); never a 5xx.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tessera_fuzz::{issuer, request, runtime, send};

fuzz_target!(|data: &[u8]| {
    let since: String = form_encode(data);
    let uri = format!("/revocations?since={since}");
    let (status, body) =
        runtime().block_on(send(&issuer().app, request("GET", &uri, &[], Vec::new())));
    match status {
        200 => {
            let text = std::str::from_utf8(&body).expect("a document is text");
            let segments: Vec<&str> = text.trim().split('.').collect();
            assert_eq!(segments.len(), 3, "not a compact JWS: {text}");
            let payload = URL_SAFE_NO_PAD
                .decode(segments[1])
                .expect("base64url payload");
            let document: Value = serde_json::from_slice(&payload).expect("JSON payload");
            assert!(document["cursor"].is_string(), "{document}");
        }
        304 | 400 => {}
        other => panic!(
            "since={since:?} answered {other}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
});

/// `data` percent-encoded byte by byte where needed, as a client would send
/// any cursor it was given (or made up).
fn form_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 3);
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
