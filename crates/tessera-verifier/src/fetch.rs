//! Fetching the JWKS (and the issuer's metadata) over HTTP or, with the `tls`
//! feature, HTTPS: hyper's HTTP/1 client, one connection per fetch (fetches
//! are rare), with a timeout and a size limit on everything the issuer sends.

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
    #[error("unsupported URL {0:?} (expected http:// or, with the `tls` feature, https://)")]
    UnsupportedUrl(String),
    /// The TLS configuration cannot be built (e.g. a malformed extra root).
    #[error("TLS configuration: {0}")]
    Tls(String),
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

/// Parses an `http://` (or, with the `tls` feature, `https://`) URL.
pub(crate) fn parse_url(url: &str) -> Result<Uri, FetchError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| FetchError::UnsupportedUrl(url.to_owned()))?;
    let scheme = uri.scheme_str();
    let scheme_ok = scheme == Some("http") || (cfg!(feature = "tls") && scheme == Some("https"));
    if !scheme_ok || uri.host().is_none() {
        return Err(FetchError::UnsupportedUrl(url.to_owned()));
    }
    Ok(uri)
}

/// Whether fetching `uri` exposes the keys to tampering on the way: plain
/// HTTP to anything but a loopback address.
pub(crate) fn is_insecure(uri: &Uri) -> bool {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    uri.scheme_str() == Some("http") && !loopback
}

/// How fetches connect: TLS settings are built once, when the verifier starts.
#[derive(Clone)]
pub(crate) struct Connector {
    #[cfg(feature = "tls")]
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("https", &cfg!(feature = "tls"))
            .finish()
    }
}

impl Connector {
    /// Plain HTTP, and HTTPS trusting Mozilla's roots plus `extra_roots` (DER).
    pub(crate) fn new(extra_roots: &[Vec<u8>]) -> Result<Self, FetchError> {
        #[cfg(feature = "tls")]
        {
            Ok(Self {
                tls: tls::connector(extra_roots)?,
            })
        }
        #[cfg(not(feature = "tls"))]
        {
            if extra_roots.is_empty() {
                Ok(Self {})
            } else {
                Err(FetchError::Tls(
                    "extra root certificates need the `tls` feature".to_owned(),
                ))
            }
        }
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::sync::Arc;

    use super::FetchError;

    /// A rustls client on the same crypto backend as the verifier.
    pub(super) fn connector(
        extra_roots: &[Vec<u8>],
    ) -> Result<tokio_rustls::TlsConnector, FetchError> {
        #[cfg(feature = "aws-lc-rs")]
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        let provider = rustls::crypto::ring::default_provider();
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for der in extra_roots {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| FetchError::Tls(format!("extra root certificate refused: {e}")))?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

/// `GET url`, with `If-None-Match` when an ETag is known.
pub(crate) async fn get(
    connector: &Connector,
    uri: &Uri,
    etag: Option<&str>,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    get_limited(connector, uri, etag, timeout, MAX_DOCUMENT_BYTES).await
}

/// [`get`], reading at most `limit` bytes of body.
pub(crate) async fn get_limited(
    connector: &Connector,
    uri: &Uri,
    etag: Option<&str>,
    timeout: Duration,
    limit: usize,
) -> Result<Fetched, FetchError> {
    let url = uri.to_string();
    match tokio::time::timeout(timeout, get_inner(connector, uri, &url, etag, limit)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(url)),
    }
}

async fn get_inner(
    connector: &Connector,
    uri: &Uri,
    url: &str,
    etag: Option<&str>,
    limit: usize,
) -> Result<Fetched, FetchError> {
    let transport = |problem: String| FetchError::Transport {
        url: url.to_owned(),
        problem,
    };
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // `[::1]` in a URL is `::1` to the resolver.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((connect_host, port))
        .await
        .map_err(|e| transport(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    if https {
        #[cfg(feature = "tls")]
        {
            let name = rustls::pki_types::ServerName::try_from(connect_host.to_owned())
                .map_err(|e| transport(format!("server name: {e}")))?;
            let stream = connector
                .tls
                .connect(name, stream)
                .await
                .map_err(|e| transport(format!("TLS: {e}")))?;
            return exchange(TokioIo::new(stream), uri, url, etag, limit).await;
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = connector;
            return Err(FetchError::UnsupportedUrl(url.to_owned()));
        }
    }
    exchange(TokioIo::new(stream), uri, url, etag, limit).await
}

/// One request and its response over an established connection.
async fn exchange<IO>(
    io: IO,
    uri: &Uri,
    url: &str,
    etag: Option<&str>,
    limit: usize,
) -> Result<Fetched, FetchError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let transport = |problem: String| FetchError::Transport {
        url: url.to_owned(),
        problem,
    };
    let host = uri.host().unwrap_or_default();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
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
            let body = Limited::new(response.into_body(), limit)
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
    fn only_http_and_https_urls_with_a_host_are_accepted() {
        assert!(parse_url("http://127.0.0.1:8080/.well-known/jwks.json").is_ok());
        assert_eq!(
            parse_url("https://example.com/jwks").is_ok(),
            cfg!(feature = "tls")
        );
        for bad in ["ftp://x/y", "/jwks.json", "http://", "file:///etc/passwd"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_is_insecure_unless_loopback() {
        let insecure = |u: &str| is_insecure(&u.parse().unwrap());
        assert!(insecure("http://auth.example.com/jwks"));
        assert!(insecure("http://10.0.0.7/jwks"));
        assert!(!insecure("http://127.0.0.1:8080/jwks"));
        assert!(!insecure("http://[::1]:8080/jwks"));
        assert!(!insecure("http://localhost/jwks"));
        assert!(!insecure("https://auth.example.com/jwks"));
    }
}
