//! The web app side of the demo: `GET /welcome` (the classic tutorial's
//! page), `POST /notes` (a toy state-changing route, to show the CSRF rule on
//! cookie-borne tokens), the page at `/app` that signs in with the
//! issuer's cookie session, and the page at `/spa` that signs in through the
//! issuer's login page (authorization code + PKCE).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tessera_verifier::Verifier;
use tessera_verifier::axum::Authenticated;

/// The client id the `/spa` page signs in as (a public client with the
/// code grant whose redirect URI is this server's `/spa`; the demo
/// registers it).
pub const SPA_CLIENT: &str = "tessera-demo-spa";

/// The most notes kept (the oldest go first); this is a toy.
pub(crate) const MAX_NOTES: usize = 100;
/// The longest note, in characters.
pub(crate) const MAX_NOTE_CHARS: usize = 280;

/// Notes posted so far, newest last.
#[derive(Debug, Default)]
pub(crate) struct Notes(Mutex<VecDeque<(String, String)>>);

/// The page's parts, prepared once: its `Content-Security-Policy` lets it
/// talk to this server and to the issuer, and nothing else.
#[derive(Debug)]
pub(crate) struct Page {
    csp: HeaderValue,
    config: Vec<u8>,
}

impl Page {
    pub(crate) fn new(verifier: &Verifier) -> Self {
        let issuer = verifier.issuer();
        let issuer_origin = origin_of(issuer).unwrap_or_default();
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' {issuer_origin}; \
             img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        );
        Self {
            csp: HeaderValue::from_str(&csp)
                .unwrap_or(HeaderValue::from_static("default-src 'none'")),
            config: json!({"issuer": issuer, "client_id": SPA_CLIENT})
                .to_string()
                .into_bytes(),
        }
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    Some(&url[..end])
}

/// The user a token names, as the page greets them.
fn name_of(token: &tessera_verifier::Verified<tessera_verifier::AccessClaims>) -> String {
    token
        .claims()
        .preferred_username
        .clone()
        .unwrap_or_else(|| token.subject().to_owned())
}

/// `GET /welcome`: `Welcome <username>!`, as plain text.
pub(crate) async fn welcome(Authenticated(token): Authenticated) -> Response {
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // A username may hold `<`: never sniffed as HTML.
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        format!("Welcome {}!", name_of(&token)),
    )
        .into_response()
}

/// `POST /notes` body.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct NewNote {
    text: String,
}

/// `POST /notes`: keeps the note (at most [`MAX_NOTES`]); `201` with how
/// many there are.
pub(crate) async fn add_note(
    State(notes): State<Arc<Notes>>,
    Authenticated(token): Authenticated,
    body: Result<Json<NewNote>, JsonRejection>,
) -> Response {
    let Ok(Json(note)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": "expected {\"text\": \"…\"}"})),
        )
            .into_response();
    };
    if note.text.is_empty() || note.text.chars().count() > MAX_NOTE_CHARS {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": "a note has 1 to 280 characters"})),
        )
            .into_response();
    }
    let by = name_of(&token);
    let count = {
        let mut list = notes
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.len() == MAX_NOTES {
            list.pop_front();
        }
        list.push_back((by.clone(), note.text.clone()));
        list.len()
    };
    (
        StatusCode::CREATED,
        Json(json!({"by": by, "text": note.text, "notes": count})),
    )
        .into_response()
}

fn asset(page: &Page, content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, page.csp.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /app`: the page.
pub(crate) async fn app_page(State(page): State<Arc<Page>>) -> Response {
    asset(
        &page,
        "text/html; charset=utf-8",
        include_str!("../assets/app.html"),
    )
}

/// `GET /app/app.js`.
pub(crate) async fn app_script(State(page): State<Arc<Page>>) -> Response {
    asset(
        &page,
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    )
}

/// `GET /app/app.css`.
pub(crate) async fn app_style(State(page): State<Arc<Page>>) -> Response {
    asset(
        &page,
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    )
}

/// `GET /spa`: the page that signs in with code + PKCE.
pub(crate) async fn spa_page(State(page): State<Arc<Page>>) -> Response {
    asset(
        &page,
        "text/html; charset=utf-8",
        include_str!("../assets/spa.html"),
    )
}

/// `GET /spa/spa.js`.
pub(crate) async fn spa_script(State(page): State<Arc<Page>>) -> Response {
    asset(
        &page,
        "text/javascript; charset=utf-8",
        include_str!("../assets/spa.js"),
    )
}

/// `GET /app/config.json`: the issuer the pages sign in with, and the
/// browser client `/spa` is registered as.
pub(crate) async fn app_config(State(page): State<Arc<Page>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        page.config.clone(),
    )
        .into_response()
}
