//! One request through a router, without a socket, and what came back.

use axum::Router;
use axum::body::Body;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderMap, HeaderName, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// A router's answer.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
    /// The body's bytes.
    pub raw: Vec<u8>,
}

impl Reply {
    /// Header `name` as text.
    ///
    /// # Panics
    /// If it is missing or not visible ASCII.
    pub fn header(&self, name: HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name:?} header"))
            .to_str()
            .unwrap_or_else(|e| panic!("{name:?}: {e}"))
    }

    /// The `WWW-Authenticate` challenge, if there is one.
    pub fn challenge(&self) -> Option<&str> {
        self.headers
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap_or_else(|e| panic!("challenge: {e}")))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// Sends `request` through `router` and reads the whole answer.
pub async fn send(router: Router, request: Request<Body>) -> Reply {
    let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
    let status = response.status();
    let headers = response.headers().clone();
    let raw = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("reading the body: {e}"))
        .to_bytes()
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

/// `GET path` with these headers (`(name, value)`), through `router`.
pub async fn get(router: Router, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    send(router, request).await
}
