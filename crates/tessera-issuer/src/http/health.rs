//! `/healthz`, `/readyz`, and the answer to any other path.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::AppState;

pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and a keyring that can sign is loaded. A
/// failed keyring reload is reported but does not make the service unready: it
/// keeps signing with the last good keys.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let service = state.service();
    let snapshot = service.keys().current();
    let database = service.db().ready().await;
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
        "keyring_reload_error": service.keys().reload_error(),
    });
    (status, Json(body)).into_response()
}

pub(super) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response()
}
