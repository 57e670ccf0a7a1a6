//! The issuer's HTML pages: sign-in, consent, sign-out and errors.
//! Server-rendered, no JavaScript, one small stylesheet of their own
//! ([`STYLESHEET`], served at `/assets/tessera.css`). Every value from a
//! request or the registry goes through `html-escape` (text or attribute)
//! before it reaches the page.
//!
//! Each page is sent with a Content-Security-Policy that allows no script
//! at all, styles from the issuer only, forms to the issuer (and, since
//! browsers apply `form-action` to the redirect that follows a submission,
//! to the client's redirect origin), and no framing; with `Referrer-Policy:
//! no-referrer` and `Cache-Control: no-store`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

/// The pages' stylesheet.
pub(super) const STYLESHEET: &str = include_str!("../../assets/tessera.css");

/// A page: status, title and body (already escaped), for a form that may
/// send the browser to `form_target` (an origin) afterwards.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) status: StatusCode,
    pub(super) title: &'static str,
    pub(super) body: String,
    pub(super) form_target: Option<String>,
}

impl Page {
    /// `status` with one paragraph of `message` (an error or a notice).
    pub(super) fn message(status: StatusCode, title: &'static str, message: &str) -> Self {
        Self {
            status,
            title,
            body: format!("<h1>{}</h1>\n<p>{}</p>", text(title), text(message)),
            form_target: None,
        }
    }

    /// The page as a response, `base` being the issuer URL.
    pub(super) fn render(self, base: &str) -> Response {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n\
             <link rel=\"stylesheet\" href=\"{base}/assets/tessera.css\">\n\
             </head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
            title = text(self.title),
            base = attr(base),
            body = self.body,
        );
        let forms = match &self.form_target {
            Some(origin) => format!("'self' {origin}"),
            None => "'self'".to_owned(),
        };
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action {forms}; \
             frame-ancestors 'none'; base-uri 'none'"
        );
        let mut response = (self.status, html).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Ok(csp) = HeaderValue::from_str(&csp) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        for (name, value) in page_headers() {
            headers.insert(name, value);
        }
        response
    }
}

fn page_headers() -> [(HeaderName, HeaderValue); 5] {
    [
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// Hidden form fields, escaped.
pub(super) fn hidden(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                attr(name),
                attr(value)
            )
        })
        .collect()
}

/// The sign-in page for `client`: `hint` prefills the username, `error` is
/// said above the form.
pub(super) fn login(
    base: &str,
    client: &str,
    fields: &str,
    hint: Option<&str>,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", text(e)))
        .unwrap_or_default();
    let (value, focus_user, focus_password) = match hint {
        Some(hint) => (attr(hint).into_owned(), "", " autofocus"),
        None => (String::new(), " autofocus", ""),
    };
    format!(
        "<h1>Sign in</h1>\n\
         <p class=\"client\">to continue to <strong>{client}</strong></p>\n\
         {error}\
         <form method=\"post\" action=\"{base}/authorize/login\">\n\
         {fields}\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\" required value=\"{value}\"{focus_user}>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required{focus_password}>\n\
         <button type=\"submit\">Sign in</button>\n\
         </form>",
        client = text(client),
        base = attr(base),
    )
}

/// What a scope lets a client do, in words.
fn scope_words(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your user id)".to_owned(),
        "profile" => "See your username".to_owned(),
        "roles" => "See your roles".to_owned(),
        "offline_access" => "Stay signed in when you are away".to_owned(),
        other => format!("Use the scope \u{201c}{other}\u{201d}"),
    }
}

/// The consent page: `client` asks for `scopes` on behalf of `username`.
pub(super) fn consent(
    base: &str,
    client: &str,
    username: &str,
    scopes: &[String],
    fields: &str,
) -> String {
    let items: String = if scopes.is_empty() {
        "<li>Know that you signed in</li>\n".to_owned()
    } else {
        scopes
            .iter()
            .map(|s| format!("<li>{}</li>\n", text(&scope_words(s))))
            .collect()
    };
    format!(
        "<h1>Allow access?</h1>\n\
         <p><strong>{client}</strong> would like to:</p>\n\
         <ul class=\"scopes\">\n{items}</ul>\n\
         <p class=\"who\">Signed in as <strong>{username}</strong>.</p>\n\
         <form method=\"post\" action=\"{base}/authorize/consent\">\n\
         {fields}\
         <div class=\"actions\">\n\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button>\n\
         </div>\n\
         </form>",
        client = text(client),
        username = text(username),
        base = attr(base),
    )
}

/// The sign-out confirmation (a logout request without an ID token hint).
pub(super) fn confirm_sign_out(base: &str, username: &str, fields: &str) -> String {
    format!(
        "<h1>Sign out?</h1>\n\
         <p>You are signed in as <strong>{username}</strong>.</p>\n\
         <form method=\"post\" action=\"{base}/end_session\">\n\
         {fields}\
         <button type=\"submit\">Sign out</button>\n\
         </form>",
        username = text(username),
        base = attr(base),
    )
}

/// `GET /assets/tessera.css`.
pub(super) async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = login(
            "https://id.example",
            "<script>alert(1)</script>",
            &hidden(&[("state", "\"><script>")]),
            Some("a\"b"),
            Some("<b>"),
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;\""));
        assert!(page.contains("value=\"a&quot;b\""));
        assert!(page.contains("&lt;b&gt;"));
    }
}
