//! The HTTP edge: routes, and the one place errors become status codes.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::db::{Db, DbError};
use crate::keys::KeyHandle;
use crate::passwords::{Checked, Hasher, Password};
use crate::tokens::{AccessGrant, TokenResponse, TokenSettings, new_refresh_token};
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::FormRejection;
use axum::extract::rejection::JsonRejection;
use axum::routing::post;
use tessera_keyring::Clock;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    throttle: crate::throttle::Throttle,
    keys: Arc<KeyHandle>,
    db: Db,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    settings: TokenSettings,
    jwks_cache_control: HeaderValue,
    discovery: Bytes,
    feed: crate::feed::Feed,
    clients: crate::clients::Registry,
    throttled_lines: crate::audit::Folded,
    trusted_proxies: std::sync::OnceLock<Vec<crate::proxies::Cidr>>,
    introspection_clients: std::sync::OnceLock<Vec<crate::config::IntrospectionClient>>,
}

/// The largest request body accepted (login and token requests are tiny).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

impl AppState {
    /// The state of an issuer. The discovery document and the JWKS
    /// `Cache-Control` value are prepared here, once.
    pub fn new(
        keys: Arc<KeyHandle>,
        db: Db,
        hasher: Hasher,
        clock: Arc<dyn Clock>,
        settings: TokenSettings,
    ) -> Self {
        let issuer = &settings.issuer;
        let jwks_cache_lifetime = settings.jwks_cache_lifetime;
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "introspection_endpoint": format!("{issuer}/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            // Not an RFC 8414 field: the signed revocation list resource
            // servers follow (feed.rs).
            "tessera_revocation_feed_endpoint": format!("{issuer}/revocations"),
            "grant_types_supported": ["password", "refresh_token"],
            // REQUIRED by RFC 8414, and consumers (authlib) refuse an empty list.
            // Tessera has no authorization endpoint; `none` is the one response
            // type that promises nothing from one.
            "response_types_supported": ["none"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            // Not an RFC 8414 field: the algorithm of the access tokens (RFC 9068).
            "access_token_signing_alg_values_supported": [tessera_keyring::ALG],
        });
        let jwks_cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}",
            jwks_cache_lifetime.as_secs()
        ))
        .unwrap_or(HeaderValue::from_static("public, max-age=300"));
        Self {
            inner: Arc::new(Inner {
                throttle: crate::throttle::Throttle::default(),
                keys,
                db,
                hasher,
                clock,
                settings,
                jwks_cache_control,
                discovery: Bytes::from(discovery.to_string()),
                feed: crate::feed::Feed::default(),
                clients: crate::clients::Registry::default(),
                throttled_lines: crate::audit::Folded::default(),
                trusted_proxies: std::sync::OnceLock::new(),
                introspection_clients: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The same state with other throttling limits (benchmarks flood logins on
    /// purpose; tests of the limits use small ones).
    pub fn with_throttle(self, throttle: crate::throttle::Throttle) -> Self {
        let inner = Inner {
            throttle,
            keys: Arc::clone(&self.inner.keys),
            db: self.inner.db.clone(),
            hasher: self.inner.hasher.clone(),
            clock: Arc::clone(&self.inner.clock),
            settings: self.inner.settings.clone(),
            jwks_cache_control: self.inner.jwks_cache_control.clone(),
            discovery: self.inner.discovery.clone(),
            feed: crate::feed::Feed::default(),
            clients: crate::clients::Registry::default(),
            throttled_lines: crate::audit::Folded::default(),
            trusted_proxies: self.inner.trusted_proxies.clone(),
            introspection_clients: self.inner.introspection_clients.clone(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same state, with these callers allowed to use `/introspect`
    /// (set once, at start; later calls change nothing).
    pub fn with_introspection_clients(
        self,
        clients: Vec<crate::config::IntrospectionClient>,
    ) -> Self {
        let _ = self.inner.introspection_clients.set(clients);
        self
    }

    /// The same state, believing `Forwarded` / `X-Forwarded-For` from these
    /// proxies (set once, at start; later calls change nothing).
    pub fn with_trusted_proxies(self, proxies: Vec<crate::proxies::Cidr>) -> Self {
        let _ = self.inner.trusted_proxies.set(proxies);
        self
    }

    /// The live keyring.
    pub fn keys(&self) -> &Arc<KeyHandle> {
        &self.inner.keys
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> &str {
        &self.inner.settings.issuer
    }

    /// The client registry (this instance's copy).
    pub(crate) fn clients(&self) -> &crate::clients::Registry {
        &self.inner.clients
    }

    /// The registry changed through this process: the next request reloads
    /// it rather than wait up to [`crate::clients::FRESH_FOR`].
    pub fn clients_changed(&self) {
        self.inner.clients.forget();
    }

    /// Who may call `/introspect` by the deprecated configuration table.
    pub(crate) fn introspection_clients(&self) -> &[crate::config::IntrospectionClient] {
        self.inner
            .introspection_clients
            .get()
            .map_or(&[], Vec::as_slice)
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The password hasher.
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The keyring snapshot to sign with; 503 while none is loaded (a
    /// database keyring whose database has not answered yet).
    pub(crate) fn snapshot(&self) -> Result<Arc<crate::keys::KeySnapshot>, ApiError> {
        self.keys()
            .current()
            .ok_or_else(|| ApiError::Unavailable("no keyring loaded yet".to_owned()))
    }

    /// Adds an entry to the revocation list (unless a live one covers it),
    /// kept as long as a token it covers can be valid.
    pub(crate) async fn add_revocation(
        &self,
        kind: crate::revocation::Kind,
        value: &str,
        why: &str,
    ) -> Result<(), DbError> {
        let at = crate::db::RevokedAt::Clock(self.now());
        let lifetime = self.settings().access_token_lifetime;
        let revoked = self
            .db()
            .add_revocation(kind, value, at, lifetime, why)
            .await?;
        if matches!(revoked, crate::db::Revoked::Added(_)) {
            self.inner.feed.touch();
        }
        Ok(())
    }

    pub(crate) fn now(&self) -> i64 {
        crate::unix_now(self.inner.clock.as_ref())
    }

    pub(crate) fn settings(&self) -> &TokenSettings {
        &self.inner.settings
    }
}

/// All routes, with the layers every request passes.
pub fn router(state: AppState) -> Router {
    with_edge_layers(routes(state.clone()), state)
}

/// The layers every request passes: the client's address (past trusted
/// proxies), the body limit, and request tracing with
/// `Authorization` marked sensitive first so a bearer token never reaches a log.
/// Applied once, here, to every route (the fallback included).
pub fn with_edge_layers(routes: Router, state: AppState) -> Router {
    routes
        .layer(axum::middleware::from_fn_with_state(state, client_address))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
}

/// The span of a request: method and path, never the query string (which
/// may carry a token: `POST /logout?access_token=…`), at any level.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        version = ?request.version(),
    )
}

/// Puts the client's address (past trusted proxies, see [`crate::proxies`])
/// into the request's extensions for the handlers.
async fn client_address(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(peer) = peer {
        let trusted = state
            .inner
            .trusted_proxies
            .get()
            .map_or(&[][..], Vec::as_slice);
        let addr = crate::proxies::client_addr(peer, request.headers(), trusted);
        request.extensions_mut().insert(ClientAddr(addr));
    }
    next.run(request).await
}

/// The client's address, as [`client_address`] found it.
#[derive(Debug, Clone, Copy)]
struct ClientAddr(std::net::IpAddr);

/// The routes and their state, without the edge layers (benchmarks add a
/// baseline route before layering, so both pay for exactly the same layers).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/login", post(login))
        .route("/token", post(crate::oauth::token))
        .route("/revoke", post(crate::oauth::revoke))
        .route("/logout", post(crate::oauth::logout))
        .route("/revocations", get(revocations))
        .route("/introspect", post(crate::introspect::introspect))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

/// `GET /.well-known/jwks.json`: bytes prepared at (re)load, a strong ETag, 304
/// on `If-None-Match`.
async fn jwks(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    // Borrowed from the request: a `HeaderMap` extractor would copy every header.
    let headers = request.headers();
    // A guard, not an Arc clone: no reference-count traffic on the hot path.
    let guard = state.keys().current_guard();
    let Some(snapshot) = guard.as_deref() else {
        return ApiError::Unavailable("no keyring loaded yet".to_owned()).into_response();
    };
    let etag = snapshot.etag();
    let cache = [
        (
            header::CACHE_CONTROL,
            state.inner.jwks_cache_control.clone(),
        ),
        (header::ETAG, snapshot.etag_header().clone()),
    ];
    if if_none_match(headers, etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        snapshot.jwks_json().clone(),
    )
        .into_response()
}

/// RFC 9110 §13.1.2: `*`, or any listed tag equal under weak comparison.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// `GET /revocations?since=<cursor>`: the signed revocation feed (feed.rs).
async fn revocations(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let axum::extract::Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("unreadable query string".to_owned()))?;
    let snapshot = state.snapshot()?;
    let answer = state
        .inner
        .feed
        .answer(
            state.db(),
            snapshot.signer(),
            state.issuer(),
            query.since.as_deref(),
            |etag| if_none_match(&headers, etag),
            state.now(),
        )
        .await
        .map_err(|err| match err {
            crate::feed::FeedError::BadCursor => ApiError::InvalidRequest(err.to_string()),
            crate::feed::FeedError::Db(db) => ApiError::from(db),
            other => ApiError::Internal(other.to_string()),
        })?;
    let no_cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let etag_header = |etag: String| {
        HeaderValue::from_str(&etag).map_err(|_| ApiError::Internal("feed ETag".to_owned()))
    };
    Ok(match answer {
        crate::feed::Answer::NotModified { etag } => (
            StatusCode::NOT_MODIFIED,
            [no_cache, (header::ETAG, etag_header(etag)?)],
        )
            .into_response(),
        crate::feed::Answer::Document { etag, body } => (
            [
                no_cache,
                (header::ETAG, etag_header(etag)?),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jwt"),
                ),
            ],
            body,
        )
            .into_response(),
    })
}

/// The feed's query string.
#[derive(serde::Deserialize)]
struct FeedQuery {
    since: Option<String>,
}

async fn discovery(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.inner.discovery.clone(),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and a keyring that can sign is loaded. A
/// failed keyring reload is reported but does not make the service unready: it
/// keeps signing with the last good keys.
async fn readyz(State(state): State<AppState>) -> Response {
    let snapshot = state.keys().current();
    let database = state.inner.db.ready().await;
    let keys_ready = snapshot.is_some();
    if let Err(err) = &database {
        tracing::error!(error = %err, "readiness: database unavailable");
    }
    let ready = database.is_ok() && keys_ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": if database.is_ok() { "ok" } else { "unavailable" },
        "keyring": if keys_ready { "ok" } else { "unavailable" },
        "active_kid": snapshot.as_ref().map(|s| s.signer().kid()),
        "published_keys": snapshot.as_ref().map_or(0, |s| s.keyring().jwks().keys.len()),
        "keyring_reload_error": state.keys().reload_error(),
    });
    (status, Json(body)).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response()
}

/// Every error a client can see, mapped to HTTP once, here. Causes are logged;
/// clients get a short code.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_request`.
    InvalidRequest(String),
    /// 401 `invalid_credentials`: wrong password, unknown or disabled user alike.
    InvalidCredentials,
    /// 400 `invalid_client`: the client tokens would be issued for is not
    /// registered, is disabled, or may not use this grant.
    InvalidClient(&'static str),
    /// 429 with `Retry-After`: too many failed logins for this username or IP.
    Throttled {
        /// Seconds to wait.
        retry_after: i64,
    },
    /// 503 with `Retry-After`: the password-check queue is full.
    Overloaded,
    /// 413: the body is over [`MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// 408: the body did not arrive within the server's `body_read_timeout`.
    RequestTimeout,
    /// 415: not `application/json`.
    UnsupportedMediaType,
    /// 503 `temporarily_unavailable` with `Retry-After`: the database cannot
    /// be reached (down, restarting, every connection busy). The cause goes
    /// to the log only.
    Unavailable(String),
    /// 500 `server_error`; the cause goes to the log only.
    Internal(String),
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        if err.is_unavailable() {
            Self::Unavailable(err.to_string())
        } else {
            Self::Internal(err.to_string())
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if tessera_serve::is_body_timeout(&rejection) {
            return Self::RequestTimeout;
        }
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            _ => Self::InvalidRequest(rejection.body_text()),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        if tessera_serve::is_body_timeout(&rejection) {
            Self::RequestTimeout
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge
        } else {
            Self::InvalidRequest("expected an application/x-www-form-urlencoded body".to_owned())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::InvalidRequest(description) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": description}),
            ),
            Self::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_credentials"}),
            ),
            Self::InvalidClient(description) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_client", "error_description": description}),
            ),
            Self::Throttled { retry_after } => {
                return retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    retry_after,
                    "too_many_attempts",
                    "too many failed logins; retry later",
                );
            }
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "invalid_request", "error_description": "request body too large"}),
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                json!({"error": "invalid_request", "error_description": "the request body did not arrive in time"}),
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "invalid_request", "error_description": "expected application/json"}),
            ),
            Self::Overloaded => {
                return retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    1,
                    "temporarily_unavailable",
                    "too many logins in progress; retry later",
                );
            }
            Self::Unavailable(cause) => {
                tracing::error!(error = %cause, "request failed: database unavailable");
                return retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    1,
                    "temporarily_unavailable",
                    "the service cannot reach its database; retry later",
                );
            }
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "server_error"}),
                )
            }
        };
        (status, no_store(), Json(body)).into_response()
    }
}

