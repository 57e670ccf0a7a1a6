//! What every handler can reach: the service, and what the HTTP edge
//! prepares once.

use axum::body::Bytes;
use axum::http::HeaderValue;
use serde_json::json;

use tessera_keyring::RotationPolicy;

use super::cookies::{Sessions, SignInCookies};
use super::metrics::{Exposition, MetricsAt};
use crate::config::CookieSessions;
use crate::proxies::Cidr;
use crate::service::Issuer;

/// The state of the HTTP edge: the [`Issuer`] and the responses and settings
/// that are the edge's own. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    issuer: Issuer,
    edge: std::sync::Arc<Edge>,
}

#[derive(Debug)]
struct Edge {
    jwks_cache_control: HeaderValue,
    /// The discovery document without its algorithm lists.
    discovery: std::sync::Arc<serde_json::Value>,
    /// The document as last served, and the algorithms it lists.
    discovery_served: std::sync::Arc<arc_swap::ArcSwap<(Vec<tessera_keyring::Algorithm>, Bytes)>>,
    trusted_proxies: Vec<Cidr>,
    sessions: Sessions,
    sign_in: SignInCookies,
    /// Where `/metrics` answers, and its registry (none when off).
    metrics_at: MetricsAt,
    exposition: Option<std::sync::Arc<Exposition>>,
}

