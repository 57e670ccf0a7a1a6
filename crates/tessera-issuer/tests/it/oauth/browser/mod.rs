//! Browser sign-in through `oneshot`, with a small cookie jar standing in
//! for the browser: `/authorize`, the login and consent forms, codes at
//! `/token`, ID tokens, `/userinfo`, SSO and RP-initiated logout.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cookie::Cookie;
use serde_json::Value;
use tessera_issuer::clients::{Client, ClientKind};
use tessera_testkit::oneshot::Reply;

use super::{App, T0, app};

mod codes;
mod pages;

/// The public browser client the tests sign in to.
const SPA: &str = "spa";
const REDIRECT: &str = "https://app.example.test/cb";
const BYE: &str = "https://app.example.test/bye";
/// A verifier of 43 characters (RFC 7636 §4.1).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// Its S256 challenge (RFC 7636 Appendix B).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The fixture with [`SPA`] registered (public, code + refresh, scopes
/// `openid profile roles orders:read`), and `third` registered as a
/// third-party client with the same settings.
async fn browser_app() -> App {
    let app = app().await;
    app.register(spa(SPA)).await;
    app.register(Client {
        third_party: true,
        ..spa("third")
    })
    .await;
    app
}

fn spa(id: &str) -> Client {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Client {
        kind: ClientKind::Public,
        grant_types: strings(&["authorization_code", "refresh_token"]),
        scopes: strings(&["openid", "profile", "roles", "orders:read"]),
        default_scope: strings(&["openid"]),
        redirect_uris: strings(&[REDIRECT, "http://127.0.0.1/native"]),
        post_logout_redirect_uris: strings(&[BYE]),
        ..tessera_issuer::clients::login_client(id, T0 as i64)
    }
}

impl App {
    async fn register(&self, client: Client) {
        tessera_issuer::clients::check(&client).unwrap();
        self.db.add_client(&client).await.unwrap();
        self.state.service().clients_changed();
    }
}

/// The query of an authorization request for `client` with the test PKCE
/// challenge, `state` and `nonce`, plus `extra` (`&k=v...`).
fn authorize_query(client: &str, extra: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={}\
         &scope=openid%20profile&state=st-123&nonce=n-456\
         &code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        enc(REDIRECT)
    )
}

fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A browser: a cookie jar (name → value, host-only, path `/`).
#[derive(Debug, Default)]
struct Browser {
    jar: HashMap<String, String>,
}

impl Browser {
    fn take_cookies(&mut self, reply: &Reply) {
        for value in reply.headers.get_all(header::SET_COOKIE) {
            let cookie = Cookie::parse(value.to_str().unwrap().to_owned()).unwrap();
            if cookie.max_age() == Some(cookie::time::Duration::ZERO) {
                self.jar.remove(cookie.name());
            } else {
                self.jar
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
    }

    fn cookie_line(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    async fn get(&mut self, app: &App, path: &str) -> Reply {
        let mut request = Request::get(path);
        if let Some(line) = self.cookie_line() {
            request = request.header(header::COOKIE, line);
        }
        let reply = app.send(request.body(Body::empty()).unwrap()).await;
        self.take_cookies(&reply);
        reply
    }

    /// Posts a form as a page of the issuer would (`Origin: null`, as
    /// browsers send under `Referrer-Policy: no-referrer`).
    async fn post(&mut self, app: &App, path: &str, fields: &[(String, String)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, "null");
        if let Some(line) = self.cookie_line() {
            request = request.header(header::COOKIE, line);
        }
        let reply = app.send(request.body(Body::from(body)).unwrap()).await;
        self.take_cookies(&reply);
        reply
    }

    /// Fills in the login form of `page` and submits it.
    async fn log_in(&mut self, app: &App, page: &Reply, user: &str, password: &str) -> Reply {
        let mut fields = hidden_fields(page);
        fields.push(("username".to_owned(), user.to_owned()));
        fields.push(("password".to_owned(), password.to_owned()));
        self.post(app, "/authorize/login", &fields).await
    }

    /// Signs alice in (with the form unless the browser's SSO session
    /// answers): the code's redirect.
    async fn sign_in(&mut self, app: &App, query: &str) -> Reply {
        let page = self.get(app, query).await;
        if page.status == StatusCode::SEE_OTHER {
            return page;
        }
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let reply = self.log_in(app, &page, "alice", "correct horse").await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
        reply
    }
}

/// The hidden fields of a page's form, unescaped, in order.
fn hidden_fields(page: &Reply) -> Vec<(String, String)> {
    let html = page.text();
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|rest| {
            let attr = |name: &str| {
                let start = rest.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let end = start + rest[start..].find('"').unwrap();
                html_unescape(&rest[start..end])
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The query parameters of a redirect's `Location`.
fn location_params(reply: &Reply) -> HashMap<String, String> {
    let location = reply.header(header::LOCATION);
    let query = location.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

impl App {
    /// Redeems `code` as [`SPA`] would.
    async fn redeem(&self, client: &str, code: &str, verifier: &str) -> Reply {
        self.form(
            "/token",
            &format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}\
                 &code_verifier={verifier}&client_id={client}",
                enc(REDIRECT)
            ),
        )
        .await
    }

    async fn userinfo(&self, token: &str) -> Reply {
        self.send(
            Request::get("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
}

/// Signs alice in to [`SPA`] and redeems the code: the token response.
async fn tokens(app: &App, browser: &mut Browser) -> Value {
    let reply = browser.sign_in(app, &authorize_query(SPA, "")).await;
    let code = location_params(&reply)["code"].clone();
    let tokens = app.redeem(SPA, &code, VERIFIER).await;
    assert_eq!(tokens.status, StatusCode::OK, "{:?}", tokens.body);
    tokens.body
}
