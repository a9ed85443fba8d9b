//! SkyPilot storage objects: a bucket skycat creates, fills from local sources and, unless it is
//! `persistent`, deletes when the cluster that made it goes down.
//!
//! ```yaml
//! file_mounts:
//!   /ckpt:
//!     name: my-ckpts          # the bucket (container for Azure)
//!     store: s3               # s3 | gcs | r2 | azure; default: the cluster's cloud's store
//!     source: ./checkpoints   # optional: a local folder or file, or a list of them
//!     persistent: false       # delete it on `skycat down` (default true)
//!     mode: MOUNT             # COPY | MOUNT | MOUNT_CACHED (default MOUNT)
//! ```
//!
//! The bucket is made and filled from the machine running `skycat launch`, with that machine's
//! credentials (the same ones the nodes get for the mount). Every storage object is recorded in
//! the state DB (table `storage`) with those credentials sealed ([`crate::secret_box`]), so that
//! `skycat down` and `skycat storage delete` can remove it later; `skycat storage ls` lists them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use skycat_objects::buckets::{self, Created};
use skycat_objects::{stores, upload, Env, Source};
use sqlx::Row;

use crate::home::Home;
use crate::secret_box::SecretBox;
use crate::store::Store;

/// The object stores a storage object can be made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    S3,
    Gcs,
    R2,
    Azure,
}

impl StoreKind {
    pub fn parse(s: &str) -> Option<StoreKind> {
        match s.to_ascii_lowercase().as_str() {
            "s3" => Some(StoreKind::S3),
            "gcs" => Some(StoreKind::Gcs),
            "r2" => Some(StoreKind::R2),
            "azure" => Some(StoreKind::Azure),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::S3 => "s3",
            StoreKind::Gcs => "gcs",
            StoreKind::R2 => "r2",
            StoreKind::Azure => "azure",
        }
    }

    /// SkyPilot's default: the store of the cluster's cloud; S3 for clouds without one.
    pub fn for_cloud(cloud: &str) -> StoreKind {
        match cloud {
            "gcp" => StoreKind::Gcs,
            "azure" => StoreKind::Azure,
            "cloudflare" => StoreKind::R2,
            _ => StoreKind::S3,
        }
    }

    /// The bucket URL of `name` in this store. Azure needs the storage account:
    /// `AZURE_STORAGE_ACCOUNT`, a connection string's `AccountName`, or the emulator's account.
    pub fn url(self, name: &str, env: &Env) -> Result<String> {
        Ok(match self {
            StoreKind::S3 => format!("s3://{name}"),
            StoreKind::Gcs => format!("gs://{name}"),
            StoreKind::R2 => format!("r2://{name}"),
            StoreKind::Azure => {
                let conn = env.get("AZURE_STORAGE_CONNECTION_STRING").map(stores::parse_connection_string).unwrap_or_default();
                let account = env
                    .get("AZURE_STORAGE_ACCOUNT")
                    .map(str::to_string)
                    .or(conn.account)
                    .or_else(|| (env.flag("AZURE_STORAGE_USE_EMULATOR") || conn.dev_storage).then(|| stores::AZURITE_ACCOUNT.to_string()))
                    .ok_or_else(|| anyhow!("store azure: set AZURE_STORAGE_ACCOUNT (the storage account the container {name} goes in)"))?;
                format!("https://{account}.blob.core.windows.net/{name}")
            }
        })
    }
}

/// A `file_mounts` entry with `name:`: a bucket skycat makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageObject {
    pub name: String,
    /// `None`: the cluster's cloud's store, chosen at launch.
    pub store: Option<StoreKind>,
    /// Local files or folders uploaded into it: a folder's contents go to the bucket's root when
    /// it is the only source, under the folder's name when there are several; a file goes to
    /// the root under its own name.
    pub sources: Vec<PathBuf>,
    pub persistent: bool,
}

/// A storage object as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct StorageRow {
    pub name: String,
    pub store: String,
    pub url: String,
    pub region: Option<String>,
    pub sources: Vec<String>,
    pub persistent: bool,
    /// The cluster that last used it.
    pub cluster: Option<String>,
    /// READY, or UPLOAD_FAILED (the bucket exists; its contents may be partial).
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

const SEAL_PURPOSE: &str = "storage-env:";

