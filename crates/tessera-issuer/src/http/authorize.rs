//! Browser sign-in at the edge: `GET /authorize`, the login form
//! (`POST /authorize/login`) and the consent form (`POST
//! /authorize/consent`). The rules are the service's
//! ([`crate::service::authorize`]); this file reads cookies and forms, and
//! answers with pages ([`super::pages`]) and `303` redirects.
//!
//! The login form carries the checked authorization request in hidden
//! fields, and the service checks it again when the form comes back, so the
//! issuer keeps no state before a password is right. Its CSRF token is
//! bound to the pre-login cookie (`SameSite=Lax`: no cross-site POST carries
//! it); the consent and sign-out forms' to the SSO cookie.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::address::client_ip;
use super::cookies::{csrf_cookie, csrf_token};
use super::pages::{self, Page};
use super::state::AppState;
use crate::db::SsoSession;
use crate::passwords::Password;
use crate::service::AuthError;
use crate::service::authorize::{AuthorizeError, AuthorizeRequest, Next, Refusal};

/// The CSRF purposes.
const LOGIN: &str = "login";
const CONSENT: &str = "consent";

/// A `303 See Other` to `location` (never 307: the browser must not post
/// the password on to the client).
pub(super) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The page for a service failure.
fn failure_page(err: &AuthError) -> Page {
    match err {
        AuthError::Throttled { retry_after } => Page::message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &format!("Too many failed sign-ins. Try again in {retry_after} seconds."),
        ),
        AuthError::Overloaded | AuthError::NoKeys => Page::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "The sign-in service is busy. Try again in a moment.",
        ),
        AuthError::Db(db) if db.is_unavailable() => {
            tracing::error!(error = %db, "sign-in failed: service unavailable");
            Page::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The sign-in service cannot answer right now. Try again in a moment.",
            )
        }
        other => {
            tracing::error!(error = %other, "sign-in failed");
            Page::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The sign-in could not be completed. Go back to the application and try again.",
            )
        }
    }
}

/// A page, with `Retry-After` when its status asks for one.
pub(super) fn page_response(state: &AppState, page: Page, retry_after: Option<i64>) -> Response {
    let mut response = page.render(state.service().issuer_url());
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        let after = retry_after.unwrap_or(1).max(1);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    response
}

pub(super) fn failure(state: &AppState, err: &AuthError) -> Response {
    let retry = match err {
        AuthError::Throttled { retry_after } => Some(*retry_after),
        _ => None,
    };
    page_response(state, failure_page(err), retry)
}

fn shown(state: &AppState, message: &str) -> Response {
    page_response(
        state,
        Page::message(StatusCode::BAD_REQUEST, "Sign-in failed", message),
        None,
    )
}

fn refused(state: &AppState, err: AuthorizeError) -> Response {
    match err {
        AuthorizeError::Redirect(back) => see_other(&back.location(state.service().issuer_url())),
        AuthorizeError::Shown(message) => shown(state, message),
    }
}

/// Where a form's redirect may go, for `form-action`: the redirect URI's
/// origin. CSP matches no IP literal but `127.0.0.1` as a host (a `[::1]` or
/// `127.0.0.2` source is dropped, and the redirect with the code would be
/// blocked), so for those the source is the scheme alone; the issuer's pages
/// have no script, so what their forms reach is only ever the issuer's own
/// answer and the redirect it chose.
pub(super) fn origin_of(uri: &str) -> Option<String> {
    let origin = crate::validate::origin_of(uri)?;
    let host = crate::validate::url_host(uri)?;
    if crate::validate::ip_literal(&host).is_some() && host != "127.0.0.1" {
        let scheme = &origin[..origin.find("://")?];
        return Some(format!("{scheme}:"));
    }
    Some(origin)
}

