//! `manifest.json`: per cloud, where the rows came from, when, how many, and their checksum.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::fsutil::write_atomic;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudManifest {
    pub cloud: String,
    /// The API, URL or file (with version) the rows came from.
    pub source: String,
    /// The date the prices are valid for, or the source's version id where it records no date.
    pub as_of: String,
    /// When skycat produced this file.
    pub fetched_at: DateTime<Utc>,
    pub rows: usize,
    /// SHA-256 of the Parquet file.
    pub sha256: String,
    #[serde(default)]
    pub regions_ok: Vec<String>,
    #[serde(default)]
    pub regions_failed: Vec<String>,
    /// Regions whose rows were kept from an earlier fetch because this one failed for them.
    #[serde(default)]
    pub stale_regions: Vec<String>,
    /// Free-form remarks (skipped rows and why, flagged prices).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub clouds: BTreeMap<String, CloudManifest>,
}

impl Manifest {
    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| CatalogError::file(path, format!("invalid manifest: {e}")))
    }

    /// Load a manifest; a missing file is an empty manifest.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_json(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(CatalogError::io(path, e)),
        }
    }

    pub fn save_atomic(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| CatalogError::file(path, format!("cannot encode manifest: {e}")))?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }
}
