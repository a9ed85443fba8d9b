//! HTML building blocks shared by the pages: escaping, the page shell, number formats, links.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::session::Session;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query string (without `?`) from pairs, skipping empty values.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    s.finish()
}

/// USD per hour as the dashboard shows prices: `$4.0966`.
pub fn usd(x: f64) -> String {
    format!("${x:.4}")
}

/// A whole sum: `$12.34`.
pub fn usd2(x: f64) -> String {
    format!("${x:.2}")
}

/// `3` for whole numbers, `0.5` otherwise.
pub fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `3 h`, `2 d` …: an age in seconds, roughly.
pub fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    }
}

/// The pages of the navigation bar: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/", "GPU prices"),
    ("/ui/cheapest", "Where is it cheapest"),
    ("/ui/history", "Price history"),
    ("/ui/plan", "Plan"),
    ("/ui/status", "Catalog status"),
    ("/ui/jobs", "Clusters and jobs"),
];

/// A whole page: head, navigation (with `active` marked), `body` under an `<h1>` of `title`.
pub fn page(title: &str, active: &str, session: &Session, body: &str) -> Response {
    let mut nav = String::new();
    for (path, label) in NAV {
        let current = if *path == active { " aria-current=\"page\"" } else { "" };
        nav.push_str(&format!("<li><a href=\"{path}\"{current}>{}</a></li>", esc(label)));
    }
    let account = match &session.principal {
        Some(p) => format!(
            "<form class=\"logout\" method=\"post\" action=\"/ui/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <span class=\"who\">{}</span> <button type=\"submit\">Sign out</button></form>",
            esc(&session.csrf),
            esc(&p.name)
        ),
        None => String::new(),
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · skycat</title>\
         <link rel=\"icon\" href=\"/ui/assets/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/ui/assets/dashboard.css\">\
         <script src=\"/ui/assets/dashboard.js\" defer></script></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><span class=\"brand\">skycat</span><nav aria-label=\"Dashboard pages\"><ul>{nav}</ul></nav>{account}</header>\
         <main id=\"main\"><h1>{t}</h1>\n{body}\n</main></body></html>\n",
        t = esc(title),
    );
    respond(StatusCode::OK, html)
}

/// An HTML response with the dashboard's security headers.
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

/// A bare page for errors outside a session (a refused POST, an unknown asset).
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · skycat</title><link rel=\"icon\" href=\"/ui/assets/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/ui/assets/dashboard.css\"></head>\
         <body><main id=\"main\"><h1>{t}</h1><p class=\"error\" role=\"alert\">{m}</p>\
         <p><a href=\"/\">Back to the dashboard</a></p></main></body></html>\n",
        t = esc(title),
        m = esc(message),
    );
    respond(status, html)
}

/// An error message box inside a page.
pub fn alert(message: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message))
}

/// `<option>`s of `choices` (value, label) with `selected` marked.
pub fn options(choices: &[(String, String)], selected: &str) -> String {
    let mut s = String::new();
    for (v, label) in choices {
        let sel = if v == selected { " selected" } else { "" };
        s.push_str(&format!("<option value=\"{}\"{sel}>{}</option>", esc(v), esc(label)));
    }
    s
}

/// The value of the last pair named `name`, trimmed, or "".
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    raw_param(pairs, name).trim()
}

/// The value of the last pair named `name` as sent (a YAML document keeps its newlines), or "".
pub fn raw_param<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn formats() {
        assert_eq!(usd(32.7726 / 8.0), "$4.0966");
        assert_eq!(num(8.0), "8");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(age(90), "90 s");
        assert_eq!(age(3 * 3600), "3 h");
        assert_eq!(age(5 * 86400), "5 d");
        assert_eq!(query(&[("a", "x y"), ("b", ""), ("c", "&")]), "a=x+y&c=%26");
    }
}
