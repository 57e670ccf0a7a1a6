//! `tessera-resource-server`: see the library's documentation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tessera_verifier::{
    CookieSource, JwksSource, OutagePolicy, RevocationConfig, SystemClock, TokenCacheConfig,
    Verifier, VerifierConfig,
};

/// Tessera's demo resource server: /profile and /admin, protected by tokens
/// from a Tessera issuer, verified with its published keys only.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The issuer URL (the `iss` claim); its JWKS is discovered from its
    /// RFC 8414 metadata unless --jwks-url is given.
    #[arg(long, env = "TESSERA_RS_ISSUER", value_name = "URL")]
    issuer: String,
    /// Accepted audience; repeat or comma-separate for several.
    #[arg(
        long = "audience",
        env = "TESSERA_RS_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ',',
        default_value = "tessera"
    )]
    audiences: Vec<String>,
    /// An accepted signature algorithm (RS256, ES256 or EdDSA, spelled
    /// exactly so); repeat or comma-separate. To follow an issuer that
    /// migrates, list its old and its new algorithm.
    #[arg(
        long = "algorithm",
        env = "TESSERA_RS_ALGORITHMS",
        value_name = "ALG",
        value_delimiter = ',',
        default_value = "RS256"
    )]
    algorithms: Vec<String>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "TESSERA_RS_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8081"
    )]
    listen: SocketAddr,
    /// Serve /metrics (Prometheus) and /metrics.json on this address of
    /// their own, to any client that reaches it, instead of on the main
    /// listener to loopback clients only.
    #[arg(long, env = "TESSERA_RS_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// The JWKS URL, instead of discovering it.
    #[arg(long, env = "TESSERA_RS_JWKS_URL", value_name = "URL")]
    jwks_url: Option<String>,
    /// At most one JWKS refetch per this long for unknown key ids.
    #[arg(
        long,
        env = "TESSERA_RS_UNKNOWN_KID_COOLDOWN",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    unknown_kid_cooldown: u64,
    /// Turn the verified-token cache off.
    #[arg(long, env = "TESSERA_RS_NO_TOKEN_CACHE")]
    no_token_cache: bool,
    /// Do not follow the issuer's revocation feed (revoked tokens are then
    /// accepted until they expire).
    #[arg(long, env = "TESSERA_RS_NO_REVOCATION_FEED")]
    no_revocation_feed: bool,
    /// The revocation feed URL, instead of `<issuer>/revocations`.
    #[arg(long, env = "TESSERA_RS_REVOCATION_FEED_URL", value_name = "URL")]
    revocation_feed_url: Option<String>,
    /// How often the revocation feed is polled, in milliseconds.
    #[arg(
        long,
        env = "TESSERA_RS_REVOCATION_POLL_MS",
        value_name = "MS",
        default_value_t = 2000
    )]
    revocation_poll_ms: u64,
    /// How long the feed may go unanswered before the outage policy applies.
    #[arg(
        long,
        env = "TESSERA_RS_REVOCATION_MAX_OUTAGE",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    revocation_max_outage: u64,
    /// During such an outage (and before the feed first answers) refuse every
    /// token with 503, instead of going on with the last list received.
    #[arg(long, env = "TESSERA_RS_REVOCATION_FAIL_CLOSED")]
    revocation_fail_closed: bool,
    /// The cookie that may carry the access token when a request has no
    /// Authorization header (the issuer's access_cookie_name).
    #[arg(
        long,
        env = "TESSERA_RS_COOKIE_NAME",
        value_name = "NAME",
        default_value = "tessera_access"
    )]
    cookie_name: String,
    /// Accept tokens from the Authorization header only.
    #[arg(long, env = "TESSERA_RS_NO_COOKIE")]
    no_cookie: bool,
    /// An origin whose pages may make state-changing requests (POST /notes)
    /// with the cookie, besides this server's own (http://<bound address>);
    /// repeat or comma-separate.
    #[arg(
        long = "allowed-origin",
        env = "TESSERA_RS_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// A request's headers must arrive within this many seconds (also how
    /// long an idle keep-alive connection waits for its next request).
    #[arg(
        long,
        env = "TESSERA_RS_HEADER_READ_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    header_read_timeout: u64,
    /// A connection moving no byte for this many seconds is closed.
    #[arg(
        long,
        env = "TESSERA_RS_IDLE_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    idle_timeout: u64,
    /// The most connections served at once (1 – 1,000,000).
    #[arg(
        long,
        env = "TESSERA_RS_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    max_connections: u32,
    /// A connection closes this many seconds after it opened.
    #[arg(
        long,
        env = "TESSERA_RS_MAX_CONNECTION_AGE",
        value_name = "SECONDS",
        default_value_t = 300
    )]
    max_connection_age: u64,
    /// How long requests in flight may finish after SIGTERM, in seconds.
    #[arg(
        long,
        env = "TESSERA_RS_SHUTDOWN_GRACE",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    shutdown_grace: u64,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            #[allow(clippy::print_stderr)] // the binary's one error line
            {
                eprintln!("tessera-resource-server: {err:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let mut config = VerifierConfig::new(args.issuer.trim_end_matches('/'), args.audiences);
    if let Some(url) = args.jwks_url {
        config = config.with_jwks(JwksSource::Url(url));
    }
    config.algorithms = args.algorithms;
    config.unknown_kid_cooldown = Duration::from_secs(args.unknown_kid_cooldown);
    // On in the demo (and by default in the library): see docs/benchmarks.md.
    config.token_cache = (!args.no_token_cache).then(TokenCacheConfig::default);
    if !args.no_revocation_feed {
        let mut feed = RevocationConfig::default();
        feed.url = args.revocation_feed_url;
        feed.poll_interval = Duration::from_millis(args.revocation_poll_ms);
        feed.max_outage = Duration::from_secs(args.revocation_max_outage);
        if args.revocation_fail_closed {
            feed.on_outage = OutagePolicy::FailClosed;
        }
        config.revocations = Some(feed);
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    if !args.no_cookie {
        // The page at /app posts to this server from its own origin.
        let mut origins = vec![format!("http://{addr}")];
        origins.extend(args.allowed_origins);
        config.cookie = Some(CookieSource::new(args.cookie_name, origins));
    }
    let verifier =
        Verifier::start(config, Arc::new(SystemClock)).context("configuring the verifier")?;
    #[allow(clippy::print_stdout)] // scripts and tests read the bound address here
    {
        println!("tessera-resource-server listening on http://{addr}");
    }
    tracing::info!(%addr, "listening");
    // Its one body (POST /notes) is tiny; the body timeout stays at its default.
    let mut limits = tessera_serve::Limits::default();
    // Each at most a day (tessera-serve clamps as well).
    let secs = |n: u64| Duration::from_secs(n.clamp(1, 86_400));
    limits.header_read_timeout = secs(args.header_read_timeout);
    limits.idle_timeout = secs(args.idle_timeout);
    limits.max_connection_age = secs(args.max_connection_age);
    limits.max_connections = usize::try_from(args.max_connections).unwrap_or(1024);
    limits.shutdown_grace = Duration::from_secs(args.shutdown_grace.min(86_400));
    let app = match args.metrics_listen {
        None => tessera_resource_server::app(verifier),
        Some(at) => {
            let metrics = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding {at} (--metrics-listen)"))?;
            let bound = metrics.local_addr().context("reading the bound address")?;
            #[allow(clippy::print_stdout)] // as for the main listener
            {
                println!("tessera-resource-server metrics on http://{bound}/metrics");
            }
            let routes = tessera_resource_server::metrics_app(verifier.clone());
            tokio::spawn(async move {
                if let Err(err) = tessera_serve::serve(metrics, routes, limits, shutdown()).await {
                    tracing::error!(error = %err, "the metrics listener failed");
                }
            });
            tessera_resource_server::app_without_metrics(verifier)
        }
    };
    tessera_serve::serve(listener, app, limits, shutdown())
        .await
        .context("serving")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