impl AppState {
    /// The HTTP state of `issuer`. The discovery document and the JWKS
    /// `Cache-Control` value are prepared here, once.
    pub fn new(issuer: Issuer) -> Self {
        let settings = issuer.settings();
        let url = &settings.issuer;
        let discovery = json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "userinfo_endpoint": format!("{url}/userinfo"),
            "end_session_endpoint": format!("{url}/end_session"),
            "jwks_uri": format!("{url}/.well-known/jwks.json"),
            "revocation_endpoint": format!("{url}/revoke"),
            "introspection_endpoint": format!("{url}/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            // Not an RFC 8414 field: the signed revocation list resource
            // servers follow (feed.rs).
            "tessera_revocation_feed_endpoint": format!("{url}/revocations"),
            "grant_types_supported":
                ["authorization_code", "refresh_token", "client_credentials", "password"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            // RFC 9207: the authorization response names the issuer.
            "authorization_response_iss_parameter_supported": true,
            "subject_types_supported": ["public"],
            // id_token_signing_alg_values_supported and
            // access_token_signing_alg_values_supported: the keyring's
            // algorithms, filled in by `discovery` (they change with it).
            "scopes_supported": ["openid", "profile", "roles"],
            "claims_supported": [
                "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "sid", "amr",
                "at_hash", "preferred_username", "roles",
            ],
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "token_endpoint_auth_methods_supported":
                ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": crate::clients::ASSERTION_ALGS,
            "revocation_endpoint_auth_methods_supported": ["none"],
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
        });
        let jwks_cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}",
            settings.jwks_cache_lifetime.as_secs()
        ))
        .unwrap_or(HeaderValue::from_static("public, max-age=300"));
        Self {
            edge: std::sync::Arc::new(Edge {
                jwks_cache_control,
                discovery: std::sync::Arc::new(discovery),
                discovery_served: Default::default(),
                trusted_proxies: Vec::new(),
                sessions: Sessions::new(settings, &CookieSessions::default()),
                sign_in: SignInCookies::new(settings),
                metrics_at: MetricsAt::default(),
                exposition: Some(std::sync::Arc::new(Exposition::new(
                    &issuer,
                    default_policy(settings),
                ))),
            }),
            issuer,
        }
    }

    /// The same state, with `/metrics` where `at` says, its keyring gauges
    /// computed by `policy` (the configured rotation rules).
    pub fn with_metrics(self, at: MetricsAt, policy: RotationPolicy) -> Self {
        let exposition = (at != MetricsAt::Off)
            .then(|| std::sync::Arc::new(Exposition::new(&self.issuer, policy)));
        self.with_edge(|edge| {
            edge.metrics_at = at;
            edge.exposition = exposition;
        })
    }

    /// The same state, believing `Forwarded` / `X-Forwarded-For` from these
    /// proxies.
    pub fn with_trusted_proxies(self, proxies: Vec<Cidr>) -> Self {
        self.with_edge(|edge| edge.trusted_proxies = proxies)
    }

    /// The same state, with these cookie-session settings (default: the
    /// default cookie names, host-only, no origin allowed but the issuer's).
    pub fn with_cookie_sessions(self, config: &CookieSessions) -> Self {
        let sessions = Sessions::new(self.issuer.settings(), config);
        self.with_edge(|edge| edge.sessions = sessions)
    }

    fn with_edge(self, change: impl FnOnce(&mut Edge)) -> Self {
        let mut edge = Edge {
            jwks_cache_control: self.edge.jwks_cache_control.clone(),
            discovery: self.edge.discovery.clone(),
            discovery_served: self.edge.discovery_served.clone(),
            trusted_proxies: self.edge.trusted_proxies.clone(),
            sessions: self.edge.sessions.clone(),
            sign_in: self.edge.sign_in.clone(),
            metrics_at: self.edge.metrics_at,
            exposition: self.edge.exposition.clone(),
        };
        change(&mut edge);
        Self {
            issuer: self.issuer,
            edge: std::sync::Arc::new(edge),
        }
    }

    /// The service.
    pub fn service(&self) -> &Issuer {
        &self.issuer
    }

    pub(super) fn jwks_cache_control(&self) -> &HeaderValue {
        &self.edge.jwks_cache_control
    }

    /// The discovery document listing `algorithms` (the keyring's, active
    /// key's first) as the signing algorithms of ID and access tokens: built
    /// once per change of the keyring's algorithms.
    pub(super) fn discovery(&self, algorithms: &[tessera_keyring::Algorithm]) -> Bytes {
        let served = self.edge.discovery_served.load();
        if served.0 == algorithms && !served.1.is_empty() {
            return served.1.clone();
        }
        let names: Vec<&str> = algorithms.iter().map(|a| a.name()).collect();
        let mut document = (*self.edge.discovery).clone();
        if let Some(fields) = document.as_object_mut() {
            fields.insert("id_token_signing_alg_values_supported".into(), json!(names));
            // Not an RFC 8414 field: the algorithms of the access tokens (RFC 9068).
            fields.insert(
                "access_token_signing_alg_values_supported".into(),
                json!(names),
            );
        }
        let bytes = Bytes::from(document.to_string());
        self.edge
            .discovery_served
            .store(std::sync::Arc::new((algorithms.to_vec(), bytes.clone())));
        bytes
    }

    pub(super) fn trusted_proxies(&self) -> &[Cidr] {
        &self.edge.trusted_proxies
    }

    pub(super) fn sessions(&self) -> &Sessions {
        &self.edge.sessions
    }

    pub(super) fn sign_in(&self) -> &SignInCookies {
        &self.edge.sign_in
    }

    /// Where `/metrics` answers.
    pub fn metrics_at(&self) -> MetricsAt {
        self.edge.metrics_at
    }

    /// The metrics registry, unless metrics are off.
    pub(super) fn exposition(&self) -> Option<&Exposition> {
        self.edge.exposition.as_deref()
    }

    /// Whether any client may scrape (a listener of their own).
    pub(super) fn metrics_open(&self) -> bool {
        self.edge.metrics_at == MetricsAt::OwnListener
    }
}

/// The rotation rules from the token settings alone (the default leeway),
/// until [`AppState::with_metrics`] is told the configured ones.
fn default_policy(settings: &crate::tokens::TokenSettings) -> RotationPolicy {
    RotationPolicy {
        access_token_lifetime: settings.access_token_lifetime,
        jwks_cache_lifetime: settings.jwks_cache_lifetime,
        ..RotationPolicy::default()
    }
}
