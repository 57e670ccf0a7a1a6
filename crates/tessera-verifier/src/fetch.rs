//! Fetching the JWKS (and the issuer's metadata) over HTTP: hyper's HTTP/1
//! client, one connection per fetch (fetches are rare), with a timeout and a
//! size limit on everything the issuer sends.

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;

/// The largest document accepted from the issuer.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// What a GET came back with.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: StatusCode,
    pub(crate) etag: Option<String>,
    /// `Cache-Control: max-age` in seconds; `Some(0)` for `no-cache`/`no-store`.
    pub(crate) max_age: Option<u64>,
    pub(crate) body: Bytes,
}

/// Why a fetch failed. Kept short: it goes to logs and the health report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL cannot be fetched by this build.
    #[error("unsupported URL {0:?} (this build fetches http:// URLs only)")]
    UnsupportedUrl(String),
    /// Connecting, sending or reading failed.
    #[error("fetching {url}: {problem}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        problem: String,
    },
    /// No answer within the fetch timeout.
    #[error("fetching {0}: timed out")]
    Timeout(String),
    /// An answer other than 200 (or 304 when revalidating).
    #[error("fetching {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The document is not what was expected.
    #[error("{0}")]
    Invalid(String),
}

/// Parses an `http://` URL into what a request needs.
pub(crate) fn parse_url(url: &str) -> Result<Uri, FetchError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| FetchError::UnsupportedUrl(url.to_owned()))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(FetchError::UnsupportedUrl(url.to_owned()));
    }
    Ok(uri)
}

/// `GET url`, with `If-None-Match` when an ETag is known.
pub(crate) async fn get(
    uri: &Uri,
    etag: Option<&str>,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let url = uri.to_string();
    match tokio::time::timeout(timeout, get_inner(uri, &url, etag)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(url)),
    }
}

async fn get_inner(uri: &Uri, url: &str, etag: Option<&str>) -> Result<Fetched, FetchError> {
    let transport = |problem: String| FetchError::Transport {
        url: url.to_owned(),
        problem,
    };
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    // `[::1]` in a URL is `::1` to the resolver.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((connect_host, port))
        .await
        .map_err(|e| transport(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let mut request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "tessera-verifier");
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| transport(e.to_string()));
    let result = match response {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers();
            let etag = headers
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let max_age = max_age(headers);
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| transport(format!("reading the body: {e}")))
                .map(|b| b.to_bytes());
            body.map(|body| Fetched {
                status,
                etag,
                max_age,
                body,
            })
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

/// `Cache-Control`'s `max-age`; `no-cache`/`no-store` count as 0.
fn max_age(headers: &hyper::HeaderMap) -> Option<u64> {
    let mut found = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-cache" || lower == "no-store" {
                return Some(0);
            }
            if let Some(secs) = lower.strip_prefix("max-age=") {
                found = secs.trim_matches('"').parse().ok().or(found);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cache_control_is_read_leniently_and_no_cache_wins() {
        let of = |values: &[&str]| {
            let mut h = hyper::HeaderMap::new();
            for v in values {
                h.append(header::CACHE_CONTROL, v.parse().unwrap());
            }
            max_age(&h)
        };
        assert_eq!(of(&["public, max-age=300"]), Some(300));
        assert_eq!(of(&["Max-Age=\"60\""]), Some(60));
        assert_eq!(of(&["public", "max-age=10"]), Some(10));
        assert_eq!(of(&["max-age=300, no-cache"]), Some(0));
        assert_eq!(of(&["no-store"]), Some(0));
        assert_eq!(of(&["max-age=soon"]), None);
        assert_eq!(of(&[]), None);
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        assert!(parse_url("http://127.0.0.1:8080/.well-known/jwks.json").is_ok());
        for bad in [
            "https://example.com/jwks",
            "ftp://x/y",
            "/jwks.json",
            "http://",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
