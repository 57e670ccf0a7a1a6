//! The one test that installs a global `tracing` subscriber (at TRACE), in a
//! binary of its own so that it captures no other test's logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use tessera_bench::Client;

#[path = "it/common/mod.rs"]
mod common;

/// At `debug`, the request trace logged the full URI, so a token in a query
/// string (`POST /logout?access_token=…`) reached the log. Now the path only,
/// at every level, through a real issuer on loopback.
#[tokio::test]
async fn no_query_string_reaches_the_log_at_any_level() {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not scoped: the server's tasks run on other threads.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let issuer = common::start_issuer(tmp.path(), |_| {}).await;
    let login = common::login(issuer.addr, "admin", &issuer.admin_password).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let mut c = Client::connect(issuer.addr).await.unwrap();
    let path = format!("/logout?access_token={token}&x=SECRET-IN-QUERY");
    let (status, _) = c.request("POST", &path, &[], "", "").await.unwrap();
    assert_eq!(status, 401);
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("/logout"), "the trace ran at debug: {log}");
    assert!(!log.contains("SECRET-IN-QUERY"), "{log}");
    assert!(!log.contains(&token), "{log}");
}