/// `status` with `Retry-After` (at least 1 s) and an error body: 429 and 503.
fn retry_later(status: StatusCode, after: i64, error: &str, description: &str) -> Response {
    (
        status,
        no_store(),
        [(header::RETRY_AFTER, HeaderValue::from(after.max(1)))],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// RFC 6749 §5.1: token responses must not be cached.
pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// `POST /login` body.
#[derive(serde::Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

/// The client's address (past trusted proxies), when the server was started
/// with connection info.
pub(crate) fn client_ip(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<ClientAddr>().map(|addr| addr.0)
}

/// `POST /login`: password → access token + refresh token, for the
/// configured first-party client (`login_client`) and its default scope.
async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let client = state
        .clients()
        .client(state.db(), &state.settings().login_client)
        .await?
        .filter(|c| !c.disabled && c.allows_grant("password"))
        .ok_or(ApiError::InvalidClient(
            "the login client is not registered, is disabled, or may not use the password grant",
        ))?;
    let scope = client.default_scope.join(" ");
    let login = Login {
        username: &request.username,
        client_ip: client_ip(&extensions),
        client: &client,
        scope: &scope,
    };
    let tokens = state
        .password_login(&login, Password::new(request.password))
        .await?;
    Ok((no_store(), Json(tokens)).into_response())
}

/// [`Login`], owned, for the task that finishes a login.
#[derive(Debug)]
struct OwnedLogin {
    username: String,
    client_ip: Option<std::net::IpAddr>,
    client: crate::clients::Client,
    scope: String,
}

/// Who is logging in, from where, for which client.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// The username given.
    pub username: &'a str,
    /// The client's IP address, if known.
    pub client_ip: Option<std::net::IpAddr>,
    /// The registered client the tokens are for (already checked: enabled,
    /// allowed the password grant).
    pub client: &'a crate::clients::Client,
    /// The scope to grant (already checked against the client's).
    pub scope: &'a str,
}

