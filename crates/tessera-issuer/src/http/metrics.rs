//! `GET /metrics` (Prometheus text format) and the request counter every
//! route passes.
//!
//! The registry is built once, with the service's counters ([`Metrics`],
//! shared with the [`Issuer`]) and a collector that reads, at each scrape,
//! what is a state rather than an event: the keyring's clocks, the
//! password-check queue, the revocation list, the database pool. Only the
//! pool's checkout probe is awaited, in the handler, before encoding.
//!
//! Who may scrape: on the main listener, clients whose address (past trusted
//! proxies) is loopback; on a listener of its own (`metrics_listen`), anyone
//! who reaches it (the operator's network decides).

use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use axum::extract::{MatchedPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, prometheus_text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use tessera_keyring::{KeyState, RotationPolicy};

use super::state::AppState;
use crate::metrics::{Metrics, RequestLabels, RouteLabel};
use crate::service::Issuer;

/// Every route the router declares, as its label: a matched path is looked
/// up here, so the label's values are this list and `unmatched`.
const ROUTES: &[&str] = &[
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/login",
    "/authorize",
    "/authorize/login",
    "/authorize/consent",
    "/end_session",
    "/assets/tessera.css",
    "/logout",
    "/revocations",
    "/introspect",
    "/token",
    "/revoke",
    "/userinfo",
    "/session",
    "/session/refresh",
    "/session/logout",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// The label of a request's route.
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|m| ROUTES.iter().find(|r| **r == m.as_str()))
        .copied()
        .unwrap_or("unmatched")
}

/// The method's label: the few the routes answer, else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts every request by route, method and status, and times it: a tower
/// layer of its own rather than `middleware::from_fn`, whose boxed future,
/// cloned inner service and cloned state per request cost the JWKS route
/// 0.55 µs (docs/benchmarks.md); this one allocates nothing.
#[derive(Debug, Clone)]
pub(super) struct Track {
    metrics: std::sync::Arc<Metrics>,
}

impl Track {
    pub(super) fn new(metrics: std::sync::Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for Track {
    type Service = Tracked<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Tracked {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose requests [`Track`] counts.
#[derive(Debug, Clone)]
pub(super) struct Tracked<S> {
    inner: S,
    metrics: std::sync::Arc<Metrics>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for Tracked<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let route = route_label(request.extensions().get::<MatchedPath>());
        let method = method_label(request.method());
        TrackedFuture {
            inner: self.inner.call(request),
            started: tokio::time::Instant::now(),
            route,
            method,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`Tracked`] service, counted when it is ready.
    pub(super) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        started: tokio::time::Instant,
        route: &'static str,
        method: &'static str,
        metrics: std::sync::Arc<Metrics>,
    }
}

impl<F, E> std::future::Future for TrackedFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let metrics = &**this.metrics;
            let route = *this.route;
            metrics
                .request_seconds
                .get_or_create(&RouteLabel { route })
                .observe(this.started.elapsed().as_secs_f64());
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    route,
                    method: this.method,
                    status: response.status().as_u16(),
                })
                .inc();
            if response
                .extensions()
                .get::<super::error::DatabaseFailed>()
                .is_some()
            {
                metrics.db_errors.inc();
            }
        }
        std::task::Poll::Ready(result)
    }
}

/// The registry and what the handler updates before encoding.
#[derive(Debug)]
pub(crate) struct Exposition {
    registry: Registry,
    /// Seconds a connection checkout took at the last scrape.
    acquire_seconds: Gauge<f64, AtomicU64>,
}

impl Exposition {
    pub(crate) fn new(issuer: &Issuer, policy: RotationPolicy) -> Self {
        let mut registry = Registry::default();
        let info = Family::<[(&'static str, &'static str); 3], Gauge>::default();
        info.get_or_create(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("backend", tessera_keyring::BACKEND),
            ("database", issuer.db().backend_name()),
        ])
        .set(1);
        registry.register(
            "tessera_build_info",
            "The running build: version, crypto backend and database (always 1)",
            info,
        );
        issuer.metrics().register(&mut registry);
        registry.register(
            "tessera_password_queue_wait_seconds",
            "Time a password check waited for an Argon2 thread",
            issuer.hasher().wait_histogram().clone(),
        );
        let acquire_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "tessera_db_pool_acquire_seconds",
            "How long checking a connection out of the pool took at this scrape",
            acquire_seconds.clone(),
        );
        registry.register_collector(Box::new(Scrape {
            issuer: issuer.clone(),
            policy,
        }));
        Self {
            registry,
            acquire_seconds,
        }
    }
}