/// Where the cluster runs, for the store and region a new bucket gets.
pub struct Placement<'a> {
    pub cluster: &'a str,
    pub cloud: &'a str,
    pub region: Option<&'a str>,
}

/// The credentials as seen from this machine: `{controller_ip}` (an endpoint on the controller's
/// machine, written for the nodes) is loopback here.
pub fn local_env(env: &BTreeMap<String, String>) -> Env {
    Env::from_map(env.iter().map(|(k, v)| (k.clone(), v.replace("{controller_ip}", "127.0.0.1"))).collect())
}

/// Makes the bucket if it is missing, uploads the sources, records it; returns its URL.
pub async fn ensure(db: &Store, home: &Home, obj: &StorageObject, at: &Placement<'_>, env: &BTreeMap<String, String>) -> Result<String> {
    let local = local_env(env);
    let recorded = db.storage_row(&obj.name).await?;
    let kind = match (obj.store, &recorded) {
        (Some(k), Some(r)) if k.as_str() != r.store => {
            bail!("storage {}: already recorded in store {}; this task says {}", obj.name, r.store, k.as_str())
        }
        (Some(k), _) => k,
        (None, Some(r)) => StoreKind::parse(&r.store).unwrap_or(StoreKind::S3),
        (None, None) => StoreKind::for_cloud(at.cloud),
    };
    let url = kind.url(&obj.name, &local)?;
    let src = Source::parse(&url).map_err(|e| anyhow!("storage {}: {e}", obj.name))?;
    // A new bucket goes in the cluster's region when it is on the store's own cloud.
    let region = match kind {
        StoreKind::S3 if at.cloud == "aws" => at.region.map(str::to_string),
        StoreKind::Gcs if at.cloud == "gcp" => at.region.map(str::to_string),
        _ => None,
    };
    let created = buckets::create(&src, &local, region.as_deref()).await.map_err(|e| anyhow!("storage {}: {e}", obj.name))?;
    if created == Created::New {
        tracing::info!(storage = %obj.name, url = %url, "created bucket");
    }
    let sealed = SecretBox::load(home)
        .context("storage: the key that seals its credentials")?
        .seal(serde_json::to_string(env)?.as_bytes(), &format!("{SEAL_PURPOSE}{}", obj.name))?;
    let sources: Vec<String> = obj.sources.iter().map(|p| p.display().to_string()).collect();
    let row = StorageRow {
        name: obj.name.clone(),
        store: kind.as_str().to_string(),
        url: url.clone(),
        region: region.clone(),
        sources,
        // A bucket that existed before (made elsewhere) is never deleted by skycat.
        persistent: obj.persistent || (created == Created::Existed && recorded.is_none()),
        cluster: Some(at.cluster.to_string()),
        status: "UPLOADING".into(),
        created_at: recorded.as_ref().map(|r| r.created_at.clone()).unwrap_or_else(now),
        updated_at: now(),
    };
    db.put_storage(&row, &sealed).await?;
    let store = stores::build(&src, &local).await.map_err(|e| anyhow!("storage {}: {e}", obj.name))?;
    for path in &obj.sources {
        let meta = std::fs::metadata(path).with_context(|| format!("storage {}: source {}", obj.name, path.display()))?;
        // Several folders: each under its own name, as SkyPilot does.
        let dst = if meta.is_dir() && obj.sources.len() > 1 {
            let base = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow!("storage {}: {} has no UTF-8 name", obj.name, path.display()))?;
            Source::parse(&format!("{url}/{base}")).map_err(|e| anyhow!("storage {}: {e}", obj.name))?
        } else {
            src.clone()
        };
        let st = upload::upload(store.clone(), path, &dst, 16).await;
        let st = match st {
            Ok(st) => st,
            Err(e) => {
                db.set_storage_status(&obj.name, "UPLOAD_FAILED").await?;
                bail!("storage {}: {e}", obj.name);
            }
        };
        tracing::info!(storage = %obj.name, files = st.files, bytes = st.bytes, skipped = st.skipped, "uploaded {}", path.display());
    }
    db.set_storage_status(&obj.name, "READY").await?;
    Ok(url)
}

