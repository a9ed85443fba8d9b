//! Dashboard sessions: an API token in an HttpOnly, SameSite=Strict cookie.
//!
//! - The login page takes a token, checks it with the service's [`TokenVerifier`] and sets the
//!   cookie; every page checks the cookie's token the same way the API checks a bearer token
//!   (revocation included), and the page's caller is that token's [`Principal`].
//! - CSRF: SameSite=Strict keeps the cookie off cross-site requests in current browsers; every
//!   POST must also carry an `Origin` (or, failing that, `Referer`) of this very host, and POSTs
//!   made with the cookie a `csrf` field equal to a digest of the session's token, which a
//!   foreign page cannot compute.
//! - Without a token checker (a server embedded with no tokens at all) the pages are open.
//!
//! [`TokenVerifier`]: crate::auth::TokenVerifier

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::html::{self, esc};
use crate::auth::Principal;
use crate::extract::QueryPairs;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "skycat_session";

/// The caller of a dashboard page, in the request's extensions.
#[derive(Debug, Clone)]
pub struct Session {
    /// None when the server has no token checker (open dashboard).
    pub principal: Option<Principal>,
    /// The value POST forms must echo in their `csrf` field ("" without a session).
    pub csrf: String,
}

/// The CSRF token of a session: a digest of its API token, so it needs no server-side storage
/// and changes with the token.
pub fn csrf_token(api_token: &str) -> String {
    let digest = Sha256::digest(format!("skycat-dashboard-csrf\0{api_token}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's token, if the request has one.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(';') {
            if let Some((k, val)) = part.trim().split_once('=') {
                if k.trim() == COOKIE && !val.trim().is_empty() {
                    return Some(val.trim().to_owned());
                }
            }
        }
    }
    None
}

/// Whether a state-changing request comes from a page of this server: its `Origin` (or, when a
/// browser sent none, its `Referer`) names the host the request was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let matches = |url: &str| {
        ["http://", "https://"].iter().any(|scheme| {
            url.strip_prefix(scheme).is_some_and(|rest| rest == host || rest.starts_with(&format!("{host}/")))
        })
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(matches);
    }
    headers.get(header::REFERER).and_then(|v| v.to_str().ok()).is_some_and(matches)
}

fn forbidden_cross_site() -> Response {
    html::error_page(
        StatusCode::FORBIDDEN,
        "Refused",
        "this form was not sent from a page of this server (its Origin does not match); reload the page and try again",
    )
}

/// Where to send the browser after login: a path on this server, never another site.
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn to_login(next: &str) -> Response {
    redirect(&format!("/ui/login?{}", html::query(&[("next", next)])))
}

/// Lets a page's request through with its [`Session`]; sends a browser without a live session
/// to the login page, and refuses a cross-site POST.
pub async fn require_session(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let is_post = req.method() != Method::GET && req.method() != Method::HEAD;
    if is_post && !same_origin(req.headers()) {
        return forbidden_cross_site();
    }
    let Some(auth) = state.config.auth.clone() else {
        req.extensions_mut().insert(Session { principal: None, csrf: String::new() });
        return next.run(req).await;
    };
    let here = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let back = if is_post { "/".to_owned() } else { here };
    let Some(token) = cookie_token(req.headers()) else {
        return to_login(&back);
    };
    match auth.verifier.verify(&token).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(Session { principal: Some(principal), csrf: csrf_token(&token) });
            next.run(req).await
        }
        Ok(None) => {
            let mut resp = to_login(&back);
            resp.headers_mut().insert(header::SET_COOKIE, clear_cookie());
            resp
        }
        Err(e) => html::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            &format!("cannot check the session's token: {e}"),
        ),
    }
}

/// Whether a POST form's `csrf` field matches the session.
pub fn csrf_ok(session: &Session, form: &[(String, String)]) -> bool {
    session.principal.is_none() || html::param(form, "csrf") == session.csrf
}

pub fn forbidden_csrf() -> Response {
    html::error_page(
        StatusCode::FORBIDDEN,
        "Refused",
        "this form's CSRF token does not match your session; reload the page and try again",
    )
}