impl AppState {
    /// Checks a username and password and, if they are right and the user is
    /// enabled, starts a session. Unknown users, disabled users and wrong
    /// passwords cost the same Argon2 work and get the same error.
    ///
    /// Before any password work: a username this instance knows is blocked
    /// gets 429; a full password-check queue gets 503; then the attempt is
    /// reserved in the database (429 if a key is blocked). From there the
    /// login runs to its end on a task of its own, so a check that runs is
    /// counted and audited even if the client has gone.
    pub async fn password_login(
        &self,
        login: &Login<'_>,
        password: Password,
    ) -> Result<TokenResponse, ApiError> {
        let now = self.now();
        if let Some(retry_after) = self.inner.throttle.known_block(login.username, now) {
            self.log_throttled(login.client_ip, retry_after);
            return Err(ApiError::Throttled { retry_after });
        }
        let admitted = self.inner.hasher.try_admit().ok_or(ApiError::Overloaded)?;
        let state = self.clone();
        let owned = OwnedLogin {
            username: login.username.to_owned(),
            client_ip: login.client_ip,
            client: login.client.clone(),
            scope: login.scope.to_owned(),
        };
        tokio::spawn(async move { state.finish_login(owned, admitted, password).await })
            .await
            .map_err(|e| ApiError::Internal(format!("login task: {e}")))?
    }