/// The checked request as hidden fields, for the form that comes back.
fn request_fields(request: &AuthorizeRequest, csrf: &str) -> String {
    let mut fields = vec![
        ("csrf", csrf),
        ("response_type", "code"),
        ("client_id", request.client.client_id.as_str()),
        ("redirect_uri", request.redirect_uri.as_str()),
        ("scope", request.scope.as_str()),
        ("code_challenge", request.code_challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(state) = &request.state {
        fields.push(("state", state));
    }
    if let Some(nonce) = &request.nonce {
        fields.push(("nonce", nonce));
    }
    if request.prompt.consent {
        fields.push(("prompt", "consent"));
    }
    pages::hidden(&fields)
}

/// The login page, keeping the browser's pre-login cookie (or setting one).
fn login_page(
    state: &AppState,
    request: &AuthorizeRequest,
    headers: &HeaderMap,
    (status, error, username): (StatusCode, Option<&str>, Option<&str>),
) -> Response {
    let cookies = state.sign_in();
    let existing = cookies.login_values(headers).into_iter().next();
    let fresh = existing.is_none();
    let value = existing.unwrap_or_else(|| crate::passwords::random_token(32));
    let base = state.service().issuer_url();
    let body = pages::login(
        base,
        &request.client.client_id,
        &request_fields(request, &csrf_token(LOGIN, &value)),
        username.or(request.login_hint.as_deref()),
        error,
    );
    let page = Page {
        status,
        title: "Sign in",
        body,
        form_target: origin_of(&request.redirect_uri),
    };
    let mut response = page_response(state, page, None);
    if fresh {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookies.set_login(&value));
    }
    response
}

/// The consent page, its form bound to the SSO cookie `sso_cookie`.
fn consent_page(
    state: &AppState,
    request: &AuthorizeRequest,
    sso: &SsoSession,
    sso_cookie: &str,
    scopes: &[String],
) -> Response {
    let body = pages::consent(
        state.service().issuer_url(),
        &request.client.client_id,
        &sso.user.username,
        scopes,
        &request_fields(request, &csrf_token(CONSENT, sso_cookie)),
    );
    let page = Page {
        status: StatusCode::OK,
        title: "Allow access?",
        body,
        form_target: origin_of(&request.redirect_uri),
    };
    page_response(state, page, None)
}

/// The browser's live SSO session and the cookie value naming it.
pub(super) async fn sso_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(String, SsoSession)>, AuthError> {
    for value in state.sign_in().sso_values(headers) {
        if let Some(sso) = state.service().sso_session(&value).await? {
            return Ok(Some((value, sso)));
        }
    }
    Ok(None)
}

/// `GET /authorize`.
pub(super) async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Ok(Query(pairs)) = query else {
        return shown(&state, "The sign-in request is malformed.");
    };
    let request = match state.service().authorize_request(pairs).await {
        Ok(request) => request,
        Err(err) => return refused(&state, err),
    };
    let sso = match sso_of(&state, &headers).await {
        Ok(sso) => sso,
        Err(err) => return failure(&state, &err),
    };
    let next = state
        .service()
        .authorize(&request, sso.as_ref().map(|(_, s)| s), false)
        .await;
    match next {
        Ok(Next::Login) => login_page(&state, &request, &headers, (StatusCode::OK, None, None)),
        Ok(Next::Consent(scopes)) => match &sso {
            Some((cookie, sso)) => consent_page(&state, &request, sso, cookie, &scopes),
            None => login_page(&state, &request, &headers, (StatusCode::OK, None, None)),
        },
        Ok(Next::Redirect(location)) => see_other(&location),
        Err(Refusal::Redirect(back)) => see_other(&back.location(state.service().issuer_url())),
        Err(Refusal::Failed(err)) => failure(&state, &err),
    }
}

/// A form posted from one of the issuer's pages: its own fields (by name,
/// each at most once) and the rest, the authorization request's.
struct OwnForm<const N: usize> {
    fields: [Option<String>; N],
    request: Vec<(String, String)>,
}

/// The form, if it may come from where it does and is well formed; else
/// the page to answer with.
fn own_form<const N: usize>(
    state: &AppState,
    headers: &HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
    take: [&str; N],
) -> Result<OwnForm<N>, Box<Response>> {
    if !state.sign_in().form_origin_ok(headers) {
        return Err(Box::new(forbidden(state)));
    }
    let malformed = || Box::new(shown(state, "The form is malformed."));
    let Ok(Form(pairs)) = form else {
        return Err(malformed());
    };
    let mut taken: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut rest = Vec::new();
    for (name, value) in pairs {
        match take.iter().position(|t| *t == name) {
            Some(i) if taken[i].is_some() => return Err(malformed()),
            Some(i) => taken[i] = Some(value),
            None => rest.push((name, value)),
        }
    }
    Ok(OwnForm {
        fields: taken,
        request: rest,
    })
}

fn forbidden(state: &AppState) -> Response {
    page_response(
        state,
        Page::message(
            StatusCode::FORBIDDEN,
            "Sign-in expired",
            "This sign-in form has expired or did not come from this site. \
             Go back to the application and start again.",
        ),
        None,
    )
}

