//! The issuer's Prometheus metrics (issue 22): what the service counts as it
//! works ([`Metrics`], held by the [`crate::service::Issuer`]), and what is
//! read at scrape time ([`crate::http`]'s `/metrics` adds the gauges).
//!
//! Every label's values are bounded by construction: enums, the routes the
//! router declares, status codes, and registered client ids (a client id is
//! counted only once the registry has it). Never a username, a token, a
//! `kid` per request or an address.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a password login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values, as Prometheus spells them
pub enum LoginOutcome {
    /// Right password, enabled user: a session started.
    success,
    /// A known user, the wrong password.
    wrong_password,
    /// No such user (the same Argon2 work was spent).
    unknown_user,
    /// The right password of a disabled user.
    disabled,
    /// Refused before any password work: a throttled username or address.
    throttled,
    /// Refused before any password work: the password-check queue was full.
    queue_full,
}

/// The grant a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Grant {
    /// `/login`, the password grant, a cookie session's login.
    password,
    /// A refresh-token rotation.
    refresh_token,
    /// Client credentials (a service's token for itself).
    client_credentials,
    /// An authorization code (browser sign-in).
    authorization_code,
}

/// What a refresh-token use came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RefreshOutcome {
    /// Rotated: a new token, the old one used.
    rotated,
    /// A retry inside the retry window: the same answer again.
    replayed,
    /// A used token presented after the window: the family was revoked.
    reuse_detected,
    /// Unknown, expired, revoked, or not this client's.
    refused,
}

/// What was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RevocationKind {
    /// One access token (`jti`).
    jti,
    /// A session and its tokens (`sid`).
    sid,
    /// Every token of a user issued until now (`sub`).
    sub,
}

impl From<tessera_feed::Kind> for RevocationKind {
    fn from(kind: tessera_feed::Kind) -> Self {
        match kind {
            tessera_feed::Kind::Jti => Self::jti,
            tessera_feed::Kind::Sid => Self::sid,
            tessera_feed::Kind::Sub => Self::sub,
        }
    }
}

/// How the feed answered a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FeedAnswer {
    /// `304`: the poller was up to date.
    not_modified,
    /// The entries after the poller's cursor.
    delta,
    /// Everything live.
    snapshot,
}

/// `outcome="…"` of a login.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoginLabel {
    outcome: LoginOutcome,
}

/// `outcome="…"` of a refresh-token use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefreshLabel {
    outcome: RefreshOutcome,
}

/// `grant="…",client="…"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IssuedLabels {
    grant: Grant,
    client: String,
}

/// `kind="…"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: RevocationKind,
}

/// `answer="…"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AnswerLabel {
    answer: FeedAnswer,
}

/// `route="…",method="…",status="…"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// A route as the router declares it (`/token`), or `unmatched`.
    pub(crate) route: &'static str,
    pub(crate) method: &'static str,
    pub(crate) status: u16,
}

/// `route="…"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    pub(crate) route: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 100 µs to about 6.5 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

/// What the service counts. Cheap to clone (every metric is shared).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) request_seconds: HistogramFamily<RouteLabel>,
    logins: Family<LoginLabel, Counter>,
    issued: Family<IssuedLabels, Counter>,
    refreshes: Family<RefreshLabel, Counter>,
    revocations: Family<KindLabel, Counter>,
    feed_answers: Family<AnswerLabel, Counter>,
    pub(crate) db_errors: Counter,
}

impl Default for Metrics {
    /// Every outcome, kind and answer starts at 0, so that a rate over a
    /// series that has not happened yet is 0 rather than missing.
    fn default() -> Self {
        let metrics = Self {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            logins: Family::default(),
            issued: Family::default(),
            refreshes: Family::default(),
            revocations: Family::default(),
            feed_answers: Family::default(),
            db_errors: Counter::default(),
        };
        use LoginOutcome as L;
        for outcome in [
            L::success,
            L::wrong_password,
            L::unknown_user,
            L::disabled,
            L::throttled,
            L::queue_full,
        ] {
            drop(metrics.logins.get_or_create(&LoginLabel { outcome }));
        }
        use RefreshOutcome as R;
        for outcome in [R::rotated, R::replayed, R::reuse_detected, R::refused] {
            drop(metrics.refreshes.get_or_create(&RefreshLabel { outcome }));
        }
        for kind in [
            RevocationKind::jti,
            RevocationKind::sid,
            RevocationKind::sub,
        ] {
            drop(metrics.revocations.get_or_create(&KindLabel { kind }));
        }
        for answer in [
            FeedAnswer::not_modified,
            FeedAnswer::delta,
            FeedAnswer::snapshot,
        ] {
            drop(metrics.feed_answers.get_or_create(&AnswerLabel { answer }));
        }
        metrics
    }
}

impl Metrics {
    /// A password login ended so.
    pub fn login(&self, outcome: LoginOutcome) {
        self.logins.get_or_create(&LoginLabel { outcome }).inc();
    }

    /// An access token was issued to `client` (a registered client id).
    pub fn issued(&self, grant: Grant, client: &str) {
        let labels = IssuedLabels {
            grant,
            client: client.to_owned(),
        };
        self.issued.get_or_create(&labels).inc();
    }

    /// A refresh token was used, with this outcome.
    pub fn refresh(&self, outcome: RefreshOutcome) {
        self.refreshes
            .get_or_create(&RefreshLabel { outcome })
            .inc();
    }

    /// An entry was added to the revocation list.
    pub fn revoked(&self, kind: tessera_feed::Kind) {
        let labels = KindLabel { kind: kind.into() };
        self.revocations.get_or_create(&labels).inc();
    }

    /// The feed answered a poll so.
    pub fn feed_answer(&self, answer: FeedAnswer) {
        self.feed_answers
            .get_or_create(&AnswerLabel { answer })
            .inc();
    }

    /// Registers every metric with `registry` (the registry holds clones:
    /// the service keeps counting into the same values).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tessera_http_requests",
            "HTTP requests answered, by route, method and status",
            self.requests.clone(),
        );
        registry.register(
            "tessera_http_request_duration_seconds",
            "Time from a request's arrival to its response's headers, by route",
            self.request_seconds.clone(),
        );
        registry.register(
            "tessera_logins",
            "Password logins, by outcome",
            self.logins.clone(),
        );
        registry.register(
            "tessera_tokens_issued",
            "Access tokens issued, by grant and client",
            self.issued.clone(),
        );
        registry.register(
            "tessera_refresh_tokens_used",
            "Refresh-token uses, by outcome (rotated, replayed, reuse_detected, refused)",
            self.refreshes.clone(),
        );
        registry.register(
            "tessera_revocations",
            "Entries added to the revocation list, by kind",
            self.revocations.clone(),
        );
        registry.register(
            "tessera_feed_answers",
            "Revocation-feed polls answered, by answer (not_modified, delta, snapshot)",
            self.feed_answers.clone(),
        );
        registry.register(
            "tessera_db_errors",
            "Requests that failed on the database (unreachable, full, or an error)",
            self.db_errors.clone(),
        );
    }
}
