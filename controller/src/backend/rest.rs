//! Small helpers the REST backends (GCP, Azure, Lambda Cloud) share for their error lines.

/// reqwest's error text without the URL: the call is named once, by the caller, and error lines
/// stay short.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    if e.is_timeout() {
        s.push_str(" (timed out)");
    }
    s
}

/// The start of a response body, on one line (at most 200 characters).
pub(crate) fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 200 {
        format!("{}…", one.chars().take(200).collect::<String>())
    } else {
        one
    }
}
