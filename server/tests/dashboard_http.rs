//! The dashboard's auth and CSRF rules over plain HTTP (no browser): what a foreign page, a
//! script without the cookie, or a stale cookie gets.

#![cfg(feature = "fetch")]

mod browser;
mod common;

use browser::TOKEN;
use reqwest::redirect::Policy;
use skycat_server::dashboard::session::csrf_token;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(Policy::none()).build().unwrap()
}

fn cookie() -> String {
    format!("skycat_session={TOKEN}")
}

#[tokio::test]
async fn pages_need_a_session_and_give_no_data_without_one() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let c = client();
    for page in ["/", "/ui/status", "/ui/plan", "/ui/cheapest", "/ui/history", "/ui/price?cloud=aws&instance_type=p4d.24xlarge&region=us-east-1"] {
        let r = c.get(server.url(page)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{page}");
        let to = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(to.starts_with("/ui/login?next="), "{page} → {to}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("p4d") && !body.contains("<table"), "{page} leaked data: {body}");
        // A revoked (unknown) token is no better, and its cookie is cleared.
        let r = c.get(server.url(page)).header("cookie", "skycat_session=revoked").send().await.unwrap();
        assert_eq!(r.status(), 303, "{page}");
        assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    }
    // With the cookie: the page, with the dashboard's security headers.
    let r = c.get(server.url("/ui/status")).header("cookie", cookie()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.text().await.unwrap().contains("id=\"status-table\""));
    // The JSON API is unchanged: a bearer token, never the cookie.
    let r = c.get(server.url("/catalog/status")).header("cookie", cookie()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn login_sets_an_httponly_strict_cookie_and_refuses_foreign_origins() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let c = client();
    let host = server.base.trim_start_matches("http://").to_owned();
    let form = format!("token={TOKEN}&next=%2Fui%2Fstatus");
    let r = c
        .post(server.url("/ui/login"))
        .header("origin", format!("http://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/status");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    // A foreign page posting the same form is refused, and so is one with no Origin at all.
    for origin in [Some("http://evil.example"), None] {
        let mut req = c.post(server.url("/ui/login")).header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.body(form.clone()).send().await.unwrap();
        assert_eq!(r.status(), 403, "origin {origin:?}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    // A wrong token: the login page again, 401, as HTML (not rewritten to the API's JSON).
    let r = c
        .post(server.url("/ui/login"))
        .header("origin", format!("http://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("unknown or revoked API token"));
    // `next` never leaves the server.
    let r = c
        .post(server.url("/ui/login"))
        .header("origin", format!("http://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}&next=%2F%2Fevil.example%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
    server.stop().await;
}

#[tokio::test]
async fn a_post_with_the_cookie_needs_the_csrf_token_and_this_origin() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let c = client();
    let origin = server.base.clone();
    let task = "task=resources%3A%0A++accelerators%3A+A100%3A8%0A";
    let post = |csrf: &str, origin: &str| {
        c.post(server.url("/ui/plan"))
            .header("cookie", cookie())
            .header("origin", origin.to_owned())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{task}&csrf={csrf}"))
            .send()
    };
    let good = csrf_token(TOKEN);
    let r = post("", &origin).await.unwrap();
    assert_eq!(r.status(), 403, "no CSRF token");
    let r = post(&csrf_token("another-token"), &origin).await.unwrap();
    assert_eq!(r.status(), 403, "another session's CSRF token");
    let r = post(&good, "http://evil.example").await.unwrap();
    assert_eq!(r.status(), 403, "a foreign origin");
    let r = post(&good, &origin).await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"chosen\""), "{body}");
    // The page carries that very token in its forms.
    let page = c.get(server.url("/ui/plan")).header("cookie", cookie()).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("name=\"csrf\" value=\"{good}\"")));
    // Logging out is a POST too.
    let r = c.post(server.url("/ui/logout")).header("cookie", cookie()).header("origin", origin.clone()).body("").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(server.url("/ui/logout"))
        .header("cookie", cookie())
        .header("origin", origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    server.stop().await;
}

#[tokio::test]
async fn assets_are_embedded_and_served_with_their_types() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let c = client();
    for (name, ctype, _) in skycat_server::dashboard::ASSETS {
        let r = c.get(server.url(&format!("/ui/assets/{name}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.headers()["content-type"].to_str().unwrap(), *ctype);
    }
    let r = c.get(server.url("/ui/assets/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Every asset a page links is embedded (nothing from another host).
    let page = c.get(server.url("/")).header("cookie", cookie()).send().await.unwrap().text().await.unwrap();
    for link in page.split("src=\"").skip(1).chain(page.split("href=\"").skip(1)) {
        let url = link.split('"').next().unwrap();
        assert!(!url.starts_with("http") && !url.starts_with("//"), "external asset {url}");
    }
    server.stop().await;
}

/// gunzip of a response body.
fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("a gzip body");
    out
}

#[tokio::test]
async fn pages_and_assets_are_compressed_for_browsers_that_accept_it() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let c = client();
    let get = |path: &str, encoding: Option<&str>| {
        let mut req = c.get(server.url(path)).header("cookie", cookie());
        if let Some(e) = encoding {
            req = req.header("accept-encoding", e);
        }
        req.send()
    };
    for (name, _, body) in skycat_server::dashboard::ASSETS {
        let path = format!("/ui/assets/{name}");
        // gzip: a smaller body that decodes to the embedded asset, and caches keyed on the encoding.
        let r = get(&path, Some("gzip")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-encoding"], "gzip", "{path}");
        assert!(r.headers()["vary"].to_str().unwrap().to_ascii_lowercase().contains("accept-encoding"), "{path}");
        let gz = r.bytes().await.unwrap();
        assert_eq!(gunzip(&gz), body.as_bytes(), "{path}: the gzip body decodes to the asset");
        assert!(gz.len() < body.len() && gz.len() < 300 * 1024, "{path}: {} B gzip of {} B", gz.len(), body.len());
        // Brotli when preferred; the plain asset to a client that accepts neither.
        let r = get(&path, Some("br;q=1.0, gzip;q=0.5")).await.unwrap();
        assert_eq!(r.headers()["content-encoding"], "br", "{path}");
        assert!(r.bytes().await.unwrap().len() < body.len(), "{path}");
        let r = get(&path, None).await.unwrap();
        assert!(r.headers().get("content-encoding").is_none(), "{path}");
        assert_eq!(r.bytes().await.unwrap(), body.as_bytes(), "{path}");
    }
    // A page: the gzip body decodes to the very page sent uncompressed.
    let plain = get("/ui/plan", None).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.text().await.unwrap();
    let r = get("/ui/plan", Some("gzip, deflate, br;q=0.1")).await.unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let gz = r.bytes().await.unwrap();
    assert_eq!(String::from_utf8(gunzip(&gz)).unwrap(), plain);
    assert!(gz.len() * 2 < plain.len(), "{} B gzip of a {} B page", gz.len(), plain.len());
    assert!(plain.contains("Clusters and jobs"), "the navigation names page 5");
    server.stop().await;
}