/// A form body's fields.
pub fn form_fields(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn set_cookie(token: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}")).ok()
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("skycat_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn login_page(status: StatusCode, next: &str, message: Option<&str>, open: bool) -> Response {
    let alert = message.map(html::alert).unwrap_or_default();
    let body = if open {
        "<p>This server has no API tokens: the dashboard is open. <a href=\"/\">Go to the GPU prices</a>.</p>".to_owned()
    } else {
        format!(
            "{alert}<form class=\"login\" method=\"post\" action=\"/ui/login\">\
             <input type=\"hidden\" name=\"next\" value=\"{next}\">\
             <label for=\"token\">API token</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"hint\">Create a token with <code>skycat serve token create NAME</code>; \
             the one <code>skycat serve</code> made at its first start is in <code>$SKYCAT_HOME/credentials</code>. \
             It is kept in a cookie scripts cannot read.</p>",
            next = esc(safe_next(next)),
        )
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign in · skycat</title><link rel=\"icon\" href=\"/ui/assets/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/ui/assets/dashboard.css\"></head>\
         <body><main id=\"main\" class=\"narrow\"><h1>Sign in to skycat</h1>{body}</main></body></html>\n"
    );
    html::respond(status, html)
}

/// `GET /ui/login`.
pub async fn login_form(State(state): State<Arc<AppState>>, QueryPairs(pairs): QueryPairs) -> Response {
    login_page(StatusCode::OK, html::param(&pairs, "next"), None, state.config.auth.is_none())
}

/// `POST /ui/login`: checks the token and sets the session cookie.
pub async fn login(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers) {
        return forbidden_cross_site();
    }
    let form = form_fields(&body);
    let next = safe_next(html::param(&form, "next")).to_owned();
    let Some(auth) = state.config.auth.clone() else {
        return redirect(&next);
    };
    let token = html::param(&form, "token");
    if token.is_empty() {
        return login_page(StatusCode::UNAUTHORIZED, &next, Some("token: enter an API token"), false);
    }
    // A token goes back in a cookie: one with characters a cookie cannot carry is no token of ours.
    if !token.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\')) {
        return login_page(StatusCode::UNAUTHORIZED, &next, Some("token: unknown or revoked API token"), false);
    }
    match auth.verifier.verify(token).await {
        Ok(Some(_)) => {
            let secure = headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|o| o.starts_with("https://"));
            let mut resp = redirect(&next);
            if let Some(c) = set_cookie(token, secure) {
                resp.headers_mut().insert(header::SET_COOKIE, c);
            }
            resp
        }
        Ok(None) => login_page(StatusCode::UNAUTHORIZED, &next, Some("token: unknown or revoked API token"), false),
        Err(e) => login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &next,
            Some(&format!("cannot check the token: {e}")),
            false,
        ),
    }
}

/// `POST /ui/logout`: forgets the cookie.
pub async fn logout(axum::Extension(session): axum::Extension<Session>, body: Bytes) -> Response {
    if !csrf_ok(&session, &form_fields(&body)) {
        return forbidden_csrf();
    }
    let mut resp = redirect("/ui/login");
    resp.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origin_must_name_this_host() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[("host", "h:1"), ("origin", "https://h:1")])));
        assert!(!same_origin(&headers(&[("host", "h:1"), ("origin", "http://evil.example")])));
        assert!(!same_origin(&headers(&[("host", "h:1"), ("origin", "http://h:1.evil.example")])));
        assert!(!same_origin(&headers(&[("host", "h:1"), ("origin", "null")])));
        // No Origin: the Referer decides; neither: refused.
        assert!(same_origin(&headers(&[("host", "h:1"), ("referer", "http://h:1/ui/plan")])));
        assert!(!same_origin(&headers(&[("host", "h:1"), ("referer", "http://h:10/ui/plan")])));
        assert!(!same_origin(&headers(&[("host", "h:1")])));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; skycat_session=tok_123 ; b=2")]);
        assert_eq!(cookie_token(&h).as_deref(), Some("tok_123"));
        assert_eq!(cookie_token(&headers(&[("cookie", "skycat_session=")])), None);
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next("/ui/plan?x=1"), "/ui/plan?x=1");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
    }

    #[test]
    fn csrf_token_depends_on_the_session() {
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a").len(), 32);
    }
}
