//! Object storage for skycat, shared by the node agent (`skycat-agent objects copy|mount`) and the
//! CLI (SkyPilot storage objects: buckets skycat creates, fills and deletes).
//!
//! * [`Source`]: a bucket URL as SkyPilot writes it (`s3://`, `gs://`, `r2://`, Azure
//!   `https://ACCOUNT.blob.core.windows.net/CONTAINER`), validated;
//! * [`Env`]: credentials and endpoints, from the environment only, with a [`Redactor`] for
//!   every message that could carry them;
//! * [`stores`]: one `object_store` client per source;
//! * [`buckets`]: the bucket-level calls object_store does not make (create, delete, exists);
//! * [`upload`]: a local file or folder into a bucket prefix;
//! * [`catalog_store`]: price catalogs published to a bucket prefix for several `skycat serve`
//!   replicas (immutable versions, a manifest swapped with a conditional put).
//!
//! No credential is ever taken from argv, logged, or left in an error message.

pub mod buckets;
pub mod catalog_store;
pub mod describe;
mod env;
mod source;
pub mod stores;
pub mod upload;

pub use env::{Env, Redactor};
pub use source::{Scheme, Source};

use std::path::Path;

/// What can go wrong; every message is one line, names the bucket/key or the path concerned,
/// and carries no credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad source {text:?}: {why}")]
    BadSource { text: String, why: String },
    #[error("{0}")]
    Config(String),
    #[error("--env-stdin: {0}")]
    EnvStdin(String),
    #[error("{url}: {msg}")]
    Store { url: String, msg: String },
    #[error("refusing object {url}: {why} (it would be written outside {dest})")]
    UnsafeKey { url: String, why: String, dest: String },
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{0}")]
    Mount(String),
}

impl Error {
    pub fn io(path: &Path, e: impl std::fmt::Display) -> Error {
        Error::Io { path: path.display().to_string(), msg: one_line(&e.to_string()) }
    }

    pub(crate) fn store(src: &Source, msg: impl Into<String>) -> Error {
        Error::Store { url: src.url(), msg: msg.into() }
    }
}

/// What a copy or an upload moved.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TransferStats {
    pub files: u64,
    pub bytes: u64,
    /// Files left alone because they were already up to date (same size; not older).
    pub skipped: u64,
    pub seconds: f64,
}

/// Joins a multi-line message into one line and caps its length (server error bodies can be
/// long XML documents).
pub fn one_line(s: &str) -> String {
    let mut out = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 400 {
        let mut cut = 400;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}