    /// One `login_throttled` line per second at most, with how many were
    /// folded into it (a flood of throttled attempts once wrote 96,000 lines
    /// in 20 s); the counts stay exact.
    fn log_throttled(&self, client_ip: Option<std::net::IpAddr>, retry_after: i64) {
        if let Some(folded) = self.inner.throttled_lines.tick(self.now()) {
            tracing::info!(
                target: "audit",
                event = "login_throttled",
                ?client_ip,
                retry_after,
                also_throttled_since_last_line = folded,
            );
        }
    }

    async fn finish_login(
        &self,
        login: OwnedLogin,
        admitted: crate::passwords::Admitted,
        password: Password,
    ) -> Result<TokenResponse, ApiError> {
        let OwnedLogin {
            username,
            client_ip,
            client,
            scope,
        } = login;
        let (username, scope) = (username.as_str(), scope.as_str());
        let client_id = client.client_id.as_str();
        let throttle = &self.inner.throttle;
        let db = &self.inner.db;
        let reserved = match throttle
            .reserve(db, username, client_ip, self.now())
            .await?
        {
            crate::throttle::Reservation::Granted(reserved) => reserved,
            crate::throttle::Reservation::Blocked { retry_after } => {
                self.log_throttled(client_ip, retry_after);
                return Err(ApiError::Throttled { retry_after });
            }
        };
        let credentials = if crate::validate::username(username).is_ok() {
            self.inner.db.credentials(username).await?
        } else {
            None
        };
        let stored = credentials.as_ref().map(|c| c.password_hash.clone());
        let checked = self
            .inner
            .hasher
            .check_async(admitted, password, stored)
            .await;
        let user = match (credentials, checked) {
            (Some(c), Checked::Match { rehash }) if !c.user.disabled => {
                if let Some(hash) = rehash {
                    // Parameters changed since this hash was made: upgrade it now
                    // that the password is at hand. A failure only delays that.
                    if let Err(err) = self
                        .inner
                        .db
                        .set_password_hash(username, &hash, self.now())
                        .await
                    {
                        tracing::warn!(error = %err, "password rehash failed");
                    }
                }
                c.user
            }
            (credentials, checked) => {
                let reason = match (&credentials, checked) {
                    (None, _) => "unknown_user",
                    (Some(c), Checked::Match { .. }) if c.user.disabled => "disabled_user",
                    _ => "wrong_password",
                };
                tracing::info!(
                    target: "audit",
                    event = "login_failure",
                    reason,
                    user_id = credentials.as_ref().map(|c| c.user.id.as_str()),
                    ?client_ip,
                );
                let mut event = crate::audit::Event::new("login_failure")
                    .ip(client_ip)
                    .with("reason", reason);
                if let Some(c) = &credentials {
                    event = event.user(&c.user.id);
                }
                crate::audit::record(db, self.now(), event).await;
                // The reservation stays: it was this failure, counted.
                return Err(ApiError::InvalidCredentials);
            }
        };
        throttle.release(db, reserved, self.now()).await?;
        let now = self.now();
        let session_id = crate::passwords::random_token(16);
        let refresh = client.allows_grant("refresh_token").then(new_refresh_token);
        let session = crate::db::NewSession {
            id: &session_id,
            user_id: &user.id,
            client_id,
            scope,
        };
        self.inner
            .db
            .start_session(&session, refresh.as_ref().map(|r| &r.1[..]), now)
            .await?;
        let snapshot = self.snapshot()?;
        let grant = AccessGrant {
            user: &user,
            session_id: &session_id,
            client_id,
            scope,
            audiences: &client.audiences,
        };
        let access_token = self
            .inner
            .settings
            .sign_access(snapshot.signer(), &grant, now)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        tracing::info!(
            target: "audit",
            event = "login_success",
            user_id = %user.id,
            session_id = %session_id,
            kid = snapshot.signer().kid(),
        );
        let event = crate::audit::Event::new("login_success")
            .user(&user.id)
            .session(&session_id)
            .ip(client_ip)
            .with("client_id", client_id);
        crate::audit::record(db, now, event).await;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.inner.settings.access_token_lifetime.as_secs(),
            refresh_token: refresh.map(|r| r.0),
            scope: scope.to_owned(),
        })
    }
}
