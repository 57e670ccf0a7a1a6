//! The issuer's form and JSON request bodies through the whole router (edge
//! layers included), on SQLite. The first byte picks the endpoint (and, with
//! its top bit, sends the other content type); the rest is the body (for
//! `GET /authorize`, the query). Beyond "never panics": no answer is a 5xx
//! (the database is up, the input is only ever the client's fault), and the
//! OAuth endpoints' refusals are RFC 6749 §5.2 JSON bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tessera_fuzz::{issuer, request, runtime, send, service_basic};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// `(method, path, content type, sends the service's Basic credentials,
/// answers errors as OAuth JSON)`.
const ENDPOINTS: &[(&str, &str, &str, bool, bool)] = &[
    ("POST", "/token", FORM, false, true),
    ("POST", "/token", FORM, true, true),
    ("POST", "/login", JSON, false, false),
    ("POST", "/revoke", FORM, false, true),
    ("POST", "/introspect", FORM, true, false),
    ("POST", "/authorize/login", FORM, false, false),
    ("POST", "/authorize/consent", FORM, false, false),
    ("POST", "/session", JSON, false, false),
    ("POST", "/session/refresh", JSON, false, false),
    ("POST", "/end_session", FORM, false, false),
    ("POST", "/userinfo", FORM, false, false),
    ("GET", "/authorize", FORM, false, false),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (method, path, content_type, basic, oauth) =
        ENDPOINTS[usize::from(selector & 0x7f) % ENDPOINTS.len()];
    let content_type = match (selector & 0x80 != 0, content_type) {
        (true, FORM) => JSON,
        (true, _) => FORM,
        (false, ct) => ct,
    };
    let basic_value = service_basic();
    let mut headers = vec![("content-type", content_type)];
    if basic {
        headers.push(("authorization", basic_value.as_str()));
    }
    let (uri, body) = if method == "GET" {
        let Ok(query) = std::str::from_utf8(body) else {
            return;
        };
        let uri = format!("{path}?{query}");
        if uri.parse::<axum::http::Uri>().is_err() {
            return;
        }
        (uri, Vec::new())
    } else {
        (path.to_owned(), body.to_vec())
    };
    let (status, answer) =
        runtime().block_on(send(&issuer().app, request(method, &uri, &headers, body)));
    assert!(
        status < 500,
        "{method} {path} answered {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    if oauth && status >= 400 {
        let error: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
            panic!(
                "{path} {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&answer)
            )
        });
        assert!(error["error"].is_string(), "{path} {status}: {error}");
    }
});
