//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0):
//! `GET /end_session` (also `GET /logout`) and its confirmation form.
//!
//! With an `id_token_hint` this issuer signed for a session the browser's
//! own SSO session started, that SSO session ends at once, with every
//! session it started (their access tokens go into the revocation feed).
//! Anything else (no hint, a hint from another browser or another user's
//! sign-in, which a link on any site could carry) ends nothing until the
//! user says so, through a form bound to the SSO cookie (RP-Initiated
//! Logout §2). The browser is sent back only to a
//! `post_logout_redirect_uri` the client registered; otherwise it is shown
//! a page.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::authorize::{failure, origin_of, page_response, see_other, sso_of};
use super::cookies::{csrf_cookie, csrf_token};
use super::oauth::unique;
use super::pages::{self, Page};
use super::state::AppState;
use crate::service::authorize::with_query;

const SIGN_OUT: &str = "sign-out";

/// Where to send the browser afterwards, checked against the registry.
struct Target {
    uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

fn invalid(state: &AppState, message: &str) -> Response {
    page_response(
        state,
        Page::message(StatusCode::BAD_REQUEST, "Sign-out failed", message),
        None,
    )
}

fn signed_out(state: &AppState, target: &Target) -> Response {
    let mut response = match &target.uri {
        Some(uri) => {
            let mut pairs = Vec::new();
            if let Some(s) = &target.state {
                pairs.push(("state", s.as_str()));
            }
            if pairs.is_empty() {
                see_other(uri)
            } else {
                see_other(&with_query(uri, &pairs))
            }
        }
        None => page_response(
            state,
            Page::message(StatusCode::OK, "Signed out", "You are signed out."),
            None,
        ),
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.sign_in().clear_sso());
    response
}

/// The post-logout target: a URI only if the client (named by the hint or
/// `client_id`) registered it.
async fn target(
    state: &AppState,
    params: &std::collections::HashMap<String, String>,
    hinted: Option<&str>,
) -> Result<Target, &'static str> {
    let given = |n: &str| params.get(n).filter(|v| !v.is_empty()).cloned();
    let client_id = match (hinted, given("client_id")) {
        (Some(h), Some(c)) if h != c => return Err("The sign-out request names two applications."),
        (Some(h), _) => Some(h.to_owned()),
        (None, c) => c,
    };
    let uri = given("post_logout_redirect_uri");
    if let Some(uri) = &uri {
        let Some(id) = &client_id else {
            return Err("The sign-out request does not say which application it is for.");
        };
        let client = state
            .service()
            .clients()
            .client(state.service().db(), id)
            .await
            .ok()
            .flatten();
        if !client.is_some_and(|c| !c.disabled && c.post_logout_matches(uri)) {
            return Err("The application asked to send you to an address it has not registered.");
        }
    }
    let state_param =
        given("state").filter(|s| s.len() <= crate::service::authorize::MAX_STATE_BYTES);
    Ok(Target {
        uri,
        state: state_param,
        client_id,
    })
}

/// `GET /end_session` and `GET /logout`.
pub(super) async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Some(params) = query.ok().and_then(|Query(p)| unique(p).ok()) else {
        return invalid(&state, "The sign-out request is malformed.");
    };
    let hint = match params.get("id_token_hint").filter(|h| !h.is_empty()) {
        Some(text) => match state.service().id_token_hint(text) {
            Some(hint) => Some(hint),
            None => return invalid(&state, "The sign-out request is not valid."),
        },
        None => None,
    };
    let target = match target(&state, &params, hint.as_ref().map(|h| h.client_id.as_str())).await {
        Ok(target) => target,
        Err(message) => return invalid(&state, message),
    };
    let sso = match sso_of(&state, &headers).await {
        Ok(sso) => sso,
        Err(err) => return failure(&state, &err),
    };
    // A hint from this very browser's sign-in: sign out now.
    if let (Some(hint), Some((_, browser))) = (&hint, &sso) {
        match state.service().hint_is_of(hint, browser).await {
            Ok(true) => {
                if let Err(err) = state.service().sign_out(&browser.id, "logout").await {
                    return failure(&state, &err);
                }
                return signed_out(&state, &target);
            }
            Ok(false) => {}
            Err(err) => return failure(&state, &err),
        }
    }
    // Anything else (no hint, or one from another sign-in, which a link on
    // any site could carry): ask first, or, with nothing live here, say so.
    let Some((cookie, sso)) = sso else {
        return signed_out(&state, &target);
    };
    let mut fields = vec![("csrf".to_owned(), csrf_token(SIGN_OUT, &cookie))];
    for (name, value) in [
        ("post_logout_redirect_uri", &target.uri),
        ("state", &target.state),
        ("client_id", &target.client_id),
    ] {
        if let Some(value) = value {
            fields.push((name.to_owned(), value.clone()));
        }
    }
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = pages::confirm_sign_out(
        state.service().issuer_url(),
        &sso.user.username,
        &pages::hidden(&fields),
    );
    let page = Page {
        status: StatusCode::OK,
        title: "Sign out?",
        body,
        form_target: target.uri.as_deref().and_then(origin_of),
    };
    page_response(&state, page, None)
}

/// `POST /end_session`: the confirmation form.
pub(super) async fn confirmed(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if !state.sign_in().form_origin_ok(&headers) {
        return invalid(&state, "The sign-out form did not come from this site.");
    }
    let Some(params) = form.ok().and_then(|Form(p)| unique(p).ok()) else {
        return invalid(&state, "The sign-out form is malformed.");
    };
    let cookies = state.sign_in().sso_values(&headers);
    let csrf = params.get("csrf").map(String::as_str).unwrap_or("");
    let Some(cookie) = csrf_cookie(SIGN_OUT, &cookies, csrf) else {
        return invalid(&state, "The sign-out form has expired.");
    };
    let target = match target(&state, &params, None).await {
        Ok(target) => target,
        Err(message) => return invalid(&state, message),
    };
    match state.service().sso_session(cookie).await {
        Ok(Some(sso)) => {
            if let Err(err) = state.service().sign_out(&sso.id, "logout").await {
                return failure(&state, &err);
            }
        }
        Ok(None) => {}
        Err(err) => return failure(&state, &err),
    }
    signed_out(&state, &target)
}