/// `GET /metrics`.
pub(super) async fn metrics(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Response {
    let Some(exposition) = state.exposition() else {
        return super::health::not_found().await;
    };
    if !state.metrics_open()
        && !super::address::client_ip(request.extensions()).is_some_and(|ip| ip.is_loopback())
    {
        return super::health::not_found().await;
    }
    // The probe fails while the database is down: the gauge then says so.
    let acquire = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.service().db().pool_acquire_time(),
    )
    .await;
    let seconds = match acquire {
        Ok(Ok(took)) => took.as_secs_f64(),
        _ => -1.0,
    };
    exposition.acquire_seconds.set(seconds);
    let mut text = String::new();
    if prometheus_text::encode(&mut text, &exposition.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// What a scrape reads from the running service.
#[derive(Debug)]
struct Scrape {
    issuer: Issuer,
    policy: RotationPolicy,
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Seconds from `now` to `then` (negative once it has passed).
fn secs_until(then: SystemTime, now: SystemTime) -> i64 {
    match then.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(passed) => -i64::try_from(passed.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// One gauge per key, labelled by `kid` (a keyring holds a handful).
fn per_key(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(&str, i64)],
) -> Result<(), std::fmt::Error> {
    let probe = ConstGauge::new(0_i64);
    let mut family = e.encode_descriptor(name, help, None, probe.metric_type())?;
    for (kid, value) in values {
        let labels = [("kid", *kid)];
        ConstGauge::new(*value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let issuer = &self.issuer;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            e,
            "tessera_password_queue_depth",
            "Password checks queued or running now.",
            count(issuer.hasher().queue_depth()),
        )?;
        if let Some(entries) = issuer.feed().live_entries() {
            gauge(
                e,
                "tessera_revocation_entries",
                "Live entries in the revocation list this instance serves.",
                count(entries),
            )?;
        }
        let (open, idle) = issuer.db().pool_connections();
        gauge(
            e,
            "tessera_db_pool_connections",
            "Connections open in the database pool.",
            i64::from(open),
        )?;
        gauge(
            e,
            "tessera_db_pool_in_use",
            "Pool connections in use now.",
            i64::from(open).saturating_sub(count(idle)),
        )?;
        let reloads = ConstCounter::new(issuer.keys().reload_errors());
        reloads.encode(e.encode_descriptor(
            "tessera_keyring_reload_errors",
            "Keyring reloads that failed (the last good keyring stays in use).",
            None,
            reloads.metric_type(),
        )?)?;
        gauge(
            e,
            "tessera_keyring_reload_failing",
            "1 while the last keyring reload failed, else 0.",
            i64::from(issuer.keys().reload_error().is_some()),
        )?;
        let Some(snapshot) = issuer.keys().current() else {
            return Ok(());
        };
        let now = issuer.clock_time();
        let manifest = snapshot.keyring().manifest();
        let mut active = Vec::new();
        let mut pending = Vec::new();
        let mut retired = Vec::new();
        for key in &manifest.keys {
            match key.state {
                KeyState::Active { activated } => {
                    active.push((key.kid.as_str(), -secs_until(activated, now)));
                }
                KeyState::Pending => pending.push((
                    key.kid.as_str(),
                    secs_until(self.policy.activation_safe_at(key.created), now),
                )),
                KeyState::Retired { retired: at, .. } => retired.push((
                    key.kid.as_str(),
                    secs_until(self.policy.prune_safe_at(at), now),
                )),
                KeyState::Revoked { .. } => {}
            }
        }
        per_key(
            e,
            "tessera_key_active_age_seconds",
            "Seconds since the active key started signing.",
            &active,
        )?;
        per_key(
            e,
            "tessera_key_pending_activation_seconds",
            "Seconds until a pending key may safely activate (0 or less: it may now).",
            &pending,
        )?;
        per_key(
            e,
            "tessera_key_retired_prune_seconds",
            "Seconds until a retired key may safely be pruned (0 or less: it may now; \
             long below 0: pruning is overdue).",
            &retired,
        )?;
        Ok(())
    }
}

/// Whether the metrics are exposed, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsAt {
    /// On the main listener, to loopback clients (past trusted proxies).
    #[default]
    Loopback,
    /// On a listener of their own (the main one answers 404).
    OwnListener,
    /// Not at all: no `/metrics`, no request counting.
    Off,
}
