//! Helpers for the tests that drive the issuer together with a resource server
//! and the operator CLI (a real `tessera-issuer` process): only these tests can
//! reach the binary, through `CARGO_BIN_EXE_tessera-issuer`. What every suite
//! shares is `tessera-testkit`'s, re-exported here.

#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    clippy::unwrap_used,
    clippy::panic
)]

use std::path::Path;
use std::process::Output;

use serde_json::Value;
pub use tessera_testkit::jws::{claims_of, kid_of};
pub use tessera_testkit::stack::{
    InProcessIssuer, IssuerProcess, login, logout, profile, published_kids, serve_resource,
    serve_resource_now, start_issuer,
};

/// The `tessera-issuer` binary this package built.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tessera-issuer"))
}

/// The operator CLI, `tessera-issuer <args>`, with no settings leaking in from
/// the tests' environment.
pub fn cli(args: &[&str]) -> std::process::Command {
    tessera_testkit::stack::cli(bin(), args)
}

/// `tessera-issuer keys <args> --keys-dir <dir>`, run to completion.
pub fn keys(dir: &Path, args: &[&str]) -> Output {
    cli(&["keys"])
        .args(args)
        .arg("--keys-dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// `keys list --json`: one object per key.
pub fn key_list(dir: &Path) -> Vec<Value> {
    let listed = tessera_testkit::process::stdout_of(
        cli(&["keys", "list", "--json", "--keys-dir"]).arg(dir),
    );
    serde_json::from_str::<Value>(&listed)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The `kid` of the one key in `state`.
pub fn kid_in_state(dir: &Path, state: &str) -> String {
    let list = key_list(dir);
    let mut matching = list.iter().filter(|k| k["state"] == state);
    let kid = matching
        .next()
        .unwrap_or_else(|| panic!("no {state} key in {list:?}"))["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(matching.next().is_none(), "several {state} keys: {list:?}");
    kid
}

/// The token settings of a test issuer at `issuer`: the service's defaults
/// (15-minute access tokens; refresh tokens idle 14 days, 30 at most; JWKS
/// cached 5 minutes; a 10 s retry window), audience `api`, the login client
/// `tessera-web`.
pub fn settings(issuer: &str) -> tessera_issuer::tokens::TokenSettings {
    use std::time::Duration;
    const DAY: u64 = 86_400;
    tessera_issuer::tokens::TokenSettings {
        issuer: issuer.to_owned(),
        audiences: vec!["api".to_owned()],
        access_token_lifetime: Duration::from_secs(900),
        refresh_idle_lifetime: Duration::from_secs(14 * DAY),
        refresh_absolute_lifetime: Duration::from_secs(30 * DAY),
        jwks_cache_lifetime: Duration::from_secs(300),
        login_client: "tessera-web".to_owned(),
        refresh_retry_window: Duration::from_secs(10),
    }
}

/// The database of a test issuer in `dir` (on the backend the run chose),
/// with the login client `tessera-web` that a first start registers.
pub async fn database(dir: &Path) -> tessera_issuer::db::Db {
    let url = tessera_testkit::pg::test_database_url(dir).unwrap();
    let db = tessera_issuer::db::Db::connect(&url).await.unwrap();
    tessera_issuer::service::clients::bootstrap(&db, "tessera-web", 0, true)
        .await
        .unwrap();
    db
}
