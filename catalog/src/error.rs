//! The catalog's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: column `{column}`: {message}")]
    Column { path: PathBuf, column: String, message: String },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Row { path: PathBuf, line: usize, field: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CatalogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CatalogError::Io { path: path.into(), source }
    }
    pub(crate) fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        CatalogError::File { path: path.into(), message: message.to_string() }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
