//! The one error type of the fetchers. It is `Clone` so that a shared, per-run result (one HTTP
//! call used by every region of a global API) can hand the same failure to every region.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum FetchError {
    /// The server answered with a status we do not retry, or retries ran out.
    #[error("{url}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Http { url: String, status: u16, body: String },
    /// Connection refused, reset, DNS, timeout… after retries.
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    /// The payload does not have the documented shape (bad JSON, missing column, bad number…).
    #[error("malformed {what}: {message}")]
    Malformed { what: String, message: String },
    /// Credentials are missing or refused for a call that needs them.
    #[error("{provider}: credentials: {message}")]
    Auth { provider: String, message: String },
    /// A provider API call failed (SDK error, GraphQL error…).
    #[error("{provider}: {message}")]
    Api { provider: String, message: String },
    /// Bad configuration: unknown cloud, bad endpoint URL, unreadable config file.
    #[error("config: {0}")]
    Config(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// Reading or writing the catalog failed.
    #[error("catalog: {0}")]
    Catalog(String),
    /// The validation guard refused to publish (e.g. a row-count drop without --force).
    #[error("refused to publish {cloud}: {reason}")]
    Refused { cloud: String, reason: String },
}

impl FetchError {
    pub fn malformed(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        FetchError::Malformed { what: what.into(), message: message.to_string() }
    }
    pub fn api(provider: impl Into<String>, message: impl std::fmt::Display) -> Self {
        FetchError::Api { provider: provider.into(), message: message.to_string() }
    }
    pub fn io(path: impl AsRef<std::path::Path>, err: impl std::fmt::Display) -> Self {
        FetchError::Io { path: path.as_ref().display().to_string(), message: err.to_string() }
    }
}
