//! Where skycat keeps user state: `$SKYCAT_HOME`, by default `~/.skycat`.

use std::path::{Path, PathBuf};

use crate::error::{CatalogError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkycatHome {
    pub root: PathBuf,
}

impl SkycatHome {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SkycatHome { root: root.into() }
    }

    /// `$SKYCAT_HOME`, else `$HOME/.skycat`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os("SKYCAT_HOME").filter(|v| !v.is_empty()) {
            return Ok(SkycatHome::new(dir));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| CatalogError::Invalid("neither SKYCAT_HOME nor HOME is set".into()))?;
        Ok(SkycatHome::new(Path::new(&home).join(".skycat")))
    }

    /// User catalogs: `<cloud>.parquet` and `manifest.json`.
    pub fn catalogs_dir(&self) -> PathBuf {
        self.root.join("catalogs")
    }

    /// One Parquet snapshot per fetch: `history/<cloud>/<timestamp>.parquet`.
    pub fn history_dir(&self) -> PathBuf {
        self.root.join("history")
    }

    /// Controller state (SQLite, known_hosts, keys).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The user's configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.yaml")
    }
}