/// `POST /authorize/login`: the login form.
pub(super) async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let OwnForm {
        fields: [username, password, csrf],
        request: rest,
    } = match own_form(&state, &headers, form, ["username", "password", "csrf"]) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let login_cookies = state.sign_in().login_values(&headers);
    if csrf_cookie(LOGIN, &login_cookies, csrf.as_deref().unwrap_or("")).is_none() {
        return forbidden(&state);
    }
    let request = match state.service().authorize_request(rest).await {
        Ok(request) => request,
        Err(err) => return refused(&state, err),
    };
    let previous = match sso_of(&state, &headers).await {
        Ok(previous) => previous.map(|(_, sso)| sso),
        Err(err) => return failure(&state, &err),
    };
    let username = username.unwrap_or_default();
    let password = Password::new(password.unwrap_or_default());
    let signed_in = state
        .service()
        .sign_in(
            username.trim(),
            password,
            client_ip(&extensions),
            previous.as_ref(),
        )
        .await;
    let (cookie, sso) = match signed_in {
        Ok(done) => done,
        Err(AuthError::InvalidCredentials) => {
            let again = (
                StatusCode::OK,
                Some("The username or password is incorrect."),
                Some(username.as_str()),
            );
            return login_page(&state, &request, &headers, again);
        }
        Err(AuthError::Throttled { retry_after }) => {
            let message = format!("Too many failed sign-ins. Try again in {retry_after} seconds.");
            let again = (
                StatusCode::TOO_MANY_REQUESTS,
                Some(message.as_str()),
                Some(username.as_str()),
            );
            let mut response = login_page(&state, &request, &headers, again);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            return response;
        }
        Err(err) => return failure(&state, &err),
    };
    let mut response = match state.service().authorize(&request, Some(&sso), true).await {
        Ok(Next::Redirect(location)) => see_other(&location),
        Ok(Next::Consent(scopes)) => consent_page(&state, &request, &sso, &cookie, &scopes),
        Ok(Next::Login) => login_page(&state, &request, &headers, (StatusCode::OK, None, None)),
        Err(Refusal::Redirect(back)) => see_other(&back.location(state.service().issuer_url())),
        Err(Refusal::Failed(err)) => failure(&state, &err),
    };
    let cookies = state.sign_in();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, cookies.set_sso(&cookie));
    headers.append(header::SET_COOKIE, cookies.clear_login());
    response
}

/// `POST /authorize/consent`: the consent form.
pub(super) async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let OwnForm {
        fields: [decision, csrf],
        request: rest,
    } = match own_form(&state, &headers, form, ["decision", "csrf"]) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let sso_cookies = state.sign_in().sso_values(&headers);
    let Some(cookie) = csrf_cookie(CONSENT, &sso_cookies, csrf.as_deref().unwrap_or("")) else {
        return forbidden(&state);
    };
    let request = match state.service().authorize_request(rest).await {
        Ok(request) => request,
        Err(err) => return refused(&state, err),
    };
    let sso = match state.service().sso_session(cookie).await {
        Ok(Some(sso)) => sso,
        Ok(None) => {
            return login_page(&state, &request, &headers, (StatusCode::OK, None, None));
        }
        Err(err) => return failure(&state, &err),
    };
    match decision.as_deref() {
        Some("allow") => match state.service().consent_given(&request, &sso).await {
            Ok(location) => see_other(&location),
            Err(err) => failure(&state, &err),
        },
        Some("deny") => {
            let back = crate::service::authorize::ErrorRedirect {
                redirect_uri: request.redirect_uri.clone(),
                error: "access_denied",
                description: "the user did not allow it",
                state: request.state.clone(),
            };
            see_other(&back.location(state.service().issuer_url()))
        }
        _ => shown(&state, "The consent form is malformed."),
    }
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn form_action_sources_are_ones_csp_can_match() {
        assert_eq!(
            origin_of("https://app.example/cb?x=1").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:51234/cb").as_deref(),
            Some("http://127.0.0.1:51234")
        );
        // CSP matches no other IP literal as a host: the scheme alone.
        assert_eq!(origin_of("http://[::1]:51234/cb").as_deref(), Some("http:"));
        assert_eq!(origin_of("http://127.0.0.2/cb").as_deref(), Some("http:"));
        assert_eq!(origin_of("https://10.1.2.3/cb").as_deref(), Some("https:"));
    }
}