/// Deletes a recorded storage object's bucket (its objects first) and its record. The sealed
/// credentials are used, overlaid by `overrides` (this machine's, when they are set).
pub async fn delete(db: &Store, home: &Home, name: &str, overrides: impl Fn(&str) -> Option<String>) -> Result<Option<u64>> {
    let row = db.storage_row(name).await?.ok_or_else(|| anyhow!("storage {name}: no such storage object (see skycat storage ls)"))?;
    let mut env: BTreeMap<String, String> = match db.storage_sealed_env(name).await? {
        Some(sealed) => {
            let plain = SecretBox::load(home)?.open(&sealed, &format!("{SEAL_PURPOSE}{name}"))?;
            serde_json::from_slice(&plain).context("storage: sealed credentials")?
        }
        None => BTreeMap::new(),
    };
    let kind = StoreKind::parse(&row.store).unwrap_or(StoreKind::S3);
    for k in super::credential_env_names(kind.as_str()) {
        if let Some(v) = overrides(k).filter(|v| !v.is_empty()) {
            env.insert(k.to_string(), v);
        }
    }
    let mut local = local_env(&env);
    if kind == StoreKind::S3 {
        if let Some(r) = &row.region {
            local = local.with("AWS_REGION", r);
        }
    }
    let src = Source::parse(&row.url).map_err(|e| anyhow!("storage {name}: {e}"))?;
    let gone = buckets::delete(&src, &local).await.map_err(|e| anyhow!("storage {name}: {e}"))?;
    db.delete_storage_row(name).await?;
    Ok(gone)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    pub async fn put_storage(&self, row: &StorageRow, env_sealed: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO storage (name, store, url, region, sources, persistent, cluster_name, env_sealed, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT(name) DO UPDATE SET sources = excluded.sources, persistent = excluded.persistent,
               cluster_name = excluded.cluster_name, env_sealed = excluded.env_sealed, status = excluded.status,
               updated_at = excluded.updated_at",
        )
        .bind(&row.name)
        .bind(&row.store)
        .bind(&row.url)
        .bind(&row.region)
        .bind(serde_json::to_string(&row.sources)?)
        .bind(row.persistent as i64)
        .bind(&row.cluster)
        .bind(env_sealed)
        .bind(&row.status)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn set_storage_status(&self, name: &str, status: &str) -> Result<()> {
        sqlx::query("UPDATE storage SET status = $1, updated_at = $2 WHERE name = $3").bind(status).bind(now()).bind(name).execute(self.db()).await?;
        Ok(())
    }

    pub async fn storage_rows(&self) -> Result<Vec<StorageRow>> {
        let rows = sqlx::query("SELECT * FROM storage ORDER BY created_at, name").fetch_all(self.db()).await?;
        rows.iter().map(storage_row_of).collect()
    }

    pub async fn storage_row(&self, name: &str) -> Result<Option<StorageRow>> {
        let row = sqlx::query("SELECT * FROM storage WHERE name = $1").bind(name).fetch_optional(self.db()).await?;
        row.as_ref().map(storage_row_of).transpose()
    }

    async fn storage_sealed_env(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let v: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT env_sealed FROM storage WHERE name = $1").bind(name).fetch_optional(self.db()).await?;
        Ok(v.flatten())
    }

    async fn delete_storage_row(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM storage WHERE name = $1").bind(name).execute(self.db()).await?;
        Ok(())
    }
}

fn storage_row_of(r: &sqlx::any::AnyRow) -> Result<StorageRow> {
    let sources: String = r.try_get("sources")?;
    Ok(StorageRow {
        name: r.try_get("name")?,
        store: r.try_get("store")?,
        url: r.try_get("url")?,
        region: r.try_get("region")?,
        sources: serde_json::from_str(&sources).unwrap_or_default(),
        persistent: r.try_get::<i64, _>("persistent")? != 0,
        cluster: r.try_get("cluster_name")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_follow_the_cloud_and_azure_needs_an_account() {
        assert_eq!(StoreKind::for_cloud("gcp"), StoreKind::Gcs);
        assert_eq!(StoreKind::for_cloud("lambda"), StoreKind::S3);
        let env = Env::default();
        assert_eq!(StoreKind::R2.url("b-1", &env).unwrap(), "r2://b-1");
        assert!(StoreKind::Azure.url("c", &env).unwrap_err().to_string().contains("AZURE_STORAGE_ACCOUNT"));
        let env = Env::from_pairs(&[("AZURE_STORAGE_CONNECTION_STRING", "AccountName=acct01;AccountKey=x")]);
        assert_eq!(StoreKind::Azure.url("c1", &env).unwrap(), "https://acct01.blob.core.windows.net/c1");
    }
}
