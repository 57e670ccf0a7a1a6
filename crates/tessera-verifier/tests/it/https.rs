//! JWKS over HTTPS: a local TLS server with a certificate from a test CA. The
//! verifier fetches from it when told to trust that CA, and refuses otherwise.

#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use tessera_verifier::{AccessClaims, JwksSource, ManualClock, Verifier, VerifierConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Serves `body` as JSON over TLS to every connection, until dropped.
async fn tls_server(body: String) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    let provider = rustls::crypto::ring::default_provider();
    let cert = rustls::pki_types::CertificateDer::from(fixture("tls_leaf.der"));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(fixture("tls_leaf.pk8.der").into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=300\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, task)
}

fn verifier(url: String, roots: Vec<Vec<u8>>) -> Verifier {
    let mut config = VerifierConfig::new(ISSUER, [AUDIENCE]).with_jwks(JwksSource::Url(url));
    config.extra_root_certificates = roots;
    config.refresh_check_interval = Duration::from_millis(20);
    Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap()
}

#[tokio::test]
async fn keys_are_fetched_over_https_from_a_trusted_server() {
    let ours = TestKey::load("ours");
    let (addr, _server) = tls_server(jwks_of(&[&ours]).to_string()).await;
    let v = verifier(
        format!("https://{addr}/jwks.json"),
        vec![fixture("tls_ca.der")],
    );
    assert!(v.ready(Duration::from_secs(5)).await, "{:?}", v.health());
    v.verify::<AccessClaims>(&ours.sign(&header(ours.kid()), &claims()))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let ours = TestKey::load("ours");
    let (addr, _server) = tls_server(jwks_of(&[&ours]).to_string()).await;
    // Mozilla's roots only: the test CA is not among them.
    let v = verifier(format!("https://{addr}/jwks.json"), Vec::new());
    eventually("a failed fetch", || v.health().last_error.is_some()).await;
    let health = v.health();
    assert!(!health.loaded);
    assert!(health.last_error.unwrap().contains("TLS"));
    // A name the certificate does not cover is refused too, even with the CA.
    let v = verifier(
        format!("https://127.0.0.2:{}/jwks.json", addr.port()),
        vec![fixture("tls_ca.der")],
    );
    eventually("a failed fetch", || v.health().last_error.is_some()).await;
    assert!(!v.health().loaded);
}

#[test]
fn a_malformed_extra_root_is_a_configuration_error() {
    let mut config = VerifierConfig::new(ISSUER, [AUDIENCE])
        .with_jwks(JwksSource::Url("https://127.0.0.1:1/jwks.json".into()));
    config.extra_root_certificates = vec![b"not a certificate".to_vec()];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let err = Verifier::start(config, Arc::new(ManualClock::new(NOW))).unwrap_err();
    assert!(err.to_string().contains("extra_root_certificates"), "{err}");
}
