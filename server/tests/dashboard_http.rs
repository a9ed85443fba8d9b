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

/// A response as it came over the wire: (status, headers lower-cased, body after any chunked
/// transfer coding, content coding untouched).
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// GET over a plain HTTP/1.1 connection: reqwest, with the decoders other crates of the
/// workspace enable, would undo the very compression under test.
fn raw_get(base: &str, path: &str, cookie: &str, encoding: Option<&str>) -> Raw {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    let accept = encoding.map(|e| format!("Accept-Encoding: {e}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n{accept}Connection: close\r\n\r\n").expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    let mut rest = &resp[split + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).split(';').next().unwrap().trim(), 16).expect("chunk size");
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    Raw { status, headers, body }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_assets_are_compressed_for_browsers_that_accept_it() {
    let home = tempfile::tempdir().unwrap();
    let server = browser::start_server(home.path()).await;
    let base = server.base.clone();
    let get = move |path: String, encoding: Option<&'static str>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || raw_get(&base, &path, &cookie(), encoding))
    };
    for (name, _, body) in skycat_server::dashboard::ASSETS {
        let path = format!("/ui/assets/{name}");
        // gzip: a smaller body that decodes to the embedded asset, and caches keyed on the encoding.
        let r = get(path.clone(), Some("gzip")).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}: {:?}", r.headers);
        assert!(r.header("vary").unwrap_or("").to_ascii_lowercase().contains("accept-encoding"), "{path}");
        assert_eq!(gunzip(&r.body), body.as_bytes(), "{path}: the gzip body decodes to the asset");
        assert!(r.body.len() < body.len() && r.body.len() < 300 * 1024, "{path}: {} B gzip of {} B", r.body.len(), body.len());
        // Brotli when preferred; the plain asset to a client that accepts neither.
        let r = get(path.clone(), Some("br")).await.unwrap();
        assert_eq!(r.header("content-encoding"), Some("br"), "{path}");
        assert!(r.body.len() < body.len(), "{path}");
        let r = get(path.clone(), None).await.unwrap();
        assert_eq!(r.header("content-encoding"), None, "{path}");
        assert_eq!(r.body, body.as_bytes(), "{path}");
    }
    // A page: the gzip body decodes to the very page sent uncompressed.
    let plain = get("/ui/plan".into(), None).await.unwrap();
    assert_eq!((plain.status, plain.header("content-encoding")), (200, None));
    let plain = String::from_utf8(plain.body).unwrap();
    let r = get("/ui/plan".into(), Some("gzip, deflate")).await.unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(String::from_utf8(gunzip(&r.body)).unwrap(), plain);
    assert!(r.body.len() * 2 < plain.len(), "{} B gzip of a {} B page", r.body.len(), plain.len());
    assert!(plain.contains("Clusters and jobs"), "the navigation names page 5");
    server.stop().await;
}
